"""Every cell, forward and backward, against the reference, in whichever kernel
module is loaded (fastrnn.config()["isa"]).

This is the selection tools/portable_check.sh runs with each FASTRNN_ISA and
under an emulated AVX2-only CPU, so it stays small. The shapes make every SIMD
width fastrnn is built for (4, 8 and 16 float lanes: panels of 8, 16 and 32
units) meet partial panels, and leave remainders of the 6-row micro-kernel.
"""
import numpy as np
import pytest

from fastrnn import functional as F
from fastrnn import reference as R
from test_kernels import IDS, VARIANTS, assert_match, lengths_for, make_case, run

# (T, B, I, H). B = 40 with H = 53 makes a step large enough for a thread
# team (csrc/time_loop.hpp; 40 rows: split by rows); I + H = 72 keeps the
# float32 bound of test_kernels.py.
SHAPES = [(5, 13, 7, 37), (8, 40, 19, 53)]


def each_variant_and_shape(test):
    """Parametrises `test` over every variant of test_kernels.py and every shape of SHAPES."""
    test = pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))(test)
    return pytest.mark.parametrize("variant", VARIANTS, ids=IDS)(test)


def draw(variant, shape, dtype, seed):
    """-> cell, opts, the generator, and make_case's (args, kw, grads) for one case."""
    cell, opts, G = variant
    rng = np.random.default_rng(seed)
    return cell, opts, rng, make_case(cell, opts, G, *shape, dtype, rng)


@each_variant_and_shape
def test_float64_matches_reference(variant, shape):
    # Same bound and reasoning as test_kernels.py: 1e-12 relative (1e-13
    # absolute near 0) is a few ulps times the depth of T ≤ 12 steps.
    cell, opts, rng, (args, kw, grads) = draw(variant, shape, np.float64, seed=21)
    T, B = shape[:2]
    lengths = lengths_for(B, T, rng)
    got = run(F, cell, args, kw, grads, lengths, reverse=True)
    want = run(R, cell, args, kw, grads, lengths, reverse=True)
    assert_match(got, want, 1e-12, 1e-13, f"{cell}{opts} {shape}")


@each_variant_and_shape
def test_float32_matches_float64_reference(variant, shape):
    # test_kernels.py's float32 bound: float32 round-off over sums of at most
    # I + H = 72 terms for ≤ 12 steps stays below 1e-5; 2e-4 still catches any
    # wrong formula (errors of order 1e-2).
    cell, opts, _, (args, kw, grads) = draw(variant, shape, np.float32, seed=22)
    up = lambda d: {k: (None if v is None else v.astype(np.float64)) for k, v in d.items()}  # noqa: E731
    got = run(F, cell, args, kw, grads)
    want = run(R, cell, up(args), up(kw) if "peephole" in kw else kw, up(grads))
    for part in got[0] + tuple(got[1]):
        assert part is None or part.dtype == np.float32
    assert_match(got, want, 2e-4, 2e-4, f"float32 {cell}{opts} {shape}")
