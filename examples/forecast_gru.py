"""Time-series forecasting with a GRU: a synthetic hourly series, 12 hours ahead.

The series looks like hourly demand: a slow upward trend, a daily cycle, a weekly cycle
and autocorrelated noise (an AR(1) process), 24 * 7 * 40 hours (40 weeks; 20 with
--quick). The first 70% trains, the next 10% validates, the last 20% tests, in time order.

From the last W = 72 hours the model forecasts the next K = 12 hours at once:

    window (72, B, 1) -> GRU(1, H) -> h_n (B, H) -> Dense(H, 12)

Inputs and targets are taken relative to the window's last value (and divided by the
training series' standard deviation), so the model learns a correction to the naive
forecast and a trend that leaves the training range does not bother it.

Baselines on the same test windows: the naive last-value forecast (every future hour =
the last observed one) and, for reference, the seasonal naive forecast (= the value 24
hours earlier). Metric: mean absolute error over the 12 horizons, in series units.

    python examples/forecast_gru.py                  # full run
    python examples/forecast_gru.py --quick          # well under a minute
    python examples/forecast_gru.py --plot fc.png    # forecasts vs truth on the test part
    python examples/forecast_gru.py --precision both --curves curves.png
                                 # fp32 and bf16 training (docs/precision.md), same seed

`--precision bfloat16` trains the GRU with bf16 products (fastrnn.GRU(precision=...));
`both` trains one model per precision from the same seed and data, and `--curves PNG`
plots their validation MAE per epoch.

Last line: `test MAE: <gru> (naive last-value <naive>, seasonal naive <seasonal>)` (with
`both`, the last precision's, after one such line per precision).
"""
import importlib.util

import numpy as np

import fastrnn
from fastrnn import nn, optim
import _common

W, K = 72, 12


def make_series(rng, n):
    t = np.arange(n)
    noise = np.zeros(n)
    eps = rng.normal(0, 0.6, n)
    for i in range(1, n):                          # AR(1), phi = 0.8
        noise[i] = 0.8 * noise[i - 1] + eps[i]
    return (20 + 0.002 * t + 4 * np.sin(2 * np.pi * t / 24)
            + 1.5 * np.sin(2 * np.pi * t / 168 + 1.0)
            + 1.0 * np.sin(4 * np.pi * t / 24 + 0.5) + noise)


def windows(series, start, stop):
    """Forecast origins o in [start, stop) with a full window before and K steps after:
    x (W, N) the past, y (K, N) the future, last (N,) the value at o - 1."""
    origins = np.arange(max(start, W), min(stop, len(series)) - K + 1)
    x = series[origins[None, :] + np.arange(-W, 0)[:, None]]
    y = series[origins[None, :] + np.arange(K)[:, None]]
    return x, y, x[-1]


class Forecaster:
    def __init__(self, hidden, seed, precision="float32"):
        rng = np.random.default_rng(seed)
        self.gru = fastrnn.GRU(1, hidden, seed=rng, precision=precision)
        self.head = nn.Dense(hidden, K, seed=rng)
        self.modules = [self.gru, self.head]

    def __call__(self, x, training=True):
        """x (W, B) relative, scaled values -> (B, K) relative, scaled forecasts."""
        for m in self.modules:
            m.train(training)
        _, h_n = self.gru(x[:, :, None].astype(np.float32))
        return self.head(h_n[-1])

    def backward(self, d_pred):
        dh = self.head.backward(d_pred)
        self.gru.backward(None, dh[None])


def splits(rng, weeks):
    """The series and its windows cut 70/10/20 in time (train, validation, test), with
    the scale: the training part's standard deviation (nothing later leaks into it)."""
    series = make_series(rng, 24 * 7 * weeks)
    n = len(series)
    a, b = int(0.7 * n), int(0.8 * n)
    scale = float(np.std(series[:a]))
    return series, scale, windows(series, 0, a), windows(series, a, b), windows(series, b, n)


def baseline_maes(x, y, last):
    """MAE of the naive forecasts: the last value, and the same hours a day earlier
    (K <= 24 < W, so those lie inside each window)."""
    return np.abs(last[None, :] - y).mean(), np.abs(x[W - 24:W - 24 + K] - y).mean()


@fastrnn.no_grad()                       # evaluation keeps no backward cache
def predict(model, x, last, scale, batch=1024):
    rel = (x - last) / scale
    out = np.concatenate([model(rel[:, i:i + batch], training=False)
                          for i in range(0, x.shape[1], batch)])
    return last[None, :] + scale * out.T                           # (K, N)


def fit(args, precision, epochs, data):
    """Train one Forecaster -> (model, validation MAE per epoch, seconds per epoch)."""
    scale, (xtr, ytr, ltr), (xva, yva, lva) = data
    rng = np.random.default_rng(args.seed + 1)             # the batch order, alike for each precision
    rel_x, rel_y = (xtr - ltr) / scale, (ytr - ltr) / scale
    model = Forecaster(args.hidden, args.seed, precision)
    opt = optim.Adam(model.modules, lr=args.lr)
    N = xtr.shape[1]
    curve, epoch_times = [], []
    for epoch in range(epochs):
        blocks = _common.batches(rng, N, args.batch)

        def step(k):
            idx = blocks[k]
            loss, d = nn.mse(model(rel_x[:, idx]), rel_y[:, idx].T.astype(np.float32))
            _common.update(model, opt, d, 1.0)
            return loss

        with _common.Timer() as t:
            losses = _common.train(step, len(blocks), quick=args.quick, name="mse",
                                   every=len(blocks), desc=f"epoch {epoch + 1}/{epochs}")
        epoch_times.append(t.seconds)
        curve.append(float(np.abs(predict(model, xva, lva, scale) - yva).mean()))
        print(f"[{precision}] epoch {epoch + 1}: train mse {np.mean(losses):.4f} (scaled), "
              f"validation MAE {curve[-1]:.3f}, {epoch_times[-1]:.1f}s", flush=True)
    return model, curve, epoch_times


def main(argv=None):
    ap = _common.parser(__doc__, epochs=None, weeks=None, batch=64, hidden=32, lr=5e-3,
                        precision=("float32", "float32, bfloat16 or both"),
                        curves=("", "save the validation MAE per epoch of each precision to "
                                "this PNG (needs matplotlib)"))
    args = _common.parse(ap, argv)
    if args.precision not in ("float32", "bfloat16", "both"):
        ap.error(f"--precision must be float32, bfloat16 or both, got {args.precision!r}")
    if args.curves and importlib.util.find_spec("matplotlib") is None:     # before training
        ap.error(f"--curves needs matplotlib, which is not installed: {_common.INSTALL_HINT}")
    epochs = args.epochs or (4 if args.quick else 15)
    weeks = args.weeks or (20 if args.quick else 40)

    rng = np.random.default_rng(args.seed)
    series, scale, train, val, (xte, yte, lte) = splits(rng, weeks)
    n, N = len(series), train[0].shape[1]
    print(f"series: {n} hours; {N} training windows, {xte.shape[1]} test "
          f"windows of {W} h -> {K} h")
    precisions = ("float32", "bfloat16") if args.precision == "both" else (args.precision,)
    curves, results = {}, {}
    naive, seasonal_mae = baseline_maes(xte, yte, lte)
    for precision in precisions:
        model, curves[precision], epoch_times = fit(args, precision, epochs, (scale, train, val))
        pred = predict(model, xte, lte, scale)
        mae = np.abs(pred - yte).mean()
        results[precision] = mae
        by_h = np.abs(pred - yte).mean(axis=1)
        print(f"GRU MAE by horizon (1..{K} h): " + " ".join(f"{v:.2f}" for v in by_h))
        print(f"{np.mean(epoch_times):.1f}s per epoch ({N} windows, batch {args.batch})")
        print(f"[{precision}] test MAE: {mae:.3f}")

    if args.curves:
        with _common.figure(args.curves, figsize=(6, 3.5)) as (fig, ax):
            for precision, curve in curves.items():
                ax.plot(np.arange(1, len(curve) + 1), curve, marker="o", ms=3,
                        label=f"{precision} (test MAE {results[precision]:.3f})")
            ax.set(xlabel="epoch", ylabel="validation MAE", title="forecast_gru: GRU training "
                   f"(naive last-value test MAE {naive:.2f})")
            ax.legend(fontsize=8)
    if args.plot:
        with _common.figure(args.plot, figsize=(9, 3.5)) as (fig, ax):
            origins = np.arange(n - K + 1 - xte.shape[1], n - K + 1)   # the test windows'
            t = origins[:24 * 5]
            ax.plot(t, series[t], color="k", lw=1, label="series")
            for j, o in enumerate(range(0, 24 * 5 - K, K)):
                tt = origins[o] + np.arange(K)
                ax.plot(tt, pred[:, o], color="C1", lw=2,
                        label="GRU forecast" if j == 0 else None)
                ax.plot(tt, np.full(K, lte[o]), color="C0", ls="--", lw=1,
                        label="naive last value" if j == 0 else None)
            ax.set(xlabel="hour", ylabel="value", title=f"12-hour forecasts on the test part "
                   f"(MAE GRU {mae:.2f}, naive {naive:.2f})")
            ax.legend(loc="upper left", fontsize=8)
    print(f"test MAE: {mae:.3f} (naive last-value {naive:.3f}, seasonal naive "
          f"{seasonal_mae:.3f})")
    return mae, naive


if __name__ == "__main__":
    main()
