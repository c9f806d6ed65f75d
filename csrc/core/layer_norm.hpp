// Layer normalisation of one row (haste's LayerNorm LSTM/GRU; docs/variants.md):
//   x̂ = (v − mean v) · rstd,  rstd = 1 / sqrt(var v + eps)   (biased variance, eps 1e-5)
//   y = γ ⊙ x̂ (+ β)
// Forward keeps x̂ and rstd; backward uses them:
//   g = dy ⊙ γ    dv = rstd · (g − mean g − x̂ · mean(g ⊙ x̂))    dγ = Σ dy ⊙ x̂, dβ = Σ dy
// (the gain and shift gradients are sums over rows, taken by the caller).
#pragma once

#include "../common.hpp"

#include <cmath>

namespace fastrnn {

constexpr double kLayerNormEps = 1e-5;  // haste's and PyTorch's

// v (n) ← x̂ in place; returns rstd.
template <typename S>
S layer_norm_row(S* v, Index n) {
    ArrMap<S> a(v, n);
    a -= a.mean();
    const S rstd = S(1) / std::sqrt(a.square().mean() + S(kLayerNormEps));
    a *= rstd;
    return rstd;
}

// dv (n) = the gradient w.r.t. v of y = γ ⊙ x̂(v) given dy; dv may alias dy.
template <typename S>
void layer_norm_row_backward(const S* dy, const S* gain, const S* xhat, S rstd, S* dv, Index n) {
    ConstArrMap<S> x(xhat, n);
    const auto g = ConstArrMap<S>(dy, n) * ConstArrMap<S>(gain, n);
    const S mg = g.mean(), mgx = (g * x).mean();
    ArrMap<S>(dv, n) = rstd * (ConstArrMap<S>(dy, n) * ConstArrMap<S>(gain, n) - mg - x * mgx);
}

}  // namespace fastrnn
