"""Image preprocessing layers that compile into the model: Rescaling, CenterCrop, Resizing.

Resizing is a pair of constant interpolation matrices (half-pixel centres, as Keras's backends
use without antialiasing) applied along height and width; with inputs of unknown size
(`Input(shape=(None, None, 3))`) they are rebuilt for each concrete input shape.
"""
from __future__ import annotations

import numpy as np

from ... import ops
from ...ir import builder as irb
from ...tracing import KerasTensor
from ..base import Layer
from ..convolutional import from_channels_last, normalize_data_format, to_channels_last


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
