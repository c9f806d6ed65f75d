// LSTM, gate order i, f, g, o (PyTorch), optional peepholes (DESIGN §2,
// docs/functional.md):
//   i = σ(Wx + Wh + b [+ p_i⊙c])   f = σ(… [+ p_f⊙c])   g = tanh(…)
//   c' = f⊙c + i⊙g                  o = σ(… [+ p_o⊙c'])   h' = o⊙tanh(c')
//
// Cache (training): gates (T, B, 4H) activated [i f g o], hs and cs
// (T+1, B, H) with slot 0 the initial state; all in step layout (schedule.hpp).
#pragma once

#include "activations.hpp"
#include "projection.hpp"

#include <vector>

namespace fastrnn {

template <typename S>
struct LSTMCache {
    S* gates = nullptr;  // (T, B, 4H)
    S* hs = nullptr;     // (T+1, B, H)
    S* cs = nullptr;     // (T+1, B, H)
};

// Units [u, u + n) of one row of one step; every pointer is already offset
// to unit u and gates are H apart. gx and gh may alias gates.
template <typename S, bool Peep>
inline void lstm_step(const S* gx, const S* gh, const S* bias, const S* peep, const S* c_prev,
                      S* gates, S* c_new, S* h_new, Index H, Index n) {
    auto pre = [&](Index k) {
        return ConstArrMap<S>(gx + k * H, n) + ConstArrMap<S>(gh + k * H, n) + ConstArrMap<S>(bias + k * H, n);
    };
    ArrMap<S> i(gates, n), f(gates + H, n), g(gates + 2 * H, n), o(gates + 3 * H, n), cn(c_new, n);
    ConstArrMap<S> c(c_prev, n);
    if constexpr (Peep) {
        i = Sigmoid::f(pre(0) + ConstArrMap<S>(peep, n) * c);
        f = Sigmoid::f(pre(1) + ConstArrMap<S>(peep + H, n) * c);
    } else {
        i = Sigmoid::f(pre(0));
        f = Sigmoid::f(pre(1));
    }
    g = Tanh::f(pre(2));
    cn = f * c + i * g;
    if constexpr (Peep)
        o = Sigmoid::f(pre(3) + ConstArrMap<S>(peep + 2 * H, n) * cn);
    else
        o = Sigmoid::f(pre(3));
    ArrMap<S>(h_new, n) = o * Tanh::f(cn);
}

template <typename S, bool Peep>
void lstm_forward(const Dims& d, const S* x, const Weights<S>& w, const S* h0, const S* c0,
                  const Schedule& sch, S* out, S* h_n, S* c_n, LSTMCache<S> cache) {
    const Index B = d.B, H = d.H, GH = 4 * H;
    const bool train = cache.gates != nullptr;
    std::vector<S> bias(GH);
    ArrMap<S>(bias.data(), GH) = ConstArrMap<S>(w.b_ih, GH) + ConstArrMap<S>(w.b_hh, GH);
    InputProjection<S> proj(d, x, w.w_ih, GH, sch, cache.gates);
    const StateSlots slots{train};
    Buffer<S> gh(B * GH), h_buf(train ? 0 : 2 * B * H), c_buf(train ? 0 : 2 * B * H);
    S* hs = train ? cache.hs : h_buf.data();
    S* cs = train ? cache.cs : c_buf.data();
    PackedMatrix<S> whh;
    whh.pack(w.w_hh, 4, H, H, H, false);
    sch.gather(h0, hs, H);
    sch.gather(c0, cs, H);

    for (Index s = 0; s < sch.steps(); ++s) {
        const Index n = sch.active(s);
        S *hp = hs + slots.slot(s) * B * H, *hn = hs + slots.slot(s + 1) * B * H;
        S *cp = cs + slots.slot(s) * B * H, *cn = cs + slots.slot(s + 1) * B * H;
        S* gx = proj.step(s);
        S* gates = train ? gx : gh.data();
        parallel_units(whh, 2 * n * H * GH, [&](Index j0, Index j1) {
            packed_gemm_units(hp, H, n, whh, j0, j1, gh.data(), GH, false);
            const auto [u, len] = unit_range<S>(j0, j1, H);
            for (Index r = 0; r < n; ++r) {
                lstm_step<S, Peep>(gx + r * GH + u, gh.data() + r * GH + u, bias.data() + u,
                                   w.peephole ? w.peephole + u : nullptr, cp + r * H + u, gates + r * GH + u,
                                   cn + r * H + u, hn + r * H + u, H, len);
                write_output(sch, s, r, hn + r * H + u, out + u, B, H, len);
            }
        });
        if (train) {  // rows that have ended: defined values for the dW_hh GEMM
            std::fill(hn + n * H, hn + B * H, S(0));
            std::fill(cn + n * H, cn + B * H, S(0));
        }
    }
    for (Index r = 0; r < B; ++r) {
        const Index at = slots.slot(sch.length(r)) * B * H + r * H;
        std::copy_n(hs + at, H, h_n + sch.row(r) * H);
        std::copy_n(cs + at, H, c_n + sch.row(r) * H);
    }
}

// Backward of one row of one step. In: dh (incl. d_out), dc from step s+1.
// Out: dG = pre-activation gradients [dai daf dag dao]; dc ← dc_prev.
//   do  = dh⊙tanh(c')                 dao = do⊙o(1−o)
//   dc' = dc + dh⊙o⊙(1−tanh²c') [+ dao⊙p_o]
//   dai = dc'⊙g⊙i(1−i)   daf = dc'⊙c⊙f(1−f)   dag = dc'⊙i⊙(1−g²)
//   dc_prev = dc'⊙f [+ dai⊙p_i + daf⊙p_f]        (dh_prev = dG·W_hh, a GEMM)
template <typename S, bool Peep>
inline void lstm_step_backward(const S* gates, const S* peep, const S* c_prev, const S* c_new,
                               const S* dh, S* dc, S* dG, Index H) {
    ConstArrMap<S> i(gates, H), f(gates + H, H), g(gates + 2 * H, H), o(gates + 3 * H, H);
    ConstArrMap<S> c(c_prev, H), cn(c_new, H), dhv(dh, H);
    ArrMap<S> dcv(dc, H), dai(dG, H), daf(dG + H, H), dag(dG + 2 * H, H), dao(dG + 3 * H, H);
    const auto tc = Tanh::f(cn).eval();
    dao = dhv * tc * Sigmoid::df(o);
    dcv += dhv * o * Tanh::df(tc);
    if constexpr (Peep) dcv += dao * ConstArrMap<S>(peep + 2 * H, H);
    dai = dcv * g * Sigmoid::df(i);
    daf = dcv * c * Sigmoid::df(f);
    dag = dcv * i * Tanh::df(g);
    dcv *= f;
    if constexpr (Peep) dcv += dai * ConstArrMap<S>(peep, H) + daf * ConstArrMap<S>(peep + H, H);
}

template <typename S>
struct LSTMGradsOut {
    S *dx, *dh0, *dc0, *dw_ih, *dw_hh, *db, *dpeephole;  // dpeephole null without peepholes
};

template <typename S, bool Peep>
void lstm_backward(const Dims& d, const S* x, const Weights<S>& w, const Schedule& sch,
                   const LSTMCache<S>& cache, const S* d_out, const S* d_h_n, const S* d_c_n,
                   const LSTMGradsOut<S>& g) {
    const Index B = d.B, H = d.H, GH = 4 * H, steps = sch.steps();
    std::vector<S> dG(steps * B * GH), dh(B * H), dc(B * H);
    PackedMatrix<S> whh_t;  // dh_prev = dG · W_hh
    whh_t.pack(w.w_hh, 1, H, GH, H, true);
    sch.gather(d_h_n, dh.data(), H);
    sch.gather(d_c_n, dc.data(), H);
    for (Index s = steps - 1; s >= 0; --s) {
        const Index n = sch.active(s);
        S* dGs = dG.data() + s * B * GH;
        const S* cp = cache.cs + s * B * H;
        parallel_rows(n, GH, [&](Index r) {
            ArrMap<S>(dh.data() + r * H, H) += ConstArrMap<S>(read_output(sch, s, r, d_out, B, H), H);
            lstm_step_backward<S, Peep>(cache.gates + (s * B + r) * GH, w.peephole, cp + r * H,
                                        cp + B * H + r * H, dh.data() + r * H, dc.data() + r * H,
                                        dGs + r * GH, H);
        });
        std::fill(dGs + n * GH, dGs + B * GH, S(0));
        packed_gemm(dGs, GH, n, whh_t, dh.data(), H, false);
    }
    sch.scatter(dh.data(), g.dh0, H);
    sch.scatter(dc.data(), g.dc0, H);
    gemm_tn(dG.data(), cache.hs, g.dw_hh, GH, H, steps * B, false);
    column_sum(dG.data(), g.db, steps * B, GH);
    input_backward(d, x, w.w_ih, sch, dG.data(), GH, 0, GH, g.dw_ih, g.dx, false);
    if constexpr (Peep) {
        // dp_i = Σ dai⊙c, dp_f = Σ daf⊙c, dp_o = Σ dao⊙c' over steps and rows.
        ArrMap<S> dp(g.dpeephole, 3 * H);
        dp.setZero();
        for (Index k = 0; k < steps * B; ++k) {
            const S* dGk = dG.data() + k * GH;
            ConstArrMap<S> c(cache.cs + k * H, H), cn(cache.cs + B * H + k * H, H);
            dp.segment(0, H) += ConstArrMap<S>(dGk, H) * c;
            dp.segment(H, H) += ConstArrMap<S>(dGk + H, H) * c;
            dp.segment(2 * H, H) += ConstArrMap<S>(dGk + 3 * H, H) * cn;
        }
    }
}

}  // namespace fastrnn
