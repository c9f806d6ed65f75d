"""Echo-state network with leaky units on the Mackey-Glass series (tau = 17).

Mackey-Glass, dx/dt = 0.2 x(t - 17) / (1 + x(t - 17)^10) - 0.1 x(t), is a chaotic delay
system; sampled once per time unit it is the classic reservoir-computing benchmark.

An echo-state network (Jaeger 2001; Deep Learning Book §10.8) never trains its
recurrence: a fixed random reservoir of N leaky tanh units is driven by the series,

    h[t] = (1 - a) h[t-1] + a tanh(W_in u[t] + b + W h[t-1])     (a: leak rate, §10.9.2)

with W rescaled to spectral radius rho < 1 (so the state forgets its start: the echo
state property), and only a linear readout y[t] = W_out [1; u[t]; h[t]] is fitted, by
ridge regression, to predict u[t+1]. The reservoir step is one fastrnn SimpleRNN step
(`fastrnn.functional.rnn_forward` on T = 1, in a loop) plus the leak (`run_reservoir`).

Reported, as NRMSE = RMSE / standard deviation of the series:
- one-step prediction on the test part (the true series is the input at every step);
- free-running prediction: from the end of the training part the model is fed its own
  outputs, and the error is taken over the first `--horizon` steps (84 is customary);
against a linear autoregressive model AR(p) (the next value as a least-squares linear
function of the last p = `--lags` values) on the same steps, run the same ways.

    python examples/echo_state.py                 # full run
    python examples/echo_state.py --quick         # a few seconds
    python examples/echo_state.py --plot esn.png  # prediction against the truth

Last line: `free-running NRMSE over <h> steps: <esn> (linear AR(<p>) <ar>)`.
"""
import numpy as np

from fastrnn import functional as F
import _common


def mackey_glass(n, tau=17, dt=0.1, seed=0, discard=1000):
    """n samples, one per time unit, of Mackey-Glass integrated with 4th-order Runge-Kutta
    steps of dt (the delayed term held at the step's start); the first `discard` dropped."""
    sub = int(round(1 / dt))
    lag = int(round(tau / dt))
    rng = np.random.default_rng(seed)
    x = list(1.2 + 0.1 * rng.standard_normal(lag + 1))
    f = lambda xt, xd: 0.2 * xd / (1 + xd ** 10) - 0.1 * xt      # noqa: E731
    for _ in range((n + discard) * sub):
        xt, xd = x[-1], x[-lag - 1]
        k1 = f(xt, xd)
        k2 = f(xt + dt / 2 * k1, xd)
        k3 = f(xt + dt / 2 * k2, xd)
        k4 = f(xt + dt * k3, xd)
        x.append(xt + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4))
    return np.array(x[lag + 1::sub][discard:discard + n])


class Reservoir:
    """The fixed random part of an ESN: W_in (N, 1), b (N,), W (N, N) at radius rho."""

    def __init__(self, size, rho, input_scale, leak, seed):
        rng = np.random.default_rng(seed)
        w = rng.uniform(-1, 1, (size, size))
        w *= rng.random((size, size)) < 10 / size          # sparse: about 10 inputs a unit
        w *= rho / np.max(np.abs(np.linalg.eigvals(w)))
        self.w = w
        self.w_in = rng.uniform(-input_scale, input_scale, (size, 1))
        self.b = rng.uniform(-input_scale, input_scale, size)
        self.leak = leak


def run_reservoir(res, u, h):
    """Leaky-ESN states for inputs u (T,) from state h (N,): one SimpleRNN step
    tanh(W_in u + b + W h) per input, then the leak. (To be replaced by
    fastrnn.EchoStateNetwork, whose kernels take the leak rate.)"""
    states = np.empty((len(u), len(h)))
    for t, ut in enumerate(u):
        _, pre, _ = F.rnn_forward(np.array([[[ut]]]), res.w_in, res.w, res.b, None,
                                  h[None], training=False)
        h = (1 - res.leak) * h + res.leak * pre[0]
        states[t] = h
    return states


def features(u, states):
    return np.column_stack([np.ones(len(u)), u, states])


def ridge(X, y, alpha):
    return np.linalg.solve(X.T @ X + alpha * np.eye(X.shape[1]), X.T @ y)


def ar_design(series, p):
    """Rows [1, x[t-p+1], ..., x[t]] for t = p-1 .. len-2, targets x[t+1]."""
    rows = np.lib.stride_tricks.sliding_window_view(series[:-1], p)
    return np.column_stack([np.ones(len(rows)), rows]), series[p:]


def free_run_esn(res, w_out, u0, h, steps):
    """Feed the ESN its own predictions: u0 is the last true value, h the state before it."""
    out, u = [], u0
    for _ in range(steps):
        h = run_reservoir(res, [u], h)[0]
        u = float(features([u], h[None])[0] @ w_out)
        out.append(u)
    return np.array(out)


def free_run_ar(coef, history, steps):
    window, out = list(history[-(len(coef) - 1):]), []
    for _ in range(steps):
        nxt = coef[0] + np.dot(coef[1:], window)
        out.append(nxt)
        window = window[1:] + [nxt]
    return np.array(out)


def plot(path, test, esn_1, ar_1, free_true, esn_free, ar_free, horizon):
    with _common.figure(path, nrows=2, figsize=(9, 5.5)) as (fig, (a1, a2)):
        n = min(300, len(test))
        a1.plot(test[:n], "k", lw=1.5, label="Mackey-Glass")
        a1.plot(esn_1[:n], "C1--", lw=1, label="ESN one-step")
        a1.plot(ar_1[:n], "C0:", lw=1, label="linear AR one-step")
        a1.set(title="one-step prediction (the true value is the input at every step)",
               xlabel="test step")
        a1.legend(fontsize=8, loc="upper right")
        a2.plot(free_true, "k", lw=1.5, label="Mackey-Glass")
        a2.plot(esn_free, "C1", lw=1, label="ESN, free-running")
        a2.plot(ar_free, "C0", lw=1, label="linear AR, free-running")
        a2.axvline(horizon, color="gray", ls="--", lw=0.8)
        a2.set(title="free-running prediction (fed its own outputs) from the end of training",
               xlabel="steps ahead", ylim=(free_true.min() - 0.3, free_true.max() + 0.3))
        a2.legend(fontsize=8, loc="upper right")


def main(argv=None):
    ap = _common.parser(__doc__, size=(None, "reservoir units N"),
                        leak=(0.3, "leak rate a (1: no leak)"),
                        rho=(0.9, "spectral radius of W"), input_scale=0.5, ridge=1e-9,
                        train=(None, "training steps"),
                        lags=(20, "p of the AR(p) baseline"), horizon=84)
    args = _common.parse(ap, argv)
    size = args.size or (200 if args.quick else 500)
    n_train = args.train or (1500 if args.quick else 4000)
    washout, n_test = 100, 500

    raw = mackey_glass(washout + n_train + n_test + 1, seed=args.seed)
    series = np.tanh(raw - 1)                       # the usual centring squash
    sd = series.std()
    print(f"Mackey-Glass tau=17: {len(series)} samples; reservoir {size} units, leak "
          f"{args.leak}, spectral radius {args.rho}")

    res = Reservoir(size, args.rho, args.input_scale, args.leak, args.seed)
    with _common.Timer() as t:
        states = run_reservoir(res, series[:-1], np.zeros(size))    # states[t] has read series[t]
    X = features(series[:-1], states)
    end = washout + n_train                               # fit on t in [washout, end)
    w_out = ridge(X[washout:end], series[washout + 1:end + 1], args.ridge)
    esn_1 = X[end:] @ w_out                              # predicts series[end+1:]
    print(f"reservoir run over {len(states)} steps in {t.seconds:.2f}s")

    Xa, ya = ar_design(series, args.lags)
    coef = ridge(Xa[washout:end - args.lags + 1], ya[washout:end - args.lags + 1], 1e-8)
    ar_1 = Xa[end - args.lags + 1:] @ coef                 # predicts series[end+1:]
    truth_1 = series[end + 1:]
    nrmse = lambda p, y: float(np.sqrt(np.mean((p - y) ** 2)) / sd)   # noqa: E731
    print(f"one-step NRMSE on {len(truth_1)} test steps: ESN {nrmse(esn_1, truth_1):.2e}, "
          f"linear AR({args.lags}) {nrmse(ar_1, truth_1):.2e}")

    free_true = series[end + 1:end + 1 + n_test - 1]
    esn_free = free_run_esn(res, w_out, series[end], states[end - 1], len(free_true))
    ar_free = free_run_ar(coef, series[:end + 1], len(free_true))
    h = args.horizon
    e_esn, e_ar = nrmse(esn_free[:h], free_true[:h]), nrmse(ar_free[:h], free_true[:h])
    for k in (h, 2 * h, len(free_true)):
        print(f"  free-running NRMSE over {k} steps: ESN {nrmse(esn_free[:k], free_true[:k]):.3f},"
              f" AR {nrmse(ar_free[:k], free_true[:k]):.3f}")
    if args.plot:
        plot(args.plot, truth_1, esn_1, ar_1, free_true, esn_free, ar_free, h)
    print(f"free-running NRMSE over {h} steps: {e_esn:.4f} (linear AR({args.lags}) {e_ar:.4f})")
    return e_esn, e_ar


if __name__ == "__main__":
    main()
