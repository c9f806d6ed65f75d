"""Binary addition with a SimpleRNN trained by backpropagation through time.

The classic first RNN exercise: read two 8-bit numbers one bit per step, least
significant bit first, and emit the bits of their sum. The network has to learn to
carry: the output at step t depends on the inputs at t and on a carry it keeps in its
hidden state from step t-1. Nine steps cover the 9-bit sum (the last step reads 0, 0 and
outputs the final carry).

    x[t] = (a_t, b_t)  ->  SimpleRNN(2, H)  ->  Dense(H, 2)  ->  softmax over {0, 1} = s_t

A random 20% of all 65,536 pairs (a, b) is held out; the script trains on the rest and
reports the fraction of held-out sums with all 9 bits right.

    python examples/binary_addition.py            # full run
    python examples/binary_addition.py --quick    # a few seconds
    python examples/binary_addition.py --plot addition.png

Last line: `held-out accuracy: <percent>%`.
"""
import numpy as np

import fastrnn
from fastrnn import nn, optim
import _common

BITS = 8
T = BITS + 1


def to_bits(n, width):
    """(N,) ints -> (width, N) bits, least significant first (time-major)."""
    return (n[None, :] >> np.arange(width)[:, None]) & 1


def make_batch(pairs):
    """pairs (N, 2) -> x (T, N, 2) float32, targets (T, N) int."""
    x = np.stack([to_bits(pairs[:, 0], T), to_bits(pairs[:, 1], T)], axis=-1)
    return x.astype(np.float32), to_bits(pairs.sum(axis=1), T)


class Adder:
    def __init__(self, hidden, seed):
        rng = np.random.default_rng(seed)
        self.rnn = fastrnn.SimpleRNN(2, hidden, seed=rng)
        self.head = nn.Dense(hidden, 2, seed=rng)
        self.modules = [self.rnn, self.head]

    def __call__(self, x, training=True):
        for m in self.modules:
            m.train(training)
        out, _ = self.rnn(x)                  # (T, B, H)
        return self.head(out)                 # (T, B, 2), time-distributed

    def backward(self, d_logits):
        d_out = self.head.backward(d_logits)
        self.rnn.backward(d_out)              # BPTT through all T steps


@fastrnn.no_grad()                       # evaluation keeps no backward cache
def accuracy(model, pairs, batch=4096):
    correct = 0
    for i in range(0, len(pairs), batch):
        x, y = make_batch(pairs[i:i + batch])
        pred = model(x, training=False).argmax(axis=-1)
        correct += int(np.all(pred == y, axis=0).sum())
    return correct / len(pairs)


def main(argv=None):
    ap = _common.parser(__doc__, hidden=16, steps=(None, "training steps (batches)"),
                        batch=64, lr=0.01)
    args = _common.parse(ap, argv)
    steps = args.steps or (1500 if args.quick else 5000)

    rng = np.random.default_rng(args.seed)
    a, b = np.meshgrid(np.arange(2 ** BITS), np.arange(2 ** BITS), indexing="ij")
    pairs = rng.permutation(np.stack([a.ravel(), b.ravel()], axis=1))
    n_test = len(pairs) // 5
    test, train = pairs[:n_test], pairs[n_test:]

    model = Adder(args.hidden, args.seed)
    opt = optim.Adam(model.modules, lr=args.lr)

    def step(i):
        x, y = make_batch(train[rng.integers(0, len(train), args.batch)])
        loss, d_logits = nn.softmax_cross_entropy(model(x), y)
        _common.update(model, opt, d_logits, 5.0)
        return loss

    with _common.Timer() as t:
        history = _common.train(step, steps, quick=args.quick, every=500)
    elapsed = t.seconds
    acc = accuracy(model, test)
    print(f"trained {steps} steps of batch {args.batch} in {elapsed:.1f}s "
          f"({1e3 * elapsed / steps:.2f} ms/step); final loss {np.mean(history[-100:]):.4f}")

    x, _ = make_batch(np.array([[100, 55]]))
    bits = model(x, training=False).argmax(-1)[:, 0]
    print(f"100 + 55 = {int((bits << np.arange(T)).sum())} (bits, LSB first: "
          f"{''.join(map(str, bits))})")

    if args.plot:
        with _common.figure(args.plot) as (fig, ax):
            ax.semilogy(*_common.smooth(history, 50))
            ax.set(xlabel="training step", ylabel="cross-entropy (nats/bit), running mean",
                   title=f"SimpleRNN({args.hidden}) learns binary addition")
    print(f"held-out accuracy: {100 * acc:.2f}%")
    return acc


if __name__ == "__main__":
    main()
