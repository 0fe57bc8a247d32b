"""Model: a Layer that owns a graph of layers and the training API.

`Model(inputs, outputs)` builds a functional model; subclassing `Model` and defining `call`
gives a subclassed model; `Sequential` (sequential.py) is a stack of layers. All three trace the
same way: the model is called on symbolic inputs inside a Trace, emitting IR.
"""
from __future__ import annotations

import numpy as np

from ..layers.base import Layer, flatten, map_structure
from ..layers.core import InputLayer
from ..naming import to_snake_case, unique_name
from ..tracing import KerasTensor
from . import functional
from .summary import print_summary
from .trainer import Trainer


# The file formats live in kcompile/saving, a floor above the models (it builds Model and
# Sequential from configs); saving/api.py registers its entry points here when it is imported.
SAVING = {}


class Model(Trainer, Layer):
    def __init__(self, *args, **kwargs):
        inputs = kwargs.pop("inputs", args[0] if len(args) > 0 else None)
        outputs = kwargs.pop("outputs", args[1] if len(args) > 1 else None)
        name = kwargs.pop("name", None)
        Layer.__init__(self, name=name or unique_name("functional" if inputs is not None else
                                                      _snake(type(self).__name__)), **kwargs)
        Trainer.__init__(self)
        self._functional = False
        if inputs is not None or outputs is not None:
            if inputs is None or outputs is None:
                raise ValueError("A functional Model needs both `inputs` and `outputs`")
            self._init_functional(inputs, outputs)

    # ------------------------------------------------------------ functional
    def _init_functional(self, inputs, outputs):
        self._functional = True
        self._input_struct = inputs
        self._output_struct = outputs
        self.inputs = [t for t in flatten(inputs)]
        self.outputs = [t for t in flatten(outputs)]
        for t in self.inputs + self.outputs:
            if not isinstance(t, KerasTensor):
                raise TypeError(f"Model inputs and outputs must be symbolic tensors (from keras.Input or "
                                f"layers); got {type(t).__name__}")
        for t in self.inputs:
            if t._history is None or not isinstance(t._history[0].fn, InputLayer):
                raise ValueError("Model inputs must come from `keras.Input`; got a tensor computed by a layer")
        self._records = functional.records_between(self.inputs, self.outputs)
        ordered = functional.keras_layer_order(self.inputs, self.outputs)
        layers = [fn for fn in ordered if isinstance(fn, Layer)]
        for t in self.inputs:                       # an input no output depends on is still a layer
            if t._history[0].fn not in layers:
                layers.insert(0, t._history[0].fn)
        object.__setattr__(self, "_layers", layers)
        self.built = True
        self.output_names = self._output_names()
        self.input_names = [t._history[0].fn.name for t in self.inputs]
        functional.mark_dynamic_shapes(self)

    def _output_names(self):
        if isinstance(self._output_struct, dict):
            return list(self._output_struct.keys())
        names = []
        for t in self.outputs:
            fn = t._history[0].fn
            names.append(fn.name if isinstance(fn, Layer) else f"output_{len(names)}")
        return names

    @property
    def layers(self):
        return [l for l in self._layers if not (self._functional is False and isinstance(l, InputLayer))] \
            if not self._functional else list(self._layers)

    def get_layer(self, name=None, index=None):
        if index is not None:
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"No such layer: {name}. Existing layers are: {[l.name for l in self.layers]}.")

    def call(self, inputs, training=None):
        if not self._functional:
            raise NotImplementedError(f"Model {type(self).__name__} must define `call` (subclassed models) or be "
                                      "created as Model(inputs, outputs)")
        new_inputs = self._match_inputs(inputs)
        return functional.replay(self._records, self.inputs, new_inputs, self._output_struct, training)

    def _match_inputs(self, inputs):
        if isinstance(inputs, dict):
            missing = [n for n in self.input_names if n not in inputs]
            if missing:
                raise ValueError(f"Missing data for input(s) {missing} of model '{self.name}'. "
                                 f"Got keys {sorted(inputs)}; expected {self.input_names}")
            return [inputs[n] for n in self.input_names]
        flat = flatten(inputs)
        if len(flat) != len(self.inputs):
            raise ValueError(f"Model '{self.name}' expects {len(self.inputs)} input(s), but it received "
                             f"{len(flat)} input tensors.")
        return flat

    # ------------------------------------------------------------ shapes
    @property
    def input_shape(self):
        if self._functional:
            shapes = [t.shape for t in self.inputs]
            return shapes[0] if len(shapes) == 1 else shapes
        return Layer.input_shape.fget(self)

    @property
    def output_shape(self):
        if self._functional:
            shapes = [t.shape for t in self.outputs]
            return shapes[0] if len(shapes) == 1 else shapes
        return Layer.output_shape.fget(self)

    def summary(self, line_length=None, positions=None, print_fn=None, expand_nested=False,
                show_trainable=False, layer_range=None):
        unsupported = {k: v for k, v in (("positions", positions), ("expand_nested", expand_nested or None),
                                         ("layer_range", layer_range)) if v is not None}
        if unsupported:
            raise ValueError(f"Model.summary: {', '.join(f'{k}={v!r}' for k, v in unsupported.items())} "
                             f"is not supported by kcompile (line_length, print_fn and show_trainable are)")
        print_summary(self, line_length=line_length, print_fn=print_fn, show_trainable=show_trainable)

    def get_config(self):
        if not self._functional:
            return {"name": self.name, "trainable": self.trainable}
        return SAVING["functional_config"](self)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return SAVING["model_from_config"]({"class_name": "Functional" if cls is Model else cls.__name__, "config": config},
                                 custom_objects)

    # ------------------------------------------------------------ saving (kcompile/saving)
    def save(self, filepath, overwrite=True, **kwargs):
        """Save to `.keras` (Keras 3's zip) or `.h5` (legacy HDF5): structure, weights, compile
        configuration and optimizer state, written atomically."""
        SAVING["save_model"](self, filepath, overwrite=overwrite, **kwargs)

    def save_weights(self, filepath, overwrite=True, **kwargs):
        SAVING["save_weights"](self, filepath, overwrite=overwrite, **kwargs)

    def load_weights(self, filepath, skip_mismatch=False, **kwargs):
        SAVING["load_weights"](self, filepath, skip_mismatch=skip_mismatch, **kwargs)

    def to_json(self, **kwargs):
        return SAVING["to_json"](self, **kwargs)

    def to_yaml(self, **kwargs):
        return SAVING["to_yaml"](self, **kwargs)


def _snake(name):
    return to_snake_case(name)
