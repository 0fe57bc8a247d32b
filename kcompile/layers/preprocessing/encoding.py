"""CategoryEncoding and the categorical encodings shared by the other preprocessing layers.

`encode` builds the encoding into the compiled graph (integer indices -> float one-hot / multi-hot /
count vectors); `encode_numpy` is the same rule for the layers computed in numpy
(StringLookup, IntegerLookup, TextVectorization, Hashing). Rules, as Keras 3: a rank-1 input is one
sample for multi_hot/count/tf_idf and a batch of single values for one_hot; a trailing axis of size 1 is
squeezed for one_hot; outputs are at most rank 2 except one_hot of a (batch, n) input. Indices
outside [0, depth) encode to nothing.
"""
from __future__ import annotations

import numpy as np

from ... import ops
from ..base import Layer

OUTPUT_MODES = ("one_hot", "multi_hot", "count")


def output_dtype(layer, dtype, allowed):
    """The output dtype a preprocessing layer was asked for (a name or a serialized DTypePolicy),
    checked against what it can produce; None when not given."""
    if isinstance(dtype, dict):
        dtype = dtype.get("config", {}).get("name")
    if dtype is not None and str(dtype) not in allowed:
        raise ValueError(f"{layer}: dtype={dtype!r} is not supported (one of {', '.join(allowed)})")
    return None if dtype is None else str(dtype)


def check_output_mode(layer, mode, allowed):
    if mode not in allowed:
        raise ValueError(f"{layer}: unknown `output_mode` {mode!r}; expected one of {', '.join(allowed)}")
    return mode


def _check_rank(layer, mode, rank):
    if mode != "one_hot" and rank > 2:
        raise ValueError(f"{layer}: output_mode={mode!r} supports inputs of rank at most 2, got rank {rank}")


def encode(x, mode, depth, count_weights=None, layer="layer"):
    """Graph encoding of integer tensor x (batch first, rank >= 2 for multi_hot/count)."""
    _check_rank(layer, mode, len(x.shape))
    if mode == "one_hot":
        if len(x.shape) >= 2 and x.shape[-1] == 1:
            x = ops.squeeze(x, -1)
        return ops.one_hot(ops.cast(x, "int32"), depth)
    if len(x.shape) < 2:
        raise ValueError(f"{layer}: output_mode={mode!r} in a model needs inputs of shape (batch, n); "
                         f"got rank {len(x.shape)}")
    hot = ops.one_hot(ops.cast(x, "int32"), depth)                     # (B, n, depth)
    if count_weights is not None:
        hot = ops.multiply(hot, ops.expand_dims(ops.cast(count_weights, "float32"), -1))
    return ops.max(hot, axis=1) if mode == "multi_hot" else ops.sum(hot, axis=1)


def encode_numpy(indices, mode, depth, count_weights=None, layer="layer"):
    """numpy version of `encode`; also accepts rank-1 inputs as one sample (multi_hot/count/tf_idf)."""
    idx = np.asarray(indices, np.int64)
    _check_rank(layer, mode, idx.ndim)
    if mode == "one_hot":
        if idx.ndim >= 2 and idx.shape[-1] == 1:
            idx = idx[..., 0]
        valid = (idx >= 0) & (idx < depth)
        out = np.zeros(idx.shape + (depth,), np.float32)
        out[valid] = np.eye(depth, dtype=np.float32)[idx[valid]]
        return out
    single = idx.ndim <= 1
    idx2 = idx.reshape(1, -1) if single else idx
    w = np.ones(idx2.shape, np.float32) if count_weights is None else \
        np.asarray(count_weights, np.float32).reshape(idx2.shape)
    out = np.zeros((idx2.shape[0], depth), np.float32)
    rows, cols = np.nonzero((idx2 >= 0) & (idx2 < depth))
    np.add.at(out, (rows, idx2[rows, cols]), w[rows, cols])
    if mode == "multi_hot":
        out = (out != 0).astype(np.float32)
    return out[0] if single else out


class CategoryEncoding(Layer):
    """Integer category indices in [0, num_tokens) to one-hot, multi-hot or count vectors."""

    def __init__(self, num_tokens=None, output_mode="multi_hot", sparse=False, dtype=None, **kwargs):
        super().__init__(**kwargs)
        # float32 counts by default; an int dtype gives int32 outputs
        self.out_dtype = output_dtype("CategoryEncoding", dtype, ("float32", "float64", "int32", "int64"))
        if num_tokens is None or int(num_tokens) < 1:
            raise ValueError(f"CategoryEncoding: `num_tokens` must be a positive integer, got {num_tokens!r}")
        if sparse:
            raise ValueError("CategoryEncoding: argument sparse=True is not supported (outputs are dense)")
        self.num_tokens = int(num_tokens)
        self.output_mode = check_output_mode("CategoryEncoding", output_mode, OUTPUT_MODES)
        self.sparse = False

    def __call__(self, inputs, *args, count_weights=None, **kwargs):
        if count_weights is not None and self.output_mode != "count":
            raise ValueError(f"CategoryEncoding: `count_weights` is only used with output_mode='count', "
                             f"not {self.output_mode!r}")
        arr = None if hasattr(inputs, "node") else np.asarray(inputs)
        if arr is not None and arr.ndim <= 1 and self.output_mode != "one_hot":
            # a rank-1 array is one sample (Keras 3), which has no batch axis for the graph
            out = encode_numpy(arr, self.output_mode, self.num_tokens, count_weights, "CategoryEncoding")
            return out.astype(np.int32) if self._int_output else out
        if count_weights is not None:
            return super().__call__(inputs, *args, count_weights=count_weights, **kwargs)
        return super().__call__(inputs, *args, **kwargs)

    def call(self, inputs, count_weights=None):
        out = encode(inputs, self.output_mode, self.num_tokens, count_weights, f"CategoryEncoding '{self.name}'")
        return ops.cast(out, "int32") if self._int_output else out

    @property
    def _int_output(self):
        return self.out_dtype in ("int32", "int64")

    def get_config(self):
        return {**super().get_config(), "dtype": self.out_dtype or "float32",
                "num_tokens": self.num_tokens, "output_mode": self.output_mode,
                "sparse": self.sparse}
