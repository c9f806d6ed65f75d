// Internal bindings of the low-precision GEMMs (csrc/precision/lowp.hpp), so
// tests can run every path and benchmarks/lowp_gemm.py can time them against
// the fp32 packed_gemm. Private: the inference engine calls the C++ API.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "packed_gemm.hpp"
#include "precision/lowp.hpp"

#include <optional>
#include <stdexcept>
#include <string>

namespace py = pybind11;
using namespace fastrnn;

namespace {

using F32 = py::array_t<float, py::array::c_style>;

// A C-contiguous 2-D float32 array, never a converted copy (out is written).
F32 f32_matrix(const py::handle& h, const char* name) {
    if (!py::isinstance<py::array>(h)) throw py::type_error(std::string(name) + " must be a NumPy array");
    auto a = py::reinterpret_borrow<py::array>(h);
    if (!a.dtype().is(py::dtype::of<float>()))
        throw py::type_error(std::string(name) + " must be float32, got " + std::string(py::str(a.dtype())));
    if (a.ndim() != 2) throw std::invalid_argument(std::string(name) + " must be 2-D");
    if (!(a.flags() & py::array::c_style)) throw std::invalid_argument(std::string(name) + " must be C-contiguous");
    return py::reinterpret_borrow<F32>(a);
}

// (N, K) weights with N = groups · H.
std::pair<Index, Index> group_shape(const F32& w, Index groups, const char* name) {
    if (groups < 1 || w.shape(0) % groups != 0)
        throw std::invalid_argument(std::string(name) + ": " + std::to_string(w.shape(0)) +
                                    " rows do not split into groups=" + std::to_string(groups));
    return {w.shape(0) / groups, w.shape(1)};
}

template <typename Packed>
struct Holder {
    Packed m;
    Index n = 0, k = 0;
};
using F32Holder = Holder<PackedMatrix<float>>;
using Bf16Holder = Holder<lowp::PackedBf16>;
using S8Holder = Holder<lowp::PackedS8>;

template <typename H>
H packed(const py::handle& w_obj, Index groups, const char* name, int terms = 1) {
    const F32 w = f32_matrix(w_obj, name);
    const auto [h, k] = group_shape(w, groups, name);
    H out;
    out.n = w.shape(0), out.k = k;
    py::gil_scoped_release nogil;
    if constexpr (std::is_same_v<H, S8Holder>) {
        out.m.pack(w.data(), groups, h, k, k, false, name);
        out.m.set_activation_terms(terms);
    } else
        out.m.pack(w.data(), groups, h, k, k, false);
    return out;
}

// out (=|+=) a · Mᵀ through `run(A, lda, m, C)`; out is allocated when None.
template <typename H, typename Run>
F32 product(const py::handle& a_obj, const H& M, const py::object& out_obj, bool accumulate, Run&& run) {
    const F32 a = f32_matrix(a_obj, "a");
    if (a.shape(1) != M.k)
        throw std::invalid_argument("a has " + std::to_string(a.shape(1)) + " columns, the packed matrix K=" +
                                    std::to_string(M.k));
    if (accumulate && out_obj.is_none()) throw std::invalid_argument("accumulate=True needs out");
    F32 out = out_obj.is_none() ? F32({a.shape(0), M.n}) : f32_matrix(out_obj, "out");
    if (out.shape(0) != a.shape(0) || out.shape(1) != M.n)
        throw std::invalid_argument("out must have shape (" + std::to_string(a.shape(0)) + ", " +
                                    std::to_string(M.n) + ")");
    const float* A = a.data();
    float* C = out.mutable_data();
    const Index m = a.shape(0), k = M.k, n = M.n;
    {
        py::gil_scoped_release nogil;
        run(A, k, m, C, n);
    }
    return out;
}

py::list names(const std::vector<lowp::Path>& paths) {
    py::list l;
    for (auto p : paths) l.append(lowp::path_name(p));
    return l;
}

// A path's name, or the error that choosing it raises (show_config prints both).
template <typename F>
py::object chosen(F&& f) {
    try {
        return py::str(lowp::path_name(f()));
    } catch (const std::invalid_argument& e) {
        return py::str(std::string("error: ") + e.what());
    }
}

}  // namespace

void bind_precision(py::module_& m) {
    py::class_<F32Holder>(m, "PackedF32").def_readonly("n", &F32Holder::n).def_readonly("k", &F32Holder::k);
    py::class_<Bf16Holder>(m, "PackedBf16").def_readonly("n", &Bf16Holder::n).def_readonly("k", &Bf16Holder::k);
    py::class_<S8Holder>(m, "PackedS8")
        .def_readonly("n", &S8Holder::n)
        .def_readonly("k", &S8Holder::k)
        // The quantised weights (n, k) int8 and their scales (n,), unpacked.
        .def("unpack", [](const S8Holder& h) {
            py::array_t<std::int8_t> q({h.n, h.k});
            py::array_t<float> s(h.n);
            auto qq = q.mutable_unchecked<2>();
            auto ss = s.mutable_unchecked<1>();
            const auto& M = h.m;
            for (Index p = 0; p < M.panels(); ++p)
                for (Index c = 0; c < M.width(p); ++c) {
                    const Index n = M.column(p) + c;
                    ss(n) = M.col_scale(p)[c];
                    for (Index k = 0; k < h.k; ++k) qq(n, k) = M.panel(p)[(k / 4) * 4 * lowp::kNR + 4 * c + k % 4];
                }
            return py::make_tuple(q, s);
        });

    m.def("pack_f32", [](const py::handle& w, Index groups) { return packed<F32Holder>(w, groups, "weight"); },
          py::arg("w"), py::arg("groups") = 1, "fp32 panels (packed_gemm.hpp), for side-by-side comparisons.");
    m.def("pack_bf16", [](const py::handle& w, Index groups) { return packed<Bf16Holder>(w, groups, "weight"); },
          py::arg("w"), py::arg("groups") = 1, "w (N, K) float32 as bf16 panels (round to nearest even).");
    m.def("pack_s8",
          [](const py::handle& w, Index groups, const std::string& name, int activation_terms) {
              return packed<S8Holder>(w, groups, name.c_str(), activation_terms);
          },
          py::arg("w"), py::arg("groups") = 1, py::arg("name") = "weight", py::arg("activation_terms") = 1,
          "w (N, K) float32 quantised to s8 with a symmetric scale per row; NaN/Inf raise ValueError naming `name`; "
          "activation_terms=2 quantises each activation row in two terms (x ≈ s₁q₁ + s₂q₂).");

    m.def("lowp_gemm",
          [](const py::handle& a, const F32Holder& M, const py::object& out, bool accumulate,
             const std::optional<std::string>& path) {
              if (path && *path != "float32") throw std::invalid_argument("path: fp32 panels have one path, float32");
              return product(a, M, out, accumulate, [&](const float* A, Index lda, Index mm, float* C, Index ldc) {
                  packed_gemm(A, lda, mm, M.m, C, ldc, accumulate);
              });
          },
          py::arg("a"), py::arg("packed"), py::arg("out") = py::none(), py::arg("accumulate") = false,
          py::arg("path") = py::none());
    m.def("lowp_gemm",
          [](const py::handle& a, const Bf16Holder& M, const py::object& out, bool accumulate,
             const std::optional<std::string>& path) {
              const lowp::Path p = path ? lowp::bf16_path_named(*path, "path") : lowp::bf16_path();
              return product(a, M, out, accumulate, [&](const float* A, Index lda, Index mm, float* C, Index ldc) {
                  lowp::Bf16Rows rows;
                  rows.prepare(A, lda, mm, M.k);
                  lowp::gemm(rows, M.m, C, ldc, accumulate, p);
              });
          },
          py::arg("a"), py::arg("packed"), py::arg("out") = py::none(), py::arg("accumulate") = false,
          py::arg("path") = py::none());
    m.def("lowp_gemm",
          [](const py::handle& a, const S8Holder& M, const py::object& out, bool accumulate,
             const std::optional<std::string>& path) {
              const lowp::Path p = path ? lowp::int8_path_named(*path, "path") : lowp::int8_path();
              return product(a, M, out, accumulate, [&](const float* A, Index lda, Index mm, float* C, Index ldc) {
                  lowp::S8Rows rows;
                  rows.prepare(A, lda, mm, M.k, p, M.m.activation_terms());
                  lowp::gemm(rows, M.m, C, ldc, accumulate);
              });
          },
          py::arg("a"), py::arg("packed"), py::arg("out") = py::none(), py::arg("accumulate") = false,
          py::arg("path") = py::none(),
          "out (=|+=) a · Mᵀ, a (m, K) float32; path: a name from lowp_paths(), default the selected one.");

    m.def("lowp_gemm_tn",
          [](const py::handle& a_obj, const py::handle& b_obj, const std::optional<std::string>& path) {
              const F32 a = f32_matrix(a_obj, "a"), b = f32_matrix(b_obj, "b");
              if (a.shape(0) != b.shape(0))
                  throw std::invalid_argument("a and b must have the same number of rows (k), got " +
                                              std::to_string(a.shape(0)) + " and " + std::to_string(b.shape(0)));
              const lowp::Path p = path ? lowp::bf16_path_named(*path, "path") : lowp::bf16_path();
              const Index k = a.shape(0), mm = a.shape(1), n = b.shape(1);
              F32 c({mm, n}), colsum(mm);
              float *cp = c.mutable_data(), *sp = colsum.mutable_data();
              {
                  py::gil_scoped_release nogil;
                  lowp::gemm_tn(a.data(), mm, b.data(), cp, mm, n, k, false, p, sp);
              }
              return py::make_tuple(c, colsum);
          },
          py::arg("a"), py::arg("b"), py::arg("path") = py::none(),
          "bf16 training's weight-gradient GEMM: (aᵀ · b (m, n), Σ_k a's columns (m,)) for a (k, m) and b "
          "(k, n) float32; path: a bf16 path name, default the selected one.");

    m.def("lowp_quantise_rows",
          [](const py::handle& a_obj, int terms) {
              const F32 a = f32_matrix(a_obj, "a");
              if (terms != 1 && terms != 2) throw std::invalid_argument("terms must be 1 or 2");
              const Index rows = a.shape(0), k = a.shape(1);
              lowp::S8Rows q;
              q.prepare(a.data(), k, rows, k, lowp::Path::scalar, terms);
              py::array_t<std::int8_t> qa({Index(terms), rows, k});
              py::array_t<float> s({Index(terms), rows});
              for (int t = 0; t < terms; ++t)
                  for (Index i = 0; i < rows; ++i) {
                      std::copy_n(q.row(i, t), k, qa.mutable_data(t, i, 0));
                      s.mutable_at(t, i) = q.scale(i, t);
                  }
              if (terms == 1) return py::tuple(py::make_tuple(qa[py::int_(0)], s[py::int_(0)]));
              return py::tuple(py::make_tuple(qa, s));
          },
          py::arg("a"), py::arg("terms") = 1,
          "Each row of a quantised as the int8 GEMM does it: (q (m, K) int8, scales (m,)); with terms=2, "
          "(q (2, m, K), scales (2, m)), term 1 the quantised residual.");

    m.def("lowp_paths", [] {
        py::dict d;
        d["bf16"] = chosen(lowp::bf16_path);
        d["int8"] = chosen(lowp::int8_path);
        d["bf16_available"] = names(lowp::bf16_paths_available());
        d["int8_available"] = names(lowp::int8_paths_available());
        return d;
    }, "The bf16 and int8 paths in use (or why the forced one cannot be) and those this CPU runs.");
    m.attr("lowp_panel_width") = lowp::kNR;
}
