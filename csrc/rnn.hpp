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
    std::vector<S> gh(B * H), h_buf(train ? 0 : B * H);
    S* hs = train ? hs_cache : h_buf.data();
    PackedMatrix<S> whh;
    whh.pack(w.w_hh, 1, H, H, H, false);
    sch.gather(h0, hs, H);
    const Index next = train ? B * H : 0;
    for (Index s = 0; s < sch.steps(); ++s) {
        const Index n = sch.active(s);
        S *hp = hs + s * next, *hnew = hp + next;
        const S* gx = proj.step(s);
        packed_gemm(hp, H, n, whh, gh.data(), H, false);
        parallel_rows(n, H, [&](Index r) {
            ArrMap<S>(hnew + r * H, H) = Act::f(ConstArrMap<S>(gx + r * H, H) + ConstArrMap<S>(gh.data() + r * H, H) +
                                                ConstArrMap<S>(bias.data(), H));
            write_output(sch, s, r, hnew + r * H, out, B, H);
        });
        if (train) std::fill(hnew + n * H, hnew + B * H, S(0));
    }
    for (Index r = 0; r < B; ++r)
        std::copy_n(hs + (train ? sch.length(r) * B * H : 0) + r * H, H, h_n + sch.row(r) * H);
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
