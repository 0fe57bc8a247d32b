"""Names: Keras's automatic unique names ("dense", "dense_1", ...) and its snake_case rule.

A leaf module (no kcompile imports) so layers, models, metrics, saving and the backend can all
use it without importing one another.
"""
from __future__ import annotations

import re

_name_counts: dict[str, int] = {}


def unique_name(base):
    """base, then base_1, base_2, ... (per process, as Keras counts; backend.clear_session resets)."""
    count = _name_counts.get(base, 0)
    _name_counts[base] = count + 1
    return base if count == 0 else f"{base}_{count}"


def reset_names():
    """Start the automatic names over (keras.backend.clear_session)."""
    _name_counts.clear()


def to_snake_case(name):
    """Keras's rule: "Conv2D" -> "conv2d", "MaxPooling2D" -> "max_pooling2d", "LSTM" -> "lstm"."""
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", re.sub(r"\W+", "", name))
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()
