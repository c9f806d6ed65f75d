"""Echo-state networks (Jaeger 2001; Deep Learning book §10.8-10.9): a fixed random
leaky-tanh reservoir and a ridge-regression readout (docs/variants.md).

    esn = EchoStateNetwork(1, 200, 1, spectral_radius=0.9, leak_rate=0.3, seed=0)
    esn.fit(u, y, washout=100)          # u (T, B, I), y (T, B, O), time-major
    y_hat = esn.predict(u_test)         # (T, B, O)

The reservoir state follows SimpleRNN's leaky recursion (reference.rnn_forward with
leak_rate):  h' = (1 - a) h + a tanh(W_ih u + b + W_hh h).  The readout is linear in
[1, u(t), h(t)] (the constant, the input and the state, as in Lukoševičius's guide).
"""
import inspect

import numpy as np

from . import functional, reference
from ._checks import DTYPES, as_float_array, check_leak_rate, check_shape

__all__ = ["EchoStateNetwork", "mackey_glass"]


def _default_backend():
    """The fused kernels once their rnn_forward takes leak_rate; the NumPy reference until
    then (the only backend with leaky units today)."""
    if "leak_rate" in inspect.signature(functional.rnn_forward).parameters:
        return functional
    return reference


def _positive_int(name, v):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    if v < 1:
        raise ValueError(f"{name} must be >= 1, got {v}")
    return int(v)


def _real(name, v, low, high, low_open=True, high_open=False):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer,
                                                              np.floating)):
        raise TypeError(f"{name} must be a float, got {type(v).__name__}")
    ok = (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    if not ok:
        raise ValueError(f"{name} must lie in {'(' if low_open else '['}{low}, {high}"
                         f"{')' if high_open else ']'}, got {v}")
    return float(v)


class EchoStateNetwork:
    """A leaky-tanh reservoir with fixed random weights and a trained linear readout.

    weight_ih (N, I) ~ U(-input_scaling, input_scaling); bias (N,) likewise;
    weight_hh (N, N): each entry nonzero with probability `density`, U(-1, 1), then scaled
    so that its spectral radius (largest |eigenvalue|) equals `spectral_radius` exactly.
    `backend`: a module with rnn_forward(..., leak_rate=) (default: see _default_backend).
    """

    def __init__(self, input_size, reservoir_size, output_size, spectral_radius, leak_rate,
                 input_scaling=1.0, density=0.1, ridge=1e-6, seed=None, dtype=np.float64,
                 backend=None):
        self.input_size = _positive_int("input_size", input_size)
        self.reservoir_size = N = _positive_int("reservoir_size", reservoir_size)
        self.output_size = _positive_int("output_size", output_size)
        self.spectral_radius = _real("spectral_radius", spectral_radius, 0, np.inf,
                                     high_open=True)
        self.leak_rate = check_leak_rate(leak_rate)
        self.input_scaling = _real("input_scaling", input_scaling, 0, np.inf, high_open=True)
        self.density = _real("density", density, 0, 1)
        self.ridge = _real("ridge", ridge, 0, np.inf, low_open=False, high_open=True)
        if np.dtype(dtype) not in DTYPES:
            raise TypeError(f"dtype must be float32 or float64, got {np.dtype(dtype)}")
        self.dtype = np.dtype(dtype)
        self.backend = _default_backend() if backend is None else backend
        rng = np.random.default_rng(seed)
        s = self.input_scaling
        self.weight_ih = rng.uniform(-s, s, (N, self.input_size))
        self.bias = rng.uniform(-s, s, N)
        for _ in range(100):          # a sparse draw can be nilpotent (all eigenvalues 0)
            w = rng.uniform(-1, 1, (N, N)) * (rng.random((N, N)) < self.density)
            rho = np.abs(np.linalg.eigvals(w)).max()
            if rho > 1e-8:
                break
        else:
            raise ValueError(f"density={density} is too low for reservoir_size={N}: every "
                             "draw had spectral radius 0")
        self.weight_hh = w * (self.spectral_radius / rho)
        self.weight_ih, self.weight_hh, self.bias = (a.astype(self.dtype) for a in (
            self.weight_ih, self.weight_hh, self.bias))
        self.weight_out = None        # (O, 1 + I + N) after fit

    def states(self, x, h0=None):
        """Reservoir states (T, B, N) for input x (T, B, I), from h0 (B, N) or zeros."""
        out, _, _ = self.backend.rnn_forward(
            x, self.weight_ih, self.weight_hh, self.bias, None, h0, training=False,
            leak_rate=self.leak_rate)
        return out

    def _features(self, x, states):
        T, B, _ = states.shape
        return np.concatenate([np.ones((T, B, 1), dtype=states.dtype), x, states], axis=2)

    def fit(self, x, y, washout=0, h0=None):
        """Ridge readout from x (T, B, I) to y (T, B, O), skipping the first `washout`
        steps (while the reservoir forgets h0): W_out = Y Φᵀ (Φ Φᵀ + ridge I)⁻¹. -> self."""
        states = self.states(x, h0)
        T, B, _ = states.shape
        if isinstance(washout, (bool, np.bool_)) or not isinstance(washout, (int, np.integer)):
            raise TypeError(f"washout must be an int, got {type(washout).__name__}")
        if not 0 <= washout < T:
            raise ValueError(f"washout must lie in [0, {T}) (T = x.shape[0]), got {washout}")
        y = check_shape("y", as_float_array("y", y, self.dtype), (T, B, self.output_size))
        phi = self._features(as_float_array("x", x, self.dtype), states)[washout:]
        phi = phi.reshape(-1, phi.shape[2]).astype(np.float64)
        target = y[washout:].reshape(-1, self.output_size).astype(np.float64)
        gram = phi.T @ phi + self.ridge * np.eye(phi.shape[1])
        self.weight_out = np.linalg.solve(gram, phi.T @ target).T.astype(self.dtype)
        return self

    def predict(self, x, h0=None):
        """Readout of the reservoir driven by x (T, B, I): (T, B, O)."""
        if self.weight_out is None:
            raise ValueError("predict: the readout is not trained; call fit(x, y) first")
        return self._features(as_float_array("x", x, self.dtype),
                              self.states(x, h0)) @ self.weight_out.T


def mackey_glass(n, tau=17, beta=0.2, gamma=0.1, exponent=10, dt=0.1, x0=1.2, discard=500):
    """n samples, one per time unit, of the Mackey-Glass delay equation
    dx/dt = beta x(t - tau) / (1 + x(t - tau)^exponent) - gamma x(t)  (chaotic at tau = 17),
    integrated by Euler steps of dt from the constant history x0; the first `discard`
    samples (the transient) are dropped."""
    per = int(round(1 / dt))
    lag = int(round(tau / dt))
    total = (n + discard) * per
    xs = np.full(lag + total + 1, x0)
    for k in range(lag, lag + total):
        d = xs[k - lag]
        xs[k + 1] = xs[k] + dt * (beta * d / (1 + d ** exponent) - gamma * xs[k])
    return xs[lag + discard * per::per][:n].copy()
