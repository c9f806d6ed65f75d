"""Exploding gradients and gradient clipping, shown on the adding problem (T = 200).

The adding problem (Hochreiter & Schmidhuber 1997): each of T steps reads a pair
(value, marker); values are uniform in [0, 1], exactly two markers are 1, one in the
first half of the sequence and one in the second, and the target, read at the end, is
the sum of the two marked values. Predicting the mean (1.0) scores an MSE of 1/6; doing
better needs the first marked value carried over up to T steps.

    x (T, B, 2) -> SimpleRNN(2, H) or LSTM(2, H) -> h_n -> Dense(H, 1), MSE loss

Four runs with the same data, initial seed and optimiser (Adam, lr 0.01), with and
without `fastrnn.optim.clip_grad_norm(max_norm=1)`. The SimpleRNN's recurrent weights
start as an orthogonal matrix times `--gain` (1.5 by default: a little past the edge of
stability, where the long products of Jacobians in BPTT are large: Pascanu et al. 2013,
Deep Learning Book §10.7 and §10.11.1). The gradient norm (before clipping) is recorded
at every step.

What to see: the unclipped SimpleRNN's gradient norm jumps by orders of magnitude (the
explosion) and its loss jumps with it. Clipping caps each step's length, but the
SimpleRNN still does not get below the mean predictor's MSE: its gradient from the
first marker vanishes or explodes, it carries nothing useful. The LSTM, whose cell
state carries the marked value through an additive path, learns the task; unclipped,
its occasional large gradients still knock it back (Adam scales a step by a running
gradient size, so one spike unsettles many later steps).

    python examples/exploding_gradients.py                   # full run, T = 200
    python examples/exploding_gradients.py --quick           # T = 50: a few seconds
    python examples/exploding_gradients.py --plot grads.png  # gradient norms and losses

`--quick` uses T = 50 (not 200) and fewer steps, so the LSTM learns in seconds; the
full run uses T = 200. Last line:
`test MSE: LSTM+clip <m>, SimpleRNN+clip <m>, SimpleRNN <m>, LSTM <m> (mean predictor <m>)`.
"""
import numpy as np

import fastrnn
from fastrnn import nn, optim
import _common

RUNS = (("LSTM", True), ("SimpleRNN", True), ("SimpleRNN", False), ("LSTM", False))


def adding_batch(rng, T, B):
    """-> x (T, B, 2) float32, y (B, 1): the sum of the two marked values."""
    values = rng.random((T, B))
    marks = np.zeros((T, B))
    first = rng.integers(0, T // 2, B)
    second = rng.integers(T // 2, T, B)
    marks[first, np.arange(B)] = 1
    marks[second, np.arange(B)] = 1
    x = np.stack([values, marks], axis=-1).astype(np.float32)
    return x, (values * marks).sum(axis=0)[:, None].astype(np.float32)


class Regressor:
    def __init__(self, cell, hidden, gain, seed):
        rng = np.random.default_rng(seed)
        self.rnn = getattr(fastrnn, cell)(2, hidden, seed=rng)
        if cell == "SimpleRNN":           # orthogonal W_hh times the gain
            q, _ = np.linalg.qr(rng.standard_normal((hidden, hidden)))
            self.rnn.params["weight_hh_l0"][:] = gain * q
        self.head = nn.Dense(hidden, 1, seed=rng)
        self.modules = [self.rnn, self.head]

    def __call__(self, x, training=True):
        for m in self.modules:
            m.train(training)
        _, h_n = self.rnn(x)
        self._lstm = isinstance(h_n, tuple)
        return self.head((h_n[0] if self._lstm else h_n)[-1])

    def backward(self, d_pred):
        dh = self.head.backward(d_pred)[None]
        self.rnn.backward(None, (dh, None) if self._lstm else dh)


def train_run(cell, clip, args, T, steps, test):
    rng = np.random.default_rng(args.seed)               # the same batches for every run
    model = Regressor(cell, args.hidden, args.gain, args.seed)
    opt = optim.Adam(model.modules, lr=args.lr)
    norms = []

    def step(i):
        x, y = adding_batch(rng, T, args.batch)
        loss, d = nn.mse(model(x), y)
        norms.append(_common.update(model, opt, d, 1.0 if clip else None))
        return loss

    name = f"{cell}{'+clip' if clip else ''}"
    losses = _common.train(step, steps, quick=args.quick, desc=name, every=steps // 4,
                           name="mse")
    pred = model(test[0], training=False)
    return name, losses, norms, float(np.mean((pred - test[1]) ** 2))


def plot(path, results, mean_mse, T):
    with _common.figure(path, nrows=2, figsize=(8, 6), sharex=True) as (fig, (a1, a2)):
        for k, (name, losses, norms, _) in enumerate(results):
            a1.semilogy(norms, color=f"C{k}", lw=0.7, alpha=0.8, label=name)
            a2.plot(*_common.smooth(np.nan_to_num(losses, nan=1e3), 20), color=f"C{k}",
                    label=name)
        a1.axhline(1.0, color="k", ls=":", lw=0.8, label="clip threshold")
        a1.set(ylabel="gradient norm (before clipping)",
               title=f"adding problem, T = {T}: gradient norm per step")
        a1.legend(fontsize=8, ncol=3)
        a2.axhline(mean_mse, color="gray", ls="--", label="mean predictor")
        a2.set(ylabel="training MSE (running mean)", xlabel="step", yscale="log",
               ylim=(1e-3, 10))
        a2.legend(fontsize=8, ncol=3)


def main(argv=None):
    ap = _common.parser(__doc__, T=(None, "sequence length (200; 50 quick)"), steps=None,
                        batch=32, hidden=32, lr=0.01)
    ap.add_argument("--gain", type=float, default=1.5,
                    help="SimpleRNN W_hh = gain x an orthogonal matrix")
    args = _common.parse(ap, argv)
    T = args.T or (50 if args.quick else 200)
    steps = args.steps or (1000 if args.quick else 4000)

    test = adding_batch(np.random.default_rng(args.seed + 1), T, 1000)
    mean_mse = float(np.mean((test[1] - 1.0) ** 2))
    print(f"adding problem, T = {T}; {steps} Adam steps of batch {args.batch}; mean "
          f"predictor test MSE {mean_mse:.3f}")
    results = []
    for cell, clip in RUNS:
        with _common.Timer() as t:
            results.append(train_run(cell, clip, args, T, steps, test))
        name, losses, norms, mse = results[-1]
        print(f"{name}: gradient norm median {np.nanmedian(norms):.3g}, max "
              f"{np.nanmax(norms):.3g}; final training MSE {np.mean(losses[-50:]):.4f}; "
              f"test MSE {mse:.4f}; {t.seconds:.1f}s", flush=True)
    if args.plot:
        plot(args.plot, results, mean_mse, T)
    print("test MSE: " + ", ".join(f"{name} {mse:.4f}" for name, _, _, mse in results)
          + f" (mean predictor {mean_mse:.4f})")
    return results, mean_mse


if __name__ == "__main__":
    main()
