"""The machine: CPU, BLAS, thread limits, and the float32 GEMM roofline.

Run as a script (`python machine.py N`) it prints NumPy's N³ GEMM rate in GF/s; the
suite uses that to measure OpenBLAS's own kernel choice when OPENBLAS_CORETYPE forces one.
"""
import contextlib
import os
import platform
import subprocess
import sys
import time

import numpy as np

try:
    import threadpoolctl
except ImportError:
    threadpoolctl = None


def cpu_info():
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    flags = set(fields.get("flags", "").split())
    return {
        "model": fields.get("model name") or platform.processor() or platform.machine(),
        "family": fields.get("cpu family"), "model_id": fields.get("model"),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "simd": [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in flags],
    }


def cpu_snapshot():
    """For other_cpu(): the machine's busy and stolen CPU time (/proc/stat, seconds), this
    process's CPU time with its finished children's (os.times), and the wall clock."""
    t = os.times()
    snap = {"own": t.user + t.system + t.children_user + t.children_system,
            "wall": time.monotonic()}
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return snap
    hz = os.sysconf("SC_CLK_TCK")
    # user nice system idle iowait irq softirq steal (guest time is inside user)
    snap["busy"] = (v[0] + v[1] + v[2] + v[5] + v[6]) / hz
    snap["steal"] = v[7] / hz if len(v) > 7 else 0.0
    return snap


def other_cpu(start, end=None):
    """Cores' worth of CPU that other processes used (busy time minus this process's and its
    children's) and that the hypervisor took (steal), averaged since `start`; None off Linux."""
    end = end or cpu_snapshot()
    wall = end["wall"] - start["wall"]
    if "busy" not in start or "busy" not in end or wall <= 0:
        return None
    others = (end["busy"] - start["busy"]) - (end["own"] - start["own"])
    return {"cores": round(max(0.0, others) / wall, 3),
            "steal_cores": round((end["steal"] - start["steal"]) / wall, 3), "seconds": round(wall, 1)}


def blas_info():
    """Which BLAS NumPy loaded and which kernel (OpenBLAS 'architecture') it picked."""
    env = {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OMP_NUM_THREADS",
                                            "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    info = {"numpy": np.__version__, "env": {k: v for k, v in env.items() if v is not None}}
    if threadpoolctl is None:
        info["libraries"] = "unknown (threadpoolctl not installed)"
        return info
    info["libraries"] = [
        {k: lib.get(k) for k in ("user_api", "internal_api", "prefix", "version",
                                 "architecture", "threading_layer", "filepath")}
        for lib in threadpoolctl.threadpool_info()]
    return info


def blas_summary(info):
    libs = info["libraries"]
    if isinstance(libs, str):
        return libs
    blas = [f"{l['internal_api']} {l['version']} kernel={l.get('architecture')}"
            for l in libs if l["user_api"] == "blas"]
    forced = info["env"].get("OPENBLAS_CORETYPE")
    return ", ".join(blas) + (f" (OPENBLAS_CORETYPE={forced} forces it)" if forced else "")


@contextlib.contextmanager
def thread_limit(n):
    """Limit every BLAS and OpenMP pool loaded in this process to n threads."""
    if threadpoolctl is None:
        yield False
        return
    with threadpoolctl.threadpool_limits(limits=n):
        yield True


def _best_time(fn, repeats):
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def numpy_gemm_rate(n, repeats=3):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), np.float32)
    return 2 * n ** 3 / _best_time(lambda: np.matmul(a, b, out=c), repeats) / 1e9


def roofline(threads, n, repeats, torch=None):
    """Peak float32 GEMM GF/s with `threads` threads: the best of the BLAS libraries at hand."""
    sources = {}
    with thread_limit(threads):
        sources["numpy"] = numpy_gemm_rate(n, repeats)
    if os.environ.get("OPENBLAS_CORETYPE"):
        env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
        env["OPENBLAS_NUM_THREADS"] = str(threads)
        run = subprocess.run([sys.executable, __file__, str(n)], env=env,
                             capture_output=True, text=True)
        if run.returncode == 0:
            sources["numpy, OpenBLAS autodetected kernel"] = float(run.stdout)
    if torch is not None:
        torch.set_num_threads(threads)
        a, b = torch.randn(n, n), torch.randn(n, n)
        sources["torch.mm"] = 2 * n ** 3 / _best_time(lambda: torch.mm(a, b), repeats) / 1e9
    best = max(sources, key=sources.get)
    return {"gflops": sources[best], "source": best, "sources": sources, "n": n}


if __name__ == "__main__":
    print(numpy_gemm_rate(int(sys.argv[1])))
