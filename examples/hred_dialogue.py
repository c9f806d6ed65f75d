"""Hierarchical recurrent encoder-decoder (HRED) on synthetic multi-turn dialogues.

HRED (Sordoni et al. 2015, Serban et al. 2016) reads a dialogue at two levels:

    utterance encoder:  Embedding -> GRU(lengths) over each turn's tokens -> one vector a turn
    context RNN:        GRU over the turn vectors                     -> the dialogue state
    decoder:            h_0 = tanh(Dense(dialogue state)); Embedding -> GRU -> Dense -> next turn

The data make the next turn depend on earlier turns, not only the last one. A dialogue
is three turns of 3 to 6 random digits; the reply is

    (first digit of turn 1, first digit of turn 2, last digit of turn 3) <eos>

Baseline: a flat sequence-to-sequence model (the same encoder, bridge and decoder
without the context RNN) that sees only the last turn, as a model that ignores the
history would: it can get the last digit, and must guess the first two (1 in 100).

Both are trained with teacher forcing and decoded greedily. The utterance encoder runs
once over all turns of a batch (the turns side by side in the batch axis, with their
lengths), so one block serves every turn and backward is one call.

Reported: exact-match next-turn accuracy (all tokens and <eos>) on 1,000 new dialogues.

    python examples/hred_dialogue.py                  # full run
    python examples/hred_dialogue.py --quick          # well under a minute
    python examples/hred_dialogue.py --plot hred.png  # learning curves of both models

Last line: `next-turn accuracy: HRED <percent>% (flat seq2seq, last turn only <percent>%)`.
"""
import numpy as np

import fastrnn
from fastrnn import nn, optim
import _common

BOS, EOS, PAD = 10, 11, 12                # digits are tokens 0-9
V, TURNS, MIN_LEN, MAX_LEN = 13, 3, 3, 6


def make_dialogues(rng, n):
    """-> turns (MAX_LEN, n, TURNS) padded, lengths (n, TURNS), replies (n, 3)."""
    lengths = rng.integers(MIN_LEN, MAX_LEN + 1, (n, TURNS))
    turns = rng.integers(0, 10, (MAX_LEN, n, TURNS))
    turns[np.arange(MAX_LEN)[:, None, None] >= lengths[None]] = PAD
    last = turns[lengths[:, 2] - 1, np.arange(n), 2]
    return turns, lengths, np.stack([turns[0, :, 0], turns[0, :, 1], last], axis=1)


class DialogueModel:
    """HRED (`hierarchical=True`) or the flat baseline reading the last turn only."""

    def __init__(self, hierarchical, embed, hidden, seed):
        rng = np.random.default_rng(seed)
        self.hierarchical = hierarchical
        self.enc_embed = nn.Embedding(V, embed, padding_idx=PAD, seed=rng)
        self.encoder = fastrnn.GRU(embed, hidden, seed=rng)
        self.context = fastrnn.GRU(hidden, hidden, seed=rng) if hierarchical else None
        self.bridge = nn.Dense(hidden, hidden, seed=rng)
        self.dec_embed = nn.Embedding(V, embed, seed=rng)
        self.decoder = fastrnn.GRU(embed, hidden, seed=rng)
        self.out = nn.Dense(hidden, V, seed=rng)
        self.modules = [m for m in (self.enc_embed, self.encoder, self.context, self.bridge,
                                    self.dec_embed, self.decoder, self.out) if m is not None]

    def state(self, turns, lengths, training):
        """The decoder's initial state (1, B, H) from the dialogue so far."""
        for m in self.modules:
            m.train(training)
        if not self.hierarchical:
            turns, lengths = turns[..., -1:], lengths[:, -1:]
        L, B, n = turns.shape
        _, h = self.encoder(self.enc_embed(turns.reshape(L, B * n)), lengths=lengths.ravel())
        if self.hierarchical:                    # (B*n, H) -> (n, B, H): one step a turn
            _, h = self.context(h[0].reshape(B, n, -1).transpose(1, 0, 2))
        self._n, self._h0 = n, np.tanh(self.bridge(h[0]))
        return self._h0[None]

    def __call__(self, turns, lengths, replies):
        """Teacher-forced logits (4, B, V) for the reply tokens and <eos>."""
        h0 = self.state(turns, lengths, training=True)
        dec_in = np.concatenate([np.full((1, len(replies)), BOS), replies.T])
        out, _ = self.decoder(self.dec_embed(dec_in), h0)
        return self.out(out)

    def backward(self, d_logits):
        dx, dh0 = self.decoder.backward(self.out.backward(d_logits))
        self.dec_embed.backward(dx)
        dh = self.bridge.backward(dh0[0] * (1 - self._h0 ** 2))
        if self.hierarchical:
            d_turns, _ = self.context.backward(None, dh[None])      # (n, B, H)
            dh = d_turns.transpose(1, 0, 2).reshape(-1, dh.shape[-1])
        dx, _ = self.encoder.backward(None, dh[None])
        self.enc_embed.backward(dx)

    def reply(self, turns, lengths, max_len=4):
        """Greedy decoding -> tokens (B, max_len)."""
        h = self.state(turns, lengths, training=False)
        tok, out = np.full((1, turns.shape[1]), BOS), []
        for _ in range(max_len):
            o, h = self.decoder(self.dec_embed(tok), h)
            tok = self.out(o).argmax(-1)
            out.append(tok[0])
        return np.array(out).T


def accuracy(model, data):
    turns, lengths, replies = data
    want = np.concatenate([replies, np.full((len(replies), 1), EOS)], axis=1)
    return float(np.mean(np.all(model.reply(turns, lengths) == want, axis=1)))


def fit(model, args, steps, test):
    rng = np.random.default_rng(args.seed)
    opt = optim.Adam(model.modules, lr=args.lr)

    def step(i):
        turns, lengths, replies = make_dialogues(rng, args.batch)
        target = np.concatenate([replies.T, np.full((1, args.batch), EOS)])
        loss, d = nn.softmax_cross_entropy(model(turns, lengths, replies), target)
        _common.update(model, opt, d, 5.0)
        return loss

    name = "HRED" if model.hierarchical else "flat seq2seq"
    with _common.Timer() as t:
        history = _common.train(step, steps, quick=args.quick, desc=name, every=steps // 4)
    acc = accuracy(model, test)
    print(f"{name}: {steps} steps in {t.seconds:.1f}s, final loss "
          f"{np.mean(history[-50:]):.3f}, next-turn accuracy {100 * acc:.1f}%", flush=True)
    return history, acc


def main(argv=None):
    ap = _common.parser(__doc__, steps=None, batch=64, hidden=64, embed=16, lr=5e-3)
    args = _common.parse(ap, argv)
    steps = args.steps or (800 if args.quick else 3000)

    test = make_dialogues(np.random.default_rng(args.seed + 1000), 1000)
    curves = {}
    for hierarchical in (True, False):
        model = DialogueModel(hierarchical, args.embed, args.hidden, args.seed)
        curves["HRED" if hierarchical else "flat"] = fit(model, args, steps, test)
        if hierarchical:
            hred = model
    turns, lengths, replies = test[0][:, :3], test[1][:3], test[2][:3]
    for b, got in enumerate(hred.reply(turns, lengths)):
        said = [" ".join(str(t) for t in turns[:lengths[b, k], b, k]) for k in range(TURNS)]
        print(f"  {' | '.join(said)}  ->  {' '.join(str(t) for t in got[:3])}"
              f"  (want {' '.join(map(str, replies[b]))})")
    if args.plot:
        with _common.figure(args.plot) as (fig, ax):
            for name, (history, acc) in curves.items():
                ax.plot(*_common.smooth(history, 25), label=f"{name} (accuracy {100 * acc:.1f}%)")
            ax.set(xlabel="step", ylabel="cross-entropy per token (running mean)",
                   title="next-turn prediction: HRED vs last-turn seq2seq")
            ax.legend()
    print(f"next-turn accuracy: HRED {100 * curves['HRED'][1]:.1f}% (flat seq2seq, last turn "
          f"only {100 * curves['flat'][1]:.1f}%)")
    return curves["HRED"][1], curves["flat"][1]


if __name__ == "__main__":
    main()
