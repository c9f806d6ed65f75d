"""The array pool (csrc/array_pool.cpp): the memory of freed output, cache and gradient
arrays goes to the next call's arrays instead of fresh pages.

Stale contents of reused blocks are covered by test_threads.py
(test_results_do_not_depend_on_stale_buffers: NaN-filled arrays of the same shapes are
freed before the checked call)."""
import os
import subprocess
import sys
import textwrap

import pytest

import fastrnn

# Sanitizer builds and FASTRNN_BLOCK_CACHE=OFF compile the pool out (every array its own
# allocation, so that ASan sees each one): nothing to measure there.
pytestmark = pytest.mark.skipif(not fastrnn.config()["block_cache"],
                                reason="the array pool is compiled out in this build")

# A training step of a 2-layer LSTM returns about 35 MB (outputs, the training caches,
# gradients); the child prints the minor page faults of its last 5 steps, after 3
# steps that fill the pool, and the pages those steps' arrays span.
_CHILD = textwrap.dedent("""
    import resource, numpy as np, fastrnn
    fastrnn.set_num_threads(1)
    rng = np.random.default_rng(0)
    layer = fastrnn.LSTM(64, 256, num_layers=2, seed=0)
    x = rng.standard_normal((64, 32, 64)).astype(np.float32)
    g = rng.standard_normal((64, 32, 256)).astype(np.float32)
    def step():
        out, _ = layer(x)
        dx = layer.backward(g)  # (dx, d_state)
        return out.nbytes + dx[0].nbytes
    for _ in range(3):
        step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    returned = sum(step() for _ in range(5))
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, returned // 4096)
""")


def _faults(pool_mb):
    # A fixed mmap threshold (glibc's MALLOC_MMAP_THRESHOLD_) turns off glibc's dynamic one,
    # which otherwise rises after the first large free and serves later arrays from the
    # heap, some of them without faults, by an order of frees that varies from run to run
    # (the unpooled count read ~20 000 and ~1 000 in two runs). With it, every array
    # above 128 KiB not taken from the pool is fresh pages.
    env = dict(os.environ, FASTRNN_ARRAY_POOL_MB=str(pool_mb), MALLOC_MMAP_THRESHOLD_="131072",
               PYTHONPATH=os.pathsep.join([os.path.dirname(os.path.dirname(fastrnn.__file__)),
                                           os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    return int(out[0]), int(out[1])


def test_steady_training_steps_reuse_returned_memory():
    """With the pool, the steps' arrays reuse the blocks of the steps before: the page
    faults of 5 steps are a small fraction of the pages their outputs and input
    gradients alone span (the caches and weight gradients come on top). With the pool off
    (FASTRNN_ARRAY_POOL_MB=0), glibc hands out fresh pages for these sizes and the faults
    outnumber those pages. The bounds leave a wide margin on both sides."""
    pooled, pages = _faults(256)
    unpooled, _ = _faults(0)
    assert unpooled > pages, (unpooled, pages)
    assert pooled < pages / 10, (pooled, pages)
