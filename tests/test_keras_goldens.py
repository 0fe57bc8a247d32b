"""Real-Keras goldens (tests/fixtures/conformance/keras3): the same MLPs built in code, weights
set from Keras's .h5 file, must match Keras's predict, evaluate loss and one train_on_batch step
within the corpus README's tolerances."""
import json

import h5py
import numpy as np
import pytest

import kcompile as keras
from kcompile import layers

from conftest import CONFORMANCE

K3 = CONFORMANCE / "keras3"


def _weights_from_h5(path):
    """Weights in Keras order, following layer_names / weight_names (never HDF5 iteration order)."""
    with h5py.File(path, "r") as f:
        g = f["model_weights"]
        out = []
        for lname in g.attrs["layer_names"]:
            lname = lname.decode() if isinstance(lname, bytes) else lname
            for wname in g[lname].attrs["weight_names"]:
                wname = wname.decode() if isinstance(wname, bytes) else wname
                out.append(np.asarray(g[lname][wname]))
        return out, json.loads(f.attrs["training_config"])


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


def _close(got, want, atol, rtol):
    np.testing.assert_array_less(np.abs(np.asarray(got) - want), atol + rtol * np.abs(want) + 1e-12)


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
