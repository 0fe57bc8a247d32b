"""The GEMM kernel template (kcompile/codegen/gemm.py) on its own: every edge size around the
micro-tile (6 x 16) and the cache blocks, transposed and strided operands, accumulate, a fused
epilogue that must see finished rows, determinism, the scratch bound, and the machine code.
Every test runs with the 256-bit (6x16) and the 512-bit (6x32) micro-tiles (gemm.RowSums; LLVM
splits the 512-bit vectors on a machine without AVX-512, so both run anywhere)."""
import ctypes
import functools

import numpy as np
import pytest
from hypothesis import given, strategies as st
from llvmlite import ir

from kcompile.codegen import gemm
from kcompile.codegen.jit import JitModule
from kcompile.codegen.llvm_util import F32, I64, PTR, for_range, gep_f

EDGE = [1, 5, 6, 7, 15, 16, 17, 31, 32, 33, 47, 48, 49, 300]
SIZES = st.sampled_from(EDGE) | st.integers(0, 40)
SIG = ctypes.CFUNCTYPE(None, *([ctypes.c_int64] * 3 + [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64] * 2 +
                               [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32, ctypes.c_void_p,
                                ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p]))
CANARY = 64          # floats checked past scratch_floats(K, N)
VECTOR_BITS = [256]  # the micro-tile width of the kernels _kernel builds (set per test by the fixture)


@pytest.fixture(autouse=True, params=[256, 512], ids=["256bit", "512bit"])
def vector_bits(request):
    VECTOR_BITS[0] = request.param
    yield request.param
    VECTOR_BITS[0] = 256


def _kernel(with_epilogue):
    return _built_kernel(with_epilogue, VECTOR_BITS[0])


@functools.lru_cache(maxsize=None)
def _built_kernel(with_epilogue, bits):
    """An exported gemm; its epilogue copies each finished row panel of C to D, then adds 1 to C."""
    m = ir.Module()
    m.kc_vector_bits = bits

    def epilogue(b, r0, r1, extra):
        n_cols, ldc, c, d = extra
        with for_range(b, r0, r1, "er") as r:
            with for_range(b, 0, n_cols, "ec") as j:
                idx = b.add(b.mul(r, ldc), j)
                p = gep_f(b, c, idx)
                v = b.load(p, typ=F32)
                b.store(v, gep_f(b, d, idx))
                b.store(b.fadd(v, ir.Constant(F32, 1.0)), p)
    gemm.define_gemm(m, "g", epilogue=epilogue if with_epilogue else None, extra_arg_types=[I64, I64, PTR, PTR],
                     exported=True)
    jit = JitModule(m)
    return jit, SIG(jit.address("g"))


def _scratch(k, n):
    """A 64-byte aligned scratch area of scratch_floats(k, n) floats followed by a NaN canary."""
    size = gemm.scratch_floats(k, n)
    raw = np.full(size + CANARY + 16, np.nan, np.float32)
    start = (-raw.ctypes.data % 64) // 4
    return raw[start:start + size + CANARY], size


def _operand(rng, rows, cols, layout):
    """(array backing the operand, row stride, column stride, the rows x cols matrix it denotes)."""
    if layout == "t":                         # stored transposed
        x = rng.standard_normal((cols, rows)).astype(np.float32)
        return x, 1, rows, x.T
    if layout == "s":                         # every other column of a wider array (generic strides)
        x = rng.standard_normal((rows, 2 * cols + 1)).astype(np.float32)
        return x, 2 * cols + 1, 2, x[:, :2 * cols:2]
    x = rng.standard_normal((rows, cols)).astype(np.float32)
    return x, cols, 1, x


def _run(m, n, k, a_layout="n", b_layout="n", accumulate=False, epilogue=False, ldc_pad=0, seed=0):
    rng = np.random.default_rng(seed)
    a, a_rs, a_cs, a_mat = _operand(rng, m, k, a_layout)
    w, b_rs, b_cs, w_mat = _operand(rng, k, n, b_layout)
    ldc = n + ldc_pad
    c_full = rng.standard_normal((m, ldc)).astype(np.float32)
    c_before = c_full[:, :n].copy()
    pad_before = c_full[:, n:].copy()
    d = np.full((m, ldc), np.nan, np.float32)
    scratch, size = _scratch(k, n)
    _, f = _kernel(epilogue)
    f(m, n, k, a.ctypes.data, a_rs, a_cs, w.ctypes.data, b_rs, b_cs, c_full.ctypes.data, ldc, int(accumulate),
      scratch.ctypes.data, n, ldc, c_full.ctypes.data, d.ctypes.data)
    want = a_mat.astype(np.float64) @ w_mat.astype(np.float64) + (c_before if accumulate else 0)
    scale = np.abs(a_mat).astype(np.float64) @ np.abs(w_mat).astype(np.float64)
    scale = scale + (np.abs(c_before) if accumulate else 0)       # the tolerance: 1e-5 of sum |a| |b|
    got = c_full[:, :n]
    if epilogue:
        # D holds each row as the epilogue saw it: it must already be the finished product
        assert np.all(np.abs(d[:, :n] - want) <= 1e-5 * (scale + 1)), "epilogue ran on unfinished rows"
        want = want + 1
    assert np.all(np.abs(got - want) <= 1e-5 * (scale + 1)), np.abs(got - want).max()
    np.testing.assert_array_equal(c_full[:, n:], pad_before)       # columns past N untouched
    assert np.isnan(scratch[size:]).all(), "wrote past scratch_floats"
    return got.copy()


@given(m=SIZES, n=SIZES, k=SIZES | st.sampled_from([256, 257, 600]), a_layout=st.sampled_from("nts"),
       b_layout=st.sampled_from("nts"), accumulate=st.booleans(), epilogue=st.booleans(),
       ldc_pad=st.sampled_from([0, 3]))
def test_gemm_matches_numpy(m, n, k, a_layout, b_layout, accumulate, epilogue, ldc_pad):
    _run(m, n, k, a_layout, b_layout, accumulate, epilogue, ldc_pad, seed=m * 7919 + n * 31 + k)


@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (6, 16, 8), (7, 17, 9), (300, 49, 300), (145, 300, 513),
                                   (49, 48, 47), (0, 5, 5), (5, 0, 5), (5, 5, 0)])
@pytest.mark.parametrize("layouts", ["nn", "tn", "nt", "tt"])
def test_gemm_edge_sizes(m, n, k, layouts):
    _run(m, n, k, layouts[0], layouts[1], accumulate=True, epilogue=True, ldc_pad=1, seed=m + n + k)
    _run(m, n, k, layouts[0], layouts[1], accumulate=False, epilogue=False, seed=m + n + k)


def test_gemm_k_zero_overwrites_or_keeps_c():
    got = _run(4, 9, 0, accumulate=False)
    np.testing.assert_array_equal(got, np.zeros((4, 9), np.float32))
    _run(4, 9, 0, accumulate=True)


def test_gemm_is_deterministic():
    first = _run(150, 70, 600, "t", "n", seed=3)
    for _ in range(2):
        np.testing.assert_array_equal(_run(150, 70, 600, "t", "n", seed=3), first)


def _call(a, w, m, n, k, c, ldc, accumulate, scratch):
    _, f = _kernel(False)
    f(m, n, k, a.ctypes.data, a.strides[0] // 4, a.strides[1] // 4, w.ctypes.data, w.strides[0] // 4,
      w.strides[1] // 4, c.ctypes.data, ldc, int(accumulate), scratch.ctypes.data, n, ldc, c.ctypes.data, c.ctypes.data)


@pytest.mark.parametrize("a_layout", ["n", "t"])
@pytest.mark.parametrize("m,k", [(7, 5), (150, 257), (300, 40)])
def test_a_read_in_place_gives_the_packed_paths_bits(vector_bits, a_layout, m, k):
    """Up to DIRECT_A_PANELS micro-panels of columns A is read in place (not packed); one column
    more and it is packed. Both give every element the same bits (one FMA chain in k order),
    contiguous or transposed A, across k-blocks and row panels."""
    from kcompile.codegen.gemm import DIRECT_A_PANELS, NR, NR_WIDE
    n = DIRECT_A_PANELS * (NR_WIDE if vector_bits >= 512 else NR)
    rng = np.random.default_rng(m + k)
    a = rng.standard_normal((m, k)).astype(np.float32)
    a = np.asfortranarray(a) if a_layout == "t" else a
    w = rng.standard_normal((k, n + 1)).astype(np.float32)
    direct, packed = np.zeros((m, n), np.float32), np.zeros((m, n + 1), np.float32)
    _call(a, np.ascontiguousarray(w[:, :n]), m, n, k, direct, n, False, _scratch(k, n)[0])
    _call(a, w, m, n + 1, k, packed, n + 1, False, _scratch(k, n + 1)[0])
    np.testing.assert_array_equal(direct, packed[:, :n])
    np.testing.assert_allclose(direct, a.astype(np.float64) @ w[:, :n], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("n", [10, 16, 40, 48])
@pytest.mark.parametrize("a_layout", ["n", "t"])
def test_narrow_tiles_give_the_wide_tiles_bits(vector_bits, n, a_layout):
    """On 512-bit tiles a last micro-panel of at most 16 columns takes the narrow kernels (one
    accumulator per row): its columns get the bits the wide kernels give them in a wider product,
    A packed (300 columns) or read in place, rows past a multiple of 6 included."""
    rng = np.random.default_rng(n)
    for wide_n in (n + 16, 300):
        m, k = 13, 37
        a = rng.standard_normal((m, k)).astype(np.float32)
        a = np.asfortranarray(a) if a_layout == "t" else a
        w = rng.standard_normal((k, wide_n)).astype(np.float32)
        narrow, wide = np.zeros((m, n), np.float32), np.zeros((m, wide_n), np.float32)
        _call(a, np.ascontiguousarray(w[:, :n]), m, n, k, narrow, n, False, _scratch(k, n)[0])
        _call(a, w, m, wide_n, k, wide, wide_n, False, _scratch(k, wide_n)[0])
        np.testing.assert_array_equal(narrow, wide[:, :n])


@pytest.mark.parametrize("n", [1, 15, 16, 17, 40, 70])
@pytest.mark.parametrize("k", [1, 9, 257, 600])
def test_gemv_rows_are_the_packed_paths_rows_bit_for_bit(n, k):
    """M <= 6 with B's rows contiguous takes the GEMV path (nothing packed: the scratch stays
    untouched) and gives exactly the bits the packed path gives those rows in a 13-row product,
    accumulating or not, across k-blocks and ragged column tiles."""
    rng = np.random.default_rng(n * 1000 + k)
    a = rng.standard_normal((13, k)).astype(np.float32)
    w = rng.standard_normal((k, n)).astype(np.float32)
    c0 = rng.standard_normal((13, n + 1)).astype(np.float32)
    for accumulate in (False, True):
        big = c0.copy()
        scratch, _ = _scratch(k, n)
        _call(a, w, 13, n, k, big, n + 1, accumulate, scratch)
        for m in range(1, 7):
            small = c0[:m].copy()
            scratch, _ = _scratch(k, n)
            _call(a[:m], w, m, n, k, small, n + 1, accumulate, scratch)
            assert np.isnan(scratch).all(), "the GEMV path packed something"
            np.testing.assert_array_equal(small, big[:m])
            np.testing.assert_array_equal(small[:, n], c0[:m, n])          # the column past N untouched


class _Poly:
    """A stand-in for a polynomial in the batch size: only +, * and integers."""

    def __init__(self, coeffs):
        self.coeffs = dict(coeffs)

    def _lift(self, other):
        if isinstance(other, _Poly):
            return other
        assert isinstance(other, int), f"scratch_floats used a non-integer constant {other!r}"
        return _Poly({0: other})

    def __add__(self, other):
        out = dict(self.coeffs)
        for p, c in self._lift(other).coeffs.items():
            out[p] = out.get(p, 0) + c
        return _Poly(out)

    __radd__ = __add__

    def __mul__(self, other):
        out = {}
        for p, c in self.coeffs.items():
            for q, d in self._lift(other).coeffs.items():
                out[p + q] = out.get(p + q, 0) + c * d
        return _Poly(out)

    __rmul__ = __mul__

    def __call__(self, n):
        return sum(c * n ** p for p, c in self.coeffs.items())


def test_scratch_floats_is_a_polynomial_upper_bound():
    batch = _Poly({1: 1})
    for k_of, n_of in [(batch * 3, _Poly({0: 17})), (_Poly({0: 300}), batch), (batch, batch * 2 + 1)]:
        poly = gemm.scratch_floats(k_of, n_of)
        for n in (1, 7, 64):
            assert poly(n) == gemm.scratch_floats(k_of(n), n_of(n))
    # the bound covers what the kernel touches (checked by the canary in _run) and is not wasteful
    assert gemm.scratch_floats(1024, 1024) < 1.1 * 1024 * 1024 + 2 * gemm.MC * gemm.KC


def test_gemm_machine_code_is_avx2_or_avx512_fma(vector_bits):
    from kcompile.codegen.target import host_target
    if vector_bits == 512 and host_target().vector_bits < 512:
        pytest.skip("the 512-bit micro-tile's machine code needs a host with AVX-512")
    jit, _ = _kernel(False)
    nr = gemm.NR if vector_bits == 256 else gemm.NR_WIDE                # 6x16 of ymm, or 6x32 of zmm
    kernel = jit.assembly.split(f"kcompile.gemm.uk{gemm.MR}x{nr}:")[1].split(".Lfunc_end")[0]
    blocks = kernel.split("\n.LBB")
    hot = max(blocks, key=lambda blk: blk.count("vfmadd231ps"))   # the unrolled k loop
    hot = hot.split("\tjne")[0]                                     # up to its back edge
    assert hot.count("vfmadd231ps") == 2 * gemm.MR * gemm.UNROLL and ("ymm" if vector_bits == 256 else "zmm") in hot
    assert "(%rsp)" not in hot, "the k loop spills"
