"""Serialize layers and models into Keras 3's config dictionaries (`get_config` output)."""
from __future__ import annotations


def serialize_layer(layer):
    """{"module", "class_name", "config", "registered_name", "build_config"} as Keras 3 writes it."""
    from ..layers.core import InputLayer
    entry = {"module": "keras.layers", "class_name": type(layer).__name__, "config": layer.get_config(),
             "registered_name": None}
    if not isinstance(layer, InputLayer) and layer.built:
        try:
            shape = layer.input_shape
        except AttributeError:
            shape = None
        if shape is not None:
            entry["build_config"] = {"input_shape": list(shape)}
    return entry
