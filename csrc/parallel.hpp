// Threads and interruption.
//
// fastrnn runs its parallel work on a pool of its own (threads.cpp), not on
// OpenMP: GNU OpenMP's workers do not exist in a forked child, which then
// hangs on its first parallel region; the pool re-creates itself there. One
// process-wide thread count (set_num_threads) sizes every team. Eigen is
// built single-threaded (EIGEN_DONT_PARALLELIZE); the weight-gradient GEMMs
// are fastrnn's own (grad_gemm.hpp).
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

// Oversubscribed cores. A team that meets at a barrier every step (the unit
// split) stalls at every step one of its members is descheduled, so when the
// cores are busy with other processes it runs many times slower than one
// thread. Such a team's calling thread times it (BarrierTeamClock); when the
// calling threads were on the CPU for less than 2/3 of the wall time of the
// last 20 ms of such teams, barrier teams run as one thread for the next
// second, then are tried again. Results do not depend on the thread count, so
// this changes no bits.
bool barrier_teams_contended();
void report_barrier_team(double wall_seconds, double cpu_seconds);

class BarrierTeamClock {
public:
    explicit BarrierTeamClock(bool timed) : timed_(timed) {
        if (timed_) wall0_ = std::chrono::steady_clock::now(), cpu0_ = thread_cpu_seconds();
    }
    ~BarrierTeamClock() {
        if (timed_)
            report_barrier_team(std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0_).count(),
                                thread_cpu_seconds() - cpu0_);
    }
    BarrierTeamClock(const BarrierTeamClock&) = delete;
    BarrierTeamClock& operator=(const BarrierTeamClock&) = delete;

private:
    static double thread_cpu_seconds();
    bool timed_;
    std::chrono::steady_clock::time_point wall0_;
    double cpu0_ = 0;
};

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

}  // namespace fastrnn
