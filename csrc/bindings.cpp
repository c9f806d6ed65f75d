// pybind11 bindings of the kernels: check, allocate, release the GIL, run.
//
// fastrnn/functional.py validates arguments with user-facing messages and
// passes C-contiguous arrays of one dtype; the checks here are a second line
// that keeps a wrong call from reading out of bounds (ValueError, never a
// crash). Outputs and caches are NumPy arrays owned by Python.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "kernels.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>

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
// LSTM mid_b32 took 5% longer that way). Allocated with the GIL held, so a
// failure becomes a MemoryError naming the array.
template <typename S>
Arr<S> empty(const char* name, std::initializer_list<Index> shape) {
    const std::size_t bytes = static_cast<std::size_t>(std::max<Index>(checked_size(shape, name), 1)) * sizeof(S);
    void* data = ::operator new(bytes, kLineAlign, std::nothrow);
    if (!data) out_of_memory(name, shape, bytes);
    py::capsule owner(data, [](void* p) { ::operator delete(p, kLineAlign); });
    return Arr<S>(std::vector<py::ssize_t>(shape.begin(), shape.end()), static_cast<S*>(data), owner);
}

template <typename S>
Arr<S> zeros(const char* name, std::initializer_list<Index> shape) {
    Arr<S> a = empty<S>(name, shape);
    std::memset(a.mutable_data(), 0, a.size() * sizeof(S));
    return a;
}

// Sizes from x and w_hh, and the checks every entry point shares.
template <typename S>
Dims dims_of(const Arr<S>& x, const Arr<S>& w_ih, const Arr<S>& w_hh, Index G) {
    require(x.ndim() == 3, "x must have rank 3 (T, B, I), got shape " + shape_str(x));
    require(w_hh.ndim() == 2 && w_hh.shape(0) == G * w_hh.shape(1),
            "w_hh must have shape (G*H, H), got " + shape_str(w_hh));
    Dims d{x.shape(0), x.shape(1), x.shape(2), w_hh.shape(1)};
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

template <typename S>
py::tuple lstm_forward(const Arr<S>& x, const Arr<S>& w_ih, const Arr<S>& w_hh, const Arr<S>& b_ih,
                       const Arr<S>& b_hh, const Arr<S>& h0, const Arr<S>& c0, const std::optional<Arr<S>>& peephole,
                       const Lengths& lengths, bool reverse, bool training) {
    const Dims d = dims_of(x, w_ih, w_hh, 4);
    Weights<S> w = weights(d, 4, w_ih, w_hh, b_ih, b_hh);
    if (peephole) {
        check_shape(*peephole, {3, d.H}, "peephole");
        w.peephole = peephole->data();
    }
    check_shape(h0, {d.B, d.H}, "h0");
    check_shape(c0, {d.B, d.H}, "c0");
    const std::int64_t* len = lengths_ptr(lengths, d);
    Arr<S> out = sequence<S>("out", d, d.H, len), h_n = empty<S>("h_n", {d.B, d.H}), c_n = empty<S>("c_n", {d.B, d.H});
    py::object gates = py::none(), hs = py::none(), cs = py::none();
    Cache<S> cache;
    if (training) {
        Arr<S> g = empty<S>("the training cache (gates)", {d.T, d.B, 4 * d.H}),
               h = empty<S>("the training cache (h)", {d.T + 1, d.B, d.H}),
               c = empty<S>("the training cache (c)", {d.T + 1, d.B, d.H});
        cache.gates = g.mutable_data(), cache.hs = h.mutable_data(), cache.cs = c.mutable_data();
        gates = g, hs = h, cs = c;
    }
    {
        py::gil_scoped_release nogil;
        kernels::forward<S>({kernels::CellKind::lstm, false}, d, x.data(), w, {h0.data(), c0.data()}, len, reverse,
                            out.mutable_data(), {h_n.mutable_data(), c_n.mutable_data()}, cache);
    }
    return py::make_tuple(out, h_n, c_n, gates, hs, cs);
}

template <typename S>
py::tuple lstm_backward(const Arr<S>& x, const Arr<S>& w_ih, const Arr<S>& w_hh,
                        const std::optional<Arr<S>>& peephole, const Lengths& lengths, bool reverse,
                        const Arr<S>& gates, const Arr<S>& hs, const Arr<S>& cs, const Arr<S>& d_out,
                        const Arr<S>& d_h_n, const Arr<S>& d_c_n) {
    const Dims d = dims_of(x, w_ih, w_hh, 4);
    Weights<S> w{w_ih.data(), w_hh.data(), nullptr, nullptr};
    if (peephole) {
        check_shape(*peephole, {3, d.H}, "peephole");
        w.peephole = peephole->data();
    }
    const std::int64_t* len = lengths_ptr(lengths, d);
    check_shape(gates, {d.T, d.B, 4 * d.H}, "gates");
    check_shape(hs, {d.T + 1, d.B, d.H}, "hs");
    check_shape(cs, {d.T + 1, d.B, d.H}, "cs");
    check_shape(d_out, {d.T, d.B, d.H}, "d_out");
    check_shape(d_h_n, {d.B, d.H}, "d_h_n");
    check_shape(d_c_n, {d.B, d.H}, "d_c_n");
    Arr<S> dx = sequence<S>("dx", d, d.I, len), dh0 = empty<S>("dh0", {d.B, d.H}), dc0 = empty<S>("dc0", {d.B, d.H}),
           dw_ih = empty<S>("dw_ih", {4 * d.H, d.I}), dw_hh = empty<S>("dw_hh", {4 * d.H, d.H}), db = empty<S>("db", {4 * d.H});
    py::object dpeep = py::none();
    Buffer<S> db_hh(4 * d.H);
    Grads<S> g{dx.mutable_data(), dh0.mutable_data(), dc0.mutable_data(), dw_ih.mutable_data(),
               dw_hh.mutable_data(), db.mutable_data(), db_hh.data(), nullptr};
    if (peephole) {
        Arr<S> dp = empty<S>("dpeephole", {3, d.H});
        g.dpeephole = dp.mutable_data();
        dpeep = dp;
    }
    Cache<S> cache{const_cast<S*>(gates.data()), const_cast<S*>(hs.data()), const_cast<S*>(cs.data())};
    {
        py::gil_scoped_release nogil;
        kernels::backward<S>({kernels::CellKind::lstm, false}, d, x.data(), w, len, reverse, cache, d_out.data(),
                             {d_h_n.data(), d_c_n.data()}, g);
    }
    return py::make_tuple(dx, dh0, dc0, dw_ih, dw_hh, db, dpeep);
}

template <typename S>
py::tuple gru_forward(const Arr<S>& x, const Arr<S>& w_ih, const Arr<S>& w_hh, const Arr<S>& b_ih,
                      const Arr<S>& b_hh, const Arr<S>& h0, const Lengths& lengths, bool reverse, bool training,
                      bool reset_after) {
    const Dims d = dims_of(x, w_ih, w_hh, 3);
    const Weights<S> w = weights(d, 3, w_ih, w_hh, b_ih, b_hh);
    check_shape(h0, {d.B, d.H}, "h0");
    const std::int64_t* len = lengths_ptr(lengths, d);
    Arr<S> out = sequence<S>("out", d, d.H, len), h_n = empty<S>("h_n", {d.B, d.H});
    py::object gates = py::none(), hs = py::none(), hn = py::none();
    Cache<S> cache;
    if (training) {
        Arr<S> g = empty<S>("the training cache (gates)", {d.T, d.B, 3 * d.H}),
               h = empty<S>("the training cache (h)", {d.T + 1, d.B, d.H});
        cache.gates = g.mutable_data();
        cache.hs = h.mutable_data();
        gates = g, hs = h;
        if (reset_after) {
            Arr<S> n = empty<S>("the training cache (n)", {d.T, d.B, d.H});
            cache.hn = n.mutable_data();
            hn = n;
        }
    }
    {
        py::gil_scoped_release nogil;
        kernels::forward<S>({kernels::CellKind::gru, reset_after}, d, x.data(), w, {h0.data(), nullptr}, len,
                            reverse, out.mutable_data(), {h_n.mutable_data(), nullptr}, cache);
    }
    return py::make_tuple(out, h_n, gates, hs, hn);
}

template <typename S>
py::tuple gru_backward(const Arr<S>& x, const Arr<S>& w_ih, const Arr<S>& w_hh, const Lengths& lengths,
                       bool reverse, bool reset_after, const Arr<S>& gates, const Arr<S>& hs,
                       const std::optional<Arr<S>>& hn, const Arr<S>& d_out, const Arr<S>& d_h_n) {
    const Dims d = dims_of(x, w_ih, w_hh, 3);
    const Weights<S> w{w_ih.data(), w_hh.data(), nullptr, nullptr};
    const std::int64_t* len = lengths_ptr(lengths, d);
    check_shape(gates, {d.T, d.B, 3 * d.H}, "gates");
    check_shape(hs, {d.T + 1, d.B, d.H}, "hs");
    require(hn.has_value() == reset_after, "hn must be given exactly when reset_after");
    if (hn) check_shape(*hn, {d.T, d.B, d.H}, "hn");
    check_shape(d_out, {d.T, d.B, d.H}, "d_out");
    check_shape(d_h_n, {d.B, d.H}, "d_h_n");
    Arr<S> dx = sequence<S>("dx", d, d.I, len), dh0 = empty<S>("dh0", {d.B, d.H}),
           dw_ih = empty<S>("dw_ih", {3 * d.H, d.I}), dw_hh = empty<S>("dw_hh", {3 * d.H, d.H}),
           db_ih = empty<S>("db_ih", {3 * d.H}), db_hh = empty<S>("db_hh", {3 * d.H});
    Cache<S> cache{const_cast<S*>(gates.data()), const_cast<S*>(hs.data()), nullptr,
                   hn ? const_cast<S*>(hn->data()) : nullptr};
    Grads<S> g{dx.mutable_data(), dh0.mutable_data(), nullptr, dw_ih.mutable_data(),
               dw_hh.mutable_data(), db_ih.mutable_data(), db_hh.mutable_data()};
    {
        py::gil_scoped_release nogil;
        kernels::backward<S>({kernels::CellKind::gru, reset_after}, d, x.data(), w, len, reverse, cache, d_out.data(),
                             {d_h_n.data(), nullptr}, g);
    }
    return py::make_tuple(dx, dh0, dw_ih, dw_hh, db_ih, db_hh);
}

template <typename S>
py::tuple rnn_forward(const Arr<S>& x, const Arr<S>& w_ih, const Arr<S>& w_hh, const Arr<S>& b_ih,
                      const Arr<S>& b_hh, const Arr<S>& h0, const Lengths& lengths, bool reverse, bool training,
                      bool relu) {
    const Dims d = dims_of(x, w_ih, w_hh, 1);
    const Weights<S> w = weights(d, 1, w_ih, w_hh, b_ih, b_hh);
    check_shape(h0, {d.B, d.H}, "h0");
    const std::int64_t* len = lengths_ptr(lengths, d);
    Arr<S> out = sequence<S>("out", d, d.H, len), h_n = empty<S>("h_n", {d.B, d.H});
    py::object hs = py::none();
    Cache<S> cache;
    if (training) {
        Arr<S> h = empty<S>("the training cache (h)", {d.T + 1, d.B, d.H});
        cache.hs = h.mutable_data();
        hs = h;
    }
    {
        py::gil_scoped_release nogil;
        kernels::forward<S>({kernels::CellKind::rnn, relu}, d, x.data(), w, {h0.data(), nullptr}, len, reverse,
                            out.mutable_data(), {h_n.mutable_data(), nullptr}, cache);
    }
    return py::make_tuple(out, h_n, hs);
}

template <typename S>
py::tuple rnn_backward(const Arr<S>& x, const Arr<S>& w_ih, const Arr<S>& w_hh, const Lengths& lengths,
                       bool reverse, bool relu, const Arr<S>& hs, const Arr<S>& d_out, const Arr<S>& d_h_n) {
    const Dims d = dims_of(x, w_ih, w_hh, 1);
    const Weights<S> w{w_ih.data(), w_hh.data(), nullptr, nullptr};
    const std::int64_t* len = lengths_ptr(lengths, d);
    check_shape(hs, {d.T + 1, d.B, d.H}, "hs");
    check_shape(d_out, {d.T, d.B, d.H}, "d_out");
    check_shape(d_h_n, {d.B, d.H}, "d_h_n");
    Arr<S> dx = sequence<S>("dx", d, d.I, len), dh0 = empty<S>("dh0", {d.B, d.H}),
           dw_ih = empty<S>("dw_ih", {d.H, d.I}), dw_hh = empty<S>("dw_hh", {d.H, d.H}),
           db_ih = empty<S>("db_ih", {d.H}), db_hh = empty<S>("db_hh", {d.H});
    Grads<S> g{dx.mutable_data(), dh0.mutable_data(), nullptr, dw_ih.mutable_data(),
               dw_hh.mutable_data(), db_ih.mutable_data(), db_hh.mutable_data()};
    Cache<S> cache;
    cache.hs = const_cast<S*>(hs.data());
    {
        py::gil_scoped_release nogil;
        kernels::backward<S>({kernels::CellKind::rnn, relu}, d, x.data(), w, len, reverse, cache, d_out.data(),
                             {d_h_n.data(), nullptr}, g);
    }
    return py::make_tuple(dx, dh0, dw_ih, dw_hh, db_ih, db_hh);
}

template <typename S>
void bind_dtype(py::module_& m) {
    // noconvert: functional.py passes exact dtypes; a float64 array must never
    // be silently narrowed by the float overload.
    m.def("lstm_forward", &lstm_forward<S>, py::arg("x").noconvert(), py::arg("w_ih").noconvert(),
          py::arg("w_hh").noconvert(), py::arg("b_ih").noconvert(), py::arg("b_hh").noconvert(),
          py::arg("h0").noconvert(), py::arg("c0").noconvert(), py::arg("peephole").noconvert(),
          py::arg("lengths").noconvert(), py::arg("reverse"), py::arg("training"));
    m.def("lstm_backward", &lstm_backward<S>, py::arg("x").noconvert(), py::arg("w_ih").noconvert(),
          py::arg("w_hh").noconvert(), py::arg("peephole").noconvert(), py::arg("lengths").noconvert(),
          py::arg("reverse"), py::arg("gates").noconvert(), py::arg("hs").noconvert(), py::arg("cs").noconvert(),
          py::arg("d_out").noconvert(), py::arg("d_h_n").noconvert(), py::arg("d_c_n").noconvert());
    m.def("gru_forward", &gru_forward<S>, py::arg("x").noconvert(), py::arg("w_ih").noconvert(),
          py::arg("w_hh").noconvert(), py::arg("b_ih").noconvert(), py::arg("b_hh").noconvert(),
          py::arg("h0").noconvert(), py::arg("lengths").noconvert(), py::arg("reverse"), py::arg("training"),
          py::arg("reset_after"));
    m.def("gru_backward", &gru_backward<S>, py::arg("x").noconvert(), py::arg("w_ih").noconvert(),
          py::arg("w_hh").noconvert(), py::arg("lengths").noconvert(), py::arg("reverse"), py::arg("reset_after"),
          py::arg("gates").noconvert(), py::arg("hs").noconvert(), py::arg("hn").noconvert(),
          py::arg("d_out").noconvert(), py::arg("d_h_n").noconvert());
    m.def("rnn_forward", &rnn_forward<S>, py::arg("x").noconvert(), py::arg("w_ih").noconvert(),
          py::arg("w_hh").noconvert(), py::arg("b_ih").noconvert(), py::arg("b_hh").noconvert(),
          py::arg("h0").noconvert(), py::arg("lengths").noconvert(), py::arg("reverse"), py::arg("training"),
          py::arg("relu"));
    m.def("rnn_backward", &rnn_backward<S>, py::arg("x").noconvert(), py::arg("w_ih").noconvert(),
          py::arg("w_hh").noconvert(), py::arg("lengths").noconvert(), py::arg("reverse"), py::arg("relu"),
          py::arg("hs").noconvert(), py::arg("d_out").noconvert(), py::arg("d_h_n").noconvert());
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
#ifdef _OPENMP
    c["openmp"] = true;
#else
    c["openmp"] = false;
#endif
    return c;
}

}  // namespace

PYBIND11_MODULE(FASTRNN_MODULE, m) {
    m.doc() = "fastrnn C++ kernels (private: use fastrnn.functional)";
    Eigen::initParallel();
    bind_dtype<float>(m);
    bind_dtype<double>(m);
    m.def("set_num_threads", [](int n) {
        require(n >= 1, "set_num_threads: n must be >= 1, got " + std::to_string(n));
        set_num_threads(n);
    }, py::arg("n"));
    m.def("get_num_threads", &num_threads);
    m.def("build_config", &build_config);
}
