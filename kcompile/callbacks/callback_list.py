"""CallbackList: fans each hook out to the callbacks of one fit/evaluate/predict call."""
from __future__ import annotations

from .base import _HOOKS
from .progress import History, ProgbarLogger


class CallbackList:
    def __init__(self, callbacks=None, add_history=False, add_progbar=False, model=None, chief=True, **params):
        """chief=False on the workers of a data-parallel job other than rank 0: the hooks that write
        files (a callback's `_chief_only_hooks`) are skipped there, so one copy of each file is written."""
        self.callbacks = list(callbacks or [])
        self.chief = chief
        if add_progbar and not any(isinstance(c, ProgbarLogger) for c in self.callbacks):
            self.callbacks.append(ProgbarLogger())
        if add_history and not any(isinstance(c, History) for c in self.callbacks):
            self.callbacks.append(History())
        self.model = model
        self.params = params
        for c in self.callbacks:
            c.set_model(model)
            c.set_params(params)

    def _call(self, hook, *args):
        for c in self.callbacks:
            if self.chief or hook not in getattr(c, "_chief_only_hooks", ()):
                getattr(c, hook)(*args)

    def __iter__(self):
        return iter(self.callbacks)


for _hook in _HOOKS:
    setattr(CallbackList, _hook, (lambda h: lambda self, *args: self._call(h, *args))(_hook))
