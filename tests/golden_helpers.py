"""Shared by the real-Keras golden tests: reading Keras's .h5 weights and the corpus tolerance check."""
import json

import h5py
import numpy as np


def weights_from_h5(path):
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


def close(got, want, atol, rtol):
    np.testing.assert_array_less(np.abs(np.asarray(got) - want), atol + rtol * np.abs(want) + 1e-12)
