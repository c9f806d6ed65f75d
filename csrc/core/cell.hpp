// What a cell policy supplies to the drivers (core/driver.hpp), and the
// defaults of its optional parts.
//
// A cell is a struct of static members, templated on the scalar and its
// options (cells/lstm.hpp, gru.hpp, rnn.hpp):
//   kGates     G, gate blocks of H columns in W_ih, W_hh, the cache and dG
//   kStates    1 (h) or 2 (h, c); state 0 is h, the layer's output
//   kFolded    leading gates whose b_hh joins b_ih on the input side; the
//              others' b_hh is the cell's to add (GRU reset_after: b_hn)
//   kProducts  the recurrent products: which gate rows of W_hh each uses
//   projection(cache, B, H)  where training keeps the input projection Gx
//   forward(step)   one step of one thread's part (ForwardStep): its
//                   recurrent products, pointwise pass and new states
//   backward(step)  the same step's backward (BackwardStep): dG and the
//                   gradient w.r.t. the previous states
// and may override, from CellBase:
//   forward_scratch / backward_scratch  values of per-call scratch it needs
//   product_input   what recurrent product k multiplies, over all steps (dW_hh)
//   input_grads     what W_ih and b_ih see, when it is not dG itself
//   extra_grads     gradients of the cell's own parameters (peepholes, LN of c)
#pragma once

#include "types.hpp"

#include <array>

namespace fastrnn {

template <typename S>
struct CellBase {
    static Index forward_scratch(Index /*B*/, Index /*H*/, bool /*train*/) { return 0; }
    static Index backward_scratch(Index /*B*/, Index /*H*/, Index /*steps*/, const Options<S>& /*opt*/) { return 0; }
    // Rows (steps·B, H) that product k multiplied: the states before each step.
    static const S* product_input(std::size_t /*k*/, const Cache<S>& c, Index /*rows*/, Index /*H*/,
                                  Buffer<S>& /*tmp*/) {
        return c.hs;
    }
    // What W_ih and b_ih see: dG (steps·B, GH) itself.
    static std::array<InputGrad<S>, 1> input_grads(const S* dG, const S* /*scratch*/, Index /*H*/, Index GH) {
        return {{{dG, GH, 0, GH}}};
    }
    static void extra_grads(const S* /*dG*/, const Cache<S>& /*c*/, const S* /*peephole*/,
                            const Options<S>& /*opt*/, const S* /*scratch*/, Index /*rows*/,
                            Index /*B*/, Index /*H*/, const Grads<S>& /*g*/) {}
};

}  // namespace fastrnn
