"""LSTM with a projection (proj_size = H/4, PyTorch's LSTMP) against the plain LSTM, side by side.

    python benchmarks/projection.py                 # mid_b32, P = H/4, 1 thread, float32
    python benchmarks/projection.py --shape 50,16,128,128 --proj 64 --threads 2

One layer-direction through `fastrnn.functional`, float32: a training step (forward, then
backward of d_out = 1) and an inference forward (training=False), timed in turns
(harness.measure_interleaved) so that a change in the machine's load hits both rows alike.
Each row is printed as its median over the plain LSTM's, beside the ratio its GEMM flops
predict (`gemm_flops`); the pointwise pass stays H wide, so a measured ratio above the
prediction is that pass's share.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from cases import GRID, parse_shape  # noqa: E402


def gemm_flops(I, H, R, proj, training):
    """Multiply-add flops ×2 per row and step: x·W_ihᵀ, h·W_hhᵀ (R = P or H) and m·W_hrᵀ;
    backward adds dx and dW_ih, dh_prev and dW_hh, and (projection) dm and dW_hr."""
    G = 4 * H
    f = 2 * I * G + 2 * R * G + (2 * H * R if proj else 0)
    if training:
        f += 4 * G * I + 4 * G * R + (4 * H * R if proj else 0)
    return f


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", default="mid_b32", help="a cases.py name or T,B,I,H")
    ap.add_argument("--proj", type=int, default=0, help="proj_size (default H/4)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--budget", type=float, default=15.0, help="seconds of timing per mode")
    a = ap.parse_args(argv)
    from fastrnn import functional as F
    s = next((g for g in GRID if g.name == a.shape), None) or parse_shape(a.shape)
    P = a.proj or s.H // 4
    F.set_num_threads(a.threads)
    n = np.random.default_rng(0).standard_normal
    f32 = lambda *shape: (0.1 * n(shape)).astype(np.float32)  # noqa: E731
    x, w_ih = f32(s.T, s.B, s.I), f32(4 * s.H, s.I)
    plain = (x, w_ih, f32(4 * s.H, s.H)), {}
    proj = (x, w_ih, f32(4 * s.H, P)), dict(w_hr=f32(P, s.H))
    print(f"{s.name} (T={s.T}, B={s.B}, I={s.I}, H={s.H}), proj_size {P}, float32, "
          f"{a.threads} thread(s), load average {os.getloadavg()[0]:.1f}")
    for mode, training in (("training", True), ("inference", False)):
        def step(args, kw, R):
            d_out = np.ones((s.T, s.B, R), np.float32)

            def run():
                r = F.lstm_forward(*args, training=training, **kw)
                if training:
                    F.lstm_backward(r[3], d_out)
            return run
        res = harness.measure_interleaved({"plain": step(*plain, s.H), "proj": step(*proj, P)},
                                          warmup=1, repeats=1000, budget=a.budget)
        ratio = res["proj"]["median_ms"] / res["plain"]["median_ms"]
        pred = gemm_flops(s.I, s.H, P, True, training) / gemm_flops(s.I, s.H, s.H, False, training)
        for name, r in res.items():
            print(f"  {mode:9s} {name:5s} {r['median_ms']:8.1f} ms  "
                  f"(IQR {r['q1_ms']:.1f}-{r['q3_ms']:.1f}, n={r['n']})")
        print(f"  {mode:9s} proj/plain x{ratio:.3f}, GEMM flops predict x{pred:.3f}")


if __name__ == "__main__":
    main()
