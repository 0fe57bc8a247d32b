"""The one place where fit/evaluate/predict turn user data into batches of numpy arrays.

`make_adapter(...)` accepts numpy arrays (and lists/dicts of them), Python generators and
iterators, PyDataset / Sequence-like objects (`__len__` + `__getitem__`) and any iterable of
batches, and yields `(x, y, sample_weight)` per batch.
"""
from __future__ import annotations

import concurrent.futures
import itertools
import math
import multiprocessing
import numbers
import random
import warnings
from collections import deque

import numpy as np

from ..tree import flatten, map_structure


def _map(fn, x):
    return map_structure(lambda v: None if v is None else fn(v), x)


def _leaves(x):
    return [leaf for leaf in flatten(x) if leaf is not None]


def _to_numpy(x, what):
    if hasattr(x, "numpy") and not isinstance(x, np.ndarray):
        x = x.numpy()
    try:
        arr = np.asarray(x)
    except ValueError:   # numpy: "inhomogeneous shape"
        raise ValueError(f"{what} is a ragged nested list: its rows have different lengths, so it is not an "
                         f"array. Pad the sequences to one length (keras.utils.pad_sequences) or pass a numpy "
                         f"array") from None
    # strings pass as x only: Trainer._check_x refuses them for inputs without a string layer
    if arr.dtype.kind not in "biuf" and not (what == "x" and arr.dtype.kind in "USO"):
        raise TypeError(f"{what} must contain numbers; got an array of dtype {arr.dtype} "
                        f"(from {type(x).__name__})")
    return arr


_INT32 = np.iinfo(np.int32)


def as_int32(arr, what):
    """`arr` for an int32 input: a value int32 cannot hold is refused, not wrapped around
    (2**32 + 3 would otherwise become 3 and pick the wrong embedding row)."""
    fits = arr.dtype.kind == "b" or (arr.dtype.kind in "iu" and np.can_cast(arr.dtype, np.int32))
    if not fits and arr.size:
        inside = (arr >= _INT32.min) & (arr <= _INT32.max)   # False for NaN too
        if not inside.all():
            bad = arr[~inside].flat[0]
            raise ValueError(f"Input {what!r} has the value {bad}, which its dtype int32 cannot hold: integer "
                             f"inputs must lie in [{_INT32.min}, {_INT32.max}]")
    return np.ascontiguousarray(arr, dtype=np.int32)


def _is_array_like(x):
    return isinstance(x, np.ndarray) or (isinstance(x, (list, tuple, dict)) and
                                         all(isinstance(l, np.ndarray) or np.ndim(l) > 0 for l in _leaves(x))
                                         and _leaves(x) and not hasattr(x, "__next__"))


def _is_nested_numbers(x, top=True):
    """A (nested) list of numbers, e.g. [[1, 2], [3, 4]] or []: one array, not a list of inputs."""
    if isinstance(x, (list, tuple)):
        return all(_is_nested_numbers(v, False) for v in x)
    return not top and x is not None and not isinstance(x, np.ndarray) and np.ndim(x) == 0


def _arrays(data, what):
    if _is_nested_numbers(data):
        return _to_numpy(data, what)
    return _map(lambda a: _to_numpy(a, what), data)


def _batch_size(value):
    """fit/evaluate/predict's `batch_size`: None (32) or a positive whole number. A float such as
    1e9 is taken when it is whole, as int() would; anything else is refused rather than truncated."""
    if value is None:
        return 32
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"The `batch_size` argument must be a positive integer. Received: "
                        f"batch_size={value!r} (of type {type(value).__name__})")
    if isinstance(value, numbers.Integral):   # any size: math.isfinite(10**400) would overflow
        whole = value > 0
    else:
        whole = math.isfinite(value) and value > 0 and value == int(value)
    if not whole:
        raise ValueError(f"The `batch_size` argument must be a positive integer. Received: batch_size={value!r}")
    return int(value)


class ArrayAdapter:
    def __init__(self, x, y, sample_weight, batch_size, steps, shuffle, class_weight):
        self.x = _arrays(x, "x")
        self.y = _arrays(y, "y")
        self.sw = None if sample_weight is None else _to_numpy(sample_weight, "sample_weight")
        arrays = _leaves(self.x) + _leaves(self.y) + ([] if self.sw is None else [self.sw])
        scalar = next((a for a in arrays if a.ndim == 0), None)
        if scalar is not None:
            raise ValueError(f"Data must be arrays with a batch dimension (one row per sample); got the scalar "
                             f"{scalar} among them")
        sizes = {a.shape[0] for a in arrays}
        if len(sizes) != 1:
            raise ValueError(f"Data cardinality is ambiguous: the arrays have different numbers of samples "
                             f"{sorted(sizes)}. Make sure all arrays contain the same number of samples.")
        self.num_samples = sizes.pop()
        if self.num_samples == 0:
            raise ValueError("Expected input data to be non-empty.")
        if class_weight is not None:
            if self.y is None or isinstance(self.y, (list, dict)):
                raise ValueError("class_weight needs a single target array")
            cw = class_weights_to_sample_weights(self.y, class_weight)
            self.sw = cw if self.sw is None else self.sw * cw
        # a batch larger than the data is all of it, as in Keras (and needs no bigger workspace)
        self.batch_size = min(_batch_size(batch_size), self.num_samples)
        self.shuffle = shuffle
        full = -(-self.num_samples // self.batch_size)
        self.num_batches = min(full, steps) if steps else full

    # the source of shuffles (data-parallel training replaces it so every replica draws rank 0's)
    permutation = staticmethod(np.random.permutation)

    def epoch_indices(self):
        if self.shuffle and self.shuffle != "batch":
            return self.permutation(self.num_samples)
        return np.arange(self.num_samples)

    def epoch_iterator(self):
        idx = self.epoch_indices()
        contiguous = not (self.shuffle and self.shuffle != "batch")
        order = range(self.num_batches)
        if self.shuffle == "batch":
            order = self.permutation(self.num_batches)
        for b in order:
            lo, hi = b * self.batch_size, min((b + 1) * self.batch_size, self.num_samples)
            take = (lambda a: a[lo:hi]) if contiguous else (lambda a, s=idx[lo:hi]: a[s])
            yield _map(take, self.x), _map(take, self.y), None if self.sw is None else take(self.sw)

    def on_epoch_end(self):
        pass


def class_weights_to_sample_weights(y, class_weight):
    """Per-sample weights from a {class: weight} dict (class = argmax of one-hot or the label).

    Keys must be class indices and values numbers; labels must be whole numbers (NaN, inf or 2.5
    name no class): anything else is refused with a ValueError/TypeError naming it."""
    if not isinstance(class_weight, dict):
        raise TypeError(f"class_weight must be a dict {{class index: weight}}; got a {type(class_weight).__name__}")
    for key, weight in class_weight.items():
        if isinstance(key, bool) or not isinstance(key, (numbers.Integral, np.integer)):
            raise ValueError(f"class_weight keys must be class indices (integers); got the key {key!r}")
        if isinstance(weight, bool) or not isinstance(weight, (numbers.Real, np.number)):
            raise TypeError(f"class_weight values must be numbers; got {weight!r} for class {key!r}")
    y = np.asarray(y)
    if y.ndim == 0:
        raise ValueError(f"class_weight needs targets with a batch dimension; got the scalar {y}")
    if y.ndim > 2:
        raise ValueError(f"class_weight is only supported for targets of rank 1 or 2 (class labels or one-hot "
                         f"rows); got targets of shape {y.shape}")
    labels = np.argmax(y, axis=-1) if y.ndim > 1 and y.shape[-1] > 1 else y.reshape(-1)
    if labels.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(labels) | (labels != np.round(labels))
        if bad.any():
            raise ValueError(f"class_weight needs whole-number class labels; got the label {labels[bad][0]}")
    elif labels.dtype.kind not in "biu":
        raise TypeError(f"class_weight needs numeric class labels; got targets of dtype {y.dtype}")
    weights = np.ones(labels.shape[0], np.float32)
    for key, weight in class_weight.items():
        weights[labels == int(key)] = weight
    return weights


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


def _structure(batch):
    """A printable skeleton of a batch: containers kept, every array shown as its kind."""
    if isinstance(batch, (tuple, list)) and batch and all(np.ndim(b) == 0 and not isinstance(b, (str, bytes))
                                                          and b is not None for b in batch):
        return "array"   # a plain list of numbers is one array
    if isinstance(batch, (tuple, list)):
        inner = ", ".join(_structure(b) for b in batch)
        return f"({inner},)" if isinstance(batch, tuple) and len(batch) == 1 else \
            (f"({inner})" if isinstance(batch, tuple) else f"[{inner}]")
    if isinstance(batch, dict):
        return "{" + ", ".join(f"{k!r}: {_structure(v)}" for k, v in batch.items()) + "}"
    return "None" if batch is None else "array"


class _BatchChecker:
    """Converts batches to numpy and checks each against the first: same structure, same shapes."""

    def __init__(self, class_weight, source):
        self.class_weight, self.source = class_weight, source
        self._shapes = self._structure = None

    def convert(self, batch, index):
        if batch is None:
            raise ValueError(f"Batch {index} from {self.source} is None; expected x, (x,), (x, y) or "
                             f"(x, y, sample_weight)")
        structure = _structure(batch)
        if self._structure is None:
            self._structure = structure
        elif structure != self._structure:
            raise ValueError(f"Batch {index} from {self.source} has the structure {structure}, which differs from "
                             f"the first batch's {self._structure}")
        try:
            x, y, sw = _split_batch(batch)
            x, y = _map(lambda a: _to_numpy(a, "x"), x), _map(lambda a: _to_numpy(a, "y"), y)
            sw = None if sw is None else _to_numpy(sw, "sample_weight")
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"Batch {index} from {self.source}: {exc}") from None
        if self.class_weight is not None and y is not None:
            cw = class_weights_to_sample_weights(y, self.class_weight)
            sw = cw if sw is None else sw * cw
        shapes = [a.shape[1:] for a in _leaves(x) + _leaves(y)]
        if self._shapes is None:
            self._shapes = shapes
        elif shapes != self._shapes:
            raise ValueError(f"Batch {index} from {self.source} has shapes {shapes} (per sample), which differ "
                             f"from the first batch's {self._shapes}")
        return x, y, sw


class IteratorAdapter:
    """Generators/iterators (one shared iterator across epochs, as Keras) and re-iterable objects."""

    def __init__(self, data, steps, class_weight):
        self.data, self.steps = data, steps
        cardinality = getattr(data, "cardinality", None)
        self.one_shot = hasattr(data, "__next__")
        self._iter = iter(data) if self.one_shot else None
        if steps:
            self.num_batches = steps
        elif callable(cardinality) and cardinality() >= 0:
            self.num_batches = cardinality()
        else:
            self.num_batches = None
        self.batch_size = None
        kind = "generator" if self.one_shot else type(data).__name__
        self._checker = _BatchChecker(class_weight, f"the {kind} given as data")

    def _convert(self, batch, index):
        return self._checker.convert(batch, index)

    def epoch_iterator(self):
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
        pass


_WORKER_DATASET = None


def _set_worker_dataset(data):
    global _WORKER_DATASET
    _WORKER_DATASET = data


def _worker_getitem(index):
    return _WORKER_DATASET[index]


class PyDatasetAdapter:
    """PyDataset / Sequence objects: batch i is `data[i]`. With `workers > 1` (or
    use_multiprocessing) up to `max_queue_size` batches are read ahead by a pool of threads or
    forked processes, and still delivered in index order."""

    def __init__(self, data, steps, class_weight, shuffle=False):
        self.data, self.steps = data, steps
        # fit(shuffle=True) visits the batches of a finite PyDataset in a new random order each epoch
        self.shuffle = bool(shuffle)
        n = _num_batches(data)
        self.infinite = n is None
        self._next_index = itertools.count()   # an infinite dataset resumes where the last epoch stopped
        if n is None and not steps:
            raise ValueError(f"{type(data).__name__} is an infinite PyDataset (num_batches is None): pass "
                             f"`steps_per_epoch` (or `steps`) to say how many batches make an epoch")
        if steps and n is not None and steps > n:
            warnings.warn(f"steps={steps} is more than the {n} batches {type(data).__name__} holds; using {n}")
        self.num_batches = n if not steps else (steps if n is None else min(steps, n))
        self.batch_size = None
        self.workers = int(getattr(data, "workers", 1) or 0)
        self.use_multiprocessing = bool(getattr(data, "use_multiprocessing", False))
        self.max_queue_size = int(getattr(data, "max_queue_size", 10) or 10)
        self._checker = _BatchChecker(class_weight, f"PyDataset {type(data).__name__}")

    def _pool(self):
        if self.use_multiprocessing and self.workers > 0:
            # fork shares the dataset with the workers without pickling it; a fresh pool each epoch
            # sees what on_epoch_end changed
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
            return concurrent.futures.ProcessPoolExecutor(self.workers, mp_context=ctx,
                                                          initializer=_set_worker_dataset, initargs=(self.data,))
        if self.workers > 1:
            return concurrent.futures.ThreadPoolExecutor(self.workers, thread_name_prefix="kcompile-pydataset")
        return None

    def _read(self, index, get):
        try:
            return get()
        except Exception as exc:
            if hasattr(exc, "add_note"):   # Python >= 3.11; the traceback shows the batch anyway
                exc.add_note(f"(while reading batch {index} of {type(self.data).__name__})")
            raise

    def epoch_iterator(self):
        begin = getattr(self.data, "on_epoch_begin", None)
        if callable(begin):
            begin()
        if self.infinite:
            indices = [next(self._next_index) for _ in range(self.num_batches)]
        else:
            indices = list(range(_num_batches(self.data)))
            if self.shuffle:
                random.shuffle(indices)   # Python's RNG, which set_random_seed seeds
            indices = indices[:self.num_batches]
        pool = self._pool()
        if pool is None:
            for i in indices:
                yield self._convert(self._read(i, lambda i=i: self.data[i]), i)
            return
        submit = (lambda i: pool.submit(_worker_getitem, i)) if isinstance(
            pool, concurrent.futures.ProcessPoolExecutor) else (lambda i: pool.submit(self.data.__getitem__, i))
        pending = deque()
        try:
            it = iter(indices)
            for i in itertools.islice(it, self.max_queue_size):
                pending.append((i, submit(i)))
            while pending:
                i, fut = pending.popleft()
                batch = self._read(i, fut.result)
                nxt = next(it, None)
                if nxt is not None:
                    pending.append((nxt, submit(nxt)))
                yield self._convert(batch, i)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _convert(self, batch, index):
        # Keras's rules for what __getitem__ returns: an array is (x,), a list is a tuple
        if isinstance(batch, np.ndarray):
            batch = (batch,)
        elif isinstance(batch, list):
            batch = tuple(batch)
        if batch is not None and not isinstance(batch, dict) and \
                (not isinstance(batch, tuple) or len(batch) not in (1, 2, 3)):
            what = f"a tuple of {len(batch)} elements" if isinstance(batch, tuple) else f"a {type(batch).__name__}"
            raise ValueError(f"Batch {index} from PyDataset {type(self.data).__name__}: __getitem__ must return a "
                             f"tuple (inputs,), (inputs, targets) or (inputs, targets, sample_weights), or a dict; "
                             f"got {what}")
        return self._checker.convert(batch, index)

    def on_epoch_end(self):
        end = getattr(self.data, "on_epoch_end", None)
        if callable(end):
            end()


def _num_batches(data):
    nb = getattr(type(data), "num_batches", None)
    if nb is not None:
        return data.num_batches
    return len(data)


def _is_py_dataset(x):
    """A PyDataset, or any Keras-2-style Sequence: indexable by batch number and sized."""
    from ..utils.py_dataset import PyDataset
    return isinstance(x, PyDataset) or (hasattr(x, "__len__") and hasattr(x, "__getitem__")
                                        and not hasattr(x, "__next__") and not hasattr(x, "cardinality")
                                        and not isinstance(x, (list, tuple, dict, str, bytes, np.ndarray))
                                        and not hasattr(x, "__array__") and not hasattr(x, "shape"))


def make_adapter(x, y=None, sample_weight=None, batch_size=None, steps=None, shuffle=False, class_weight=None,
                 seed=None):
    if x is None:
        raise ValueError("No data was given (x is None)")
    if isinstance(x, (str, bytes)):
        raise TypeError(f"Data must be arrays of numbers, a generator or a dataset; got a {type(x).__name__}")
    if isinstance(x, (numbers.Number, np.generic)):
        raise ValueError(f"Unrecognized data type: x={x} (of type {type(x).__name__}). Data must be arrays with "
                         f"a batch dimension (one row per sample), a generator or a dataset, not a scalar")
    if _is_py_dataset(x):
        if y is not None or sample_weight is not None:
            raise ValueError(f"`y` and `sample_weight` must not be given when x is a PyDataset "
                             f"({type(x).__name__}): its batches hold them")
        # batch_size is not used: the PyDataset returns whole batches (fit passes its batch_size on to
        # validation data of any kind, as Keras does)
        return PyDatasetAdapter(x, steps, class_weight, shuffle=shuffle)
    # (np.ndim last: on an object with __getitem__ it would try to read it as a sequence)
    if _is_array_like(x) or not hasattr(x, "__next__") and not hasattr(x, "__getitem__") and np.ndim(x) > 0:
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
    if isinstance(validation_split, bool) or not isinstance(validation_split, numbers.Real) or \
            not 0 < validation_split < 1:
        raise ValueError(f"validation_split must be a number in (0, 1), got {validation_split!r}")
    x = arrays[0]
    if x is None or hasattr(x, "__next__") or _is_py_dataset(x) or not (_is_array_like(x) or _is_nested_numbers(x)):
        raise ValueError("`validation_split` is only supported for array inputs")
    arrays = tuple(None if t is None else _arrays(t, what) for t, what in zip(arrays, ("x", "y", "sample_weight")))
    leaves = [a for t in arrays if t is not None for a in _leaves(t)]
    scalar = next((a for a in leaves if a.ndim == 0), None)
    if scalar is not None:
        raise ValueError(f"Data must be arrays with a batch dimension (one row per sample); got the scalar "
                         f"{scalar} among them")
    sizes = {a.shape[0] for a in leaves}
    if len(sizes) != 1:
        raise ValueError(f"Data cardinality is ambiguous: the arrays have different numbers of samples "
                         f"{sorted(sizes)}. Make sure all arrays contain the same number of samples.")
    n = sizes.pop()
    split = int(n * (1.0 - validation_split))
    if split == 0 or split == n:
        raise ValueError(f"Training data contains {n} samples, which is not sufficient to split it into a "
                         f"validation and training set as specified by `validation_split={validation_split}`. "
                         f"Either provide more data, or a different value for the `validation_split` argument.")

    def part(lo, hi):
        return tuple(_map(lambda a: a[lo:hi], t) for t in arrays)
    return part(0, split), part(split, n)
