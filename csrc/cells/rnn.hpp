// SimpleRNN (Elman), DESIGN §2:  h' = act(W_ih x + b_ih + W_hh h + b_hh),
// act ∈ {tanh, relu}. Cache (training): hs (T+1, B, H), step layout; the
// activations are the states themselves.
#pragma once

#include "../activations.hpp"
#include "../core/cell.hpp"

namespace fastrnn {

template <typename S, typename Act>
struct RNNCell : CellBase<S> {
    static constexpr Index kGates = 1, kFolded = 1;
    static constexpr int kStates = 1;
    static constexpr std::array<Product, 1> kProducts{{{0, 1}}};
    // Training projects straight into hs[1:], which the step then overwrites.
    static S* projection(const Cache<S>& c, Index B, Index H) { return c.hs + B * H; }

    template <typename Step>
    static void forward(const Step& st) {
        const Index H = st.H, u = st.u, n = st.len;
        st.product(0, st.prev[0], H, st.gh, H, false);
        st.each_row([&](Index r) {
            const Index o = r * H + u;
            ArrMap<S>(st.next[0] + o, n) = Act::f(ConstArrMap<S>(st.gx + o, n) + ConstArrMap<S>(st.gh + o, n) +
                                                  ConstArrMap<S>(st.bias() + u, n));
        });
    }

    // da = dh⊙act'(h') (dh includes d_out);  dh_prev = da·W_hh.
    template <typename Step>
    static void backward(const Step& st) {
        const Index H = st.H, u = st.u, n = st.len;
        st.each_row([&](Index r) {
            const Index o = r * H + u;
            ArrMap<S>(st.dG + o, n) = ConstArrMap<S>(st.dstate[0] + o, n) * Act::df(ConstArrMap<S>(st.next[0] + o, n));
        });
        st.sync();  // the product reads every unit of dG
        st.product(0, st.dG, H, st.dstate[0], H, false);
    }
};

}  // namespace fastrnn
