"""Low-precision GEMMs (csrc/precision/, docs/precision.md): every path
against the NumPy model (fastrnn/_lowp_reference.py), the hardware paths
against the fallbacks, path forcing and bad input."""
import os
import subprocess
import sys

import numpy as np
import pytest

from fastrnn import _isa
from fastrnn import _lowp_reference as ref

core = _isa.core
PATHS = core.lowp_paths()
BF16_PATHS = ("avx512_bf16", "avx2", "scalar")
INT8_PATHS = ("avx512_vnni", "avx2", "scalar")
CPU_FEATURES = {"avx512_bf16": "avx512bf16", "avx512_vnni": "avx512vnni", "avx2": "avx2 and fma"}

# (m, K, N, groups): partial panels (N per group not a multiple of 32), odd K
# and K not a multiple of 4, every row tail of the 8-row kernels, one step.
SHAPES = [(1, 7, 5, 1), (2, 70, 100, 1), (3, 33, 4 * 40, 4), (13, 64, 96, 3), (130, 129, 3 * 33, 3),
          (8, 256, 64, 1), (5, 40, 3 * 40, 3), (9, 36, 200, 1)]


def need(kind, path):
    if path not in PATHS[f"{kind}_available"]:
        pytest.skip(f"this CPU lacks {CPU_FEATURES[path]} (CPUID), so the {path} path cannot run here")


def data(m, K, N, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((m, K)).astype(np.float32), rng.standard_normal((N, K)).astype(np.float32)


def with_exact(kind, path, m, K, N, seed):
    """a, w, the `kind` GEMM of them on `path` and the exact product, both in float64."""
    need(kind, path)
    a, w = data(m, K, N, seed=seed)
    pack = core.pack_bf16 if kind == "bf16" else core.pack_s8
    out = core.lowp_gemm(a, pack(w), path=path).astype(np.float64)
    return a, w, out, a.astype(np.float64) @ w.astype(np.float64).T


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("path", ["avx2", "scalar"])
def test_bf16_fallbacks_equal_the_model(path, shape):
    # Exact: the fallbacks and the model sum the same fp32 products (exact,
    # since bf16 · bf16 fits fp32's 24 bits) in the same order, rounding once
    # per step.
    need("bf16", path)
    m, K, N, G = shape
    a, w = data(m, K, N)
    out = core.lowp_gemm(a, core.pack_bf16(w, G), path=path)
    np.testing.assert_array_equal(out, ref.bf16_gemm(a, w))


@pytest.mark.parametrize("shape", SHAPES)
def test_bf16_hardware_path_agrees_with_the_fallback(shape):
    need("bf16", "avx512_bf16")
    m, K, N, G = shape
    a, w = data(m, K, N, seed=1)
    M = core.pack_bf16(w, G)
    hw, fb = core.lowp_gemm(a, M, path="avx512_bf16"), core.lowp_gemm(a, M, path="scalar")
    # Both are fp32 sums of the same K exact products in different orders
    # (vdpbf16ps, and split sums for few rows); each lies within γ_K·Σ|terms|
    # of the exact sum (γ_K ≈ K·2⁻²⁴), so they differ by at most twice that.
    terms = np.abs(ref.to_bf16(a)).astype(np.float64) @ np.abs(ref.to_bf16(w)).astype(np.float64).T
    assert np.all(np.abs(hw.astype(np.float64) - fb) <= 2.1 * K * 2.0**-24 * terms)


@pytest.mark.parametrize("path", BF16_PATHS)
def test_bf16_error_against_fp32_is_the_rounding_of_the_operands(path):
    m, K, N = 16, 300, 70
    a, w, out, exact = with_exact("bf16", path, m, K, N, seed=2)
    # Each operand is within 2⁻⁹ relative of its bf16 value, so each product
    # within 2⁻⁸ + 2⁻¹⁸; the fp32 sum adds at most K·2⁻²⁴ of Σ|terms|.
    bound = (2.0**-8 + 2.0**-18 + K * 2.0**-24) * (np.abs(a).astype(np.float64) @ np.abs(w).T)
    assert np.all(np.abs(out - exact) <= bound)
    # and the rounding is really there (a path that ran in fp32 would fail)
    assert np.abs(out - exact).max() > 1e-4 * np.abs(exact).max()


def test_quantised_activations_and_weights_match_the_model():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((6, 37)).astype(np.float32)
    a[1] = 0                  # scale 0, q 0
    a[2, 5] = np.nan          # scale NaN, q 0
    a[3, 0] = -np.inf
    a[4] *= 1e-30             # tiny but normal values keep their resolution
    q, s = core.lowp_quantise_rows(a)
    mq, ms = ref.quantise(a)
    np.testing.assert_array_equal(q, mq)
    np.testing.assert_array_equal(s, ms)
    assert np.abs(q).max() == 127 and q.min() >= -127
    w = rng.standard_normal((45, 37)).astype(np.float32)
    wq, ws = core.pack_s8(w, 3).unpack()
    mq, ms = ref.quantise(w)
    np.testing.assert_array_equal(wq, mq)
    np.testing.assert_array_equal(ws, ms)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("path", INT8_PATHS)
def test_int8_paths_equal_the_model(path, shape):
    # Exact: the integer sums are exact on every path, and the dequantisation
    # float32(acc) · (s_a · s_w) is two correctly rounded products everywhere.
    need("int8", path)
    m, K, N, G = shape
    a, w = data(m, K, N, seed=4)
    out = core.lowp_gemm(a, core.pack_s8(w, G), path=path)
    np.testing.assert_array_equal(out, ref.int8_gemm(a, w))


def test_two_term_activations_match_the_model():
    """activation_terms=2: term 0 is the one-term quantisation, term 1 the residual
    a - s₁q₁ quantised the same way (|residual| ≤ s₁/2, so s₂ ≤ s₁/254); NaN/Inf and
    all-zero rows behave as in term 0."""
    rng = np.random.default_rng(31)
    a = rng.standard_normal((6, 37)).astype(np.float32)
    a[1] = 0
    a[2, 5] = np.nan
    a[3] = np.arange(37) - 18          # integers with scale 18/127: a nonzero residual
    q, s = core.lowp_quantise_rows(a, terms=2)
    q1, s1 = core.lowp_quantise_rows(a)
    np.testing.assert_array_equal(q[0], q1)
    np.testing.assert_array_equal(s[0], s1)
    for t, (mq, ms) in enumerate(ref.quantise_terms(a, 2)):
        np.testing.assert_array_equal(q[t], mq)
        np.testing.assert_array_equal(s[t], ms)
    ok = [0, 3, 4, 5]
    assert np.all(s[1, ok] <= s[0, ok] / 254 * (1 + 1e-6)) and np.all(s[1, ok] > 0)
    assert s[1, 1] == 0 and np.isnan(s[1, 2])


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("path", INT8_PATHS)
def test_int8_two_terms_equal_the_model_and_are_finer(path, shape):
    # Exact against the model, as one term is (the same integer sums, twice, and
    # the term-1 product added onto term 0's in fp32 on every path); and the error
    # against the fp64 product shrinks to the weights' share.
    need("int8", path)
    m, K, N, G = shape
    a, w = data(m, K, N, seed=32)
    out = core.lowp_gemm(a, core.pack_s8(w, G, activation_terms=2), path=path)
    np.testing.assert_array_equal(out, ref.int8_gemm(a, w, terms=2))
    exact = a.astype(np.float64) @ w.astype(np.float64).T
    one = core.lowp_gemm(a, core.pack_s8(w, G), path=path)
    # |a - s₁q₁ - s₂q₂| ≤ s₂/2: the activations' term of the bound of
    # test_int8_error_against_fp32_is_the_quantisation_step shrinks 254-fold.
    _, sw = ref.quantise(w)
    _, sa2 = ref.quantise_terms(a, 2)[1]
    sa2, sw = sa2.astype(np.float64)[:, None], sw.astype(np.float64)[None, :]
    # Each product is off by ≤ e_a|w| + |a|e_w + e_a·e_w with e_a ≤ s₂/2, e_w ≤ s_w/2;
    # the fp32 dequantisations and the sum of the two terms add a few roundings.
    bound = (sa2 / 2 * np.abs(w).sum(1)[None, :] + sw / 2 * (np.abs(a).sum(1)[:, None] + K * sa2)
             + 2.0**-21 * np.abs(exact) + 1e-5)
    assert np.all(np.abs(out - exact) <= bound)
    # Against the product with the dequantised weights only the activations' error is
    # left: two terms cut it by far more than 10× (about 254× less the fp32 roundings).
    qw, sw1 = ref.quantise(w)
    deq = a.astype(np.float64) @ (qw * sw1.astype(np.float64)[:, None]).T
    assert np.abs(out - deq).max() * 10 < np.abs(one - deq).max()


@pytest.mark.parametrize("path", INT8_PATHS)
def test_int8_integer_sums_are_exact_at_the_extremes(path):
    # Scales that are powers of two (row maxima 127·2⁻³ and 127·2⁻⁵) make the
    # quantisation exact and out = acc · 2⁻⁸ exactly, so out · 2⁸ is the
    # integer sum itself, compared with integers built independently of the
    # model. All ±127 rows would saturate vpmaddubsw's s16 pairs if the AVX2
    # path took activations as u8 + 128 (2·255·127 > 32767).
    need("int8", path)
    rng = np.random.default_rng(5)
    m, K, N = 11, 515, 70
    qa = rng.integers(-127, 128, (m, K))
    qw = rng.integers(-127, 128, (N, K))
    qa[:, 0], qw[:, 0] = 127, -127
    qa[0], qa[1] = 127, -127
    qw[0], qw[1] = 127, -127
    a, w = (qa * 2.0**-3).astype(np.float32), (qw * 2.0**-5).astype(np.float32)
    out = core.lowp_gemm(a, core.pack_s8(w), path=path)
    acc = out.astype(np.float64) * 2.0**8
    np.testing.assert_array_equal(acc, qa @ qw.T)
    np.testing.assert_array_equal(acc, ref.int8_accumulate(a, w))


@pytest.mark.parametrize("path", INT8_PATHS)
def test_int8_error_against_fp32_is_the_quantisation_step(path):
    m, K, N = 16, 300, 70
    a, w, out, exact = with_exact("int8", path, m, K, N, seed=6)
    _, sa = ref.quantise(a)
    _, sw = ref.quantise(w)
    sa, sw = sa.astype(np.float64)[:, None], sw.astype(np.float64)[None, :]
    # |a - s_a·q_a| ≤ s_a/2 and |w - s_w·q_w| ≤ s_w/2 per element, so each
    # product is off by at most s_a|w|/2 + s_w|a|/2 + s_a·s_w/4; the fp32
    # dequantisation adds two roundings (2⁻²³ of the result).
    bound = (sa / 2 * np.abs(w).sum(1)[None, :] + sw / 2 * np.abs(a).sum(1)[:, None] + K * sa * sw / 4
             + 2.0**-23 * np.abs(exact) + 1e-6)
    assert np.all(np.abs(out - exact) <= bound)


@pytest.mark.parametrize("kind, paths", [("bf16", BF16_PATHS), ("int8", INT8_PATHS)])
def test_accumulate_adds_to_out_in_place(kind, paths):
    a, w = data(9, 40, 50, seed=7)
    pack = core.pack_bf16 if kind == "bf16" else core.pack_s8
    M = pack(w)
    for path in (p for p in paths if p in PATHS[f"{kind}_available"]):
        base = np.linspace(-3, 3, 9 * 50, dtype=np.float32).reshape(9, 50)
        out = base.copy()
        res = core.lowp_gemm(a, M, out=out, accumulate=True, path=path)
        assert res is out or np.shares_memory(res, out)
        prod = core.lowp_gemm(a, M, path=path)
        # out + prod in fp32, possibly fused with the last product: within
        # one rounding of each (2⁻²³ relative) of the separate sum.
        np.testing.assert_allclose(out, base + prod, rtol=0, atol=2.0**-22 * (np.abs(base) + np.abs(prod)).max())


@pytest.mark.parametrize("kind", ["bf16", "int8"])
def test_non_finite_activations_give_nan_only_in_their_row(kind):
    a, w = data(5, 40, 33, seed=8)
    a[2, 7] = np.nan
    pack = core.pack_bf16 if kind == "bf16" else core.pack_s8
    for path in PATHS[f"{kind}_available"]:
        out = core.lowp_gemm(a, pack(w), path=path)
        assert np.isnan(out[2]).all()
        assert np.isfinite(np.delete(out, 2, axis=0)).all()


@pytest.mark.parametrize("kind", ["bf16", "int8"])
def test_results_do_not_depend_on_the_thread_count(kind):
    # Panels are split among threads, never K.
    a, w = data(300, 64, 200, seed=9)
    M = (core.pack_bf16 if kind == "bf16" else core.pack_s8)(w)
    before = core.get_num_threads()
    try:
        core.set_num_threads(1)
        one = core.lowp_gemm(a, M)
        core.set_num_threads(2)
        two = core.lowp_gemm(a, M)
    finally:
        core.set_num_threads(before)
    np.testing.assert_array_equal(one, two)


def run_with(env, code):
    e = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), **env)
    return subprocess.run([sys.executable, "-c", "import fastrnn, numpy as np\nfrom fastrnn import _isa\n" + code],
                          env=e, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("var, kind", [("FASTRNN_BF16_PATH", "bf16"), ("FASTRNN_INT8_PATH", "int8")])
def test_environment_variable_forces_each_available_path(var, kind):
    for path in PATHS[f"{kind}_available"]:
        r = run_with({var: path}, f"print(_isa.core.lowp_paths()['{kind}'])\n"
                                  "print(fastrnn.config()['{kind}_path'])".replace("{kind}", kind))
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == [path, path]


def test_environment_variable_with_a_bad_path_is_refused_with_what_is_available():
    code = ("a = np.ones((2, 8), np.float32)\n"
            "try:\n    _isa.core.lowp_gemm(a, _isa.core.pack_s8(a))\n"
            "except ValueError as e:\n    print('ValueError:', e)\n"
            "print(_isa.core.lowp_paths()['int8'])")
    r = run_with({"FASTRNN_INT8_PATH": "amx"}, code)
    assert r.returncode == 0, r.stderr
    assert "ValueError: FASTRNN_INT8_PATH='amx' is not one of avx512_vnni, avx2, scalar" in r.stdout
    assert "available here: " + ", ".join(PATHS["int8_available"]) in r.stdout
    assert "error: FASTRNN_INT8_PATH='amx'" in r.stdout


def test_a_path_of_the_wrong_kind_or_missing_from_this_cpu_is_refused():
    a, w = data(2, 8, 8)
    with pytest.raises(ValueError, match="path='avx512_vnni' is not one of avx512_bf16, avx2, scalar"):
        core.lowp_gemm(a, core.pack_bf16(w), path="avx512_vnni")
    missing = [p for p in INT8_PATHS if p not in PATHS["int8_available"]]
    if missing:
        with pytest.raises(ValueError, match="this CPU lacks it; available here"):
            core.lowp_gemm(a, core.pack_s8(w), path=missing[0])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_int8_refuses_non_finite_weights_naming_the_parameter(bad):
    w = np.ones((6, 4), np.float32)
    w[3, 1] = bad
    keep = w.copy()
    with pytest.raises(ValueError, match=r"weight_hh_l0 has NaN or Inf \(output 3\)"):
        core.pack_s8(w, 2, name="weight_hh_l0")
    np.testing.assert_array_equal(w, keep)


def test_bad_arrays_are_refused_and_inputs_left_alone():
    a, w = data(3, 8, 10)
    M = core.pack_s8(w)
    a_keep, w_keep = a.copy(), w.copy()
    with pytest.raises(TypeError, match="a must be float32"):
        core.lowp_gemm(a.astype(np.float64), M)
    with pytest.raises(ValueError, match="a has 7 columns, the packed matrix K=8"):
        core.lowp_gemm(a[:, :7].copy(), M)
    with pytest.raises(ValueError, match="a must be 2-D"):
        core.lowp_gemm(a[0], M)
    with pytest.raises(ValueError, match="a must be C-contiguous"):
        core.lowp_gemm(np.asfortranarray(a), M)
    with pytest.raises(ValueError, match="accumulate=True needs out"):
        core.lowp_gemm(a, M, accumulate=True)
    with pytest.raises(ValueError, match=r"out must have shape \(3, 10\)"):
        core.lowp_gemm(a, M, out=np.zeros((3, 9), np.float32))
    with pytest.raises(ValueError, match="do not split into groups=3"):
        core.pack_bf16(w, 3)
    with pytest.raises(TypeError, match="weight must be float32"):
        core.pack_s8(w.astype(np.float16))
    np.testing.assert_array_equal(a, a_keep)
    np.testing.assert_array_equal(w, w_keep)


def test_the_fp32_panels_compute_the_product():
    # the baseline of benchmarks/lowp_gemm.py
    a, w = data(7, 50, 40)
    exact = a.astype(np.float64) @ w.astype(np.float64).T
    out = core.lowp_gemm(a, core.pack_f32(w))
    # fp32 sums of K products: within K·2⁻²³ of Σ|terms|
    assert np.all(np.abs(out - exact) <= 50 * 2.0**-23 * (np.abs(a) @ np.abs(w).T))


def test_benchmark_runs_every_path():
    bench = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "lowp_gemm.py")
    r = subprocess.run([sys.executable, bench, "--quick"], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert r.returncode == 0, r.stderr
    rows = [line.split("|") for line in r.stdout.splitlines() if line.startswith("| quick")]
    variants = [row[5].strip() for row in rows]
    assert variants == (["float32"] + [f"bf16 {p}" for p in PATHS["bf16_available"]]
                        + [f"int8 {p}" for p in PATHS["int8_available"]])
    assert all(float(row[6]) > 0 for row in rows)


@pytest.mark.parametrize("m, K, N", [(0, 5, 8), (3, 0, 8), (3, 5, 0)])
def test_empty_axes_give_empty_or_zero_products(m, K, N):
    a, w = np.ones((m, K), np.float32), np.ones((N, K), np.float32)
    for kind, pack in (("bf16", core.pack_bf16), ("int8", core.pack_s8)):
        for path in PATHS[f"{kind}_available"]:
            out = core.lowp_gemm(a, pack(w), path=path)
            assert out.shape == (m, N) and not out.any()


def test_int8_refuses_k_that_could_overflow_the_s32_sums():
    # 65537 · 255 · 127 > 2³¹ (the VNNI path sums u8 = q + 128)
    with pytest.raises(ValueError, match="weight_ih_l0: int8 needs at most 65536 inputs per output"):
        core.pack_s8(np.ones((2, 65537), np.float32), name="weight_ih_l0")


def test_activation_terms_must_be_one_or_two():
    w = np.ones((4, 8), np.float32)
    for bad in (0, 3):
        with pytest.raises(ValueError, match="terms must be 1 or 2"):
            core.pack_s8(w, activation_terms=bad)
        with pytest.raises(ValueError, match="terms must be 1 or 2"):
            core.lowp_quantise_rows(w, terms=bad)
