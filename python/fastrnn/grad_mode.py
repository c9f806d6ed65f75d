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


def _previous():
    """This thread's stack of the settings that the open contexts replaced. Kept per thread,
    not per instance: one decorator instance is entered by many threads and recursively."""
    if not hasattr(_state, "previous"):
        _state.previous = []
    return _state.previous


class _GradMode(contextlib.ContextDecorator):
    _mode = True

    def __enter__(self):
        _previous().append(is_grad_enabled())
        _state.enabled = self._mode
        return self

    def __exit__(self, *exc):
        _state.enabled = _previous().pop()
        return False


class no_grad(_GradMode):
    """Context manager (and decorator): forwards in this thread keep no backward cache."""
    _mode = False


class enable_grad(_GradMode):
    """Context manager (and decorator): caches are kept again, e.g. inside `no_grad()`."""
    _mode = True
