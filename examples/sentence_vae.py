"""A sentence variational autoencoder (Bowman et al. 2016) with GRUs, against an autoencoder.

Sentences come from a small generated grammar with number agreement, e.g. "the old
farmers help the red bird" (every sentence of the grammar is listed, so a generated one
can be checked). The model:

    encoder:  Embedding -> GRU(lengths) -> h_n -> Dense -> (mu, log sigma^2)   (latent Z)
    sample:   z = mu + sigma * eps,  eps ~ N(0, I)          (reparameterisation trick)
    decoder:  h_0 = tanh(Dense(z)); Embedding -> GRU -> Dense -> softmax over words

It is trained on the negative evidence lower bound (ELBO), per sentence,

    reconstruction -log p(x | z) (summed over tokens)  +  beta * KL(q(z | x) || N(0, I))

with two of Bowman et al.'s remedies against the decoder ignoring z (posterior collapse):
KL annealing, beta rising linearly from 0 to 1 over the first half of training, and
word dropout, the decoder's input words replaced by <unk> with probability
`--word-dropout` so that it has to rely on z.

The baseline is the same network trained as a plain autoencoder: z = mu, no KL, no word
dropout. It reconstructs at least as well, but it is not a generative model: nothing
makes its codes fill N(0, I), so decoding z drawn from N(0, I) gives sentences the
grammar does not contain.

Reported on held-out sentences: reconstruction and KL in nats per sentence (one z
sample each), so the ELBO is a bound on -log p(x); the autoencoder's reconstruction for
comparison; and, for both, the share of sentences decoded (greedily) from z ~ N(0, I)
that the grammar contains. Also shown: samples, and the decodings along a straight
line between the codes of two held-out sentences.

    python examples/sentence_vae.py                  # full run
    python examples/sentence_vae.py --quick          # well under a minute
    python examples/sentence_vae.py --plot vae.png   # learning curves, KL, beta

Last line: `grammatical samples from the prior: VAE <p>% (autoencoder <p>%); held-out ELBO
<nats> = reconstruction <nats> + KL <nats>`.
"""

import numpy as np

import fastrnn
from fastrnn import nn, optim
import _common

ADJ = "big small red old happy quiet".split()
NOUNS = {"sg": "dog cat bird child farmer teacher".split(),
         "pl": "dogs cats birds children farmers teachers".split()}
VERBS = {"sg": "sees likes chases helps".split(), "pl": "see like chase help".split()}
PAD, BOS, EOS, UNK = 0, 1, 2, 3
WORDS = ["<pad>", "<bos>", "<eos>", "<unk>", "the"] + ADJ + NOUNS["sg"] + NOUNS["pl"] \
    + VERBS["sg"] + VERBS["pl"]
INDEX = {w: i for i, w in enumerate(WORDS)}


def grammar():
    """Every sentence: the [adj] noun verb the [adj] noun, verb agreeing with the subject."""
    nps = {num: [("the",) + a + (n,) for a in [()] + [(x,) for x in ADJ] for n in NOUNS[num]]
           for num in NOUNS}
    objects = nps["sg"] + nps["pl"]
    return [s + (v,) + o for num in NOUNS for s in nps[num] for v in VERBS[num]
            for o in objects]


def batchify(sentences):
    """Token tuples -> enc (S, B), lengths (B,), dec_in (S+1, B), target (S+1, B), mask."""
    B, lengths = len(sentences), np.array([len(s) for s in sentences])
    S = lengths.max()
    enc = np.full((S, B), PAD)
    dec_in, target = np.full((S + 1, B), PAD), np.full((S + 1, B), PAD)
    for b, s in enumerate(sentences):
        enc[:len(s), b] = s
        dec_in[:len(s) + 1, b] = (BOS,) + s
        target[:len(s) + 1, b] = s + (EOS,)
    mask = np.arange(S + 1)[:, None] <= lengths[None, :]
    return enc, lengths, dec_in, target, mask


class SentenceVAE:
    def __init__(self, variational, embed, hidden, latent, seed):
        rng = np.random.default_rng(seed)
        self.variational, self.latent, self.rng = variational, latent, rng
        self.enc_embed = nn.Embedding(len(WORDS), embed, padding_idx=PAD, seed=rng)
        self.encoder = fastrnn.GRU(embed, hidden, seed=rng)
        self.to_latent = nn.Dense(hidden, 2 * latent, seed=rng)      # mu, log sigma^2
        self.from_latent = nn.Dense(latent, hidden, seed=rng)
        self.dec_embed = nn.Embedding(len(WORDS), embed, padding_idx=PAD, seed=rng)
        self.decoder = fastrnn.GRU(embed, hidden, seed=rng)
        self.out = nn.Dense(hidden, len(WORDS), seed=rng)
        self.modules = [self.enc_embed, self.encoder, self.to_latent, self.from_latent,
                        self.dec_embed, self.decoder, self.out]

    def set_training(self, training):
        for m in self.modules:
            m.train(training)

    def encode(self, enc, lengths):
        _, h = self.encoder(self.enc_embed(enc), lengths=lengths)
        stats = self.to_latent(h[0])
        return stats[:, :self.latent], stats[:, self.latent:]        # mu, log sigma^2

    def decode_start(self, z):
        self._h0 = np.tanh(self.from_latent(z.astype(np.float32)))
        return self._h0[None]

    def loss(self, batch, beta, word_dropout, training=True):
        """-> (reconstruction, KL) in nats per sentence, and d_logits if training."""
        enc, lengths, dec_in, target, mask = batch
        self.set_training(training)
        mu, logvar = self.encode(enc, lengths)
        self._eps = self.rng.standard_normal(mu.shape).astype(np.float32)
        z = mu + np.exp(0.5 * logvar) * self._eps if self.variational else mu
        if word_dropout:
            drop = (self.rng.random(dec_in.shape) < word_dropout) & (dec_in != BOS)
            dec_in = np.where(drop & (dec_in != PAD), UNK, dec_in)
        out, _ = self.decoder(self.dec_embed(dec_in), self.decode_start(z), lengths=lengths + 1)
        tok_loss, d = nn.softmax_cross_entropy(self.out(out), target, mask=mask)
        per_sentence = mask.sum() / mask.shape[1]                  # tokens a sentence
        kl = 0.5 * np.sum(mu ** 2 + np.exp(logvar) - 1 - logvar, axis=1).mean() \
            if self.variational else 0.0
        self._stats = (mu, logvar, beta)
        return tok_loss * per_sentence, float(kl), d * np.float32(per_sentence)

    def backward(self, d_logits):
        mu, logvar, beta = self._stats
        B = mu.shape[0]
        dx, dh0 = self.decoder.backward(self.out.backward(d_logits))
        self.dec_embed.backward(dx)
        dz = self.from_latent.backward(dh0[0] * (1 - self._h0 ** 2))
        if self.variational:            # through z = mu + sigma eps, plus beta * dKL
            sigma = np.exp(0.5 * logvar)
            d_mu = dz + beta * mu / B
            d_logvar = dz * self._eps * 0.5 * sigma + beta * 0.5 * (sigma ** 2 - 1) / B
        else:
            d_mu, d_logvar = dz, np.zeros_like(dz)
        dh = self.to_latent.backward(np.concatenate([d_mu, d_logvar], axis=1)
                                     .astype(np.float32))
        dx, _ = self.encoder.backward(None, dh[None])
        self.enc_embed.backward(dx)

    def greedy(self, z, max_len=12):
        """Decode codes z (B, Z) greedily -> list of word tuples."""
        self.set_training(False)
        h = self.decode_start(z)
        tok, out = np.full((1, len(z)), BOS), []
        for _ in range(max_len):
            o, h = self.decoder(self.dec_embed(tok), h)
            tok = self.out(o).argmax(-1)
            out.append(tok[0])
        sentences = []
        for row in np.array(out).T:
            row = list(row)
            row = row[:row.index(EOS)] if EOS in row else row
            sentences.append(tuple(WORDS[t] for t in row))
        return sentences


def evaluate(model, held_out, batch=500):
    """Held-out reconstruction and KL, nats per sentence (one z sample each)."""
    rec = kl = 0.0
    for i in range(0, len(held_out), batch):
        part = held_out[i:i + batch]
        r, k, _ = model.loss(batchify(part), 1.0, 0.0, training=False)
        rec, kl = rec + r * len(part), kl + k * len(part)
    return rec / len(held_out), kl / len(held_out)


def grammatical(model, rng, n, sentences):
    samples = model.greedy(rng.standard_normal((n, model.latent)))
    return float(np.mean([s in sentences for s in samples])), samples


def fit(model, args, steps, train, held_out):
    rng = np.random.default_rng(args.seed)
    opt = optim.Adam(model.modules, lr=args.lr)
    kls = []

    def step(i):
        beta = min(1.0, i / (0.5 * steps)) if model.variational else 0.0
        batch = batchify([train[j] for j in rng.integers(0, len(train), args.batch)])
        rec, kl, d = model.loss(batch, beta, args.word_dropout if model.variational else 0)
        _common.update(model, opt, d, 5.0)
        kls.append(kl)
        return rec + kl

    name = "VAE" if model.variational else "autoencoder"
    with _common.Timer() as t:
        history = _common.train(step, steps, quick=args.quick, desc=name, every=steps // 4)
    rec, kl = evaluate(model, held_out)
    print(f"{name}: {steps} steps in {t.seconds:.1f}s; held-out reconstruction {rec:.2f}, "
          f"KL {kl:.2f} nats/sentence", flush=True)
    return history, kls, rec, kl


def main(argv=None):
    ap = _common.parser(__doc__, steps=None, batch=64, hidden=128, embed=32, latent=16,
                        word_dropout=0.6, lr=3e-3)
    args = _common.parse(ap, argv)
    steps = args.steps or (1200 if args.quick else 5000)

    rng = np.random.default_rng(args.seed)
    all_words = grammar()
    sentences = set(all_words)
    coded = [tuple(INDEX[w] for w in s) for s in rng.permutation(np.array(all_words,
                                                                          dtype=object))]
    held_out, train = coded[:1000], coded[1000:]
    print(f"grammar: {len(all_words)} sentences of {min(map(len, all_words))}-"
          f"{max(map(len, all_words))} words, vocabulary {len(WORDS)}; 1000 held out")

    results = {}
    for variational in (True, False):
        model = SentenceVAE(variational, args.embed, args.hidden, args.latent, args.seed)
        history, kls, rec, kl = fit(model, args, steps, train, held_out)
        ok, samples = grammatical(model, np.random.default_rng(args.seed + 1), 500, sentences)
        results["VAE" if variational else "AE"] = (history, kls, rec, kl, ok)
        print(f"  grammatical samples from N(0, I): {100 * ok:.1f}%; e.g. "
              + " / ".join(" ".join(s) for s in samples[:3]))
        if variational:
            vae = model
    a, b = held_out[0], held_out[1]
    vae.set_training(False)
    mu, _ = vae.encode(*batchify([a, b])[:2])
    print("interpolation between two held-out sentences' codes (VAE):")
    for s, w in zip(vae.greedy(np.outer(1 - np.linspace(0, 1, 6), mu[0])
                               + np.outer(np.linspace(0, 1, 6), mu[1])), np.linspace(0, 1, 6)):
        print(f"  {w:.1f}  {' '.join(s)}")

    _, kls, rec, kl, ok = results["VAE"]
    ae_rec, ae_ok = results["AE"][2], results["AE"][4]
    print(f"autoencoder held-out reconstruction: {ae_rec:.2f} nats/sentence (no KL term: no "
          f"bound on -log p(x))")
    if args.plot:
        with _common.figure(args.plot, ncols=2, figsize=(10, 3.8)) as (fig, (a1, a2)):
            a1.plot(*_common.smooth(results["VAE"][0], 25), label="VAE: reconstruction + KL")
            a1.plot(*_common.smooth(results["AE"][0], 25), label="autoencoder: reconstruction")
            a1.set(xlabel="step", ylabel="nats per sentence (running mean)", yscale="log",
                   title="training loss")
            a1.legend()
            a2.plot(*_common.smooth(kls, 25), color="C2", label="KL(q(z|x) || N(0, I))")
            beta = np.minimum(1, np.arange(len(kls)) / (0.5 * len(kls)))
            a2.plot(beta * max(kls), color="gray", ls="--", label="beta (scaled)")
            a2.set(xlabel="step", ylabel="nats per sentence", title="VAE: KL and its annealing")
            a2.legend()
    print(f"grammatical samples from the prior: VAE {100 * ok:.1f}% (autoencoder "
          f"{100 * ae_ok:.1f}%); held-out ELBO {rec + kl:.2f} = reconstruction {rec:.2f} + "
          f"KL {kl:.2f}")
    return ok, ae_ok, rec, kl


if __name__ == "__main__":
    main()
