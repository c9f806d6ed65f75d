// LSTM, gate order i, f, g, o (PyTorch), optional peepholes (DESIGN §2,
// docs/functional.md):
//   i = σ(Wx + Wh + b [+ p_i⊙c])   f = σ(… [+ p_f⊙c])   g = tanh(…)
//   c' = f⊙c + i⊙g                  o = σ(… [+ p_o⊙c'])   h' = o⊙tanh(c')
//
// Cache (training): gates (T, B, 4H) activated [i f g o], hs and cs
// (T+1, B, H) with slot 0 the initial state; all in step layout (schedule.hpp).
#pragma once

#include "../activations.hpp"
#include "../core/cell.hpp"

namespace fastrnn {

template <typename S, bool Peep>
struct LSTMCell : CellBase<S> {
    static constexpr Index kGates = 4, kFolded = 4;
    static constexpr int kStates = 2;  // h, c
    static constexpr std::array<Product, 1> kProducts{{{0, 4}}};
    static S* projection(const Cache<S>& c, Index, Index) { return c.gates; }

    // Units [u, u + n) of one row of one step; every pointer is already offset
    // to unit u and gates are H apart. gx and gh may alias gates.
    static void step(const S* gx, const S* gh, const S* bias, const S* peep, const S* c_prev, S* gates, S* c_new,
                     S* h_new, Index H, Index n) {
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

    // Backward of step(). In: dh (incl. d_out), dc from step s+1.
    // Out: dG = pre-activation gradients [dai daf dag dao]; dc ← dc_prev.
    //   do  = dh⊙tanh(c')                 dao = do⊙o(1−o)
    //   dc' = dc + dh⊙o⊙(1−tanh²c') [+ dao⊙p_o]
    //   dai = dc'⊙g⊙i(1−i)   daf = dc'⊙c⊙f(1−f)   dag = dc'⊙i⊙(1−g²)
    //   dc_prev = dc'⊙f [+ dai⊙p_i + daf⊙p_f]        (dh_prev = dG·W_hh, a GEMM)
    static void step_backward(const S* gates, const S* peep, const S* c_prev, const S* c_new, const S* dh, S* dc,
                              S* dG, Index H, Index n) {
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

    template <typename Step>
    static void forward(const Step& st) {
        const Index H = st.H, GH = 4 * H, u = st.u, n = st.len;
        st.product(0, st.prev[0], H, st.gh, GH, false);
        S* gates = st.train() ? st.gx : st.gh;  // inference: gates replace their pre-activations
        const S* peep = Peep ? st.w.peep() + u : nullptr;
        st.each_row([&](Index r) {
            step(st.gx + r * GH + u, st.gh + r * GH + u, st.bias() + u, peep, st.prev[1] + r * H + u,
                 gates + r * GH + u, st.next[1] + r * H + u, st.next[0] + r * H + u, H, n);
        });
    }

    template <typename Step>
    static void backward(const Step& st) {
        const Index H = st.H, GH = 4 * H, u = st.u, n = st.len;
        const S* peep = Peep ? st.peephole + u : nullptr;
        st.each_row([&](Index r) {
            step_backward(st.gates + r * GH + u, peep, st.prev[1] + r * H + u, st.next[1] + r * H + u,
                          st.dstate[0] + r * H + u, st.dstate[1] + r * H + u, st.dG + r * GH + u, H, n);
        });
        st.sync();  // the product reads every unit of dG
        st.product(0, st.dG, GH, st.dstate[0], H, false);
    }

    // dp_i = Σ dai⊙c, dp_f = Σ daf⊙c, dp_o = Σ dao⊙c' over steps and rows.
    static void extra_grads(const S* dG, const Cache<S>& c, const S*, Index rows, Index B, Index H,
                            const Grads<S>& g) {
        if constexpr (Peep) {
            const Index GH = 4 * H;
            ArrMap<S> dp(g.dpeephole, 3 * H);
            dp.setZero();
            for (Index k = 0; k < rows; ++k) {
                const S* dGk = dG + k * GH;
                ConstArrMap<S> cp(c.cs + k * H, H), cn(c.cs + B * H + k * H, H);
                dp.segment(0, H) += ConstArrMap<S>(dGk, H) * cp;
                dp.segment(H, H) += ConstArrMap<S>(dGk + H, H) * cp;
                dp.segment(2 * H, H) += ConstArrMap<S>(dGk + 3 * H, H) * cn;
            }
        }
    }
};

}  // namespace fastrnn
