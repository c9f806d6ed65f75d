// LSTM, gate order i, f, g, o (PyTorch), optional peepholes (DESIGN §2,
// docs/functional.md, docs/variants.md), ract = σ and act = tanh by default:
//   i = ract(Wx + Wh + b [+ p_i⊙c])   f = ract(… [+ p_f⊙c])   g = act(…)
//   c' = f⊙c + i⊙g                     o = ract(… [+ p_o⊙c'])   h' = o⊙act(c')
// then the driver's blend (zoneout of h and c). With a projection (proj_size
// P) m = o⊙act(c') and h' = m·W_hrᵀ (ForwardStep::project; backward: dm =
// dh·W_hr first, BackwardStep::project_back). With c zoned out the cache
// keeps the zoned c, and backward recomputes c' = f⊙c + i⊙g. With layer_norm
// (whole rows) h' = o⊙act(ĉ), ĉ = γ_c⊙LN(c') + β_c; the cache keeps LN(c')
// and its rstd (Cache::lnc, rstd).
//
// Cache (training): gates (T, B, 4H) activated [i f g o], hs and cs
// (T+1, B, H) with slot 0 the initial state; all in step layout (schedule.hpp).
#pragma once

#include "../activations.hpp"
#include "../core/cell.hpp"
#include "../core/layer_norm.hpp"

namespace fastrnn {

template <typename S, bool Peep, typename Act = Tanh, typename RAct = Sigmoid>
struct LSTMCell : CellBase<S> {
    static constexpr Index kGates = 4, kFolded = 4;
    static constexpr int kStates = 2;  // h, c
    static constexpr std::array<Product, 1> kProducts{{{0, 4}}};
    static S* projection(const Cache<S>& c, Index, Index) { return c.gates; }

    // Units [u, u + n) of one row of one step; every pointer is already offset
    // to unit u and gates are H apart. gx and gh may alias gates.
    // With layer_norm, xhat_c and rstd_c (training) receive LN(c') and its rstd.
    static void step(const Options<S>& opt, const S* gx, const S* gh, const S* bias, const S* peep,
                     const S* c_prev, S* gates, S* c_new, S* h_new, Index H, Index n, S* xhat_c, S* rstd_c) {
        const Act act{opt.act};
        const RAct ract{opt.ract};
        auto pre = [&](Index k) {
            return ConstArrMap<S>(gx + k * H, n) + ConstArrMap<S>(gh + k * H, n) + ConstArrMap<S>(bias + k * H, n);
        };
        ArrMap<S> i(gates, n), f(gates + H, n), g(gates + 2 * H, n), o(gates + 3 * H, n), cn(c_new, n);
        ConstArrMap<S> c(c_prev, n);
        if constexpr (Peep) {
            i = ract.f(pre(0) + ConstArrMap<S>(peep, n) * c);
            f = ract.f(pre(1) + ConstArrMap<S>(peep + H, n) * c);
        } else {
            i = ract.f(pre(0));
            f = ract.f(pre(1));
        }
        g = act.f(pre(2));
        cn = f * c + i * g;
        if constexpr (Peep)
            o = ract.f(pre(3) + ConstArrMap<S>(peep + 2 * H, n) * cn);
        else
            o = ract.f(pre(3));
        ArrMap<S> hv(h_new, n);
        if (opt.ln_cell) {  // LN(c') built in h_new, then h' over it
            hv = cn;
            const S rstd = layer_norm_row(h_new, n);
            if (xhat_c) std::copy_n(h_new, n, xhat_c), *rstd_c = rstd;
            hv = o * act.f(ConstArrMap<S>(opt.ln_cell, n) * hv + ConstArrMap<S>(opt.ln_cell + H, n));
        } else {
            hv = o * act.f(cn);
        }
    }

    // Backward of step(). In: dh (incl. d_out), dc from step s+1.
    // Out: dG = pre-activation gradients [dai daf dag dao]; dc ← dc_prev.
    //   do  = dh⊙act(c')                  dao = do⊙ract'(o)
    //   dc' = dc + dh⊙o⊙act'(act(c')) [+ dao⊙p_o]
    //   dai = dc'⊙g⊙ract'(i)   daf = dc'⊙c⊙ract'(f)   dag = dc'⊙i⊙act'(g)
    //   dc_prev = dc'⊙f [+ dai⊙p_i + daf⊙p_f]        (dh_prev = dG·W_hh, a GEMM)
    // c_new null: c' is recomputed (the cache holds the zoned c). layer_norm:
    //   act(ĉ) from xhat_c = LN(c');  dĉ = dh⊙o⊙act'(act(ĉ)) (kept in dchat for
    //   dγ_c, dβ_c);  dc' gets LN's backward of dĉ instead.
    static void step_backward(const Options<S>& opt, const S* gates, const S* peep, const S* c_prev,
                              const S* c_new, const S* dh, S* dc, S* dG, Index H, Index n, const S* xhat_c,
                              S rstd_c, S* dchat) {
        const Act act{opt.act};
        const RAct ract{opt.ract};
        ConstArrMap<S> i(gates, n), f(gates + H, n), g(gates + 2 * H, n), o(gates + 3 * H, n);
        ConstArrMap<S> c(c_prev, n), dhv(dh, n);
        ArrMap<S> dcv(dc, n), dai(dG, n), daf(dG + H, n), dag(dG + 2 * H, n), dao(dG + 3 * H, n);
        // act(c') (or act(ĉ)) parked in dao, LN's backward in dai: no allocation
        if (opt.ln_cell) {
            dao = act.f(ConstArrMap<S>(opt.ln_cell, n) * ConstArrMap<S>(xhat_c, n) + ConstArrMap<S>(opt.ln_cell + H, n));
            ArrMap<S>(dchat, n) = dhv * o * act.df(dao);
            layer_norm_row_backward(dchat, opt.ln_cell, xhat_c, rstd_c, dai.data(), n);
            dcv += dai;
        } else {
            if (c_new)
                dao = act.f(ConstArrMap<S>(c_new, n));
            else
                dao = act.f(f * c + i * g);
            dcv += dhv * o * act.df(dao);
        }
        dao = dhv * dao * ract.df(o);
        if constexpr (Peep) dcv += dao * ConstArrMap<S>(peep + 2 * H, n);
        dai = dcv * g * ract.df(i);
        daf = dcv * c * ract.df(f);
        dag = dcv * i * act.df(g);
        dcv *= f;
        if constexpr (Peep) dcv += dai * ConstArrMap<S>(peep, n) + daf * ConstArrMap<S>(peep + H, n);
    }

    template <typename Step>
    static void forward(const Step& st) {
        const Index H = st.H, GH = 4 * H, u = st.u, n = st.len;
        st.product(0, st.prev[0], st.R, st.gh, GH, false);
        S* gates = st.train() ? st.gx : st.gh;  // inference: gates replace their pre-activations
        const S* peep = Peep ? st.w.peep() + u : nullptr;
        const bool keep_ln = st.w.opt.ln_cell && st.train();
        st.each_row([&](Index r) {
            const Index at = st.s * st.B + r;
            step(st.w.opt, st.gx + r * GH + u, st.gh + r * GH + u, st.bias() + u, peep, st.prev[1] + r * H + u,
                 gates + r * GH + u, st.next[1] + r * H + u, st.h_cell(r), H, n,
                 keep_ln ? st.cache.lnc + at * H : nullptr, keep_ln ? st.cache.rstd + at * 3 + 2 : nullptr);
        });
        st.project();
    }

    template <typename Step>
    static void backward(const Step& st) {
        const Index H = st.H, GH = 4 * H, u = st.u, n = st.len;
        const S* peep = Peep ? st.peephole + u : nullptr;
        const bool zoned = st.opt.blends(1), ln = st.opt.ln_cell != nullptr;
        S* dchat = ln ? st.scratch + st.s * st.B * H : nullptr;
        st.project_back();
        st.each_row([&](Index r) {
            const Index at = st.s * st.B + r;
            step_backward(st.opt, st.gates + r * GH + u, peep, st.prev[1] + r * H + u,
                          zoned ? nullptr : st.next[1] + r * H + u, st.dh(r),
                          st.dstate[1] + r * H + u, st.dG + r * GH + u, H, n, ln ? st.cache.lnc + at * H : nullptr,
                          ln ? st.cache.rstd[at * 3 + 2] : S(0), ln ? dchat + r * H + u : nullptr);
        });
        if (ln) st.zero_ended(dchat, H, 1);
        st.sync();  // the product reads every unit of dG
        st.product(0, st.dG, GH, st.dstate[0], st.R, false);
    }

    // Backward scratch: layer_norm's dĉ of every step.
    static Index backward_scratch(Index B, Index H, Index steps, const Options<S>& opt) {
        return opt.ln_cell ? steps * B * H : 0;
    }

    // dp_i = Σ dai⊙c, dp_f = Σ daf⊙c, dp_o = Σ dao⊙c' over steps and rows
    // (c' recomputed when the cache holds the zoned c); layer_norm:
    // dγ_c = Σ dĉ⊙LN(c'), dβ_c = Σ dĉ (rows that have ended are zeros in both).
    static void extra_grads(const S* dG, const Cache<S>& c, const S*, const Options<S>& opt, const S* scratch,
                            Index rows, Index B, Index H, const Grads<S>& g) {
        if (opt.ln_cell) {
            ArrMap<S> dgain(g.dln_cell, H), dshift(g.dln_cell + H, H);
            dgain.setZero(), dshift.setZero();
            for (Index k = 0; k < rows; ++k) {
                dgain += ConstArrMap<S>(scratch + k * H, H) * ConstArrMap<S>(c.lnc + k * H, H);
                dshift += ConstArrMap<S>(scratch + k * H, H);
            }
        }
        if constexpr (Peep) {
            const Index GH = 4 * H;
            const bool zoned = opt.blends(1);
            ArrMap<S> dp(g.dpeephole, 3 * H);
            dp.setZero();
            for (Index k = 0; k < rows; ++k) {
                const S *dGk = dG + k * GH, *a = c.gates + k * GH;
                ConstArrMap<S> cp(c.cs + k * H, H), cn(c.cs + B * H + k * H, H);
                dp.segment(0, H) += ConstArrMap<S>(dGk, H) * cp;
                dp.segment(H, H) += ConstArrMap<S>(dGk + H, H) * cp;
                if (zoned)
                    dp.segment(2 * H, H) += ConstArrMap<S>(dGk + 3 * H, H) *
                                            (ConstArrMap<S>(a + H, H) * cp + ConstArrMap<S>(a, H) * ConstArrMap<S>(a + 2 * H, H));
                else
                    dp.segment(2 * H, H) += ConstArrMap<S>(dGk + 3 * H, H) * cn;
            }
        }
    }
};

}  // namespace fastrnn
