"""TimeDistributed: apply a layer (or a whole model) to every time step of (batch, time, ...) inputs.

Layers that act on the last axis alone (Dense, Activation, the elementwise activation layers,
Softmax over the last axis) are applied to the whole sequence at once; any other layer is applied to each step (static time length) with one shared
set of weights, so its gradients sum over steps.
"""
from __future__ import annotations

from .. import ops
from ..ir import builder as irb
from ..ir.graph import BATCH
from ..tracing import KerasTensor
from .base import Layer
from .activation_layers import ELU, LeakyReLU, ReLU, Softmax
from .core import Activation, Dense
from .serialization import serialize_layer

_PER_LAST_AXIS = (Dense, Activation, ReLU, LeakyReLU, ELU)


def _acts_on_last_axis(layer):
    if type(layer) is Softmax:
        return layer.axis in (-1, [-1], (-1,))
    return type(layer) in _PER_LAST_AXIS


class TimeDistributed(Layer):
    def __init__(self, layer, **kwargs):
        if not isinstance(layer, Layer):
            raise ValueError(f"Please initialize `TimeDistributed` layer with a `keras.layers.Layer` instance. "
                             f"Received: {layer}")
        super().__init__(**kwargs)
        self.layer = layer
        self.supports_masking = True

    def build(self, input_shape):
        if len(input_shape) < 3:
            raise ValueError(f"`TimeDistributed` Layer should be passed an `input_shape` with at least 3 "
                             f"dimensions, received: {input_shape}")
        self.layer._maybe_build((input_shape[0],) + tuple(input_shape[2:]))
        self.built = True

    def call(self, inputs, training=False):
        kwargs = {"training": training} if self.layer._call_accepts("training") else {}
        if _acts_on_last_axis(self.layer):
            return self.layer(inputs, **kwargs)
        x = inputs.node
        steps = x.shape[1]
        outs = []
        for t in range(steps):
            bounds = ((0, None), (t, t + 1)) + tuple((0, d) for d in x.shape[2:])
            step = KerasTensor(irb.reshape(irb.slice(x, bounds), (BATCH,) + tuple(x.shape[2:])))
            outs.append(self.layer(step, **kwargs))
        return ops.stack(outs, axis=1)

    def compute_mask(self, inputs, mask=None):
        return mask

    def get_config(self):
        return {**super().get_config(), "layer": serialize_layer(self.layer)}
