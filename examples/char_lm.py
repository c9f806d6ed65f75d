"""Character-level LSTM language model on text that ships with Python, with sampling.

The text is the Python language reference that every CPython install carries for
`help()` (`pydoc_data.topics`, about 465,000 characters of English prose and code): no
download. The model reads one character per step and predicts the next:

    Embedding(V, E) -> LSTM(E, H) -> Dense(H, V) -> softmax

Training is *stateful truncated BPTT* (Deep Learning Book §10.2.2, Elman 1990, as in
Karpathy's char-rnn). The training text is cut into B contiguous streams, one per batch
row, and each stream is read in consecutive chunks of T characters:

    state = None
    for chunk in chunks:                         # x, y: (T, B) characters, y = x shifted by 1
        out, state = lstm(embed(x), state)       # start from the final state of the last chunk
        loss, d = softmax_cross_entropy(head(out), y)
        lstm.backward(head.backward(d))          # BPTT over these T steps only

The state (h_n, c_n) carried into the next chunk lets the model use context longer than
T in the forward pass, while backward stops at the chunk boundary: the gradient with
respect to the carried-in state (`dh_0`, returned by backward) is simply dropped. NumPy
arrays have no autograd graph, so nothing needs detaching; carrying the arrays is all.

Reported: validation bits per character (cross-entropy / ln 2 over the held-out last 10%
of the text, also read statefully) against the unigram baseline (the entropy of the
character frequencies, what a model without context achieves), and samples at two
temperatures: p_i ∝ exp(logit_i / temperature), lower is more conservative.

    python examples/char_lm.py               # full run, a few minutes
    python examples/char_lm.py --quick       # well under a minute
    python examples/char_lm.py --plot lm.png # learning curve

Last line: `validation bits per character: <bpc> (unigram baseline <bpc>)`.
"""
import math

import numpy as np

import fastrnn
from fastrnn import nn, optim
import _common


def load_text():
    """The Python reference topics that pydoc shows for help('keyword')."""
    from pydoc_data.topics import topics
    return "".join(topics[k] for k in sorted(topics))


class CharLM:
    def __init__(self, vocab, embed, hidden, seed):
        rng = np.random.default_rng(seed)
        self.embed = nn.Embedding(vocab, embed, seed=rng)
        self.lstm = fastrnn.LSTM(embed, hidden, seed=rng)
        self.head = nn.Dense(hidden, vocab, seed=rng)
        self.modules = [self.embed, self.lstm, self.head]

    def __call__(self, idx, state=None, training=True):
        """idx (T, B) ints, state (h, c) or None -> logits (T, B, V), final state."""
        for m in self.modules:
            m.train(training)
        out, state = self.lstm(self.embed(idx), state)
        return self.head(out), state

    def backward(self, d_logits):
        dx, _ = self.lstm.backward(self.head.backward(d_logits))   # d(state_0) dropped:
        self.embed.backward(dx)                                     # truncated BPTT


def streams(data, batch):
    """(N,) -> (N // batch, batch): column b is a contiguous stretch of the text."""
    n = len(data) // batch
    return data[:n * batch].reshape(batch, n).T


@fastrnn.no_grad()                       # evaluation keeps no backward cache
def evaluate(model, data, batch=16, chunk=256):
    """Mean cross-entropy in bits per character, read statefully in `batch` streams."""
    s = streams(data, batch)
    state, nats, count = None, 0.0, 0
    for i in range(0, len(s) - 1, chunk):
        x, y = s[i:i + chunk], s[i + 1:i + chunk + 1]
        x = x[:len(y)]
        logits, state = model(x, state, training=False)
        loss, _ = nn.softmax_cross_entropy(logits, y)
        nats += loss * y.size
        count += y.size
    return nats / count / math.log(2)


@fastrnn.no_grad()                       # evaluation keeps no backward cache
def sample(model, chars, prompt, n, temperature, rng):
    """Feed `prompt`, then draw n characters one at a time from softmax(logits / temperature)."""
    index = {c: i for i, c in enumerate(chars)}
    idx = np.array([[index[c]] for c in prompt])                   # (T, 1)
    logits, state = model(idx, training=False)
    out = []
    for _ in range(n):
        z = logits[-1, 0].astype(np.float64) / temperature
        p = np.exp(z - z.max())
        k = rng.choice(len(p), p=p / p.sum())
        out.append(chars[k])
        logits, state = model(np.array([[k]]), state, training=False)
    return prompt + "".join(out)


def main(argv=None):
    ap = _common.parser(__doc__, epochs=None, hidden=None, embed=32,
                        batch=(32, "parallel streams"), bptt=(64, "truncation length T"),
                        lr=1e-2, decay=(0.7, "lr factor after each epoch"))
    args = _common.parse(ap, argv)
    epochs = args.epochs or (1 if args.quick else 5)
    hidden = args.hidden or (128 if args.quick else 256)

    text = load_text()
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    data = np.array([index[c] for c in text], dtype=np.int64)
    split = int(0.9 * len(data))
    train, valid = data[:split], data[split:]
    if args.quick:                        # a shorter validation read
        valid = valid[:len(valid) // 3]
    V = len(chars)
    freq = np.bincount(train, minlength=V) + 1.0                 # add-one smoothed unigram
    p_uni = freq / freq.sum()
    unigram_bpc = float(-np.mean(np.log2(p_uni[valid])))
    print(f"text: {len(text):,} characters, {V} distinct; train {len(train):,}, "
          f"validation {len(valid):,}; unigram baseline {unigram_bpc:.3f} bits/char")

    model = CharLM(V, args.embed, hidden, args.seed)
    opt = optim.Adam(model.modules, lr=args.lr)
    rng = np.random.default_rng(args.seed)
    s = streams(train, args.batch)
    starts = list(range(0, len(s) - 1, args.bptt))
    history, epoch_times = [], []
    for epoch in range(epochs):
        state = None                      # a fresh state at the start of each pass

        def step(k):
            nonlocal state
            i = starts[k]
            x, y = s[i:i + args.bptt], s[i + 1:i + args.bptt + 1]
            logits, state = model(x[:len(y)], state)     # carry (h_n, c_n) across chunks
            loss, d_logits = nn.softmax_cross_entropy(logits, y)
            _common.update(model, opt, d_logits, 5.0)
            return loss / math.log(2)

        with _common.Timer() as t:
            history += _common.train(step, len(starts), quick=args.quick, name="bpc",
                                     desc=f"epoch {epoch + 1}/{epochs}", every=500)
        epoch_times.append(t.seconds)
        opt.lr *= args.decay
        bpc = evaluate(model, valid)
        print(f"epoch {epoch + 1}: train {np.mean(history[-len(starts):]):.3f} bpc, "
              f"validation {bpc:.3f} bpc, {epoch_times[-1]:.1f}s", flush=True)

    for temperature in (0.5, 1.0):
        text_out = sample(model, chars, "The ", 240 if not args.quick else 120,
                          temperature, rng)
        print(f"--- sample at temperature {temperature} ---\n{text_out}\n---")
    print(f"{np.mean(epoch_times):.1f}s per epoch ({len(starts)} chunks of "
          f"{args.bptt}x{args.batch} characters, hidden {hidden})")

    if args.plot:
        with _common.figure(args.plot) as (fig, ax):
            ax.plot(*_common.smooth(history, 20), label="training (running mean)")
            ax.axhline(unigram_bpc, color="gray", ls="--", label="unigram baseline")
            ax.axhline(bpc, color="C1", ls=":", label=f"validation, end ({bpc:.2f})")
            ax.set(xlabel="chunk (truncated-BPTT step)", ylabel="bits per character",
                   title=f"char-level LSTM({hidden}) on the Python reference text")
            ax.legend()
    print(f"validation bits per character: {bpc:.3f} (unigram baseline {unigram_bpc:.3f})")
    return bpc, unigram_bpc


if __name__ == "__main__":
    main()
