"""The inference engine (docs/engine.md): equal to the layer in eval mode for every
option, step by step equal to one call on the sequence, a snapshot of the weights,
and safe to share between Python threads."""
import threading

import numpy as np
import pytest

import fastrnn
from fastrnn import GRU, LSTM, SimpleRNN

pytest.importorskip("fastrnn.functional")

T, B, I, H = 7, 5, 6, 9
PRECISIONS = ["float32", "bfloat16", "int8"]


def make(cls, dtype, seed=0, **kw):
    layer = cls(I, H, dtype=dtype, seed=seed, **kw)
    layer.eval()
    return layer


CONFIGS = [
    (LSTM, {}), (LSTM, dict(peephole=True)), (LSTM, dict(num_layers=2, bidirectional=True)),
    (LSTM, dict(num_layers=3, batch_first=True, bias=False)),
    (GRU, {}), (GRU, dict(reset_after=False, num_layers=2, bidirectional=True)),
    (GRU, dict(reset_after=False, batch_first=True)),
    (SimpleRNN, dict(nonlinearity="relu", num_layers=2)),
    (SimpleRNN, dict(bidirectional=True, batch_first=True)),
]
IDS = [f"{c.__name__}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'default'}" for c, kw in CONFIGS]


def inputs(layer, rng, lengths):
    x = rng.standard_normal((T, B, I)).astype(layer.dtype)
    if layer.batch_first:
        x = np.ascontiguousarray(x.transpose(1, 0, 2))
    shape = (layer.num_layers * layer.num_directions, B, H)
    h = [rng.standard_normal(shape).astype(layer.dtype) for _ in layer._states]
    state = tuple(h) if len(h) > 1 else h[0]
    return x, state, (np.array([7, 3, 0, 7, 1]) if lengths else None)


def flat(state):
    return state if isinstance(state, tuple) else (state,)


@pytest.mark.parametrize("lengths", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls, kw", CONFIGS, ids=IDS)
def test_engine_equals_layer_in_eval_mode(cls, kw, dtype, lengths):
    """The engine runs the same driver and micro-kernel on the same packed panels as
    the layer's per-call path, in the same order, so the results are bit-identical."""
    layer = make(cls, dtype, **kw)
    x, state, lens = inputs(layer, np.random.default_rng(1), lengths)
    eng = layer.inference()
    for s in (None, state):
        want_y, want_s = layer(x, s, lengths=lens)
        got_y, got_s = eng(x, s, lengths=lens)
        assert got_y.dtype == dtype and got_y.shape == want_y.shape
        np.testing.assert_array_equal(got_y, want_y)
        for g, w in zip(flat(got_s), flat(want_s)):
            np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("unbatched", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls, kw", [(LSTM, dict(num_layers=3)), (LSTM, dict(peephole=True)),
                                     (GRU, dict(num_layers=2)), (GRU, dict(reset_after=False)),
                                     (SimpleRNN, dict(num_layers=2, nonlinearity="relu"))])
def test_steps_equal_one_call_on_the_sequence(cls, kw, dtype, unbatched):
    """T steps against one call: each step is the same per-step arithmetic, but a
    call's input projection is one GEMM over many rows and a step's over B rows, whose
    micro-kernel blocks may sum in another order. Tolerance: a few ulps of values of
    order 1 propagated through T=7 steps and 3 layers (1e-5 float32, 1e-12 float64)."""
    tol = 1e-5 if dtype == np.float32 else 1e-12
    layer = make(cls, dtype, **kw)
    x, state, _ = inputs(layer, np.random.default_rng(2), False)
    eng = layer.inference()
    if unbatched:
        x, state = x[:, :1], tuple(s[:, :1] for s in flat(state))
        state = state if len(state) > 1 else state[0]
    want_y, want_s = eng(x, state)
    s = tuple(a[:, 0] for a in flat(state)) if unbatched else state
    s = s if isinstance(s, np.ndarray) or len(s) > 1 else s[0]
    ys = []
    for t in range(T):
        y_t, s = eng.step(x[t, 0] if unbatched else x[t], s)
        ys.append(y_t)
    got_y = np.stack(ys)[:, None] if unbatched else np.stack(ys)
    np.testing.assert_allclose(got_y, want_y, rtol=0, atol=tol)
    for g, w in zip(flat(s), flat(want_s)):
        np.testing.assert_allclose(g[:, None] if unbatched else g, w, rtol=0, atol=tol)


@pytest.mark.parametrize("cls", [LSTM, GRU, SimpleRNN])
def test_step_out_form_writes_in_place(cls):
    """out=(y_t, state) with the input state itself: results equal the allocating
    form exactly (same calls on the same values), and the arrays are the ones given."""
    layer = make(cls, np.float32, num_layers=2)
    x, state, _ = inputs(layer, np.random.default_rng(3), False)
    eng = layer.inference()
    s_alloc = tuple(a.copy() for a in flat(state))
    s_alloc = s_alloc if len(s_alloc) > 1 else s_alloc[0]
    s_buf = tuple(a.copy() for a in flat(state))
    s_buf = s_buf if len(s_buf) > 1 else s_buf[0]
    y_buf = np.empty((B, H), np.float32)
    for t in range(T):
        y_alloc, s_alloc = eng.step(x[t], s_alloc)
        y_ret, s_ret = eng.step(x[t], s_buf, out=(y_buf, s_buf))
        assert y_ret is y_buf and all(a is b for a, b in zip(flat(s_ret), flat(s_buf)))
        np.testing.assert_array_equal(y_buf, y_alloc)
    for a, b in zip(flat(s_buf), flat(s_alloc)):
        np.testing.assert_array_equal(a, b)


def test_engine_is_a_snapshot_of_the_weights():
    layer = make(LSTM, np.float32, num_layers=2)
    x, _, _ = inputs(layer, np.random.default_rng(4), False)
    eng = layer.inference()
    before, _ = eng(x)
    for p in layer.params.values():
        p *= 2                                   # in place: the layer changes, the engine not
    layer.params["weight_hh_l0"] = np.zeros_like(layer.params["weight_hh_l0"])
    np.testing.assert_array_equal(eng(x)[0], before)
    assert not np.array_equal(layer(x)[0], before)
    np.testing.assert_array_equal(layer.inference()(x)[0], layer(x)[0])


def test_engine_keeps_input_arrays_and_layer_unchanged():
    layer = make(GRU, np.float64, num_layers=2)
    x, state, lens = inputs(layer, np.random.default_rng(5), True)
    copies = [a.copy() for a in (x, state, lens)]
    params = {k: v.copy() for k, v in layer.params.items()}
    layer.inference()(x, state, lengths=lens)
    for a, c in zip((x, state, lens), copies):
        np.testing.assert_array_equal(a, c)
    for k, v in params.items():
        np.testing.assert_array_equal(layer.params[k], v)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("n_threads", [1, 2])
def test_one_engine_shared_by_python_threads(n_threads, precision):
    """Eight Python threads call one engine at once (whole sequences and steps):
    every result is bit-identical to the same call made alone."""
    old = fastrnn.get_num_threads()
    fastrnn.set_num_threads(n_threads)
    try:
        layer = make(LSTM, np.float32, num_layers=2)
        eng = layer.inference(precision)
        rng = np.random.default_rng(6)
        jobs = [rng.standard_normal((T, B, I)).astype(np.float32) for _ in range(8)]

        def run(x):
            y, _ = eng(x)
            s, steps = None, []
            for t in range(T):
                y_t, s = eng.step(x[t], s)
                steps.append(y_t)
            return y, np.stack(steps)

        want = [run(x) for x in jobs]
        got = [None] * len(jobs)
        barrier = threading.Barrier(len(jobs))

        def work(i):
            barrier.wait()
            for _ in range(3):
                got[i] = run(jobs[i])

        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for (wy, ws), (gy, gs) in zip(want, got):
            np.testing.assert_array_equal(gy, wy)
            np.testing.assert_array_equal(gs, ws)
    finally:
        fastrnn.set_num_threads(old)


def test_engine_describes_itself():
    eng = make(GRU, np.float32, num_layers=2).inference()
    assert "GRU(6, 9, num_layers=2" in repr(eng) and "precision='float32'" in repr(eng)
    assert eng.precision == "float32" and eng.dtype == np.float32


@pytest.mark.parametrize("cls", [LSTM, GRU, SimpleRNN])
def test_empty_axes(cls):
    """T = 0, B = 0 and all lengths 0 give the layer's results (empty, or the initial
    state); a step with B = 0 returns empty arrays."""
    layer = make(cls, np.float32, num_layers=2, bidirectional=True)
    eng = layer.inference()
    for shape in [(0, 2, I), (3, 0, I)]:
        x = np.zeros(shape, np.float32)
        for got, want in zip(eng(x), layer(x)):
            for g, w in zip(flat(got), flat(want)):
                assert g.shape == w.shape
                np.testing.assert_array_equal(g, w)
    x = np.ones((3, 2, I), np.float32)
    np.testing.assert_array_equal(eng(x, lengths=[0, 0])[0], np.zeros((3, 2, 2 * H), np.float32))
    y, s = make(cls, np.float32, num_layers=2).inference().step(np.zeros((0, I), np.float32))
    assert y.shape == (0, H) and all(a.shape == (2, 0, H) for a in flat(s))


def step_case(cls, precision, unbatched, dtype=np.float32):
    """A 2-layer unidirectional engine, an input step and a state (tuple for an LSTM)."""
    layer = make(cls, dtype, num_layers=2)
    rng = np.random.default_rng(13)
    x = rng.standard_normal((B, I)).astype(dtype)
    s = [rng.standard_normal((2, B, H)).astype(dtype) for _ in layer._states]
    if unbatched:
        x, s = x[0], [a[:, 0] for a in s]
    return layer.inference(precision), x, (tuple(s) if len(s) > 1 else s[0])


@pytest.mark.parametrize("unbatched", [False, True])
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("cls", [LSTM, GRU, SimpleRNN])
def test_step_arguments_the_fast_path_declines_give_the_same_results(cls, precision, unbatched):
    """step() hands arguments that are exactly right to one C++ call and checks and
    normalises the others (non-contiguous arrays, a list (h, c), a None state) before the
    same call: the same kernels on the same values, so bit-identical results."""
    eng, x, s = step_case(cls, precision, unbatched)
    want_y, want_s = eng.step(x, s)
    strided = lambda a: np.repeat(a, 2, axis=-1)[..., ::2]       # noqa: E731  same values, not C order
    assert not strided(x).flags.c_contiguous
    other_s = [strided(a) for a in flat(s)]
    got_y, got_s = eng.step(strided(x), other_s if len(other_s) > 1 else other_s[0])
    assert isinstance(got_s, tuple) == isinstance(s, tuple)
    np.testing.assert_array_equal(got_y, want_y)
    for g, w in zip(flat(got_s), flat(want_s)):
        np.testing.assert_array_equal(g, w)
    zeros = [np.zeros_like(a) for a in flat(s)]
    want_y, want_s = eng.step(x, tuple(zeros) if len(zeros) > 1 else zeros[0])
    bufs = [np.empty_like(want_y)] + [np.empty_like(a) for a in zeros]
    out = (bufs[0], bufs[1:] if len(zeros) > 1 else bufs[1])   # (h, c) as a list
    for state in [None] + ([zeros] if len(zeros) > 1 else []):
        for out_arg in (out, None):
            for a in bufs:
                a[...] = np.nan                                    # state None: out's zeroed first
            got_y, got_s = eng.step(x, state, out=out_arg)
            np.testing.assert_array_equal(got_y, want_y)
            assert out_arg is None or (got_y is bufs[0] and all(a is b for a, b in zip(flat(got_s), bufs[1:])))
            for g, w in zip(flat(got_s), flat(want_s)):
                np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_step_float64_and_every_precision_in_place(precision):
    """out=(y, state) with the input state itself, three layers: each layer reads its
    initial state before it writes the new one (their arrays alias), so the in-place
    steps equal the allocating ones exactly; float64 for the float32 precision too."""
    for dtype in (np.float32, np.float64) if precision == "float32" else (np.float32,):
        layer = make(LSTM, dtype, num_layers=3)
        eng = layer.inference(precision)
        x = np.random.default_rng(14).standard_normal((T, B, I)).astype(dtype)
        s_alloc, s_buf = None, (np.zeros((3, B, H), dtype), np.zeros((3, B, H), dtype))
        y_buf = np.empty((B, H), dtype)
        for t in range(T):
            y_alloc, s_alloc = eng.step(x[t], s_alloc)
            eng.step(x[t], s_buf, out=(y_buf, s_buf))
            np.testing.assert_array_equal(y_buf, y_alloc)
            assert y_alloc.dtype == dtype
        for a, b in zip(s_buf, s_alloc):
            np.testing.assert_array_equal(a, b)


def test_engine_stack_declines_what_it_cannot_take():
    """The private C++ step (fastrnn._isa.core.EngineStack) is the second line: called
    directly with any argument that is not exactly right it runs nothing, writes nothing
    and returns None (fastrnn.engine then raises with the argument's name); it refuses
    layers that do not chain."""
    from fastrnn._isa import core as _core
    eng, x, s = step_case(LSTM, "float32", False)
    stack = eng._stack
    h, c = s
    y = np.zeros((B, H), np.float32)
    ro = h.copy()
    ro.flags.writeable = False
    bad = [
        (x.astype(np.float64), s, None), (x[None], s, None), (x[:, :-1], s, None), (x.T.copy(), s, None),
        (np.repeat(x, 2, axis=1)[:, ::2], s, None), (x.tolist(), s, None), (x[0], s, None),
        (x, h, None), (x, (h,), None), (x, (h, c[:1]), None), (x, (h, c.astype(np.float64)), None),
        (x, (h, np.asfortranarray(c)), None), (x, (h, c, c), None),
        (x, s, y), (x, s, (y, None)), (x, s, (y[:, :-1], (h.copy(), c.copy()))),
        (x, s, (y, (ro, c.copy()))), (x, s, (y.astype(np.float64), (h.copy(), c.copy()))),
        (x, None, (y, h.copy())), (x, None, (y[0], (h.copy(), c.copy()))),
    ]
    for args in bad:
        before = [a.copy() for a in (x, h, c, y)]
        assert stack.step(*args) is None
        for a, b in zip((x, h, c, y), before):
            np.testing.assert_array_equal(a, b)
    assert stack.step(x, s, (y, (h.copy(), c.copy())))[0] is y
    l0, l1 = eng._layers[0][0], eng._layers[1][0]
    gru = make(GRU, np.float32).inference()._layers[0][0]
    backward = make(LSTM, np.float32, bidirectional=True).inference()._layers[0][1]
    for layers in ([], [l1, l0], [l0, gru], [backward]):     # l0 takes I inputs, l1 H
        with pytest.raises(ValueError):
            _core.EngineStack(layers)
