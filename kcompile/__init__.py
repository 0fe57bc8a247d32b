"""kcompile: Keras models compiled to native code.

`import kcompile as keras` gives the Keras API: build a model with Sequential, the functional API
or subclassing, `compile()` it (which generates native code through LLVM), then `fit`,
`evaluate` and `predict` run that code.
"""
from ._version import __version__  # noqa: E402

from . import activations, initializers, losses, metrics, ops, optimizers, regularizers  # noqa: E402
from . import backend, callbacks, config, data, distribute, distribution, layers, models, utils  # noqa: E402
from .layers import Input, InputLayer, Layer  # noqa: E402
from .models import Model, Sequential  # noqa: E402
from .random_state import set_random_seed  # noqa: E402
from .saving.from_keras import from_keras  # noqa: E402
from .variables import Variable  # noqa: E402
from .aot import build, load_built  # noqa: E402

__all__ = ["Sequential", "Model", "Input", "InputLayer", "Layer", "Variable", "layers", "models", "optimizers",
           "losses", "metrics", "activations", "initializers", "regularizers", "callbacks", "utils", "backend",
           "ops", "data", "distribute", "distribution", "config", "set_random_seed", "build", "load_built", "__version__"]
