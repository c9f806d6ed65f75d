// The cell policies behind the entry points of kernels.hpp, for float and
// double. Kernel translation units hold all the hot code and include no
// Python headers, so they can be compiled once per instruction set (DESIGN §7).
#include "kernels.hpp"

#include "cells/gru.hpp"
#include "cells/lstm.hpp"
#include "cells/rnn.hpp"

#include <stdexcept>

namespace fastrnn::kernels {

namespace {

template <typename Cell>
struct Tag {
    using type = Cell;
};

// f(Tag<Cell>{}) with the cell policy of c and o's activations. The pairs
// (recurrent activation, activation) compiled as fused vector code are
// (sigmoid, tanh), the default, and (hard_sigmoid, tanh), Keras 2's; the
// SimpleRNN's tanh and relu. Every other choice runs the same cells with
// Dynamic activations (scalar code): each fused pair costs a copy of every
// cell's forward and backward in compile time and binary size.
template <typename S, template <typename, typename> class Cell, typename F>
void with_gate_activations(const Options<S>& o, F&& f) {
    if (o.act == Activation::tanh && o.ract == Activation::sigmoid) return f(Tag<Cell<Tanh, Sigmoid>>{});
    if (o.act == Activation::tanh && o.ract == Activation::hard_sigmoid) return f(Tag<Cell<Tanh, HardSigmoid>>{});
    f(Tag<Cell<Dynamic, Dynamic>>{});
}

template <typename S, bool Peep>
struct LSTMOf {
    template <typename A, typename R>
    using type = LSTMCell<S, Peep, A, R>;
};
template <typename S, bool ResetAfter>
struct GRUOf {
    template <typename A, typename R>
    using type = GRUCell<S, ResetAfter, A, R>;
};

template <typename S, typename F>
void with_cell(const CellSpec& c, bool peephole, const Options<S>& o, F&& f) {
    switch (c.kind) {
        case CellKind::lstm:
            return peephole ? with_gate_activations<S, LSTMOf<S, true>::template type>(o, f)
                            : with_gate_activations<S, LSTMOf<S, false>::template type>(o, f);
        case CellKind::gru:
            return c.option ? with_gate_activations<S, GRUOf<S, true>::template type>(o, f)
                            : with_gate_activations<S, GRUOf<S, false>::template type>(o, f);
        case CellKind::rnn:
            if (c.option || o.act == Activation::relu) return f(Tag<RNNCell<S, Relu>>{});
            if (o.act == Activation::tanh) return f(Tag<RNNCell<S, Tanh>>{});
            return f(Tag<RNNCell<S, Dynamic>>{});
    }
}

template <typename S, typename Cell, typename W>
class CellEngine final : public LayerEngine<S> {
public:
    CellEngine(const Weights<S>& w, Index I, Index H, bool reverse, const typename W::Config& cfg)
        : w_(w, I, H, Options<S>{}, cfg), I_(I), H_(H), reverse_(reverse) {}
    void run(Index T, Index B, const S* x, const States<const S*>& s0, const std::int64_t* lengths, S* out,
             const States<S*>& s_n) const override {
        const Schedule sch(T, B, lengths, reverse_);
        fastrnn::forward<S, Cell, W>(Dims{T, B, I_, H_}, x, w_, s0, sch, out, s_n, Cache<S>{});
    }

private:
    PackedLayer<S, Cell, W> w_;
    Index I_, H_;
    bool reverse_;
};

// Whether a training call runs in bf16 (Bf16TrainFormat); refuses what it
// cannot run there.
template <typename S>
bool bf16_training(const Format& f, const Options<S>& o) {
    if (f.precision == Precision::native) return false;
    if (f.precision != Precision::bf16) throw std::invalid_argument("training runs in float32 or bfloat16, not int8");
    if (!std::is_same_v<S, float>) throw std::invalid_argument("precision='bfloat16' needs float32 arrays, got float64");
    if (o.rmask)
        throw std::invalid_argument("precision='bfloat16' cannot be combined with recurrent_mask "
                                    "(recurrent_dropout); use precision='float32'");
    return true;
}

}  // namespace

template <typename S>
void forward(const CellSpec& c, const Dims& d, const S* x, const Weights<S>& w, const Options<S>& o,
             const States<const S*>& s0, const std::int64_t* lengths, bool reverse, S* out, const States<S*>& s_n,
             const Cache<S>& cache, const Format& f) {
    const Schedule sch(d.T, d.B, lengths, reverse);
    const bool bf16 = bf16_training(f, o);
    with_cell<S>(c, w.peephole != nullptr, o, [&](auto tag) {
        using Cell = typename decltype(tag)::type;
        if constexpr (std::is_same_v<S, float>) {
            if (bf16) {
                const PackedLayer<S, Cell, Bf16TrainFormat> packed(w, d.I, d.H, o, f.path);
                return fastrnn::forward<S, Cell>(d, x, packed, s0, sch, out, s_n, cache);
            }
        }
        const PackedLayer<S, Cell> packed(w, d.I, d.H, o);
        fastrnn::forward<S, Cell>(d, x, packed, s0, sch, out, s_n, cache);
    });
}

template <typename S>
void backward(const CellSpec& c, const Dims& d, const S* x, const Weights<S>& w, const Options<S>& o,
              const std::int64_t* lengths, bool reverse, const Cache<S>& cache, const S* d_out,
              const States<const S*>& d_n, const Grads<S>& g, const Format& f) {
    const Schedule sch(d.T, d.B, lengths, reverse);
    const bool bf16 = bf16_training(f, o);
    with_cell<S>(c, w.peephole != nullptr, o, [&](auto tag) {
        using Cell = typename decltype(tag)::type;
        if constexpr (std::is_same_v<S, float>) {
            if (bf16)
                return fastrnn::backward<S, Cell, Bf16TrainFormat>(d, x, w, o, sch, cache, d_out, d_n, g, f.path);
        }
        fastrnn::backward<S, Cell>(d, x, w, o, sch, cache, d_out, d_n, g);
    });
}

template <typename S>
std::unique_ptr<LayerEngine<S>> make_engine(const CellSpec& c, const Weights<S>& w, Index I, Index H, bool reverse,
                                            const Format& f) {
    std::unique_ptr<LayerEngine<S>> e;
    with_cell<S>(c, w.peephole != nullptr, Options<S>{}, [&](auto tag) {
        using Cell = typename decltype(tag)::type;
        if constexpr (std::is_same_v<S, float>) {
            if (f.precision == Precision::bf16) {
                e = std::make_unique<CellEngine<S, Cell, Bf16Format>>(w, I, H, reverse, f.path);
                return;
            }
            if (f.precision == Precision::int8) {
                e = std::make_unique<CellEngine<S, Cell, Int8Format>>(w, I, H, reverse, f.path);
                return;
            }
        } else if (f.precision != Precision::native) {
            throw std::invalid_argument("bfloat16 and int8 engines need float32 weights");
        }
        e = std::make_unique<CellEngine<S, Cell, NativeFormat<S>>>(w, I, H, reverse, typename NativeFormat<S>::Config{});
    });
    return e;
}

#define INSTANTIATE(S)                                                                                          \
    template void forward<S>(const CellSpec&, const Dims&, const S*, const Weights<S>&, const Options<S>&,      \
                             const States<const S*>&, const std::int64_t*, bool, S*, const States<S*>&,         \
                             const Cache<S>&, const Format&);                                                   \
    template void backward<S>(const CellSpec&, const Dims&, const S*, const Weights<S>&, const Options<S>&,     \
                              const std::int64_t*, bool, const Cache<S>&, const S*, const States<const S*>&,    \
                              const Grads<S>&, const Format&);                                                  \
    template std::unique_ptr<LayerEngine<S>> make_engine<S>(const CellSpec&, const Weights<S>&, Index, Index, bool, \
                                                            const Format&);
INSTANTIATE(float)
INSTANTIATE(double)

}  // namespace fastrnn::kernels
