"""Image and numeric preprocessing layers that compile into the model: Rescaling, CenterCrop,
Resizing, Normalization (with `adapt`).

Resizing is a pair of constant interpolation matrices (half-pixel centres, as Keras's backends
use without antialiasing) applied along height and width; with inputs of unknown size
(`Input(shape=(None, None, 3))`) they are rebuilt for each concrete input shape.
"""
from __future__ import annotations

import numpy as np

from .. import ops
from ..ir import builder as irb
from ..tracing import KerasTensor
from .base import Layer
from .convolutional import from_channels_last, normalize_data_format, to_channels_last


class Rescaling(Layer):
    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.scale, self.offset = scale, offset
        self.supports_masking = True

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        return ops.add(ops.multiply(x, np.asarray(self.scale, np.float32)), np.asarray(self.offset, np.float32))

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}


def interpolation_matrix(out_size, in_size, method):
    """(out, in) weights of 1-D bilinear / nearest resampling with half-pixel centres."""
    m = np.zeros((out_size, in_size), np.float32)
    scale = in_size / out_size
    for i in range(out_size):
        src = (i + 0.5) * scale - 0.5
        if method == "nearest":
            m[i, min(int(np.floor((i + 0.5) * scale)), in_size - 1)] = 1.0
            continue
        src = min(max(src, 0.0), in_size - 1)
        lo = int(np.floor(src))
        hi = min(lo + 1, in_size - 1)
        w = src - lo
        m[i, lo] += 1.0 - w
        m[i, hi] += w
    return m


def resize_images(x, height, width, method, crop_to_aspect_ratio=False):
    """Resize a channels_last (B, H, W, C) node."""
    h, w = x.shape[1], x.shape[2]
    if crop_to_aspect_ratio:
        target = width / height
        ch, cw = (h, int(round(h * target))) if w / h > target else (int(round(w / target)), w)
        ch, cw = max(1, min(ch, h)), max(1, min(cw, w))
        top, left = (h - ch) // 2, (w - cw) // 2
        x = irb.slice(x, ((0, None), (top, top + ch), (left, left + cw), (0, x.shape[3])))
        h, w = ch, cw
    if (h, w) == (height, width):
        return x
    ah = irb.const(interpolation_matrix(height, h, method))
    aw = irb.const(interpolation_matrix(width, w, method))
    t = KerasTensor(x)
    t = ops.einsum("oh,bhwc->bowc", KerasTensor(ah), t)
    t = ops.einsum("pw,bowc->bopc", KerasTensor(aw), t)
    return t.node


class Resizing(Layer):
    def __init__(self, height, width, interpolation="bilinear", crop_to_aspect_ratio=False, pad_to_aspect_ratio=False,
                 fill_mode="constant", fill_value=0.0, antialias=False, data_format=None, **kwargs):
        super().__init__(**kwargs)
        if interpolation not in ("bilinear", "nearest"):
            raise ValueError(f"Resizing: interpolation={interpolation!r} is not supported ('bilinear', 'nearest')")
        for arg, value, default in (("pad_to_aspect_ratio", pad_to_aspect_ratio, False), ("antialias", antialias, False)):
            if value != default:
                raise ValueError(f"Resizing: argument {arg}={value!r} is not supported")
        self.height, self.width = int(height), int(width)
        self.interpolation, self.crop_to_aspect_ratio = interpolation, bool(crop_to_aspect_ratio)
        self.data_format = normalize_data_format(data_format)

    def call(self, inputs):
        x = to_channels_last(ops.cast(inputs, "float32").node, self.data_format)
        y = resize_images(x, self.height, self.width, self.interpolation, self.crop_to_aspect_ratio)
        return KerasTensor(from_channels_last(y, self.data_format))

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width,
                "interpolation": self.interpolation, "crop_to_aspect_ratio": self.crop_to_aspect_ratio,
                "data_format": self.data_format}


class CenterCrop(Layer):
    """Crops the central height x width window; an input smaller than that is resized up (crop to the
    target aspect ratio, then bilinear), as Keras 3 does."""

    def __init__(self, height, width, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.height, self.width = int(height), int(width)
        self.data_format = normalize_data_format(data_format)

    def call(self, inputs):
        x = to_channels_last(ops.cast(inputs, "float32").node, self.data_format)
        h, w = x.shape[1], x.shape[2]
        if h >= self.height and w >= self.width:
            top, left = (h - self.height) // 2, (w - self.width) // 2
            y = irb.slice(x, ((0, None), (top, top + self.height), (left, left + self.width), (0, x.shape[3])))
        else:
            y = resize_images(x, self.height, self.width, "bilinear", crop_to_aspect_ratio=True)
        return KerasTensor(from_channels_last(y, self.data_format))

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width, "data_format": self.data_format}


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
        batches = [np.asarray(data, np.float64)] if isinstance(data, np.ndarray) or np.isscalar(data) else \
            [np.asarray(b[0] if isinstance(b, tuple) else b, np.float64) for b in
             (data.as_numpy_iterator() if hasattr(data, "as_numpy_iterator") else data)]
        if steps is not None:
            batches = batches[:steps]
        if not batches:
            raise ValueError(f"Normalization '{self.name}': adapt() received no data")
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
