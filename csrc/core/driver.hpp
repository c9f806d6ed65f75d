// The time loops of every cell: one forward and one backward driver,
// templates over a cell policy (core/cell.hpp).
//
// The drivers own everything that is not the cell's own arithmetic: the
// input projection (one GEMM over many steps), the packed weights, the
// schedule (sorted rows, lengths, reverse), state storage (the training
// cache or two alternating slots), the thread team (time_loop.hpp), zeroing
// of rows that have ended, the final states, and the backward tail
// (dh0, dW_hh, the bias sums and the input side's gradients).
// A cell's step sees its thread's part of one step through ForwardStep /
// BackwardStep: the states, the step's pre-activation blocks, its scratch,
// and product() to run its recurrent products on the part.
#pragma once

#include "../time_loop.hpp"
#include "cell.hpp"

#include <array>
#include <vector>

namespace fastrnn {

template <typename S>
using States = std::array<S, 2>;  // (h, c); c unused by one-state cells

// One layer-direction's weights ready for the forward pass: W_ih and the
// cell's recurrent products packed for this CPU in weight format W
// (core/weights.hpp: the layer's dtype, bf16 or int8), the biases folded,
// the rest copied. Made per call (functional API) or once (inference
// engine); it owns copies, so the caller's arrays may change afterwards.
template <typename S, typename Cell, typename W = NativeFormat<S>>
struct PackedLayer {
    static constexpr std::size_t kProducts = Cell::kProducts.size();
    using Matrix = typename W::Matrix;
    Matrix w_ih;                         // (G·H, I)
    std::array<Matrix, kProducts> w_hh;  // Cell::kProducts' gate rows of W_hh
    Buffer<S> bias;      // (G·H): b_ih + b_hh on the first Cell::kFolded gates, b_ih beyond
    Buffer<S> b_hh;      // (G·H)
    Buffer<S> peephole;  // (3, H), empty without peepholes

    PackedLayer(const Weights<S>& w, Index I, Index H, const typename W::Config& cfg = {}) {
        const Index GH = Cell::kGates * H;
        W::pack(w_ih, cfg, w.w_ih, 1, GH, I, "w_ih");
        for (std::size_t k = 0; k < kProducts; ++k) {
            const Product p = Cell::kProducts[k];
            W::pack(w_hh[k], cfg, w.w_hh + p.gate0 * H * H, p.gates, H, H, "w_hh");
        }
        bias.assign(w.b_ih, w.b_ih + GH);
        ArrMap<S>(bias.data(), Cell::kFolded * H) += ConstArrMap<S>(w.b_hh, Cell::kFolded * H);
        b_hh.assign(w.b_hh, w.b_hh + GH);
        if (w.peephole) peephole.assign(w.peephole, w.peephole + 3 * H);
    }
    const S* peep() const { return peephole.empty() ? nullptr : peephole.data(); }
};

// One thread's part of forward step s, as a cell sees it.
template <typename S, typename Cell, typename W>
struct ForwardStep {
    const PackedLayer<S, Cell, W>& w;
    const Part& p;
    const Schedule& sch;
    const Cache<S>& cache;   // null fields in inference
    Index s, re;             // step; this part's running rows are [p.r0, re)
    Index u, len;            // this part's units [u, u + len)
    Index B, H;
    States<const S*> prev;   // states before the step, (B, H)
    States<S*> next;         // states after the step, (B, H)
    S* gx;                   // input projection (B, G·H); training: the cache's gates
    S* gh;                   // (B, G·H) for the recurrent products
    S* scratch;              // Cell::forward_scratch values
    S* out;                  // the layer output (T, B, H)
    typename W::Rows& rows;  // this thread's activations in W's format

    bool train() const { return cache.hs != nullptr; }
    Index r0() const { return p.r0; }
    const S* bias() const { return w.bias.data(); }
    // C (=|+=) A · Wₖᵀ on this part: rows [r0, re) of A (row stride lda) and C
    // (row stride ldc), the columns of this part's units of product k's gates.
    // A low-precision format prepares (rounds or quantises) those rows of A
    // here, on each thread for itself: no second barrier per step.
    void product(std::size_t k, const S* A, Index lda, S* C, Index ldc, bool accumulate) const {
        W::gemm_units(rows, A + p.r0 * lda, lda, re - p.r0, w.w_hh[k], p.j0, p.j1, C + p.r0 * ldc, ldc,
                      accumulate);
    }
    void sync() const { p.sync(); }
    // f(r) for each running row r, then row r's output (new h, units [u, u + len)).
    template <typename F>
    void each_row(F&& f) const {
        for (Index r = p.r0; r < re; ++r) {
            f(r);
            write_output(sch, s, r, next[0] + r * H + u, out + u, B, H, len);
        }
    }
};

// x (T, B, I) through one layer-direction: out (T, B, H), final states s_n
// (B, H); training fills the cache (Cache fields non-null).
template <typename S, typename Cell, typename W>
void forward(const Dims& d, const S* x, const PackedLayer<S, Cell, W>& w, const States<const S*>& s0,
             const Schedule& sch, S* out, const States<S*>& s_n, const Cache<S>& cache) {
    constexpr int NS = Cell::kStates;
    const Index B = d.B, H = d.H, GH = Cell::kGates * H;
    const bool train = cache.hs != nullptr;
    InputProjection<S, W> proj(d, x, w.w_ih, GH, sch, train ? Cell::projection(cache, B, H) : nullptr);
    const StateSlots slots{train};
    Buffer<S> gh(B * GH), scratch(Cell::forward_scratch(B, H, train)), slot_buf(train ? 0 : NS * 2 * B * H);
    States<S*> st{};
    for (int k = 0; k < NS; ++k) {
        st[k] = train ? cache.state(k) : slot_buf.data() + k * 2 * B * H;
        sch.gather(s0[k], st[k], H);
    }
    const Index P = w.w_hh[0].per_group();
    const TeamPlan plan = plan_team(sch, P, B, 2 * B * H * GH);
    std::vector<typename W::Rows> rows(plan.threads);  // per thread, reused by every step
    forward_loop(proj, sch, B, P, plan, [&](Index s, const Part& p) {
        const auto [u, len] = W::units(p.j0, p.j1, H);
        ForwardStep<S, Cell, W> step{w, p, sch, cache, s, p.end(sch.active(s)), u, len, B, H, {}, {},
                                  proj.at(s), gh.data(), scratch.data(), out, rows[p.t]};
        for (int k = 0; k < NS; ++k) {
            step.prev[k] = st[k] + slots.slot(s) * B * H;
            step.next[k] = st[k] + slots.slot(s + 1) * B * H;
        }
        Cell::forward(step);
        if (train)  // rows that have ended: defined values for the dW_hh GEMM
            for (int k = 0; k < NS; ++k) zero_rows(step.next[k], step.re, p.r1, H, 1, H, u, len);
    });
    for (Index r = 0; r < B; ++r) {
        const Index at = slots.slot(sch.length(r)) * B * H + r * H;
        for (int k = 0; k < NS; ++k) std::copy_n(st[k] + at, H, s_n[k] + sch.row(r) * H);
    }
}

// One thread's part of backward step s, as a cell sees it.
template <typename S, typename Cell>
struct BackwardStep {
    const std::array<PackedMatrix<S>, Cell::kProducts.size()>& wt;  // transposed products
    const Part& p;
    const Schedule& sch;
    const Cache<S>& cache;
    Index s, re, u, len, B, H;  // as ForwardStep
    States<const S*> prev;      // cached states before the step, (B, H)
    States<const S*> next;      // cached states after the step
    const S* gates;             // cached gates of the step (B, G·H)
    const S* peephole;          // (3, H) or null
    S* dG;                      // (B, G·H) pre-activation gradients; ended rows are zero
    States<S*> dstate;          // in: d(states after the step); out: d(states before it)
    S* scratch;                 // Cell::backward_scratch values
    const S* d_out;             // (T, B, H)

    Index r0() const { return p.r0; }
    // C (=|+=) A · Wₖ on this part (W_hh's rows of product k's gates, transposed).
    void product(std::size_t k, const S* A, Index lda, S* C, Index ldc, bool accumulate) const {
        packed_gemm_units(A + p.r0 * lda, lda, re - p.r0, wt[k], p.j0, p.j1, C + p.r0 * ldc, ldc, accumulate);
    }
    void sync() const { p.sync(); }
    // For each running row r: dh += d_out (this step's output), then f(r).
    template <typename F>
    void each_row(F&& f) const {
        for (Index r = p.r0; r < re; ++r) {
            ArrMap<S>(dstate[0] + r * H + u, len) += ConstArrMap<S>(read_output(sch, s, r, d_out, B, H) + u, len);
            f(r);
        }
    }
    // Zeroes this part's units of the G blocks of the ended rows of a.
    void zero_ended(S* a, Index stride, Index G) const { zero_rows(a, re, p.r1, stride, G, H, u, len); }
};

// BPTT through one layer-direction from its training cache; d_n: gradients
// w.r.t. the final states (B, H). Writes every pointer of g the cell has.
template <typename S, typename Cell>
void backward(const Dims& d, const S* x, const Weights<S>& w, const Schedule& sch, const Cache<S>& cache,
              const S* d_out, const States<const S*>& d_n, const Grads<S>& g) {
    constexpr int NS = Cell::kStates;
    constexpr std::size_t NP = Cell::kProducts.size();
    const Index B = d.B, H = d.H, GH = Cell::kGates * H, steps = sch.steps(), rows = steps * B;
    // dG: every row is written (ended rows zeroed).
    Buffer<S> dG(rows * GH), dst(NS * B * H), scratch(Cell::backward_scratch(B, H, steps));
    std::array<PackedMatrix<S>, NP> wt;  // d(input of product k) = dG[gates of k] · W_hh[those rows]
    for (std::size_t k = 0; k < NP; ++k) {
        const Product pr = Cell::kProducts[k];
        wt[k].pack(w.w_hh + pr.gate0 * H * H, 1, H, pr.gates * H, H, true);
    }
    States<S*> ds{};
    for (int k = 0; k < NS; ++k) {
        ds[k] = dst.data() + k * B * H;
        sch.gather(d_n[k], ds[k], H);
    }
    const Index P = wt[0].per_group();
    backward_loop(sch, B, P, plan_team(sch, P, B, 2 * B * GH * H), [&](Index s, const Part& p) {
        const auto [u, len] = unit_range<S>(p.j0, p.j1, H);
        BackwardStep<S, Cell> step{wt, p, sch, cache, s, p.end(sch.active(s)), u, len, B, H, {}, {},
                                   cache.gates ? cache.gates + s * B * GH : nullptr, w.peephole,
                                   dG.data() + s * B * GH, ds, scratch.data(), d_out};
        for (int k = 0; k < NS; ++k) {
            step.prev[k] = cache.state(k) + s * B * H;
            step.next[k] = step.prev[k] + B * H;
        }
        step.zero_ended(step.dG, GH, Cell::kGates);
        Cell::backward(step);
    });
    for (int k = 0; k < NS; ++k) sch.scatter(ds[k], g.dstate0(k), H);
    Buffer<S> tmp;
    for (std::size_t k = 0; k < NP; ++k) {
        const Product pr = Cell::kProducts[k];
        gemm_tn(dG.data() + pr.gate0 * H, Cell::product_input(k, cache, rows, H, tmp), g.dw_hh + pr.gate0 * H * H,
                pr.gates * H, H, rows, false, GH);
    }
    column_sum(dG.data(), g.db_hh, rows, GH);
    std::size_t i = 0;
    for (const InputGrad<S>& in : Cell::input_grads(dG.data(), scratch.data(), H, GH)) {
        input_backward(d, x, w.w_ih, sch, in.dg, in.ld, in.g0, in.cols, g.dw_ih, g.dx, i++ > 0);
        if (in.dg == dG.data() + in.g0)  // b_ih sees what b_hh sees
            std::copy_n(g.db_hh + in.g0, in.cols, g.db_ih + in.g0);
        else
            column_sum(in.dg, g.db_ih + in.g0, rows, in.cols);
    }
    Cell::extra_grads(dG.data(), cache, w.peephole, rows, B, H, g);
}

}  // namespace fastrnn
