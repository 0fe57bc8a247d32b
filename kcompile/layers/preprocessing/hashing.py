"""Hashing: strings or integers to hash bins, as Keras 3 (which uses TensorFlow's string hashes).

A value is hashed as bytes: strings in UTF-8, integers as their decimal text (tf.as_string),
floats first truncated to integers. Without `salt` the hash is FarmHash Fingerprint64
(tf.strings.to_hash_bucket_fast), with it SipHash-2-4 keyed by the two salt values
(to_hash_bucket_strong); the bin is the hash modulo the bin count. With `mask_value`, bin 0 is the
mask's and the others are 1 + hash % (num_bins - 1). The bins are then encoded by `output_mode`.

It runs in numpy: called on data it returns numpy arrays; in a model it is the host stage of the
input it takes (host_stage.py), computed before the native graph on every batch.
"""
from __future__ import annotations

import numpy as np

from ..base import Layer
from .encoding import encode_numpy, output_dtype
from .farmhash import hash_buckets
from .host_stage import HostStage

HASHING_MODES = ("int", "one_hot", "multi_hot", "count")


class Hashing(HostStage, Layer):
    def __init__(self, num_bins, mask_value=None, salt=None, output_mode="int", sparse=False, **kwargs):
        dtype = output_dtype("Hashing", kwargs.pop("dtype", None), ("int32", "int64", "float32", "float64"))
        super().__init__(**kwargs)
        if num_bins is None or isinstance(num_bins, bool) or not isinstance(num_bins, (int, np.integer)) \
                or num_bins <= 0:
            raise ValueError(f"The `num_bins` for `Hashing` cannot be `None` or non-positive values. "
                             f"Received: num_bins={num_bins}.")
        if output_mode not in HASHING_MODES:
            raise ValueError(f"Invalid value for argument `output_mode`. Expected one of {HASHING_MODES}. "
                             f"Received: output_mode={output_mode}")
        if dtype is None:
            dtype = "int64" if output_mode == "int" else "float32"
        if output_mode == "int" and dtype not in ("int32", "int64"):
            raise ValueError(f'When `output_mode="int"`, `dtype` should be an integer type, \'int32\' or '
                             f"'int64'. Received: dtype={dtype}")
        if sparse:
            raise ValueError("Hashing: argument sparse=True is not supported (outputs are dense numpy arrays)")
        if salt is not None:
            if isinstance(salt, (tuple, list)) and len(salt) == 2 and \
                    all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in salt):
                salt = [int(s) for s in salt]
            elif isinstance(salt, (int, np.integer)) and not isinstance(salt, bool):
                salt = [int(salt), int(salt)]
            else:
                raise ValueError(f"The `salt` argument for `Hashing` can only be a tuple of size 2 integers, or a "
                                 f"single integer. Received: salt={salt}.")
        self.num_bins = int(num_bins)
        self.mask_value = mask_value
        self.salt = salt
        self.output_mode = output_mode
        self.sparse = False
        self.out_dtype = dtype
        self.built = True

    # ------------------------------------------------------------ numpy
    def bins(self, values):
        """Bin index of every value of `values` (any shape), int64."""
        arr = np.asarray(values, dtype=object if np.asarray(values).dtype.kind in "USO" else None)
        if arr.dtype.kind == "f":
            arr = arr.astype(np.int64)          # Keras truncates floats to int64 before hashing
        if arr.dtype.kind not in "biuO":
            raise TypeError(f"Hashing '{self.name}': can only hash strings and numbers, got dtype {arr.dtype}")
        flat = arr.reshape(-1)
        buckets = self.num_bins
        masked = None
        if self.mask_value is not None and buckets > 1:
            buckets -= 1
            masked = np.asarray(flat == self.mask_value, bool).reshape(flat.shape)
        out = hash_buckets(flat.tolist(), buckets, key=self.salt)
        if masked is not None:
            out = np.where(masked, 0, out + 1)
        return out.reshape(arr.shape)

    def host_call(self, inputs):
        arr = np.asarray(inputs, dtype=object if np.asarray(inputs).dtype.kind in "USO" else None)
        if self.output_mode == "one_hot" and arr.ndim >= 1 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        idx = self.bins(arr)
        if self.output_mode == "int":
            return idx.astype(self.out_dtype)
        out = encode_numpy(idx, self.output_mode, self.num_bins, layer=f"Hashing '{self.name}'")
        return out.astype(self.out_dtype)

    def host_output_spec(self, input_shape):
        shape = tuple(input_shape[1:])
        if self.output_mode == "int":
            return shape, "int32"
        if self.output_mode == "one_hot":
            base = shape[:-1] if shape and shape[-1] == 1 else shape
        else:
            if len(shape) > 1:
                raise ValueError(f"Hashing '{self.name}': output_mode={self.output_mode!r} supports inputs of "
                                 f"rank at most 2, got shape {tuple(input_shape)}")
            base = ()
        return base + (self.num_bins,), "float32"

    def _host_index_bound(self):
        return self.num_bins

    def get_config(self):
        return {**super().get_config(), "dtype": self.out_dtype, "num_bins": self.num_bins, "salt": self.salt,
                "mask_value": self.mask_value, "output_mode": self.output_mode, "sparse": self.sparse}
