"""Numeric preprocessing layers that compile into the model: Normalization and Discretization,
both with `adapt` (statistics computed eagerly in numpy, then held as non-trainable weights)."""
from __future__ import annotations

import numpy as np

from ... import ops
from ..base import Layer
from .adapt_data import adapt_batches
from .encoding import OUTPUT_MODES, check_output_mode, encode


class Normalization(Layer):
    """(x - mean) / max(sqrt(variance), 1e-7); `adapt(data)` computes mean and variance from data."""

    def __init__(self, axis=-1, mean=None, variance=None, invert=False, **kwargs):
        super().__init__(**kwargs)
        self.axis = () if axis is None else ((axis,) if isinstance(axis, int) else tuple(axis))
        self.invert = bool(invert)
        if (mean is None) != (variance is None):
            raise ValueError(f"When setting values directly, both `mean` and `variance` must be set. "
                             f"Received: mean={mean} and variance={variance}")
        self.input_mean, self.input_variance = mean, variance
        self.supports_masking = True

    def _stat_shape(self, input_shape):
        rank = len(input_shape)
        keep = {a % rank for a in self.axis}
        if any(input_shape[a] is None for a in keep):
            raise ValueError(f"Normalization '{self.name}': axis {self.axis} must have known sizes, got {input_shape}")
        return tuple(input_shape[a] if a in keep else 1 for a in range(1, rank))

    def build(self, input_shape):
        shape = self._stat_shape(input_shape)
        self.mean = self.add_weight(name="mean", shape=shape, initializer="zeros", trainable=False)
        self.variance = self.add_weight(name="variance", shape=shape, initializer="ones", trainable=False)
        self.count = self.add_weight(name="count", shape=(), initializer="zeros", dtype="int32", trainable=False)
        if self.input_mean is not None:
            self.mean.assign(np.broadcast_to(np.asarray(self.input_mean, np.float32), shape))
            self.variance.assign(np.broadcast_to(np.asarray(self.input_variance, np.float32), shape))
        self.built = True

    def adapt(self, data, batch_size=None, steps=None):
        """Mean and variance over every axis except `axis`, from an array, a Dataset or an iterable."""
        batches = [b.astype(np.float64) for b in adapt_batches(data, batch_size, steps, f"Normalization '{self.name}'")]
        full = np.concatenate([b.reshape((-1,) + b.shape[1:]) for b in batches])
        if not self.built:
            self._maybe_build((None,) + full.shape[1:])
        rank = full.ndim
        keep = {a % rank for a in self.axis}
        reduce = tuple(a for a in range(rank) if a not in keep)
        shape = self._stat_shape((None,) + full.shape[1:])
        self.mean.assign(full.mean(axis=reduce).reshape(shape).astype(np.float32))
        self.variance.assign(full.var(axis=reduce).reshape(shape).astype(np.float32))
        self.count.assign(np.int32(full.size // max(1, int(np.prod(shape)))))

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        scale = ops.maximum(ops.sqrt(self.variance), 1e-7)
        if self.invert:
            return ops.add(ops.multiply(x, scale), self.mean)
        return ops.divide(ops.subtract(x, self.mean), scale)

    def get_config(self):
        mean = None if self.input_mean is None else np.asarray(self.input_mean).tolist()
        variance = None if self.input_variance is None else np.asarray(self.input_variance).tolist()
        return {**super().get_config(), "axis": list(self.axis) if len(self.axis) != 1 else self.axis[0],
                "mean": mean, "variance": variance, "invert": self.invert}


class Discretization(Layer):
    """Buckets values by boundaries: index i where boundaries[i-1] <= x < boundaries[i]. `adapt` with
    `num_bins` places the boundaries at exact quantiles of the data (Keras uses an epsilon-approximate
    quantile sketch; exact quantiles satisfy any `epsilon`). Boundaries are fixed when the layer is
    first traced into a model, so adapt before building the model."""

    def __init__(self, bin_boundaries=None, num_bins=None, epsilon=0.01, output_mode="int", sparse=False,
                 dtype=None, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        if sparse:
            raise ValueError("Discretization: argument sparse=True is not supported (outputs are dense)")
        if bin_boundaries is not None and num_bins is not None:
            raise ValueError("Discretization: `num_bins` and `bin_boundaries` should not be set at the same time")
        if num_bins is not None and int(num_bins) < 1:
            raise ValueError(f"Discretization: `num_bins` must be positive, got {num_bins}")
        self.output_mode = check_output_mode("Discretization", output_mode, ("int",) + OUTPUT_MODES)
        self.bin_boundaries = None if bin_boundaries is None else [float(b) for b in bin_boundaries]
        if self.bin_boundaries is not None and np.any(np.diff(self.bin_boundaries) < 0):
            raise ValueError(f"Discretization: bin_boundaries must be sorted, got {self.bin_boundaries}")
        self.num_bins = None if num_bins is None else int(num_bins)
        self.epsilon = float(epsilon)
        self.sparse = False
        # outputs are int32 indices ("int") or float32 encodings; a requested dtype must be of that kind
        if isinstance(dtype, dict):             # a serialized DTypePolicy
            dtype = dtype.get("config", {}).get("name")
        kind = "int" if output_mode == "int" else "float"
        # Keras 3 files store the input's float policy even with output_mode="int"
        allowed = ("int32", "int64", "float32") if kind == "int" else ("float32", "float64")
        if dtype is not None and str(dtype) not in allowed:
            raise ValueError(f"Discretization: dtype={dtype!r} is not supported with output_mode={output_mode!r} "
                             f"(outputs are {kind}: one of {', '.join(allowed)})")

    def adapt(self, data, batch_size=None, steps=None):
        if self.num_bins is None:
            raise ValueError(f"Discretization '{self.name}': adapt() needs `num_bins` (bin_boundaries were given)")
        values = np.concatenate([b.reshape(-1) for b in adapt_batches(data, batch_size, steps,
                                                                     f"Discretization '{self.name}'")])
        quantiles = np.arange(1, self.num_bins) / self.num_bins
        self.bin_boundaries = np.quantile(values.astype(np.float64), quantiles).tolist()

    def call(self, inputs):
        if self.bin_boundaries is None:
            raise ValueError(f"Discretization '{self.name}': set `bin_boundaries` or call adapt() before using it")
        x = ops.cast(inputs, "float32")
        boundaries = np.asarray(self.bin_boundaries, np.float32)
        index = ops.sum(ops.cast(ops.greater_equal(ops.expand_dims(x, -1), boundaries), "int32"), axis=-1)
        if self.output_mode == "int":
            return index
        return encode(index, self.output_mode, len(boundaries) + 1, layer=f"Discretization '{self.name}'")

    def get_config(self):
        return {**super().get_config(), "dtype": "int32" if self.output_mode == "int" else "float32",
                "bin_boundaries": self.bin_boundaries, "num_bins": self.num_bins,
                "epsilon": self.epsilon, "output_mode": self.output_mode, "sparse": self.sparse}
