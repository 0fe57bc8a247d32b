"""ops.matmul (numpy semantics, batched), ops.dot, ops.einsum and K.batch_dot against numpy, eager
and compiled, with gradients through a training step equal to the interpreter's."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import kcompile as keras
import kcompile.backend as K
from kcompile import layers, ops

SPECS = ["bij,bjk->bik", "...d,de->...e", "bij->bji", "bij,bkj->bik", "bij->b", "ij,j->i", "bi,bi->b",
         "bqd,bkd->bqk", "i,j->ij"]


def _operands(spec, rng, b, i, j, k):
    sizes = {"b": b, "i": i, "j": j, "k": k, "d": j, "e": k, "q": i}
    lhs = spec.split("->")[0].split(",")
    return [rng.normal(size=tuple(sizes.get(c, 2) for c in s.replace("...", "b"))).astype(np.float32)
            for s in lhs]


@settings(deadline=None, max_examples=20)
@given(spec=st.sampled_from(SPECS), b=st.integers(1, 3), i=st.integers(1, 4), j=st.integers(1, 4),
       k=st.integers(1, 4), seed=st.integers(0, 99))
def test_einsum_matches_numpy(spec, b, i, j, k, seed):
    args = _operands(spec, np.random.default_rng(seed), b, i, j, k)
    np.testing.assert_allclose(ops.einsum(spec, *args), np.einsum(spec, *args), rtol=1e-5, atol=1e-5)


@settings(deadline=None, max_examples=15)
@given(a_shape=st.sampled_from([(3,), (2, 3), (4, 2, 3), (2, 4, 2, 3)]), n=st.integers(1, 3), seed=st.integers(0, 99))
def test_matmul_numpy_semantics(a_shape, n, seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=a_shape).astype(np.float32)
    for b_shape in [(3,), (3, n), a_shape[:-2] + (3, n)]:
        b = rng.normal(size=b_shape).astype(np.float32)
        np.testing.assert_allclose(ops.matmul(a, b), np.matmul(a, b), rtol=1e-5, atol=1e-5)


def test_dot_and_batch_dot():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 3, 4)).astype(np.float32), rng.normal(size=(2, 4, 5)).astype(np.float32)
    np.testing.assert_allclose(K.batch_dot(a, b, axes=(2, 1)), a @ b, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(K.batch_dot(a, a, axes=2), np.einsum("bij,bkj->bik", a, a), rtol=1e-5, atol=1e-5)
    w = rng.normal(size=(3, 4, 6)).astype(np.float32)
    np.testing.assert_allclose(ops.dot(a, w), np.dot(a, w), rtol=1e-5, atol=1e-5)


def test_einsum_errors_name_the_problem():
    with pytest.raises(ValueError, match="output explicitly"):
        ops.einsum("ij,jk", np.ones((2, 2)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="diagonals"):
        ops.einsum("ii->i", np.ones((2, 2)))


def test_attention_model_compiled_step_equals_interpreter():
    rng = np.random.default_rng(1)
    q_in, k_in = keras.Input((3, 4)), keras.Input((5, 4))
    scores = ops.softmax(ops.einsum("bqd,bkd->bqk", q_in, k_in))
    out = layers.Dense(1)(ops.reshape(ops.matmul(scores, k_in), (-1, 12)))
    x = [rng.normal(size=(6, 3, 4)).astype(np.float32), rng.normal(size=(6, 5, 4)).astype(np.float32)]
    y = rng.normal(size=(6, 1)).astype(np.float32)
    model = keras.Model([q_in, k_in], out)
    start = model.get_weights()
    results = []
    for eager in (False, True):
        model.set_weights(start)
        model.compile(optimizer="sgd", loss="mse", run_eagerly=eager)
        results.append((model.train_on_batch(x, y), model.get_weights()))
    (lc, wc), (le, we) = results
    assert abs(lc - le) < 1e-5
    for a, b in zip(wc, we):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_dot_of_two_dimensional_operands_in_a_custom_layer():
    """keras.backend.dot with operands of at most 2-D (the R guide's k_dot) runs eagerly and traced."""
    np.testing.assert_allclose(keras.ops.dot(np.ones((2, 3), np.float32), np.full((3, 4), 2, np.float32)),
                               np.full((2, 4), 6, np.float32))

    class Project(keras.layers.Layer):
        def build(self, shape):
            self.w = self.add_weight(shape=(shape[-1], 2), initializer="ones")

        def call(self, x):
            return keras.backend.dot(x, self.w)
    model = keras.Sequential([keras.Input((3,)), Project()])
    np.testing.assert_allclose(model.predict_on_batch(np.ones((2, 3), np.float32)), np.full((2, 2), 3, np.float32))
