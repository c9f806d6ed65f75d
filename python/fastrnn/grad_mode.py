"""Whether forward passes keep what backward needs: `fastrnn.no_grad()` (per thread).

    with fastrnn.no_grad():          # or @fastrnn.no_grad() on a function
        out, h_n = lstm(x)           # no cache: O(B·H) memory beyond the outputs

Like `torch.no_grad`, the setting belongs to the thread that enters it, so a serving
thread under no_grad does not stop a training thread from keeping its caches.
"""
import contextlib
import threading

__all__ = ["no_grad", "enable_grad", "is_grad_enabled"]

_state = threading.local()


def is_grad_enabled():
    """True unless this thread is inside `no_grad()` (and not inside a nested `enable_grad()`)."""
    return getattr(_state, "enabled", True)


class _GradMode(contextlib.ContextDecorator):
    _mode = True

    def __init__(self):
        self._previous = []            # a stack: one instance may be entered re-entrantly

    def __enter__(self):
        self._previous.append(is_grad_enabled())
        _state.enabled = self._mode
        return self

    def __exit__(self, *exc):
        _state.enabled = self._previous.pop()
        return False


class no_grad(_GradMode):
    """Context manager (and decorator): forwards in this thread keep no backward cache."""
    _mode = False


class enable_grad(_GradMode):
    """Context manager (and decorator): caches are kept again, e.g. inside `no_grad()`."""
    _mode = True
