// pybind11 bindings of the kernels: check, allocate, release the GIL, run.
//
// fastrnn/functional.py and fastrnn/layers.py validate arguments with
// user-facing messages and pass C-contiguous arrays of one dtype; the checks
// here only keep a wrong call from reading out of bounds (ValueError, never a
// crash). Results cross as named types: ForwardResult, GradsResult, and the
// training caches LSTMCache / GRUCache / RNNCache, which hold the forward's
// inputs and options so backward takes the cache alone. EngineLayer is one
// packed layer-direction of fastrnn.engine. Outputs and caches are NumPy
// arrays owned by Python. The interface is typed in python/fastrnn/_core.pyi.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "dense.hpp"
#include "loss.hpp"
#include "optim.hpp"
#include "kernels.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace py = pybind11;
using namespace fastrnn;

namespace {

template <typename S>
using Arr = py::array_t<S, py::array::c_style>;
using Lengths = std::optional<py::array_t<std::int64_t, py::array::c_style>>;

void require(bool ok, const std::string& what) {
    if (!ok) throw std::invalid_argument("fastrnn._core: " + what);
}

std::string shape_str(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
    return s + (a.ndim() == 1 ? ",)" : ")");
}

void check_shape(const py::array& a, std::initializer_list<Index> shape, const char* name) {
    bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
    Index i = 0;
    for (Index n : shape) ok = ok && a.shape(i++) == n;
    if (!ok) {
        std::string want = "(";
        i = 0;
        for (Index n : shape) want += (i++ ? ", " : "") + std::to_string(n);
        require(false, std::string(name) + " must have shape " + want + (shape.size() == 1 ? ",)" : ")") +
                           ", got " + shape_str(a));
    }
}

// Product of sizes, refusing results that do not fit (before any allocation).
Index checked_size(std::initializer_list<Index> dims, const char* name) {
    Index total = 1;
    for (Index n : dims) {
        require(n >= 0, "negative size");
        if (n != 0 && total > std::numeric_limits<Index>::max() / 8 / n)
            throw std::overflow_error(std::string("fastrnn._core: the size of ") + name + " overflows");
        total *= n;
    }
    return total;
}

[[noreturn]] void out_of_memory(const char* name, std::initializer_list<Index> shape, std::size_t bytes) {
    std::string s = "(";
    Index i = 0;
    for (Index n : shape) s += (i++ ? ", " : "") + std::to_string(n);
    char gib[32];
    std::snprintf(gib, sizeof gib, "%.1f", static_cast<double>(bytes) / (1 << 30));
    const std::string msg = std::string("fastrnn: cannot allocate ") + gib + " GiB for " + name + " of shape " + s + ")";
    PyErr_SetString(PyExc_MemoryError, msg.c_str());
    throw py::error_already_set();
}

// Outputs and caches start on a cache line, like the kernels' own buffers:
// threads write them in disjoint unit ranges (common.hpp). They bypass the
// kernels' block cache: they live on in Python, and blocks they took from the
// cache would leave it empty for the next call's buffers (a training step of
// LSTM mid_b32 took 5% longer that way); freed, they go to the array pool
// (array_pool.cpp). Allocated with the GIL held, so a failure becomes a
// MemoryError naming the array.
template <typename S>
Arr<S> empty(const char* name, std::initializer_list<Index> shape) {
    const std::size_t bytes = static_cast<std::size_t>(std::max<Index>(checked_size(shape, name), 1)) * sizeof(S);
    void* data = allocate_array(bytes);
    if (!data) out_of_memory(name, shape, bytes);
    py::capsule owner(data, [](void* p) { free_array(p); });
    return Arr<S>(std::vector<py::ssize_t>(shape.begin(), shape.end()), static_cast<S*>(data), owner);
}

template <typename S>
Arr<S> zeros(const char* name, std::initializer_list<Index> shape) {
    Arr<S> a = empty<S>(name, shape);
    std::memset(a.mutable_data(), 0, a.size() * sizeof(S));
    return a;
}

// Sizes from x and w_hh (and an LSTM projection's w_hr (P, H), whose w_hh
// is (G*H, P)), and the checks every entry point shares.
template <typename S>
Dims dims_of(const Arr<S>& x, const Arr<S>& w_ih, const Arr<S>& w_hh, Index G, const Arr<S>* w_hr = nullptr) {
    require(x.ndim() == 3, "x must have rank 3 (T, B, I), got shape " + shape_str(x));
    if (w_hr) {
        require(w_hr->ndim() == 2 && w_hr->shape(0) > 0, "w_hr must have shape (P, H), got " + shape_str(*w_hr));
        check_shape(w_hh, {G * w_hr->shape(1), w_hr->shape(0)}, "w_hh");
    }
    require(w_hh.ndim() == 2 && (w_hr || w_hh.shape(0) == G * w_hh.shape(1)),
            "w_hh must have shape (G*H, H), got " + shape_str(w_hh));
    Dims d{x.shape(0), x.shape(1), x.shape(2), w_hr ? w_hr->shape(1) : w_hh.shape(1)};
    checked_size({d.T + 1, d.B, G * d.H}, "the outputs of x and w_hh");
    check_shape(w_ih, {G * d.H, d.I}, "w_ih");
    return d;
}

const std::int64_t* lengths_ptr(const Lengths& lengths, const Dims& d) {
    if (!lengths) return nullptr;
    check_shape(*lengths, {d.B}, "lengths");
    const std::int64_t* p = lengths->data();
    for (Index b = 0; b < d.B; ++b) require(p[b] >= 0 && p[b] <= d.T, "lengths must lie in [0, T]");
    return p;
}

template <typename S>
Weights<S> weights(const Dims& d, Index G, const Arr<S>& w_ih, const Arr<S>& w_hh, const Arr<S>& b_ih,
                   const Arr<S>& b_hh) {
    check_shape(b_ih, {G * d.H}, "b_ih");
    check_shape(b_hh, {G * d.H}, "b_hh");
    return {w_ih.data(), w_hh.data(), b_ih.data(), b_hh.data()};
}

// A (T, B, n) sequence the kernels write (out, dx): zeros when lengths leave
// padding they never write, else left uninitialised.
template <typename S>
Arr<S> sequence(const char* name, const Dims& d, Index n, const std::int64_t* lengths) {
    return lengths ? zeros<S>(name, {d.T, d.B, n}) : empty<S>(name, {d.T, d.B, n});
}

using kernels::CellKind;

constexpr const char* cell_name(CellKind k) {
    return k == CellKind::lstm ? "lstm" : k == CellKind::gru ? "gru" : "rnn";
}

// The training cache of one layer-direction as Python holds it: the
// forward's inputs (references, not copies) and options, then the kernel's
// saved arrays in step layout. One C++ type per cell, so each binds as a
// class of its own (LSTMCache, GRUCache, RNNCache) and a cache cannot reach
// another cell's backward. Read-only from Python.
struct CacheData {
    py::array x, w_ih, w_hh;
    py::object peephole = py::none(), lengths = py::none();  // None when absent
    bool reverse = false, option = false;  // option: GRU reset_after, SimpleRNN relu
    // Variant options (docs/variants.md): activations, leak, zoneout p and masks
    Activation act = Activation::tanh, ract = Activation::sigmoid;
    double leak = 1, zoneout = 0;
    py::object zoneout_mask = py::none(), zoneout_mask_c = py::none(), recurrent_mask = py::none();
    py::object ln_gain = py::none(), ln_cell = py::none();  // layer_norm's parameters
    py::object lnx = py::none(), lnh = py::none(), lnc = py::none(), rstd = py::none();  // and saved arrays
    py::object gates = py::none(), hs = py::none(), cs = py::none(), hn = py::none();  // None where absent
    py::object w_hr = py::none(), ms = py::none();  // an LSTM projection and its saved m
};
template <CellKind K>
struct CellCache : CacheData {};

// What a forward call returns; c_n and cache are None where absent.
struct ForwardResult {
    py::object out = py::none(), h_n = py::none(), c_n = py::none(), cache = py::none();
};

// What a backward call returns; dc0, dpeephole are None where absent.
struct GradsResult {
    py::object dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dpeephole;
    py::object dln_gain = py::none(), dln_cell = py::none();  // with layer_norm
    py::object dw_hr = py::none();                            // with a projection
};

constexpr const char* kActivations[] = {"tanh", "sigmoid", "hard_sigmoid", "relu", "linear", "softsign"};

Activation activation_of(const std::string& name, const char* arg) {
    for (int k = 0; k < 6; ++k)
        if (name == kActivations[k]) return static_cast<Activation>(k);
    require(false, std::string(arg) + " must be one of tanh, sigmoid, hard_sigmoid, relu, linear, softsign, got '" +
                       name + "'");
    return Activation::tanh;
}

// The variant options of a forward call as the kernels take them (checked
// here only as far as memory and the kernels' assumptions go).
template <typename S>
struct VariantArgs {
    std::string activation = "tanh", recurrent_activation = "sigmoid";
    double leak_rate = 1, zoneout = 0;
    std::optional<Arr<S>> zoneout_mask, zoneout_mask_c, recurrent_mask, ln_gain, ln_cell, w_hr;
};

template <typename S>
void set_options(CacheData& c, const VariantArgs<S>& v, const Dims& d, Index G, int states) {
    c.act = activation_of(v.activation, "activation");
    c.ract = activation_of(v.recurrent_activation, "recurrent_activation");
    require(v.leak_rate > 0 && v.leak_rate <= 1, "leak_rate must lie in (0, 1]");
    require(v.zoneout >= 0 && v.zoneout < 1, "zoneout must lie in [0, 1)");
    c.leak = v.leak_rate, c.zoneout = v.zoneout;
    if (v.zoneout_mask) {
        check_shape(*v.zoneout_mask, {d.T, d.B, d.H}, "zoneout_mask");
        c.zoneout_mask = *v.zoneout_mask;
    }
    require(!v.zoneout_mask_c || states == 2, "zoneout_mask_c is an LSTM's");
    if (v.zoneout_mask_c) {
        check_shape(*v.zoneout_mask_c, {d.T, d.B, d.H}, "zoneout_mask_c");
        c.zoneout_mask_c = *v.zoneout_mask_c;
    }
    if (v.recurrent_mask) {
        check_shape(*v.recurrent_mask, {G, d.B, d.H}, "recurrent_mask");
        c.recurrent_mask = *v.recurrent_mask;
    }
    if (v.ln_gain) {
        check_shape(*v.ln_gain, {2, G * d.H}, "ln_gain");
        c.ln_gain = *v.ln_gain;
    }
    require(v.ln_cell.has_value() == (v.ln_gain && states == 2), "ln_cell must be given exactly with an LSTM's ln_gain");
    if (v.ln_cell) {
        check_shape(*v.ln_cell, {2, d.H}, "ln_cell");
        c.ln_cell = *v.ln_cell;
    }
}

template <typename S>
Options<S> options_of(const CacheData& c) {
    Options<S> o;
    o.act = c.act, o.ract = c.ract, o.leak = static_cast<S>(c.leak), o.zoneout = static_cast<S>(c.zoneout);
    if (!c.zoneout_mask.is_none()) o.zmask[0] = py::reinterpret_borrow<Arr<S>>(c.zoneout_mask).data();
    if (!c.zoneout_mask_c.is_none()) o.zmask[1] = py::reinterpret_borrow<Arr<S>>(c.zoneout_mask_c).data();
    if (!c.recurrent_mask.is_none()) o.rmask = py::reinterpret_borrow<Arr<S>>(c.recurrent_mask).data();
    if (!c.ln_gain.is_none()) o.ln_gain = py::reinterpret_borrow<Arr<S>>(c.ln_gain).data();
    if (!c.ln_cell.is_none()) o.ln_cell = py::reinterpret_borrow<Arr<S>>(c.ln_cell).data();
    return o;
}

// precision= of a functional call: "float32" (the arrays' dtype) or
// "bfloat16" (float32 arrays only) on kernel path `path` (None: the process's
// default, FASTRNN_BF16_PATH or the best this CPU runs).
template <typename S>
kernels::Format call_format(const std::string& precision, const std::optional<std::string>& path) {
    if (precision == "float32") {
        require(!path, "path is for precision 'bfloat16'");
        return {};
    }
    if (precision != "bfloat16")
        throw std::invalid_argument("precision must be 'float32' or 'bfloat16', got '" + precision + "'");
    if (!std::is_same_v<S, float>)
        throw std::invalid_argument("precision='bfloat16' needs float32 arrays (bf16 products of float32 "
                                    "master weights), got float64");
    return {kernels::Precision::bf16, path ? lowp::bf16_path_named(*path, "path") : lowp::bf16_path()};
}

// One forward for every cell. c0 and peephole are LSTM's (None otherwise).
template <typename S, CellKind K>
ForwardResult forward(const Arr<S>& x, const Arr<S>& w_ih, const Arr<S>& w_hh, const Arr<S>& b_ih,
                      const Arr<S>& b_hh, const Arr<S>& h0, const std::optional<Arr<S>>& c0,
                      const std::optional<Arr<S>>& peephole, const Lengths& lengths, bool reverse, bool training,
                      bool option, const VariantArgs<S>& v = {}, const kernels::Format& f = {}) {
    const Index G = kernels::gates(K);
    const int NS = kernels::states(K);
    require(!v.w_hr || K == CellKind::lstm, "w_hr (a projection) is an LSTM's");
    const Dims d = dims_of(x, w_ih, w_hh, G, v.w_hr ? &*v.w_hr : nullptr);
    Weights<S> w = weights(d, G, w_ih, w_hh, b_ih, b_hh);
    if (peephole) {
        check_shape(*peephole, {3, d.H}, "peephole");
        w.peephole = peephole->data();
    }
    if (v.w_hr) {  // the blends and masks of h assume h has H units
        require(!v.recurrent_mask && !v.zoneout_mask && !v.zoneout_mask_c && v.zoneout == 0,
                "w_hr (proj_size) cannot be combined with recurrent_mask or zoneout");
        w.w_hr = v.w_hr->data(), w.P = v.w_hr->shape(0);
    }
    const Index R = w.R(d.H);
    check_shape(h0, {d.B, R}, "h0");
    require(c0.has_value() == (NS == 2), "c0 must be given exactly for an LSTM");
    if (c0) check_shape(*c0, {d.B, d.H}, "c0");
    const std::int64_t* len = lengths_ptr(lengths, d);
    ForwardResult r;
    Arr<S> out = sequence<S>("out", d, R, len), h_n = empty<S>("h_n", {d.B, R});
    r.out = out, r.h_n = h_n;
    States<S*> s_n{h_n.mutable_data(), nullptr};
    if (NS == 2) {
        Arr<S> c_n = empty<S>("c_n", {d.B, d.H});
        s_n[1] = c_n.mutable_data();
        r.c_n = c_n;
    }
    CellCache<K> c;
    require(!v.ln_gain || K == CellKind::lstm || (K == CellKind::gru && option),
            "layer_norm needs an LSTM or a GRU with reset_after");
    set_options(c, v, d, G, NS);
    const Options<S> opt = options_of<S>(c);
    Cache<S> cache;
    if (training) {
        c.x = x, c.w_ih = w_ih, c.w_hh = w_hh, c.lengths = lengths ? py::object(*lengths) : py::none();
        c.peephole = peephole ? py::object(*peephole) : py::none();
        c.reverse = reverse, c.option = option;
        auto keep = [&](const char* name, std::initializer_list<Index> shape, S*& ptr, py::object& field) {
            Arr<S> a = empty<S>(name, shape);
            ptr = a.mutable_data();
            field = a;
        };
        if (K != CellKind::rnn || opt.blends())  // a blended SimpleRNN keeps ĥ there
            keep("the training cache (gates)", {d.T, d.B, G * d.H}, cache.gates, c.gates);
        keep("the training cache (h)", {d.T + 1, d.B, R}, cache.hs, c.hs);
        if (v.w_hr) {
            c.w_hr = *v.w_hr;
            keep("the training cache (m)", {d.T, d.B, d.H}, cache.ms, c.ms);
        }
        if (K == CellKind::lstm) keep("the training cache (c)", {d.T + 1, d.B, d.H}, cache.cs, c.cs);
        if (K == CellKind::gru && option) keep("the training cache (n)", {d.T, d.B, d.H}, cache.hn, c.hn);
        if (opt.ln_gain) {
            keep("the training cache (LN of W_ih x)", {d.T, d.B, G * d.H}, cache.lnx, c.lnx);
            keep("the training cache (LN of W_hh h)", {d.T, d.B, G * d.H}, cache.lnh, c.lnh);
            keep("the training cache (LN rstd)", {d.T, d.B, 3}, cache.rstd, c.rstd);
            if (opt.ln_cell) keep("the training cache (LN of c)", {d.T, d.B, d.H}, cache.lnc, c.lnc);
        }
        r.cache = py::cast(std::move(c));
    }
    {
        py::gil_scoped_release nogil;
        kernels::forward<S>({K, option}, d, x.data(), w, opt, {h0.data(), c0 ? c0->data() : nullptr}, len,
                            reverse, out.mutable_data(), s_n, cache, f);
    }
    return r;
}

// A cache field as the array the kernel expects (dtype S, C order, shape):
// caches are made by forward(), so a mismatch means a misuse, never a crash.
template <typename S>
S* cache_array(const py::object& a, std::initializer_list<Index> shape, const char* name) {
    require(py::isinstance<Arr<S>>(a), std::string("the cache's ") + name + " is not a C-ordered array of the gradients' dtype");
    Arr<S> arr = py::reinterpret_borrow<Arr<S>>(a);
    check_shape(arr, shape, name);
    return const_cast<S*>(arr.data());
}

// One backward for every cell: the cache holds the forward's inputs and
// options; d_c_n is LSTM's (None otherwise).
template <typename S, CellKind K>
GradsResult backward(const CellCache<K>& c, const Arr<S>& d_out, const Arr<S>& d_h_n,
                     const std::optional<Arr<S>>& d_c_n, const kernels::Format& f = {}) {
    const Index G = kernels::gates(K);
    const int NS = kernels::states(K);
    require(py::isinstance<Arr<S>>(c.x) && py::isinstance<Arr<S>>(c.w_ih) && py::isinstance<Arr<S>>(c.w_hh),
            "the cache's arrays must have the gradients' dtype");
    const Arr<S> x = py::reinterpret_borrow<Arr<S>>(c.x), w_ih = py::reinterpret_borrow<Arr<S>>(c.w_ih),
                 w_hh = py::reinterpret_borrow<Arr<S>>(c.w_hh);
    std::optional<Arr<S>> w_hr;
    if (!c.w_hr.is_none()) {
        require(py::isinstance<Arr<S>>(c.w_hr), "the cache's arrays must have the gradients' dtype");
        w_hr = py::reinterpret_borrow<Arr<S>>(c.w_hr);
    }
    const Dims d = dims_of(x, w_ih, w_hh, G, w_hr ? &*w_hr : nullptr);
    Weights<S> w{w_ih.data(), w_hh.data(), nullptr, nullptr};
    if (w_hr) w.w_hr = w_hr->data(), w.P = w_hr->shape(0);
    const Index R = w.R(d.H);
    if (!c.peephole.is_none()) w.peephole = cache_array<S>(c.peephole, {3, d.H}, "peephole");
    const Lengths lengths = c.lengths.is_none() ? Lengths() : Lengths(py::cast<py::array_t<std::int64_t, py::array::c_style>>(c.lengths));
    const std::int64_t* len = lengths_ptr(lengths, d);
    Cache<S> cache;
    if (K != CellKind::rnn || !c.gates.is_none()) cache.gates = cache_array<S>(c.gates, {d.T, d.B, G * d.H}, "gates");
    cache.hs = cache_array<S>(c.hs, {d.T + 1, d.B, R}, "hs");
    if (w_hr) cache.ms = cache_array<S>(c.ms, {d.T, d.B, d.H}, "ms");
    if (K == CellKind::lstm) cache.cs = cache_array<S>(c.cs, {d.T + 1, d.B, d.H}, "cs");
    if (K == CellKind::gru && c.option) cache.hn = cache_array<S>(c.hn, {d.T, d.B, d.H}, "hn");
    const Options<S> opt = options_of<S>(c);
    if (opt.ln_gain) {
        cache.lnx = cache_array<S>(c.lnx, {d.T, d.B, G * d.H}, "lnx");
        cache.lnh = cache_array<S>(c.lnh, {d.T, d.B, G * d.H}, "lnh");
        cache.rstd = cache_array<S>(c.rstd, {d.T, d.B, 3}, "rstd");
        if (opt.ln_cell) cache.lnc = cache_array<S>(c.lnc, {d.T, d.B, d.H}, "lnc");
    }
    check_shape(d_out, {d.T, d.B, R}, "d_out");
    check_shape(d_h_n, {d.B, R}, "d_h_n");
    require(d_c_n.has_value() == (NS == 2), "d_c_n must be given exactly for an LSTM");
    if (d_c_n) check_shape(*d_c_n, {d.B, d.H}, "d_c_n");
    Arr<S> dx = sequence<S>("dx", d, d.I, len), dh0 = empty<S>("dh0", {d.B, R}),
           dw_ih = empty<S>("dw_ih", {G * d.H, d.I}), dw_hh = empty<S>("dw_hh", {G * d.H, R}),
           db_ih = empty<S>("db_ih", {G * d.H}), db_hh = empty<S>("db_hh", {G * d.H});
    GradsResult r{dx, dh0, py::none(), dw_ih, dw_hh, db_ih, db_hh, py::none()};
    Grads<S> g;
    g.dx = dx.mutable_data(), g.dh0 = dh0.mutable_data(), g.dw_ih = dw_ih.mutable_data();
    g.dw_hh = dw_hh.mutable_data(), g.db_ih = db_ih.mutable_data(), g.db_hh = db_hh.mutable_data();
    if (NS == 2) {
        Arr<S> dc0 = empty<S>("dc0", {d.B, d.H});
        g.dc0 = dc0.mutable_data();
        r.dc0 = dc0;
    }
    if (w.peephole) {
        Arr<S> dp = empty<S>("dpeephole", {3, d.H});
        g.dpeephole = dp.mutable_data();
        r.dpeephole = dp;
    }
    if (opt.ln_gain) {
        Arr<S> dg = empty<S>("dln_gain", {2, G * d.H});
        g.dln_gain = dg.mutable_data();
        r.dln_gain = dg;
    }
    if (opt.ln_cell) {
        Arr<S> dc = empty<S>("dln_cell", {2, d.H});
        g.dln_cell = dc.mutable_data();
        r.dln_cell = dc;
    }
    if (w_hr) {
        Arr<S> dp = empty<S>("dw_hr", {R, d.H});
        g.dw_hr = dp.mutable_data();
        r.dw_hr = dp;
    }
    {
        py::gil_scoped_release nogil;
        kernels::backward<S>({K, c.option}, d, x.data(), w, opt, len, c.reverse, cache, d_out.data(),
                             {d_h_n.data(), d_c_n ? d_c_n->data() : nullptr}, g, f);
    }
    return r;
}

template <CellKind K>
void bind_cache(py::module_& m, const char* name) {
    py::class_<CellCache<K>> c(m, name, "Training cache of one layer-direction (opaque; read-only)");
    c.def_property_readonly("cell", [](const CellCache<K>&) { return cell_name(K); })
        .def_readonly("x", &CacheData::x)
        .def_readonly("w_ih", &CacheData::w_ih)
        .def_readonly("w_hh", &CacheData::w_hh)
        .def_readonly("lengths", &CacheData::lengths)
        .def_readonly("reverse", &CacheData::reverse)
        .def_readonly("hs", &CacheData::hs);
    if (K != CellKind::rnn) c.def_readonly("gates", &CacheData::gates);
    if (K == CellKind::lstm)
        c.def_readonly("peephole", &CacheData::peephole).def_readonly("cs", &CacheData::cs).def_readonly("w_hr", &CacheData::w_hr);
    if (K == CellKind::gru) c.def_readonly("reset_after", &CacheData::option).def_readonly("hn", &CacheData::hn);
    if (K == CellKind::rnn) c.def_property_readonly("nonlinearity", [](const CellCache<K>& self) {
        return self.option ? "relu" : kActivations[static_cast<int>(self.act)];
    });
    if (K != CellKind::rnn)
        c.def_property_readonly("activation", [](const CellCache<K>& self) { return kActivations[static_cast<int>(self.act)]; })
            .def_property_readonly("recurrent_activation",
                                   [](const CellCache<K>& self) { return kActivations[static_cast<int>(self.ract)]; });
    if (K != CellKind::lstm) c.def_readonly("leak_rate", &CacheData::leak);
    c.def_readonly("zoneout", &CacheData::zoneout)
        .def_readonly("zoneout_mask", &CacheData::zoneout_mask)
        .def_readonly("recurrent_mask", &CacheData::recurrent_mask);
    if (K == CellKind::lstm) c.def_readonly("zoneout_mask_c", &CacheData::zoneout_mask_c);
}

template <typename S>
void bind_dtype(py::module_& m) {
    // noconvert: functional.py passes exact dtypes; a float64 array must never
    // be silently narrowed by the float overload.
    m.def("lstm_forward",
          [](const Arr<S>& x, const Arr<S>& w_ih, const Arr<S>& w_hh, const Arr<S>& b_ih, const Arr<S>& b_hh,
             const Arr<S>& h0, const Arr<S>& c0, const std::optional<Arr<S>>& peephole, const Lengths& lengths,
             bool reverse, bool training, std::string activation, std::string recurrent_activation, double zoneout,
             std::optional<Arr<S>> zoneout_mask, std::optional<Arr<S>> zoneout_mask_c,
             std::optional<Arr<S>> recurrent_mask, std::optional<Arr<S>> ln_gain, std::optional<Arr<S>> ln_cell,
             std::optional<Arr<S>> w_hr, const std::string& precision, const std::optional<std::string>& path) {
              return forward<S, CellKind::lstm>(x, w_ih, w_hh, b_ih, b_hh, h0, c0, peephole, lengths, reverse,
                                                training, false,
                                                {activation, recurrent_activation, 1.0, zoneout, zoneout_mask,
                                                 zoneout_mask_c, recurrent_mask, ln_gain, ln_cell, w_hr},
                                                call_format<S>(precision, path));
          },
          py::arg("x").noconvert(), py::arg("w_ih").noconvert(), py::arg("w_hh").noconvert(),
          py::arg("b_ih").noconvert(), py::arg("b_hh").noconvert(), py::arg("h0").noconvert(),
          py::arg("c0").noconvert(), py::arg("peephole").noconvert(), py::arg("lengths").noconvert(),
          py::arg("reverse"), py::arg("training"), py::kw_only(), py::arg("activation") = "tanh",
          py::arg("recurrent_activation") = "sigmoid", py::arg("zoneout") = 0.0,
          py::arg("zoneout_mask").noconvert() = py::none(), py::arg("zoneout_mask_c").noconvert() = py::none(),
          py::arg("recurrent_mask").noconvert() = py::none(), py::arg("ln_gain").noconvert() = py::none(),
          py::arg("ln_cell").noconvert() = py::none(), py::arg("w_hr").noconvert() = py::none(),
          py::arg("precision") = "float32", py::arg("path") = py::none());
    m.def("gru_forward",
          [](const Arr<S>& x, const Arr<S>& w_ih, const Arr<S>& w_hh, const Arr<S>& b_ih, const Arr<S>& b_hh,
             const Arr<S>& h0, const Lengths& lengths, bool reverse, bool training, bool reset_after,
             std::string activation, std::string recurrent_activation, double leak_rate, double zoneout,
             std::optional<Arr<S>> zoneout_mask, std::optional<Arr<S>> recurrent_mask,
             std::optional<Arr<S>> ln_gain, const std::string& precision, const std::optional<std::string>& path) {
              return forward<S, CellKind::gru>(x, w_ih, w_hh, b_ih, b_hh, h0, std::nullopt, std::nullopt, lengths,
                                               reverse, training, reset_after,
                                               {activation, recurrent_activation, leak_rate, zoneout, zoneout_mask,
                                                std::nullopt, recurrent_mask, ln_gain, std::nullopt},
                                               call_format<S>(precision, path));
          },
          py::arg("x").noconvert(), py::arg("w_ih").noconvert(), py::arg("w_hh").noconvert(),
          py::arg("b_ih").noconvert(), py::arg("b_hh").noconvert(), py::arg("h0").noconvert(),
          py::arg("lengths").noconvert(), py::arg("reverse"), py::arg("training"), py::arg("reset_after"),
          py::kw_only(), py::arg("activation") = "tanh", py::arg("recurrent_activation") = "sigmoid",
          py::arg("leak_rate") = 1.0, py::arg("zoneout") = 0.0, py::arg("zoneout_mask").noconvert() = py::none(),
          py::arg("recurrent_mask").noconvert() = py::none(), py::arg("ln_gain").noconvert() = py::none(),
          py::arg("precision") = "float32", py::arg("path") = py::none());
    m.def("rnn_forward",
          [](const Arr<S>& x, const Arr<S>& w_ih, const Arr<S>& w_hh, const Arr<S>& b_ih, const Arr<S>& b_hh,
             const Arr<S>& h0, const Lengths& lengths, bool reverse, bool training, bool relu,
             std::string activation, double leak_rate, double zoneout, std::optional<Arr<S>> zoneout_mask,
             std::optional<Arr<S>> recurrent_mask, const std::string& precision,
             const std::optional<std::string>& path) {
              return forward<S, CellKind::rnn>(x, w_ih, w_hh, b_ih, b_hh, h0, std::nullopt, std::nullopt, lengths,
                                               reverse, training, relu,
                                               {activation, "sigmoid", leak_rate, zoneout, zoneout_mask, std::nullopt,
                                                recurrent_mask},
                                               call_format<S>(precision, path));
          },
          py::arg("x").noconvert(), py::arg("w_ih").noconvert(), py::arg("w_hh").noconvert(),
          py::arg("b_ih").noconvert(), py::arg("b_hh").noconvert(), py::arg("h0").noconvert(),
          py::arg("lengths").noconvert(), py::arg("reverse"), py::arg("training"), py::arg("relu"),
          py::kw_only(), py::arg("activation") = "tanh", py::arg("leak_rate") = 1.0, py::arg("zoneout") = 0.0,
          py::arg("zoneout_mask").noconvert() = py::none(), py::arg("recurrent_mask").noconvert() = py::none(),
          py::arg("precision") = "float32", py::arg("path") = py::none());
    m.def("lstm_backward",
          [](const CellCache<CellKind::lstm>& c, const Arr<S>& d_out, const Arr<S>& d_h_n, const Arr<S>& d_c_n,
             const std::string& precision, const std::optional<std::string>& path) {
              return backward<S, CellKind::lstm>(c, d_out, d_h_n, d_c_n, call_format<S>(precision, path));
          },
          py::arg("cache"), py::arg("d_out").noconvert(), py::arg("d_h_n").noconvert(),
          py::arg("d_c_n").noconvert(), py::kw_only(), py::arg("precision") = "float32", py::arg("path") = py::none());
    m.def("gru_backward",
          [](const CellCache<CellKind::gru>& c, const Arr<S>& d_out, const Arr<S>& d_h_n, const std::string& precision,
             const std::optional<std::string>& path) {
              return backward<S, CellKind::gru>(c, d_out, d_h_n, std::nullopt, call_format<S>(precision, path));
          },
          py::arg("cache"), py::arg("d_out").noconvert(), py::arg("d_h_n").noconvert(), py::kw_only(),
          py::arg("precision") = "float32", py::arg("path") = py::none());
    m.def("rnn_backward",
          [](const CellCache<CellKind::rnn>& c, const Arr<S>& d_out, const Arr<S>& d_h_n, const std::string& precision,
             const std::optional<std::string>& path) {
              return backward<S, CellKind::rnn>(c, d_out, d_h_n, std::nullopt, call_format<S>(precision, path));
          },
          py::arg("cache"), py::arg("d_out").noconvert(), py::arg("d_h_n").noconvert(), py::kw_only(),
          py::arg("precision") = "float32", py::arg("path") = py::none());
}

void bind_results(py::module_& m) {
    py::class_<ForwardResult>(m, "ForwardResult", "out, h_n, c_n (LSTM, else None), cache (training, else None)")
        .def_readonly("out", &ForwardResult::out)
        .def_readonly("h_n", &ForwardResult::h_n)
        .def_readonly("c_n", &ForwardResult::c_n)
        .def_readonly("cache", &ForwardResult::cache);
    py::class_<GradsResult>(m, "GradsResult", "Gradients of one layer-direction; dc0, dpeephole None where absent")
        .def_readonly("dx", &GradsResult::dx)
        .def_readonly("dh0", &GradsResult::dh0)
        .def_readonly("dc0", &GradsResult::dc0)
        .def_readonly("dw_ih", &GradsResult::dw_ih)
        .def_readonly("dw_hh", &GradsResult::dw_hh)
        .def_readonly("db_ih", &GradsResult::db_ih)
        .def_readonly("db_hh", &GradsResult::db_hh)
        .def_readonly("dpeephole", &GradsResult::dpeephole)
        .def_readonly("dln_gain", &GradsResult::dln_gain)
        .def_readonly("dln_cell", &GradsResult::dln_cell)
        .def_readonly("dw_hr", &GradsResult::dw_hr);
    bind_cache<CellKind::lstm>(m, "LSTMCache");
    bind_cache<CellKind::gru>(m, "GRUCache");
    bind_cache<CellKind::rnn>(m, "RNNCache");
}

// One layer-direction of an inference engine (python/fastrnn/engine.py):
// the weights packed once, in one dtype; run() is the forward pass in
// inference mode with optional preallocated outputs (the `out=` form).
// Calls release the GIL and share nothing mutable, so Python threads may
// run one engine at once.
class EngineLayer {
public:
    EngineLayer(CellKind kind, bool option, const py::array& w_ih, const py::array& w_hh, const py::array& b_ih,
                const py::array& b_hh, const std::optional<py::array>& peephole, bool reverse,
                const kernels::Format& format)
        : kind_(kind), reverse_(reverse), dtype_(w_ih.dtype()), format_(format) {
        if (py::isinstance<Arr<float>>(w_ih))
            f32_ = make<float>(option, w_ih, w_hh, b_ih, b_hh, peephole);
        else
            f64_ = make<double>(option, w_ih, w_hh, b_ih, b_hh, peephole);
    }

    // "float32" (the weights' dtype, float32 or float64), "bfloat16" or "int8"
    // on path `path` (None: the process's default, FASTRNN_BF16_PATH /
    // FASTRNN_INT8_PATH or the best this CPU runs). invalid_argument (ValueError)
    // lists what is available.
    static kernels::Format format(const std::string& precision, const std::optional<std::string>& path) {
        using kernels::Precision;
        if (precision == "float32") {
            require(!path, "path is for precision 'bfloat16' or 'int8'");
            return {};
        }
        if (precision == "bfloat16")
            return {Precision::bf16, path ? lowp::bf16_path_named(*path, "path") : lowp::bf16_path()};
        if (precision == "int8")
            return {Precision::int8, path ? lowp::int8_path_named(*path, "path") : lowp::int8_path()};
        throw std::invalid_argument("precision must be 'float32', 'bfloat16' or 'int8', got '" + precision + "'");
    }
    // The low-precision kernel path, or None for float32.
    std::optional<std::string> path() const {
        if (format_.precision == kernels::Precision::native) return std::nullopt;
        return std::string(lowp::path_name(format_.path));
    }

    Index input_size() const { return I_; }
    Index hidden_size() const { return H_; }
    bool reverse() const { return reverse_; }
    py::dtype dtype() const { return dtype_; }
    int states() const { return kernels::states(kind_); }
    // The packed weights in dtype S, or null when the engine has the other dtype.
    template <typename S>
    const kernels::LayerEngine<S>* packed() const {
        if constexpr (std::is_same_v<S, float>)
            return f32_.get();
        else
            return f64_.get();
    }

    // x (T, B, I) -> (out (T, B, H), h_n, c_n or None); outputs given are
    // written in place (never reallocated) and returned.
    template <typename S>
    py::tuple run(const Arr<S>& x, const Arr<S>& h0, const std::optional<Arr<S>>& c0, const Lengths& lengths,
                  std::optional<Arr<S>> out, std::optional<Arr<S>> h_n, std::optional<Arr<S>> c_n) const {
        const auto& e = engine<S>();
        require(x.ndim() == 3, "x must have rank 3 (T, B, I), got shape " + shape_str(x));
        const Dims d{x.shape(0), x.shape(1), x.shape(2), H_};
        check_shape(x, {d.T, d.B, I_}, "x");
        checked_size({d.T + 1, d.B, d.H}, "the outputs of x");
        check_shape(h0, {d.B, d.H}, "h0");
        require(c0.has_value() == (states() == 2), "c0 must be given exactly for an LSTM");
        if (c0) check_shape(*c0, {d.B, d.H}, "c0");
        const std::int64_t* len = lengths_ptr(lengths, d);
        auto output = [&](std::optional<Arr<S>>& a, const char* name, std::initializer_list<Index> shape) {
            if (a) {
                check_shape(*a, shape, name);
                require(a->writeable(), std::string(name) + " must be writeable");
            } else {
                a = empty<S>(name, shape);
            }
        };
        output(out, "out", {d.T, d.B, d.H});
        if (len) std::memset(out->mutable_data(), 0, out->size() * sizeof(S));  // padding is never written
        output(h_n, "h_n", {d.B, d.H});
        if (states() == 2) output(c_n, "c_n", {d.B, d.H});
        {
            py::gil_scoped_release nogil;
            e.run(d.T, d.B, x.data(), {h0.data(), c0 ? c0->data() : nullptr}, len, out->mutable_data(),
                  {h_n->mutable_data(), c_n ? c_n->mutable_data() : nullptr});
        }
        return py::make_tuple(*out, *h_n, c_n ? py::object(*c_n) : py::none());
    }

private:
    template <typename S>
    std::unique_ptr<kernels::LayerEngine<S>> make(bool option, const py::array& w_ih_, const py::array& w_hh_,
                                                  const py::array& b_ih_, const py::array& b_hh_,
                                                  const std::optional<py::array>& peephole_) {
        const Index G = kernels::gates(kind_);
        auto arr = [](const py::array& a, const char* name) {
            require(py::isinstance<Arr<S>>(a), std::string(name) + " must be a C-ordered array of the weights' dtype");
            return py::reinterpret_borrow<Arr<S>>(a);
        };
        const Arr<S> w_ih = arr(w_ih_, "w_ih"), w_hh = arr(w_hh_, "w_hh");
        require(w_hh.ndim() == 2 && w_hh.shape(0) == G * w_hh.shape(1) && w_hh.shape(1) > 0,
                "w_hh must have shape (G*H, H), got " + shape_str(w_hh));
        H_ = w_hh.shape(1);
        require(w_ih.ndim() == 2, "w_ih must have rank 2, got shape " + shape_str(w_ih));
        I_ = w_ih.shape(1);
        check_shape(w_ih, {G * H_, I_}, "w_ih");
        const Dims d{0, 0, I_, H_};
        Weights<S> w = weights(d, G, w_ih, w_hh, arr(b_ih_, "b_ih"), arr(b_hh_, "b_hh"));
        std::optional<Arr<S>> peephole;
        if (peephole_) {
            require(kind_ == CellKind::lstm, "peephole is LSTM's");
            peephole = arr(*peephole_, "peephole");
            check_shape(*peephole, {3, H_}, "peephole");
            w.peephole = peephole->data();
        }
        return kernels::make_engine<S>({kind_, option}, w, I_, H_, reverse_, format_);
    }

    template <typename S>
    const kernels::LayerEngine<S>& engine() const {
        if (const auto* e = packed<S>()) return *e;
        // the message only on failure: py::str(dtype) runs Python code (about 2 µs a step)
        throw std::invalid_argument(std::string("fastrnn._core: x must have the engine's dtype ") +
                                    py::str(dtype_).cast<std::string>());
    }

    CellKind kind_;
    bool reverse_;
    py::dtype dtype_;
    kernels::Format format_;
    Index I_ = 0, H_ = 0;
    std::unique_ptr<kernels::LayerEngine<float>> f32_;
    std::unique_ptr<kernels::LayerEngine<double>> f64_;
};

// The layers of a unidirectional engine advanced one time step together, in
// one call that releases the GIL once (fastrnn.engine's step()). step() is
// the fast path of a call whose arguments are already right: x (B, I) or
// (I,), the state None, h (L, B, H) or (h, c), out None or (y, state), every
// array of the engine's dtype, C-contiguous (out's writeable). It checks all
// of that (the checks that protect memory) and returns None when anything
// differs, building no message: fastrnn.engine then runs its own checks,
// which name the argument, or normalises the arguments and calls again.
class EngineStack {
public:
    explicit EngineStack(const py::list& layers) {
        require(!layers.empty(), "EngineStack needs at least one layer");
        for (const py::handle& l : layers) {
            const auto& e = l.cast<const EngineLayer&>();
            const EngineLayer* prev = layers_.empty() ? nullptr : layers_.back();
            require(!e.reverse(), "step() runs forward directions only");
            require(!prev || (e.states() == prev->states() && e.hidden_size() == prev->hidden_size() &&
                              e.input_size() == prev->hidden_size() && !e.packed<float>() == !prev->packed<float>()),
                    "the layers of an EngineStack must chain: one cell, dtype and hidden size");
            keep_.push_back(py::reinterpret_borrow<py::object>(l));
            layers_.push_back(&e);
        }
    }

    py::object step(py::handle x, py::handle state, py::handle out) const {
        return layers_[0]->packed<float>() ? step_as<float>(x, state, out) : step_as<double>(x, state, out);
    }

private:
    static bool is_pair(py::handle h) {
        return (PyTuple_Check(h.ptr()) || PyList_Check(h.ptr())) && PySequence_Fast_GET_SIZE(h.ptr()) == 2;
    }
    static py::handle item(py::handle pair, int k) { return PySequence_Fast_GET_ITEM(pair.ptr(), k); }

    // h's data if it is an array of dtype S in C order of shape (L, B, H), or
    // unbatched (L, H) (L = 0: no leading axis); else null.
    template <typename S>
    static S* array_of(py::handle h, Index L, Index B, Index H, bool batched, bool writeable) {
        if (!Arr<S>::check_(h)) return nullptr;
        const auto a = py::reinterpret_borrow<py::array>(h);
        const py::ssize_t n = (L ? 1 : 0) + (batched ? 1 : 0) + 1;
        if (a.ndim() != n || (L && a.shape(0) != L) || (batched && a.shape(n - 2) != B) || a.shape(n - 1) != H ||
            (writeable && !a.writeable()))
            return nullptr;
        return static_cast<S*>(const_cast<void*>(a.data()));
    }
    // p = the arrays of state s (h, then an LSTM's c); false where s is not one.
    template <typename S>
    bool states_of(py::handle s, std::array<S*, 2>& p, Index B, bool batched, bool writeable) const {
        if (states() == 1) return (p[0] = array_of<S>(s, L(), B, H(), batched, writeable)) != nullptr;
        if (!is_pair(s)) return false;
        for (int k = 0; k < 2; ++k)
            if (!(p[k] = array_of<S>(item(s, k), L(), B, H(), batched, writeable))) return false;
        return true;
    }

    template <typename S>
    py::object step_as(py::handle x, py::handle state, py::handle out) const {
        const Index H = this->H(), L = this->L();
        const int NS = states();
        if (!Arr<S>::check_(x)) return py::none();
        const auto xa = py::reinterpret_borrow<py::array>(x);
        const bool batched = xa.ndim() == 2;
        if ((xa.ndim() != 1 && !batched) || xa.shape(xa.ndim() - 1) != layers_[0]->input_size()) return py::none();
        const Index B = batched ? xa.shape(0) : 1;
        std::array<S*, 2> s0{}, sn{};
        if (!state.is_none() && !states_of<S>(state, s0, B, batched, false)) return py::none();
        py::object y, s_new;
        S* yp;
        if (out.is_none()) {
            // y (B, H) and each state (L, B, H), without B unbatched, from
            // NumPy's allocator, as the Python step's np.empty did.
            using Shape = std::vector<py::ssize_t>;
            Arr<S> ya(batched ? Shape{B, H} : Shape{H});
            const Shape ss = batched ? Shape{L, B, H} : Shape{L, H};
            Arr<S> ha(ss);
            yp = ya.mutable_data();
            sn[0] = ha.mutable_data();
            y = std::move(ya);
            s_new = std::move(ha);
            if (NS == 2) {
                Arr<S> ca(ss);
                sn[1] = ca.mutable_data();
                s_new = py::make_tuple(std::move(s_new), std::move(ca));
            }
        } else {
            if (!is_pair(out)) return py::none();
            y = py::reinterpret_borrow<py::object>(item(out, 0));
            s_new = py::reinterpret_borrow<py::object>(item(out, 1));
            if (!(yp = array_of<S>(y, 0, B, H, batched, true)) || !states_of<S>(s_new, sn, B, batched, true))
                return py::none();
            if (NS == 2 && !PyTuple_Check(s_new.ptr())) s_new = py::tuple(s_new);  // (h, c) as a list
        }
        if (state.is_none()) {  // zeros: the new state's arrays, stepped in place
            for (int k = 0; k < NS; ++k) std::fill_n(sn[k], L * B * H, S(0));
            s0 = sn;
        }
        {
            py::gil_scoped_release nogil;
            // Layer i reads layer i-1's new h (its output) and writes its own
            // output, the next layer's input, straight into its new h. The
            // kernel gathers h0 and c0 before it writes (core/driver.hpp), so
            // they may alias h_n and c_n (the in-place out= form).
            const S* in = static_cast<const S*>(xa.data());
            for (Index i = 0; i < L; ++i) {
                const Index at = i * B * H;
                S* dst = i == L - 1 ? yp : sn[0] + at;
                layers_[i]->packed<S>()->run(1, B, in, {s0[0] + at, NS == 2 ? s0[1] + at : nullptr}, nullptr, dst,
                                             {sn[0] + at, NS == 2 ? sn[1] + at : nullptr});
                in = dst;
            }
        }
        return py::make_tuple(std::move(y), std::move(s_new));
    }

    Index L() const { return static_cast<Index>(layers_.size()); }
    Index H() const { return layers_[0]->hidden_size(); }
    int states() const { return layers_[0]->states(); }

    std::vector<py::object> keep_;  // the EngineLayers, kept alive while this holds their pointers
    std::vector<const EngineLayer*> layers_;
};

template <typename S>
void bind_engine_run(py::class_<EngineLayer>& c) {
    c.def("run", &EngineLayer::run<S>, py::arg("x").noconvert(), py::arg("h0").noconvert(),
          py::arg("c0").noconvert(), py::arg("lengths").noconvert(), py::arg("out").noconvert() = py::none(),
          py::arg("h_n").noconvert() = py::none(), py::arg("c_n").noconvert() = py::none());
}

void bind_engine(py::module_& m) {
    py::class_<EngineLayer> c(m, "EngineLayer", "One layer-direction of an inference engine (fastrnn.engine)");
    c.def(py::init([](const std::string& cell, bool option, const py::array& w_ih, const py::array& w_hh,
                      const py::array& b_ih, const py::array& b_hh, const std::optional<py::array>& peephole,
                      bool reverse, const std::string& precision, const std::optional<std::string>& path) {
              const CellKind k = cell == "lstm" ? CellKind::lstm : cell == "gru" ? CellKind::gru : CellKind::rnn;
              require(cell == cell_name(k), "cell must be 'lstm', 'gru' or 'rnn', got " + cell);
              const kernels::Format f = EngineLayer::format(precision, path);
              return std::make_unique<EngineLayer>(k, option, w_ih, w_hh, b_ih, b_hh, peephole, reverse, f);
          }),
          py::arg("cell"), py::arg("option"), py::arg("w_ih"), py::arg("w_hh"), py::arg("b_ih"), py::arg("b_hh"),
          py::arg("peephole"), py::arg("reverse"), py::arg("precision") = "float32", py::arg("path") = py::none())
        .def_property_readonly("path", &EngineLayer::path)
        .def_property_readonly("input_size", &EngineLayer::input_size)
        .def_property_readonly("hidden_size", &EngineLayer::hidden_size)
        .def_property_readonly("reverse", &EngineLayer::reverse)
        .def_property_readonly("dtype", &EngineLayer::dtype)
        .def_property_readonly("states", &EngineLayer::states);
    bind_engine_run<float>(c);
    bind_engine_run<double>(c);
    py::class_<EngineStack>(m, "EngineStack", "The layers of a unidirectional engine, stepped together")
        .def(py::init<const py::list&>(), py::arg("layers"))
        .def("step", &EngineStack::step, py::arg("x"), py::arg("state"), py::arg("out"));
}

// nn.Dense: x (N, I), w (O, I), b (O) or None -> y (N, O); backward -> dw, db, dx.
template <typename S>
Arr<S> dense_forward_py(const Arr<S>& x, const Arr<S>& w, const std::optional<Arr<S>>& b) {
    require(w.ndim() == 2, "w must have rank 2 (O, I), got shape " + shape_str(w));
    const Index O = w.shape(0), I = w.shape(1);
    require(x.ndim() == 2, "x must have rank 2 (N, I), got shape " + shape_str(x));
    const Index N = x.shape(0);
    check_shape(x, {N, I}, "x");
    if (b) check_shape(*b, {O}, "b");
    Arr<S> y = empty<S>("y", {N, O});
    const S* bp = b ? b->data() : nullptr;
    S* yp = y.mutable_data();
    py::gil_scoped_release nogil;
    dense_forward(x.data(), w.data(), bp, yp, N, I, O);
    return y;
}

template <typename S>
py::tuple dense_backward_py(const Arr<S>& x, const Arr<S>& w, const Arr<S>& dy, bool bias) {
    require(w.ndim() == 2, "w must have rank 2 (O, I), got shape " + shape_str(w));
    const Index O = w.shape(0), I = w.shape(1);
    require(x.ndim() == 2, "x must have rank 2 (N, I), got shape " + shape_str(x));
    const Index N = x.shape(0);
    check_shape(x, {N, I}, "x");
    check_shape(dy, {N, O}, "d_y");
    Arr<S> dw = empty<S>("dw", {O, I}), dx = empty<S>("dx", {N, I});
    std::optional<Arr<S>> db;
    if (bias) db = empty<S>("db", {O});
    S *dwp = dw.mutable_data(), *dxp = dx.mutable_data(), *dbp = db ? db->mutable_data() : nullptr;
    {
        py::gil_scoped_release nogil;
        dense_backward(x.data(), w.data(), dy.data(), dwp, dbp, dxp, N, I, O);
    }
    return py::make_tuple(dw, db ? py::object(*db) : py::none(), dx);
}

template <typename S>
void bind_dense(py::module_& m) {
    m.def("dense_forward", &dense_forward_py<S>, py::arg("x").noconvert(), py::arg("w").noconvert(),
          py::arg("b").noconvert());
    m.def("dense_backward", &dense_backward_py<S>, py::arg("x").noconvert(), py::arg("w").noconvert(),
          py::arg("d_y").noconvert(), py::arg("bias"));
}

// fastrnn.optim: Adam's step in place on p, m, v (same shape, C order) from g;
// the sum of squares of g in double. The Python side checks the arrays.
template <typename S>
void adam_update_py(Arr<S>& p, const Arr<S>& g, Arr<S>& m, Arr<S>& v, double b1, double b2, double lr,
                    double eps, Index t) {
    const Index n = p.size();
    require(g.size() == n && m.size() == n && v.size() == n, "adam_update: p, g, m and v must have one size");
    S *pp = p.mutable_data(), *mp = m.mutable_data(), *vp = v.mutable_data();
    const S* gp = g.data();
    py::gil_scoped_release nogil;
    adam_update(pp, gp, mp, vp, n, S(b1), S(1 - b1), S(b2), S(1 - b2), S(1 - std::pow(b2, double(t))), S(eps),
                S(lr / (1 - std::pow(b1, double(t)))));
}

template <typename S>
double sum_squares_py(const Arr<S>& a) {
    const S* ap = a.data();
    const Index n = a.size();
    py::gil_scoped_release nogil;
    return sum_squares(ap, n);
}

template <typename S>
void bind_optim(py::module_& m) {
    m.def("adam_update", &adam_update_py<S>, py::arg("p").noconvert(), py::arg("g").noconvert(),
          py::arg("m").noconvert(), py::arg("v").noconvert(), py::arg("b1"), py::arg("b2"), py::arg("lr"),
          py::arg("eps"), py::arg("t"));
    m.def("sum_squares", &sum_squares_py<S>, py::arg("a").noconvert());
}

// nn.softmax_cross_entropy: logits (N, C), targets (N) int64 in [0, C),
// weights (N) or None, their sum total > 0 -> (loss, d_logits). The Python
// side checks the values.
template <typename S>
py::tuple softmax_cross_entropy_py(const Arr<S>& x, const py::array_t<std::int64_t, py::array::c_style>& t,
                                   const std::optional<Arr<S>>& w, double total) {
    require(x.ndim() == 2 && x.shape(1) > 0, "logits must have rank 2 (N, C), got shape " + shape_str(x));
    const Index N = x.shape(0), C = x.shape(1);
    require(t.ndim() == 1 && t.shape(0) == N, "targets must have shape (N,)");
    if (w) check_shape(*w, {N}, "mask");
    require(total > 0, "softmax_cross_entropy: total must be positive");
    Arr<S> d = empty<S>("d_logits", {N, C});
    const std::int64_t* tp = t.data();
    const S* wp = w ? w->data() : nullptr;
    S* dp = d.mutable_data();
    double loss;
    {
        py::gil_scoped_release nogil;
        loss = softmax_cross_entropy(x.data(), tp, wp, total, dp, N, C);
    }
    return py::make_tuple(loss, d);
}

template <typename S>
void bind_loss(py::module_& m) {
    m.def("softmax_cross_entropy", &softmax_cross_entropy_py<S>, py::arg("logits").noconvert(),
          py::arg("targets").noconvert(), py::arg("mask").noconvert(), py::arg("total"));
}

// What this module was built with, for fastrnn.config(): the build's
// settings (CMakeLists.txt) and what the compiler actually enabled.
py::dict build_config() {
    py::dict c;
    c["version"] = FASTRNN_VERSION;
    c["isa"] = FASTRNN_ISA;
    c["compiler"] = FASTRNN_COMPILER;
    c["flags"] = FASTRNN_FLAGS;
    c["build_type"] = FASTRNN_BUILD_TYPE;
    c["eigen_version"] = std::to_string(EIGEN_WORLD_VERSION) + "." + std::to_string(EIGEN_MAJOR_VERSION) + "." +
                         std::to_string(EIGEN_MINOR_VERSION);
    c["eigen_simd"] = Eigen::SimdInstructionSetsInUse();
    c["float_lanes"] = PacketInfo<float>::L;  // SIMD width of the packed kernels
    c["openmp"] = false;  // threads come from fastrnn's own pool (csrc/threads.cpp)
#ifdef FASTRNN_SINGLE_THREADED
    c["thread_pool"] = false;
#else
    c["thread_pool"] = true;
#endif
    // Reuse of freed kernel buffers and returned arrays (block_cache.cpp, array_pool.cpp):
    // compiled out by FASTRNN_BLOCK_CACHE=OFF and in sanitizer builds.
#ifdef FASTRNN_NO_BLOCK_CACHE
    c["block_cache"] = false;
#else
    c["block_cache"] = true;
#endif
    return c;
}

// The kernels' interrupt hook (parallel.hpp): on the main thread, take the
// GIL and run Python's signal handlers; true when one raised (the error is
// then set, and the Interrupted the kernel throws becomes it).
unsigned long g_main_thread = 0;
bool check_signals() {
    if (PyThread_get_thread_ident() != g_main_thread) return false;
    py::gil_scoped_acquire gil;
    return PyErr_CheckSignals() != 0;
}

}  // namespace

void bind_precision(py::module_& m);  // bind_precision.cpp

PYBIND11_MODULE(FASTRNN_MODULE, m) {
    m.doc() = "fastrnn C++ kernels (private: use fastrnn.functional)";
    g_main_thread = py::module_::import("threading").attr("main_thread")().attr("ident").cast<unsigned long>();
    set_interrupt_hook(&check_signals);
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const Interrupted&) {
            if (!PyErr_Occurred()) PyErr_SetNone(PyExc_KeyboardInterrupt);
        }
    });
    bind_results(m);
    bind_engine(m);
    bind_dtype<float>(m);
    bind_dtype<double>(m);
    bind_dense<float>(m);
    bind_dense<double>(m);
    bind_optim<float>(m);
    bind_optim<double>(m);
    bind_loss<float>(m);
    bind_loss<double>(m);
    m.def("set_num_threads", [](int n) {
        require(n >= 1, "set_num_threads: n must be >= 1, got " + std::to_string(n));
        set_num_threads(n);
    }, py::arg("n"));
    m.def("get_num_threads", &num_threads);
    // The busy-core verdict (parallel.hpp), for tests: report a barrier team's
    // wall and calling-thread CPU seconds; whether barrier teams run as one thread.
    m.def("_report_barrier_team", &report_barrier_team, py::arg("wall"), py::arg("cpu"));
    m.def("_barrier_teams_contended", &barrier_teams_contended);
    m.def("build_config", &build_config);
    bind_precision(m);
}
