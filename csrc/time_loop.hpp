// The time loops of a layer-direction, run by one team of threads.
//
// The team is started once per loop (per input-projection chunk in
// inference), not once per step, and each thread owns the same share of
// every step (Part), split one of two ways:
//  - by batch rows: each thread runs its rows through the whole loop alone;
//    threads share nothing, so steps need no barrier. Each thread reads all
//    of W_hh every step (from its own cache when it fits).
//  - by hidden units (too few rows to split): each thread computes its
//    units' columns of every gate, then their elementwise pass; a product
//    that reads all units of the phase before it waits at a barrier.
// Neither split divides a sum, and results are bit-identical for every thread
// count (docs/numerics.md): the micro-kernel's summation order does not
// depend on a block's row count (packed_gemm.hpp), so row shares balance
// exactly, and the gate activations give the same bits in SIMD and scalar
// code (activations.hpp), so where a unit share starts does not matter.
//
// Ctrl-C: the calling thread polls for an interrupt between steps and the
// team stops at one step; the loop then throws Interrupted (parallel.hpp).
#pragma once

#include "projection.hpp"

#include <algorithm>
#include <cstdlib>

namespace fastrnn {

// A step must hold this many flops before a second thread is worth a
// barrier (~1 µs between two cores) or a share of the rows.
constexpr Index kTeamWork = Index(1) << 16;
// Rows per thread below which the unit split wins: the micro-kernel works
// on blocks of 6 rows, and with few rows each thread re-reads all of W_hh
// for little work.
constexpr Index kMinRowsPerThread = 6;

// One thread's share of every step: batch rows [r0, r1) (schedule order) ×
// unit panels [j0, j1).
struct Part {
    Index r0, r1, j0, j1;
    int nt;            // team size
    bool units_split;  // steps read data other threads wrote: barriers
    int t = 0;         // this thread's index in the team
    // Active rows of this part at a step with n active rows: [r0, end(n)).
    Index end(Index n) const { return std::clamp(n, r0, r1); }
    void sync() const {
        if (units_split) team_barrier(nt);
    }
};

struct TeamPlan {
    int threads;
    bool by_rows;
};

inline TeamPlan plan_team(const Schedule& sch, Index panels, Index B, Index step_work) {
    const int nt = num_threads();
    if (nt < 2 || step_work < kTeamWork || sch.steps() == 0) return {1, false};
    if (B >= nt * kMinRowsPerThread) return {nt, true};
    if (barrier_teams_contended()) return {1, false};  // busy cores: see BarrierTeamClock
    return {static_cast<int>(std::min<Index>(nt, panels)), false};
}

// Thread t's part. Rows are split so that the threads' summed sequence
// lengths match (rows are sorted longest first): each boundary is the row
// nearest to k/nt of the work.
inline Part make_part(const Schedule& sch, Index B, Index panels, bool by_rows, int t, int nt) {
    if (!by_rows || nt == 1) {
        const Index j0 = panels * t / nt, j1 = panels * (t + 1) / nt;
        return nt == 1 ? Part{0, B, 0, panels, 1, false} : Part{0, B, j0, j1, nt, true, t};
    }
    Index total = 0;
    for (Index r = 0; r < B; ++r) total += sch.length(r);
    auto boundary = [&](int k) {
        if (k == nt) return B;
        Index r = 0, done = 0;  // work in units of 1/nt: row r's end is done + length(r)
        while (r < B && std::abs((done + sch.length(r)) * nt - total * k) < std::abs(done * nt - total * k))
            done += sch.length(r++);
        return r;
    };
    return Part{boundary(t), boundary(t + 1), 0, panels, nt, false, t};
}

// Stopping a team together. Thread 0 may raise the flag only in even
// iterations n (before that iteration's barrier) and every thread reads it
// only at the start of odd ones: a barrier lies between the write and the
// reads, and the next write waits at a barrier for all the reads, so under
// the unit split every thread leaves at the same step (or the barriers would
// no longer pair up). Threads of a row split share no barrier.
inline void poll_stop(StopFlag& stop, int t, Index n) {
    if (t == 0 && n % 2 == 0) stop.poll();
}
inline bool must_stop(const StopFlag& stop, Index n) { return n % 2 == 1 && stop.stopped(); }

// step(s, part) for s = 0 … steps−1 on each thread, with the input
// projection prepared chunk by chunk; the part syncs after every step.
template <typename Proj, typename Step>
void forward_loop(Proj& proj, const Schedule& sch, Index B, Index panels, const TeamPlan& plan,
                  Step&& step) {
    StopFlag stop;
    const BarrierTeamClock clock(plan.threads > 1 && !plan.by_rows);
    for (Index s0 = 0; s0 < sch.steps();) {
        const Index s1 = proj.prepare(s0);
        run_team(plan.threads, [&](int t, int nt) {
            const Part p = make_part(sch, B, panels, plan.by_rows, t, nt);
            for (Index s = s0; s < s1 && !must_stop(stop, s - s0); ++s) {
                step(s, p);
                poll_stop(stop, t, s - s0);
                p.sync();
            }
        });
        stop.throw_if_stopped();
        s0 = s1;
    }
}

// step(s, part) for s = steps−1 … 0 on each thread; every step syncs between
// its elementwise pass and its product (under the unit split).
template <typename Step>
void backward_loop(const Schedule& sch, Index B, Index panels, const TeamPlan& plan, Step&& step) {
    StopFlag stop;
    const BarrierTeamClock clock(plan.threads > 1 && !plan.by_rows);
    run_team(plan.threads, [&](int t, int nt) {
        const Part p = make_part(sch, B, panels, plan.by_rows, t, nt);
        for (Index n = 0, s = sch.steps() - 1; s >= 0 && !must_stop(stop, n); --s, ++n) {
            poll_stop(stop, t, n);
            step(s, p);
        }
    });
    stop.throw_if_stopped();
}

// Zeroes units [u, u + len) of the G gate blocks (H apart) of rows [r0, r1):
// rows that have ended get defined values for the weight-gradient GEMMs.
template <typename S>
inline void zero_rows(S* a, Index r0, Index r1, Index stride, Index G, Index H, Index u, Index len) {
    for (Index r = r0; r < r1; ++r)
        for (Index k = 0; k < G; ++k) std::fill_n(a + r * stride + k * H + u, len, S(0));
}

}  // namespace fastrnn
