"""A layer's config envelope as Keras 3 writes it (the saving package and wrapper layers both use it)."""
from __future__ import annotations

from .core import InputLayer


def serialize_layer(layer):
    """{"module", "class_name", "config", "registered_name", "build_config"} as Keras 3 writes it."""
    registered = type(layer).__dict__.get("_keras_registered_name")     # not inherited by subclasses
    entry = {"module": "keras.layers" if registered is None else type(layer).__module__,
             "class_name": type(layer).__name__, "config": layer.get_config(), "registered_name": registered}
    if type(layer).__name__ == "Model" and getattr(layer, "_functional", False):      # as Keras 3 names it
        entry.update(module="keras.src.models.functional", class_name="Functional")
    elif type(layer).__name__ == "Sequential":
        entry["module"] = "keras"
    if not isinstance(layer, InputLayer) and layer.built and callable(getattr(layer, "get_build_config", None)):
        entry["build_config"] = layer.get_build_config()     # a layer built from several inputs' shapes
    elif not isinstance(layer, InputLayer) and layer.built:
        try:
            shape = layer.input_shape
        except AttributeError:
            shape = None
        if shape is not None:
            entry["build_config"] = {"input_shape": list(shape)}
    return entry
