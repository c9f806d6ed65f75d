"""Recurrent dropout and layer norm on one LSTM: what each does to held-out loss.

Task: read T = 40 noisy samples of a sine wave and predict its frequency, from a small
training set (N = 200 sequences; 100 with --quick) evaluated on 1000 held-out ones. The
same model is trained, from the same initial weights and on the same batches, three times:

    plain              fastrnn.LSTM(1, 64)
    recurrent dropout  fastrnn.LSTM(1, 64, recurrent_dropout=0.3)   (Keras semantics:
                       one mask per sequence on h for each gate, training only)
    layer norm         fastrnn.LSTM(1, 64, layer_norm=True)          (haste's LN-LSTM)

    x (T, B, 1) -> LSTM -> h_n (B, 64) -> Dense(64, 1) -> frequency (scaled)

Printed per model: final training loss (with dropout on, for recurrent dropout) and best
and final held-out MSE (in units of the frequency's variance: predicting the mean scores
1.0). --plot draws the held-out curves. What it shows (seeds 0-2, this machine): layer
norm reaches a held-out MSE 2-8x lower than the plain LSTM in the --quick budget (it
trains much faster); recurrent dropout regularises (its held-out loss sits at or below its
noisy training loss) but on this task, which does not overfit much, it ends above the plain
model (0.015 vs 0.008 in the full run), where the plain model has caught up with layer norm.

    python examples/recurrent_dropout.py                  # full run
    python examples/recurrent_dropout.py --quick          # well under a minute
    python examples/recurrent_dropout.py --plot rd.png

Last line: `held-out MSE: plain <a>, recurrent_dropout <b>, layer_norm <c>`.
"""
import numpy as np

import fastrnn
from fastrnn import nn, optim
import _common

T = 40
VARIANTS = {"plain": {}, "recurrent_dropout": {"recurrent_dropout": 0.3},
            "layer_norm": {"layer_norm": True}}


def make_data(rng, n):
    """n noisy sine sequences (T, n) and their frequencies, standardised (n,)."""
    freq = rng.uniform(0.05, 0.25, n)
    phase = rng.uniform(0, 2 * np.pi, n)
    t = np.arange(T)[:, None]
    x = np.sin(2 * np.pi * freq * t + phase) + 0.4 * rng.standard_normal((T, n))
    return x.astype(np.float32), ((freq - 0.15) / np.sqrt(0.2 ** 2 / 12)).astype(np.float32)


class Model:
    def __init__(self, hidden, seed, **options):
        rng = np.random.default_rng(seed)
        self.lstm = fastrnn.LSTM(1, hidden, seed=rng, **options)
        self.head = nn.Dense(hidden, 1, seed=rng)
        self.modules = [self.lstm, self.head]

    def __call__(self, x, training=True):
        for m in self.modules:
            m.train(training)
        _, (h_n, _) = self.lstm(x[:, :, None])
        return self.head(h_n[-1])[:, 0]

    def backward(self, d_pred):
        dh = self.head.backward(d_pred[:, None])
        self.lstm.backward(None, (dh[None], None))


@fastrnn.no_grad()
def held_out(model, x, y):
    return float(np.mean((model(x, training=False) - y) ** 2))


def run(name, options, data, args, rng_seed):
    (xtr, ytr), (xte, yte) = data
    model = Model(args.hidden, args.seed, **options)
    opt = optim.Adam(model.modules, lr=args.lr)
    rng = np.random.default_rng(rng_seed)             # the same batches for every model
    curve, losses = [], []
    for epoch in range(args.epochs):
        blocks = _common.batches(rng, xtr.shape[1], args.batch)

        def step(k):
            idx = blocks[k]
            loss, d = nn.mse(model(xtr[:, idx])[:, None], ytr[idx, None])
            _common.update(model, opt, d[:, 0], 1.0)
            return loss

        losses += _common.train(step, len(blocks), quick=True, desc=name, every=10 ** 9)
        curve.append(held_out(model, xte, yte))
    train_loss = float(np.mean(losses[-len(blocks):]))
    print(f"{name:18s} train {train_loss:.4f}  held-out best {min(curve):.4f} "
          f"final {curve[-1]:.4f}", flush=True)
    return curve


def main(argv=None):
    ap = _common.parser(__doc__, epochs=None, n_train=None, batch=20, hidden=64, lr=3e-3)
    args = _common.parse(ap, argv)
    args.epochs = args.epochs or (25 if args.quick else 60)
    n_train = args.n_train or (100 if args.quick else 200)
    rng = np.random.default_rng(args.seed)
    data = make_data(rng, n_train), make_data(rng, 1000)
    curves = {name: run(name, opts, data, args, args.seed + 1)
              for name, opts in VARIANTS.items()}
    if args.plot:
        with _common.figure(args.plot) as (_, ax):
            for name, c in curves.items():
                ax.plot(np.arange(1, len(c) + 1), c, label=name)
            ax.set_xlabel("epoch")
            ax.set_ylabel("held-out MSE (1 = predict the mean)")
            ax.set_yscale("log")
            ax.legend()
    print("held-out MSE: " + ", ".join(f"{n} {c[-1]:.4f}" for n, c in curves.items()))
    return curves


if __name__ == "__main__":
    main()
