"""Fixtures of test-built.R: two models built with `kcompile build` into sys.argv[1], and their
Python predictions (float64, row-major, NAME.f64) for the R side to compare with.

  mlp/  Dense(8, relu) -> Dense(3) on 5 features, compiled with SGD + MSE (predict, train, evaluate);
        mlp_pred: predictions of mlp_x; mlp_loss, mlp_pred_after: after train_on_batch(mlp_x, mlp_y)
  two/  inputs seq [batch, 4, 3] and extra [batch, 2]; outputs [batch, 6] and [batch, 2, 3];
        weights in two/two.state (weights="file"); two_p1, two_p2: predictions of (two_a, two_b)
"""
import json
import os
import sys

import numpy as np

import kcompile as k
from kcompile import layers

out = sys.argv[1]
rng = np.random.default_rng(0)
shapes = {}


def save(name, array):
    array = np.ascontiguousarray(array, dtype=np.float64)
    array.tofile(os.path.join(out, name + ".f64"))
    shapes[name] = list(array.shape)


mlp = k.Sequential([layers.Dense(8, activation="relu", input_shape=(5,)), layers.Dense(3)], name="mlp")
mlp.compile("sgd", "mse")
k.build(mlp, os.path.join(out, "mlp"))
x = rng.normal(size=(7, 5)).astype(np.float32)
y = rng.normal(size=(7, 3)).astype(np.float32)
save("mlp_x", x)
save("mlp_y", y)
save("mlp_pred", mlp.predict(x, verbose=0))
loss = mlp.train_on_batch(x, y)
save("mlp_loss", [float(np.ravel(loss)[0])])
save("mlp_pred_after", mlp.predict(x, verbose=0))

seq = layers.Input(shape=(4, 3), name="seq")
extra = layers.Input(shape=(2,), name="extra")
h = layers.Concatenate()([layers.Flatten()(seq), extra])
two = k.Model([seq, extra], [layers.Dense(6)(h), layers.Reshape((2, 3))(layers.Dense(6)(h))], name="two")
k.build(two, os.path.join(out, "two"), weights="file")
a = rng.normal(size=(5, 4, 3)).astype(np.float32)
b = rng.normal(size=(5, 2)).astype(np.float32)
save("two_a", a)
save("two_b", b)
p1, p2 = two.predict([a, b], verbose=0)
save("two_p1", p1)
save("two_p2", p2)

with open(os.path.join(out, "shapes.json"), "w") as f:
    json.dump(shapes, f)
