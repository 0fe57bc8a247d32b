"""LambdaCallback: a callback built from plain functions."""
from __future__ import annotations

from .base import _HOOKS, Callback


class LambdaCallback(Callback):
    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None, on_train_end=None,
                 on_train_batch_begin=None, on_train_batch_end=None, **kwargs):
        super().__init__()
        hooks = dict(on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end, on_train_begin=on_train_begin,
                     on_train_end=on_train_end, on_train_batch_begin=on_train_batch_begin,
                     on_train_batch_end=on_train_batch_end)
        hooks.update(kwargs)
        for name, fn in hooks.items():
            if name not in _HOOKS + ["on_batch_begin", "on_batch_end"]:
                raise TypeError(f"LambdaCallback: unknown hook {name!r}")
            if fn is not None:
                setattr(self, name, fn)
        # hooks set on the instance are invisible to the class-override test the fast epoch uses
        self._needs_batch_hooks = any(hooks.get(n) is not None for n in
                                      ("on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end"))
