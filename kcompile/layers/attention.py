"""Attention (dot-product or concat scores) and AdditiveAttention (Bahdanau), Keras's two
single-head attention layers. Both take [query, value] or [query, value, key] (key defaults to
value), softmax the (batch, Tq, Tv) scores over Tv and return the weighted sum of the values.

Masks follow Keras: the value mask (and, with use_causal_mask, a lower-triangular mask) pushes
masked scores down by 1e9 before the softmax; the query mask zeroes masked output rows and is
the output's mask.
"""
from __future__ import annotations

import numpy as np

from .. import ops, random_state
from .base import Layer
from .core import dropout_mask


def causal_mask(tq, tv):
    """(1, Tq, Tv) float 0/1: query position i sees value positions j <= i."""
    return (np.arange(tq)[:, None] >= np.arange(tv)[None, :]).astype("float32")[None]


def mask_scores(scores, keep):
    """Scores with the positions where `keep` is 0 lowered by 1e9 (Keras's padding bias)."""
    return ops.where(ops.equal(keep, 0.0), ops.subtract(scores, 1e9), scores)


class _BaseAttention(Layer):
    def __init__(self, use_scale, dropout, seed, **kwargs):
        causal = kwargs.pop("causal", False)       # Keras 2's argument; False is Keras 3's behaviour
        if causal:
            raise ValueError(f"{type(self).__name__}: argument causal={causal!r} is not supported "
                             "(Keras 3 removed it; pass use_causal_mask=True when calling the layer)")
        super().__init__(**kwargs)
        if not 0 <= float(dropout) < 1:
            raise ValueError(f"{type(self).__name__}: dropout must be in [0, 1), got {dropout}")
        self.use_scale = bool(use_scale)
        self.dropout = float(dropout)
        self.seed = seed
        self._rng_seed = int(seed) if seed is not None else random_state.next_seed()
        self.supports_masking = True

    def _validate(self, inputs, mask=None):
        name = type(self).__name__
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(f"{name} layer must be called on a list of inputs, namely [query, value] or "
                             f"[query, value, key]. Received: inputs={inputs}.")
        if not 2 <= len(inputs) <= 3:
            raise ValueError(f"{name} layer accepts inputs list of length 2 or 3, namely [query, value] or "
                             f"[query, value, key]. Received length: {len(inputs)}.")
        if mask is not None and (not isinstance(mask, (list, tuple)) or not 2 <= len(mask) <= 3):
            raise ValueError(f"{name} layer mask must be a list of length 2 or 3, namely [query_mask, value_mask]. "
                             f"Received: mask={mask}.")

    def build(self, input_shape):
        self._validate(input_shape)
        self._build_scores(input_shape)
        self.built = True

    def call(self, inputs, mask=None, training=False, return_attention_scores=False, use_causal_mask=False):
        self._validate(inputs, mask)
        q, v = inputs[0], inputs[1]
        k = inputs[2] if len(inputs) > 2 else v
        q_mask = mask[0] if mask else None
        v_mask = mask[1] if mask else None
        scores = self._scores(q, k)                                    # (batch, Tq, Tv)
        keep = None if v_mask is None else ops.expand_dims(ops.cast(v_mask, "float32"), -2)
        if use_causal_mask:
            causal = causal_mask(scores.shape[-2], scores.shape[-1])
            keep = causal if keep is None else ops.multiply(keep, causal)
        if keep is not None:
            scores = mask_scores(scores, keep)
        weights = ops.softmax(scores, axis=-1)
        if training and self.dropout > 0:
            weights = ops.multiply(weights, dropout_mask(weights, self.dropout, self._rng_seed))
        out = ops.matmul(weights, v)
        if q_mask is not None:
            out = ops.multiply(out, ops.expand_dims(ops.cast(q_mask, "float32"), -1))
        return (out, weights) if return_attention_scores else out

    def compute_mask(self, inputs, mask=None):
        if not mask or mask[0] is None:
            return None
        return mask[0]


class Attention(_BaseAttention):
    """Luong-style attention: scores = query · keᵀ (times `scale` with use_scale), or with
    score_mode="concat" concat_score_weight * sum(tanh(scale * (query + key)))."""

    def __init__(self, use_scale=False, score_mode="dot", dropout=0.0, seed=None, **kwargs):
        super().__init__(use_scale, dropout, seed, **kwargs)
        if score_mode not in ("dot", "concat"):
            raise ValueError("Invalid value for argument score_mode. Expected one of {'dot', 'concat'}. "
                             f"Received: score_mode={score_mode}")
        self.score_mode = score_mode

    def _build_scores(self, input_shape):
        self.scale = self.add_weight(name="scale", shape=(), initializer="ones") if self.use_scale else None
        self.concat_score_weight = self.add_weight(name="concat_score_weight", shape=(), initializer="ones") \
            if self.score_mode == "concat" else None

    def _scores(self, q, k):
        if self.score_mode == "dot":
            perm = list(range(len(k.shape)))
            perm[-2:] = perm[-1], perm[-2]
            scores = ops.matmul(q, ops.transpose(k, perm))
            return scores if self.scale is None else ops.multiply(scores, self.scale)
        pairs = ops.add(ops.expand_dims(q, -2), ops.expand_dims(k, -3))      # (batch, Tq, Tv, dim)
        if self.scale is not None:
            pairs = ops.multiply(self.scale, pairs)
        return ops.multiply(self.concat_score_weight, ops.sum(ops.tanh(pairs), axis=-1))

    def get_config(self):
        return {**super().get_config(), "use_scale": self.use_scale, "score_mode": self.score_mode,
                "dropout": self.dropout, "seed": self.seed}


class AdditiveAttention(_BaseAttention):
    """Bahdanau-style attention: scores = sum(scale * tanh(query + key)) over the features, with a
    per-feature `scale` weight when use_scale."""

    def __init__(self, use_scale=True, dropout=0.0, seed=None, **kwargs):
        super().__init__(use_scale, dropout, seed, **kwargs)

    def _build_scores(self, input_shape):
        dim = input_shape[0][-1]
        self.scale = self.add_weight(name="scale", shape=(dim,), initializer="glorot_uniform") \
            if self.use_scale else None

    def _scores(self, q, k):
        t = ops.tanh(ops.add(ops.expand_dims(q, -2), ops.expand_dims(k, -3)))
        if self.scale is not None:
            t = ops.multiply(self.scale, t)
        return ops.sum(t, axis=-1)

    def get_config(self):
        return {**super().get_config(), "use_scale": self.use_scale, "dropout": self.dropout, "seed": self.seed}
