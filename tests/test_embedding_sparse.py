"""fastrnn.nn.Embedding(sparse=True): the same gradient as the dense path, kept as rows.

The dense path (np.add.at into grads["weight"]) is the reference: it is checked against
PyTorch in test_toolkit.py. Tolerances: both paths sum the same float32 terms per row,
in a different order, so they agree to float32 round-off (rtol 1e-6 of sums of a few
O(1) terms).
"""
import numpy as np
import pytest

from fastrnn import nn


def pair(padding_idx=None):
    dense = nn.Embedding(20, 4, padding_idx=padding_idx, seed=0)
    sparse = nn.Embedding(20, 4, padding_idx=padding_idx, sparse=True, seed=0)
    return dense, sparse


@pytest.mark.parametrize("padding_idx", [None, 3])
def test_sparse_grad_matches_dense(padding_idx):
    rng = np.random.default_rng(1)
    dense, sparse = pair(padding_idx)
    for _ in range(2):                                   # two backward passes accumulate
        idx = rng.integers(0, 8, (5, 3))                 # repeats and the padding row
        d_y = rng.standard_normal((5, 3, 4)).astype(np.float32)
        dense(idx)
        sparse(idx)
        assert dense.backward(d_y) is None and sparse.backward(d_y) is None
    rows, values = sparse.sparse_grad
    assert np.all(np.diff(rows) > 0)                     # distinct, sorted
    assert not np.any(sparse.grads["weight"])            # the dense buffer is left alone
    full = np.zeros_like(dense.grads["weight"])
    full[rows] = values
    np.testing.assert_allclose(full, dense.grads["weight"], rtol=1e-6, atol=1e-6)
    assert set(rows) == set(np.flatnonzero(np.any(dense.grads["weight"] != 0, axis=1)))


def test_sparse_sgd_step_updates_only_touched_rows():
    dense, sparse = pair()
    idx = np.array([[1, 5, 5]])
    d_y = np.ones((1, 3, 4), dtype=np.float32)
    for e in (dense, sparse):
        e(idx)
        e.backward(d_y)
    before = sparse.params["weight"].copy()
    sparse.sparse_sgd_step(0.1)
    want = dense.params["weight"] - np.float32(0.1) * dense.grads["weight"]   # plain SGD
    np.testing.assert_allclose(sparse.params["weight"], want, rtol=1e-6)
    untouched = np.setdiff1d(np.arange(20), [1, 5])
    assert np.array_equal(sparse.params["weight"][untouched], before[untouched])
    sparse.zero_grad()
    assert sparse.sparse_grad is None
    sparse.sparse_sgd_step(0.1)                          # nothing to apply: no change
    assert np.array_equal(sparse.params["weight"], want)


def test_sparse_bad_inputs():
    with pytest.raises(TypeError, match="sparse"):
        nn.Embedding(5, 2, sparse=1)
    dense, sparse = pair()
    with pytest.raises(ValueError, match="sparse=True"):
        dense.sparse_sgd_step(0.1)
    for lr in (0, -1.0, float("nan"), "0.1", True):
        with pytest.raises(ValueError, match="lr"):
            sparse.sparse_sgd_step(lr)
