"""The Callback base class: the hooks fit/evaluate/predict call, all no-ops by default.

Model interface callbacks use: `model.stop_training`, `get_weights`/`set_weights`,
`get_training_state`/`set_training_state`, `model.optimizer.learning_rate` (readable and
settable), `model.history`.
"""
from __future__ import annotations

_HOOKS = ["on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end", "on_train_batch_begin",
          "on_train_batch_end", "on_test_begin", "on_test_end", "on_test_batch_begin", "on_test_batch_end",
          "on_predict_begin", "on_predict_end", "on_predict_batch_begin", "on_predict_batch_end"]


class Callback:
    # hooks that write files: in a data-parallel job only rank 0 (the chief) runs them
    _chief_only_hooks = frozenset()

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_batch_begin(self, batch, logs=None):
        """Keras 2 alias of on_train_batch_begin."""

    def on_batch_end(self, batch, logs=None):
        """Keras 2 alias of on_train_batch_end."""

    def on_train_batch_begin(self, batch, logs=None):
        self.on_batch_begin(batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self.on_batch_end(batch, logs)


for _hook in _HOOKS:
    if not hasattr(Callback, _hook):
        setattr(Callback, _hook, lambda self, *args, **kwargs: None)


WRITES_EVERY_HOOK = frozenset(_HOOKS) | {"on_batch_begin", "on_batch_end"}


def uses_batch_hooks(callback):
    """True when a callback overrides a per-batch training hook (forces one native call per batch).

    A callback whose need depends on its arguments (e.g. saving every N batches) says so through a
    `_needs_batch_hooks` attribute instead of the override test.
    """
    declared = getattr(callback, "_needs_batch_hooks", None)
    if declared is not None:
        return bool(declared)
    for name in ("on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end"):
        if getattr(type(callback), name) is not getattr(Callback, name):
            return True
    return False
