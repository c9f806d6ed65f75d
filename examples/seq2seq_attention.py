"""Sequence-to-sequence GRU encoder-decoder with Luong attention and teacher forcing.

Task: read a string of 3 to 8 digits (variable length) and write it reversed
(`--task reverse`, default) or sorted (`--task sort`), followed by an end token.

    encoder:   Embedding -> GRU(lengths = source lengths)       -> enc (S, B, H), h_n
    decoder:   Embedding -> GRU(h_0 = encoder h_n)              -> dec (T, B, H)
    attention (Luong et al. 2015, "general" score, global):
               score[t, s] = dec[t] . (W_a enc[s])   (padded source steps masked out)
               a[t] = softmax_s(score[t]),  ctx[t] = sum_s a[t, s] enc[s]
               h~[t] = tanh(W_c [ctx[t]; dec[t]] + b_c),  logits[t] = W_o h~[t] + b_o

Teacher forcing: in training the decoder reads the *true* previous output token
(`<bos> y_1 ... y_n`) at every step, so the whole target is one GRU call over (T, B, E)
and attention is computed for all steps at once. At test time the decoder is run one
step at a time on its own greedy predictions (`decode`) until it writes `<eos>`.
Backward is explicit: each block returns its input gradient, and the attention's
backward (softmax and the two batched products) is written out in `LuongAttention`.

Reported: exact-match accuracy (every output token right, and the right length) on 1,000
held-out strings that never occur in training. `--plot attn.png` saves the attention map
of one test string (for reversal, the anti-diagonal).

    python examples/seq2seq_attention.py                # full run
    python examples/seq2seq_attention.py --quick        # well under a minute
    python examples/seq2seq_attention.py --task sort --plot attn.png

Last line: `exact-match accuracy: <percent>%`.
"""
import numpy as np

import fastrnn
from fastrnn import nn, optim
import _common

BOS, EOS, PAD = 10, 11, 12                # digits are tokens 0-9
V = 13
NEG = -1e9                                # score of a masked (padded) source step


def make_strings(rng, n, min_len, max_len):
    lengths = rng.integers(min_len, max_len + 1, n)
    return [tuple(rng.integers(0, 10, k)) for k in lengths]


def transform(s, task):
    return s[::-1] if task == "reverse" else tuple(sorted(s))


def batchify(strings, task):
    """-> src (S, B), src_len (B,), dec_in (T, B), tgt (T, B), tgt_len (B,); time-major."""
    B = len(strings)
    src_len = np.array([len(s) for s in strings])
    S, T = src_len.max(), src_len.max() + 1
    src = np.full((S, B), PAD)
    dec_in = np.full((T, B), PAD)
    tgt = np.full((T, B), PAD)
    for b, s in enumerate(strings):
        y = transform(s, task)
        src[:len(s), b] = s
        dec_in[:len(s) + 1, b] = (BOS,) + y
        tgt[:len(s) + 1, b] = y + (EOS,)
    return src, src_len, dec_in, tgt, src_len + 1


class LuongAttention:
    """Global attention with the "general" score; forward caches for one backward."""

    def __init__(self, hidden, seed):
        self.w_a = nn.Dense(hidden, hidden, bias=False, seed=seed)

    def keys(self, enc, training):
        return self.w_a(enc, training=training)                      # (S, B, H)

    def __call__(self, dec, enc, keys, src_len, training=True):
        """dec (T, B, H), enc and keys (S, B, H) -> context (T, B, H), weights (B, T, S)."""
        d = dec.transpose(1, 0, 2)                                   # (B, T, H)
        e = enc.transpose(1, 0, 2)                                   # (B, S, H)
        k = keys.transpose(1, 0, 2)
        score = d @ k.transpose(0, 2, 1)                             # (B, T, S)
        valid = np.arange(enc.shape[0])[None, None, :] < src_len[:, None, None]
        score = np.where(valid, score, NEG)
        a = np.exp(score - score.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        ctx = (a @ e).transpose(1, 0, 2)                             # (T, B, H)
        self._cache = (d, e, k, a) if training else None
        return ctx, a

    def backward(self, d_ctx):
        """-> d_dec (T, B, H), d_enc (S, B, H) (through the context and the keys)."""
        d, e, k, a = self._cache
        self._cache = None
        dc = d_ctx.transpose(1, 0, 2)                                # (B, T, H)
        d_a = dc @ e.transpose(0, 2, 1)                              # (B, T, S)
        d_e = a.transpose(0, 2, 1) @ dc                              # (B, S, H)
        d_score = a * (d_a - (d_a * a).sum(-1, keepdims=True))       # softmax backward
        d_d = d_score @ k                                            # (B, T, H)
        d_k = d_score.transpose(0, 2, 1) @ d                         # (B, S, H)
        d_enc = d_e.transpose(1, 0, 2) + self.w_a.backward(d_k.transpose(1, 0, 2))
        return d_d.transpose(1, 0, 2), d_enc


class Seq2Seq:
    def __init__(self, embed, hidden, seed):
        rng = np.random.default_rng(seed)
        self.enc_embed = nn.Embedding(V, embed, padding_idx=PAD, seed=rng)
        self.encoder = fastrnn.GRU(embed, hidden, seed=rng)
        self.dec_embed = nn.Embedding(V, embed, padding_idx=PAD, seed=rng)
        self.decoder = fastrnn.GRU(embed, hidden, seed=rng)
        self.attn = LuongAttention(hidden, rng)
        self.combine = nn.Dense(2 * hidden, hidden, seed=rng)
        self.out = nn.Dense(hidden, V, seed=rng)
        self.modules = [self.enc_embed, self.encoder, self.dec_embed, self.decoder,
                        self.attn.w_a, self.combine, self.out]

    def set_training(self, training):
        for m in self.modules:
            m.train(training)

    def encode(self, src, src_len):
        enc, h = self.encoder(self.enc_embed(src), lengths=src_len)
        return enc, h, self.attn.keys(enc, self.encoder.training)

    def decode_steps(self, dec_in, h, enc, keys, src_len, dec_len=None):
        """Decoder over the given input tokens (T, B) from state h -> logits, h, weights."""
        dec, h = self.decoder(self.dec_embed(dec_in), h, lengths=dec_len)
        ctx, a = self.attn(dec, enc, keys, src_len, training=self.decoder.training)
        self._h_tilde = np.tanh(self.combine(np.concatenate([ctx, dec], axis=-1)))
        return self.out(self._h_tilde), h, a

    def forward(self, src, src_len, dec_in, tgt_len):
        """Teacher-forced training pass: logits (T, B, V)."""
        self.set_training(True)
        enc, h, keys = self.encode(src, src_len)
        logits, _, _ = self.decode_steps(dec_in, h, enc, keys, src_len, tgt_len)
        return logits

    def backward(self, d_logits):
        H = self.combine.out_features
        d_ht = self.out.backward(d_logits)
        d_cat = self.combine.backward(d_ht * (1 - self._h_tilde ** 2))
        d_dec_attn, d_enc = self.attn.backward(d_cat[..., :H])
        d_dec = d_cat[..., H:] + d_dec_attn
        dx, dh0 = self.decoder.backward(d_dec)
        self.dec_embed.backward(dx)
        dx, _ = self.encoder.backward(d_enc, dh0)     # the decoder's h_0 is the encoder's h_n
        self.enc_embed.backward(dx)

    def decode(self, src, src_len, max_len):
        """Greedy decoding, one step at a time: predictions (B, max_len), weights (B, T, S)."""
        self.set_training(False)
        B = src.shape[1]
        enc, h, keys = self.encode(src, src_len)
        tok = np.full((1, B), BOS)
        preds, weights = [], []
        for _ in range(max_len):
            logits, h, a = self.decode_steps(tok, h, enc, keys, src_len)
            tok = logits.argmax(-1)                                  # (1, B)
            preds.append(tok[0])
            weights.append(a[:, 0])
            if np.all(np.any(np.array(preds) == EOS, axis=0)):
                break
        return np.array(preds).T, np.stack(weights, axis=1)


def exact_match(model, strings, task):
    src, src_len, _, tgt, tgt_len = batchify(strings, task)
    preds, _ = model.decode(src, src_len, max_len=tgt.shape[0] + 2)
    ok = 0
    for b, n in enumerate(tgt_len):
        p = preds[b]
        ok += int(len(p) >= n and np.array_equal(p[:n], tgt[:n, b]))   # includes the <eos>
    return ok / len(strings)


def plot_attention(model, s, task, path, history):
    """The attention map of one test string, beside the learning curve."""
    src, src_len, _, tgt, _ = batchify([s], task)
    preds, w = model.decode(src, src_len, max_len=len(s) + 2)
    out = list(preds[0])
    n = out.index(EOS) + 1 if EOS in out else len(out)
    names = [str(t) if t < 10 else "<eos>" for t in out[:n]]
    with _common.figure(path, ncols=2, figsize=(9, 4.2),
                        gridspec_kw={"width_ratios": [1.3, 1]}) as (fig, (a1, a2)):
        a1.semilogy(*_common.smooth(history, 20))
        a1.set(xlabel="training step", ylabel="cross-entropy (running mean)",
               title="learning curve")
        im = a2.imshow(w[0, :n, :len(s)], cmap="viridis", vmin=0, vmax=1)
        a2.set_xticks(range(len(s)), [str(c) for c in s])
        a2.set_yticks(range(n), names)
        a2.set(xlabel="source", ylabel="output (greedy)", title=f"attention, task '{task}'")
        fig.colorbar(im, ax=a2, fraction=0.046)


def main(argv=None):
    ap = _common.parser(__doc__, steps=None, batch=64, hidden=64, embed=16, min_len=3,
                        max_len=8, lr=5e-3)
    ap.add_argument("--task", choices=("reverse", "sort"), default="reverse")
    args = _common.parse(ap, argv)
    steps = args.steps or (700 if args.quick else 3000)

    rng = np.random.default_rng(args.seed)
    test = make_strings(np.random.default_rng(args.seed + 1000), 1000, args.min_len,
                        args.max_len)
    held_out = set(test)
    model = Seq2Seq(args.embed, args.hidden, args.seed)
    opt = optim.Adam(model.modules, lr=args.lr)

    def step(i):
        strings = [s for s in make_strings(rng, args.batch, args.min_len, args.max_len)
                   if s not in held_out]
        src, src_len, dec_in, tgt, tgt_len = batchify(strings, args.task)
        mask = np.arange(tgt.shape[0])[:, None] < tgt_len[None, :]
        loss, d_logits = nn.softmax_cross_entropy(model.forward(src, src_len, dec_in, tgt_len),
                                                  tgt, mask=mask)
        _common.update(model, opt, d_logits, 5.0)
        return loss

    with _common.Timer() as t:
        history = _common.train(step, steps, quick=args.quick)
    elapsed = t.seconds
    acc = exact_match(model, test, args.task)
    print(f"trained {steps} steps of batch {args.batch} in {elapsed:.1f}s "
          f"({1e3 * elapsed / steps:.1f} ms/step); final loss {np.mean(history[-50:]):.4f}")
    for s in test[:3]:
        src, src_len, *_ = batchify([s], args.task)
        p = list(model.decode(src, src_len, len(s) + 2)[0][0])
        p = p[:p.index(EOS)] if EOS in p else p
        print(f"  {''.join(map(str, s))} -> {''.join(map(str, p))}")
    if args.plot:
        plot_attention(model, test[int(np.argmax([len(s) for s in test]))], args.task,
                       args.plot, history)
    print(f"exact-match accuracy: {100 * acc:.1f}%")
    return acc


if __name__ == "__main__":
    main()
