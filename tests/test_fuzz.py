"""Property-based tests (hypothesis): random cells, options, shapes, lengths, states
and dtypes; the C++ kernels and layers against the NumPy reference, and the
gradients against identities that need no reference.

Budget: 40 examples per property by default (fixed seed); `python -m pytest
tests/test_fuzz.py --hypothesis-profile=fuzz` runs 3000 each (tests/conftest.py).
"""
import numpy as np
import pytest

pytest.importorskip("hypothesis")      # an optional test dependency (the test extra)
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fastrnn
from fastrnn import reference as R

try:
    import fastrnn.functional as F
except ImportError:      # the C++ backend is not built
    F = None

pytestmark = pytest.mark.skipif(F is None, reason="fastrnn.functional (C++) is not built")

GATES = {"lstm": 4, "gru": 3, "rnn": 1}
CELL_OPTIONS = {"lstm": [{}, {"peephole": True}], "gru": [{"reset_after": True}, {"reset_after": False}],
                "rnn": [{"nonlinearity": "tanh"}, {"nonlinearity": "relu"}]}


@st.composite
def problems(draw, max_T=12, max_B=9, max_I=10, max_H=40):
    cell = draw(st.sampled_from(list(GATES)))
    opts = dict(draw(st.sampled_from(CELL_OPTIONS[cell])))
    T, B = draw(st.integers(0, max_T)), draw(st.integers(0, max_B))
    I, H = draw(st.integers(0, max_I)), draw(st.integers(1, max_H))
    lengths = draw(st.none() | st.lists(st.integers(0, T), min_size=B, max_size=B))
    return dict(cell=cell, opts=opts, T=T, B=B, I=I, H=H,
                lengths=None if lengths is None else np.array(lengths, np.int64),
                reverse=draw(st.booleans()), with_states=draw(st.booleans()),
                dtype=draw(st.sampled_from([np.float32, np.float64])),
                scale=draw(st.sampled_from([0.3, 1.0, 2.0])), seed=draw(st.integers(0, 2**32 - 1)))


def arrays(p, dtype=None):
    """Inputs of problem p: weights ~ U(-s, s)/sqrt(H) (s up to 2: gates from linear
    to saturated), x, states and incoming gradients ~ U(-1, 1)."""
    rng = np.random.default_rng(p["seed"])
    dt = dtype or p["dtype"]
    G, T, B, I, H = GATES[p["cell"]], p["T"], p["B"], p["I"], p["H"]
    u = lambda *shape, s=1.0: (s * rng.uniform(-1, 1, shape)).astype(dt)  # noqa: E731
    w = p["scale"] / np.sqrt(H)
    args = dict(x=u(T, B, I), w_ih=u(G * H, I, s=w), w_hh=u(G * H, H, s=w), b_ih=u(G * H, s=w),
                b_hh=u(G * H, s=w))
    kw = dict(p["opts"], lengths=p["lengths"], reverse=p["reverse"])
    if p["cell"] == "lstm":
        kw["peephole"] = u(3, H, s=w) if kw.pop("peephole", False) else None
    if p["with_states"]:
        args["h0"] = u(B, H)
        if p["cell"] == "lstm":
            args["c0"] = u(B, H)
    grads = dict(d_out=u(T, B, H), d_h_n=u(B, H))
    if p["cell"] == "lstm":
        grads["d_c_n"] = u(B, H)
    return args, kw, grads


def run(M, p, args, kw, grads):
    *fwd, cache = getattr(M, f"{p['cell']}_forward")(**args, **kw)
    bwd = getattr(M, f"{p['cell']}_backward")(cache, **grads)
    return list(fwd) + [g for g in bwd if g is not None]


def up(d):
    return {k: v.astype(np.float64) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v
            for k, v in d.items()}


@given(problems())
def test_kernels_match_the_reference(p):
    """float64: 1e-10 of each result's magnitude (test_kernels.py finds ~1e-14).
    float32 against the float64 reference on the same float32 inputs: round-off of
    ~6e-8 per operation grows through at most 12 steps and sums of up to 9*12 terms;
    2e-4 of the magnitude covers it with room, while a wrong term shows at 1e-2."""
    args, kw, grads = arrays(p)
    got = run(F, p, args, kw, grads)
    want = run(R, p, up(args), up(kw), up(grads))
    tol = 1e-10 if p["dtype"] == np.float64 else 2e-4
    for g, w in zip(got, want):
        assert g.dtype == p["dtype"] and g.shape == w.shape
        scale = max(1.0, float(np.abs(w).max())) if w.size else 1.0
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol * scale)


@given(problems(max_T=8, max_B=5, max_I=6, max_H=12), st.integers(0, 2**32 - 1))
def test_gradients_are_the_adjoint_of_the_forward(p, seed):
    """With no reference: for a random direction v in (x, w_ih, w_hh, b_ih, b_hh,
    h0[, c0]), <d_out, J v> from a central difference of the C++ forward equals
    <grads, v> from the C++ backward. float64, step 1e-6: truncation O(1e-12 * |f'''|)
    and cancellation O(1e-16 / 1e-6); 1e-6 relative to the size of the terms."""
    p = dict(p, dtype=np.float64, opts={k: v for k, v in p["opts"].items()})
    if p["opts"].get("nonlinearity") == "relu":
        p["opts"]["nonlinearity"] = "tanh"       # relu has kinks a difference can straddle
    args, kw, grads = arrays(p)
    args.setdefault("h0", np.zeros((p["B"], p["H"])))
    if p["cell"] == "lstm":
        args.setdefault("c0", np.zeros((p["B"], p["H"])))
    rng = np.random.default_rng(seed)
    v = {k: rng.uniform(-1, 1, a.shape) for k, a in args.items()}
    names = {"x": "dx", "w_ih": "dw_ih", "w_hh": "dw_hh", "b_ih": "db_ih", "b_hh": "db_hh",
             "h0": "dh0", "c0": "dc0"}
    forward = getattr(F, f"{p['cell']}_forward")

    def outputs_dot(eps):
        res = forward(**{k: a + eps * v[k] for k, a in args.items()}, **kw)
        total = np.sum(res[0] * grads["d_out"]) + np.sum(res[1] * grads["d_h_n"])
        if p["cell"] == "lstm":
            total += np.sum(res[2] * grads["d_c_n"])
        return total

    eps = 1e-6
    numeric = (outputs_dot(eps) - outputs_dot(-eps)) / (2 * eps)
    g = getattr(F, f"{p['cell']}_backward")(forward(**args, **kw)[-1], **grads)
    terms = [np.sum(getattr(g, names[k]) * v[k]) for k in args]
    analytic = sum(terms)
    size = 1.0 + sum(abs(t) for t in terms)
    assert abs(numeric - analytic) <= 1e-6 * size, (numeric, analytic)


@given(problems(max_T=7, max_B=5, max_I=6, max_H=9), st.integers(1, 3), st.booleans(),
       st.booleans(), st.booleans())
def test_layers_match_the_reference_backend(p, num_layers, bidirectional, batch_first, training):
    """A random stacked layer on the C++ backend against the same layer on the
    reference backend: outputs, final states, dx and every parameter gradient, with
    the tolerances of test_kernels_match_the_reference (float32 compared to the
    float32 reference: both round, so 5e-4 of the magnitude)."""
    cls = {"lstm": fastrnn.LSTM, "gru": fastrnn.GRU, "rnn": fastrnn.SimpleRNN}[p["cell"]]
    opts = dict(p["opts"])
    kw = dict(num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first,
              dtype=p["dtype"], seed=p["seed"], **opts)
    a = cls(p["I"] or 1, p["H"], **kw)
    b = cls(p["I"] or 1, p["H"], **kw, _backend=R)
    rng = np.random.default_rng(p["seed"])
    T, B = p["T"], p["B"]
    x = rng.uniform(-1, 1, (B, T, a.input_size) if batch_first else (T, B, a.input_size))
    x = x.astype(p["dtype"])
    results = []
    for layer in (a, b):
        out, states = layer(x, lengths=p["lengths"], training=training)
        res = [out] + list(states if isinstance(states, tuple) else (states,))
        if training:
            dx, _ = layer.backward(np.cos(out))
            res += [dx] + list(layer.grads.values())
        results.append(res)
    tol = 1e-10 if p["dtype"] == np.float64 else 5e-4
    for g, w in zip(*results):
        scale = max(1.0, float(np.abs(w).max())) if w.size else 1.0
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol * scale)


ARG_NAMES = ("x", "w_ih", "w_hh", "b_ih", "b_hh", "h0", "c0", "lengths", "peephole")


@st.composite
def hostile_calls(draw):
    """Each argument drawn on its own: shapes that may or may not fit together,
    dtypes valid or not, lengths in or out of range, options of the wrong type."""
    cell = draw(st.sampled_from(list(GATES)))
    dims = st.integers(0, 4)
    dtypes = st.sampled_from([np.float32, np.float64, np.float16, np.int32, np.complex64, np.bool_])
    main = draw(st.sampled_from([np.float32, np.float64]))

    def array(rank):
        shape = tuple(draw(st.lists(dims, min_size=rank, max_size=rank)))
        dt = draw(st.one_of(st.just(main), dtypes))
        return np.ones(shape, dt)

    T, B, I, H = (draw(st.integers(0, 4)) for _ in range(4))
    G = GATES[cell]
    right = {"x": (T, B, I), "w_ih": (G * H, I), "w_hh": (G * H, H), "b_ih": (G * H,),
             "b_hh": (G * H,), "h0": (B, H), "c0": (B, H), "peephole": (3, H)}
    kw = {}
    for name in ARG_NAMES:
        if name == "lengths":
            choice = draw(st.sampled_from(["none", "ok", "wild"]))
            if choice == "ok":
                kw[name] = np.array(draw(st.lists(st.integers(0, T), min_size=B, max_size=B)))
            elif choice == "wild":
                kw[name] = np.array(draw(st.lists(st.integers(-3, 9), max_size=5)))
            continue
        if name in ("c0", "peephole") and cell != "lstm":
            continue
        how = draw(st.sampled_from(["right", "right", "none", "rank", "any"]))
        if how == "right":
            kw[name] = np.full(right[name], 0.1, main)
        elif how == "rank":
            kw[name] = array(len(right[name]))
        elif how == "any":
            kw[name] = array(draw(st.integers(0, 4)))
        elif name not in ("x", "w_ih", "w_hh"):
            kw[name] = None
        else:
            kw[name] = np.full(right[name], 0.1, main)
    kw["reverse"] = draw(st.sampled_from([False, True, 1, None]))
    return cell, kw


@given(hostile_calls())
def test_hostile_calls_fail_cleanly_and_alike(call):
    """Whatever the combination, a forward call either works, and then the kernels
    agree with the reference (tolerances as above), or raises TypeError, ValueError
    or MemoryError, the same type from both backends, naming one of the arguments.
    No input is modified either way."""
    cell, kw = call
    snapshot = {k: v.copy() for k, v in kw.items() if isinstance(v, np.ndarray)}
    outcomes = []
    for M in (F, R):
        try:
            outcomes.append(getattr(M, f"{cell}_forward")(**kw)[:-1])
        except (TypeError, ValueError, MemoryError) as e:
            assert any(n in str(e) for n in ARG_NAMES + ("reverse",)), str(e)
            outcomes.append(type(e))
    for k, v in snapshot.items():
        np.testing.assert_array_equal(kw[k], v)
    got, want = outcomes
    if isinstance(want, type):
        assert got is want
    else:
        tol = 1e-10 if kw["x"].dtype == np.float64 else 2e-4
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=tol, atol=tol)
