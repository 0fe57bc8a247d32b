"""MultiHeadAttention: Keras's multi-head scaled dot-product attention.

query (batch, <query dims>, dim) and value/key (batch, <key dims>, dim) are projected per head by
einsum kernels (query/key: (dim, num_heads, key_dim), value: (dim, num_heads, value_dim)), scores
are softmaxed over the attention axes (by default every axis between the batch and the features),
and the heads are combined by the output kernel (num_heads, value_dim, *output_shape).

The projections' weights belong to this layer, named as Keras names them ("query/kernel",
"query/bias", "key/...", "value/...", "attention_output/..."), in Keras's order, so legacy HDF5
files (Keras 2 and Keras 3 `.h5`) load by position. Keras 3 `.keras` files keep them under the
private sublayer attributes (`_query_dense/vars`, ...): loading one here fails with an error
naming the layer's weights rather than leaving the weights unset.
"""
from __future__ import annotations

import string

import numpy as np

from .. import initializers, ops, random_state, regularizers
from ..ir import builder as irb
from ..tracing import KerasTensor, current_trace
from .base import Layer, _as_node
from .core import dropout_mask
from .einsum_dense import _FanShaped, analyze, contract


def projection_equation(free_dims, bound_dims, output_dims):
    """Keras's projection einsum: `free` letters kept, `bound` contracted, `output` new; the bias
    covers the new letters. Returns (equation, bias axes)."""
    letters = string.ascii_lowercase
    free = letters[:free_dims]
    bound = letters[free_dims:free_dims + bound_dims]
    out = letters[free_dims + bound_dims:free_dims + bound_dims + output_dims]
    return f"{free}{bound},{bound}{out}->{free}{out}", out


def attention_equations(rank, attention_axes):
    """(scores equation over (key, query), combine equation over (scores, value), scores rank) for
    projected tensors of `rank` (batch, <dims>, heads, channels), attending over `attention_axes`."""
    letters = string.ascii_lowercase
    target = letters[:rank]
    batch_dims = [i for i in range(rank) if i not in attention_axes and i != rank - 1]
    source, extra = "", rank
    for i in range(rank):
        if i in batch_dims or i == rank - 1:
            source += target[i]
        else:
            source += letters[extra]
            extra += 1
    product = "".join([target[i] for i in batch_dims] + [target[i] for i in attention_axes] +
                      [source[i] for i in attention_axes])
    return f"{source},{target}->{product}", f"{product},{source}->{target}", len(product)


class MultiHeadAttention(Layer):
    def __init__(self, num_heads, key_dim, value_dim=None, dropout=0.0, use_bias=True, output_shape=None,
                 attention_axes=None, sliding_window=None, flash_attention=None, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, use_gate=False, seed=None, **kwargs):
        if not isinstance(num_heads, (int, np.integer)) or num_heads <= 0:
            raise ValueError("Received an invalid value for argument `num_heads`, expected a positive integer. "
                             f"Received: num_heads={num_heads}")
        if not isinstance(key_dim, (int, np.integer)) or key_dim <= 0:
            raise ValueError("Received an invalid value for argument `key_dim`, expected a positive integer. "
                             f"Received: key_dim={key_dim}")
        if value_dim is not None and (not isinstance(value_dim, (int, np.integer)) or value_dim <= 0):
            raise ValueError("Received an invalid value for argument `value_dim`, expected a positive integer or "
                             f"`None`. Received: value_dim={value_dim}")
        # tf-keras writes the built shapes and softmax_robust_masking into its configs; Keras 3 never does.
        # Their presence marks a Keras 2 layer, whose activity regularizer applies to the layer's output
        # (Keras 3 applies it to the output of each projection instead).
        keras2 = any(k in kwargs for k in ("query_shape", "key_shape", "value_shape", "softmax_robust_masking"))
        query_shape, key_shape, value_shape = (kwargs.pop(k, None) for k in ("query_shape", "key_shape", "value_shape"))
        softmax_robust_masking = kwargs.pop("softmax_robust_masking", False)
        super().__init__(activity_regularizer=activity_regularizer if keras2 else None, **kwargs)
        for arg, value in (("kernel_constraint", kernel_constraint), ("bias_constraint", bias_constraint),
                           ("flash_attention", flash_attention or None),
                           ("softmax_robust_masking", softmax_robust_masking or None)):
            if value is not None:
                raise ValueError(f"MultiHeadAttention '{self.name}': argument {arg}={value!r} is not supported")
        if sliding_window is not None and (not isinstance(sliding_window, (int, np.integer)) or sliding_window <= 0):
            raise ValueError(f"MultiHeadAttention '{self.name}': sliding_window must be a positive integer or None, "
                             f"got {sliding_window!r}")
        if not 0 <= float(dropout) < 1:
            raise ValueError(f"MultiHeadAttention '{self.name}': dropout must be in [0, 1), got {dropout}")
        self.num_heads, self.key_dim = int(num_heads), int(key_dim)
        self.value_dim = int(value_dim) if value_dim else self.key_dim
        self.dropout = float(dropout)
        self.use_bias = bool(use_bias)
        self.use_gate = bool(use_gate)
        if output_shape:
            output_shape = (int(output_shape),) if isinstance(output_shape, (int, np.integer)) else \
                tuple(int(d) for d in output_shape)
        self.output_shape_arg = output_shape or None
        if isinstance(attention_axes, (int, np.integer)):
            attention_axes = (int(attention_axes),)
        elif attention_axes is not None and not isinstance(attention_axes, (list, tuple)):
            raise ValueError("`attention_axes` must be an int, list, or tuple. "
                             f"Received: attention_axes={attention_axes}")
        self.attention_axes = None if attention_axes is None else tuple(int(a) for a in attention_axes)
        self.sliding_window = None if sliding_window is None else int(sliding_window)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        # as in Keras 3, the activity regularizer applies to every projection's output
        self.projection_activity_regularizer = None if keras2 else regularizers.get(activity_regularizer)
        self.seed = seed
        self._rng_seed = int(seed) if seed is not None else random_state.next_seed()
        self.supports_masking = True
        self._projections = None
        if query_shape is not None and value_shape is not None:     # Keras 2 configs of built layers
            self._build_projections(tuple(query_shape), tuple(value_shape),
                                    tuple(key_shape) if key_shape is not None else None)

    # ------------------------------------------------------------ weights
    def _projection(self, name, equation, bias_axes, input_shape, output_shape):
        kernel_shape, bias_shape, full, in_axes, out_axes = analyze(
            equation, bias_axes if self.use_bias else None, input_shape, output_shape)
        init = self.kernel_initializer
        if isinstance(init, initializers.VarianceScaling):
            init = _FanShaped(init, in_axes, out_axes)
        kernel = self.add_weight(name=f"{name}/kernel", shape=tuple(kernel_shape), initializer=init,
                                 regularizer=self.kernel_regularizer)
        bias = None if bias_shape is None else self.add_weight(
            name=f"{name}/bias", shape=tuple(bias_shape), initializer=self.bias_initializer,
            regularizer=self.bias_regularizer)
        return {"equation": equation, "kernel": kernel, "bias": bias, "output_shape": tuple(full)}

    def _build_projections(self, query_shape, value_shape, key_shape=None):
        key_shape = value_shape if key_shape is None else key_shape
        if tuple(value_shape[1:-1]) != tuple(key_shape[1:-1]):
            raise ValueError("All dimensions of `value` and `key`, except the last one, must be equal. Received: "
                             f"value_shape={value_shape} and key_shape={key_shape}")
        self._shapes = (tuple(query_shape), tuple(value_shape), tuple(key_shape))
        heads = lambda rank, last: [None] * (rank - 2) + [self.num_heads, last]      # noqa: E731
        p = {}
        eq, bias = projection_equation(len(query_shape) - 1, 1, 2)
        p["query"] = self._projection("query", eq, bias, query_shape, heads(len(query_shape), self.key_dim))
        eq, bias = projection_equation(len(key_shape) - 1, 1, 2)
        p["key"] = self._projection("key", eq, bias, key_shape, heads(len(key_shape), self.key_dim))
        if self.use_gate:
            eq, bias = projection_equation(len(query_shape) - 1, 1, 2)
            p["gate"] = self._projection("gate", eq, bias, query_shape, heads(len(query_shape), self.value_dim))
        eq, bias = projection_equation(len(value_shape) - 1, 1, 2)
        p["value"] = self._projection("value", eq, bias, value_shape, heads(len(value_shape), self.value_dim))
        rank = len(query_shape) + 1
        axes = tuple(range(1, rank - 2)) if self.attention_axes is None else \
            tuple(a if a >= 0 else rank - 1 + a for a in self.attention_axes)
        self._attention_axes = axes
        self._scores_eq, self._combine_eq, scores_rank = attention_equations(rank, axes)
        self._norm_axes = tuple(range(scores_rank - len(axes), scores_rank))
        out_shape = self.output_shape_arg or (query_shape[-1],)
        eq, bias = projection_equation(len(query_shape) - 1, 2, len(out_shape))
        heads_shape = tuple(p["query"]["output_shape"][:-1]) + (self.value_dim,)
        p["attention_output"] = self._projection("attention_output", eq, bias, heads_shape,
                                                 [None] * (len(query_shape) - 1 - len(out_shape)) + list(out_shape))
        self._projections = p

    # the EinsumDense sublayers Keras 3 keeps these projections in (their paths in .keras files)
    _KERAS3_SUBLAYERS = {"query": "query_dense", "key": "key_dense", "value": "value_dense",
                         "gate": "gate_dense", "attention_output": "output_dense"}

    def keras3_weight_groups(self):
        """{attribute: [kernel, bias]}: where a Keras 3 file holds each projection's variables."""
        return {self._KERAS3_SUBLAYERS[name]: [v for v in (p["kernel"], p["bias"]) if v is not None]
                for name, p in (self._projections or {}).items()}

    def get_build_config(self):
        """Keras 3's: the shapes the projections were built for, by argument name."""
        if self._projections is None:
            return {}
        query, value, key = (list(shape) for shape in self._shapes)
        shapes = {"query_shape": query, "value_shape": value}
        if key != value:
            shapes["key_shape"] = key
        return {"shapes_dict": shapes}

    def build(self, query_shape, value_shape=None, key_shape=None):
        # the value (and key) shapes reach the layer with the first call; projections are made then
        if value_shape is not None and self._projections is None:
            self._build_projections(tuple(query_shape), tuple(value_shape),
                                    tuple(key_shape) if key_shape is not None else None)
        self.built = True

    def _project(self, name, x):
        p = self._projections[name]
        y = contract(p["equation"], x, p["kernel"])
        if p["bias"] is not None:
            y = ops.add(y, p["bias"])
        if name == "gate":
            y = ops.sigmoid(y)
        if self.projection_activity_regularizer is not None:
            penalty = _as_node(self.projection_activity_regularizer(y))
            current_trace().add_loss(irb.div(penalty, irb.batch_size()))
        return y

    # ------------------------------------------------------------ call
    def __call__(self, *args, **kwargs):
        if len(args) > 1 and not isinstance(args[0], KerasTensor):
            # called on arrays: value and key travel as keyword arguments, which the eager call
            # turns into batch inputs like the query
            kwargs.update(zip(("value", "key"), args[1:]))
            args = args[:1]
        return super().__call__(*args, **kwargs)

    def call(self, query, value, key=None, query_mask=None, value_mask=None, key_mask=None, attention_mask=None,
             return_attention_scores=False, training=None, use_causal_mask=False):
        explicit_key = key is not None
        key = value if key is None else key
        if self._projections is None:
            self._build_projections(tuple(query.shape), tuple(value.shape),
                                    tuple(key.shape) if explicit_key else None)
        elif tuple(query.shape[1:]) != self._shapes[0][1:] or tuple(value.shape[1:]) != self._shapes[1][1:]:
            raise ValueError(f"MultiHeadAttention '{self.name}' was built for query {self._shapes[0]} and value "
                             f"{self._shapes[1]}, called on {tuple(query.shape)} and {tuple(value.shape)}")
        query_mask = getattr(query, "_keras_mask", None) if query_mask is None else query_mask
        value_mask = getattr(value, "_keras_mask", None) if value_mask is None else value_mask
        if explicit_key and key_mask is None:
            key_mask = getattr(key, "_keras_mask", None)
        mask = self._attention_mask(query, value, query_mask, value_mask, key_mask, attention_mask, use_causal_mask)
        gate = self._project("gate", query) if self.use_gate else None
        q = self._project("query", query)
        k = self._project("key", key)
        v = self._project("value", value)
        q = ops.multiply(q, 1.0 / float(np.sqrt(self.key_dim)))
        scores = ops.einsum(self._scores_eq, k, q)
        probs = self._masked_softmax(scores, mask)
        dropped = probs
        if training and self.dropout > 0:
            dropped = ops.multiply(probs, dropout_mask(probs, self.dropout, self._rng_seed))
        out = ops.einsum(self._combine_eq, dropped, v)
        if gate is not None:
            out = ops.multiply(out, gate)
        out = self._project("attention_output", out)
        return (out, probs) if return_attention_scores else out

    def _attention_mask(self, query, value, query_mask, value_mask, key_mask, attention_mask, use_causal_mask):
        """The (batch, T, S) keep-mask (float 0/1) of Keras's rules, or None."""
        parts = []
        if query_mask is not None:
            parts.append(ops.expand_dims(ops.cast(query_mask, "float32"), -1))
        for m in (value_mask, key_mask):
            if m is not None:
                parts.append(ops.expand_dims(ops.cast(m, "float32"), -2))
        t, s = query.shape[1], value.shape[1]
        if use_causal_mask:
            parts.append((np.arange(t)[:, None] >= np.arange(s)[None, :]).astype("float32")[None])
        if self.sliding_window is not None:
            band = np.abs(np.arange(t)[:, None] - np.arange(s)[None, :]) < self.sliding_window
            parts.append(band.astype("float32")[None])
        if attention_mask is not None:
            parts.insert(0, ops.cast(ops.not_equal(attention_mask, 0), "float32")
                         if isinstance(attention_mask, KerasTensor) else
                         np.asarray(np.asarray(attention_mask) != 0, "float32"))
        if not parts:
            return None
        mask = parts[0]
        for m in parts[1:]:
            mask = ops.multiply(mask, m)
        return mask

    def _masked_softmax(self, scores, mask):
        x = scores
        if mask is not None:
            axis = -len(self._attention_axes) * 2 - 1
            while len(mask.shape) < len(x.shape):
                mask = ops.expand_dims(mask, axis)
            x = ops.add(x, ops.multiply(ops.subtract(1.0, mask), -1e9))
        if len(self._norm_axes) == 1:
            return ops.softmax(x, axis=self._norm_axes[0])
        e = ops.exp(ops.subtract(x, ops.max(x, axis=self._norm_axes, keepdims=True)))
        return ops.divide(e, ops.sum(e, axis=self._norm_axes, keepdims=True))

    def compute_mask(self, inputs, mask=None):
        return mask                              # the query's mask, as Keras sets it on the output

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_heads": self.num_heads, "key_dim": self.key_dim, "value_dim": self.value_dim,
            "dropout": self.dropout, "use_bias": self.use_bias, "use_gate": self.use_gate,
            "output_shape": None if self.output_shape_arg is None else list(self.output_shape_arg),
            "attention_axes": None if self.attention_axes is None else list(self.attention_axes),
            "sliding_window": self.sliding_window,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "activity_regularizer": regularizers.serialize(self.projection_activity_regularizer
                                                           or self.activity_regularizer),
            "kernel_constraint": None, "bias_constraint": None, "seed": self.seed,
        })
        return config
