"""Turning what `adapt(data)` accepts (an array, a list, a Dataset, a PyDataset or any iterable of
batches) into a list of numpy batches."""
from __future__ import annotations

import numpy as np


def _features(batch):
    """x of an (x, y[, sample_weight]) batch."""
    return batch[0] if isinstance(batch, tuple) else batch


def adapt_batches(data, batch_size=None, steps=None, layer="layer", text=False):
    """Numpy batches of `data` (at most `steps` of them); text=True keeps strings as str objects."""
    convert = _as_text if text else np.asarray
    if isinstance(data, (np.ndarray, list)) or np.isscalar(data):
        full = convert(data)
        size = batch_size or max(1, len(full) if full.ndim else 1)
        batches = [full[i:i + size] for i in range(0, max(len(full), 1), size)] if full.ndim else [full]
    elif hasattr(data, "__getitem__") and hasattr(data, "num_batches"):          # PyDataset
        n = data.num_batches
        if n is None and steps is None:
            raise ValueError(f"{layer}: adapt() on an infinite PyDataset needs `steps`")
        count = n if steps is None else min(steps, n) if n is not None else steps
        batches = [convert(_features(data[i])) for i in range(count)]
    else:
        source = data.as_numpy_iterator() if hasattr(data, "as_numpy_iterator") else iter(data)
        batches = []
        for batch in source:
            if steps is not None and len(batches) >= steps:
                break
            batches.append(convert(_features(batch)))
    if steps is not None:
        batches = batches[:steps]
    if not batches or all(b.size == 0 for b in batches):
        raise ValueError(f"{layer}: adapt() received no data")
    return batches


def _as_text(values):
    """A numpy object array of Python str (bytes decoded as UTF-8)."""
    arr = np.asarray(values, dtype=object)
    flat = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in arr.reshape(-1)]
    return np.array(flat, dtype=object).reshape(arr.shape)
