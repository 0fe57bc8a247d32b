"""Implicit GEMM (codegen/gemm_gather.py) and the stride-1 input gradient as a convolution
(ir/passes/conv_grad.py) against the numpy reference interpreter.

The drawn convolutions reach every packing path: channel counts that are multiples of 8 (the
8-column register transposes) and not (element by element), kernel-gradient blocks whose rows are
6 contiguous channels, more than one 144-row panel and more than one 256-column k-block (3x3x32
windows), partial micro-panels, strides, dilations and 1-3 spatial axes, on 1 and 2 threads.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import kcompile as keras
from kcompile import layers
from kcompile.codegen.gemm_gather import GatherA
from kcompile.codegen.lower import gather_operand
from kcompile.convolution import conv
from kcompile.ir import builder as b
from kcompile.ir.autodiff import grad
from kcompile.ir.graph import BATCH, Graph
from kcompile.ir.passes.pipeline import lower_to_kernels
from kcompile.ir.primitives_spatial import window_strides


@given(spatial=st.lists(st.integers(1, 6), min_size=1, max_size=3), channels=st.integers(1, 9),
       batch=st.integers(1, 3), data=st.data())
def test_gather_offsets_are_the_window_views_offsets(spatial, channels, batch, data):
    """Every (row, column) of the matmul's A decodes to the element the window view holds there."""
    k = len(spatial)
    sizes = [data.draw(st.integers(1, s)) for s in spatial]
    strides = [data.draw(st.integers(1, 3)) for _ in spatial]
    x = b.input("x", (BATCH,) + tuple(spatial) + (channels,))
    window = b.window(x, sizes, strides, [1] * k)
    cols = b.reshape(window, tuple(window.shape[:1 + k]) + (int(np.prod(sizes)) * channels,))
    w = b.input("w", (cols.shape[-1], 3), index=1)
    kernels = lower_to_kernels(Graph([x, w], {"y": b.matmul(cols, w)}, [])).kernels
    gather = gather_operand(kernels[-1])
    assert isinstance(gather, GatherA)
    values = np.arange(batch * np.prod(spatial) * channels, dtype=np.float32).reshape((batch,) + tuple(spatial) + (channels,))
    view = np.lib.stride_tricks.as_strided(values, (batch,) + tuple(window.shape[1:]),
                                           window_strides(list(values.strides), window.attrs))
    matrix = view.reshape(-1, cols.shape[-1])
    flat = values.reshape(-1)
    rows, columns = np.meshgrid(np.arange(matrix.shape[0]), np.arange(matrix.shape[1]), indexing="ij")
    offsets = np.vectorize(gather.offset)(rows, columns)
    np.testing.assert_array_equal(flat[offsets], matrix)


def test_stride_one_input_gradient_becomes_an_implicit_gemm():
    x = b.input("x", (BATCH, 7, 7, 16))
    kernel = b.input("k", (3, 3, 16, 8), index=1)
    y = conv(x, kernel, (1, 1), "valid", (1, 1))
    dx = grad(b.reduce_sum(b.square(y), (0, 1, 2, 3)), [x])[0]
    program = lower_to_kernels(Graph([x, kernel], {"dx": dx}, []))
    ops = [k.root.op for k in program.kernels if k.root is not None]
    assert "window_grad" not in ops and "window" not in ops
    assert sum(1 for k in program.kernels if k.kind == "matmul" and k.a_window is not None) == 2


def _conv_layer(rank, filters, kernel, strides, dilation, padding):
    return getattr(layers, f"Conv{rank}D")(filters, kernel, strides=strides, dilation_rate=dilation,
                                           padding=padding, activation="relu")


@settings(deadline=None, max_examples=8)
@given(rank=st.sampled_from([1, 2, 2, 3]), channels=st.sampled_from([1, 3, 8, 13, 16, 32]),
       filters=st.sampled_from([1, 5, 16, 24]), kernel=st.integers(1, 3), stride=st.integers(1, 2),
       dilation=st.integers(1, 2), padding=st.sampled_from(["valid", "same"]), batch=st.integers(1, 4),
       threads=st.sampled_from([1, 2]), seed=st.integers(0, 99))
def test_convolutions_match_the_interpreter(rank, channels, filters, kernel, stride, dilation, padding, batch,
                                            threads, seed):
    if stride > 1:
        dilation = 1
    size = {1: 40, 2: 12, 3: 5}[rank]
    shape = (size,) * rank + (channels,)
    # a convolution in front, so the second one's input gradient is computed (and rewritten)
    model = keras.Sequential([keras.Input(shape), _conv_layer(rank, channels, 1, 1, 1, "valid"),
                              _conv_layer(rank, filters, kernel, stride, dilation, padding), layers.Flatten(),
                              layers.Dense(3)])
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch,) + shape).astype(np.float32)
    y = rng.normal(size=(batch, 3)).astype(np.float32)
    _assert_compiled_step_matches_interpreter(model, x, y, threads, learning_rate=0.05, atol=1e-4)


def _assert_compiled_step_matches_interpreter(model, x, y, threads, learning_rate, atol):
    """predict_on_batch and one SGD step, native on `threads` threads and on the interpreter."""
    before = keras.config.get_num_threads()
    keras.config.set_num_threads(threads)
    try:
        start = model.get_weights()
        results = []
        for eager in (False, True):
            model.set_weights(start)
            model.compile(optimizer=keras.optimizers.SGD(learning_rate), loss="mse", run_eagerly=eager)
            predicted = model.predict_on_batch(x)
            results.append((predicted, model.train_on_batch(x, y), model.get_weights()))
    finally:
        keras.config.set_num_threads(before)
    (pc, lc, wc), (pe, le, we) = results
    np.testing.assert_allclose(pc, pe, rtol=1e-4, atol=atol)
    np.testing.assert_allclose(lc, le, rtol=1e-4, atol=1e-5)
    for a, e in zip(wc, we):
        np.testing.assert_allclose(a, e, rtol=1e-3, atol=atol)


@pytest.mark.parametrize("threads", [1, 2])
def test_large_blocks_and_panels_match_the_interpreter(threads):
    """3x3x32 windows: K = 288 spans two k-blocks; 2 x 10 x 10 outputs: two row panels and a ragged one."""
    model = keras.Sequential([keras.Input((12, 12, 32)), layers.Conv2D(32, 3, activation="relu"),
                              layers.Conv2D(20, 3, padding="same"), layers.GlobalAveragePooling2D()])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 12, 12, 32)).astype(np.float32)
    y = rng.normal(size=(3, 20)).astype(np.float32)
    _assert_compiled_step_matches_interpreter(model, x, y, threads, learning_rate=0.1, atol=1e-5)


def test_pooling_reads_its_window_in_place():
    """Max pooling and its gradient mask read the window as a strided view: no window kernel."""
    x = b.input("x", (BATCH, 8, 8, 4))
    pooled = b.reduce_max(b.window(x, (2, 2), (2, 2), (1, 1)), (3, 4))
    dx = grad(b.reduce_sum(b.square(pooled), (0, 1, 2, 3)), [x])[0]
    kernels = lower_to_kernels(Graph([x], {"y": pooled, "dx": dx}, [])).kernels
    assert not any(k.kind == "layout" and k.root.op == "window" for k in kernels)
    assert sum(bool(k.views) for k in kernels) >= 2     # the max, and the mask of the gradient
