"""`kcompile.data.Dataset`: a tf.data-style input pipeline over numpy, with no TensorFlow.

Elements are numpy arrays, or tuples/dicts of them. Each transformation returns a new Dataset
whose iterator is built fresh on every iteration (so a dataset can be iterated once per epoch).
"""
from __future__ import annotations

import queue
import threading

import numpy as np

from ..tree import flatten as _leaves
from ..tree import map_structure as _map_structure

AUTOTUNE = -1
INFINITE_CARDINALITY = -1
UNKNOWN_CARDINALITY = -2


def _stack(elements):
    first = elements[0]
    if isinstance(first, tuple):
        return tuple(_stack([e[i] for e in elements]) for i in range(len(first)))
    if isinstance(first, list):
        return [_stack([e[i] for e in elements]) for i in range(len(first))]
    if isinstance(first, dict):
        return {k: _stack([e[k] for e in elements]) for k in first}
    try:
        return np.stack([np.asarray(e) for e in elements])
    except ValueError:
        shapes = sorted({np.shape(e) for e in elements})
        raise ValueError(f"Dataset.batch: elements have different shapes {shapes}") from None


class Dataset:
    def __init__(self, make_iter, cardinality):
        self._make_iter = make_iter
        self._cardinality = cardinality

    # ------------------------------------------------------------ sources
    @staticmethod
    def from_tensor_slices(tensors):
        arrays = _map_structure(np.asarray, tensors)
        sizes = {np.shape(a)[0] if np.ndim(a) else None for a in _leaves(arrays)}
        if None in sizes or len(sizes) != 1:
            raise ValueError(f"from_tensor_slices: all components need the same leading dimension, got {sorted(sizes, key=str)}")
        n = sizes.pop()
        return Dataset(lambda: (_map_structure(lambda a, i=i: a[i], arrays) for i in range(n)), n)

    @staticmethod
    def from_generator(generator, output_signature=None, output_types=None, output_shapes=None, args=None):
        if not callable(generator):
            raise TypeError("from_generator expects a callable that returns an iterator")
        return Dataset(lambda: iter(generator(*(args or ()))), UNKNOWN_CARDINALITY)

    @staticmethod
    def range(*args):
        r = range(*args)
        return Dataset(lambda: (np.int64(i) for i in r), len(r))

    @staticmethod
    def zip(datasets):
        datasets = tuple(datasets)
        cards = [d.cardinality() for d in datasets]
        finite = [c for c in cards if c >= 0]
        card = min(finite) if finite else (UNKNOWN_CARDINALITY if UNKNOWN_CARDINALITY in cards else INFINITE_CARDINALITY)
        return Dataset(lambda: zip(*[iter(d) for d in datasets]), card)

    # ------------------------------------------------------------ transformations
    def batch(self, batch_size, drop_remainder=False, num_parallel_calls=None, deterministic=None):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")

        def gen():
            buf = []
            for e in self:
                buf.append(e)
                if len(buf) == batch_size:
                    yield _stack(buf)
                    buf = []
            if buf and not drop_remainder:
                yield _stack(buf)
        c = self._cardinality
        if c >= 0:
            c = c // batch_size if drop_remainder else -(-c // batch_size)
        return Dataset(gen, c)

    def unbatch(self):
        def gen():
            for e in self:
                n = np.shape(_leaves(e)[0])[0]
                for i in range(n):
                    yield _map_structure(lambda a, i=i: a[i], e)
        return Dataset(gen, UNKNOWN_CARDINALITY)

    def shuffle(self, buffer_size, seed=None, reshuffle_each_iteration=True):
        if buffer_size <= 0:
            raise ValueError(f"buffer_size must be positive, got {buffer_size}")
        state = {"epoch": 0}
        base_seed = seed if seed is not None else np.random.SeedSequence().entropy % (2 ** 31)

        def gen():
            epoch = state["epoch"] if reshuffle_each_iteration else 0
            state["epoch"] += 1
            rng = np.random.default_rng([int(base_seed), epoch])
            buf = []
            for e in self:
                if len(buf) < buffer_size:
                    buf.append(e)
                    continue
                i = int(rng.integers(len(buf)))
                yield buf[i]
                buf[i] = e
            while buf:
                yield buf.pop(int(rng.integers(len(buf))))
        return Dataset(gen, self._cardinality)

    def repeat(self, count=None):
        def gen():
            i = 0
            while count is None or count < 0 or i < count:
                yield from self
                i += 1
        c = self._cardinality
        card = INFINITE_CARDINALITY if (count is None or count < 0) and c != 0 else \
            (c * count if c >= 0 else c)
        return Dataset(gen, card)

    def map(self, map_func, num_parallel_calls=None, deterministic=None):
        def call(e):
            return map_func(*e) if isinstance(e, tuple) else map_func(e)
        return Dataset(lambda: (call(e) for e in self), self._cardinality)

    def filter(self, predicate):
        def keep(e):
            return bool(predicate(*e) if isinstance(e, tuple) else predicate(e))
        return Dataset(lambda: (e for e in self if keep(e)), UNKNOWN_CARDINALITY
                       if self._cardinality != INFINITE_CARDINALITY else INFINITE_CARDINALITY)

    def take(self, count):
        def gen():
            for i, e in enumerate(self):
                if i >= count:
                    return
                yield e
        c = self._cardinality
        card = count if c == INFINITE_CARDINALITY else (min(c, count) if c >= 0 else c)
        return Dataset(gen, card if count >= 0 else c)

    def skip(self, count):
        def gen():
            for i, e in enumerate(self):
                if i >= count:
                    yield e
        c = self._cardinality
        return Dataset(gen, max(c - count, 0) if c >= 0 else c)

    def concatenate(self, dataset):
        a, b = self._cardinality, dataset.cardinality()
        card = a + b if a >= 0 and b >= 0 else (INFINITE_CARDINALITY if INFINITE_CARDINALITY in (a, b) else UNKNOWN_CARDINALITY)

        def gen():
            yield from self
            yield from dataset
        return Dataset(gen, card)

    def cache(self, filename=""):
        if filename:
            raise ValueError("Dataset.cache: caching to a file is not supported (in-memory cache only)")
        store = {}

        def gen():
            if "items" in store:
                yield from store["items"]
                return
            items = []
            for e in self:
                items.append(e)
                yield e
            store["items"] = items
        return Dataset(gen, self._cardinality)

    def prefetch(self, buffer_size=AUTOTUNE):
        """Produce elements on a background thread into a bounded queue."""
        size = 2 if buffer_size in (None, AUTOTUNE) or buffer_size <= 0 else int(buffer_size)
        return Dataset(lambda: _Prefetcher(iter(self), size), self._cardinality)

    # ------------------------------------------------------------ inspection
    def cardinality(self):
        return self._cardinality

    def __len__(self):
        if self._cardinality == INFINITE_CARDINALITY:
            raise TypeError("The dataset is infinite.")
        if self._cardinality < 0:
            raise TypeError("The dataset length is unknown.")
        return self._cardinality

    def __iter__(self):
        return iter(self._make_iter())

    def as_numpy_iterator(self):
        return iter(self)


class _Prefetcher:
    _DONE = object()

    def __init__(self, source, size):
        self._queue = queue.Queue(size)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(source,), daemon=True)
        self._thread.start()

    def _run(self, source):
        try:
            for e in source:
                while not self._stop.is_set():
                    try:
                        self._queue.put(("item", e), timeout=0.05)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
            self._put(("done", None))
        except BaseException as exc:   # re-raised in the consumer
            self._put(("error", exc))

    def _put(self, item):
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return
            except queue.Full:
                continue

    def __iter__(self):
        return self

    def __next__(self):
        kind, value = self._queue.get()
        if kind == "item":
            return value
        self.close()
        if kind == "error":
            raise value
        raise StopIteration

    def close(self):
        self._stop.set()
        self._thread.join(timeout=1.0)

    def __del__(self):
        self._stop.set()
