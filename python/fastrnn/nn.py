"""Small NumPy building blocks around the recurrent layers: `Dense`, `Embedding`, losses.

They follow the layer convention (python/fastrnn/layers.py):

- `block.params` and `block.grads`: dicts name -> ndarray with the same names and shapes;
  `backward` *adds* into `grads` until `zero_grad()` (so gradients of several
  backward passes accumulate, as in PyTorch);
- `y = block(x)` runs forward and keeps the cache that `backward` needs, unless gradients
  are off (`with fastrnn.no_grad():` or `block.requires_grad_(False)`); `train()`/`eval()`
  and `training=` switch dropout only (these blocks have none), as in PyTorch;
- `dx = block.backward(d_y)` returns the gradient with respect to the input and
  consumes the cache (a second backward without a new forward raises `ValueError`);
  one cache is kept, so a block applied twice in one forward pass needs two blocks
  (or one call on the concatenated input);
- `dtype` float32 (default) or float64; `seed`: None, an int or a `numpy.random.Generator`.

Losses are plain functions returning `(loss, d_input)`, `loss` a Python float.

Dimension key: B batch, T time, F / I input features, O output features, C classes,
"..." any leading axes (so `Dense` is time-distributed over (T, B, F) as well).
"""

import numbers
from typing import NamedTuple

import numpy as np

from ._checks import check_flag, check_module_array
from ._errors import ArgumentError, ArgumentTypeError
from .grad_mode import is_grad_enabled
from ._isa import core as _core

__all__ = ["Module", "IncompatibleKeys", "Dense", "Embedding", "softmax_cross_entropy", "mse",
           "as_generator"]

_DTYPES = (np.float32, np.float64)


def as_generator(seed):
    """`seed` (None, an int or a numpy.random.Generator) as a Generator."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or (isinstance(seed, numbers.Integral) and not isinstance(seed, bool)):
        if seed is not None and seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed}")
        return np.random.default_rng(seed)
    raise TypeError(f"seed must be None, an int or a numpy.random.Generator, "
                    f"got {type(seed).__name__}")


def _check_dtype(dtype):
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in _DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}")
    return dt


def _check_size(name, value):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise ArgumentTypeError(f"{name} must be a positive int, got {value!r}")
    if value < 1:
        raise ArgumentError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _check_float_input(name, a, dtype, last_dim=None, shape=None):
    """`a` must be an ndarray of exactly `dtype` (nothing is converted silently)."""
    check_module_array(name, a, dtype, a.shape if shape is None and isinstance(a, np.ndarray)
                       else shape, "block", "(the forward output's shape)")
    if last_dim is not None and (a.ndim < 1 or a.shape[-1] != last_dim):
        raise ValueError(f"{name} must have shape (..., {last_dim}) (last axis = "
                         f"in_features), got {a.shape}")
    return a


class IncompatibleKeys(NamedTuple):
    """What `load_state_dict(..., strict=False)` did not load (as PyTorch's result)."""
    missing_keys: list
    unexpected_keys: list


class Module:
    """Base of the blocks, layers and cells: train()/eval(), requires_grad_(), the parameter
    surface PyTorch users reach for, and the one-entry forward cache.

    A forward keeps its backward cache when gradients are on: not inside `fastrnn.no_grad()`
    and not after `requires_grad_(False)`. `train()`/`eval()` only switch dropout (as PyTorch).
    """

    training = True
    requires_grad = True

    def train(self, mode=True):
        """Training mode (dropout on, where there is dropout). Returns self."""
        self.training = bool(mode)
        return self

    def eval(self):
        """Evaluation mode: dropout off; gradients still flow (see `fastrnn.no_grad`)."""
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        """False: forwards keep no backward cache (as torch, but for the whole module)."""
        self.requires_grad = check_flag("requires_grad", requires_grad)
        return self

    def _keeps_cache(self):
        return self.requires_grad and is_grad_enabled()

    def zero_grad(self):
        """Set every gradient in `grads` to zero (in place)."""
        for g in self.grads.values():
            g.fill(0)

    def named_parameters(self):
        """(name, array) pairs of `params`, in state_dict order; the arrays themselves."""
        return iter(list(self.params.items()))

    def parameters(self):
        """The parameter arrays (not copies), in state_dict order."""
        return iter(list(self.params.values()))

    def to(self, dtype):
        """Convert parameters and gradients to `dtype` (float32 or float64). Returns self.
        Converted arrays are new objects: create optimisers after converting."""
        dt = _check_dtype(dtype)
        if dt != self.dtype:
            self.params = {n: p.astype(dt) for n, p in self.params.items()}
            self.grads = {n: g.astype(dt) for n, g in self.grads.items()}
            self.dtype = dt
            self._drop_cache()
        return self

    def float(self):
        """`self.to(np.float32)`: parameters and gradients as float32. Returns self."""
        return self.to(np.float32)

    def double(self):
        """`self.to(np.float64)`: parameters and gradients as float64. Returns self."""
        return self.to(np.float64)

    def _drop_cache(self):
        self._cache = None

    def _is_training(self, training):
        if training is None:
            return self.training
        if not isinstance(training, (bool, np.bool_)):
            raise TypeError(f"training must be None or a bool, got {type(training).__name__}")
        return bool(training)

    def _take_cache(self):
        cache, self._cache = getattr(self, "_cache", None), None
        if cache is None:
            raise ValueError(f"{type(self).__name__}.backward: no cached forward pass; call "
                             "the block with gradients on (not under fastrnn.no_grad() or "
                             "requires_grad_(False)) before backward, once per backward")
        return cache

    # -- state dicts ----------------------------------------------------------------------------

    def _param_shapes(self):
        """(name, shape) of every parameter, in state_dict order."""
        return ((n, p.shape) for n, p in self.params.items())

    def _unexpected_hint(self, unexpected):
        """A sentence explaining unexpected state_dict names, or ''."""
        return ""

    def state_dict(self):
        """A copy of the parameters: name -> ndarray (PyTorch's names, shapes and order)."""
        return {name: p.copy() for name, p in self.params.items()}

    def load_state_dict(self, state_dict, strict=True):
        """Copy parameters in place from `state_dict` (name -> array-like, e.g. NumPy arrays
        or CPU torch tensors), converted to the module's dtype.

        strict=True: the names must equal the module's exactly (else ValueError listing the
        missing and unexpected names). strict=False loads the names both have and returns
        IncompatibleKeys(missing_keys, unexpected_keys). Shapes must match in both modes.
        Nothing is changed when an error is raised.
        """
        if not hasattr(state_dict, "keys") or not hasattr(state_dict, "__getitem__"):
            raise TypeError(f"state_dict must be a mapping name -> array, "
                            f"got {type(state_dict).__name__}")
        expected = {n: tuple(s) for n, s in self._param_shapes()}
        missing = [k for k in expected if k not in state_dict]
        unexpected = [k for k in state_dict.keys() if k not in expected]
        if strict and (missing or unexpected):
            msg = [f"load_state_dict: the names do not match this {self!r}."]
            if missing:
                msg.append(f"Missing: {missing}.")
            if unexpected:
                msg.append(f"Unexpected: {unexpected}.")
            msg.append(self._unexpected_hint(unexpected))
            raise ValueError(" ".join(m for m in msg if m))
        loaded = {}
        for name, shape in expected.items():
            if name not in state_dict:
                continue
            value = state_dict[name]
            if hasattr(value, "detach"):             # a torch tensor: read it, never import torch
                value = value.detach().cpu().numpy()
            a = np.asarray(value)
            if a.dtype == np.bool_ or a.dtype.kind not in "iuf":
                raise TypeError(f"state_dict[{name!r}] must hold real numbers, got dtype {a.dtype}")
            if a.shape != shape:
                raise ValueError(f"state_dict[{name!r}] must have shape {shape}, got {a.shape}")
            with np.errstate(over="ignore"):
                converted = a.astype(self.dtype)
            if np.any(np.isinf(converted) & np.isfinite(a)):
                raise ValueError(f"state_dict[{name!r}] has finite values beyond the range of "
                                 f"{self.dtype.name} (largest magnitude {np.abs(a).max():g})")
            loaded[name] = converted
        for name, a in loaded.items():
            self.params[name][...] = a
        return IncompatibleKeys(missing, unexpected)


class Dense(Module):
    """Affine map on the last axis: `y = x @ weight.T + bias`, x (..., I) -> y (..., O).

    Applied to (T, B, I) it is the same map at every time step (time-distributed).
    Parameters `weight` (O, I) and `bias` (O,), initialised as `torch.nn.Linear`:
    U(-1/sqrt(I), 1/sqrt(I)).
    """

    def __init__(self, in_features, out_features, bias=True, *, dtype=np.float32, seed=None):
        self.in_features = _check_size("in_features", in_features)
        self.out_features = _check_size("out_features", out_features)
        if not isinstance(bias, (bool, np.bool_)):
            raise TypeError(f"bias must be a bool, got {type(bias).__name__}")
        self.dtype = _check_dtype(dtype)
        rng = as_generator(seed)
        k = 1.0 / np.sqrt(self.in_features)
        shape = (self.out_features, self.in_features)
        self.params = {"weight": rng.uniform(-k, k, shape).astype(self.dtype)}
        if bias:
            self.params["bias"] = rng.uniform(-k, k, (self.out_features,)).astype(self.dtype)
        self.grads = {n: np.zeros_like(p) for n, p in self.params.items()}
        self._cache = None

    def __repr__(self):
        return (f"Dense({self.in_features}, {self.out_features}, "
                f"bias={'bias' in self.params}, dtype={self.dtype.name})")

    # The GEMMs run on fastrnn's thread pool (csrc/dense.hpp), not NumPy's BLAS,
    # whose idle workers would spin on the cores the recurrent kernels use.
    def __call__(self, x, training=None):
        x = _check_float_input("x", x, self.dtype, last_dim=self.in_features)
        x2 = np.ascontiguousarray(x.reshape(-1, self.in_features))
        b = self.params.get("bias")
        y = _core.dense_forward(x2, np.ascontiguousarray(self.params["weight"]),
                                None if b is None else np.ascontiguousarray(b))
        self._is_training(training)
        self._cache = (x.shape, x2) if self._keeps_cache() else None
        return y.reshape(x.shape[:-1] + (self.out_features,))

    def backward(self, d_y):
        """Gradient w.r.t. x (..., I) from `d_y` (..., O); adds dweight, dbias to grads."""
        shape, x2 = self._take_cache()
        d_y = _check_float_input("d_y", d_y, self.dtype,
                                 shape=shape[:-1] + (self.out_features,))
        d2 = np.ascontiguousarray(d_y.reshape(-1, self.out_features))
        dw, db, dx = _core.dense_backward(x2, np.ascontiguousarray(self.params["weight"]), d2,
                                          "bias" in self.params)
        self.grads["weight"] += dw
        if db is not None:
            self.grads["bias"] += db
        return dx.reshape(shape)


class Embedding(Module):
    """Lookup table: integer indices (...) -> rows of `weight` (num_embeddings, dim), (..., dim).

    Initialised N(0, 1) as `torch.nn.Embedding`. With `padding_idx`, that row starts at zero
    and gets no gradient. `backward(d_y)` adds to `grads["weight"]` and returns None
    (indices have no gradient).

    `sparse=True` (large tables of which a batch touches a few rows, as in word2vec):
    `backward` leaves `grads["weight"]` at zero and accumulates only the rows it touched in
    `sparse_grad = (rows, values)`: `rows` (R,) the distinct row indices, `values` (R, dim)
    their summed gradients. `sparse_sgd_step(lr)` applies `weight[rows] -= lr * values`,
    and `zero_grad()` clears `sparse_grad`; both cost O(R dim), not O(num_embeddings dim).
    The dense optimisers and clipping in `fastrnn.optim` see only `grads`, so they do not
    update a sparse table.
    """

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, *,
                 sparse=False, dtype=np.float32, seed=None):
        self.num_embeddings = _check_size("num_embeddings", num_embeddings)
        self.embedding_dim = _check_size("embedding_dim", embedding_dim)
        if padding_idx is not None:
            if (not isinstance(padding_idx, numbers.Integral) or isinstance(padding_idx, bool)
                    or not -self.num_embeddings <= padding_idx < self.num_embeddings):
                raise ValueError(f"padding_idx must be None or an int in "
                                 f"[{-self.num_embeddings}, {self.num_embeddings}), "
                                 f"got {padding_idx!r}")
            padding_idx = int(padding_idx) % self.num_embeddings
        self.padding_idx = padding_idx
        if not isinstance(sparse, (bool, np.bool_)):
            raise TypeError(f"sparse must be a bool, got {type(sparse).__name__}")
        self.sparse = bool(sparse)
        self.sparse_grad = None
        self.dtype = _check_dtype(dtype)
        rng = as_generator(seed)
        w = rng.standard_normal((self.num_embeddings, self.embedding_dim)).astype(self.dtype)
        if padding_idx is not None:
            w[padding_idx] = 0
        self.params = {"weight": w}
        self.grads = {"weight": np.zeros_like(w)}
        self._cache = None

    def __repr__(self):
        return (f"Embedding({self.num_embeddings}, {self.embedding_dim}, "
                f"padding_idx={self.padding_idx}, sparse={self.sparse}, "
                f"dtype={self.dtype.name})")

    def __call__(self, indices, training=None):
        idx = np.asarray(indices)
        if idx.dtype == np.bool_ or idx.dtype.kind not in "iu":
            raise TypeError(f"indices must be an integer array, got dtype {idx.dtype}")
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_embeddings):
            raise ValueError(f"indices must lie in [0, {self.num_embeddings}) "
                             f"(num_embeddings), got values from {idx.min()} to {idx.max()}")
        self._is_training(training)
        self._cache = idx.copy() if self._keeps_cache() else None
        return self.params["weight"][idx]

    def backward(self, d_y):
        """Scatter-add `d_y` (..., dim) into the rows that were looked up; returns None."""
        idx = self._take_cache()
        d_y = _check_float_input("d_y", d_y, self.dtype,
                                 shape=idx.shape + (self.embedding_dim,))
        flat = idx.reshape(-1)
        d2 = d_y.reshape(-1, self.embedding_dim)
        if self.padding_idx is not None:
            keep = flat != self.padding_idx
            flat, d2 = flat[keep], d2[keep]
        if not self.sparse:
            # Each row's gradients summed in lookup order (a stable sort, then one
            # sum per run of equal indices): np.add.at's order, at a fraction of its cost.
            order = np.argsort(flat, kind="stable")
            rows = flat[order]
            if rows.size:
                starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
                self.grads["weight"][rows[starts]] += np.add.reduceat(d2[order], starts, axis=0)
            return None
        if self.sparse_grad is not None:               # accumulate, as the dense path does
            flat = np.concatenate([self.sparse_grad[0], flat])
            d2 = np.concatenate([self.sparse_grad[1], d2])
        rows, inverse = np.unique(flat, return_inverse=True)
        values = np.zeros((len(rows), self.embedding_dim), dtype=self.dtype)
        np.add.at(values, inverse.reshape(-1), d2)
        self.sparse_grad = (rows, values)
        return None

    def zero_grad(self):
        """Zero `grads` and drop `sparse_grad`."""
        super().zero_grad()
        self.sparse_grad = None

    def sparse_sgd_step(self, lr):
        """Plain SGD on the touched rows only: `weight[rows] -= lr * values` (sparse=True)."""
        if not self.sparse:
            raise ValueError("sparse_sgd_step needs Embedding(..., sparse=True); a dense "
                             "table is updated by the optimisers in fastrnn.optim")
        if (not isinstance(lr, numbers.Real) or isinstance(lr, bool)
                or not np.isfinite(lr) or lr <= 0):
            raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
        if self.sparse_grad is not None:
            rows, values = self.sparse_grad
            self.params["weight"][rows] -= self.dtype.type(lr) * values


def _float_array(name, a):
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray of float32 or float64, "
                        f"got {type(a).__name__}")
    if a.dtype not in _DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got {a.dtype}")
    return a


def _check_mask(mask, shape, dtype):
    """Mask (shape) of bools or non-negative finite weights, as `dtype`."""
    m = np.asarray(mask)
    if m.shape != tuple(shape):
        raise ValueError(f"mask must have shape {tuple(shape)} (the shape of targets), "
                         f"got {m.shape}")
    if m.dtype != np.bool_ and m.dtype.kind not in "iuf":
        raise TypeError(f"mask must hold bools or non-negative numbers, got dtype {m.dtype}")
    m = m.astype(dtype)
    if m.size and (not np.all(np.isfinite(m)) or m.min() < 0):
        raise ValueError("mask must hold bools or finite non-negative weights, "
                         f"got values from {m.min()} to {m.max()}")
    return m


def softmax_cross_entropy(logits, targets, mask=None):
    """Mean cross-entropy of softmax(logits) against integer class targets.

    logits (..., C) float32/float64; targets (...) integers in [0, C); mask (...) optional,
    bools (True = counts) or non-negative weights. The loss is the mean of -log p[target]
    over the counted positions, `sum(mask * nll) / sum(mask)`; positions where the mask is
    0 (padding) may hold any target value and get zero gradient. Returns
    `(loss, d_logits)` with `d_logits` of the logits' shape and dtype. When nothing is
    counted the loss is 0.0 and the gradient zero.
    """
    logits = _float_array("logits", logits)
    if logits.ndim < 1 or logits.shape[-1] < 1:
        raise ValueError(f"logits must have shape (..., C) with C >= 1, got {logits.shape}")
    C = logits.shape[-1]
    t = np.asarray(targets)
    if t.dtype == np.bool_ or t.dtype.kind not in "iu":
        raise TypeError(f"targets must be an integer array of class indices, "
                        f"got dtype {t.dtype}")
    if t.shape != logits.shape[:-1]:
        raise ValueError(f"targets must have shape {logits.shape[:-1]} (logits.shape[:-1]), "
                         f"got {t.shape}")
    m = None if mask is None else _check_mask(mask, t.shape, logits.dtype)
    counted = t if m is None else t[m > 0]
    if counted.size and (counted.min() < 0 or counted.max() >= C):
        raise ValueError(f"targets must lie in [0, {C}) (C = logits.shape[-1]) where counted, "
                         f"got values from {counted.min()} to {counted.max()}")
    t = np.where(m > 0, t, 0) if m is not None else t
    total = float(t.size) if m is None else float(m.sum(dtype=np.float64))
    if total == 0:
        return 0.0, np.zeros_like(logits)
    x2 = np.ascontiguousarray(logits).reshape(-1, C)
    loss, d = _core.softmax_cross_entropy(x2, np.ascontiguousarray(t, dtype=np.int64).reshape(-1),
                                          None if m is None else np.ascontiguousarray(m).reshape(-1),
                                          total)
    return loss, d.reshape(logits.shape)


def mse(pred, target):
    """Mean squared error `mean((pred - target)**2)` over all elements.

    pred float32/float64 (any shape); target of the same shape (any real dtype, converted to
    pred's). Returns `(loss, d_pred)` with `d_pred = 2 (pred - target) / pred.size`.
    """
    pred = _float_array("pred", pred)
    target = np.asarray(target)
    if target.dtype == np.bool_ or target.dtype.kind not in "iuf":
        raise TypeError(f"target must hold real numbers, got dtype {target.dtype}")
    if target.shape != pred.shape:
        raise ValueError(f"target must have shape {pred.shape} (the shape of pred), "
                         f"got {target.shape}")
    if pred.size == 0:
        return 0.0, np.zeros_like(pred)
    diff = pred - target.astype(pred.dtype, copy=False)
    loss = float(np.mean(np.square(diff, dtype=np.float64)))
    return loss, (diff * pred.dtype.type(2.0 / pred.size)).astype(pred.dtype, copy=False)
