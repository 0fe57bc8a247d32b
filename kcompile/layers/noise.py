"""Noise and regularization layers, active only when training: GaussianNoise, GaussianDropout,
AlphaDropout, SpatialDropout1D/2D/3D, ActivityRegularization.

Random numbers come from the same counter-based generator as Dropout (keyed by the layer's seed
and the training step), so runs are reproducible under set_random_seed; normal samples use
Box-Muller on two uniform streams (ir/builder.random_normal).
"""
from __future__ import annotations

import numpy as np

from .. import ops, random_state, regularizers
from ..ir import builder as irb
from ..ir.graph import BATCH
from ..tracing import KerasTensor, current_trace
from .base import InputSpec, Layer
from .convolutional import normalize_data_format
from .core import Dropout, dropout_mask


def _check_rate(name, rate):
    if not 0 <= rate < 1:
        raise ValueError(f"Invalid value received for argument `rate`. Expected a float value between 0 and 1. "
                         f"Received: rate={rate}")


class _Noise(Layer):
    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self._rng_seed = int(seed) if seed is not None else random_state.next_seed()
        self.supports_masking = True

    def _normal(self, like):
        trace = current_trace()
        return KerasTensor(irb.random_normal(like.node.shape, self._rng_seed, trace.step_node(), trace.row_offset))


class GaussianNoise(_Noise):
    def __init__(self, stddev, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if stddev < 0:
            raise ValueError(f"Invalid value received for argument `stddev`. Expected a float value >= 0. "
                             f"Received: stddev={stddev}")
        self.stddev = float(stddev)

    def call(self, inputs, training=False):
        if not training or self.stddev == 0:
            return inputs
        return ops.add(inputs, ops.multiply(self._normal(inputs), self.stddev))

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev, "seed": self.seed}


class GaussianDropout(_Noise):
    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        _check_rate("rate", rate)
        self.rate = float(rate)

    def call(self, inputs, training=False):
        if not training or self.rate == 0:
            return inputs
        stddev = float(np.sqrt(self.rate / (1.0 - self.rate)))
        return ops.multiply(inputs, ops.add(ops.multiply(self._normal(inputs), stddev), 1.0))

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


class AlphaDropout(_Noise):
    """Dropout that keeps SELU activations' mean and variance (Keras's affine correction)."""

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        _check_rate("rate", rate)
        self.rate, self.noise_shape = float(rate), noise_shape

    def call(self, inputs, training=False):
        if not training or self.rate == 0:
            return inputs
        alpha, scale = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
        alpha_p = -alpha * scale
        trace = current_trace()
        keep = ops.cast(ops.greater_equal(KerasTensor(irb.random_uniform(inputs.node.shape, self._rng_seed,
                                                                          trace.step_node(), trace.row_offset)),
                                          self.rate), "float32")
        a = ((1 - self.rate) * (1 + self.rate * alpha_p ** 2)) ** -0.5
        b = -a * alpha_p * self.rate
        x = ops.add(ops.multiply(inputs, keep), ops.multiply(ops.subtract(1.0, keep), alpha_p))
        return ops.add(ops.multiply(x, a), b)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "noise_shape": self.noise_shape, "seed": self.seed}


class _SpatialDropout(Dropout):
    """Drops whole feature maps: one keep/drop draw per (sample, channel)."""
    rank = 2

    def __init__(self, rate, data_format=None, seed=None, **kwargs):
        super().__init__(rate, seed=seed, **kwargs)
        self.data_format = "channels_last" if self.rank == 1 else normalize_data_format(data_format)
        self.input_spec = InputSpec(ndim=self.rank + 2)

    def call(self, inputs, training=False):
        if not training or self.rate == 0:
            return inputs
        shape = inputs.node.shape
        if self.data_format == "channels_last":
            noise = (BATCH,) + (1,) * (len(shape) - 2) + (shape[-1],)
        else:
            noise = (BATCH, shape[1]) + (1,) * (len(shape) - 2)
        return ops.multiply(inputs, dropout_mask(inputs, self.rate, self._rng_seed, noise))

    def get_config(self):
        config = super().get_config()
        config.pop("noise_shape", None)
        if self.rank > 1:
            config["data_format"] = self.data_format
        return config


class SpatialDropout1D(_SpatialDropout):
    rank = 1


class SpatialDropout2D(_SpatialDropout):
    rank = 2


class SpatialDropout3D(_SpatialDropout):
    rank = 3


class ActivityRegularization(Layer):
    def __init__(self, l1=0.0, l2=0.0, **kwargs):
        super().__init__(activity_regularizer=regularizers.L1L2(l1=l1, l2=l2), **kwargs)
        self.l1, self.l2 = float(l1), float(l2)
        self.supports_masking = True

    def call(self, inputs):
        return inputs

    def get_config(self):
        config = super().get_config()
        config.pop("activity_regularizer", None)
        return {**config, "l1": self.l1, "l2": self.l2}
