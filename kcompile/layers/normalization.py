"""BatchNormalization, LayerNormalization, UnitNormalization and GroupNormalization.

BatchNormalization's moving statistics are state updated inside the compiled train step (through
the trace's updates, like optimizer slots), only when training. As in Keras 3, a layer with
trainable=False runs in inference mode even during fit.
"""
from __future__ import annotations

import numpy as np

from .. import initializers, ops, regularizers
from ..ir import builder as irb
from ..tracing import KerasTensor, current_trace
from .base import InputSpec, Layer


def _axes_list(axis):
    return [int(a) for a in axis] if isinstance(axis, (list, tuple)) else [int(axis)]


def _param_shape(shape, axes):
    """Shape of per-feature parameters broadcast against the input (1 on the reduced axes)."""
    return tuple(shape[a] if a in axes else 1 for a in range(len(shape)))


class _Normalization(Layer):
    def __init__(self, axis, epsilon, center, scale, beta_initializer, gamma_initializer, beta_regularizer,
                 gamma_regularizer, beta_constraint, gamma_constraint, **kwargs):
        for arg, value in (("beta_constraint", beta_constraint), ("gamma_constraint", gamma_constraint)):
            if value is not None:
                raise ValueError(f"{type(self).__name__}: argument {arg}={value!r} is not supported")
        super().__init__(**kwargs)
        self.axis = axis
        self.epsilon = float(epsilon)
        self.center, self.scale = bool(center), bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self.supports_masking = True

    def _feature_axes(self, input_shape):
        rank = len(input_shape)
        axes = sorted(a % rank for a in _axes_list(self.axis))
        if any(input_shape[a] is None for a in axes) or 0 in axes:
            raise ValueError(f"{type(self).__name__} '{self.name}': axis {self.axis} must be a known, non-batch "
                             f"dimension of inputs of shape {input_shape}")
        return axes

    def _add_affine(self, shape):
        self.gamma = self.add_weight(name="gamma", shape=shape, initializer=self.gamma_initializer,
                                     regularizer=self.gamma_regularizer) if self.scale else None
        self.beta = self.add_weight(name="beta", shape=shape, initializer=self.beta_initializer,
                                    regularizer=self.beta_regularizer) if self.center else None

    def _affine(self, y, broadcast):
        if self.gamma is not None:
            y = ops.multiply(y, ops.reshape(self.gamma, broadcast))
        if self.beta is not None:
            y = ops.add(y, ops.reshape(self.beta, broadcast))
        return y

    def _common_config(self):
        config = super().get_config()
        config.update({"axis": self.axis, "epsilon": self.epsilon, "center": self.center, "scale": self.scale,
                       "beta_initializer": initializers.serialize(self.beta_initializer),
                       "gamma_initializer": initializers.serialize(self.gamma_initializer),
                       "beta_regularizer": regularizers.serialize(self.beta_regularizer),
                       "gamma_regularizer": regularizers.serialize(self.gamma_regularizer),
                       "beta_constraint": None, "gamma_constraint": None})
        return config


def _moments_over_replicas(x, reduce):
    """Mean and variance over the global batch (every replica's rows): sums and the row count
    all-reduced, then the centred squares likewise, so the two-pass formula of one process is kept.
    The all-reduce is differentiable (its adjoint is itself), so gradients cross replicas as they must."""
    def over_replicas(t, with_count):
        flat = [irb.reshape(t.node, (int(np.prod(t.shape)),))]
        if with_count:
            per_row = int(np.prod([x.shape[a] for a in reduce if a != 0]))
            flat.append(irb.mul(irb.const(np.full(1, per_row, np.float32)), irb.batch_size()))
        return irb.all_reduce_sum(irb.concat(flat, axis=0))

    total = ops.sum(x, axis=reduce, keepdims=True)
    summed = over_replicas(total, True)
    size = summed.shape[0] - 1
    count = irb.reshape(irb.slice(summed, [(size, size + 1)]), ())
    mean = KerasTensor(irb.reshape(irb.div(irb.slice(summed, [(0, size)]), count), total.shape))
    squares = over_replicas(ops.sum(ops.square(ops.subtract(x, mean)), axis=reduce, keepdims=True), False)
    variance = KerasTensor(irb.reshape(irb.div(squares, count), total.shape))
    return mean, variance


class BatchNormalization(_Normalization):
    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True, beta_initializer="zeros",
                 gamma_initializer="ones", moving_mean_initializer="zeros", moving_variance_initializer="ones",
                 beta_regularizer=None, gamma_regularizer=None, beta_constraint=None, gamma_constraint=None,
                 synchronized=False, renorm=False, virtual_batch_size=None, adjustment=None, fused=None,
                 **kwargs):
        for arg, value, default in (("renorm", renorm, False), ("virtual_batch_size", virtual_batch_size, None),
                                    ("adjustment", adjustment, None)):
            if value != default:
                raise ValueError(f"BatchNormalization: argument {arg}={value!r} is not supported")
        kwargs.pop("renorm_clipping", None), kwargs.pop("renorm_momentum", None)   # only meaningful with renorm
        super().__init__(axis, epsilon, center, scale, beta_initializer, gamma_initializer, beta_regularizer,
                         gamma_regularizer, beta_constraint, gamma_constraint, **kwargs)
        self.momentum = float(momentum)
        # data-parallel training: the batch statistics of every replica's rows (_moments_over_replicas);
        # in one process the same as per-replica statistics
        self.synchronized = bool(synchronized)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)

    def build(self, input_shape):
        axes = self._feature_axes(input_shape)
        shape = tuple(input_shape[a] for a in axes)
        self._add_affine(shape)
        self.moving_mean = self.add_weight(name="moving_mean", shape=shape, initializer=self.moving_mean_initializer,
                                           trainable=False)
        self.moving_variance = self.add_weight(name="moving_variance", shape=shape,
                                               initializer=self.moving_variance_initializer, trainable=False)
        self.input_spec = InputSpec(ndim=len(input_shape), axes={a: input_shape[a] for a in axes})
        self.built = True

    def call(self, inputs, training=False, mask=None):
        x = ops.cast(inputs, "float32")
        rank = len(x.shape)
        axes = self._feature_axes(x.shape)
        reduce = tuple(a for a in range(rank) if a not in axes)
        broadcast = _param_shape(x.shape, axes)
        if training and self.trainable:
            if self.synchronized and current_trace().row_offset is not None:   # data-parallel training
                mean, variance = _moments_over_replicas(x, reduce)
            else:
                mean = ops.mean(x, axis=reduce, keepdims=True)
                variance = ops.mean(ops.square(ops.subtract(x, mean)), axis=reduce, keepdims=True)
            m = self.momentum
            flat = tuple(x.shape[a] for a in axes)
            trace = current_trace()
            for var, batch_value in ((self.moving_mean, mean), (self.moving_variance, variance)):
                new = ops.add(ops.multiply(var, m), ops.multiply(ops.reshape(batch_value, flat), 1.0 - m))
                trace.add_update(var.slot.name, new.node)
        else:
            mean, variance = ops.reshape(self.moving_mean, broadcast), ops.reshape(self.moving_variance, broadcast)
        y = ops.multiply(ops.subtract(x, mean), ops.rsqrt(ops.add(variance, self.epsilon)))
        return self._affine(y, broadcast)

    def get_config(self):
        config = self._common_config()
        config.update({"momentum": self.momentum, "synchronized": self.synchronized,
                       "moving_mean_initializer": initializers.serialize(self.moving_mean_initializer),
                       "moving_variance_initializer": initializers.serialize(self.moving_variance_initializer)})
        return config


class LayerNormalization(_Normalization):
    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True, rms_scaling=False, beta_initializer="zeros",
                 gamma_initializer="ones", beta_regularizer=None, gamma_regularizer=None, beta_constraint=None,
                 gamma_constraint=None, **kwargs):
        super().__init__(axis, epsilon, center, scale, beta_initializer, gamma_initializer, beta_regularizer,
                         gamma_regularizer, beta_constraint, gamma_constraint, **kwargs)
        self.rms_scaling = bool(rms_scaling)

    def build(self, input_shape):
        axes = self._feature_axes(input_shape)
        if self.rms_scaling:            # Keras 3: gamma always, never beta (center/scale ignored)
            center, scale = self.center, self.scale
            self.center, self.scale = False, True
            self._add_affine(tuple(input_shape[a] for a in axes))
            self.center, self.scale = center, scale
        else:
            self._add_affine(tuple(input_shape[a] for a in axes))
        self.built = True

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        axes = tuple(self._feature_axes(x.shape))
        broadcast = _param_shape(x.shape, axes)
        if self.rms_scaling:
            # Keras 3 (every 3.x): x / sqrt(var(x) + eps) * gamma — the variance, not the mean square,
            # and x itself is not centred
            centered = ops.subtract(x, ops.mean(x, axis=axes, keepdims=True))
            variance = ops.mean(ops.square(centered), axis=axes, keepdims=True)
            y = ops.multiply(x, ops.rsqrt(ops.add(variance, self.epsilon)))
            return ops.multiply(y, ops.reshape(self.gamma, broadcast)) if self.gamma is not None else y
        mean = ops.mean(x, axis=axes, keepdims=True)
        centered = ops.subtract(x, mean)
        variance = ops.mean(ops.square(centered), axis=axes, keepdims=True)
        return self._affine(ops.multiply(centered, ops.rsqrt(ops.add(variance, self.epsilon))), broadcast)

    def get_config(self):
        config = self._common_config()
        config["rms_scaling"] = self.rms_scaling
        return config


class UnitNormalization(Layer):
    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis
        self.supports_masking = True

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        axes = tuple(_axes_list(self.axis))
        return ops.multiply(x, ops.rsqrt(ops.maximum(ops.sum(ops.square(x), axis=axes, keepdims=True), 1e-12)))

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}



class GroupNormalization(_Normalization):
    """Normalizes each sample over groups of channels (and all other non-batch axes); groups=-1 is
    instance normalization, groups=1 layer normalization over everything."""

    def __init__(self, groups=32, axis=-1, epsilon=1e-3, center=True, scale=True, beta_initializer="zeros",
                 gamma_initializer="ones", beta_regularizer=None, gamma_regularizer=None, beta_constraint=None,
                 gamma_constraint=None, **kwargs):
        if isinstance(axis, (list, tuple)):
            raise ValueError(f"GroupNormalization: axis must be a single integer, got {axis!r}")
        super().__init__(axis, epsilon, center, scale, beta_initializer, gamma_initializer, beta_regularizer,
                         gamma_regularizer, beta_constraint, gamma_constraint, **kwargs)
        self.groups = int(groups)

    def _groups_for(self, channels):
        groups = channels if self.groups == -1 else self.groups
        if groups <= 0 or groups > channels or channels % groups:
            raise ValueError(f"GroupNormalization '{self.name}': the number of channels ({channels}) must be a "
                             f"multiple of groups ({self.groups}) and groups must not exceed it")
        return groups

    def build(self, input_shape):
        (axis,) = self._feature_axes(input_shape)
        self._groups_for(input_shape[axis])
        self._add_affine((input_shape[axis],))
        self.input_spec = InputSpec(ndim=len(input_shape), axes={axis: input_shape[axis]})
        self.built = True

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        shape = tuple(x.shape)
        (axis,) = self._feature_axes(shape)
        channels = shape[axis]
        groups = self._groups_for(channels)
        grouped = ops.reshape(x, (-1,) + shape[1:axis] + (groups, channels // groups) + shape[axis + 1:])
        reduce = tuple(a for a in range(1, len(shape) + 1) if a != axis)
        mean = ops.mean(grouped, axis=reduce, keepdims=True)
        centered = ops.subtract(grouped, mean)
        variance = ops.mean(ops.square(centered), axis=reduce, keepdims=True)
        y = ops.reshape(ops.multiply(centered, ops.rsqrt(ops.add(variance, self.epsilon))), (-1,) + shape[1:])
        return self._affine(y, _param_shape(shape, [axis]))

    def get_config(self):
        config = self._common_config()
        config["groups"] = self.groups
        return config


class SyncBatchNormalization(BatchNormalization):
    """TF's `SyncBatchNormalization`: BatchNormalization(synchronized=True)."""

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, **kwargs):
        kwargs.pop("synchronized", None)
        super().__init__(axis=axis, momentum=momentum, epsilon=epsilon, synchronized=True, **kwargs)


class RMSNormalization(Layer):
    """Keras 3's RMSNormalization: x * rsqrt(mean(x², axis) + epsilon) * scale, with a `scale`
    weight (initialized to ones) over the normalized axes."""

    def __init__(self, axis=-1, epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.axis = sorted(_axes_list(axis)) if isinstance(axis, (list, tuple)) else int(axis)
        self.epsilon = float(epsilon)
        self.supports_masking = True

    def _axes(self, rank):
        axes = sorted(a % rank for a in _axes_list(self.axis))
        if any(a == 0 for a in axes):
            raise ValueError(f"RMSNormalization '{self.name}': axis {self.axis} includes the batch axis")
        return axes

    def build(self, input_shape):
        axes = self._axes(len(input_shape))
        if any(input_shape[a] is None for a in axes):
            raise ValueError(f"RMSNormalization '{self.name}': the normalized axes must be known, got {input_shape}")
        self.scale = self.add_weight(name="scale", shape=tuple(input_shape[a] for a in axes), initializer="ones")
        self.built = True

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        axes = tuple(self._axes(x.ndim))
        rrms = ops.rsqrt(ops.add(ops.mean(ops.square(x), axis=axes, keepdims=True), self.epsilon))
        return ops.multiply(ops.multiply(x, rrms), ops.reshape(self.scale, _param_shape(x.shape, axes)[1:]))

    def get_config(self):
        axis = self.axis if isinstance(self.axis, list) else [self.axis]
        return {**super().get_config(), "axis": axis, "epsilon": self.epsilon}
