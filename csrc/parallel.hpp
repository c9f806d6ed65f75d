// Threads, interruption, and the weight-gradient GEMM.
//
// fastrnn runs its parallel work on a pool of its own (threads.cpp), not on
// OpenMP: GNU OpenMP's workers do not exist in a forked child, which then
// hangs on its first parallel region; the pool re-creates itself there. One
// process-wide thread count (set_num_threads) sizes every team. Eigen is
// built single-threaded (EIGEN_DONT_PARALLELIZE); its GEMMs run in the pool
// on fixed output tiles.
//
// Determinism: every parallel loop here splits work items whose results do
// not depend on which thread computes them, and never splits a sum, so
// results are bit-identical for every thread count (docs/numerics.md).
#pragma once

#include "common.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <type_traits>

namespace fastrnn {

int num_threads();
void set_num_threads(int n);

// The pool (threads.cpp): fn(ctx, t, nt) runs once on each of nt threads; the
// calling thread is t = 0. A call made while the pool is busy (another Python
// thread's kernel) or from inside a team runs alone, with nt = 1.
using TeamFn = void (*)(void* ctx, int t, int nt);
void run_team_impl(int threads, TeamFn fn, void* ctx);
void team_barrier_impl();

// A team of threads kept for a whole time loop: f(t, nt) runs once on each of
// nt threads, and team_barrier() separates dependent phases of a step. A step
// then costs one barrier instead of a fork and a join. nt is the team's real
// size, which may be less than asked (1 when the pool is busy).
template <typename F>
inline void run_team(int threads, F&& f) {
    if (threads > 1) {
        using Fn = std::remove_reference_t<F>;
        run_team_impl(threads, [](void* c, int t, int nt) { (*static_cast<Fn*>(c))(t, nt); },
                      const_cast<void*>(static_cast<const void*>(&f)));
        return;
    }
    f(0, 1);
}

inline void team_barrier(int nt) {
    if (nt > 1) team_barrier_impl();
}

// Run f(r) for r in [0, n), split statically over the pool when the work (in
// elements) is worth waking it.
template <typename F>
inline void parallel_rows(Index n, Index work_per_row, F&& f) {
    const int nt = num_threads();
    if (nt > 1 && n > 1 && n * work_per_row >= 32768) {
        run_team(static_cast<int>(std::min<Index>(nt, n)), [&](int t, int k) {
            for (Index r = n * t / k, e = n * (t + 1) / k; r < e; ++r) f(r);
        });
        return;
    }
    for (Index r = 0; r < n; ++r) f(r);
}

// Ctrl-C. bindings.cpp installs a hook that takes the GIL and runs Python's
// signal handlers (main thread only); it returns true when one raised, the
// Python error then being set. Kernels throw Interrupted, which the bindings
// turn into that error.
struct Interrupted : std::exception {
    const char* what() const noexcept override { return "fastrnn: interrupted"; }
};
void set_interrupt_hook(bool (*hook)());
bool interrupt_requested();  // calls the hook; only on the thread that started the call

// Whether a call should stop: polled by the calling thread (at most every
// 25 ms by the clock, so the hook's GIL round trip costs nothing), read by
// every thread of a team.
class StopFlag {
public:
    void poll() {
        const auto now = std::chrono::steady_clock::now();
        if (now < next_) return;
        next_ = now + std::chrono::milliseconds(25);
        if (interrupt_requested()) stop_.store(true, std::memory_order_release);
    }
    bool stopped() const { return stop_.load(std::memory_order_acquire); }
    void throw_if_stopped() const {
        if (stopped()) throw Interrupted();
    }

private:
    std::atomic<bool> stop_{false};
    std::chrono::steady_clock::time_point next_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(25);
};

// The weight-gradient GEMM is cut into strips of output rows or columns
// (along the longer side), as many as the shape asks for (one per
// kStripWidth, at most kMaxStrips), never as many as there are threads: each
// strip is one single-threaded Eigen GEMM over the full k range, so every
// element's sum has one order whatever the thread count. A strip re-packs the
// whole other operand, an overhead of about one element copied per
// 2·kStripWidth flops: 128 × 128 tiles cost 15% on the largest grid row.
constexpr Index kMaxStrips = 8, kStripWidth = 256;

// C(m, n) (=|+=) A(k, m)ᵀ · B(k, n)   (weight gradients: sum over k rows)
template <typename S>
inline void gemm_tn(const S* A, const S* B, S* C, Index m, Index n, Index k, bool accumulate,
                    Index lda = -1) {
    if (m == 0 || n == 0) return;
    using Stride = Eigen::OuterStride<>;
    const Index ld = lda < 0 ? m : lda;
    const bool by_rows = m >= n;
    const Index side = by_rows ? m : n;
    const Index strips = std::clamp<Index>(side / kStripWidth, 1, kMaxStrips);
    const Index width = (side + strips - 1) / strips;
    auto strip = [&](Index i) {
        const Index o = i * width, len = std::min(width, side - o);
        if (len <= 0) return;
        const Index rows = by_rows ? len : m, cols = by_rows ? n : len;
        Eigen::Map<const Mat<S>, 0, Stride> a(A + (by_rows ? o : 0), k, rows, Stride(ld));
        Eigen::Map<const Mat<S>, 0, Stride> b(B + (by_rows ? 0 : o), k, cols, Stride(n));
        Eigen::Map<Mat<S>, 0, Stride> c(C + (by_rows ? o * n : o), rows, cols, Stride(n));
        if (accumulate)
            c.noalias() += a.transpose() * b;
        else
            c.noalias() = a.transpose() * b;
    };
    parallel_rows(strips, width * (by_rows ? n : m) * std::max<Index>(k, 1) / 8, strip);
}

// out(n) = sum over the k rows of A(k, n), row by row in order.
template <typename S>
inline void column_sum(const S* A, S* out, Index k, Index n) {
    ArrMap<S> o(out, n);
    o.setZero();
    for (Index r = 0; r < k; ++r) o += ConstArrMap<S>(A + r * n, n);
}

}  // namespace fastrnn
