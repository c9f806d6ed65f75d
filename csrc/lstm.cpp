// LSTM entry points for float and double. Kernel translation units hold all
// the hot code and include no Python headers, so they can be compiled once
// per instruction set (DESIGN §7).
#include "kernels.hpp"

namespace fastrnn::kernels {

template <typename S>
void lstm_forward(const Dims& d, const S* x, const Weights<S>& w, const S* h0, const S* c0,
                  const std::int64_t* lengths, bool reverse, S* out, S* h_n, S* c_n, LSTMCache<S> cache) {
    const Schedule sch(d.T, d.B, lengths, reverse);
    if (w.peephole)
        fastrnn::lstm_forward<S, true>(d, x, w, h0, c0, sch, out, h_n, c_n, cache);
    else
        fastrnn::lstm_forward<S, false>(d, x, w, h0, c0, sch, out, h_n, c_n, cache);
}

template <typename S>
void lstm_backward(const Dims& d, const S* x, const Weights<S>& w, const std::int64_t* lengths, bool reverse,
                   const LSTMCache<S>& cache, const S* d_out, const S* d_h_n, const S* d_c_n,
                   const LSTMGradsOut<S>& g) {
    const Schedule sch(d.T, d.B, lengths, reverse);
    if (w.peephole)
        fastrnn::lstm_backward<S, true>(d, x, w, sch, cache, d_out, d_h_n, d_c_n, g);
    else
        fastrnn::lstm_backward<S, false>(d, x, w, sch, cache, d_out, d_h_n, d_c_n, g);
}

#define INSTANTIATE(S)                                                                                  \
    template void lstm_forward<S>(const Dims&, const S*, const Weights<S>&, const S*, const S*,        \
                                  const std::int64_t*, bool, S*, S*, S*, LSTMCache<S>);                 \
    template void lstm_backward<S>(const Dims&, const S*, const Weights<S>&, const std::int64_t*, bool, \
                                   const LSTMCache<S>&, const S*, const S*, const S*, const LSTMGradsOut<S>&);
INSTANTIATE(float)
INSTANTIATE(double)

}  // namespace fastrnn::kernels
