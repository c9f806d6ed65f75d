// SimpleRNN (Elman), DESIGN §2:  h' = act(W_ih x + b_ih + W_hh h + b_hh),
// act ∈ {tanh, relu}. Cache (training): hs (T+1, B, H), step layout; the
// activations are the states themselves.
#pragma once

#include "activations.hpp"
#include "gru.hpp"  // GradsOut
#include "time_loop.hpp"

#include <vector>

namespace fastrnn {

template <typename S, typename Act>
void rnn_forward(const Dims& d, const S* x, const Weights<S>& w, const S* h0, const Schedule& sch,
                 S* out, S* h_n, S* hs_cache) {
    const Index B = d.B, H = d.H;
    const bool train = hs_cache != nullptr;
    std::vector<S> bias(H);
    ArrMap<S>(bias.data(), H) = ConstArrMap<S>(w.b_ih, H) + ConstArrMap<S>(w.b_hh, H);
    // Training projects straight into hs[1:], which the step then overwrites.
    InputProjection<S> proj(d, x, w.w_ih, H, sch, train ? hs_cache + B * H : nullptr);
    const StateSlots slots{train};
    Buffer<S> gh(B * H), h_buf(train ? 0 : 2 * B * H);
    S* hs = train ? hs_cache : h_buf.data();
    PackedMatrix<S> whh;
    whh.pack(w.w_hh, 1, H, H, H, false);
    sch.gather(h0, hs, H);
    const Index P = whh.per_group();
    forward_loop(proj, sch, B, P, plan_team(sch, P, B, 2 * B * H * H), [&](Index s, const Part& p) {
        const Index re = p.end(sch.active(s)), m = re - p.r0;
        S *hp = hs + slots.slot(s) * B * H, *hnew = hs + slots.slot(s + 1) * B * H;
        const S* gx = proj.at(s);
        packed_gemm_units(hp + p.r0 * H, H, m, whh, p.j0, p.j1, gh.data() + p.r0 * H, H, false);
        const auto [u, len] = unit_range<S>(p.j0, p.j1, H);
        for (Index r = p.r0; r < re; ++r) {
            ArrMap<S>(hnew + r * H + u, len) =
                Act::f(ConstArrMap<S>(gx + r * H + u, len) + ConstArrMap<S>(gh.data() + r * H + u, len) +
                       ConstArrMap<S>(bias.data() + u, len));
            write_output(sch, s, r, hnew + r * H + u, out + u, B, H, len);
        }
        if (train) zero_rows(hnew, re, p.r1, H, 1, H, u, len);
    });
    for (Index r = 0; r < B; ++r)
        std::copy_n(hs + slots.slot(sch.length(r)) * B * H + r * H, H, h_n + sch.row(r) * H);
}

// Backward per row of a step: da = (dh + d_out)⊙act'(h');  dh_prev = da·W_hh.
template <typename S, typename Act>
void rnn_backward(const Dims& d, const S* x, const Weights<S>& w, const Schedule& sch, const S* hs,
                  const S* d_out, const S* d_h_n, const GradsOut<S>& g) {
    const Index B = d.B, H = d.H, steps = sch.steps();
    Buffer<S> dG(steps * B * H), dh(B * H);  // dG: every row is written
    PackedMatrix<S> whh_t;  // dh_prev = dG · W_hh
    whh_t.pack(w.w_hh, 1, H, H, H, true);
    sch.gather(d_h_n, dh.data(), H);
    const Index P = whh_t.per_group();
    backward_loop(sch, B, P, plan_team(sch, P, B, 2 * B * H * H), [&](Index s, const Part& p) {
        const Index re = p.end(sch.active(s)), m = re - p.r0;
        S* dGs = dG.data() + s * B * H;
        const auto [u, len] = unit_range<S>(p.j0, p.j1, H);
        for (Index r = p.r0; r < re; ++r)
            ArrMap<S>(dGs + r * H + u, len) = (ConstArrMap<S>(dh.data() + r * H + u, len) +
                                               ConstArrMap<S>(read_output(sch, s, r, d_out, B, H) + u, len)) *
                                              Act::df(ConstArrMap<S>(hs + ((s + 1) * B + r) * H + u, len));
        zero_rows(dGs, re, p.r1, H, 1, H, u, len);
        p.sync();  // the product reads every unit of dG
        packed_gemm_units(dGs + p.r0 * H, H, m, whh_t, p.j0, p.j1, dh.data() + p.r0 * H, H, false);
    });
    sch.scatter(dh.data(), g.dh0, H);
    gemm_tn(dG.data(), hs, g.dw_hh, H, H, steps * B, false);
    column_sum(dG.data(), g.db_ih, steps * B, H);
    std::copy_n(g.db_ih, H, g.db_hh);
    input_backward(d, x, w.w_ih, sch, dG.data(), H, 0, H, g.dw_ih, g.dx, false);
}

}  // namespace fastrnn
