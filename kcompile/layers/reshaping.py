"""Reshaping layers: Permute, RepeatVector, ZeroPadding1D/2D/3D, Cropping1D/2D/3D, UpSampling1D/2D/3D
(Reshape and Flatten are in core.py). Spatial layers take channels_last or channels_first."""
from __future__ import annotations

from ..ir import builder as irb
from ..ir.graph import BATCH
from ..tracing import KerasTensor
from .base import InputSpec, Layer
from .convolutional import from_channels_last, normalize_data_format, to_channels_last
from .preprocessing.image import resize_images


class Permute(Layer):
    def __init__(self, dims, **kwargs):
        super().__init__(**kwargs)
        self.dims = tuple(int(d) for d in dims)
        if sorted(self.dims) != list(range(1, len(self.dims) + 1)):
            raise ValueError(f"Invalid permutation argument `dims` for Permute Layer. The set of indices in `dims` "
                             f"must be consecutive and start from 1. Received dims={dims}")
        self.supports_masking = True

    def call(self, inputs):
        return KerasTensor(irb.transpose(inputs.node, (0,) + self.dims))

    def get_config(self):
        return {**super().get_config(), "dims": list(self.dims)}


class RepeatVector(Layer):
    def __init__(self, n, **kwargs):
        super().__init__(**kwargs)
        self.n = int(n)
        self.input_spec = InputSpec(ndim=2)

    def call(self, inputs):
        x = inputs.node
        return KerasTensor(irb.broadcast_to(irb.reshape(x, (BATCH, 1, x.shape[1])), (BATCH, self.n, x.shape[1])))

    def get_config(self):
        return {**super().get_config(), "n": self.n}


def _pairs(value, rank, name):
    """Keras's padding/cropping argument: an int, a tuple of ints, or a tuple of (before, after) pairs."""
    if isinstance(value, int):
        return ((value, value),) * rank
    value = tuple(value)
    if rank == 1 and len(value) == 2 and all(isinstance(v, int) for v in value):
        value = (value,)                       # 1D layers take (before, after) for their one axis
    if len(value) != rank:
        raise ValueError(f"`{name}` should have {rank} elements. Received: {value}")
    out = []
    for v in value:
        pair = (int(v), int(v)) if isinstance(v, int) else tuple(int(a) for a in v)
        if len(pair) != 2 or min(pair) < 0:
            raise ValueError(f"`{name}` entries must be non-negative ints or pairs of them. Received: {value}")
        out.append(pair)
    return tuple(out)


class _Spatial(Layer):
    rank = 2

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        if self.rank == 1 and data_format is not None:
            raise ValueError(f"{type(self).__name__}: argument data_format is not supported (Keras's 1D layer is "
                             f"channels_last only)")
        self.data_format = "channels_last" if self.rank == 1 else normalize_data_format(data_format)
        self.input_spec = InputSpec(ndim=self.rank + 2)

    def call(self, inputs):
        x = to_channels_last(inputs.node, self.data_format)
        return KerasTensor(from_channels_last(self._apply(x), self.data_format))

    def get_config(self):
        config = super().get_config()
        if self.rank > 1:
            config["data_format"] = self.data_format
        return config


class _ZeroPadding(_Spatial):
    def __init__(self, padding=1, data_format=None, **kwargs):
        super().__init__(data_format, **kwargs)
        self.padding = _pairs(padding, self.rank, "padding")

    def _apply(self, x):
        return irb.pad(x, ((0, 0),) + self.padding + ((0, 0),))

    def get_config(self):
        return {**super().get_config(), "padding": [list(p) for p in self.padding]}


class _Cropping(_Spatial):
    def __init__(self, cropping=1, data_format=None, **kwargs):
        super().__init__(data_format, **kwargs)
        self.cropping = _pairs(cropping, self.rank, "cropping")

    def _apply(self, x):
        bounds = [(0, None)]
        for d, (lo, hi) in zip(x.shape[1:-1], self.cropping):
            if lo + hi >= d:
                raise ValueError(f"Cropping {self.cropping} removes everything from a dimension of size {d} "
                                 f"(layer '{self.name}')")
            bounds.append((lo, d - hi))
        return irb.slice(x, tuple(bounds) + ((0, x.shape[-1]),))

    def get_config(self):
        return {**super().get_config(), "cropping": [list(c) for c in self.cropping]}


class _UpSampling(_Spatial):
    def __init__(self, size=2, data_format=None, interpolation="nearest", **kwargs):
        super().__init__(data_format, **kwargs)
        self.size = (int(size),) * self.rank if isinstance(size, int) else tuple(int(s) for s in size)
        allowed = ("nearest", "bilinear") if self.rank == 2 else ("nearest",)
        if interpolation not in allowed:
            raise ValueError(f"{type(self).__name__}: interpolation={interpolation!r} is not supported "
                             f"(supported: {', '.join(allowed)})")
        self.interpolation = interpolation

    def _apply(self, x):
        if self.interpolation == "bilinear":
            # the same half-pixel bilinear resize as layers.Resizing / keras.ops.image.resize
            h, w = x.shape[1], x.shape[2]
            return resize_images(x, h * self.size[0], w * self.size[1], "bilinear")
        # repeat every spatial index: insert a size-s axis after each spatial axis, broadcast, merge
        spatial, c = x.shape[1:-1], x.shape[-1]
        expanded = (BATCH,) + sum(((d, 1) for d in spatial), ()) + (c,)
        target = (BATCH,) + sum(((d, s) for d, s in zip(spatial, self.size)), ()) + (c,)
        y = irb.broadcast_to(irb.reshape(x, expanded), target)
        return irb.reshape(y, (BATCH,) + tuple(d * s for d, s in zip(spatial, self.size)) + (c,))

    def get_config(self):
        config = {**super().get_config(), "size": list(self.size)}
        if self.rank == 2:
            config["interpolation"] = self.interpolation
        return config


class ZeroPadding1D(_ZeroPadding):
    """Pads the steps axis; Keras 3 added data_format (tf-keras's layer is channels_last only)."""
    rank = 1

    def __init__(self, padding=1, data_format=None, **kwargs):
        Layer.__init__(self, **kwargs)
        self.data_format = normalize_data_format(data_format)
        self.input_spec = InputSpec(ndim=3)
        self.padding = _pairs(padding, 1, "padding")

    def get_config(self):
        config = super().get_config()
        if self.data_format == "channels_first":   # only Keras 3 has the argument: written when it matters
            config["data_format"] = self.data_format
        return config


class ZeroPadding2D(_ZeroPadding):
    rank = 2


class ZeroPadding3D(_ZeroPadding):
    rank = 3


class Cropping1D(_Cropping):
    rank = 1


class Cropping2D(_Cropping):
    rank = 2


class Cropping3D(_Cropping):
    rank = 3


class UpSampling1D(_UpSampling):
    rank = 1


class UpSampling2D(_UpSampling):
    rank = 2


class UpSampling3D(_UpSampling):
    rank = 3
