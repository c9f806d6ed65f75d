// LSTM, gate order i, f, g, o (PyTorch), optional peepholes (DESIGN §2,
// docs/functional.md):
//   i = σ(Wx + Wh + b [+ p_i⊙c])   f = σ(… [+ p_f⊙c])   g = tanh(…)
//   c' = f⊙c + i⊙g                  o = σ(… [+ p_o⊙c'])   h' = o⊙tanh(c')
//
// Cache (training): gates (T, B, 4H) activated [i f g o], hs and cs
// (T+1, B, H) with slot 0 the initial state; all in step layout (schedule.hpp).
#pragma once

#include "activations.hpp"
#include "time_loop.hpp"

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
    const Index P = whh.per_group();
    forward_loop(proj, sch, B, P, plan_team(sch, P, B, 2 * B * H * GH), [&](Index s, const Part& p) {
        const Index re = p.end(sch.active(s)), m = re - p.r0;
        S *hp = hs + slots.slot(s) * B * H, *hn = hs + slots.slot(s + 1) * B * H;
        S *cp = cs + slots.slot(s) * B * H, *cn = cs + slots.slot(s + 1) * B * H;
        S* gx = proj.at(s);
        S* gates = train ? gx : gh.data();
        packed_gemm_units(hp + p.r0 * H, H, m, whh, p.j0, p.j1, gh.data() + p.r0 * GH, GH, false);
        const auto [u, len] = unit_range<S>(p.j0, p.j1, H);
        for (Index r = p.r0; r < re; ++r) {
            lstm_step<S, Peep>(gx + r * GH + u, gh.data() + r * GH + u, bias.data() + u,
                               w.peephole ? w.peephole + u : nullptr, cp + r * H + u, gates + r * GH + u,
                               cn + r * H + u, hn + r * H + u, H, len);
            write_output(sch, s, r, hn + r * H + u, out + u, B, H, len);
        }
        if (train) {  // rows that have ended: defined values for the dW_hh GEMM
            zero_rows(hn, re, p.r1, H, 1, H, u, len);
            zero_rows(cn, re, p.r1, H, 1, H, u, len);
        }
    });
    for (Index r = 0; r < B; ++r) {
        const Index at = slots.slot(sch.length(r)) * B * H + r * H;
        std::copy_n(hs + at, H, h_n + sch.row(r) * H);
        std::copy_n(cs + at, H, c_n + sch.row(r) * H);
    }
}

// Backward of units [u, u + n) of one row of one step (pointers offset to u,
// gates H apart). In: dh (incl. d_out), dc from step s+1.
// Out: dG = pre-activation gradients [dai daf dag dao]; dc ← dc_prev.
//   do  = dh⊙tanh(c')                 dao = do⊙o(1−o)
//   dc' = dc + dh⊙o⊙(1−tanh²c') [+ dao⊙p_o]
//   dai = dc'⊙g⊙i(1−i)   daf = dc'⊙c⊙f(1−f)   dag = dc'⊙i⊙(1−g²)
//   dc_prev = dc'⊙f [+ dai⊙p_i + daf⊙p_f]        (dh_prev = dG·W_hh, a GEMM)
template <typename S, bool Peep>
inline void lstm_step_backward(const S* gates, const S* peep, const S* c_prev, const S* c_new,
                               const S* dh, S* dc, S* dG, Index H, Index n) {
    ConstArrMap<S> i(gates, n), f(gates + H, n), g(gates + 2 * H, n), o(gates + 3 * H, n);
    ConstArrMap<S> c(c_prev, n), dhv(dh, n);
    ArrMap<S> dcv(dc, n), dai(dG, n), daf(dG + H, n), dag(dG + 2 * H, n), dao(dG + 3 * H, n);
    dao = Tanh::f(ConstArrMap<S>(c_new, n));  // tanh(c') parked in dao: no allocation
    dcv += dhv * o * Tanh::df(dao);
    dao = dhv * dao * Sigmoid::df(o);
    if constexpr (Peep) dcv += dao * ConstArrMap<S>(peep + 2 * H, n);
    dai = dcv * g * Sigmoid::df(i);
    daf = dcv * c * Sigmoid::df(f);
    dag = dcv * i * Tanh::df(g);
    dcv *= f;
    if constexpr (Peep) dcv += dai * ConstArrMap<S>(peep, n) + daf * ConstArrMap<S>(peep + H, n);
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
    Buffer<S> dG(steps * B * GH), dh(B * H), dc(B * H);  // dG: every row is written
    PackedMatrix<S> whh_t;  // dh_prev = dG · W_hh
    whh_t.pack(w.w_hh, 1, H, GH, H, true);
    sch.gather(d_h_n, dh.data(), H);
    sch.gather(d_c_n, dc.data(), H);
    const Index P = whh_t.per_group();
    backward_loop(sch, B, P, plan_team(sch, P, B, 2 * B * GH * H), [&](Index s, const Part& p) {
        const Index re = p.end(sch.active(s)), m = re - p.r0;
        S* dGs = dG.data() + s * B * GH;
        const S* cp = cache.cs + s * B * H;
        const auto [u, len] = unit_range<S>(p.j0, p.j1, H);
        for (Index r = p.r0; r < re; ++r) {
            S* dhr = dh.data() + r * H + u;
            ArrMap<S>(dhr, len) += ConstArrMap<S>(read_output(sch, s, r, d_out, B, H) + u, len);
            lstm_step_backward<S, Peep>(cache.gates + (s * B + r) * GH + u, w.peephole ? w.peephole + u : nullptr,
                                        cp + r * H + u, cp + B * H + r * H + u, dhr, dc.data() + r * H + u,
                                        dGs + r * GH + u, H, len);
        }
        zero_rows(dGs, re, p.r1, GH, 4, H, u, len);
        p.sync();  // the product reads every unit of dG
        packed_gemm_units(dGs + p.r0 * GH, GH, m, whh_t, p.j0, p.j1, dh.data() + p.r0 * H, H, false);
    });
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
