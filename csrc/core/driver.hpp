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
#include "layer_norm.hpp"

#include <array>
#include <vector>

namespace fastrnn {

template <typename S>
using States = std::array<S, 2>;  // (h, c); c unused by one-state cells

// One layer-direction's weights ready for the forward pass: W_ih and the
// cell's recurrent products packed for this CPU in weight format W
// (core/weights.hpp: the layer's dtype, bf16 or int8), the biases folded,
// the rest copied. With an LSTM projection (Weights::w_hr), W_hh is
// (G·H, P) and W_hr (P, H) is packed too. Made per call (functional API) or once (inference
// engine); it owns copies, so the caller's arrays may change afterwards.
template <typename S, typename Cell, typename W = NativeFormat<S>>
struct PackedLayer {
    static constexpr std::size_t kProducts = Cell::kProducts.size();
    using Matrix = typename W::Matrix;
    Matrix w_ih;                         // (G·H, I)
    std::array<Matrix, kProducts> w_hh;  // Cell::kProducts' gate rows of W_hh
    Matrix w_hr;                         // (P, H) projection; empty without one
    bool projects;                       // an LSTM projection: h = m·W_hrᵀ
    Index R;                             // width of h: P with a projection, else H
    Buffer<S> bias;      // (G·H): b_ih + b_hh on the first Cell::kFolded gates, b_ih beyond
    Buffer<S> b_hh;      // (G·H)
    Buffer<S> peephole;  // (3, H), empty without peepholes
    Options<S> opt;      // activations, leak, zoneout (its masks are the caller's)

    PackedLayer(const Weights<S>& w, Index I, Index H, const Options<S>& o = {},
                const typename W::Config& cfg = {})
        : projects(w.w_hr != nullptr), R(w.R(H)), opt(o) {
        const Index GH = Cell::kGates * H;
        W::pack(w_ih, cfg, w.w_ih, 1, GH, I, "w_ih");
        for (std::size_t k = 0; k < kProducts; ++k) {
            const Product p = Cell::kProducts[k];
            W::pack(w_hh[k], cfg, w.w_hh + p.gate0 * H * R, p.gates, H, R, "w_hh");
        }
        if (projects) W::pack(w_hr, cfg, w.w_hr, 1, R, H, "w_hr");
        bias.assign(w.b_ih, w.b_ih + GH);
        ArrMap<S>(bias.data(), Cell::kFolded * H) += ConstArrMap<S>(w.b_hh, Cell::kFolded * H);
        b_hh.assign(w.b_hh, w.b_hh + GH);
        if (w.peephole) peephole.assign(w.peephole, w.peephole + 3 * H);
    }
    const S* peep() const { return peephole.empty() ? nullptr : peephole.data(); }
};

// Row r's entries of step s of a zoneout mask (T, B, H) at unit u, or null
// where state k has none (the probability p applies).
template <typename S>
const S* zoneout_row(const Options<S>& o, int k, const Schedule& sch, Index s, Index r, Index B, Index H, Index u) {
    return o.zmask[k] ? read_output(sch, s, r, o.zmask[k], B, H) + u : nullptr;
}

// f(1 − keep) of Options, the share of the cell's new value (1 − z)·α, as an
// array expression of len units.
template <typename S, typename F>
void with_new_share(const Options<S>& o, int k, const S* z, Index len, F&& f) {
    const S a = k == 0 ? o.leak : S(1);
    if (z)
        f((S(1) - ConstArrMap<S>(z, len)) * a);
    else
        f(Eigen::Array<S, Eigen::Dynamic, 1>::Constant(len, (S(1) - o.zoneout) * a));
}

// Units [u, …) of gate g's recurrent mask for row r (schedule order).
template <typename S>
const S* mask_row(const Options<S>& o, Index g, const Schedule& sch, Index r, Index B, Index H, Index u) {
    return o.rmask + (g * B + sch.row(r)) * H + u;
}

// The thread team of a loop; layer norm reduces over whole rows and a
// projection reads every unit of m, so both (whole_rows) take the row split
// (or one thread) where the unit split would be chosen.
inline TeamPlan plan_for(const Schedule& sch, Index panels, Index B, Index step_work, bool whole_rows) {
    TeamPlan plan = plan_team(sch, panels, B, step_work);
    if (whole_rows && plan.threads > 1 && !plan.by_rows) plan = {static_cast<int>(std::min<Index>(plan.threads, B)), true};
    return plan;
}

// One thread's part of forward step s, as a cell sees it.
template <typename S, typename Cell, typename W>
struct ForwardStep {
    const PackedLayer<S, Cell, W>& w;
    const Part& p;
    const Schedule& sch;
    const Cache<S>& cache;   // null fields in inference
    Index s, re;             // step; this part's running rows are [p.r0, re)
    Index u, len;            // this part's units [u, u + len)
    Index B, H, R;           // R: width of h (P with a projection, else H)
    States<const S*> prev;   // states before the step: h (B, R), c (B, H)
    States<S*> next;         // states after the step
    S* gx;                   // input projection (B, G·H); training: the cache's gates
    S* gh;                   // (B, G·H) for the recurrent products
    S* scratch;              // Cell::forward_scratch values
    S* out;                  // the layer output (T, B, H)
    S* masked;               // recurrent mask: (G, B, H) each gate's masked input
    S* m;                    // projection: (B, H) the cell's o⊙act(c') before W_hr; else null
    typename W::Rows& rows;  // this thread's activations in W's format

    bool train() const { return cache.hs != nullptr; }
    Index r0() const { return p.r0; }
    const S* bias() const { return w.bias.data(); }
    // C (=|+=) A · Wₖᵀ on this part: rows [r0, re) of A (row stride lda) and C
    // (row stride ldc), the columns of this part's units of product k's gates.
    // With a recurrent mask, gate g of the product multiplies A ⊙ m_g.
    // With layer_norm (one product over all gates; whole rows: the row split),
    // both terms of each row are then normalised: gx ← γ_x ⊙ LN(gx), C ← γ_h ⊙ LN(C).
    // A low-precision format prepares (rounds or quantises) those rows of A
    // here, on each thread for itself: no second barrier per step.
    void product(std::size_t k, const S* A, Index lda, S* C, Index ldc, bool accumulate) const {
        if (!w.opt.rmask) {
            W::gemm_units(rows, A + p.r0 * lda, lda, re - p.r0, w.w_hh[k], p.j0, p.j1, C + p.r0 * ldc, ldc,
                          accumulate);
        } else if constexpr (std::is_same_v<W, NativeFormat<S>>) {  // variants: native format only
            const Product pr = Cell::kProducts[k];
            for (Index g = 0; g < pr.gates; ++g)
                for (Index r = p.r0; r < re; ++r)
                    ArrMap<S>(masked + (g * B + r) * H + u, len) =
                        ConstArrMap<S>(A + r * lda + u, len) *
                        ConstArrMap<S>(mask_row(w.opt, pr.gate0 + g, sch, r, B, H, u), len);
            sync();  // each gate's product reads every unit of its masked input
            for (Index g = 0; g < pr.gates; ++g)
                packed_gemm_units(masked + (g * B + p.r0) * H, H, re - p.r0, w.w_hh[k], p.j0, p.j1,
                                  C + p.r0 * ldc, ldc, accumulate, g, g + 1);
        }
        if (w.opt.ln_gain) normalize_terms(C, ldc);
    }
    void normalize_terms(S* C, Index ldc) const {
        const Index GH = Cell::kGates * H;
        for (Index r = p.r0; r < re; ++r) {
            S *sx = gx + r * GH, *sh = C + r * ldc;
            const S rx = layer_norm_row(sx, GH), rh = layer_norm_row(sh, GH);
            if (train()) {
                const Index at = s * B + r;
                std::copy_n(sx, GH, cache.lnx + at * GH);
                std::copy_n(sh, GH, cache.lnh + at * GH);
                cache.rstd[at * 3] = rx, cache.rstd[at * 3 + 1] = rh;
            }
            ArrMap<S>(sx, GH) *= ConstArrMap<S>(w.opt.ln_gain, GH);
            ArrMap<S>(sh, GH) *= ConstArrMap<S>(w.opt.ln_gain + GH, GH);
        }
    }
    void sync() const { p.sync(); }
    // Where the cell's pass writes row r's o⊙act(c') (units from u): m with a
    // projection, else the new h.
    S* h_cell(Index r) const { return (m ? m + r * H : next[0] + r * H) + u; }
    // With a projection, after the pass: h = m·W_hrᵀ on this part's rows (the
    // row split: every unit of its own rows of m, no barrier), then their
    // output. (Blends of h are refused with a projection: bindings.cpp.)
    void project() const {
        if (!m) return;
        W::gemm_units(rows, m + p.r0 * H, H, re - p.r0, w.w_hr, 0, w.w_hr.per_group(), next[0] + p.r0 * R, R,
                      false);
        for (Index r = p.r0; r < re; ++r) write_output(sch, s, r, next[0] + r * R, out, B, R, R);
    }
    // f(r) for each running row r, the blend of Options, then row r's output
    // (new h, units [u, u + len)); with a projection project() writes it.
    template <typename F>
    void each_row(F&& f) const {
        for (Index r = p.r0; r < re; ++r) {
            f(r);
            for (int k = 0; k < Cell::kStates; ++k)
                if (w.opt.blends(k)) {
                    ConstArrMap<S> old(prev[k] + r * H + u, len);
                    ArrMap<S> nx(next[k] + r * H + u, len);
                    with_new_share(w.opt, k, zoneout_row(w.opt, k, sch, s, r, B, H, u), len,
                                   [&](const auto& share) { nx = old + share * (nx - old); });
                }
            if (!m) write_output(sch, s, r, next[0] + r * H + u, out + u, B, H, len);
        }
    }
};

// x (T, B, I) through one layer-direction: out (T, B, R), final states s_n
// (h (B, R), c (B, H)); training fills the cache (Cache fields non-null).
template <typename S, typename Cell, typename W>
void forward(const Dims& d, const S* x, const PackedLayer<S, Cell, W>& w, const States<const S*>& s0,
             const Schedule& sch, S* out, const States<S*>& s_n, const Cache<S>& cache) {
    constexpr int NS = Cell::kStates;
    const Index B = d.B, H = d.H, GH = Cell::kGates * H, R = w.R;
    const bool train = cache.hs != nullptr;
    auto width = [&](int k) { return k == 0 ? R : H; };  // of state k
    InputProjection<S, W> proj(d, x, w.w_ih, GH, sch, train ? Cell::projection(cache, B, H) : nullptr);
    const StateSlots slots{train};
    Buffer<S> gh(B * GH), scratch(Cell::forward_scratch(B, H, train)), slot_buf(train ? 0 : 2 * B * (R + H)),
        masked(w.opt.rmask ? GH * B : 0), mbuf(w.projects && !train ? B * H : 0);
    States<S*> st{};
    for (int k = 0; k < NS; ++k) {
        st[k] = train ? cache.state(k) : slot_buf.data() + k * 2 * B * R;
        sch.gather(s0[k], st[k], width(k));
    }
    const Index P = w.w_hh[0].per_group();
    const Index work = 2 * B * R * GH + (w.projects ? 2 * B * H * R : 0);
    const TeamPlan plan = plan_for(sch, P, B, work, w.opt.ln_gain || w.projects);
    std::vector<typename W::Rows> rows(plan.threads);  // per thread, reused by every step
    forward_loop(proj, sch, B, P, plan, [&](Index s, const Part& p) {
        const auto [u, len] = W::units(p.j0, p.j1, H);
        S* m = !w.projects ? nullptr : train ? cache.ms + s * B * H : mbuf.data();
        ForwardStep<S, Cell, W> step{w, p, sch, cache, s, p.end(sch.active(s)), u, len, B, H, R, {}, {},
                                     proj.at(s), gh.data(), scratch.data(), out, masked.data(), m, rows[p.t]};
        for (int k = 0; k < NS; ++k) {
            step.prev[k] = st[k] + slots.slot(s) * B * width(k);
            step.next[k] = st[k] + slots.slot(s + 1) * B * width(k);
        }
        Cell::forward(step);
        if (train) {  // rows that have ended: defined values for the dW_hh GEMM (and LN's sums)
            for (int k = 0; k < NS; ++k)  // a projected h: whole rows (the row split)
                if (k == 0 && w.projects)
                    zero_rows(step.next[0], step.re, p.r1, R, 1, R, 0, R);
                else
                    zero_rows(step.next[k], step.re, p.r1, H, 1, H, u, len);
            if (m) zero_rows(m, step.re, p.r1, H, 1, H, u, len);
            if (cache.lnx) {
                zero_rows(cache.lnx + s * B * GH, step.re, p.r1, GH, Cell::kGates, H, u, len);
                zero_rows(cache.lnh + s * B * GH, step.re, p.r1, GH, Cell::kGates, H, u, len);
                if (cache.lnc) zero_rows(cache.lnc + s * B * H, step.re, p.r1, H, 1, H, u, len);
            }
        }
    });
    for (Index r = 0; r < B; ++r) {
        const Index slot = slots.slot(sch.length(r)) * B + r;
        for (int k = 0; k < NS; ++k) std::copy_n(st[k] + slot * width(k), width(k), s_n[k] + sch.row(r) * width(k));
    }
}

// One thread's part of backward step s, as a cell sees it; W: the weight
// format of its products (native, or bf16 training: core/weights.hpp).
template <typename S, typename Cell, typename W>
struct BackwardStep {
    const std::array<typename W::Matrix, Cell::kProducts.size()>& wt;  // transposed products
    const Part& p;
    const Schedule& sch;
    const Cache<S>& cache;
    Index s, re, u, len, B, H, R;  // as ForwardStep
    States<const S*> prev;      // cached states before the step, h (B, R), c (B, H)
    States<const S*> next;      // cached states after the step
    const S* gates;             // cached gates of the step (B, G·H)
    const S* peephole;          // (3, H) or null
    S* dG;                      // (B, G·H) pre-activation gradients; ended rows are zero
    States<S*> dstate;          // in: d(states after the step); out: d(states before it)
    S* scratch;                 // Cell::backward_scratch values
    const S* d_out;             // (T, B, H)
    const Options<S>& opt;
    States<S*> keep;            // blends: d(states before) through their kept share, (B, H)
    S* mtmp;                    // recurrent mask: one gate's product, (B, H)
    S* dsh;                     // layer_norm: this step's d(recurrent term before LN), (B, G·H)
    const typename W::Matrix* w_hr;  // projection: W_hr packed for dm = dh·W_hr; else null
    S* dm;                           // projection: (B, H) this step's dm
    S* dhs;                          // projection: (B, R) this step's dh (with d_out), for dW_hr
    typename W::Rows& rows;          // this thread's activations in W's format

    Index r0() const { return p.r0; }
    // C (=|+=) A · Wₖ on this part (W_hh's rows of product k's gates, transposed).
    // With a recurrent mask: Σ over the product's gates g of (A_g · W_g) ⊙ m_g.
    // With layer_norm, A (the gradient of γ_h ⊙ LN(term), whole rows) first
    // goes through LN's backward, into dsh.
    void product(std::size_t k, const S* A, Index lda, S* C, Index ldc, bool accumulate) const {
        if (opt.ln_gain) {
            const Index GH = Cell::kGates * H;
            for (Index r = p.r0; r < re; ++r) {
                const Index at = s * B + r;
                layer_norm_row_backward(A + r * lda, opt.ln_gain + GH, cache.lnh + at * GH, cache.rstd[at * 3 + 1],
                                        dsh + r * GH, GH);
            }
            zero_ended(dsh, GH, Cell::kGates);
            A = dsh, lda = GH;
        }
        if (!opt.rmask) {
            W::gemm_units(rows, A + p.r0 * lda, lda, re - p.r0, wt[k], p.j0, p.j1, C + p.r0 * ldc, ldc, accumulate);
            return;
        }
        if constexpr (std::is_same_v<W, NativeFormat<S>>) product_masked(k, A, lda, C, ldc, accumulate);
    }
    // The recurrent mask's product (native format only: kernels.cpp refuses the others).
    void product_masked(std::size_t k, const S* A, Index lda, S* C, Index ldc, bool accumulate) const {
        const Product pr = Cell::kProducts[k];
        for (Index g = 0; g < pr.gates; ++g) {
            packed_gemm_units(A + p.r0 * lda, lda, re - p.r0, wt[k], p.j0, p.j1, mtmp + p.r0 * H, H, false, 0, 1,
                              g * H, (g + 1) * H);
            for (Index r = p.r0; r < re; ++r) {
                ArrMap<S> c(C + r * ldc + u, len);
                const auto v = ConstArrMap<S>(mtmp + r * H + u, len) *
                               ConstArrMap<S>(mask_row(opt, pr.gate0 + g, sch, r, B, H, u), len);
                if (accumulate || g > 0)
                    c += v;
                else
                    c = v;
            }
        }
    }
    void sync() const { p.sync(); }
    // With a projection, before the cell's pass, on this part's rows (whole
    // rows: the row split): dh += d_out, kept for dW_hr (ended rows zero), and
    // dm = dh·W_hr, the gradient the cell's pass sees (dh(r)).
    void project_back() const {
        if (!w_hr) return;
        for (Index r = p.r0; r < re; ++r) {
            ArrMap<S> dh(dstate[0] + r * R, R);
            dh += ConstArrMap<S>(read_output(sch, s, r, d_out, B, R), R);
            ArrMap<S>(dhs + r * R, R) = dh;
        }
        zero_rows(dhs, re, p.r1, R, 1, R, 0, R);
        W::gemm_units(rows, dhs + p.r0 * R, R, re - p.r0, *w_hr, 0, w_hr->per_group(), dm + p.r0 * H, H, false);
    }
    // The gradient w.r.t. the cell's o⊙act(c') of row r (units from u).
    S* dh(Index r) const { return (w_hr ? dm + r * H : dstate[0] + r * H) + u; }
    // For each running row r: dh += d_out (without a projection) (this step's output); the blends
    // split each d(state after) into the cell's share and the kept share (to
    // keep, added back by add_kept); then f(r).
    template <typename F>
    void each_row(F&& f) const {
        for (Index r = p.r0; r < re; ++r) {
            if (!w_hr)
                ArrMap<S>(dstate[0] + r * H + u, len) += ConstArrMap<S>(read_output(sch, s, r, d_out, B, H) + u, len);
            for (int k = 0; k < Cell::kStates; ++k)
                if (opt.blends(k)) {
                    ArrMap<S> d(dstate[k] + r * H + u, len);
                    with_new_share(opt, k, zoneout_row(opt, k, sch, s, r, B, H, u), len, [&](const auto& share) {
                        ArrMap<S>(keep[k] + r * H + u, len) = (1 - share) * d;
                        d *= share;
                    });
                }
            f(r);
        }
    }
    // After the cell's step: d(states before) += the kept shares.
    void add_kept() const {
        for (int k = 0; k < Cell::kStates; ++k)
            if (opt.blends(k))
                for (Index r = p.r0; r < re; ++r)
                    ArrMap<S>(dstate[k] + r * H + u, len) += ConstArrMap<S>(keep[k] + r * H + u, len);
    }
    // Zeroes this part's units of the G blocks of the ended rows of a.
    void zero_ended(S* a, Index stride, Index G) const { zero_rows(a, re, p.r1, stride, G, H, u, len); }
};

// The input side under layer_norm: dax, the gradient of the input term after
// LN (what b_ih sees), assembled from the cell's input_grads; then
// dγ_x = Σ dax ⊙ x̂_x, dγ_h = Σ du ⊙ x̂_h (du = dG, what b_hh sees), and W_ih
// sees LN's backward of dax. Rows that have ended are zeros in dax and x̂.
template <typename S, typename Cell, typename W>
void layer_norm_input_backward(const Dims& d, const S* x, const Weights<S>& w, const Options<S>& opt,
                               const Schedule& sch, const Cache<S>& cache, const S* dG, const S* scratch,
                               const Grads<S>& g, const typename W::Config& cfg) {
    const Index B = d.B, GH = Cell::kGates * d.H, rows = sch.steps() * B;
    Buffer<S> dax(rows * GH);
    for (const InputGrad<S>& in : Cell::input_grads(dG, scratch, d.H, GH))
        for (Index i = 0; i < rows; ++i) std::copy_n(in.dg + i * in.ld, in.cols, dax.data() + i * GH + in.g0);
    column_sum(dax.data(), g.db_ih, rows, GH);
    ArrMap<S> dgx(g.dln_gain, GH), dgh(g.dln_gain + GH, GH);
    dgx.setZero(), dgh.setZero();
    for (Index i = 0; i < rows; ++i) {
        dgx += ConstArrMap<S>(dax.data() + i * GH, GH) * ConstArrMap<S>(cache.lnx + i * GH, GH);
        dgh += ConstArrMap<S>(dG + i * GH, GH) * ConstArrMap<S>(cache.lnh + i * GH, GH);
    }
    for (Index s = 0; s < sch.steps(); ++s)
        for (Index r = 0; r < sch.active(s); ++r) {
            const Index at = s * B + r;
            layer_norm_row_backward(dax.data() + at * GH, opt.ln_gain, cache.lnx + at * GH, cache.rstd[at * 3],
                                    dax.data() + at * GH, GH);
        }
    input_backward<S, W>(d, x, w.w_ih, sch, dax.data(), GH, 0, GH, g.dw_ih, g.dx, false, cfg);
}

// BPTT through one layer-direction from its training cache; d_n: gradients
// w.r.t. the final states (h (B, R), c (B, H)). Writes every pointer of g the cell has.
// W: the format of every product (native, or bf16 training with cfg its kernel path).
template <typename S, typename Cell, typename W = NativeFormat<S>>
void backward(const Dims& d, const S* x, const Weights<S>& w, const Options<S>& opt, const Schedule& sch,
              const Cache<S>& cache, const S* d_out, const States<const S*>& d_n, const Grads<S>& g,
              const typename W::Config& cfg = {}) {
    constexpr int NS = Cell::kStates;
    constexpr std::size_t NP = Cell::kProducts.size();
    const Index B = d.B, H = d.H, GH = Cell::kGates * H, steps = sch.steps(), rows = steps * B, R = w.R(H);
    const bool projects = w.w_hr != nullptr;
    auto width = [&](int k) { return k == 0 ? R : H; };  // of state k
    // dG: every row is written (ended rows zeroed).
    Buffer<S> dG(rows * GH), dst(B * (R + H)), scratch(Cell::backward_scratch(B, H, steps, opt)),
        kept(opt.blends() ? NS * B * H : 0), mtmp(opt.rmask ? B * H : 0), dsh(opt.ln_gain ? rows * GH : 0),
        dm(projects ? B * H : 0), dhs(projects ? rows * R : 0);
    std::array<typename W::Matrix, NP> wt;  // d(input of product k) = dG[gates of k] · W_hh[those rows]
    for (std::size_t k = 0; k < NP; ++k) {
        const Product pr = Cell::kProducts[k];
        W::pack_t(wt[k], cfg, w.w_hh + pr.gate0 * H * R, R, pr.gates * H, R);
    }
    typename W::Matrix w_hr;  // dm = dh · W_hr
    if (projects) W::pack_t(w_hr, cfg, w.w_hr, H, R, H);
    States<S*> ds{};
    for (int k = 0; k < NS; ++k) {
        ds[k] = dst.data() + k * B * R;
        sch.gather(d_n[k], ds[k], width(k));
    }
    const Index P = wt[0].per_group();  // a projection takes the row split: j0 = 0, j1 = P covers all R
    const Index work = 2 * B * GH * R + (projects ? 2 * B * H * R : 0);
    const TeamPlan plan = plan_for(sch, P, B, work, opt.ln_gain || projects);
    std::vector<typename W::Rows> prepared(plan.threads);  // per thread, reused by every step
    backward_loop(sch, B, P, plan, [&](Index s, const Part& p) {
        const auto [u, len] = projects ? std::pair<Index, Index>{0, H} : W::units(p.j0, p.j1, H);
        BackwardStep<S, Cell, W> step{wt, p, sch, cache, s, p.end(sch.active(s)), u, len, B, H, R, {}, {},
                                      cache.gates ? cache.gates + s * B * GH : nullptr, w.peephole,
                                      dG.data() + s * B * GH, ds, scratch.data(), d_out, opt, {}, mtmp.data(),
                                      dsh.data() + s * B * GH, projects ? &w_hr : nullptr, dm.data(),
                                      dhs.data() + s * B * R, prepared[p.t]};
        for (int k = 0; k < NS; ++k) {
            step.prev[k] = cache.state(k) + s * B * width(k);
            step.next[k] = step.prev[k] + B * width(k);
            if (!kept.empty()) step.keep[k] = kept.data() + k * B * H;
        }
        step.zero_ended(step.dG, GH, Cell::kGates);
        Cell::backward(step);
        step.add_kept();
    });
    for (int k = 0; k < NS; ++k) sch.scatter(ds[k], g.dstate0(k), width(k));
    if (projects) W::gemm_tn(cfg, dhs.data(), R, cache.ms, g.dw_hr, R, H, rows, false);  // dW_hr = Σ dhᵀ m
    Buffer<S> tmp, masked(opt.rmask ? rows * H : 0);
    typename W::GradRows shared;  // dG as the format prepared it for dW_hh, for dW_ih
    // db_hh = Σ dG from dW_hh's pass over dG, where the format's dW GEMM sums it
    const bool fused_db = W::kFusedColumnSum && !opt.rmask && !opt.ln_gain;
    const auto ins = Cell::input_grads(dG.data(), scratch.data(), H, GH);
    std::array<bool, std::tuple_size_v<decltype(ins)>> dw_ih_done{};
    // W_ih sees exactly the dG block product pr's W_hh sees (an LSTM's, an RNN's)
    // and x is in step order (the identity schedule): dW_ih joins dW_hh's pass.
    auto joins = [&](const InputGrad<S>& in, const Product& pr) {
        return !opt.ln_gain && sch.identity() && in.dg == dG.data() + pr.gate0 * H && in.ld == GH &&
               in.g0 == pr.gate0 * H && in.cols == pr.gates * H;
    };
    for (std::size_t k = 0; k < NP; ++k) {
        const Product pr = Cell::kProducts[k];
        const S* in = Cell::product_input(k, cache, rows, H, tmp);
        const S* dW = opt.ln_gain ? dsh.data() : dG.data();  // what W_hh saw
        S *dw_hh = g.dw_hh + pr.gate0 * H * R, *db = fused_db ? g.db_hh + pr.gate0 * H : nullptr;
        if (!opt.rmask) {
            std::size_t i = 0;
            while (i < ins.size() && !joins(ins[i], pr)) ++i;
            if (i < ins.size()) {
                W::gemm_tn2(cfg, dW + pr.gate0 * H, GH, in, dw_hh, R, x, g.dw_ih + pr.gate0 * H * d.I, d.I,
                            pr.gates * H, rows, db, &shared);
                dw_ih_done[i] = true;
            } else {
                W::gemm_tn(cfg, dW + pr.gate0 * H, GH, in, dw_hh, pr.gates * H, R, rows, false, db, &shared);
            }
            continue;
        }
        for (Index gate = pr.gate0; gate < pr.gate0 + pr.gates; ++gate) {  // dW_hh,g = Σ dG_gᵀ (input ⊙ m_g)
            for (Index i = 0; i < rows; ++i)
                ArrMap<S>(masked.data() + i * H, H) =
                    ConstArrMap<S>(in + i * H, H) * ConstArrMap<S>(mask_row(opt, gate, sch, i % B, B, H, 0), H);
            W::gemm_tn(cfg, dW + gate * H, GH, masked.data(), g.dw_hh + gate * H * H, H, H, rows, false);
        }
    }
    if (!fused_db) column_sum(dG.data(), g.db_hh, rows, GH);
    if (opt.ln_gain) {
        layer_norm_input_backward<S, Cell, W>(d, x, w, opt, sch, cache, dG.data(), scratch.data(), g, cfg);
    } else {
        for (std::size_t i = 0; i < ins.size(); ++i) {
            const InputGrad<S>& in = ins[i];
            input_backward<S, W>(d, x, w.w_ih, sch, in.dg, in.ld, in.g0, in.cols, dw_ih_done[i] ? nullptr : g.dw_ih,
                                 g.dx, i > 0, cfg, &shared);
            if (in.dg == dG.data() + in.g0)  // b_ih sees what b_hh sees
                std::copy_n(g.db_hh + in.g0, in.cols, g.db_ih + in.g0);
            else
                column_sum(in.dg, g.db_ih + in.g0, rows, in.cols);
        }
    }
    Cell::extra_grads(dG.data(), cache, w.peephole, opt, scratch.data(), rows, B, H, g);
}

}  // namespace fastrnn
