"""Bidirectional two-layer LSTM classifier on variable-length padded sequences.

Each example is a string of 5 to 50 digits, padded to the batch's longest with a
padding token. Its class (4 classes) says whether its *first* digit is >= 5 and whether
its *last real* digit is >= 5:

    class = 2 * [first >= 5] + [last >= 5]

A one-directional LSTM would have to carry the first digit across up to 50 steps; the
bidirectional one reads it as the last step of its backward direction. And the answer
depends on where each sequence really ends, so the layer gets `lengths`: with them the
forward direction's final state h_n is taken after each sequence's last real step, and
the backward direction starts at that step (PyTorch's pack_padded_sequence semantics),
so padding never enters the result.

    Embedding(11, E, padding_idx) -> LSTM(E, H, num_layers=2, bidirectional=True,
    batch_first=True)(x, lengths=lengths) -> [h_n forward; h_n backward] of the top
    layer (B, 2H) -> Dense(2H, 4) -> softmax cross-entropy

The loss reaches the LSTM only through its final states: `lstm.backward(None, (dh_n,
None))` (no gradient on `out`, one on the top layer's h_n rows).

    python examples/bilstm_classifier.py            # full run
    python examples/bilstm_classifier.py --quick    # well under a minute

Last line: `test accuracy: <percent>%`.
"""
import numpy as np

import fastrnn
from fastrnn import nn, optim
import _common

PAD = 10


def make_data(rng, n, min_len, max_len):
    """-> tokens (n, max_len) padded with PAD, lengths (n,), labels (n,)."""
    lengths = rng.integers(min_len, max_len + 1, n)
    tokens = rng.integers(0, 10, (n, max_len))
    tokens[np.arange(max_len)[None, :] >= lengths[:, None]] = PAD
    first, last = tokens[:, 0], tokens[np.arange(n), lengths - 1]
    return tokens, lengths, 2 * (first >= 5) + (last >= 5)


class Classifier:
    def __init__(self, embed, hidden, seed):
        rng = np.random.default_rng(seed)
        self.embed = nn.Embedding(PAD + 1, embed, padding_idx=PAD, seed=rng)
        self.lstm = fastrnn.LSTM(embed, hidden, num_layers=2, bidirectional=True,
                                 batch_first=True, seed=rng)
        self.head = nn.Dense(2 * hidden, 4, seed=rng)
        self.modules = [self.embed, self.lstm, self.head]

    def __call__(self, tokens, lengths, training=True):
        for m in self.modules:
            m.train(training)
        T = int(lengths.max())                         # trim the batch to its longest
        _, (h_n, _) = self.lstm(self.embed(tokens[:, :T]), lengths=lengths)
        self._h_n_shape = h_n.shape                    # (num_layers * 2, B, H)
        features = np.concatenate([h_n[-2], h_n[-1]], axis=1)    # top layer: fwd, bwd
        return self.head(features)

    def backward(self, d_logits):
        d_feat = self.head.backward(d_logits)
        H = self._h_n_shape[-1]
        dh_n = np.zeros(self._h_n_shape, dtype=d_feat.dtype)
        dh_n[-2], dh_n[-1] = d_feat[:, :H], d_feat[:, H:]
        dx, _ = self.lstm.backward(None, (dh_n, None))
        self.embed.backward(dx)


@fastrnn.no_grad()                       # evaluation keeps no backward cache
def evaluate(model, tokens, lengths, labels, batch=500):
    pred = np.concatenate([model(tokens[i:i + batch], lengths[i:i + batch],
                                 training=False).argmax(-1)
                           for i in range(0, len(labels), batch)])
    return pred == labels


def main(argv=None):
    ap = _common.parser(__doc__, epochs=None, train_size=None, batch=64, hidden=32,
                        embed=16, min_len=5, max_len=50, lr=5e-3)
    args = _common.parse(ap, argv)
    epochs = args.epochs or (2 if args.quick else 4)
    n_train = args.train_size or (4000 if args.quick else 10000)

    rng = np.random.default_rng(args.seed)
    train = make_data(rng, n_train, args.min_len, args.max_len)
    test = make_data(rng, 2000, args.min_len, args.max_len)
    model = Classifier(args.embed, args.hidden, args.seed)
    opt = optim.Adam(model.modules, lr=args.lr)
    epoch_times, history = [], []
    for epoch in range(epochs):
        blocks = _common.batches(rng, n_train, args.batch)

        def step(k):
            tokens, lengths, labels = (a[blocks[k]] for a in train)
            loss, d_logits = nn.softmax_cross_entropy(model(tokens, lengths), labels)
            _common.update(model, opt, d_logits, 5.0)
            return loss

        with _common.Timer() as t:
            losses = _common.train(step, len(blocks), quick=args.quick, every=len(blocks),
                                   desc=f"epoch {epoch + 1}/{epochs}")
        history += losses
        epoch_times.append(t.seconds)
        acc = evaluate(model, *test).mean()
        print(f"epoch {epoch + 1}: loss {np.mean(losses):.4f}, test accuracy "
              f"{100 * acc:.1f}%, {epoch_times[-1]:.1f}s", flush=True)

    correct = evaluate(model, *test)
    lengths = test[1]
    edges = np.linspace(args.min_len, args.max_len + 1, 5).astype(int)
    parts = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (lengths >= lo) & (lengths < hi)
        parts.append(f"{lo}-{hi - 1}: {100 * correct[sel].mean():.1f}%")
    print("accuracy by length: " + ", ".join(parts))
    print(f"{np.mean(epoch_times):.1f}s per epoch ({n_train} sequences, batch {args.batch})")
    if args.plot:
        ls = np.arange(args.min_len, args.max_len + 1)
        with _common.figure(args.plot, ncols=2, figsize=(10, 3.5)) as (fig, (a1, a2)):
            a1.semilogy(*_common.smooth(history, 20))
            a1.set(xlabel="training step", ylabel="cross-entropy (running mean)",
                   title="learning curve")
            a2.plot(ls, [100 * correct[lengths == k].mean() for k in ls], "o-")
            a2.set(xlabel="sequence length", ylabel="test accuracy (%)", ylim=(0, 101),
                   title="BiLSTM (2 layers) with lengths")
    print(f"test accuracy: {100 * correct.mean():.1f}%")
    return correct.mean()


if __name__ == "__main__":
    main()
