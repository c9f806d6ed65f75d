// The training toolkit's optimiser arithmetic (python/fastrnn/optim.py) in
// one pass over each array, on fastrnn's pool: NumPy's version makes a dozen
// passes and temporaries per parameter, a few percent of a training step.
// Element-wise work split by elements, and a sum in fixed chunks added in
// order: bit-identical for every thread count.
#pragma once

#include "parallel.hpp"

#include <cmath>
#include <vector>

namespace fastrnn {

// One chunk of Adam's step, a plain loop that GCC vectorises (with alias
// checks). The module is built with -fno-math-errno, so std::sqrt is the IEEE
// square root in SIMD and scalar code alike and the bits do not depend on
// where the arrays' SIMD head and tail fall. (Eigen's AVX-512 sqrt is a
// Newton step on rsqrt14 under EIGEN_FAST_MATH: another rounding.)
template <typename S>
void adam_chunk(S* p, const S* g, S* m, S* v, Index len, S b1, S c1, S b2, S c2, S bc2, S eps, S step) {
    for (Index i = 0; i < len; ++i) {
        const S mi = m[i] * b1 + c1 * g[i];
        const S vi = v[i] * b2 + c2 * (g[i] * g[i]);
        m[i] = mi, v[i] = vi;
        p[i] -= step * mi / (std::sqrt(vi / bc2) + eps);
    }
}

// Adam's step t for n elements, NumPy's operations in NumPy's order (so the
// same bits as optim.py's fallback): m ← m·b1 + (1−b1)·g, v ← v·b2 + (1−b2)·g²,
// p ← p − (lr/(1−b1ᵗ))·m / (√(v/(1−b2ᵗ)) + eps), each factor rounded to S first.
template <typename S>
void adam_update(S* p, const S* g, S* m, S* v, Index n, S b1, S c1, S b2, S c2, S bc2, S eps, S step) {
    constexpr Index kChunk = 4096;
    parallel_rows((n + kChunk - 1) / kChunk, kChunk, [&](Index c) {
        const Index i = c * kChunk;
        adam_chunk(p + i, g + i, m + i, v + i, std::min(kChunk, n - i), b1, c1, b2, c2, bc2, eps, step);
    });
}

// Σ a[i]² in double (clipping's global norm): in each chunk, eight partial
// sums of every eighth element (independent chains, vectorisable), added
// pairwise; then the chunks' sums in order.
template <typename S>
double sum_squares(const S* a, Index n) {
    constexpr Index kChunk = 4096;
    const Index chunks = (n + kChunk - 1) / kChunk;
    std::vector<double> part(chunks);
    parallel_rows(chunks, kChunk, [&](Index c) {
        double acc[8] = {};
        Index i = c * kChunk;
        const Index e = std::min(n, i + kChunk);
        for (; i + 8 <= e; i += 8)
            for (int j = 0; j < 8; ++j) acc[j] += double(a[i + j]) * double(a[i + j]);
        for (int j = 0; i < e; ++i, ++j) acc[j] += double(a[i]) * double(a[i]);
        part[c] = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    });
    double s = 0;
    for (double x : part) s += x;
    return s;
}

}  // namespace fastrnn
