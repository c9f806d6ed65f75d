// The toolkit's Dense layer (python/fastrnn/nn.py) on fastrnn's own pool, so
// a training step runs every GEMM on one set of threads: NumPy's BLAS would
// start a pool of its own, whose workers spin after each matmul and take the
// core the next recurrent kernel needs. Bit-identical for every thread count,
// like the kernels (parallel.hpp).
#pragma once

#include "grad_gemm.hpp"
#include "packed_gemm.hpp"

namespace fastrnn {

// y(N, O) = x(N, I) · Wᵀ (+ b); w (O, I), b (O) or null.
template <typename S>
void dense_forward(const S* x, const S* w, const S* b, S* y, Index N, Index I, Index O) {
    PackedMatrix<S> wp;
    wp.pack(w, 1, O, I, I, false);
    if (b)
        for (Index r = 0; r < N; ++r) std::copy_n(b, O, y + r * O);
    packed_gemm(x, I, N, wp, y, O, b != nullptr);
}

// dw(O, I) = dyᵀ · x, db(O) = Σ rows of dy (db may be null), dx(N, I) = dy · W.
template <typename S>
void dense_backward(const S* x, const S* w, const S* dy, S* dw, S* db, S* dx, Index N, Index I, Index O) {
    gemm_tn(dy, x, dw, O, I, N, false, O, db);
    PackedMatrix<S> wt;  // W's columns as panels: dx = dy · (Wᵀ)ᵀ
    wt.pack(w, 1, I, O, I, true);
    packed_gemm(dy, O, N, wt, dx, I, false);
}

}  // namespace fastrnn
