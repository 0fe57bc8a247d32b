"""The one place where fit/evaluate/predict turn user data into batches of numpy arrays.

`make_adapter(...)` accepts numpy arrays (and lists/dicts of them), Python generators and
iterators, Sequence-like objects (`__len__` + `__getitem__`) and any iterable of batches, and
yields `(x, y, sample_weight)` per batch.
"""
from __future__ import annotations

import warnings

import numpy as np

from ..tree import flatten, map_structure


def _map(fn, x):
    return map_structure(lambda v: None if v is None else fn(v), x)


def _leaves(x):
    return [leaf for leaf in flatten(x) if leaf is not None]


def _to_numpy(x, what):
    if hasattr(x, "numpy") and not isinstance(x, np.ndarray):
        x = x.numpy()
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{what} must contain numbers; got an array of dtype {arr.dtype} "
                        f"(from {type(x).__name__})")
    return arr


def _is_array_like(x):
    return isinstance(x, np.ndarray) or (isinstance(x, (list, tuple, dict)) and
                                         all(isinstance(l, np.ndarray) or np.ndim(l) > 0 for l in _leaves(x))
                                         and _leaves(x) and not hasattr(x, "__next__"))


class ArrayAdapter:
    def __init__(self, x, y, sample_weight, batch_size, steps, shuffle, class_weight):
        self.x = _map(lambda a: _to_numpy(a, "x"), x)
        self.y = _map(lambda a: _to_numpy(a, "y"), y)
        self.sw = None if sample_weight is None else _to_numpy(sample_weight, "sample_weight")
        sizes = {a.shape[0] for a in _leaves(self.x) + _leaves(self.y) if a.ndim}
        if self.sw is not None:
            sizes.add(self.sw.shape[0])
        if len(sizes) != 1:
            raise ValueError(f"Data cardinality is ambiguous: the arrays have different numbers of samples "
                             f"{sorted(sizes)}. Make sure all arrays contain the same number of samples.")
        self.num_samples = sizes.pop()
        if class_weight is not None:
            if self.y is None or isinstance(self.y, (list, dict)):
                raise ValueError("class_weight needs a single target array")
            cw = class_weights_to_sample_weights(self.y, class_weight)
            self.sw = cw if self.sw is None else self.sw * cw
        self.batch_size = int(batch_size or 32)
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.shuffle = shuffle
        full = -(-self.num_samples // self.batch_size)
        self.num_batches = min(full, steps) if steps else full

    def epoch_indices(self):
        if self.shuffle and self.shuffle != "batch":
            return np.random.permutation(self.num_samples)
        return np.arange(self.num_samples)

    def epoch_iterator(self):
        idx = self.epoch_indices()
        contiguous = not (self.shuffle and self.shuffle != "batch")
        order = range(self.num_batches)
        if self.shuffle == "batch":
            order = np.random.permutation(self.num_batches)
        for b in order:
            lo, hi = b * self.batch_size, min((b + 1) * self.batch_size, self.num_samples)
            take = (lambda a: a[lo:hi]) if contiguous else (lambda a, s=idx[lo:hi]: a[s])
            yield _map(take, self.x), _map(take, self.y), None if self.sw is None else take(self.sw)

    def on_epoch_end(self):
        pass


def class_weights_to_sample_weights(y, class_weight):
    """Per-sample weights from a {class: weight} dict (class = argmax of one-hot or the label)."""
    y = np.asarray(y)
    labels = np.argmax(y, axis=-1) if y.ndim > 1 and y.shape[-1] > 1 else y.reshape(-1)
    return np.array([class_weight.get(int(c), 1.0) for c in labels], np.float32)


def _split_batch(batch):
    if isinstance(batch, tuple) or (isinstance(batch, list) and len(batch) in (2, 3)
                                    and not all(np.ndim(b) == np.ndim(batch[0]) and np.shape(b) == np.shape(batch[0])
                                                for b in batch)):
        batch = tuple(batch)
        if len(batch) == 1:
            return batch[0], None, None
        if len(batch) == 2:
            return batch[0], batch[1], None
        if len(batch) == 3:
            return batch
        raise ValueError(f"Data batches must be x, (x,), (x, y) or (x, y, sample_weight); got a tuple of "
                         f"{len(batch)} elements")
    return batch, None, None


class IteratorAdapter:
    """Generators/iterators (one shared iterator across epochs, as Keras) and re-iterable objects."""

    def __init__(self, data, steps, class_weight):
        self.data, self.steps = data, steps
        self.class_weight = class_weight
        self.sequence = hasattr(data, "__len__") and hasattr(data, "__getitem__") and not isinstance(data, (list, tuple))
        cardinality = getattr(data, "cardinality", None)
        self.one_shot = hasattr(data, "__next__")
        self._iter = iter(data) if self.one_shot else None
        if steps:
            self.num_batches = steps
        elif self.sequence:
            self.num_batches = len(data)
        elif callable(cardinality) and cardinality() >= 0:
            self.num_batches = cardinality()
        else:
            self.num_batches = None
        self.batch_size = None
        self._shapes = None

    def _convert(self, batch, index):
        x, y, sw = _split_batch(batch)
        x, y = _map(lambda a: _to_numpy(a, "x"), x), _map(lambda a: _to_numpy(a, "y"), y)
        sw = None if sw is None else _to_numpy(sw, "sample_weight")
        if self.class_weight is not None and y is not None:
            cw = class_weights_to_sample_weights(y, self.class_weight)
            sw = cw if sw is None else sw * cw
        shapes = [a.shape[1:] for a in _leaves(x) + _leaves(y)]
        if self._shapes is None:
            self._shapes = shapes
        elif shapes != self._shapes:
            raise ValueError(f"Batch {index} has shapes {shapes}, which differ from the first batch's {self._shapes}")
        return x, y, sw

    def epoch_iterator(self):
        if self.sequence:
            n = self.num_batches
            for i in range(n):
                yield self._convert(self.data[i], i)
            return
        source = self._iter if self.one_shot else iter(self.data)
        i = 0
        while self.steps is None or i < self.steps:
            try:
                batch = next(source)
            except StopIteration:
                if self.steps is not None:
                    warnings.warn("Your input ran out of data; interrupting training. Make sure that your dataset "
                                  "or generator can generate at least `steps_per_epoch * epochs` batches.")
                break
            yield self._convert(batch, i)
            i += 1

    def on_epoch_end(self):
        if self.sequence and hasattr(self.data, "on_epoch_end"):
            self.data.on_epoch_end()


def make_adapter(x, y=None, sample_weight=None, batch_size=None, steps=None, shuffle=False, class_weight=None,
                 seed=None):
    if x is None:
        raise ValueError("No data was given (x is None)")
    if isinstance(x, (str, bytes)):
        raise TypeError(f"Data must be arrays of numbers, a generator or a dataset; got a {type(x).__name__}")
    if _is_array_like(x) or np.ndim(x) > 0 and not hasattr(x, "__next__") and not hasattr(x, "__getitem__"):
        return ArrayAdapter(x, y, sample_weight, batch_size, steps, shuffle, class_weight)
    if isinstance(x, (list, tuple)):
        return ArrayAdapter(x, y, sample_weight, batch_size, steps, shuffle, class_weight)
    if y is not None or sample_weight is not None:
        raise ValueError("`y` and `sample_weight` must not be given when x is a generator, a dataset or a "
                         "Sequence: it yields them itself")
    if batch_size is not None and not hasattr(x, "__getitem__"):
        raise ValueError("The `batch_size` argument must not be specified when using a generator or a dataset "
                         "(it yields batches)")
    if not (hasattr(x, "__iter__") or hasattr(x, "__getitem__")):
        raise TypeError(f"Unrecognized data type: x={x!r} (of type {type(x).__name__})")
    return IteratorAdapter(x, steps, class_weight)


def train_validation_split(arrays, validation_split):
    """Split (x, y, sw) keeping the last `validation_split` fraction for validation, as Keras does."""
    if not 0 < validation_split < 1:
        raise ValueError(f"validation_split must be in (0, 1), got {validation_split}")
    x = arrays[0]
    if not _leaves(x) or not all(isinstance(a, np.ndarray) or np.ndim(a) > 0 for a in _leaves(x)) or \
            hasattr(x, "__next__"):
        raise ValueError("`validation_split` is only supported for array inputs")
    n = np.asarray(_leaves(x)[0]).shape[0]
    split = int(n * (1.0 - validation_split))

    def part(lo, hi):
        return tuple(_map(lambda a: np.asarray(a)[lo:hi], t) for t in arrays)
    return part(0, split), part(split, n)
