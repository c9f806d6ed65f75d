"""Timing (warm-up, repeats, median and spread) and validation against the reference."""
import time

import numpy as np

# Float32 results of different summation orders agree to 1e-6..1e-5 of their largest
# entry on these shapes; 1e-3 leaves room for long sequences and flags real mistakes.
TOLERANCE = 1e-3


def measure(fn, warmup, repeats, budget, min_repeats=3):
    """Time fn: `warmup` untimed calls, then up to `repeats` timed calls, stopping early
    once `budget` seconds have gone by and `min_repeats` calls are in. Times in ms."""
    return measure_interleaved({"fn": fn}, warmup, repeats, budget, min_repeats)["fn"]


def measure_interleaved(fns, warmup, repeats, budget, min_repeats=3):
    """Time several callables in turns, one call each per round, so that a change in the
    machine's load hits them alike (for comparing close contenders, such as two builds):
    `measure`'s rule, counted in rounds. {name: fn} -> {name: times}."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples, start = {name: [] for name in fns}, time.perf_counter()
    for rounds in range(1, repeats + 1):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - t0) * 1e3)
        if rounds >= min_repeats and time.perf_counter() - start > budget:
            break
    return {name: _stats(s) for name, s in samples.items()}


def measure_groups(fns, warmup, repeats, budget):
    """measure_interleaved within each group of a name prefix: fastrnn's callables in turns
    with each other, then each peer framework's with each other. Torch's OpenMP workers and
    ONNX Runtime's keep spinning on the cores for a while after a call; in turns with
    fastrnn's calls they would hold the cores during fastrnn's next multi-threaded call
    (docs/reliability.md: a 2-thread fastrnn call then runs at about its 1-thread speed)."""
    groups = {}
    for name, fn in fns.items():
        groups.setdefault(name.split()[0], {})[name] = fn
    out = {}
    for group in groups.values():
        out.update(measure_interleaved(group, warmup, repeats, budget))
    return out


def _stats(samples):
    q1, median, q3 = np.percentile(samples, [25, 50, 75])
    return {"median_ms": median, "q1_ms": q1, "q3_ms": q3, "min_ms": min(samples),
            "max_ms": max(samples), "n": len(samples), "samples_ms": samples}


def relative_error(got, want):
    """max |got - want| / max |want|, the error relative to the array's scale."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        return float("inf")
    return float(np.max(np.abs(got - want), initial=0.0) / max(np.max(np.abs(want), initial=0.0), 1e-30))


def validate(result, oracle, mode):
    """Compare one backend's result with the reference's; returns {ok, errors}."""
    if mode == "inference":
        errors = {"out": relative_error(result, oracle[0])}
    else:
        out, grads = result
        errors = {"out": relative_error(out, oracle[0])}
        errors.update({k: relative_error(grads[k], oracle[1][k]) for k in oracle[1]})
    return {"ok": all(e <= TOLERANCE for e in errors.values()), "errors": errors}
