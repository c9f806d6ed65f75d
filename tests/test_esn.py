"""fastrnn.EchoStateNetwork: reservoir construction, the leaky recursion against a plain
NumPy loop, the ridge readout, the backend seam, and Mackey-Glass one-step prediction."""
import types

import numpy as np
import pytest

import fastrnn
from fastrnn import reference
from fastrnn.esn import EchoStateNetwork, mackey_glass


def test_reservoir_has_exactly_the_spectral_radius_and_density():
    esn = EchoStateNetwork(3, 200, 2, spectral_radius=0.87, leak_rate=0.5, density=0.1, seed=1)
    rho = np.abs(np.linalg.eigvals(esn.weight_hh)).max()
    # scaled by sr / rho with rho from eigvals itself: equal up to eigvals' round-off
    np.testing.assert_allclose(rho, 0.87, rtol=1e-10)
    # 40 000 Bernoulli(0.1) entries: std of the fraction is 0.0015; 0.01 is > 6 std
    assert abs(np.mean(esn.weight_hh != 0) - 0.1) < 0.01
    assert esn.weight_ih.shape == (200, 3) and esn.bias.shape == (200,)
    assert np.abs(esn.weight_ih).max() <= 1.0
    same = EchoStateNetwork(3, 200, 2, spectral_radius=0.87, leak_rate=0.5, density=0.1, seed=1)
    assert np.array_equal(same.weight_hh, esn.weight_hh)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_states_follow_the_leaky_tanh_recursion(dtype):
    rng = np.random.default_rng(2)
    esn = EchoStateNetwork(2, 30, 1, spectral_radius=1.1, leak_rate=0.3, input_scaling=0.7,
                           density=0.3, seed=3, dtype=dtype)
    x = rng.standard_normal((12, 4, 2)).astype(dtype)
    h0 = rng.standard_normal((4, 30)).astype(dtype)
    s = esn.states(x, h0)
    h = h0.astype(np.float64)
    W_in, W, b = (a.astype(np.float64) for a in (esn.weight_ih, esn.weight_hh, esn.bias))
    for t in range(12):
        h = (1 - 0.3) * h + 0.3 * np.tanh(x[t] @ W_in.T + b + h @ W.T)
        # float64: the same operations in another order (1e-15); float32: 6e-8 per op
        # over 12 contracting steps of 30-term sums stays below 1e-5.
        tol = 1e-12 if dtype == np.float64 else 1e-5
        np.testing.assert_allclose(s[t], h, rtol=tol, atol=tol)
    assert s.dtype == dtype and s.shape == (12, 4, 30)


def test_backend_seam():
    """The states come from backend.rnn_forward with leak_rate (the reference today,
    the fused kernels once functional.rnn_forward takes leak_rate)."""
    calls = []

    def rnn_forward(*args, **kw):
        calls.append(kw["leak_rate"])
        return reference.rnn_forward(*args, **kw)

    fake = types.SimpleNamespace(rnn_forward=rnn_forward)
    a = EchoStateNetwork(1, 10, 1, 0.9, 0.4, seed=0, backend=fake)
    b = EchoStateNetwork(1, 10, 1, 0.9, 0.4, seed=0)
    x = np.random.default_rng(0).standard_normal((5, 2, 1))
    assert np.array_equal(a.states(x), b.states(x)) and calls == [0.4]
    assert fastrnn.EchoStateNetwork is EchoStateNetwork


def test_fit_recovers_an_exact_linear_readout():
    rng = np.random.default_rng(4)
    esn = EchoStateNetwork(2, 20, 3, 0.9, 0.5, density=0.5, ridge=0.0, seed=5)
    x = rng.standard_normal((60, 3, 2))
    phi = np.concatenate([np.ones((60, 3, 1)), x, esn.states(x)], axis=2)
    w_true = rng.standard_normal((3, 1 + 2 + 20))
    y = phi @ w_true.T
    esn.fit(x, y, washout=10)
    # ridge = 0 on 150 rows of 23 well-conditioned features: a least-squares solve whose
    # error is cond(Φ) * 1e-16; the check asserts the features are [1, u, h] in that order.
    np.testing.assert_allclose(esn.weight_out, w_true, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(esn.predict(x), y, rtol=1e-8, atol=1e-8)


def _nrmse(pred, target):
    return np.sqrt(np.mean((pred - target) ** 2)) / target.std()


def test_mackey_glass_one_step_prediction_beats_linear_autoregression():
    s = mackey_glass(2600)                         # tau = 17, one sample per time unit
    assert 0.2 < s.min() and s.max() < 1.5 and s.std() > 0.15   # the chaotic attractor
    u = (s - s.mean()) / s.std()
    x, y = u[:-1, None, None], u[1:, None, None]
    train = 1800
    esn = EchoStateNetwork(1, 300, 1, spectral_radius=1.0, leak_rate=0.8, input_scaling=0.3,
                           density=0.1, ridge=1e-10, seed=0)
    esn.fit(x[:train], y[:train], washout=100)
    esn_err = _nrmse(esn.predict(x)[train:], y[train:])
    # the best linear AR(p), p <= 50, fitted by least squares on the same training span
    ar_err = np.inf
    for p in (1, 2, 5, 10, 20, 30, 50):
        lags = np.stack([u[p - 1 - k:len(u) - 1 - k] for k in range(p)], axis=1)
        X, Y = np.c_[np.ones(len(lags)), lags], u[p:]
        n = train - p + 1
        w = np.linalg.lstsq(X[:n], Y[:n], rcond=None)[0]
        ar_err = min(ar_err, _nrmse(X[n:] @ w, Y[n:]))
    # measured: ESN ~5e-5 (seeds 0-3), best AR ~5e-4; a factor 4 leaves room either way
    assert esn_err < ar_err / 4, (esn_err, ar_err)


def test_bad_arguments():
    ok = dict(input_size=1, reservoir_size=5, output_size=1, spectral_radius=0.9, leak_rate=0.5)
    for key, value, exc, match in [
            ("reservoir_size", 0, ValueError, "reservoir_size must be >= 1"),
            ("input_size", 1.5, TypeError, "input_size must be an int"),
            ("spectral_radius", -1.0, ValueError, "spectral_radius must lie in"),
            ("leak_rate", 0.0, ValueError, "leak_rate must lie in"),
            ("density", 0.0, ValueError, "density must lie in"),
            ("ridge", -1.0, ValueError, "ridge must lie in"),
            ("input_scaling", "1", TypeError, "input_scaling must be a float"),
            ("dtype", np.int32, TypeError, "dtype must be float32 or float64")]:
        with pytest.raises(exc, match=match):
            EchoStateNetwork(**dict(ok, **{key: value}))
    esn = EchoStateNetwork(**ok, seed=0)
    x = np.zeros((4, 2, 1))
    with pytest.raises(ValueError, match="call fit"):
        esn.predict(x)
    with pytest.raises(ValueError, match="washout must lie in"):
        esn.fit(x, np.zeros((4, 2, 1)), washout=4)
    with pytest.raises(ValueError, match=r"y must have shape \(4, 2, 1\)"):
        esn.fit(x, np.zeros((4, 2, 2)))
    with pytest.raises(ValueError, match="x must have rank 3"):
        esn.states(np.zeros((4, 1)))
