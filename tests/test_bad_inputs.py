"""Hostile inputs for every public entry point (issue #5, DESIGN §6).

Each bad input must raise TypeError / ValueError / MemoryError with a message that
names the argument (and, for shapes and dtypes, what was expected and what was
given); a legal but unusual input (Fortran order, negative strides, read-only,
lists, empty axes) must give the same answer as the plain call. No input array is
ever modified, whether the call raises or not: every case snapshots the arrays it
passes and compares them afterwards.

The cases are generated per entry point x cell x backend (C++ `functional` and the
NumPy `reference`), so `pytest --collect-only -q tests/test_bad_inputs.py` counts them.
"""
import copy

import numpy as np
import pytest

import fastrnn
from fastrnn import GRU, LSTM, SimpleRNN, reference

try:
    import fastrnn.functional as cpp
except ImportError:      # the C++ backend is not built: only the reference is checked
    cpp = None

BACKENDS = {"ref": reference, **({"cpp": cpp} if cpp is not None else {})}
needs_cpp = pytest.mark.skipif(cpp is None, reason="fastrnn.functional (C++) is not built")

T, B, I, H = 5, 3, 4, 6          # all different, so a swapped axis cannot pass a check
GATES = {"lstm": 4, "gru": 3, "rnn": 1}
F32 = np.float32


def good_args(cell, dtype=F32, seed=0):
    rng = np.random.default_rng(seed)
    G = GATES[cell]

    def r(*shape):
        return (0.5 * rng.standard_normal(shape)).astype(dtype)

    a = dict(x=r(T, B, I), w_ih=r(G * H, I), w_hh=r(G * H, H), b_ih=r(G * H),
             b_hh=r(G * H), h0=r(B, H), lengths=np.array([5, 2, 0]))
    if cell == "lstm":
        a["c0"] = r(B, H)
    return a


def arrays_in(obj):
    """Every ndarray reachable through tuples, lists and dicts."""
    if isinstance(obj, np.ndarray):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [a for o in obj for a in arrays_in(o)]
    if isinstance(obj, dict):
        return [a for o in obj.values() for a in arrays_in(o)]
    return []


def call_unmodified(fn, *args, **kwargs):
    """fn(*args, **kwargs), checking afterwards (also when it raises) that no array
    argument changed, bit for bit (NaN compares equal to NaN here)."""
    inputs = arrays_in((args, kwargs))
    before = [copy.deepcopy(a) for a in inputs]
    try:
        return fn(*args, **kwargs)
    finally:
        for a, b in zip(inputs, before):
            assert a.dtype == b.dtype and a.shape == b.shape
            if a.dtype.kind in "fc":
                np.testing.assert_array_equal(a, b)
            else:
                assert (a == b).all() if a.size else True


# -- functional and reference: forward -------------------------------------------------------

def bad_forward_values(cell):
    """(argument, bad value maker(args), exception, message pattern)."""
    G = GATES[cell]
    f64 = np.float64
    cases = [
        ("x", lambda a: a["x"].tolist(), TypeError, r"x must be a numpy.ndarray"),
        ("x", lambda a: None, TypeError, r"x must be a numpy.ndarray.*got NoneType"),
        ("x", lambda a: a["x"][0], ValueError, r"x must have rank 3 \(T, B, I\), got shape \(3, 4\)"),
        ("x", lambda a: a["x"][None], ValueError, r"x must have rank 3.*got shape \(1, 5, 3, 4\)"),
        ("x", lambda a: np.array(1.0, F32), ValueError, r"x must have rank 3.*got shape \(\)"),
        ("x", lambda a: a["x"].astype(np.int64), TypeError, r"x must have dtype float32 or float64, got int64"),
        ("x", lambda a: a["x"].astype(np.complex64), TypeError, r"x must have dtype .*got complex64"),
        ("x", lambda a: a["x"].astype(object), TypeError, r"x must have dtype .*got object"),
        ("x", lambda a: a["x"].astype(np.float16), TypeError, r"x must have dtype .*got float16"),
        ("x", lambda a: a["x"] > 0, TypeError, r"x must have dtype .*got bool"),
        ("x", lambda a: a["x"].astype(str), TypeError, r"x must have dtype .*got <U"),
        ("x", lambda a: np.zeros((T, B, I + 1), F32), ValueError,
         rf"w_ih must have shape \({G * H}, {I + 1}\), got \({G * H}, {I}\)"),
        ("w_ih", lambda a: a["w_ih"][:, :-1], ValueError,
         rf"w_ih must have shape \({G * H}, {I}\), got \({G * H}, {I - 1}\)"),
        ("w_ih", lambda a: a["w_ih"][:-1], ValueError, r"w_ih must have shape .*got"),
        ("w_ih", lambda a: a["w_ih"].ravel(), ValueError, r"w_ih must have shape .*got \(\d+,\)"),
        ("w_ih", lambda a: a["w_ih"][None], ValueError, r"w_ih must have shape .*got \(1, "),
        ("w_ih", lambda a: a["w_ih"].astype(f64), TypeError,
         r"w_ih must have dtype float32 \(the dtype of x\), got float64"),
        ("w_ih", lambda a: a["w_ih"].astype(np.int32), TypeError, r"w_ih must have dtype .*got int32"),
        ("w_ih", lambda a: a["w_ih"].astype(np.float16), TypeError, r"w_ih must have dtype .*got float16"),
        ("w_ih", lambda a: None, TypeError, r"w_ih must hold real numbers, got dtype object"),
        ("w_ih", lambda a: [["a"] * I] * (G * H), TypeError, r"w_ih must hold real numbers, got dtype <U1"),
        ("w_hh", lambda a: a["w_hh"][:, :-1], ValueError, rf"w_hh must have shape \({G}\*H, H\) for {cell}, got"),
        ("w_hh", lambda a: a["w_hh"][:-1], ValueError, r"w_hh must have shape .*got"),
        ("w_hh", lambda a: np.zeros((H, H), F32) if G > 1 else np.zeros((H, H + 1), F32), ValueError,
         r"w_hh must have shape .*got"),
        ("w_hh", lambda a: a["w_hh"].ravel(), ValueError, r"w_hh must have shape .*got \(\d+,\)"),
        ("w_hh", lambda a: np.zeros((0, 0), F32), ValueError, r"w_hh must have H >= 1 hidden units, got shape \(0, 0\)"),
        ("w_hh", lambda a: a["w_hh"].astype(f64), TypeError, r"w_hh must have dtype float32 \(the dtype of x\)"),
        ("w_hh", lambda a: a["w_hh"].astype(np.complex128), TypeError, r"w_hh must have dtype .*complex128"),
        ("h0", lambda a: np.zeros((B + 1, H), F32), ValueError, rf"h0 must have shape \({B}, {H}\), got \({B + 1}, {H}\)"),
        ("h0", lambda a: np.zeros((B, H + 1), F32), ValueError, rf"h0 must have shape \({B}, {H}\), got"),
        ("h0", lambda a: a["h0"][None], ValueError, rf"h0 must have shape \({B}, {H}\), got \(1, {B}, {H}\)"),
        ("h0", lambda a: a["h0"].ravel(), ValueError, r"h0 must have shape .*got \(18,\)"),
        ("h0", lambda a: a["h0"].astype(f64), TypeError, r"h0 must have dtype float32 \(the dtype of x\)"),
        ("h0", lambda a: a["h0"].astype(object), TypeError, r"h0 must have dtype .*got object"),
        ("lengths", lambda a: a["lengths"].astype(float), TypeError,
         r"lengths must be an integer array, got dtype float64 \(convert with .astype\(int\)\)"),
        ("lengths", lambda a: np.array([2.5, 1, 0]), TypeError, r"lengths must be an integer array, got dtype float64$"),
        ("lengths", lambda a: a["lengths"] > 0, TypeError, r"lengths must be an integer array, got dtype bool"),
        ("lengths", lambda a: [1, None, 2], TypeError, r"lengths must be an integer array, got dtype object"),
        ("lengths", lambda a: "abc", TypeError, r"lengths must be an integer array, got dtype <U3"),
        ("lengths", lambda a: a["lengths"][:, None], ValueError,
         rf"lengths must have shape \({B},\) \(one per batch entry\), got \({B}, 1\)"),
        ("lengths", lambda a: np.array([1, 2]), ValueError, r"lengths must have shape \(3,\).*got \(2,\)"),
        ("lengths", lambda a: 3, ValueError, r"lengths must have shape \(3,\).*got \(\)"),
        ("lengths", lambda a: np.array([-1, 2, 3]), ValueError,
         rf"lengths must lie in \[0, {T}\] \(T = x.shape\[0\]\), got values from -1 to 3"),
        ("lengths", lambda a: np.array([1, T + 1, 3]), ValueError, rf"lengths must lie in \[0, {T}\].*to {T + 1}"),
        ("lengths", lambda a: np.array([2**63 + 5, 1, 1], np.uint64), ValueError, r"lengths must lie in \[0, 5\]"),
        ("reverse", lambda a: 1, TypeError, r"reverse must be a bool, got int"),
        ("reverse", lambda a: "yes", TypeError, r"reverse must be a bool, got str"),
        ("reverse", lambda a: None, TypeError, r"reverse must be a bool, got NoneType"),
        ("reverse", lambda a: np.array([True]), TypeError, r"reverse must be a bool, got ndarray"),
        ("training", lambda a: 0, TypeError, r"training must be a bool, got int"),
    ]
    for bias in ("b_ih", "b_hh"):
        cases += [
            (bias, lambda a: np.zeros(G * H + 1, F32), ValueError, rf"{bias} must have shape \({G * H},\), got \({G * H + 1},\)"),
            (bias, lambda a, b=bias: a[b][None], ValueError, rf"{bias} must have shape \({G * H},\), got \(1, {G * H}\)"),
            (bias, lambda a: np.array(0.0, F32), ValueError, rf"{bias} must have shape .*got \(\)"),
            (bias, lambda a, b=bias: a[b].astype(f64), TypeError, rf"{bias} must have dtype float32 \(the dtype of x\)"),
            (bias, lambda a: ["x"] * (G * H), TypeError, rf"{bias} must hold real numbers"),
        ]
    if cell == "lstm":
        cases += [
            ("c0", lambda a: np.zeros((B + 1, H), F32), ValueError, rf"c0 must have shape \({B}, {H}\), got \({B + 1}, {H}\)"),
            ("c0", lambda a: a["c0"][None], ValueError, r"c0 must have shape .*got \(1, "),
            ("c0", lambda a: a["c0"].astype(f64), TypeError, r"c0 must have dtype float32 \(the dtype of x\)"),
            ("peephole", lambda a: np.zeros((4, H), F32), ValueError, rf"peephole must have shape \(3, {H}\), got \(4, {H}\)"),
            ("peephole", lambda a: np.zeros(3 * H, F32), ValueError, r"peephole must have shape .*got \(18,\)"),
            ("peephole", lambda a: np.zeros((3, H)), TypeError, r"peephole must have dtype float32 \(the dtype of x\)"),
        ]
    elif cell == "gru":
        cases += [
            ("reset_after", lambda a: 1, TypeError, r"reset_after must be a bool, got int"),
            ("reset_after", lambda a: "True", TypeError, r"reset_after must be a bool, got str"),
        ]
    else:
        cases += [
            ("nonlinearity", lambda a: "gelu", ValueError, r"nonlinearity must be one of \('tanh', .*got 'gelu'"),
            ("nonlinearity", lambda a: None, ValueError, r"nonlinearity must be one of .*got None"),
            ("nonlinearity", lambda a: "TANH", ValueError, r"nonlinearity must be one of .*got 'TANH'"),
        ]
    # variant options (docs/variants.md), the same in functional and reference
    cases += [
        ("zoneout", lambda a: 1.0, ValueError, r"zoneout must lie in \[0, 1\), got 1.0"),
        ("zoneout", lambda a: -0.1, ValueError, r"zoneout must lie in \[0, 1\)"),
        ("zoneout", lambda a: True, TypeError, r"zoneout must be a float in \[0, 1\), got bool"),
        ("zoneout_mask", lambda a: np.zeros((T, B, H + 1), F32), ValueError,
         rf"zoneout_mask must have shape \({T}, {B}, {H}\), got \({T}, {B}, {H + 1}\)"),
        ("zoneout_mask", lambda a: np.zeros((T, B, H)), TypeError,
         r"zoneout_mask must have dtype float32 \(the dtype of x\)"),
        ("recurrent_mask", lambda a: np.zeros((G, B + 1, H), F32), ValueError,
         rf"recurrent_mask must have shape \({G}, {B}, {H}\), got \({G}, {B + 1}, {H}\)"),
        ("recurrent_mask", lambda a: np.zeros((B, H), F32), ValueError, r"recurrent_mask must have shape"),
    ]
    if cell == "rnn":
        cases += [("layer_norm", lambda a: True, ValueError,
                   r"layer_norm=True is supported for LSTM and GRU only, not SimpleRNN")]
    else:
        cases += [
            ("layer_norm", lambda a: 1, TypeError, r"layer_norm must be a bool, got int"),
            ("ln_gain", lambda a: np.ones((2, G * H), F32), ValueError,
             r"ln_gain is given but layer_norm=False; pass layer_norm=True"),
        ]
    if cell == "gru":
        cases += [("reset_after", lambda a: (a.update(layer_norm=True), False)[1], ValueError,
                   r"layer_norm=True needs reset_after=True for a GRU")]
    if cell != "rnn":
        cases += [
            ("activation", lambda a: "swish", ValueError, r"activation must be one of \('tanh', .*got 'swish'"),
            ("recurrent_activation", lambda a: None, ValueError, r"recurrent_activation must be one of .*got None"),
        ]
    if cell != "lstm":
        cases += [
            ("leak_rate", lambda a: 0.0, ValueError, r"leak_rate must lie in \(0, 1\] \(1 = no leak\), got 0.0"),
            ("leak_rate", lambda a: 1.5, ValueError, r"leak_rate must lie in \(0, 1\]"),
            ("leak_rate", lambda a: "0.5", TypeError, r"leak_rate must be a float in \(0, 1\], got str"),
        ]
    else:
        cases += [("zoneout_mask_c", lambda a: np.zeros((T, B, H + 1), F32), ValueError,
                   rf"zoneout_mask_c must have shape \({T}, {B}, {H}\)")]
    return cases


FORWARD_CASES = [pytest.param(cell, backend, *case, id=f"{cell}-{backend}-{case[0]}-{i}")
                 for cell in GATES for backend in BACKENDS
                 for i, case in enumerate(bad_forward_values(cell))]


@pytest.mark.parametrize("cell, backend, arg, make, exc, match", FORWARD_CASES)
def test_forward_rejects(cell, backend, arg, make, exc, match):
    a = good_args(cell)
    a[arg] = make(a)
    fn = getattr(BACKENDS[backend], f"{cell}_forward")
    with pytest.raises(exc, match=match):
        call_unmodified(fn, **a)


# -- functional and reference: backward ------------------------------------------------------

def bad_backward_values(cell):
    """(argument, bad value maker(cache, other_cell_cache, other_backend_cache), exc, pattern)."""
    d_c = [("d_c_n", lambda: np.zeros((B, H + 1), F32), ValueError, rf"d_c_n must have shape \({B}, {H}\), got"),
           ("d_c_n", lambda: np.zeros((B, H)), TypeError, r"d_c_n must have dtype float32 \(the dtype of x\)")]
    return [
        ("cache", lambda: None, ValueError, rf"{cell}_backward: cache is None; run the forward pass with training=True"),
        ("cache", lambda: "cache", TypeError, rf"{cell}_backward: cache must be the cache returned by the matching forward"),
        ("cache", lambda: {"x": 1}, TypeError, r"cache must be the cache returned .*got dict"),
        ("d_out", lambda: np.zeros((T, B, H + 1), F32), ValueError, rf"d_out must have shape \({T}, {B}, {H}\), got \({T}, {B}, {H + 1}\)"),
        ("d_out", lambda: np.zeros((T + 1, B, H), F32), ValueError, r"d_out must have shape .*got \(6, "),
        ("d_out", lambda: np.zeros((B, H), F32), ValueError, r"d_out must have shape .*got \(3, 6\)"),
        ("d_out", lambda: np.zeros((T, B, H)), TypeError, r"d_out must have dtype float32 \(the dtype of x\), got float64"),
        ("d_out", lambda: np.zeros((T, B, H), np.int64), TypeError, r"d_out must have dtype float32 or float64, got int64"),
        ("d_out", lambda: np.zeros((T, B, H), np.complex64), TypeError, r"d_out must have dtype .*complex64"),
        ("d_out", lambda: [["a"]], TypeError, r"d_out must hold real numbers"),
        ("d_h_n", lambda: np.zeros((1, B, H), F32), ValueError, rf"d_h_n must have shape \({B}, {H}\), got \(1, {B}, {H}\)"),
        ("d_h_n", lambda: np.zeros((B, H), np.float16), TypeError, r"d_h_n must have dtype .*float16"),
    ] + (d_c if cell == "lstm" else [])


BACKWARD_CASES = [pytest.param(cell, backend, *case, id=f"{cell}-{backend}-{case[0]}-{i}")
                  for cell in GATES for backend in BACKENDS
                  for i, case in enumerate(bad_backward_values(cell))]


def forward_cache(cell, module, dtype=F32):
    a = good_args(cell, dtype)
    return getattr(module, f"{cell}_forward")(**a)[-1]


@pytest.mark.parametrize("cell, backend, arg, make, exc, match", BACKWARD_CASES)
def test_backward_rejects(cell, backend, arg, make, exc, match):
    M = BACKENDS[backend]
    kw = {"cache": forward_cache(cell, M), arg: make()}
    with pytest.raises(exc, match=match):
        call_unmodified(getattr(M, f"{cell}_backward"), **kw)


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("cell", list(GATES))
def test_backward_rejects_caches_of_other_cells_and_backends(cell, backend):
    M = BACKENDS[backend]
    backward = getattr(M, f"{cell}_backward")
    for other in GATES:
        if other != cell:
            with pytest.raises(TypeError, match=rf"(?i){cell}_backward: cache .*{other}"):
                backward(forward_cache(other, M))
    for name, other_backend in BACKENDS.items():
        if name != backend:
            with pytest.raises(TypeError, match=r"cache must be the cache returned by the matching"):
                backward(forward_cache(cell, other_backend))
    inference = getattr(M, f"{cell}_forward")(**good_args(cell), training=False)[-1]
    with pytest.raises(ValueError, match="cache is None"):
        backward(inference)


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("cell", list(GATES))
def test_backward_twice_gives_the_same_gradients(cell, backend):
    """The functional cache is read, never consumed or changed: a second backward
    (with a list as d_out, converted) repeats the first exactly."""
    M = BACKENDS[backend]
    cache = forward_cache(cell, M)
    d_out = np.random.default_rng(1).standard_normal((T, B, H)).astype(F32)
    first = call_unmodified(getattr(M, f"{cell}_backward"), cache, d_out)
    second = getattr(M, f"{cell}_backward")(cache, d_out.tolist())
    for f, s in zip(first, second):
        if f is not None:
            np.testing.assert_array_equal(f, s)


# -- legal but unusual inputs: the same answer as the plain call -----------------------------

def layouts(a):
    """Views of the same values in other memory layouts (name -> transformed args)."""
    def fortran(v):
        return np.asfortranarray(v)

    def reversed_view(v):            # negative strides over a flipped copy
        return np.flip(np.flip(v).copy())

    def strided(v):                  # every other element of a larger buffer
        big = np.zeros(v.shape[:-1] + (2 * v.shape[-1],), v.dtype)
        big[..., ::2] = v
        return big[..., ::2]

    def read_only(v):
        v = v.copy()
        v.flags.writeable = False
        return v

    def lists(v):
        return v.tolist()

    out = {}
    for name, f in [("fortran", fortran), ("negative_strides", reversed_view),
                    ("strided", strided), ("read_only", read_only)]:
        out[name] = {k: f(v) if isinstance(v, np.ndarray) else v for k, v in a.items()}
    out["weights_as_lists"] = {k: lists(v) if k not in ("x", "lengths") else v for k, v in a.items()}
    out["lengths_list"] = dict(a, lengths=a["lengths"].tolist())
    out["lengths_uint8"] = dict(a, lengths=a["lengths"].astype(np.uint8))
    out["lengths_int32"] = dict(a, lengths=a["lengths"].astype(np.int32))
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("cell", list(GATES))
def test_unusual_layouts_give_identical_results(cell, backend, dtype):
    """Bit-identical, not just close: inputs are copied to C order before use and the
    kernels' results do not depend on where the data lives (docs/numerics.md)."""
    M = BACKENDS[backend]
    forward, backward = getattr(M, f"{cell}_forward"), getattr(M, f"{cell}_backward")
    a = good_args(cell, dtype)
    d_out = np.random.default_rng(2).standard_normal((T, B, H)).astype(dtype)
    *want, cache = forward(**a)
    want_g = backward(cache, d_out)
    for name, args in layouts(a).items():
        *got, cache = call_unmodified(forward, **args)
        for w, g in zip(want, got):
            np.testing.assert_array_equal(g, w, err_msg=name)
            assert g.flags.writeable and g.flags.c_contiguous, name
        d = np.asfortranarray(d_out) if name == "fortran" else d_out
        for w, g in zip(want_g, call_unmodified(backward, cache, d)):
            if w is not None:
                np.testing.assert_array_equal(g, w, err_msg=name)


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("cell", list(GATES))
def test_empty_axes(cell, backend):
    """T = 0, B = 0 and I = 0 are legal: out has the empty shape, the states pass
    through (T = 0), and backward returns zero-size or zero gradients. With B = 0,
    T can be huge (x holds no data) and the call still returns at once."""
    M = BACKENDS[backend]
    forward, backward = getattr(M, f"{cell}_forward"), getattr(M, f"{cell}_backward")
    a = good_args(cell)
    n_states = 2 if cell == "lstm" else 1

    r = forward(**dict(a, x=a["x"][:0], lengths=None))
    assert r[0].shape == (0, B, H)
    np.testing.assert_array_equal(r[1], a["h0"])
    g = backward(r[-1], None, np.ones((B, H), F32))
    assert g.dx.shape == (0, B, I) and not g.dw_ih.any() and not g.dw_hh.any()
    np.testing.assert_array_equal(g.dh0, np.ones((B, H)))      # d h_n flows to h0 unchanged

    empty_b = {k: (v[:, :0] if k == "x" else v[:0]) if k in ("x", "h0", "c0", "lengths") else v
               for k, v in a.items()}
    for t in (T, 10**12):
        r = forward(**dict(empty_b, x=np.zeros((t, 0, I), F32), lengths=None))
        assert r[0].shape == (t, 0, H) and all(s.shape == (0, H) for s in r[1:1 + n_states])
        g = backward(r[-1])
        assert not g.dw_hh.any() and not g.dw_ih.any()

    no_features = dict(a, x=a["x"][:, :, :0], w_ih=a["w_ih"][:, :0])
    out = forward(**no_features)[0]
    # I = 0: the gates see only the biases and h; equal to running with zero inputs.
    want = forward(**dict(a, x=np.zeros_like(a["x"])))[0]
    np.testing.assert_allclose(out, want, rtol=0, atol=1e-6)   # float32: same ops, ~ulps

    zero_lengths = forward(**dict(a, lengths=np.zeros(B, np.int64)))
    assert not zero_lengths[0].any()
    np.testing.assert_array_equal(zero_lengths[1], a["h0"])


# -- sizes that cannot be allocated ----------------------------------------------------------

@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("cell", list(GATES))
def test_overflowing_sizes_raise_memory_error(cell, backend):
    """x with I = 0 holds no data for any T and B, but out would need T*B*H elements:
    a size past the address space is refused before anything is allocated."""
    a = good_args(cell)
    huge = 2**30                               # x's shape itself must stay addressable
    kw = {k: v for k, v in a.items() if k not in ("h0", "c0", "lengths")}
    kw.update(x=np.zeros((huge, huge, 0), F32), w_ih=a["w_ih"][:, :0])
    with pytest.raises(MemoryError, match=rf"x of shape \(T={huge}, B={huge}, I\) with H={H} hidden units needs \d+ bytes"):
        getattr(BACKENDS[backend], f"{cell}_forward")(**kw)


@needs_cpp
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("cell", list(GATES))
def test_allocation_failure_raises_memory_error_naming_the_array(cell, training):
    """Addressable sizes, but out alone (256 TiB) exceeds the 128 TiB of x86-64 user
    address space, so the allocation fails whatever the kernel's overcommit policy:
    MemoryError naming the array, and the process lives on. x (I = 0) holds no data."""
    G, H_big = GATES[cell], 256
    args = dict(x=np.zeros((2**28, 2**10, 0), F32), w_ih=np.zeros((G * H_big, 0), F32),
                w_hh=np.zeros((G * H_big, H_big), F32), training=training)
    with pytest.raises(MemoryError, match=r"fastrnn: cannot allocate [\d.]+ GiB for out of shape "
                                          r"\(268435456, 1024, 256\)"):
        getattr(cpp, f"{cell}_forward")(**args)
    assert getattr(cpp, f"{cell}_forward")(**good_args(cell))[0].shape == (T, B, H)


@needs_cpp
def test_cpp_second_line_refuses_overflow():
    """The kernel module (fastrnn._isa.core) is private, but its own size check must
    stand even when called directly, past the Python checks."""
    from fastrnn._isa import core as _core
    x = np.zeros((2**30, 2**30, 0), F32)
    w_ih, w_hh, b = np.zeros((8, 0), F32), np.zeros((8, 2), F32), np.zeros(8, F32)
    h0 = np.zeros((1, 2), F32)             # shapes need not match: the size check comes first
    with pytest.raises(OverflowError, match="fastrnn._core: the size of the outputs of x and w_hh overflows"):
        _core.lstm_forward(x, w_ih, w_hh, b, b, h0, h0, None, None, False, False)


# -- layers ----------------------------------------------------------------------------------

LAYERS = {"LSTM": LSTM, "GRU": GRU, "SimpleRNN": SimpleRNN}
L_KW = dict(num_layers=2, bidirectional=True)
SH = (4, B, H)                          # (num_layers * directions, B, H)


def layer_states(cls, value):
    return (value, value) if cls is LSTM else value


def bad_call_values(cls):
    """(name, make(x) -> kwargs for the call, exc, pattern)."""
    x = lambda: np.zeros((T, B, I), F32)        # noqa: E731
    s = layer_states(cls, np.zeros(SH, F32))
    cases = [
        ("x-list", lambda: dict(x=x().tolist()), TypeError, r"x must be a numpy.ndarray \(T, B, I\) or \(T, I\) of dtype float32, or a PackedSequence, got list"),
        ("x-rank4", lambda: dict(x=x()[None]), ValueError, r"x must be a rank-3 numpy.ndarray \(T, B, I\) or a rank-2 \(T, I\) one \(unbatched\), got shape \(1, 5, 3, 4\)"),
        ("x-rank1", lambda: dict(x=x()[0, 0]), ValueError, r"x must be a rank-3 .* got shape \(4,\)"),
        ("x-rank2-features", lambda: dict(x=x()[:, 0, :2]), ValueError, r"x must have shape \(5, 4\) \(T, input_size\), got \(5, 2\)"),
        ("x-rank2-lengths", lambda: dict(x=x()[:, 0], lengths=np.array([5])), ValueError, r"lengths must be None for unbatched"),
        ("x-rank2-batched-hx", lambda: dict(x=x()[:, 0], hx=s), ValueError,
         r"[hc]_0 must have shape \(4, 6\) \(num_layers \* num_directions, hidden_size\) for unbatched x, got \(4, 3, 6\)"),
        ("x-float64", lambda: dict(x=x().astype(np.float64)), TypeError, r"x must have dtype float32 \(the layer's dtype\), got float64"),
        ("x-int", lambda: dict(x=x().astype(int)), TypeError, r"x must have dtype float32 .*got int64"),
        ("x-complex", lambda: dict(x=x().astype(np.complex64)), TypeError, r"x must have dtype float32 .*got complex64"),
        ("x-features", lambda: dict(x=np.zeros((T, B, I + 1), F32)), ValueError,
         r"x must have shape \(5, 3, 4\) \(T, B, input_size\), got \(5, 3, 5\)"),
        ("hx-shape", lambda: dict(x=x(), hx=layer_states(cls, np.zeros((2, B, H), F32))), ValueError,
         r"[hc]_0 must have shape \(4, 3, 6\) \(num_layers \* num_directions, batch, hidden_size\), got \(2, 3, 6\)"),
        ("hx-batch", lambda: dict(x=x(), hx=layer_states(cls, np.zeros((4, B + 1, H), F32))), ValueError,
         r"[hc]_0 must have shape \(4, 3, 6\)"),
        ("hx-dtype", lambda: dict(x=x(), hx=layer_states(cls, np.zeros(SH))), TypeError,
         r"[hc]_0 must have dtype float32 \(the layer's dtype\), got float64"),
        ("lengths-neg", lambda: dict(x=x(), lengths=np.array([-1, 2, 3])), ValueError,
         r"lengths must lie in \[0, 5\] \(T = x.shape\[0\]\), got values from -1"),
        ("lengths-big", lambda: dict(x=x(), lengths=np.array([1, 2, 6])), ValueError, r"lengths must lie in \[0, 5\]"),
        ("lengths-float", lambda: dict(x=x(), lengths=np.ones(B)), TypeError, r"lengths must be an integer array"),
        ("lengths-shape", lambda: dict(x=x(), lengths=np.ones(B + 1, int)), ValueError, r"lengths must have shape \(3,\)"),
        ("training", lambda: dict(x=x(), training="yes"), TypeError, r"training must be None or a bool, got str"),
    ]
    if cls is LSTM:
        cases += [("hx-not-tuple", lambda: dict(x=x(), hx=np.zeros(SH, F32)), TypeError,
                   r"the LSTM states must be a tuple \(h_0, c_0\) or None, got ndarray"),
                  ("hx-three", lambda: dict(x=x(), hx=(s[0], s[0], s[0])), TypeError, r"the LSTM states must be a tuple"),
                  ("hx-list", lambda: dict(x=x(), hx=(s[0].tolist(), s[1])), TypeError,
                   r"h_0 must be a numpy.ndarray of dtype float32, got list")]
    else:
        cases += [("hx-tuple", lambda: dict(x=x(), hx=(s, s)), TypeError,
                   rf"h_0 must be a numpy.ndarray or None \(a {cls.__name__} has one state\), got a tuple"),
                  ("hx-list", lambda: dict(x=x(), hx=s.tolist()), TypeError,
                   rf"h_0 must be a numpy.ndarray or None \(a {cls.__name__} has one state\), got a list")]
    return cases


def per_class_and_backend(classes, bad_cases):
    """pytest params (name, backend, *case) for every class, backend and case of
    bad_cases(cls), with ids name-backend-case."""
    return [pytest.param(name, backend, *case, id=f"{name}-{backend}-{case[0]}")
            for name, cls in classes.items() for backend in BACKENDS
            for case in bad_cases(cls)]


def assert_call_refused_unchanged(module, make, exc, match):
    """module(**make()) raises exc matching `match` and leaves its parameters as they were."""
    params = module.state_dict()
    with pytest.raises(exc, match=match):
        call_unmodified(module, **make())
    for k, v in module.params.items():
        np.testing.assert_array_equal(v, params[k])


LAYER_CALL_CASES = per_class_and_backend(LAYERS, bad_call_values)


@pytest.mark.parametrize("name, backend, case, make, exc, match", LAYER_CALL_CASES)
def test_layer_call_rejects(name, backend, case, make, exc, match):
    layer = LAYERS[name](I, H, **L_KW, seed=0, _backend=BACKENDS[backend])
    assert_call_refused_unchanged(layer, make, exc, match)
    with pytest.raises(ValueError, match="no forward pass has run yet"):
        layer.backward(None)            # a refused call leaves no cache behind


def bad_backward_calls(cls):
    good = np.zeros((T, B, 2 * H), F32)
    dh = layer_states(cls, np.zeros((4, B, H), F32))
    return [
        ("d_out-shape", lambda: dict(d_out=good[:, :, :H]), ValueError,
         r"d_out must have shape \(5, 3, 12\) \(the shape of out\), got \(5, 3, 6\)"),
        ("d_out-dtype", lambda: dict(d_out=good.astype(np.float64)), TypeError,
         r"d_out must have dtype float32 \(the layer's dtype\), got float64"),
        ("d_out-list", lambda: dict(d_out=good.tolist()), TypeError, r"d_out must be a numpy.ndarray of dtype float32, got list"),
        ("d_out-int", lambda: dict(d_out=good.astype(np.int32)), TypeError, r"d_out must have dtype float32 .*got int32"),
        ("dh_n-shape", lambda: dict(d_out=good, dh_n=layer_states(cls, np.zeros((1, B, H), F32))), ValueError,
         r"d[hc]_n must have shape \(4, 3, 6\)"),
        ("dh_n-dtype", lambda: dict(d_out=good, dh_n=layer_states(cls, np.zeros((4, B, H)))), TypeError,
         r"d[hc]_n must have dtype float32"),
        ("dh_n-wrong-arity", lambda: dict(d_out=good, dh_n=(dh, dh, dh)), TypeError, r"states must be a tuple|one state"),
    ]


LAYER_BACKWARD_CASES = per_class_and_backend(LAYERS, bad_backward_calls)


@pytest.mark.parametrize("name, backend, case, make, exc, match", LAYER_BACKWARD_CASES)
def test_layer_backward_rejects_and_keeps_its_cache(name, backend, case, make, exc, match):
    layer = LAYERS[name](I, H, **L_KW, seed=0, _backend=BACKENDS[backend])
    layer(np.ones((T, B, I), F32))
    with pytest.raises(exc, match=match):
        call_unmodified(layer.backward, **make())
    assert not any(g.any() for g in layer.grads.values())     # nothing accumulated
    layer.backward(np.ones((T, B, 2 * H), F32))              # the cache is still there
    assert all(g.any() for g in layer.grads.values())


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_backward_sequence_errors(name, backend):
    layer = LAYERS[name](I, H, seed=0, _backend=BACKENDS[backend])
    x = np.ones((T, B, I), F32)
    with pytest.raises(ValueError, match=rf"{name}.backward: no forward pass has run yet"):
        layer.backward(None)
    layer(x)
    layer.backward(None)
    with pytest.raises(ValueError, match="consumed by a previous backward"):
        layer.backward(None)
    with fastrnn.no_grad():
        layer(x)
    with pytest.raises(ValueError, match="gradients off"):
        layer.backward(None)


def bad_state_dicts(cls):
    layer = cls(I, H, **L_KW, seed=0)
    sd = layer.state_dict()
    first = next(iter(sd))
    return [
        ("not-mapping", lambda: [1, 2], TypeError, r"state_dict must be a mapping name -> array, got list"),
        ("missing", lambda: {k: v for k, v in sd.items() if k != first}, ValueError, rf"Missing: \['{first}'\]"),
        ("unexpected", lambda: dict(sd, extra=np.zeros(1)), ValueError, r"Unexpected: \['extra'\]"),
        ("shape", lambda: dict(sd, **{first: sd[first][:-1]}), ValueError,
         rf"state_dict\['{first}'\] must have shape \({sd[first].shape[0]}, {I}\), got"),
        ("strings", lambda: dict(sd, **{first: sd[first].astype(str)}), TypeError, rf"state_dict\['{first}'\] must hold real numbers"),
        ("complex", lambda: dict(sd, **{first: sd[first] + 1j}), TypeError, r"must hold real numbers, got dtype complex"),
        ("bool", lambda: dict(sd, **{first: sd[first] > 0}), TypeError, r"must hold real numbers, got dtype bool"),
        ("out-of-range", lambda: dict(sd, **{first: np.full(sd[first].shape, 1e300)}), ValueError,
         rf"state_dict\['{first}'\] has finite values beyond the range of float32"),
    ]


LOAD_CASES = [pytest.param(name, *case, id=f"{name}-{case[0]}")
              for name, cls in LAYERS.items() for case in bad_state_dicts(cls)]


@pytest.mark.parametrize("name, case, make, exc, match", LOAD_CASES)
def test_load_state_dict_rejects_and_changes_nothing(name, case, make, exc, match):
    layer = LAYERS[name](I, H, **L_KW, seed=1)
    before = layer.state_dict()
    with pytest.raises(exc, match=match):
        call_unmodified(layer.load_state_dict, make())
    for k, v in layer.params.items():
        np.testing.assert_array_equal(v, before[k])


CONSTRUCTOR_CASES = [
    (dict(input_size=0), ValueError, r"input_size must be a positive int, got 0"),
    (dict(input_size=-1), ValueError, r"input_size must be a positive int"),
    (dict(input_size=4.0), ValueError, r"input_size must be a positive int, got 4.0"),
    (dict(input_size=True), ValueError, r"input_size must be a positive int, got True"),
    (dict(input_size="4"), ValueError, r"input_size must be a positive int, got '4'"),
    (dict(hidden_size=0), ValueError, r"hidden_size must be a positive int"),
    (dict(hidden_size=None), ValueError, r"hidden_size must be a positive int, got None"),
    (dict(num_layers=0), ValueError, r"num_layers must be a positive int"),
    (dict(num_layers=1.5), ValueError, r"num_layers must be a positive int"),
    (dict(dropout=-0.1, num_layers=2), ValueError, r"dropout must be a number in \[0, 1\], got -0.1"),
    (dict(dropout=float("nan"), num_layers=2), ValueError, r"dropout must be a number in \[0, 1\], got nan"),
    (dict(dropout="0.5", num_layers=2), ValueError, r"dropout must be a number in \[0, 1\]"),
    (dict(bias="yes"), TypeError, r"bias must be a bool, got str"),
    (dict(batch_first=1), TypeError, r"batch_first must be a bool, got int"),
    (dict(bidirectional=None), TypeError, r"bidirectional must be a bool, got NoneType"),
    (dict(dtype=np.float16), TypeError, r"dtype must be float32 or float64"),
    (dict(dtype=int), TypeError, r"dtype must be float32 or float64"),
    (dict(seed="a"), TypeError, r"seed must be None, an int or"),
    (dict(seed=-1), ValueError, r"seed must be a non-negative int, got -1"),
    (dict(precision="float16"), ValueError, r"precision must be one of \('float32', 'bfloat16'\), got 'float16'"),
    (dict(precision=None), ValueError, r"precision must be one of .*, got None"),
    (dict(precision="bfloat16", dtype=np.float64), ValueError,
     r"precision='bfloat16' needs float32 arrays .*got float64"),
]


@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("kwargs, exc, match", CONSTRUCTOR_CASES)
def test_layer_constructor_rejects(name, kwargs, exc, match):
    kw = dict(dict(input_size=I, hidden_size=H), **kwargs)
    with pytest.raises(exc, match=match):
        LAYERS[name](**kw)


@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_precision_attribute_and_dtype_change_rejected(name):
    """layer.precision is checked when set, and a bf16 layer moved to float64 refuses to run
    (the layer and its parameters unchanged)."""
    layer = LAYERS[name](I, H, seed=0)
    with pytest.raises(ValueError, match=r"precision must be one of .*, got 'int8'"):
        layer.precision = "int8"
    assert layer.precision == "float32"
    layer.precision = "bfloat16"
    layer.to(np.float64)
    params = {k: v.copy() for k, v in layer.params.items()}
    with pytest.raises(ValueError, match=r"precision='bfloat16' needs float32 arrays .*got float64"):
        call_unmodified(layer, np.zeros((T, B, I)))
    assert all(np.array_equal(layer.params[k], v) for k, v in params.items())


def precision_cases(cell):
    """(forward or backward, keyword arguments, dtype, exc, pattern) of precision=."""
    mask = np.ones((GATES[cell], B, H), F32)
    return [
        ("forward", dict(precision="int8"), F32, ValueError,
         r"precision must be one of \('float32', 'bfloat16'\), got 'int8'"),
        ("forward", dict(precision=16), F32, ValueError, r"precision must be one of .*, got 16"),
        ("forward", dict(precision="bfloat16"), np.float64, ValueError,
         r"precision='bfloat16' needs float32 arrays .*got float64"),
        ("forward", dict(precision="bfloat16", recurrent_mask=mask), F32, ValueError,
         r"precision='bfloat16' cannot be combined with recurrent_mask"),
        ("backward", dict(precision="fp16"), F32, ValueError, r"precision must be one of .*, got 'fp16'"),
        ("backward", dict(precision="bfloat16"), np.float64, ValueError,
         r"precision='bfloat16' needs float32 arrays .*got float64"),
    ]


@needs_cpp
@pytest.mark.parametrize("cell, what, kwargs, dtype, exc, match",
                         [pytest.param(cell, *case, id=f"{cell}-{i}") for cell in GATES
                          for i, case in enumerate(precision_cases(cell))])
def test_functional_precision_rejected(cell, what, kwargs, dtype, exc, match):
    a = good_args(cell, dtype)
    with pytest.raises(exc, match=match):
        if what == "forward":
            call_unmodified(getattr(cpp, f"{cell}_forward"), **a, **kwargs)
        else:
            cache = getattr(cpp, f"{cell}_forward")(**a)[-1]
            call_unmodified(getattr(cpp, f"{cell}_backward"), cache, **kwargs)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(nonlinearity="swish"), ValueError, r"nonlinearity must be one of \(.*\), got 'swish'"),
    (dict(nonlinearity=None), ValueError, r"nonlinearity must be one of .*, got None"),
    (dict(layer_norm=True), ValueError, r"layer_norm=True is supported for LSTM and GRU only"),
    (dict(activation="tanh"), TypeError, r"unexpected keyword argument 'activation'"),
])
def test_simple_rnn_options_rejected(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        SimpleRNN(I, H, **kwargs)


# the layer-level variant and Keras options (docs/variants.md), for every layer they exist on
VARIANT_OPTION_CASES = [
    (dict(recurrent_dropout=1.0), ValueError, r"recurrent_dropout must lie in \[0, 1\), got 1.0"),
    (dict(recurrent_dropout=-0.1), ValueError, r"recurrent_dropout must lie in \[0, 1\)"),
    (dict(recurrent_dropout="0.1"), TypeError, r"recurrent_dropout must be a float"),
    (dict(zoneout=1.5), ValueError, r"zoneout must lie in \[0, 1\), got 1.5"),
    (dict(zoneout=True), TypeError, r"zoneout must be a float"),
    (dict(go_backwards=1), TypeError, r"go_backwards must be a bool"),
    (dict(stateful="no"), TypeError, r"stateful must be a bool"),
    (dict(zero_output_for_mask=0), TypeError, r"zero_output_for_mask must be a bool"),
    (dict(merge_mode="max", bidirectional=True), ValueError, r"merge_mode must be one of"),
    (dict(merge_mode="sum"), ValueError, r"merge_mode='sum' needs bidirectional=True"),
]
GATED_OPTION_CASES = [
    (dict(activation="swish"), ValueError, r"activation must be one of .*, got 'swish'"),
    (dict(recurrent_activation="gelu"), ValueError, r"recurrent_activation must be one of"),
    (dict(layer_norm=1), TypeError, r"layer_norm must be a bool"),
]


@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("kwargs, exc, match", VARIANT_OPTION_CASES + [
    pytest.param(dict(leak_rate=0.0), ValueError, r"leak_rate must lie in \(0, 1\]", id="leak0"),
    pytest.param(dict(leak_rate=1.5), ValueError, r"leak_rate must lie in \(0, 1\]", id="leak1.5"),
] + GATED_OPTION_CASES)
def test_layer_variant_options_rejected(name, kwargs, exc, match):
    cls = LAYERS[name]
    if "leak_rate" in kwargs and name == "LSTM" or "activation" in str(kwargs) and \
            name == "SimpleRNN":
        exc, match = TypeError, r"unexpected keyword argument"   # not an option of this cell
    with pytest.raises(exc, match=match):
        cls(I, H, **kwargs)


def test_layer_norm_needs_reset_after():
    with pytest.raises(ValueError, match=r"layer_norm=True needs reset_after=True"):
        GRU(I, H, reset_after=False, layer_norm=True)


@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_mask_rejected(name):
    layer = LAYERS[name](I, H, seed=0)
    x = good_args("rnn")["x"]
    ok = np.ones((B, T), dtype=bool)
    for mask, exc, match in [
            (ok.astype(np.float32), TypeError, r"mask must be a numpy.ndarray of dtype bool"),
            ([[True] * T] * B, TypeError, r"mask must be a numpy.ndarray of dtype bool"),
            (ok.T.copy(), ValueError, r"mask must have shape \(3, 5\) \(batch, time\)")]:
        with pytest.raises(exc, match=match):
            call_unmodified(layer, x, mask=mask)
    with pytest.raises(ValueError, match=r"pass either lengths or mask, not both"):
        layer(x, lengths=np.array([5, 2, 0]), mask=ok)
    with pytest.raises(ValueError, match=r"mask and go_backwards need a padded x"):
        layer(fastrnn.utils.rnn.pack_padded_sequence(x, np.array([5, 3, 1])), mask=ok)


@pytest.mark.parametrize("cls, kwargs, match", [
    (GRU, dict(reset_after=1), r"reset_after must be a bool, got int"),
    (LSTM, dict(peephole="no"), r"peephole must be a bool, got str"),
])
def test_cell_options_rejected(cls, kwargs, match):
    with pytest.raises(TypeError, match=match):
        cls(I, H, **kwargs)


# -- interop and threads ---------------------------------------------------------------------

@pytest.mark.parametrize("fn, arg, match", [
    (fastrnn.from_torch, "lstm", r"module must be a torch.nn.LSTM, torch.nn.GRU or torch.nn.RNN"),
    (fastrnn.from_torch, None, r"module must be a torch.nn.LSTM"),
    (fastrnn.to_torch_state_dict, {"weight_ih_l0": 1}, r"layer must be a fastrnn LSTM, GRU or SimpleRNN"),
    (fastrnn.to_keras_weights, np.zeros(3), r"layer must be a fastrnn LSTM, GRU or SimpleRNN"),
    (fastrnn.from_keras, 3, r"layer must be a Keras 3 LSTM, GRU, SimpleRNN or Bidirectional"),
    (fastrnn.from_keras, LSTM(I, H), r"layer must be a Keras 3 LSTM"),
])
def test_interop_rejects_objects_of_the_wrong_kind(fn, arg, match):
    with pytest.raises(TypeError, match=match):
        fn(arg)


@needs_cpp
@pytest.mark.parametrize("n, exc, match", [
    (0, ValueError, r"n must be between 1 and 1024, got 0"),
    (-3, ValueError, r"n must be between 1 and 1024, got -3"),
    (10**6, ValueError, r"n must be between 1 and 1024, got 1000000"),
    (2**40, ValueError, r"n must be between 1 and 1024"),
    (1.5, TypeError, r"n must be an int, got float"),
    ("2", TypeError, r"n must be an int, got str"),
    (True, TypeError, r"n must be an int, got bool"),
])
def test_set_num_threads_rejects(n, exc, match):
    before = fastrnn.get_num_threads()
    with pytest.raises(exc, match=match):
        fastrnn.set_num_threads(n)
    assert fastrnn.get_num_threads() == before



# -- inference engine ------------------------------------------------------------------------

def bad_engine_cases(cls):
    """(name, make() -> (method, args, kwargs), exc, pattern) for an engine of a 2-layer
    unidirectional `cls` (step) or bidirectional one (the call)."""
    sh = (2, B, H)
    s = layer_states(cls, np.zeros(sh, F32))
    x = lambda: np.zeros((T, B, I), F32)        # noqa: E731
    xt = lambda: np.zeros((B, I), F32)          # noqa: E731
    state = "state" if cls is not LSTM else r"state\[0\] \(h\)"
    cases = [
        ("call-x-list", lambda: ("call", (x().tolist(),), {}), TypeError,
         r"x must be a numpy.ndarray \(T, B, input_size\) of dtype float32, got list"),
        ("call-x-rank2", lambda: ("call", (x()[0],), {}), ValueError, r"x must be a rank-3 numpy.ndarray"),
        ("call-x-float64", lambda: ("call", (x().astype(np.float64),), {}), TypeError,
         r"x must have dtype float32 \(the engine's dtype\), got float64"),
        ("call-x-features", lambda: ("call", (np.zeros((T, B, I + 1), F32),), {}), ValueError,
         r"x must have shape \(5, 3, 4\) \(T, B, input_size\), got \(5, 3, 5\)"),
        ("call-lengths", lambda: ("call", (x(),), dict(lengths=np.array([1, 2, 6]))), ValueError,
         r"lengths must lie in \[0, 5\]"),
        ("call-state-shape", lambda: ("call", (x(),), dict(state=s)), ValueError,
         rf"{state} must have shape \(4, 3, 6\) \(num_layers \* num_directions, batch, hidden_size\), got \(2, 3, 6\)"),
        ("step-bidirectional", lambda: ("step", (xt(),), {}), ValueError,
         r"step\(\) needs a unidirectional engine: the backward direction"),
        ("step-x-rank3", lambda: ("step1", (x(),), {}), ValueError, r"x_t must have rank 2 \(B, input_size\) or 1"),
        ("step-x-float64", lambda: ("step1", (xt().astype(np.float64),), {}), TypeError,
         r"x_t must have dtype float32 \(the engine's dtype\), got float64"),
        ("step-x-list", lambda: ("step1", (xt().tolist(),), {}), TypeError, r"x_t must be a numpy.ndarray"),
        ("step-x-features", lambda: ("step1", (np.zeros((B, I + 1), F32),), {}), ValueError,
         r"x_t must have shape \(3, 4\) \(B, input_size\), got \(3, 5\)"),
        # a state of a bidirectional engine (L*D rows) given to a unidirectional one
        ("step-state-other-engine", lambda: ("step1", (xt(), layer_states(cls, np.zeros((4, B, H), F32))), {}),
         ValueError, rf"{state} must have shape \(2, 3, 6\) \(num_layers, batch, hidden_size\), got \(4, 3, 6\)"),
        ("step-state-unbatched", lambda: ("step1", (xt()[0], s), {}), ValueError,
         rf"{state} must have shape \(2, 6\) \(num_layers, hidden_size\), got \(2, 3, 6\)"),
        ("step-state-dtype", lambda: ("step1", (xt(), layer_states(cls, np.zeros(sh))), {}), TypeError,
         rf"{state} must have dtype float32 \(the engine's dtype\), got float64"),
        ("step-out-not-tuple", lambda: ("step1", (xt(),), dict(out=np.zeros((B, H), F32))), TypeError,
         r"out must be a tuple \(y_t, state\)"),
        ("step-out-shape", lambda: ("step1", (xt(),), dict(out=(np.zeros((B, H + 1), F32), s))), ValueError,
         r"out\[0\] must have shape \(3, 6\)"),
        ("step-out-readonly", lambda: ("step1", (xt(),), dict(out=(np.zeros((B, H), F32), readonly(s)))),
         ValueError, r"out\[1\].* must be a writeable C-contiguous array"),
        ("precision", lambda: ("make", (), dict(precision="float16")), ValueError,
         r"precision must be one of \('float32', 'bfloat16', 'int8'\), got 'float16'"),
        ("precision-float64-bf16", lambda: ("make64", (), dict(precision="bfloat16")), ValueError,
         r"precision='bfloat16' needs a float32 layer, this one is float64"),
        ("precision-float64-int8", lambda: ("make64", (), dict(precision="int8")), ValueError,
         r"precision='int8' needs a float32 layer, this one is float64"),
        ("precision-int8-nan", lambda: ("make_nan", (), dict(precision="int8")), ValueError,
         r"precision='int8' needs finite weights: weight_hh_l1 has NaN or Inf"),
        ("precision-bf16-path", lambda: ("make_path", (), dict(precision="bfloat16", _path="amx_bf16")),
         ValueError, r"path='amx_bf16' is not one of avx512_bf16, avx2, scalar; available here: .*scalar"),
        ("precision-int8-path", lambda: ("make_path", (), dict(precision="int8", _path="avx512_bf16")),
         ValueError, r"path='avx512_bf16' is not one of avx512_vnni, avx2, scalar; available here: .*scalar"),
    ]
    if cls is LSTM:
        cases.append(("step-state-not-tuple", lambda: ("step1", (xt(), np.zeros(sh, F32)), {}), TypeError,
                      r"state must be a tuple \(h, c\) or None for an LSTM, got ndarray"))
    else:
        cases.append(("step-state-tuple", lambda: ("step1", (xt(), (s, s)), {}), TypeError,
                      rf"state must be a numpy.ndarray or None \(a {cls.__name__} has one state h\)"))
    return cases


def readonly(s):
    arrays = s if isinstance(s, tuple) else (s,)
    for a in arrays:
        a.flags.writeable = False
    return s


# Calls and steps run at every engine precision; construction cases name their own.
ENGINE_CASES = [pytest.param(name, *case, precision, id=f"{name}-{case[0]}-{precision}")
                for name, cls in LAYERS.items() for case in bad_engine_cases(cls)
                for precision in (("float32",) if case[0].startswith("precision")
                                  else ("float32", "bfloat16", "int8"))]


@needs_cpp
@pytest.mark.parametrize("name, case, make, exc, match, precision", ENGINE_CASES)
def test_engine_rejects(name, case, make, exc, match, precision):
    """Every engine precision checks its arguments alike (inputs stay float32 arrays)."""
    cls = LAYERS[name]
    method, args, kwargs = make()
    bi = cls(I, H, num_layers=2, bidirectional=True, seed=0)
    uni = cls(I, H, num_layers=2, seed=0)
    with pytest.raises(exc, match=match):
        if method == "make":
            uni.inference(**kwargs)
        elif method == "make64":
            cls(I, H, num_layers=2, seed=0, dtype=np.float64).inference(**kwargs)
        elif method == "make_nan":
            before = uni.params["weight_hh_l1"].copy()
            uni.params["weight_hh_l1"][1, 2] = np.inf
            uni.inference(**kwargs)
        elif method == "make_path":
            fastrnn.engine.InferenceEngine(uni, **kwargs)
        elif method == "call":
            call_unmodified(bi.inference(precision), *args, **kwargs)
        else:
            eng = (bi if method == "step" else uni).inference(precision)
            call_unmodified(eng.step, *args, **kwargs)
    if method == "make_nan":   # the layer's weights are left as they were
        after = uni.params["weight_hh_l1"]
        assert np.isinf(after[1, 2]) and np.array_equal(np.delete(after.ravel(), 1 * H + 2),
                                                        np.delete(before.ravel(), 1 * H + 2))

# -- ONNX (fastrnn.onnx imports onnx only inside its functions) ------------------------------

def _seq_layers(batch_first=False):
    return [GRU(I, H, batch_first=batch_first)]


@pytest.mark.parametrize("call, exc, match", [
    (lambda fo: fo.export(3), TypeError, r"layer must be a fastrnn LSTM, GRU, SimpleRNN or fastrnn.onnx.Sequential, got int"),
    (lambda fo: fo.export(LSTM(I, H), opset=2), ValueError, r"opset must be an int in \[14, "),
    (lambda fo: fo.export(LSTM(I, H), opset=True), ValueError, r"opset must be an int"),
    (lambda fo: fo.export(LSTM(I, H), dynamic_axes="yes"), ValueError, r"dynamic_axes must be True"),
    (lambda fo: fo.export(LSTM(I, H), dynamic_axes={"T": -1}), ValueError, r"dynamic_axes\['T'\] must be a positive int"),
    (lambda fo: fo.export(fo.Sequential([GRU(I, H), GRU(H, H, dtype=np.float64)])), ValueError, r"different dtypes"),
    (lambda fo: fo.from_onnx(3), TypeError, r"model_or_path must be an onnx.ModelProto or a path"),
    (lambda fo: fo.from_onnx(b"raw"), TypeError, r"model_or_path must be .*got bytes"),
    (lambda fo: fo.Sequential([]), TypeError, r"layers must be a non-empty list"),
    (lambda fo: fo.Sequential(["lstm"]), TypeError, r"layers must be a non-empty list of fastrnn"),
    (lambda fo: fo.Sequential(_seq_layers(True)), ValueError, r"must have batch_first=False"),
    (lambda fo: fo.Sequential(_seq_layers(), reverse=[True, False]), ValueError, r"reverse must have one flag per layer \(1\), got 2"),
    (lambda fo: fo.Sequential(_seq_layers())([[1.0]]), TypeError, r"x must be a numpy.ndarray \(T, B, I\), got list"),
    (lambda fo: fo.Sequential(_seq_layers())(np.zeros((T, I), F32)), ValueError, r"x must be a rank-3 numpy.ndarray"),
    (lambda fo: fo.Sequential(_seq_layers())(np.zeros((T, B, I), F32), np.zeros((1, B, H), F32)), TypeError, r"hx must be None or a list of 1 states"),
    (lambda fo: fo.Sequential(_seq_layers())(np.zeros((T, B, I), F32), lengths=[1, 2]), ValueError, r"lengths must have shape \(3,\)"),
    (lambda fo: fo.Sequential(_seq_layers())(np.zeros((T, B, I), np.float64)), TypeError, r"x must have dtype float32"),
])
def test_onnx_entry_points_reject(call, exc, match):
    pytest.importorskip("onnx")
    import fastrnn.onnx as fo
    with pytest.raises(exc, match=match):
        call(fo)

# -- echo-state networks and the variant options of the reference ---------------------------

ESN_OK = dict(input_size=2, reservoir_size=6, output_size=1, spectral_radius=0.9, leak_rate=0.5)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(reservoir_size=0), ValueError, "reservoir_size must be >= 1, got 0"),
    (dict(output_size=None), TypeError, "output_size must be an int, got NoneType"),
    (dict(spectral_radius=float("nan")), ValueError, "spectral_radius must lie in"),
    (dict(leak_rate=1.5), ValueError, r"leak_rate must lie in \(0, 1\]"),
    (dict(density=1.5), ValueError, r"density must lie in \(0, 1\]"),
])
def test_esn_constructor_rejects(kwargs, exc, match):
    from fastrnn import EchoStateNetwork
    with pytest.raises(exc, match=match):
        EchoStateNetwork(**dict(ESN_OK, **kwargs))


@pytest.mark.parametrize("call, exc, match", [
    (lambda e: e.states(np.zeros((3, 2, 3))), ValueError, r"w_ih must have shape \(6, 3\)"),
    (lambda e: e.states(np.zeros((3, 2, 2)), h0=np.zeros((2, 5))), ValueError,
     r"h0 must have shape \(2, 6\)"),
    (lambda e: e.states([[[0.0, 0.0]]]), TypeError, "x must be a numpy.ndarray"),
    (lambda e: e.fit(np.zeros((3, 2, 2)), np.zeros((3, 2, 1)), washout=-1), ValueError,
     "washout must lie in"),
    (lambda e: e.fit(np.zeros((3, 2, 2)), np.zeros((3, 2, 1)), washout=1.0), TypeError,
     "washout must be an int"),
    (lambda e: e.predict(np.zeros((3, 2, 2))), ValueError, "call fit"),
])
def test_esn_calls_reject_and_keep_inputs(call, exc, match):
    from fastrnn import EchoStateNetwork
    esn = EchoStateNetwork(**ESN_OK, seed=0)
    with pytest.raises(exc, match=match):
        call(esn)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(activation="swish"), ValueError, "activation must be one of"),
    (dict(recurrent_activation=None), ValueError, "recurrent_activation must be one of"),
    (dict(zoneout=1.0), ValueError, r"zoneout must lie in \[0, 1\)"),
    (dict(zoneout=True), TypeError, "zoneout must be a float"),
    (dict(layer_norm="yes"), TypeError, "layer_norm must be a bool"),
    (dict(ln_cell=np.ones((2, 3))), ValueError, "ln_cell is given but layer_norm=False"),
    (dict(recurrent_mask=np.ones((3, 2, 3))), ValueError, "recurrent_mask must have shape"),
    (dict(w_hr=np.ones((2, 3))), ValueError, r"w_hr must have shape \(3, 3\), got \(2, 3\)"),
])
def test_reference_variant_options_rejected(kwargs, exc, match):
    rng = np.random.default_rng(0)
    x, w_ih, w_hh = rng.random((2, 2, 2)), rng.random((12, 2)), rng.random((12, 3))
    args = dict(x=x, w_ih=w_ih, w_hh=w_hh)
    with pytest.raises(exc, match=match):
        call_unmodified(reference.lstm_forward, **args, **kwargs)

# -- cells, packed sequences, gradient mode, save/load (issue #20) ----------------------------

CELLS_API = {"LSTMCell": fastrnn.LSTMCell, "GRUCell": fastrnn.GRUCell, "RNNCell": fastrnn.RNNCell}


def cell_states(cls, value):
    return (value, value) if cls is fastrnn.LSTMCell else value


def bad_cell_calls(cls):
    x = lambda: np.zeros((B, I), F32)        # noqa: E731
    s = np.zeros((B, H), F32)
    cases = [
        ("x-list", lambda: dict(x=x().tolist()), TypeError, r"x must be a numpy.ndarray \(B, I\) or \(I,\) of dtype float32, got list"),
        ("x-rank3", lambda: dict(x=x()[None]), ValueError, r"x must be 1-D \(I,\) or 2-D \(B, I\), got shape \(1, 3, 4\)"),
        ("x-rank0", lambda: dict(x=np.zeros((), F32)), ValueError, r"x must be 1-D"),
        ("x-float64", lambda: dict(x=x().astype(np.float64)), TypeError, r"x must have dtype float32 \(the cell's dtype\), got float64"),
        ("x-features", lambda: dict(x=np.zeros((B, I + 1), F32)), ValueError, r"x must have shape \(3, 4\), got \(3, 5\)"),
        ("hx-batch", lambda: dict(x=x(), hx=cell_states(cls, np.zeros((B + 1, H), F32))), ValueError, r"hx.* must have shape \(3, 6\), got \(4, 6\)"),
        ("hx-unbatched-x", lambda: dict(x=x()[0], hx=cell_states(cls, s)), ValueError, r"hx.* must have shape \(6,\), got \(3, 6\)"),
        ("hx-dtype", lambda: dict(x=x(), hx=cell_states(cls, s.astype(np.float64))), TypeError, r"hx.* must have dtype float32"),
    ]
    if cls is fastrnn.LSTMCell:
        cases += [("hx-array", lambda: dict(x=x(), hx=s), ValueError, r"the LSTMCell states must be a tuple \(hx\[0\], hx\[1\]\) or None, got ndarray"),
                  ("hx-one", lambda: dict(x=x(), hx=(s,)), ValueError, r"states must be a tuple .*got a tuple of 1"),
                  ("hx-list-entry", lambda: dict(x=x(), hx=(s.tolist(), s)), TypeError, r"hx\[0\] must be a numpy.ndarray")]
    else:
        cases += [("hx-tuple", lambda: dict(x=x(), hx=(s, s)), TypeError, rf"hx must be a numpy.ndarray or None \(a {cls.__name__} has one state\)")]
    return cases


CELL_CALL_CASES = per_class_and_backend(CELLS_API, bad_cell_calls)


@pytest.mark.parametrize("name, backend, case, make, exc, match", CELL_CALL_CASES)
def test_cell_call_rejects(name, backend, case, make, exc, match):
    cell = CELLS_API[name](I, H, seed=0, _backend=BACKENDS[backend])
    assert_call_refused_unchanged(cell, make, exc, match)
    with pytest.raises(ValueError, match="no call is waiting for its backward"):
        cell.backward(None)             # a refused call pushes nothing


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("name", list(CELLS_API))
def test_cell_backward_rejects_and_keeps_its_cache(name, backend):
    cell = CELLS_API[name](I, H, seed=0, _backend=BACKENDS[backend])
    dh = np.ones((B, H), F32)
    cell(np.ones((B, I), F32), cell_states(CELLS_API[name], dh))   # h != 0: dW_hh != 0
    bad = [(dict(dh=dh[:1]), ValueError, r"dh must have shape \(3, 6\), got \(1, 6\)"),
           (dict(dh=dh.astype(np.float64)), TypeError, r"dh must have dtype float32"),
           (dict(dh=dh.tolist()), TypeError, r"dh must be a numpy.ndarray")]
    if name == "LSTMCell":
        bad.append((dict(dh=dh, dc=dh[0]), ValueError, r"dc must have shape \(3, 6\)"))
    else:
        bad.append((dict(dh=dh, dc=dh), TypeError, rf"dc must be None: a {name} has one state"))
    for kwargs, exc, match in bad:
        with pytest.raises(exc, match=match):
            call_unmodified(cell.backward, **kwargs)
    assert not any(g.any() for g in cell.grads.values())      # nothing accumulated
    cell.backward(dh)                                         # the cache is still there
    assert all(g.any() for g in cell.grads.values())


@pytest.mark.parametrize("name", list(CELLS_API))
@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(input_size=0), ValueError, r"input_size must be a positive int, got 0"),
    (dict(hidden_size="4"), TypeError, r"hidden_size must be a positive int, got '4'"),
    (dict(bias="yes"), TypeError, r"bias must be a bool, got str"),
    (dict(dtype=np.float16), TypeError, r"dtype must be float32 or float64"),
    (dict(seed=-1), ValueError, r"seed must be a non-negative int"),
])
def test_cell_constructor_rejects(name, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        CELLS_API[name](**dict(dict(input_size=I, hidden_size=H), **kwargs))


def test_cell_options_of_the_cells_rejected():
    with pytest.raises(ValueError, match=r"nonlinearity must be 'tanh' or 'relu', got 'sigmoid'"):
        fastrnn.RNNCell(I, H, nonlinearity="sigmoid")
    with pytest.raises(TypeError, match=r"reset_after must be a bool, got int"):
        fastrnn.GRUCell(I, H, reset_after=1)


P = fastrnn.utils.rnn.PackedSequence


def bad_packed():
    """(name, packed x for a GRU(I, H) layer, exc, pattern): inconsistent batch_sizes and
    indices, wrong data."""
    d = np.zeros((6, I), F32)
    return [
        ("sizes-sum", P(d, np.array([3, 2])), ValueError, r"x.batch_sizes must add up to the 6 rows of x.data, got a sum of 5"),
        ("sizes-increasing", P(d, np.array([2, 4])), ValueError, r"x.batch_sizes must be a non-empty, non-increasing"),
        ("sizes-zero", P(d, np.array([6, 0])), ValueError, r"x.batch_sizes must be .* positive counts"),
        ("sizes-empty", P(d[:0], np.array([], int)), ValueError, r"x.batch_sizes must be a non-empty"),
        ("sizes-float", P(d, np.array([3.0, 3.0])), TypeError, r"x.batch_sizes must be a 1-D integer array, got dtype float64"),
        ("sizes-2d", P(d, np.array([[3, 3]])), ValueError, r"x.batch_sizes must be 1-D"),
        ("sorted-not-perm", P(d, np.array([3, 3]), np.array([0, 0, 1]), None), ValueError, r"x.sorted_indices must be a permutation of 0..2"),
        ("sorted-length", P(d, np.array([3, 3]), np.array([0, 1]), None), ValueError, r"x.sorted_indices must be a permutation"),
        ("unsorted-not-inverse", P(d, np.array([3, 3]), np.array([1, 2, 0]), np.array([1, 2, 0])), ValueError,
         r"x.unsorted_indices must be the inverse permutation of sorted_indices, \[2, 0, 1\]"),
        ("data-features", P(np.zeros((6, I + 1), F32), np.array([3, 3])), ValueError, r"x.data must have shape \(6, 4\) \(N, input_size\)"),
        ("data-dtype", P(d.astype(np.float64), np.array([3, 3])), TypeError, r"x.data must have dtype float32"),
        ("data-list", P(d.tolist(), np.array([3, 3])), TypeError, r"x.data must be a numpy.ndarray or a torch tensor, got list"),
        ("data-0d", P(np.zeros((), F32), np.array([3, 3])), ValueError, r"x.data must have shape \(N, \*\)"),
    ]


@pytest.mark.parametrize("case, packed, exc, match", bad_packed(), ids=[c[0] for c in bad_packed()])
def test_layer_rejects_inconsistent_packed_input(case, packed, exc, match):
    layer = GRU(I, H, seed=0)
    with pytest.raises(exc, match=match):
        call_unmodified(layer, packed)
    with pytest.raises(ValueError, match="no forward pass has run yet"):
        layer.backward(None)


def test_packed_call_and_backward_argument_errors():
    rnn = fastrnn.utils.rnn
    layer = GRU(I, H, seed=0)
    packed = rnn.pack_padded_sequence(np.ones((T, B, I), F32), [5, 3, 1])
    with pytest.raises(ValueError, match=r"lengths must be None when x is a PackedSequence"):
        layer(packed, lengths=np.array([5, 3, 1]))
    out, _ = layer(packed)
    with pytest.raises(ValueError, match=r"d_out must have shape \(9, 6\) \(the shape of out.data\), got \(9, 5\)"):
        call_unmodified(layer.backward, np.ones((9, H - 1), F32))
    with pytest.raises(ValueError, match=r"d_out.batch_sizes must add up"):
        layer.backward(P(out.data, np.array([3, 3])))
    dx, _ = layer.backward(out)                 # the cache survived the refusals
    assert dx.data.shape == (9, I)


def bad_rnn_utils():
    rnn = fastrnn.utils.rnn
    x = np.zeros((T, B, I), F32)
    good = rnn.pack_padded_sequence(x, [5, 3, 1])
    return [
        ("pack-input-list", lambda: rnn.pack_padded_sequence(x.tolist(), [5, 3, 1]), TypeError, r"input must be a numpy.ndarray"),
        ("pack-input-1d", lambda: rnn.pack_padded_sequence(x[0, 0], [1]), ValueError, r"input must have shape \(T, B, \*\)"),
        ("pack-lengths-float", lambda: rnn.pack_padded_sequence(x, [5.0, 3.0, 1.0]), TypeError, r"lengths must be a 1-D integer array, got dtype float64"),
        ("pack-lengths-neg", lambda: rnn.pack_padded_sequence(x, [5, 3, -1]), ValueError, r"lengths must be positive"),
        ("pack-lengths-long", lambda: rnn.pack_padded_sequence(x, [6, 3, 1]), ValueError, r"lengths must be at most 5"),
        ("pack-lengths-count", lambda: rnn.pack_padded_sequence(x, [5, 3]), ValueError, r"lengths must have one entry per sequence, 3"),
        ("pack-lengths-2d", lambda: rnn.pack_padded_sequence(x, [[5, 3, 1]]), ValueError, r"lengths must be 1-D"),
        ("pack-unsorted", lambda: rnn.pack_padded_sequence(x, [3, 5, 1]), ValueError, r"lengths must be sorted in decreasing order"),
        ("pack-batch0", lambda: rnn.pack_padded_sequence(x[:, :0], []), ValueError, r"input must hold at least one sequence"),
        ("pack-enforce", lambda: rnn.pack_padded_sequence(x, [5, 3, 1], enforce_sorted="yes"), TypeError, r"enforce_sorted must be a bool"),
        ("pack-batch-first", lambda: rnn.pack_padded_sequence(x, [5, 3, 1], batch_first=1), TypeError, r"batch_first must be a bool"),
        ("pad-not-packed", lambda: rnn.pad_packed_sequence(x), TypeError, r"sequence must be a PackedSequence"),
        ("pad-total-float", lambda: rnn.pad_packed_sequence(good, total_length=6.0), TypeError, r"total_length must be None or an int"),
        ("pad-total-short", lambda: rnn.pad_packed_sequence(good, total_length=4), ValueError, r"total_length must be at least .* 5, got 4"),
        ("padseq-array", lambda: rnn.pad_sequence(x), TypeError, r"sequences must be a list of numpy arrays, got ndarray"),
        ("padseq-int", lambda: rnn.pad_sequence(3), TypeError, r"sequences must be a list"),
        ("padseq-entry", lambda: rnn.pad_sequence([x[0], [1.0]]), TypeError, r"sequences\[1\] must be a numpy.ndarray, got list"),
        ("padseq-0d", lambda: rnn.pad_sequence([np.zeros(())]), ValueError, r"sequences\[0\] must have shape \(L, \*\)"),
        ("padseq-dtype", lambda: rnn.pad_sequence([x[0], x[0].astype(np.float64)]), TypeError, r"sequences\[1\] must have dtype float32"),
        ("padseq-side", lambda: rnn.pad_sequence([x[0]], padding_side="top"), ValueError, r"padding_side must be 'right' or 'left'"),
        ("packseq-empty-seq", lambda: rnn.pack_sequence([x[:, 0], x[:0, 0]]), ValueError, r"lengths must be positive"),
    ]


@pytest.mark.parametrize("case, call, exc, match", bad_rnn_utils(), ids=[c[0] for c in bad_rnn_utils()])
def test_rnn_utils_reject(case, call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_module_surface_rejects():
    layer = LSTM(I, H, seed=0)
    with pytest.raises(TypeError, match="requires_grad must be a bool, got str"):
        layer.requires_grad_("no")
    assert layer.requires_grad
    for dtype in (np.int32, np.float16, "x"):
        with pytest.raises(TypeError, match="dtype must be float32 or float64"):
            layer.to(dtype)
    assert layer.dtype == F32 and all(p.dtype == F32 for p in layer.parameters())
    for bad, err, msg in ((-1, ValueError, "proj_size must be >= 0"),
                          (H, ValueError, r"proj_size \(6\) must be smaller than hidden_size"),
                          (1.5, TypeError, "proj_size must be an int, got float"),
                          (True, TypeError, "proj_size must be an int, got bool")):
        with pytest.raises(err, match=msg):
            LSTM(I, H, proj_size=bad)


@needs_cpp
def test_projection_rejects():
    """LSTM proj_size (tests/test_projection.py): the kernels refuse what they do not fuse
    with a projection, and the layer's P-wide states and gradients are checked by shape."""
    rng = np.random.default_rng(0)
    x, w_ih, w_hh, w_hr = (rng.standard_normal(s) for s in ((2, 2, I), (4 * H, I), (4 * H, 2),
                                                             (2, H)))
    with pytest.raises(ValueError, match="w_hr .proj_size. cannot be combined"):
        cpp.lstm_forward(x, w_ih, w_hh, w_hr=w_hr, zoneout=0.1)
    with pytest.raises(ValueError, match="cannot be combined"):
        cpp.lstm_forward(x, w_ih, w_hh, w_hr=w_hr, recurrent_mask=np.ones((4, 2, 2)))
    with pytest.raises(ValueError, match=r"w_hr must have shape \(2, 6\), got \(3, 6\)"):
        cpp.lstm_forward(x, w_ih, w_hh, w_hr=np.ones((3, H)))
    with pytest.raises(ValueError, match=r"h0 must have shape \(2, 2\)"):
        cpp.lstm_forward(x, w_ih, w_hh, np.zeros(4 * H), np.zeros(4 * H), np.zeros((2, H)), w_hr=w_hr)
    before = [a.copy() for a in (x, w_ih, w_hh, w_hr)]
    cache = cpp.lstm_forward(x, w_ih, w_hh, w_hr=w_hr)[3]
    with pytest.raises(ValueError, match=r"d_out must have shape \(2, 2, 2\)"):
        cpp.lstm_backward(cache, np.zeros((2, 2, H)))
    with pytest.raises(ValueError, match=r"d_c_n must have shape \(2, 6\)"):
        cpp.lstm_backward(cache, None, None, np.zeros((2, 2)))
    assert all(np.array_equal(a, b) for a, b in zip((x, w_ih, w_hh, w_hr), before))
    layer = LSTM(I, H, proj_size=2, seed=0)
    xl = np.zeros((2, 2, I), F32)
    with pytest.raises(ValueError, match=r"h_0 must have shape \(1, 2, 2\) .*proj_size"):
        layer(xl, (np.zeros((1, 2, H), F32), None))
    layer(xl)
    with pytest.raises(ValueError, match=r"d_out must have shape \(2, 2, 2\)"):
        layer.backward(np.zeros((2, 2, H), F32))


def test_save_load_reject(tmp_path):
    with pytest.raises(TypeError, match="obj must be a state dict .* got int"):
        fastrnn.save(3, tmp_path / "a.npz")
    with pytest.raises(TypeError, match=r"obj\['w'\] must hold numbers or bools, got dtype object"):
        fastrnn.save({"w": np.array([None])}, tmp_path / "a.npz")
    with pytest.raises(TypeError, match="state dict keys must be non-empty str, got 1"):
        fastrnn.save({1: np.ones(2)}, tmp_path / "a.npz")
    with pytest.raises(TypeError, match="path must be a file name or a binary file object, got int"):
        fastrnn.save({"w": np.ones(2)}, 3)
    assert not (tmp_path / "a.npz").exists()        # nothing half-written
    np.save(tmp_path / "one.npy", np.ones(2))
    with pytest.raises(ValueError, match="path must be an .npz archive"):
        fastrnn.load(tmp_path / "one.npy")
    np.savez(tmp_path / "obj.npz", w=np.array([{"code": 1}], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle"):
        fastrnn.load(tmp_path / "obj.npz")          # object arrays are never unpickled
