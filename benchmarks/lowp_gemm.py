"""GF/s of the low-precision packed GEMMs against fastrnn's fp32 packed_gemm.

    python benchmarks/lowp_gemm.py [--repeats 7] [--threads 1] [--json out.json] [--quick]

C(m, N) = A(m, K) · Mᵀ with M packed once, every path this CPU runs, side by
side in one process and interleaved (each repeat times every variant once,
in turn), so a load that comes and goes hits all of them alike; the table
shows medians over the repeats and each path's speed-up over fp32. A call
includes the per-call preparation of A (bf16 rounding or int8 quantisation).
Shapes are those of DESIGN §5's mid_b32 and big_b64 LSTMs (N = 4H): the
recurrent product of one step (m = B), the input projection of a chunk of
steps (m = T·B, here 3200), and the one-step latency shape m = 1 at H = 512.
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

try:
    import fastrnn  # noqa: F401
except ImportError:            # running from a source checkout without PYTHONPATH=python
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from fastrnn import _isa  # noqa: E402

SHAPES = [  # name, m, K, N
    ("mid_b32 recurrent", 32, 256, 1024),
    ("mid_b32 projection", 3200, 256, 1024),
    ("big_b64 recurrent", 64, 512, 2048),
    ("big_b64 projection", 3200, 512, 2048),
    ("step H=512", 1, 512, 2048),
]


def variants(core):
    paths = core.lowp_paths()
    out = [("float32", core.pack_f32, None)]
    out += [(f"bf16 {p}", core.pack_bf16, p) for p in paths["bf16_available"]]
    out += [(f"int8 {p}", core.pack_s8, p) for p in paths["int8_available"]]
    return out


def time_call(f, min_time=0.02):
    """Seconds per call: batches grow until one takes min_time."""
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            f()
        t = time.perf_counter() - t0
        if t >= min_time:
            return t / n
        n *= 2 if t < min_time / 4 else 1 + max(1, int(n * (min_time / max(t, 1e-9) - 1)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json")
    ap.add_argument("--quick", action="store_true", help="one small shape, once (a smoke test)")
    args = ap.parse_args(argv)
    shapes, min_time = SHAPES, 0.02
    if args.quick:
        shapes, min_time, args.repeats = [("quick", 8, 64, 128)], 0.001, 1
    core = _isa.core
    core.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    vs = variants(core)
    rows = []
    for name, m, K, N in shapes:
        a = rng.standard_normal((m, K)).astype(np.float32)
        w = (rng.standard_normal((N, K)) / np.sqrt(K)).astype(np.float32)
        out = np.empty((m, N), np.float32)
        calls = []
        for label, pack, path in vs:
            M = pack(w, 4)
            calls.append((label, lambda M=M, path=path: core.lowp_gemm(a, M, out=out, path=path)))
        times = {label: [] for label, _ in calls}
        for _ in range(args.repeats):
            for label, f in calls:
                times[label].append(time_call(f, min_time))
        flop = 2.0 * m * K * N
        med = {label: statistics.median(t) for label, t in times.items()}
        for label, _ in calls:
            rows.append({"shape": name, "m": m, "K": K, "N": N, "variant": label,
                         "gflops": flop / med[label] / 1e9, "speedup": med["float32"] / med[label],
                         "spread": (max(times[label]) - min(times[label])) / med[label]})
    feats = _isa.selection.features or ()
    print(f"threads {args.threads}, {args.repeats} interleaved repeats, medians; CPU features: "
          f"{' '.join(f for f in feats if f.startswith(('avx512bf16', 'avx512vnni', 'avxvnni', 'amx')))}")
    print("| shape | m | K | N | variant | GF/s | × fp32 | spread |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['shape']} | {r['m']} | {r['K']} | {r['N']} | {r['variant']} | {r['gflops']:.1f} | "
              f"{r['speedup']:.2f} | {100 * r['spread']:.0f}% |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "repeats": args.repeats, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
