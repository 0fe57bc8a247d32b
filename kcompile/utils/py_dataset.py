"""PyDataset (Keras 3) and its Keras 2 name Sequence: a dataset indexed by batch number.

Subclasses implement `__len__` (or the `num_batches` property; None means infinite) and
`__getitem__(index)` returning one batch: `x`, `(x,)`, `(x, y)` or `(x, y, sample_weight)`.
fit/evaluate/predict read the batches through `kcompile.data.adapters.PyDatasetAdapter`, which
prefetches `max_queue_size` batches ahead with `workers` threads (or processes) and hands them
over in index order.
"""
from __future__ import annotations


class PyDataset:
    def __init__(self, workers=1, use_multiprocessing=False, max_queue_size=10):
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 0:
            raise ValueError(f"PyDataset: workers must be a non-negative integer; got {workers!r}")
        if not isinstance(max_queue_size, int) or isinstance(max_queue_size, bool) or max_queue_size <= 0:
            raise ValueError(f"PyDataset: max_queue_size must be a positive integer; got {max_queue_size!r}")
        self._workers = workers
        self._use_multiprocessing = bool(use_multiprocessing)
        self._max_queue_size = max_queue_size

    # Subclasses that forget to call super().__init__() still get Keras's defaults.
    @property
    def workers(self):
        return getattr(self, "_workers", 1)

    @workers.setter
    def workers(self, value):
        self._workers = value

    @property
    def use_multiprocessing(self):
        return getattr(self, "_use_multiprocessing", False)

    @use_multiprocessing.setter
    def use_multiprocessing(self, value):
        self._use_multiprocessing = bool(value)

    @property
    def max_queue_size(self):
        return getattr(self, "_max_queue_size", 10)

    @max_queue_size.setter
    def max_queue_size(self, value):
        self._max_queue_size = value

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__(index) returning a batch")

    @property
    def num_batches(self):
        """The number of batches per epoch; None for an infinite dataset (then pass steps_per_epoch)."""
        if type(self).__len__ is not PyDataset.__len__:
            return len(self)
        raise NotImplementedError(f"{type(self).__name__} must implement __len__ or the num_batches property")

    def __len__(self):
        n = self.num_batches
        if n is None:
            raise TypeError(f"{type(self).__name__} is infinite (num_batches is None)")
        return n

    def on_epoch_begin(self):
        """Called at the start of every epoch."""

    def on_epoch_end(self):
        """Called at the end of every epoch (e.g. to reshuffle)."""


Sequence = PyDataset   # Keras 3 keeps keras.utils.Sequence as this same class
