"""VJPs of every differentiable primitive against float64 central finite differences, using the
numpy reference interpreter on hypothesis-drawn shapes."""
import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

from kcompile.ir import builder as b
from kcompile.ir.autodiff import grad
from kcompile.ir.graph import Graph
from kcompile.ir.interpreter import evaluate
from kcompile.ir.primitives import PRIMITIVES

from primitive_cases import ALL_OPS, NONSMOOTH, feed_shape, make_case, values

DIFFERENTIABLE = [op for op in ALL_OPS if op not in NONSMOOTH and op not in
                  ("argmax", "cast", "random_uniform", "copy")] + ["copy"]


@pytest.mark.parametrize("op", DIFFERENTIABLE)
@given(data=st.data())
def test_vjp_matches_finite_differences(op, data):
    spec, build = make_case(data, op)
    inputs = [b.input(name, shape, index=i) for i, (name, shape) in enumerate(spec)]
    out = build(*inputs)
    rng = np.random.default_rng(data.draw(st.integers(0, 1000)))
    batch = data.draw(st.integers(1, 3))
    cot = rng.standard_normal(feed_shape(out.shape, batch)).astype(np.float64)
    cot_in = b.input("cot", out.shape, index=len(inputs))
    loss = b.reduce_sum(b.mul(out, cot_in))
    grads = grad(loss, inputs)
    feeds = {name: values(rng, feed_shape(shape, batch), op) for name, shape in spec}
    assume(sum(v.size for v in feeds.values()) <= 200)   # finite differences cost two runs per element
    if op in ("reduce_max", "reduce_min"):
        # an extremum's derivative is undefined at (near-)ties: use distinct values spaced wider
        # than the finite-difference steps, in random order
        feeds = {name: ((rng.permutation(v.size) - v.size / 2) * 0.05).reshape(v.shape).astype(np.float32)
                 for name, v in feeds.items()}
    feeds["cot"] = cot.astype(np.float32)
    graph = Graph(inputs + [cot_in], {f"g{i}": g for i, g in enumerate(grads)}, [])
    got, _ = evaluate(graph, feeds, {}, batch=batch)
    f_graph = Graph(inputs, {"y": out}, [])

    def f(vals):
        res, _ = evaluate(f_graph, vals, {}, batch=batch)
        return float(np.sum(res["y"].astype(np.float64) * cot))
    for i, (name, _) in enumerate(spec):
        if op == "where" and name == "c":   # a selection condition has zero gradient by definition
            assert not np.any(got[f"g{i}"])
            continue
        x0 = feeds[name].astype(np.float64)
        numeric = np.zeros_like(x0)
        # reductions to an extremum are only piecewise smooth: keep steps small so none crosses a tie
        scale = 1e-3 if op in ("reduce_max", "reduce_min") else 1e-2
        eps = scale * np.maximum(np.abs(x0), 0.1) if op not in ("pow", "log", "sqrt") else 1e-3
        it = np.nditer(x0, flags=["multi_index"])
        for _ in it:
            idx = it.multi_index
            e = eps[idx] if np.ndim(eps) else eps
            plus, minus = dict(feeds), dict(feeds)
            xp, xm = x0.copy(), x0.copy()
            xp[idx] += e
            xm[idx] -= e
            plus[name], minus[name] = xp.astype(np.float32), xm.astype(np.float32)
            e_eff = (xp[idx].astype(np.float32) - xm[idx].astype(np.float32)) / 2
            numeric[idx] = (f(plus) - f(minus)) / (2 * float(e_eff))
        np.testing.assert_allclose(got[f"g{i}"], numeric, rtol=3e-2, atol=3e-2 * (1 + np.abs(numeric).max()),
                                   err_msg=f"d/d{name} of {op}")


def test_every_primitive_has_a_rule():
    for name, prim in PRIMITIVES.items():
        assert prim.fusion in ("leaf", "elementwise", "reduction", "contraction", "layout", "opaque")
        if prim.fusion != "leaf":
            assert prim.vjp is not None, name


def test_shared_value_gradients_add_up():
    x = b.input("x", (2,))
    y = b.mul(x, x)     # uses x twice
    (g,) = grad(b.reduce_sum(y), [x])
    got, _ = evaluate(Graph([x], {"g": g}, []), {"x": np.array([3.0, -2.0], np.float32)}, {})
    np.testing.assert_allclose(got["g"], [6.0, -4.0])
