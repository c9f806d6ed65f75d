"""fastrnn.distributed: data-parallel training over MPI (docs/distributed.md).

The multi-rank tests run tests/distributed_worker.py and examples/distributed_train.py
under `mpiexec -n 2` in a subprocess (marker `mpi`); they are skipped when mpi4py or an
mpiexec is absent. mpiexec is looked up beside this Python first (the `mpich` wheel puts
it in the environment's bin/), then on PATH, so it belongs to the MPI that mpi4py loads.
The single-process tests use MPI.COMM_WORLD of this process (one rank).
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import fastrnn
from fastrnn import nn
from fastrnn.distributed import _block

try:
    from mpi4py import MPI
except ImportError:
    MPI = None

HERE = Path(__file__).resolve().parent
ROOT = Path(fastrnn.__file__).resolve().parent.parent          # the fastrnn under test
TIMEOUT = 120           # seconds for one mpiexec run; each takes about 1-5 s here
needs_mpi4py = pytest.mark.skipif(MPI is None, reason="mpi4py is not installed "
                                  "(pip install '.[mpi]')")


def usable_cores():
    """As local_num_threads counts them (macOS has no affinity: all cores)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def find_mpiexec():
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else shutil.which("mpiexec")


@pytest.fixture
def mpiexec():
    """The mpiexec to use; skips the test when it or mpi4py is absent."""
    if MPI is None:
        pytest.skip("mpi4py is not installed (pip install '.[mpi]')")
    path = find_mpiexec()
    if path is None:
        pytest.skip("no mpiexec beside this Python or on PATH")
    return path


@pytest.fixture
def mpirun(mpiexec):
    """Run `python <args>` on 2 ranks; returns (returncode, stdout, stderr, seconds)."""

    def run(*args, cwd=HERE):
        env = dict(os.environ, OMP_NUM_THREADS="1")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        start = time.monotonic()
        # A new session, so that on a timeout the whole tree (mpiexec, its proxies and the
        # ranks) is killed, not only mpiexec.
        proc = subprocess.Popen([mpiexec, "-n", "2", sys.executable, *map(str, args)],
                                cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            pytest.fail(f"mpiexec did not finish in {TIMEOUT} s (a hang):\n{out}\n{err}")
        return proc.returncode, out, err, time.monotonic() - start

    return run


# -- two ranks -------------------------------------------------------------------------------

@pytest.mark.mpi
def test_two_ranks_train_like_one_process(mpirun):
    """N steps (SGD with momentum and Adam, blocking and overlapped reduction, clipping)
    with the global batch split over 2 ranks give one process's parameters."""
    code, out, err, _ = mpirun(HERE / "distributed_worker.py", "equality")
    assert code == 0, err
    results = {r["config"]: r for r in map(json.loads, out.splitlines())}
    # Two unbound ranks (MPICH's default) share this machine's cores.
    assert results.pop("threads")["local_num_threads"] == \
        max(1, usable_cores() // 2)
    assert len(results) == 5, out
    # Tolerances: the runs differ only in the summation order of the batch reductions
    # (each rank sums its half, then the halves are added) and in scaling by the weight and
    # dividing by the total: a few float64 ulps (1e-16) per gradient entry. SGD carries
    # them to the parameters unamplified (measured 3e-16). Adam divides each gradient by
    # its own running RMS, so an entry that is small from cancellation keeps an ulp-sized
    # absolute error as a larger relative one (measured 3.5e-13). A wrong average, a wrong
    # shard or missing weights is off by ~1e-1 (the unweighted control below).
    tolerance = {"sgd": 1e-12, "adam": 1e-10}
    for config, r in results.items():
        if config == "sgd-blocking-B7-mean":
            continue
        assert r["vs_single"] < tolerance[config.split("-")[0]], (config, r["vs_single"])
        np.testing.assert_allclose(r["norms"], r["single_norms"], rtol=1e-12, err_msg=config)
        assert max(r["norms"]) > 0.5, f"{config}: clipping (max_norm 0.5) never acted"
    for config, r in results.items():   # the allreduce leaves every rank identical
        assert r["across_ranks"] == 0.0, (config, r["across_ranks"])
    # Unequal shards (4 + 3) averaged without weights are a different gradient: this is
    # what `weight` is for, and shows the comparison above can fail.
    assert results["sgd-blocking-B7-mean"]["vs_single"] > 1e-3


@pytest.mark.mpi
def test_model_mismatch_raises_on_every_rank(mpirun):
    code, out, err, _ = mpirun(HERE / "distributed_worker.py", "mismatch")
    assert code == 0, err
    expected = {
        "shape": r"ValueError: DataParallel: the model differs across ranks.*?rank 1 has "
                 r"modules\[0\] \(LSTM\) 'weight_ih_l0' shape \(24, 3\) dtype float64 "
                 r"where rank 0 has modules\[0\] \(LSTM\) 'weight_ih_l0' shape \(20, 3\)",
        "dtype": r"ValueError: DataParallel: the model differs.*?dtype float32 where rank 0 "
                 r"has modules\[0\] \(LSTM\) 'weight_ih_l0' shape \(20, 3\) dtype float64",
        "count": r"ValueError: DataParallel: the model differs.*?rank 1 has 8 parameters "
                 r"and rank 0 has 10; the first unmatched one is rank 0's modules\[1\] "
                 r"\(Dense\) 'weight'",
        "root": r"ValueError: DataParallel: every rank must pass the same root, got \[0, 1\]",
    }
    for case, pattern in expected.items():
        for rank in (0, 1):
            assert re.search(f"{case} rank {rank}: {pattern}", out), (case, rank, out)
    # A module that fails the local check on rank 1 only: rank 1 raises its own error,
    # rank 0 learns about it instead of waiting.
    assert re.search(r"local rank 1: TypeError: modules\[2\] \(object\) must have", out), out
    assert re.search(r"local rank 0: RuntimeError: DataParallel setup failed on rank 1: "
                     r"TypeError: modules\[2\]", out), out


@pytest.mark.mpi
def test_a_failing_rank_aborts_the_others(mpirun):
    """Rank 1 raises while rank 0 waits in an allreduce: all end, non-zero, with a message."""
    code, out, err, seconds = mpirun(HERE / "distributed_worker.py", "crash")
    assert code != 0
    assert "RuntimeError: injected failure on rank 1" in err
    assert "fastrnn.distributed: uncaught RuntimeError on rank 1 of 2; calling MPI_Abort" in err
    assert seconds < 30      # the abort ends the run in about a second; a hang lasts TIMEOUT


@pytest.mark.mpi
def test_example_runs_on_two_ranks(mpirun, tmp_path):
    """examples/distributed_train.py --quick learns as forecast_gru.py (the same model,
    thresholds of tests/test_examples.py)."""
    code, out, err, _ = mpirun(HERE.parent / "examples" / "distributed_train.py", "--quick",
                               cwd=tmp_path)
    assert code == 0, err
    threads = max(1, usable_cores() // 2)     # local_num_threads' rule
    assert f"2 ranks x {threads} kernel thread" in out, out
    line = out.strip().splitlines()[-1]
    m = re.fullmatch(r"test MAE: ([\d.]+) \(naive last-value ([\d.]+), seasonal naive "
                     r"([\d.]+)\)", line)
    assert m, line
    mae, naive, seasonal = map(float, m.groups())
    assert mae < 0.5 * naive and mae < seasonal, line


@pytest.mark.mpi
@pytest.mark.usefixtures("mpiexec")
def test_scaling_benchmark_runs(tmp_path):
    """benchmarks/distributed.py end to end on a tiny shape (every configuration)."""
    out = tmp_path / "scaling.json"
    run = subprocess.run([sys.executable, str(HERE.parent / "benchmarks" / "distributed.py"),
                          "--shape", "tiny=5,4,3,2", "--reps", "2", "--steps", "2",
                          "--json", str(out)], capture_output=True, text=True, timeout=TIMEOUT,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert run.returncode == 0, run.stderr
    doc = json.loads(out.read_text())
    assert set(doc["results"]) == {"1x1", "1x2", "2x1", "stack 2x1 blocking",
                                   "stack 2x1 overlap"}
    for name, row in doc["results"].items():
        assert len(row["rep_medians_ms"]) == 2 and row["sequences_per_s"] > 0, name
        assert doc["samples"][name][0]["threads"] == (2 if name == "1x2" else 1), name
    assert "| 2x1 | 2 x 1 |" in run.stdout


# -- one process -----------------------------------------------------------------------------

def test_import_fastrnn_does_not_import_mpi4py():
    code = "import sys, fastrnn, fastrnn.distributed; print('mpi4py' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)), check=True).stdout
    assert out.strip() == "False"


def test_missing_mpi4py_is_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)       # as if not installed
    with pytest.raises(ImportError, match=r"pip install 'fastrnn\[mpi\]'"):
        fastrnn.distributed.DataParallel([nn.Dense(2, 2)])


@pytest.mark.parametrize("n,size", [(8, 2), (7, 2), (5, 3), (3, 3), (10, 4)])
def test_blocks_cover_the_items_in_order(n, size):
    blocks = [_block(n, r, size) for r in range(size)]
    assert blocks[0][0] == 0 and blocks[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
    sizes = [b - a for a, b in blocks]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def blocks(dtype=np.float64):
    lstm = fastrnn.LSTM(3, 4, dtype=dtype, seed=0)
    head = nn.Dense(4, 2, dtype=dtype, seed=0)
    return lstm, head


def filled_grads(modules, seed=0):
    rng = np.random.default_rng(seed)
    for m in modules:
        for g in m.grads.values():
            g[...] = rng.standard_normal(g.shape)
    return [{k: g.copy() for k, g in m.grads.items()} for m in modules]


@needs_mpi4py
def test_one_rank_reduction_keeps_the_gradients():
    """With one rank the average of one gradient is itself, whatever the path."""
    lstm, head = blocks()
    dp = fastrnn.distributed.DataParallel([lstm, head], abort_on_error=False)
    params = [{k: p.copy() for k, p in m.params.items()} for m in (lstm, head)]
    before = filled_grads([lstm, head])
    dp.allreduce_grads()
    dp.grads_ready(head)
    dp.synchronize()                           # starts lstm's bucket itself
    dp.allreduce_grads(weight=3)               # g * 3 / 3: round-off only
    for m, want, p in zip((lstm, head), before, params):
        for k in want:
            np.testing.assert_allclose(m.grads[k], want[k], rtol=1e-15, err_msg=k)
            np.testing.assert_array_equal(m.params[k], p[k], err_msg=k)   # bcast of own


@needs_mpi4py
def test_one_rank_shard_is_a_copy_of_everything():
    x = np.arange(24.0).reshape(2, 3, 4)
    s = fastrnn.distributed.shard(x, axis=-2)
    np.testing.assert_array_equal(s, x)
    assert not np.shares_memory(s, x)


@needs_mpi4py
def test_argument_errors():
    dist = fastrnn.distributed
    lstm, head = blocks()
    with pytest.raises(TypeError, match="comm must be None or an mpi4py intracommunicator"):
        dist.DataParallel([lstm], comm="world")
    with pytest.raises(ValueError, match=r"root must be a rank in \[0, 1\), got 1"):
        dist.DataParallel([lstm], root=1)
    with pytest.raises(TypeError, match=r"modules\[0\] \(int\) must have dict attributes"):
        dist.DataParallel([3])
    with pytest.raises(TypeError, match="x must be a numpy.ndarray, got list"):
        dist.shard([1, 2], axis=0)
    with pytest.raises(ValueError, match=r"axis must be an int in \[-2, 2\)"):
        dist.shard(np.zeros((2, 3)), axis=2)
    with pytest.raises(ValueError, match=r"x.shape\[0\] = 0 cannot be split among 1 ranks"):
        dist.shard(np.zeros((0, 3)), axis=0)

    dp = dist.DataParallel([lstm, head], abort_on_error=False)
    with pytest.raises(ValueError, match="weight must be a finite number >= 0, got -1"):
        dp.allreduce_grads(weight=-1)
    with pytest.raises(ValueError, match="module must be one of this DataParallel's modules"):
        dp.grads_ready(nn.Dense(4, 2))
    dp.grads_ready(head)
    with pytest.raises(ValueError, match=r"modules\[1\] \(Dense\) was already marked ready"):
        dp.grads_ready(head)
    with pytest.raises(ValueError, match=r"grads_ready was called for modules \[1\]"):
        dp.allreduce_grads()
    dp.synchronize()
    head.grads["weight"] = np.zeros((2, 5))
    with pytest.raises(ValueError, match=r"modules\[1\].grads\['weight'\] must stay an array "
                                         r"of shape \(2, 4\)"):
        dp.allreduce_grads()


@needs_mpi4py
def test_local_num_threads_uses_this_process_cores():
    # One rank: all of this process's usable cores (two ranks: the equality test).
    assert fastrnn.distributed.local_num_threads() == usable_cores()
