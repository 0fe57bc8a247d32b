"""timeseries_dataset_from_array: sliding windows over an array as a kcompile Dataset."""
from __future__ import annotations

import numpy as np

from ..data.dataset import Dataset


def _positive_below(name, value, n):
    if value <= 0:
        raise ValueError(f"`{name}` must be higher than 0. Received: {name}={value}")
    if value >= n:
        raise ValueError(f"`{name}` must be lower than the length of the data. Received: {name}={value}, for "
                         f"data of length {n}")


def timeseries_dataset_from_array(data, targets, sequence_length, sequence_stride=1, sampling_rate=1,
                                  batch_size=128, shuffle=False, seed=None, start_index=None, end_index=None):
    """Windows `data[start + p + k*sampling_rate]` (k < sequence_length) for start offsets p = 0,
    sequence_stride, 2*sequence_stride, ...; with `targets`, window p is paired with
    `targets[start + p]`. Rows outside [start_index, end_index) are never used."""
    data = np.asarray(data)
    n = len(data)
    if start_index:
        if start_index < 0:
            raise ValueError(f"`start_index` must be 0 or greater. Received: start_index={start_index}")
        if start_index >= n:
            raise ValueError(f"`start_index` must be lower than the length of the data. Received: "
                             f"start_index={start_index}, for data of length {n}")
    if end_index:
        if start_index and end_index <= start_index:
            raise ValueError(f"`end_index` must be higher than `start_index`. Received: start_index={start_index}, "
                             f"and end_index={end_index}")
        if end_index >= n:
            raise ValueError(f"`end_index` must be lower than the length of the data. Received: "
                             f"end_index={end_index}, for data of length {n}")
        if end_index <= 0:
            raise ValueError(f"`end_index` must be higher than 0. Received: end_index={end_index}")
    _positive_below("sampling_rate", sampling_rate, n)
    _positive_below("sequence_stride", sequence_stride, n)
    if sequence_length <= 0:
        raise ValueError(f"`sequence_length` must be higher than 0. Received: sequence_length={sequence_length}")
    if batch_size is not None and batch_size <= 0:
        raise ValueError(f"`batch_size` must be higher than 0 or None. Received: batch_size={batch_size}")
    start = start_index or 0
    end = end_index or n
    num_seqs = end - start - (sequence_length - 1) * sampling_rate
    if targets is not None:
        targets = np.asarray(targets)
        num_seqs = min(num_seqs, len(targets))
    positions = np.arange(0, max(num_seqs, 0), sequence_stride, dtype=np.int64)
    if shuffle:
        if seed is None:
            seed = np.random.randint(1_000_000)
        np.random.RandomState(seed).shuffle(positions)
    offsets = np.arange(0, sequence_length * sampling_rate, sampling_rate)
    window = data[start:end]
    target_rows = targets[start:end] if targets is not None else None

    def element(p):
        p = int(p)
        seq = window[p + offsets]
        return seq if target_rows is None else (seq, target_rows[p])
    dataset = Dataset.from_tensor_slices(positions).map(element) if len(positions) else \
        Dataset(lambda: iter(()), 0)
    if batch_size is not None:
        if shuffle:   # positions are already shuffled; this also mixes nearby windows every epoch, as Keras
            dataset = dataset.shuffle(buffer_size=batch_size * 8, seed=seed)
        return dataset.batch(batch_size)
    if shuffle:
        dataset = dataset.shuffle(buffer_size=1024, seed=seed)
    return dataset
