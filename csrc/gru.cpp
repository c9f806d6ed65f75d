// GRU entry points for float and double (see lstm.cpp).
#include "kernels.hpp"

namespace fastrnn::kernels {

template <typename S>
void gru_forward(const Dims& d, const S* x, const Weights<S>& w, const S* h0, const std::int64_t* lengths,
                 bool reverse, bool reset_after, S* out, S* h_n, GRUCache<S> cache) {
    const Schedule sch(d.T, d.B, lengths, reverse);
    if (reset_after)
        fastrnn::gru_forward<S, true>(d, x, w, h0, sch, out, h_n, cache);
    else
        fastrnn::gru_forward<S, false>(d, x, w, h0, sch, out, h_n, cache);
}

template <typename S>
void gru_backward(const Dims& d, const S* x, const Weights<S>& w, const std::int64_t* lengths, bool reverse,
                  bool reset_after, const GRUCache<S>& cache, const S* d_out, const S* d_h_n, const GradsOut<S>& g) {
    const Schedule sch(d.T, d.B, lengths, reverse);
    if (reset_after)
        fastrnn::gru_backward<S, true>(d, x, w, sch, cache, d_out, d_h_n, g);
    else
        fastrnn::gru_backward<S, false>(d, x, w, sch, cache, d_out, d_h_n, g);
}

#define INSTANTIATE(S)                                                                                 \
    template void gru_forward<S>(const Dims&, const S*, const Weights<S>&, const S*, const std::int64_t*, \
                                 bool, bool, S*, S*, GRUCache<S>);                                     \
    template void gru_backward<S>(const Dims&, const S*, const Weights<S>&, const std::int64_t*, bool,  \
                                  bool, const GRUCache<S>&, const S*, const S*, const GradsOut<S>&);
INSTANTIATE(float)
INSTANTIATE(double)

}  // namespace fastrnn::kernels
