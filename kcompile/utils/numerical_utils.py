"""to_categorical and normalize, as in keras.utils."""
from __future__ import annotations

import numpy as np


def to_categorical(x, num_classes=None):
    x = np.asarray(x)
    if x.dtype.kind not in "iuf" or (x.dtype.kind == "f" and np.any(x != np.floor(x))):
        raise ValueError("to_categorical expects integer class labels")
    x = x.astype(np.int64)
    shape = x.shape
    if shape and shape[-1] == 1 and len(shape) > 1:
        shape = shape[:-1]
    x = x.reshape(-1)
    if num_classes is None:
        num_classes = int(x.max()) + 1 if x.size else 0
    if x.size and (x.min() < 0 or x.max() >= num_classes):
        raise ValueError(f"to_categorical: labels must be in [0, {num_classes}), got range [{x.min()}, {x.max()}]")
    out = np.zeros((x.size, num_classes), dtype=np.float32)
    out[np.arange(x.size), x] = 1.0
    return out.reshape(shape + (num_classes,))


def normalize(x, axis=-1, order=2):
    x = np.asarray(x, dtype=np.float32)
    norm = np.atleast_1d(np.linalg.norm(x, order, axis))
    norm[norm == 0] = 1
    return x / np.expand_dims(norm, axis)
