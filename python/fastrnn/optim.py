"""Optimisers and gradient clipping over anything with `params` / `grads` dicts.

`modules` is one object or an iterable of objects (the recurrent layers, `fastrnn.nn`
blocks, your own) each having `params` and `grads`: dicts name -> ndarray with the same
names, shapes and dtypes. Parameters are updated in place (the arrays keep their
identity, so layers and caches that hold them see the new values); gradients are read,
never cleared, except by `optimizer.zero_grad()` and the clipping functions, which scale
them in place.

Update rules (PyTorch conventions, so results match `torch.optim` step for step):

SGD, momentum mu:        v <- mu * v + g        p <- p - lr * v      (v = g at the first step)
Adam (Kingma & Ba 2015): m <- b1 m + (1 - b1) g,  v <- b2 v + (1 - b2) g^2,
                         p <- p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)

Adam's update and clipping's sum of squares run in the compiled module, one pass over each
array on fastrnn's thread pool (NumPy's expressions make a dozen passes and temporaries,
a few percent of a training step); Adam gives the same bits as the NumPy expressions
below, which still run for arrays the module cannot take (not C-contiguous, read-only,
or a gradient of another dtype).
"""

import math
import numbers

import numpy as np

from ._isa import core as _core

__all__ = ["SGD", "Adam", "clip_grad_norm", "clip_grad_value"]


def _module_list(modules):
    if hasattr(modules, "params") and hasattr(modules, "grads"):
        return [modules]
    try:
        return list(modules)
    except TypeError:
        raise TypeError("modules must be an object with params and grads dicts, or an "
                        f"iterable of such objects, got {type(modules).__name__}") from None


def _pairs(modules):
    """[(module, name, param, grad)] over `modules`, checked; each module once."""
    modules = _module_list(modules)
    out, seen = [], set()
    for i, mod in enumerate(modules):
        if id(mod) in seen:
            continue
        seen.add(id(mod))
        params, grads = getattr(mod, "params", None), getattr(mod, "grads", None)
        if not isinstance(params, dict) or not isinstance(grads, dict):
            raise TypeError(f"modules[{i}] ({type(mod).__name__}) must have dict attributes "
                            "params and grads")
        for name, p in params.items():
            g = grads.get(name)
            if not isinstance(p, np.ndarray) or not isinstance(g, np.ndarray):
                raise TypeError(f"modules[{i}] ({type(mod).__name__}): params[{name!r}] and "
                                f"grads[{name!r}] must both be numpy arrays")
            if g.shape != p.shape:
                raise ValueError(f"modules[{i}] ({type(mod).__name__}): grads[{name!r}] must "
                                 f"have the shape of params[{name!r}] {p.shape}, got {g.shape}")
            out.append((mod, name, p, g))
    return out


def _native(p, *others):
    """Whether the compiled update can take these arrays: float32/float64, one dtype,
    C-contiguous and writeable."""
    if p.dtype not in (np.float32, np.float64) or not p.flags.c_contiguous:
        return False
    return all(a.dtype == p.dtype and a.flags.c_contiguous and a.flags.writeable
               for a in (p,) + others)


def _positive(name, value, allow_zero=False):
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and \
        math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return float(value)


def _unit(name, value):
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    return float(value)


class _Optimizer:
    def __init__(self, modules, lr):
        self._modules = _module_list(modules)
        _pairs(self._modules)                    # validate now, not at the first step
        self.lr = _positive("lr", lr)
        self.state = {}                     # (id(module), name) -> dict of buffers
        self.steps = 0

    def zero_grad(self):
        """Zero every gradient of every module (in place)."""
        for _, _, _, g in _pairs(self._modules):
            g.fill(0)

    def step(self):
        """One update of every parameter from its current gradient (in place)."""
        self.steps += 1
        for mod, name, p, g in _pairs(self._modules):
            self._update(self.state.setdefault((id(mod), name), {}), p, g)


class SGD(_Optimizer):
    """Stochastic gradient descent with optional (heavy-ball) momentum, as `torch.optim.SGD`."""

    def __init__(self, modules, lr, momentum=0.0):
        super().__init__(modules, lr)
        self.momentum = _unit("momentum", momentum)

    def _update(self, state, p, g):
        if self.momentum == 0:
            p -= p.dtype.type(self.lr) * g
            return
        v = state.get("v")
        if v is None:
            v = state["v"] = g.astype(p.dtype, copy=True)
        else:
            v *= p.dtype.type(self.momentum)
            v += g
        p -= p.dtype.type(self.lr) * v


class Adam(_Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction, as `torch.optim.Adam`."""

    def __init__(self, modules, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        super().__init__(modules, lr)
        try:
            b1, b2 = betas
        except (TypeError, ValueError):
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}") from None
        self.betas = (_unit("betas[0]", b1), _unit("betas[1]", b2))
        self.eps = _positive("eps", eps)

    def _update(self, state, p, g):
        b1, b2 = self.betas
        if "m" not in state:
            state["m"] = np.zeros_like(p)
            state["v"] = np.zeros_like(p)
            state["t"] = 0
        state["t"] += 1
        t, m, v = state["t"], state["m"], state["v"]
        if _native(p, g, m, v):
            _core.adam_update(p, g, m, v, b1, b2, self.lr, self.eps, t)
            return
        f = p.dtype.type
        m *= f(b1)
        m += f(1 - b1) * g
        v *= f(b2)
        v += f(1 - b2) * np.square(g)
        denom = np.sqrt(v / f(1 - b2 ** t))
        denom += f(self.eps)
        p -= f(self.lr / (1 - b1 ** t)) * m / denom


def clip_grad_norm(modules, max_norm):
    """Rescale all gradients together so their global L2 norm is at most `max_norm`.

    Deep Learning Book §10.11.1: with g all gradients concatenated, if ||g|| > max_norm then
    g <- g * max_norm / ||g||, keeping the direction. Returns the norm before clipping (a
    float, computed in float64). A non-finite norm (an overflowed or NaN gradient) is
    returned and the gradients are left as they are, so the caller can skip the step.
    """
    max_norm = _positive("max_norm", max_norm)
    pairs = _pairs(modules)
    total = math.sqrt(sum(_core.sum_squares(g) if _native(g) else
                          float(np.sum(np.square(g, dtype=np.float64)))
                          for _, _, _, g in pairs))
    if math.isfinite(total) and total > max_norm:
        scale = max_norm / total
        for _, _, _, g in pairs:
            g *= g.dtype.type(scale)
    return total


def clip_grad_value(modules, clip):
    """Clip every gradient element to [-clip, clip] in place (Mikolov's element-wise clip)."""
    clip = _positive("clip", clip)
    for _, _, _, g in _pairs(modules):
        np.clip(g, -clip, clip, out=g)
