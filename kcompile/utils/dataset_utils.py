"""split_dataset and the (x, y, sample_weight) packing helpers of keras.utils."""
from __future__ import annotations

import numbers

import numpy as np

from ..data.dataset import Dataset
from ..tree import flatten, map_structure


def pack_x_y_sample_weight(x, y=None, sample_weight=None):
    """The tuple fit() expects: (x,), (x, y) or (x, y, sample_weight); a tuple x is wrapped so it stays one input."""
    if y is None:
        return (x,) if isinstance(x, (tuple, list)) else x
    if sample_weight is None:
        return (x, y)
    return (x, y, sample_weight)


def unpack_x_y_sample_weight(data):
    """(x, y, sample_weight) from what pack_x_y_sample_weight (or a dataset) produced; missing parts are None."""
    if isinstance(data, list):
        data = tuple(data)
    if not isinstance(data, tuple):
        return data, None, None
    if len(data) == 1:
        return data[0], None, None
    if len(data) == 2:
        return data[0], data[1], None
    if len(data) == 3:
        return data
    raise ValueError(f"Data is expected to be in format `x`, `(x,)`, `(x, y)`, or `(x, y, sample_weight)`, "
                     f"found: {data}")


def _split_sizes(left_size, right_size, total):
    for name, size in (("left_size", left_size), ("right_size", right_size)):
        if size is not None and (isinstance(size, bool) or not isinstance(size, numbers.Real)):
            raise TypeError(f"Invalid `left_size` and `right_size` Types. Expected: integer or float or None, "
                            f"Received: type(left_size)={type(left_size)} and type(right_size)={type(right_size)}")
        if isinstance(size, numbers.Integral) and not 0 < size < total:
            raise ValueError(f"`{name}` should be either a positive integer smaller than {total}, or a float within "
                             f"the range `[0, 1]`. Received: {name}={size}")
        if isinstance(size, float) and not 0 < size < 1:
            raise ValueError(f"`{name}` should be either a positive integer smaller than {total}, or a float within "
                             f"the range `[0, 1]`. Received: {name}={size}")
    if left_size is None and right_size is None:
        raise ValueError("At least one of the `left_size` or `right_size` must be specified. Received: "
                         "left_size=None and right_size=None")
    left = int(round(left_size * total)) if isinstance(left_size, float) else left_size
    right = int(round(right_size * total)) if isinstance(right_size, float) else right_size
    left = total - right if left is None else left
    right = total - left if right is None else right
    if left + right > total:
        raise ValueError(f"The sum of `left_size` and `right_size` should be smaller than the {total}. Received: "
                         f"left_size + right_size = {left + right} and total_length = {total}")
    if left == 0 or right == 0:
        raise ValueError(f"With {total} samples, left_size={left_size} and right_size={right_size} leave one side "
                         f"empty; adjust the sizes.")
    return left, right


def split_dataset(dataset, left_size=None, right_size=None, shuffle=False, seed=None):
    """Split arrays (or a tuple/dict of them, or a finite Dataset of samples) into two Datasets: the first
    `left_size` samples and the last `right_size` (ints are counts, floats fractions; None = the rest)."""
    if isinstance(dataset, Dataset):
        if dataset.cardinality() == -1:
            raise ValueError("split_dataset: the dataset is infinite")
        whole = list(dataset.batch(2 ** 62))   # every sample stacked into one batch
        if not whole:
            raise ValueError("split_dataset: the dataset is empty")
        arrays = whole[0]
    elif isinstance(dataset, (np.ndarray, list, tuple, dict)):
        arrays = map_structure(np.asarray, tuple(dataset) if isinstance(dataset, list) else dataset)
    else:
        raise TypeError(f"split_dataset: `dataset` must be a kcompile Dataset, a NumPy array, or a list/tuple/dict "
                        f"of arrays; got {type(dataset).__name__}")
    sizes = {len(a) for a in flatten(arrays)}
    if len(sizes) != 1:
        raise ValueError(f"split_dataset: the arrays have different numbers of samples {sorted(sizes)}")
    total = sizes.pop()
    left, right = _split_sizes(left_size, right_size, total)
    order = np.arange(total)
    if shuffle:
        if seed is None:
            seed = np.random.randint(1_000_000)
        np.random.RandomState(seed).shuffle(order)
    take = lambda idx: map_structure(lambda a: a[idx], arrays)   # noqa: E731
    return (Dataset.from_tensor_slices(take(order[:left])),
            Dataset.from_tensor_slices(take(order[total - right:])))
