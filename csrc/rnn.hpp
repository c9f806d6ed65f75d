// SimpleRNN (Elman), DESIGN §2:  h' = act(W_ih x + b_ih + W_hh h + b_hh),
// act ∈ {tanh, relu}. Cache (training): hs (T+1, B, H), step layout; the
// activations are the states themselves.
#pragma once

#include "activations.hpp"
#include "gru.hpp"  // GradsOut
#include "projection.hpp"

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
    for (Index s = 0; s < sch.steps(); ++s) {
        const Index n = sch.active(s);
        S *hp = hs + slots.slot(s) * B * H, *hnew = hs + slots.slot(s + 1) * B * H;
        const S* gx = proj.step(s);
        parallel_units(whh, 2 * n * H * H, [&](Index j0, Index j1) {
            packed_gemm_units(hp, H, n, whh, j0, j1, gh.data(), H, false);
            const auto [u, len] = unit_range<S>(j0, j1, H);
            for (Index r = 0; r < n; ++r) {
                ArrMap<S>(hnew + r * H + u, len) =
                    Act::f(ConstArrMap<S>(gx + r * H + u, len) + ConstArrMap<S>(gh.data() + r * H + u, len) +
                           ConstArrMap<S>(bias.data() + u, len));
                write_output(sch, s, r, hnew + r * H + u, out + u, B, H, len);
            }
        });
        if (train) std::fill(hnew + n * H, hnew + B * H, S(0));
    }
    for (Index r = 0; r < B; ++r)
        std::copy_n(hs + slots.slot(sch.length(r)) * B * H + r * H, H, h_n + sch.row(r) * H);
}

// Backward per row of a step: da = (dh + d_out)⊙act'(h');  dh_prev = da·W_hh.
template <typename S, typename Act>
void rnn_backward(const Dims& d, const S* x, const Weights<S>& w, const Schedule& sch, const S* hs,
                  const S* d_out, const S* d_h_n, const GradsOut<S>& g) {
    const Index B = d.B, H = d.H, steps = sch.steps();
    std::vector<S> dG(steps * B * H), dh(B * H);
    PackedMatrix<S> whh_t;  // dh_prev = dG · W_hh
    whh_t.pack(w.w_hh, 1, H, H, H, true);
    sch.gather(d_h_n, dh.data(), H);
    for (Index s = steps - 1; s >= 0; --s) {
        const Index n = sch.active(s);
        S* dGs = dG.data() + s * B * H;
        parallel_rows(n, H, [&](Index r) {
            ArrMap<S>(dGs + r * H, H) = (ConstArrMap<S>(dh.data() + r * H, H) +
                                         ConstArrMap<S>(read_output(sch, s, r, d_out, B, H), H)) *
                                        Act::df(ConstArrMap<S>(hs + ((s + 1) * B + r) * H, H));
        });
        std::fill(dGs + n * H, dGs + B * H, S(0));
        packed_gemm(dGs, H, n, whh_t, dh.data(), H, false);
    }
    sch.scatter(dh.data(), g.dh0, H);
    gemm_tn(dG.data(), hs, g.dw_hh, H, H, steps * B, false);
    column_sum(dG.data(), g.db_ih, steps * B, H);
    std::copy_n(g.db_ih, H, g.db_hh);
    input_backward(d, x, w.w_ih, sch, dG.data(), H, 0, H, g.dw_ih, g.dx, false);
}

}  // namespace fastrnn
