// SimpleRNN entry points for float and double (see lstm.cpp).
#include "kernels.hpp"

namespace fastrnn::kernels {

template <typename S>
void rnn_forward(const Dims& d, const S* x, const Weights<S>& w, const S* h0, const std::int64_t* lengths,
                 bool reverse, bool relu, S* out, S* h_n, S* hs) {
    const Schedule sch(d.T, d.B, lengths, reverse);
    if (relu)
        fastrnn::rnn_forward<S, Relu>(d, x, w, h0, sch, out, h_n, hs);
    else
        fastrnn::rnn_forward<S, Tanh>(d, x, w, h0, sch, out, h_n, hs);
}

template <typename S>
void rnn_backward(const Dims& d, const S* x, const Weights<S>& w, const std::int64_t* lengths, bool reverse,
                  bool relu, const S* hs, const S* d_out, const S* d_h_n, const GradsOut<S>& g) {
    const Schedule sch(d.T, d.B, lengths, reverse);
    if (relu)
        fastrnn::rnn_backward<S, Relu>(d, x, w, sch, hs, d_out, d_h_n, g);
    else
        fastrnn::rnn_backward<S, Tanh>(d, x, w, sch, hs, d_out, d_h_n, g);
}

#define INSTANTIATE(S)                                                                                 \
    template void rnn_forward<S>(const Dims&, const S*, const Weights<S>&, const S*, const std::int64_t*, \
                                 bool, bool, S*, S*, S*);                                              \
    template void rnn_backward<S>(const Dims&, const S*, const Weights<S>&, const std::int64_t*, bool,  \
                                  bool, const S*, const S*, const S*, const GradsOut<S>&);
INSTANTIATE(float)
INSTANTIATE(double)

}  // namespace fastrnn::kernels
