"""The random masks of the cell variants, drawn as the layer will draw them in training
(docs/variants.md). The cells take masks as arrays, so results are reproducible and the
reference, the kernels and a test can share one draw.

    m = recurrent_dropout_mask(rng, 0.25, gates=4, batch=B, size=H)   # (G, B, H), once per call
    z = zoneout_mask(rng, 0.1, steps=T, batch=B, size=H)               # (T, B, H), fresh per step
"""
import numpy as np

from ._checks import DTYPES, check_probability

__all__ = ["recurrent_dropout_mask", "zoneout_mask"]


def _dtype(dtype):
    if np.dtype(dtype) not in DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {np.dtype(dtype)}")
    return np.dtype(dtype)


def recurrent_dropout_mask(rng, p, gates, batch, size, dtype=np.float32):
    """Keras's recurrent dropout: one mask per gate and sequence (batch row), kept for all
    time steps; inverted dropout, entries 0 with probability p and 1 / (1 - p) otherwise."""
    p = check_probability("recurrent_dropout", p)
    keep = rng.random((gates, batch, size)) >= p
    return (keep / (1 - p)).astype(_dtype(dtype))


def zoneout_mask(rng, p, steps, batch, size, dtype=np.float32):
    """Zoneout: a fresh mask per time step, 1 (keep the previous value) with probability p,
    0 (take the new value) otherwise. haste's kernels take the complement (1 = update)."""
    p = check_probability("zoneout", p)
    return (rng.random((steps, batch, size)) < p).astype(_dtype(dtype))
