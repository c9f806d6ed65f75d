"""C++ kernels (fastrnn.functional) against the NumPy reference (the oracle).

The reference itself is checked against finite differences in
test_reference.py and against PyTorch in test_torch.py.
"""
import numpy as np
import pytest

from fastrnn import functional as F
from fastrnn import reference as R

# (cell, options, G)
VARIANTS = [
    ("lstm", {}, 4),
    ("lstm", {"peephole": True}, 4),
    ("gru", {"reset_after": True}, 3),
    ("gru", {"reset_after": False}, 3),
    ("rnn", {"nonlinearity": "tanh"}, 1),
    ("rnn", {"nonlinearity": "relu"}, 1),
]
IDS = ["lstm", "lstm-peephole", "gru", "gru-reset-before", "rnn-tanh", "rnn-relu"]

# (T, B, I, H): degenerate sizes, odd sizes, and one large enough that the
# threaded gate pass and Eigen's blocked GEMM paths run.
SHAPES = [(1, 1, 1, 1), (1, 3, 2, 5), (7, 1, 3, 4), (4, 5, 1, 1), (6, 4, 7, 9),
          (9, 7, 13, 17), (3, 2, 33, 31), (12, 40, 24, 48)]


def make_case(cell, opts, G, T, B, I, H, dtype, rng, lengths=None):
    """Arguments and incoming gradients for one forward/backward pair."""
    s = 1.0 / float(np.sqrt(H))
    arr = lambda *shape: rng.uniform(-1, 1, shape).astype(dtype)  # noqa: E731
    args = dict(x=arr(T, B, I), w_ih=arr(G * H, I) * s, w_hh=arr(G * H, H) * s,
                b_ih=arr(G * H) * s, b_hh=arr(G * H) * s, h0=arr(B, H))
    kw = dict(opts)
    if cell == "lstm":
        args["c0"] = arr(B, H)
        kw["peephole"] = arr(3, H) if opts.get("peephole") else None
    grads = dict(d_out=arr(T, B, H), d_h_n=arr(B, H))
    if cell == "lstm":
        grads["d_c_n"] = arr(B, H)
    return args, kw, grads


def run(mod, cell, args, kw, grads, lengths=None, reverse=False):
    fwd = getattr(mod, f"{cell}_forward")(**args, **kw, lengths=lengths, reverse=reverse)
    bwd = getattr(mod, f"{cell}_backward")(fwd[-1], **grads)
    return fwd[:-1], bwd


def assert_match(got, want, rtol, atol, what):
    got_f, got_b = got
    want_f, want_b = want
    for i, (g, w) in enumerate(zip(got_f, want_f)):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=f"{what}: forward output {i}")
    for name, g, w in zip(want_b._fields, got_b, want_b):
        if w is None:
            assert g is None, f"{what}: {name} should be None"
            continue
        assert g.shape == w.shape, f"{what}: {name} shape"
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=f"{what}: {name}")


def lengths_for(B, T, rng):
    """Random lengths that include 0 and T whenever the batch allows it."""
    lengths = rng.integers(0, T + 1, size=B)
    lengths[0] = T
    if B > 1:
        lengths[-1] = 0
    return rng.permutation(lengths)


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("mode", ["plain", "reverse", "lengths", "lengths-reverse"])
def test_float64_matches_reference(variant, shape, mode):
    # float64: both sides do the same arithmetic in a different order (GEMM
    # blocking, fused passes), so they agree to a few ulps times the depth of
    # the computation; 1e-12 relative (plus 1e-13 absolute for values near 0)
    # leaves room for T ≤ 12 steps of error growth and nothing more.
    cell, opts, G = variant
    rng = np.random.default_rng(abs(hash((cell, shape, mode, str(opts)))) % 2**32)
    T, B, I, H = shape
    args, kw, grads = make_case(cell, opts, G, T, B, I, H, np.float64, rng)
    lengths = lengths_for(B, T, rng) if "lengths" in mode else None
    reverse = "reverse" in mode
    got = run(F, cell, args, kw, grads, lengths, reverse)
    want = run(R, cell, args, kw, grads, lengths, reverse)
    assert_match(got, want, 1e-12, 1e-13, f"{cell}{opts} {shape} {mode}")


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
@pytest.mark.parametrize("mode", ["plain", "lengths-reverse"])
def test_float32_matches_float64_reference(variant, mode):
    # float32 kernels (Eigen's vectorised float logistic/tanh, float GEMMs)
    # against the float64 reference on the same (float32-representable)
    # inputs: unit roundoff 6e-8 times sums of up to I+H = 72 terms of size
    # ~1 per step, compounded over 12 steps, stays below 1e-5 here; 2e-4
    # absolute/relative is a bound with a wide margin that still catches any
    # wrong formula (those give errors of order 1e-2 or more).
    cell, opts, G = variant
    rng = np.random.default_rng(7)
    T, B, I, H = 12, 40, 24, 48
    args32, kw32, grads32 = make_case(cell, opts, G, T, B, I, H, np.float32, rng)
    up = lambda d: {k: (None if v is None else v.astype(np.float64)) for k, v in d.items()}  # noqa: E731
    lengths = lengths_for(B, T, rng) if "lengths" in mode else None
    reverse = "reverse" in mode
    got = run(F, cell, args32, kw32, grads32, lengths, reverse)
    want = run(R, cell, up(args32), up(kw32) if "peephole" in kw32 else kw32, up(grads32),
               lengths, reverse)
    for part in got[0] + tuple(got[1]):
        assert part is None or part.dtype == np.float32
    assert_match(got, want, 2e-4, 2e-4, f"float32 {cell}{opts} {mode}")


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inference_equals_training_outputs(variant, dtype):
    # Same formulas on the same inputs. Not bit-identical: Eigen runs the
    # unaligned head/tail of an elementwise pass in scalar code, whose exp/tanh
    # and FMA use round differently from the SIMD code, and the buffers of the
    # two modes differ in alignment (docs/numerics.md). A few ulps remain:
    # rtol 8 eps (float64: 2e-15, float32: 1e-6).
    cell, opts, G = variant
    rng = np.random.default_rng(3)
    args, kw, _ = make_case(cell, opts, G, 9, 6, 5, 8, dtype, rng)
    lengths = np.array([9, 0, 4, 9, 1, 7])
    fwd = getattr(F, f"{cell}_forward")
    for reverse in (False, True):
        train = fwd(**args, **kw, lengths=lengths, reverse=reverse, training=True)
        infer = fwd(**args, **kw, lengths=lengths, reverse=reverse, training=False)
        assert infer[-1] is None
        eps = np.finfo(dtype).eps
        for a, b in zip(train[:-1], infer[:-1]):
            np.testing.assert_allclose(a, b, rtol=8 * eps, atol=8 * eps)


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_padding_never_read(variant):
    # Padded steps of x and d_out must not influence anything (NaN there stays out).
    cell, opts, G = variant
    rng = np.random.default_rng(11)
    T, B = 6, 4
    args, kw, grads = make_case(cell, opts, G, T, B, 3, 5, np.float64, rng)
    lengths = np.array([6, 2, 0, 4])
    clean = run(F, cell, args, kw, grads, lengths, True)
    for b, n in enumerate(lengths):
        args["x"][n:, b] = np.nan
        grads["d_out"][n:, b] = np.nan
    dirty = run(F, cell, args, kw, grads, lengths, True)
    # NaN read anywhere would spread; ulp noise from buffer alignment is
    # allowed (docs/numerics.md), hence 8 eps rather than bit equality.
    eps = np.finfo(np.float64).eps
    for a, b in zip(clean[0] + tuple(clean[1]), dirty[0] + tuple(dirty[1])):
        if a is not None:
            assert np.all(np.isfinite(b))
            np.testing.assert_allclose(b, a, rtol=8 * eps, atol=8 * eps)


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_empty_sequence_and_batch(variant):
    # T = 0 returns the initial state; B = 0 returns empty arrays; no crash.
    cell, opts, G = variant
    rng = np.random.default_rng(5)
    for T, B in [(0, 3), (4, 0)]:
        args, kw, grads = make_case(cell, opts, G, T, B, 2, 3, np.float64, rng)
        assert_match(run(F, cell, args, kw, grads), run(R, cell, args, kw, grads), 0, 0,
                     f"{cell} T={T} B={B}")


def test_inputs_not_modified():
    rng = np.random.default_rng(2)
    for cell, opts, G in VARIANTS:
        args, kw, grads = make_case(cell, opts, G, 5, 3, 4, 6, np.float64, rng)
        before = {k: v.copy() for k, v in {**args, **grads}.items()}
        run(F, cell, args, kw, grads, np.array([5, 2, 0]), True)
        for k, v in {**args, **grads}.items():
            np.testing.assert_array_equal(v, before[k], err_msg=f"{cell}: {k} was modified")


def test_noncontiguous_inputs_are_read_correctly():
    # Views (negative strides, Fortran order, slices) are copied, never misread.
    rng = np.random.default_rng(4)
    args, kw, grads = make_case("lstm", {}, 4, 5, 3, 4, 6, np.float64, rng)
    want = run(F, "lstm", args, kw, grads)
    views = dict(args)
    views["x"] = np.ascontiguousarray(args["x"][::-1])[::-1]
    views["w_ih"] = np.asfortranarray(args["w_ih"])
    big = np.zeros((4 * 6, 12))
    big[:, ::2] = args["w_hh"]
    views["w_hh"] = big[:, ::2]
    got = run(F, "lstm", views, kw, grads)
    # A copy may change buffer alignment, hence ulp-level noise (see above).
    assert_match(got, want, 1e-14, 1e-15, "views")


def test_cache_reusable_and_cell_checked():
    rng = np.random.default_rng(6)
    args, kw, grads = make_case("gru", {}, 3, 4, 2, 3, 5, np.float64, rng)
    *_, cache = F.gru_forward(**args)
    g1 = F.gru_backward(cache, **grads)
    g2 = F.gru_backward(cache, **grads)
    for a, b in zip(g1, g2):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="gru_forward"):
        F.rnn_backward(cache, **grads)
    with pytest.raises(ValueError, match="training=True"):
        F.gru_backward(None, **grads)


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
@pytest.mark.parametrize("mode", ["plain", "lengths-reverse"])
@pytest.mark.parametrize("split,size", [("rows", (20, 64, 48, 40)), ("units", (12, 4, 24, 136))],
                         ids=["rows", "units"])
def test_thread_counts_agree(variant, mode, split, size):
    # Large enough that 2+ threads share each step (csrc/time_loop.hpp): B = 64
    # splits the batch rows (by summed length under `lengths`); B = 4 is too few
    # rows, so the 136 hidden units are split (9 panels of 16: uneven). Results
    # are bit-identical for every thread count (docs/numerics.md): tolerance 0.
    cell, opts, G = variant
    rng = np.random.default_rng(8)
    T, B, I, H = size
    args, kw, grads = make_case(cell, opts, G, T, B, I, H, np.float32, rng)
    lengths = lengths_for(B, T, rng) if "lengths" in mode else None
    reverse = "reverse" in mode
    old = F.get_num_threads()
    try:
        F.set_num_threads(1)
        base = run(F, cell, args, kw, grads, lengths, reverse)
        for n in (2, 3):
            F.set_num_threads(n)
            assert F.get_num_threads() == n
            again = run(F, cell, args, kw, grads, lengths, reverse)
            assert_match(again, base, 0, 0, f"{cell}{opts} {n} threads vs 1")
    finally:
        F.set_num_threads(old)
