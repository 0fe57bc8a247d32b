"""Sequential: a linear stack of layers, built from the first input shape it sees."""
from __future__ import annotations

from ..layers.base import Layer
from ..naming import unique_name
from ..layers.core import Input, InputLayer
from ..tracing import KerasTensor, Trace, trace_scope
from .model import Model
from ..layers.serialization import serialize_layer


class Sequential(Model):
    def __init__(self, layers=None, name=None, trainable=True, **kwargs):
        Model.__init__(self, name=name or unique_name("sequential"), trainable=trainable, **kwargs)
        self._stack = []
        self._input_layer = None
        for layer in layers or []:
            self.add(layer)

    def add(self, layer, rebuild=True):
        if isinstance(layer, KerasTensor) and layer._history and isinstance(layer._history[0].fn, InputLayer):
            layer = layer._history[0].fn
        if not isinstance(layer, Layer):
            raise TypeError(f"Only instances of `keras.Layer` can be added to a Sequential model. "
                            f"Received: {layer!r} (of type {type(layer)})")
        if isinstance(layer, InputLayer):
            if self._stack or self._input_layer is not None:
                raise ValueError("An InputLayer can only be the first layer of a Sequential model")
            self._input_layer = layer
        else:
            if any(l.name == layer.name for l in self._stack):
                raise ValueError(f"All layers added to a Sequential model should have unique names. "
                                 f"Name '{layer.name}' is already the name of a layer in this model.")
            self._stack.append(layer)
            if self._input_layer is None and len(self._stack) == 1 and layer._batch_input_shape is not None:
                self._input_layer = InputLayer(batch_shape=layer._batch_input_shape)
        object.__setattr__(self, "_layers", list(self._stack))
        self.built = False
        self._invalidate()
        if self._input_layer is not None and rebuild:
            self._build_from(self._input_layer.output_tensor)

    def pop(self):
        if not self._stack:
            raise TypeError("There are no layers in the model.")
        layer = self._stack.pop()
        object.__setattr__(self, "_layers", list(self._stack))
        self.built = False
        self._invalidate()
        if self._input_layer is not None and self._stack:
            self._build_from(self._input_layer.output_tensor)
        return layer

    def _build_from(self, input_tensor):
        """Run the stack once on a symbolic input: builds every layer and checks the shapes."""
        if not self._stack:
            return
        x = input_tensor
        with trace_scope(Trace(training=False)):
            for layer in self._stack:
                x = layer(x)
        self.built = True
        self.inputs = [input_tensor]
        self.outputs = [x]
        self._output_shape = x.shape

    def build(self, input_shape=None):
        if input_shape is None:
            if self._input_layer is None:
                raise ValueError("You must provide an `input_shape` argument to build a Sequential model.")
        elif self._input_layer is None or tuple(self._input_layer.batch_shape) != tuple(input_shape):
            self._input_layer = InputLayer(batch_shape=tuple(input_shape))
        self._build_from(self._input_layer.output_tensor)

    def call(self, inputs, training=None):
        x = inputs
        for layer in self._stack:
            x = layer(x, training=training)
        return x

    @property
    def layers(self):
        return list(self._stack)

    @property
    def input_names(self):
        return [self._input_layer.name] if self._input_layer is not None else ["input_layer"]

    @property
    def output_names(self):
        return [self._stack[-1].name] if self._stack else []

    @output_names.setter
    def output_names(self, value):
        pass

    @property
    def input_shape(self):
        if self._input_layer is None:
            raise AttributeError(f"Sequential model '{self.name}' has no defined input shape yet (it is built "
                                 "from the first data it sees, or give the first layer an input_shape).")
        return self._input_layer.batch_shape

    @property
    def output_shape(self):
        if not self.built:
            raise AttributeError(f"Sequential model '{self.name}' has not been built yet.")
        return self._output_shape

    def _model_input_specs(self):
        if self._input_layer is None:
            return None
        return [(self._input_layer.name, self._input_layer.batch_shape, self._input_layer.input_dtype)]

    def _ensure_built_from_data(self, x_shapes, x_dtypes):
        if self._input_layer is None:
            shape = (None,) + tuple(x_shapes[0][1:])
            self._input_layer = InputLayer(batch_shape=shape, dtype=x_dtypes[0] if x_dtypes else None)
            self._build_from(self._input_layer.output_tensor)
        elif not self.built:
            self._build_from(self._input_layer.output_tensor)

    def get_config(self):
        layers = []
        if self._input_layer is not None:
            layers.append(serialize_layer(self._input_layer))
        layers += [serialize_layer(l) for l in self._stack]
        return {"name": self.name, "trainable": self.trainable, "dtype": "float32", "layers": layers}
