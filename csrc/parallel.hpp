// Threads, and the weight-gradient GEMM.
//
// One process-wide thread count drives both OpenMP loops (fused gate passes,
// packed_gemm.hpp) and Eigen's GEMM (weight gradients). Loops split work
// items statically and never split a sum.
#pragma once

#include "common.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace fastrnn {

int num_threads();
void set_num_threads(int n);

// Run f(r) for r in [0, n); in parallel only when the work (in elements) is
// worth a fork: a fork costs microseconds, far more on a busy machine.
template <typename F>
inline void parallel_rows(Index n, Index work_per_row, F&& f) {
#ifdef _OPENMP
    const int nt = num_threads();
    if (nt > 1 && n > 1 && n * work_per_row >= 32768) {
#pragma omp parallel for schedule(static) num_threads(nt)
        for (Index r = 0; r < n; ++r) f(r);
        return;
    }
#endif
    for (Index r = 0; r < n; ++r) f(r);
}

// A team of threads kept for a whole time loop: f(t, nt) runs once on each of
// nt threads, and team_barrier() separates dependent phases of a step. A step
// then costs one barrier instead of a fork and a join; a fork costs several
// microseconds, more than a whole step of a small layer. nt is the team's
// real size, which is 1 when called from inside another parallel region.
template <typename F>
inline void run_team(int threads, F&& f) {
#ifdef _OPENMP
    if (threads > 1) {
#pragma omp parallel num_threads(threads)
        f(omp_get_thread_num(), omp_get_num_threads());
        return;
    }
#endif
    f(0, 1);
}

inline void team_barrier(int nt) {
#ifdef _OPENMP
    if (nt > 1) {
#pragma omp barrier
    }
#else
    (void)nt;
#endif
}

// C(m, n) (=|+=) A(k, m)ᵀ · B(k, n)   (weight gradients: sum over k rows)
template <typename S>
inline void gemm_tn(const S* A, const S* B, S* C, Index m, Index n, Index k, bool accumulate,
                    Index lda = -1) {
    if (m == 0 || n == 0) return;
    using Stride = Eigen::OuterStride<>;
    Eigen::Map<const Mat<S>, 0, Stride> a(A, k, m, Stride(lda < 0 ? m : lda));
    ConstMatMap<S> b(B, k, n);
    Eigen::Map<Mat<S>> c(C, m, n);
    if (accumulate)
        c.noalias() += a.transpose() * b;
    else
        c.noalias() = a.transpose() * b;
}

// out(n) = sum over the k rows of A(k, n).
template <typename S>
inline void column_sum(const S* A, S* out, Index k, Index n) {
    ArrMap<S> o(out, n);
    o.setZero();
    for (Index r = 0; r < k; ++r) o += ConstArrMap<S>(A + r * n, n);
}

}  // namespace fastrnn
