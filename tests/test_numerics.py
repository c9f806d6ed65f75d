"""Non-finite, saturating and very long inputs (issue #5, docs/numerics.md).

- NaN and Inf propagate as IEEE arithmetic does, never crash, and reach exactly the
  entries the reference says they reach (same NaN pattern), leaving every other
  batch row bit-identical to a clean run (rows never mix in a step).
- Saturating inputs (|x| ~ 1e4) keep LSTM and GRU outputs and gradients finite.
- T = 100000 in inference runs in memory independent of T beyond `out` itself.
"""
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fastrnn import reference as R

try:
    import fastrnn.functional as F
except ImportError:      # the C++ backend is not built
    F = None

pytestmark = pytest.mark.skipif(F is None, reason="fastrnn.functional (C++) is not built")

VARIANTS = [("lstm", 4, {}), ("lstm", 4, {"peephole": "p"}), ("gru", 3, {}),
            ("gru", 3, {"reset_after": False}), ("rnn", 1, {}), ("rnn", 1, {"nonlinearity": "relu"})]
IDS = ["lstm", "lstm_peephole", "gru", "gru_reset_before", "rnn_tanh", "rnn_relu"]
T, B, I, H = 6, 4, 5, 7


def case(cell, G, opts, dtype, seed=0):
    rng = np.random.default_rng(seed)
    args = dict(x=rng.standard_normal((T, B, I)), w_ih=0.5 * rng.standard_normal((G * H, I)),
                w_hh=0.5 * rng.standard_normal((G * H, H)), b_ih=0.1 * rng.standard_normal(G * H),
                b_hh=0.1 * rng.standard_normal(G * H))
    kw = dict(opts)
    if kw.get("peephole") == "p":
        kw["peephole"] = 0.5 * rng.standard_normal((3, H))
    cast = {k: v.astype(dtype) for k, v in args.items()}
    kw = {k: v.astype(dtype) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    return cast, kw


def run(M, cell, args, kw):
    with np.errstate(invalid="ignore", over="ignore"):     # the reference's NumPy warns
        out = getattr(M, f"{cell}_forward")(**args, **kw)
        g = getattr(M, f"{cell}_backward")(out[-1], np.ones((T, B, H), args["x"].dtype))
    return {"out": out[0], "h_n": out[1], "dx": g.dx, "dh0": g.dh0, "dw_ih": g.dw_ih,
            "dw_hh": g.dw_hh, "db_ih": g.db_ih}


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_non_finite_input_propagates_like_the_reference(variant, bad):
    """float64: the NaN pattern equals the reference's exactly and the finite entries
    agree to 1e-10 (the kernel-vs-reference tolerance of tests/test_kernels.py); the
    rows b != 1 never see x[2, 1] and equal a clean run bit for bit, except the
    weight gradients, which sum over every row."""
    cell, G, opts = variant
    args, kw = case(cell, G, opts, np.float64)
    clean = run(F, cell, args, kw)
    args["x"][2, 1, 0] = bad
    got, want = run(F, cell, args, kw), run(R, cell, args, kw)
    for k in got:
        np.testing.assert_array_equal(np.isnan(got[k]), np.isnan(want[k]), err_msg=k)
        np.testing.assert_allclose(got[k], want[k], rtol=1e-10, atol=1e-10, err_msg=k)
    # It reached row 1 (NaN, or Inf saturating gates to their limits as in the reference).
    assert not np.array_equal(got["out"][2:, 1], clean["out"][2:, 1])
    for k in ("out", "dx"):
        np.testing.assert_array_equal(np.delete(got[k], 1, axis=1), np.delete(clean[k], 1, axis=1))
    for k in ("h_n", "dh0"):
        np.testing.assert_array_equal(np.delete(got[k], 1, axis=0), np.delete(clean[k], 1, axis=0))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale", [1e4, -1e4])
@pytest.mark.parametrize("variant", [v for v in VARIANTS if v[0] != "rnn"], ids=IDS[:4])
def test_saturating_inputs_stay_finite(variant, scale, dtype):
    """|x| ~ 1e4 drives every gate deep into saturation: sigmoid and tanh must return
    their limits (not NaN from exp overflow), and the gradients through saturated
    gates are ~0, not NaN. The states of LSTM/GRU are bounded (|h| <= 1), and the
    weight gradients multiply x (1e4) by saturated derivatives, so they stay finite.
    Agreement with the float64 reference: float64 1e-10 as above; float32 5e-3
    relative to the magnitude (terms up to 1e4 x ~1, summed in float32)."""
    cell, G, opts = variant
    args, kw = case(cell, G, opts, dtype)
    args["x"] = args["x"] * dtype(scale)
    got = run(F, cell, args, kw)
    want = run(R, cell, {k: v.astype(np.float64) for k, v in args.items()},
               {k: v.astype(np.float64) if isinstance(v, np.ndarray) else v for k, v in kw.items()})
    for k, v in got.items():
        assert np.isfinite(v).all(), k
        tol = 1e-10 if dtype == np.float64 else 5e-3 * max(1.0, np.abs(want[k]).max())
        np.testing.assert_allclose(v, want[k], rtol=1e-10 if dtype == np.float64 else 5e-3,
                                   atol=tol, err_msg=k)
    assert np.abs(got["out"]).max() <= 1.0


def test_long_sequence_inference_memory_does_not_grow_with_T():
    """T = 100000 steps (B = 4, H = 16) in inference: peak memory beyond the inputs
    must be `out` itself (25.6 MB) plus a bounded workspace, not a per-step cache
    (a leak of one state per step would add another 25.6 MB). Measured in a fresh
    process with ru_maxrss; 8 MiB of slack covers allocator rounding and the
    projection's 1024-row chunk buffer (1024 * 4 * 64 * 4 B = 1 MiB)."""
    script = textwrap.dedent("""
        import resource, numpy as np, fastrnn.functional as F
        T, B, I, H = 100_000, 4, 4, 16
        rng = np.random.default_rng(0)
        x = rng.standard_normal((T, B, I)).astype(np.float32)
        w_ih = 0.3 * rng.standard_normal((4 * H, I)).astype(np.float32)
        w_hh = 0.3 * rng.standard_normal((4 * H, H)).astype(np.float32)
        F.lstm_forward(x[:100], w_ih, w_hh, training=False)      # warm up
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out, h_n, c_n, cache = F.lstm_forward(x, w_ih, w_hh, training=False)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        assert cache is None and np.isfinite(out).all()
        print((after - before) * 1024, out.nbytes)
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    grown, out_bytes = map(int, res.stdout.split())
    assert grown <= out_bytes + 8 * 2**20, (grown, out_bytes)
