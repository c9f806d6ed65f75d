"""Data-parallel training over MPI through mpi4py (docs/distributed.md, DESIGN §9).

Every rank (process) holds the same model and runs forward and backward on its own
share of the batch; the gradients are then averaged across ranks so every rank takes
the same optimizer step:

    dp = DataParallel([lstm, head])             # checks the model agrees, broadcasts rank 0's
    x_local = shard(x, axis=1)                  # this rank's block of a (T, B, F) batch
    ... forward, loss, backward on x_local ...
    dp.allreduce_grads(weight=x_local.shape[1]) # grads <- sum_r(w_r g_r) / sum_r(w_r)
    opt.step()

or, overlapping the reduction of a block's gradients with the backward of earlier blocks:

    d = head.backward(d_logits); dp.grads_ready(head)   # non-blocking allreduce starts
    lstm.backward(d);            dp.grads_ready(lstm)
    dp.synchronize()                                    # wait, then grads are averaged

`modules` are anything with `params` and `grads` dicts, enumerated as `fastrnn.optim`
does. mpi4py is imported at the first call that needs it, never by `import fastrnn`
(install it with `pip install fastrnn[mpi]`). Every function taking `comm` uses
`MPI.COMM_WORLD` when it is None. `DataParallel` (its construction and its reductions) and
`local_num_threads` are collective: call them on every rank, in the same order.
"""

import os
import sys
import time
import traceback

import numpy as np

from .optim import _module_list, _pairs, _positive, clip_grad_norm as _clip_grad_norm

__all__ = ["DataParallel", "shard", "abort_on_error", "local_num_threads"]


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError("fastrnn.distributed needs mpi4py and an MPI library: "
                          "pip install 'fastrnn[mpi]' (mpi4py and MPICH wheels), or mpi4py "
                          "over a system MPI") from e
    return MPI


def _comm(comm):
    MPI = _mpi()
    if comm is None:
        return MPI.COMM_WORLD
    if not isinstance(comm, MPI.Intracomm):
        raise TypeError(f"comm must be None or an mpi4py intracommunicator "
                        f"(e.g. MPI.COMM_WORLD), got {type(comm).__name__}")
    return comm


def _block(n, rank, size):
    """[start, stop) of `rank`'s block when n items are split into `size` contiguous
    blocks whose sizes differ by at most one (the first n % size blocks get the extra)."""
    q, r = divmod(n, size)
    start = rank * q + min(rank, r)
    return start, start + q + (rank < r)


def shard(x, axis, comm=None):
    """This rank's contiguous block of `x` along `axis`, as a new array.

    The blocks of ranks 0, 1, ... follow each other in order and differ in size by at most
    one (as `numpy.array_split`). `axis` is required because fastrnn's default layout is
    time-major: the batch of a (T, B, F) array is axis 1, of (B,) targets axis 0. Every rank
    must get at least one item. Not collective: each rank only reads its rank and size.
    """
    comm = _comm(comm)
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x must be a numpy.ndarray, got {type(x).__name__}")
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) \
            or not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis must be an int in [{-x.ndim}, {x.ndim}) for x of shape "
                         f"{x.shape}, got {axis!r}")
    axis, size = int(axis) % x.ndim, comm.Get_size()
    n = x.shape[axis]
    if n < size:
        raise ValueError(f"x.shape[{axis}] = {n} cannot be split among {size} ranks: "
                         "every rank needs at least one item")
    start, stop = _block(n, comm.Get_rank(), size)
    return x[(slice(None),) * axis + (slice(start, stop),)].copy()


def abort_on_error(comm=None):
    """Make an uncaught exception on this rank end every rank of `comm`.

    Without it a rank that dies leaves the others waiting in their next collective call
    forever (mpi4py's exit hook then waits too). This wraps `sys.excepthook`: the usual
    traceback is printed, then a line naming the rank, then `comm.Abort(1)`, which makes
    `mpiexec` end all ranks with a non-zero status. Does nothing with one rank or when
    already installed. (`python -m mpi4py script.py` has the same effect for a whole
    script.) `DataParallel` calls it unless given `abort_on_error=False`.
    """
    comm = _comm(comm)
    if comm.Get_size() == 1 or getattr(sys.excepthook, "_fastrnn_abort", False):
        return
    previous, rank, size = sys.excepthook, comm.Get_rank(), comm.Get_size()

    def hook(kind, value, tb):
        text = ""
        if previous is sys.__excepthook__:
            text = "".join(traceback.format_exception(kind, value, tb))
        else:
            previous(kind, value, tb)
        # One write, then a short pause: mpiexec relays each rank's stderr through a pipe,
        # and the abort can end the relay before later pieces of a traceback get through.
        sys.stderr.write(text + f"fastrnn.distributed: uncaught {kind.__name__} on rank {rank} "
                         f"of {size}; calling MPI_Abort so the other ranks do not wait forever\n")
        sys.stdout.flush()
        sys.stderr.flush()
        time.sleep(0.2)
        comm.Abort(1)

    hook._fastrnn_abort = True
    sys.excepthook = hook


_install_abort_hook = abort_on_error       # DataParallel's argument of that name shadows it


def local_num_threads(comm=None):
    """Kernel threads for this rank so that the ranks sharing its cores use each core once.

    The ranks of `comm` on this node whose CPU affinity overlaps this rank's share its
    usable cores: `max(1, cores // sharing_ranks)`. Unbound ranks (MPICH's default) on a
    2-core machine get 1 thread each with 2 ranks; a rank a launcher bound to its own cores
    gets all of them. Collective. Use as `fastrnn.set_num_threads(local_num_threads())`.
    """
    MPI = _mpi()
    comm = _comm(comm)
    mine = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") \
        else set(range(os.cpu_count() or 1))
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        sets = node.allgather(frozenset(mine))
    finally:
        node.Free()
    sharing = sum(1 for s in sets if s & mine)
    return max(1, len(mine) // sharing)


def _signature(modules):
    """What must agree across ranks: per parameter its module, name, shape and dtypes."""
    index = {id(m): i for i, m in enumerate(modules)}
    return [(index[id(mod)], type(mod).__name__, name, p.shape, p.dtype.str, g.dtype.str)
            for mod, name, p, g in _pairs(modules)]


def _describe(entry):
    i, kind, name, shape, pdt, gdt = entry
    grad = "" if pdt == gdt else f", grad dtype {np.dtype(gdt).name}"
    return f"modules[{i}] ({kind}) {name!r} shape {shape} dtype {np.dtype(pdt).name}{grad}"


def _difference(sig, ref, rank, root):
    """A sentence on the first difference between rank `rank`'s signature and root's."""
    for a, b in zip(sig, ref):
        if a != b:
            return f"rank {rank} has {_describe(a)} where rank {root} has {_describe(b)}"
    longer, owner = (sig, rank) if len(sig) > len(ref) else (ref, root)
    first = longer[min(len(sig), len(ref))]
    return (f"rank {rank} has {len(sig)} parameters and rank {root} has {len(ref)}; "
            f"the first unmatched one is rank {owner}'s {_describe(first)}")


class _Bucket:
    """One module's gradients of one dtype, packed into a slice of that dtype's flat buffer
    followed by one slot for the rank's weight; the unit of one (I)allreduce."""

    def __init__(self, module, index, entries, view):
        self.module, self.index = module, index
        self.entries = entries            # [(name, shape, start, stop)] within view
        self.view = view

    def _grad(self, name, shape):
        g = self.module.grads.get(name)
        if not isinstance(g, np.ndarray) or g.shape != shape or g.dtype != self.view.dtype:
            raise ValueError(f"modules[{self.index}].grads[{name!r}] must stay an array of "
                             f"shape {shape} and dtype {self.view.dtype.name} (as when the "
                             f"DataParallel was made), got {getattr(g, 'shape', g)!r}")
        return g

    def pack(self, weight):
        for name, shape, start, stop in self.entries:
            g = self._grad(name, shape).reshape(-1)
            if weight == 1:
                self.view[start:stop] = g
            else:
                np.multiply(g, self.view.dtype.type(weight), out=self.view[start:stop])
        self.view[-1] = weight

    def unpack(self):
        total = self.view[-1] if self.view[-1] != 0 else 1   # all weights 0: the sum is 0
        for name, shape, start, stop in self.entries:
            np.divide(self.view[start:stop].reshape(shape), total, out=self._grad(name, shape))


class DataParallel:
    """Average the gradients of `modules` across the ranks of `comm` (data parallelism).

    modules: one object or a list with `params` and `grads` dicts (fastrnn layers, `nn`
    blocks, your own), as for `fastrnn.optim`. Setup is collective and checks that every
    rank has the same parameter names, shapes and dtypes in the same module order; a
    difference, or a setup error on any rank, raises on every rank (never a hang). Then
    rank `root`'s parameters are copied to every rank (`broadcast_params`), and
    `abort_on_error(comm)` is installed unless `abort_on_error=False`.

    The gradient reduction, per step (collective, the same calls in the same order on every
    rank):
    - `allreduce_grads(weight=None)`: all gradients at once, one `Allreduce` per dtype;
    - or `grads_ready(module, weight=None)` as soon as a module's backward is done (a
      non-blocking `Iallreduce` of its gradients starts), then `synchronize(weight=None)`
      (reduces the modules not marked ready, waits for everything).
    Afterwards every gradient is `sum_r(w_r * g_r) / sum_r(w_r)` over the ranks r, identical
    on every rank. `weight` (default 1 on every rank: the plain mean) is what this rank's
    loss was normalised by: with a mean loss over its n_r sequences pass n_r and unequal
    shards give the gradient of the mean over the global batch. Weights are stored in the
    gradients' dtype (float32 counts integers exactly up to 2**24).

    Attributes: `comm`, `rank`, `size`, `root`, `modules` (the list, each module once).
    """

    def __init__(self, modules, comm=None, *, root=0, abort_on_error=True):
        self.comm = _comm(comm)
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self._check_agreement(modules, root)
        self._build_buckets()
        self._pending = {}                    # module index -> its buckets' requests
        self.broadcast_params()
        if abort_on_error:
            _install_abort_hook(self.comm)

    def _check_agreement(self, modules, root):
        """Local checks, then one allgather: errors and differences raise on every rank."""
        error = sig = None
        try:
            if isinstance(root, bool) or not isinstance(root, (int, np.integer)) \
                    or not 0 <= root < self.size:
                raise ValueError(f"root must be a rank in [0, {self.size}), got {root!r}")
            self.root = int(root)
            unique = {id(m): m for m in _module_list(modules)}
            self.modules = list(unique.values())
            sig = _signature(self.modules)
        except (TypeError, ValueError) as e:
            error = e
        gathered = self.comm.allgather(
            (None, self.root, sig) if error is None else
            (f"{type(error).__name__}: {error}", None, None))
        if error is not None:
            raise error
        failed = [(r, msg) for r, (msg, _, _) in enumerate(gathered) if msg is not None]
        if failed:
            r, msg = failed[0]
            raise RuntimeError(f"DataParallel setup failed on rank {r}: {msg}")
        roots = [r for _, r, _ in gathered]
        if len(set(roots)) > 1:
            raise ValueError(f"DataParallel: every rank must pass the same root, got {roots} "
                             "on ranks 0, 1, ...")
        ref = gathered[self.root][2]
        diffs = [_difference(s, ref, r, self.root)
                 for r, (_, _, s) in enumerate(gathered) if s != ref]
        if diffs:
            raise ValueError("DataParallel: the model differs across ranks (every rank must "
                             "build the same modules in the same order): " + "; ".join(diffs))

    def _build_buckets(self):
        """One flat buffer per gradient dtype; in it, module by module, one bucket each."""
        layout = {}                           # dtype -> {module index: [(name, shape, size)]}
        index = {id(m): i for i, m in enumerate(self.modules)}
        for mod, name, _, g in _pairs(self.modules):
            layout.setdefault(g.dtype, {}).setdefault(index[id(mod)], []).append(
                (name, g.shape, g.size))
        self._buffers, self._buckets = [], {}  # module index -> [_Bucket]
        for dtype, mods in layout.items():
            buf = np.zeros(sum(sum(n for *_, n in entries) + 1 for entries in mods.values()),
                           dtype)
            self._buffers.append(buf)
            offset = 0
            for i, entries in mods.items():
                placed, start = [], 0
                for name, shape, n in entries:
                    placed.append((name, shape, start, start + n))
                    start += n
                view = buf[offset:offset + start + 1]
                self._buckets.setdefault(i, []).append(
                    _Bucket(self.modules[i], i, placed, view))
                offset += start + 1

    def _index(self, module):
        for i, m in enumerate(self.modules):
            if m is module:
                return i
        raise ValueError(f"module must be one of this DataParallel's modules, "
                         f"got {type(module).__name__} {module!r}")

    @staticmethod
    def _weight(weight):
        return 1.0 if weight is None else _positive("weight", weight, allow_zero=True)

    def broadcast_params(self):
        """Copy rank `root`'s parameters into every rank's (in place; one Bcast per dtype)."""
        by_dtype = {}
        for _, _, p, _ in _pairs(self.modules):
            by_dtype.setdefault(p.dtype, []).append(p)
        for dtype, params in by_dtype.items():
            if self.rank == self.root:
                buf = np.concatenate([p.reshape(-1) for p in params])
            else:
                buf = np.empty(sum(p.size for p in params), dtype)
            self.comm.Bcast(buf, root=self.root)
            if self.rank != self.root:
                start = 0
                for p in params:
                    p[...] = buf[start:start + p.size].reshape(p.shape)
                    start += p.size

    def allreduce_grads(self, weight=None):
        """Average every gradient across ranks now (blocking; one Allreduce per dtype)."""
        if self._pending:
            raise ValueError("allreduce_grads: grads_ready was called for modules "
                             f"{sorted(self._pending)} in this step; finish it with "
                             "synchronize()")
        w = self._weight(weight)
        buckets = [b for bs in self._buckets.values() for b in bs]
        for b in buckets:
            b.pack(w)
        MPI = _mpi()
        for buf in self._buffers:
            self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        for b in buckets:
            b.unpack()

    def grads_ready(self, module, weight=None):
        """Start the non-blocking average of `module`'s gradients (its backward is done).

        Its gradients must not change until `synchronize()`; other modules' backward may run
        meanwhile. Every rank must mark the same modules in the same order.
        """
        i = self._index(module)
        if i in self._pending:
            raise ValueError(f"grads_ready: modules[{i}] ({type(module).__name__}) was "
                             "already marked ready in this step; call synchronize() first")
        w = self._weight(weight)
        MPI = _mpi()
        requests = []
        for b in self._buckets.get(i, []):
            b.pack(w)
            requests.append(self.comm.Iallreduce(MPI.IN_PLACE, b.view, op=MPI.SUM))
        self._pending[i] = requests
        # A test call lets MPI progress the earlier transfers (there is no progress thread).
        MPI.Request.Testall([r for rs in self._pending.values() for r in rs])

    def synchronize(self, weight=None):
        """Finish the step's reduction: start it for the modules not marked ready (with
        `weight`), wait for all, and write the averages into `grads`."""
        for i, mod in enumerate(self.modules):
            if i not in self._pending:
                self.grads_ready(mod, weight)
        _mpi().Request.Waitall([r for rs in self._pending.values() for r in rs])
        for i in self._pending:
            for b in self._buckets.get(i, []):
                b.unpack()
        self._pending = {}

    def clip_grad_norm(self, max_norm):
        """`fastrnn.optim.clip_grad_norm` on the averaged gradients (finishing a pending
        reduction first): every rank computes the same norm and scale. Clipping each rank's
        own gradients before the average would be a different, wrong operation."""
        if self._pending:
            self.synchronize()
        return _clip_grad_norm(self.modules, max_norm)
