"""Peak memory of one long inference run, measured in a fresh subprocess.

tracemalloc cannot see C++ allocations, so the child reads the kernel's high-water mark
(VmHWM in /proc/self/status): it builds the inputs, resets the mark to the current RSS
(`5` > /proc/self/clear_refs), runs one forward(training=False), and reports how far the
mark rose. Inference that keeps no per-step state rises by about the output's size; a rise
of more than half the output beyond it (and more than NOISE_MIB) counts as per-step state.

Child usage: python memory.py BACKEND CELL T,B,I,H THREADS  (prints one JSON line)
"""
import json
import os
import subprocess
import sys
import time

# Below this a rise is allocator and library start-up noise (oneDNN's first call takes ~9 MiB).
NOISE_MIB = 16


def _vm_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def peak_memory(backend, cell, shape, threads, pythonpath):
    """Run the child for one backend; returns the measurement with sizes to compare it to."""
    import cases
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (pythonpath, os.environ.get("PYTHONPATH")) if p))
    run = subprocess.run([sys.executable, os.path.abspath(__file__), backend, cell,
                          shape.dims(), str(threads)], env=env, capture_output=True, text=True)
    if run.returncode != 0:
        return {"backend": backend, "error": run.stderr.strip().splitlines()[-1:]}
    child = json.loads(run.stdout)
    mib = 1 << 20
    out_mib = shape.T * shape.B * shape.H * 4 / mib
    extra = child["peak_rise_mib"] - out_mib
    return {"backend": backend, **child, "output_mib": out_mib,
            "input_mib": shape.T * shape.B * shape.I * 4 / mib,
            "per_step_gates_mib": shape.T * shape.B * cases.GATES[cell] * shape.H * 4 / mib,
            "extra_beyond_output_mib": extra,
            "keeps_per_step_state": extra > max(0.5 * out_mib, NOISE_MIB)}


def _child(backend_name, cell, dims, threads):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import cases
    import machine
    import peers
    backend = peers.BACKENDS[backend_name]()
    problem = cases.make_problem(cell, cases.parse_shape(dims), with_d_out=False)
    with machine.thread_limit(threads):
        backend.set_threads(threads)
        infer = backend.bind(problem, threads)["inference"]
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = _vm_kib("VmHWM")
        t0 = time.perf_counter()
        infer()
        seconds = time.perf_counter() - t0
        peak = _vm_kib("VmHWM")
    print(json.dumps({"rss_before_mib": before / 1024, "peak_rise_mib": (peak - before) / 1024,
                      "seconds": seconds, "threads": threads}))


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
