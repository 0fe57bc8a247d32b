"""`kcompile.from_keras(model)`: a live Keras model (Keras 3 or tf.keras) converted through its
config and weights. Keras is only used when the caller already has it; it is never a dependency."""
from __future__ import annotations


def from_keras(keras_model, custom_objects=None, compile=True):
    from .api import model_from_config
    class_name = type(keras_model).__name__
    if class_name not in ("Sequential", "Functional", "Model"):
        raise ValueError(f"from_keras converts Sequential and Functional models; got a subclassed {class_name} "
                         "(its structure is Python code: rebuild it with kcompile and copy the weights)")
    top = {"class_name": "Sequential" if class_name == "Sequential" else "Functional",
           "config": keras_model.get_config()}
    model = model_from_config(top, custom_objects, source=f"Keras model '{keras_model.name}'")
    model.set_weights([w for w in keras_model.get_weights()])
    if compile and getattr(keras_model, "optimizer", None) is not None and hasattr(keras_model, "get_compile_config"):
        from . import config_dialects
        from .api import _compile_from
        compile_config = keras_model.get_compile_config()
        if compile_config:
            compile_config = dict(compile_config)
            opt = keras_model.optimizer
            compile_config["optimizer"] = {"class_name": type(opt).__name__, "config": opt.get_config()}
            _compile_from(model, config_dialects.normalize_training_config(compile_config), "the Keras model")
    return model
