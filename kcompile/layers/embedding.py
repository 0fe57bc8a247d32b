"""Embedding: integer indices → rows of a trainable table (the gather_rows primitive).

An index outside [0, input_dim) yields a row of NaN (the lookup never reads outside the table),
so a vocabulary mismatch shows up in the outputs and the loss instead of passing silently.
With mask_zero=True, index 0 is padding: the output carries a mask that the recurrent layers and
the losses honour.
"""
from __future__ import annotations

import numpy as np

from .. import initializers, regularizers
from ..ir import builder as irb
from ..tracing import KerasTensor
from .base import Layer


class Embedding(Layer):
    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform", embeddings_regularizer=None,
                 embeddings_constraint=None, mask_zero=False, weights=None, lora_rank=None, input_length=None,
                 activity_regularizer=None, **kwargs):
        for arg, value in (("embeddings_constraint", embeddings_constraint), ("lora_rank", lora_rank)):
            if value is not None:
                raise ValueError(f"Embedding: argument {arg}={value!r} is not supported")
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        for name, value in (("input_dim", input_dim), ("output_dim", output_dim)):
            if not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"Both `input_dim` and `output_dim` should be positive, Received "
                                 f"input_dim={input_dim} and output_dim={output_dim}")
        self.input_dim, self.output_dim = int(input_dim), int(output_dim)
        self.embeddings_initializer = initializers.get(embeddings_initializer)
        self.embeddings_regularizer = regularizers.get(embeddings_regularizer)
        self.mask_zero = bool(mask_zero)
        self.supports_masking = self.mask_zero
        self.input_length = input_length           # Keras 2 argument; the input shape defines it here
        if weights is not None:
            self._initial_weights = list(weights)

    def build(self, input_shape=None):
        self.embeddings = self.add_weight(name="embeddings", shape=(self.input_dim, self.output_dim),
                                          initializer=self.embeddings_initializer,
                                          regularizer=self.embeddings_regularizer)
        self.built = True

    def call(self, inputs):
        idx = inputs.node
        if idx.dtype != "int32":
            idx = irb.cast(idx, "int32")
        return KerasTensor(irb.gather_rows(self.embeddings.node(), idx))

    def compute_mask(self, inputs, mask=None):
        if not self.mask_zero:
            return None
        return KerasTensor(irb.not_equal(irb.cast(inputs.node, "float32"), 0.0))

    def get_config(self):
        config = super().get_config()
        config.update({"input_dim": self.input_dim, "output_dim": self.output_dim,
                       "embeddings_initializer": initializers.serialize(self.embeddings_initializer),
                       "embeddings_regularizer": regularizers.serialize(self.embeddings_regularizer),
                       "embeddings_constraint": None, "mask_zero": self.mask_zero})
        return config
