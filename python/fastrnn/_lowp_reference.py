"""NumPy model of the low-precision GEMMs (csrc/precision/, docs/precision.md).

The tests hold the compiled paths to it: the int8 model reproduces the
quantisation and the integer sums exactly; the bf16 model rounds operands the
same way and sums in fp32 in the scalar path's order.
"""
import numpy as np


def to_bf16(x):
    """float32 -> the nearest bfloat16 (ties to even), returned as float32;
    NaN stays NaN."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    b = x.view(np.uint32).astype(np.uint64)
    r = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16 << 16).astype(np.uint32)
    return np.where(np.isnan(x), x, r.view(np.float32))


def bf16_gemm(a, w):
    """a (m, K) · w (N, K)ᵀ with both rounded to bf16 and fp32 sums, for every
    output in the order acc += a[2q+1]·w[2q+1]; acc += a[2q]·w[2q] (q
    ascending), the order of vdpbf16ps; products of two bf16 are exact in
    fp32, so each step rounds once."""
    a, w = to_bf16(a), to_bf16(w)
    K = a.shape[1]
    acc = np.zeros((a.shape[0], w.shape[0]), np.float32)
    for q in range(0, K, 2):
        for k in (q + 1, q):
            if k < K:
                acc += a[:, k, None] * w[None, :, k]
    return acc


def quantise(x):
    """Each row of x as symmetric s8: (q int8, scale float32) with scale =
    max|row| / 127 and q = clip(rint(x / scale), -127, 127); an all-zero row
    has scale 0, a row with NaN/Inf scale NaN, and both q = 0."""
    x = np.asarray(x, np.float32)
    finite = np.isfinite(x).all(axis=1)
    amax = np.abs(np.where(np.isfinite(x), x, 0)).max(axis=1).astype(np.float32)
    scale = np.where(finite, amax / np.float32(127), np.float32(np.nan)).astype(np.float32)
    ok = (finite & (amax > 0))[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(ok, np.clip(np.rint(x / scale[:, None]), -127, 127), 0)
    return q.astype(np.int8), scale


def quantise_terms(x, terms=1):
    """[(q, scale)] per term: term 0 is quantise(x); term 1 (terms=2) quantises
    the residual x - scale·q, in float32 as the C++ computes it."""
    x = np.asarray(x, np.float32)
    out = [quantise(x)]
    if terms == 2:
        q, s = out[0]
        with np.errstate(invalid="ignore"):
            out.append(quantise(x - s[:, None] * q.astype(np.float32)))
    return out


def int8_accumulate(a, w):
    """The s32 sums Σ_k q_a[i, k]·q_w[n, k], exactly (int64 here)."""
    qa, _ = quantise(a)
    qw, _ = quantise(w)
    return qa.astype(np.int64) @ qw.astype(np.int64).T


def int8_gemm(a, w, terms=1):
    """Dequantised fp32 output: float32(acc) · (scale_a[i] · scale_w[n]), summed
    over the activation terms in order (term 1 added onto term 0)."""
    qw, sw = quantise(w)
    out = None
    for qa, sa in quantise_terms(a, terms):
        acc = (qa.astype(np.int64) @ qw.astype(np.int64).T).astype(np.float32)
        c = acc * (sa[:, None] * sw[None, :])
        out = c if out is None else c + out
    return out
