"""Helpers shared by several test files: random arguments of one cell's forward call and
central finite differences."""
import numpy as np

GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def cell_params(rng, cell, T, B, I, H, R=None, w_ih=0.6, w_hh=0.6):
    """x, weights, biases and initial states of one `cell` forward call (float64). R is the
    width of the recurrent state (the projection size, else H); w_ih and w_hh scale the
    weights. The draws come in a fixed order, so a seeded test sees the same numbers."""
    G, n, R = GATES[cell], rng.standard_normal, H if R is None else R
    p = dict(x=n((T, B, I)), w_ih=w_ih * n((G * H, I)), w_hh=w_hh * n((G * H, R)),
             b_ih=0.3 * n(G * H), b_hh=0.3 * n(G * H), h0=0.5 * n((B, R)))
    if cell == "lstm":
        p["c0"] = 0.5 * n((B, H))
    return p


def add_variant_arrays(p, rng, cell, extra, T, B, H, P=None):
    """Adds to p the optional arrays that `extra` names: "peephole", "w_hr" (projection to
    P units), "ln" (ln_gain / ln_cell), "rmask" (recurrent dropout), "zmask" (zoneout)."""
    G, n = GATES[cell], rng.standard_normal
    R = P if "w_hr" in extra else H
    if "peephole" in extra:
        p["peephole"] = 0.5 * n((3, H))
    if "w_hr" in extra:
        p["w_hr"] = 0.7 * n((P, H))
    if "ln" in extra:                      # gains away from 1 and shifts away from 0
        p["ln_gain"] = 1 + 0.3 * n((2, G * H))
        if cell == "lstm":
            p["ln_cell"] = np.stack([1 + 0.3 * n(H), 0.3 * n(H)])
    if "rmask" in extra:                   # Keras-style inverted dropout: 0 or 1/(1-p)
        p["recurrent_mask"] = (rng.random((G, B, R)) > 0.3) / 0.7
    if "zmask" in extra:                   # 1 = keep the old value; fractions allowed
        p["zoneout_mask"] = rng.choice([0.0, 1.0, 0.25], size=(T, B, R))
        if cell == "lstm":
            p["zoneout_mask_c"] = rng.choice([0.0, 1.0, 0.5], size=(T, B, H))
    return p


def numeric_grad(f, a, eps=1e-6):
    """Central-difference gradient of the scalar f() w.r.t. every entry of the array a,
    which it changes in place and restores."""
    g = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        old = a[i]
        a[i] = old + eps
        up = f()
        a[i] = old - eps
        down = f()
        a[i] = old
        g[i] = (up - down) / (2 * eps)
    return g


def keras_numpy(t):
    """A Keras output (a torch tensor on the torch backend, or an array) as NumPy."""
    return np.asarray(t.detach().cpu()) if hasattr(t, "detach") else np.asarray(t)
