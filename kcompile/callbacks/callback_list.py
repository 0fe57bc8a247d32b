"""CallbackList: fans each hook out to the callbacks of one fit/evaluate/predict call."""
from __future__ import annotations

from .base import _HOOKS
from .progress import History, ProgbarLogger


class CallbackList:
    def __init__(self, callbacks=None, add_history=False, add_progbar=False, model=None, **params):
        self.callbacks = list(callbacks or [])
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
            getattr(c, hook)(*args)

    def __iter__(self):
        return iter(self.callbacks)


for _hook in _HOOKS:
    setattr(CallbackList, _hook, (lambda h: lambda self, *args: self._call(h, *args))(_hook))
