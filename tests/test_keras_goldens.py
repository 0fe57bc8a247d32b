"""Real-Keras goldens (tests/fixtures/conformance/keras3): the same MLPs built in code, weights
set from Keras's .h5 file, must match Keras's predict, evaluate loss and one train_on_batch step
within the corpus README's tolerances."""
import json

import numpy as np
import pytest

import kcompile as keras
from kcompile import layers

from conftest import CONFORMANCE
from golden_helpers import close as _close, weights_from_h5 as _weights_from_h5

K3 = CONFORMANCE / "keras3"


def _build(name):
    config = json.loads((K3 / f"{name}.json").read_text())["config"]
    model = keras.Sequential()
    model.add(keras.Input(shape=tuple(config["layers"][0]["config"]["batch_shape"][1:])))
    for layer in config["layers"][1:]:
        c = layer["config"]
        reg = c.get("kernel_regularizer")
        model.add(layers.Dense(c["units"], activation=c["activation"],
                               kernel_regularizer=keras.regularizers.get(reg) if reg else None))
    weights, training = _weights_from_h5(K3 / f"{name}.h5")
    model.set_weights(weights)
    opt = training["optimizer_config"]
    model.compile(optimizer=keras.optimizers.get(opt), loss=training["loss"], metrics=training["metrics"])
    return model


@pytest.mark.parametrize("name", ["mlp_regression_adam", "mlp_binary_rmsprop"])
@pytest.mark.parametrize("run_eagerly", [False, True])
def test_matches_keras(name, run_eagerly):
    model = _build(name)
    if run_eagerly:
        model.compile(optimizer=model.optimizer, loss=model._compile_args["loss"], run_eagerly=True)
    z = np.load(K3 / f"{name}.npz")
    _close(model.predict(z["x0"], verbose=0), z["y0"], 1e-5, 1e-4)
    loss_before = model.evaluate(z["tx0"], z["ty0"], verbose=0, return_dict=True)["loss"]
    assert abs(loss_before - float(z["loss_before"])) <= 1e-4 * abs(float(z["loss_before"]))
    step = model.train_on_batch(z["tx0"], z["ty0"], return_dict=True)["loss"]
    assert abs(step - float(z["loss_step"])) <= 1e-4 * abs(float(z["loss_step"]))
    for i, w in enumerate(model.get_weights()):
        _close(w, z[f"w_after_{i}"], 1e-5, 1e-3)
