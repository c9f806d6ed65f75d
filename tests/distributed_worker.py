"""Programs that tests/test_distributed.py runs under `mpiexec -n 2`; one per scenario:

    python distributed_worker.py equality   # JSON lines: data-parallel vs one process
    python distributed_worker.py mismatch   # each rank prints the setup errors it caught
    python distributed_worker.py crash      # rank 1 raises in the middle of training

The assertions live in the test file; these only compute and print.
"""
import json
import sys

import numpy as np
from mpi4py import MPI

import fastrnn
from fastrnn import nn, optim
from fastrnn.distributed import DataParallel, local_num_threads, shard

COMM = MPI.COMM_WORLD
RANK = COMM.Get_rank()
T, I, H, C, L = 6, 3, 5, 3, 2          # time steps, inputs, hidden units, classes, layers
STEPS, MAX_NORM = 6, 0.5


class Model:
    """LSTM (2 layers, variable lengths) -> top layer's h_n -> Dense -> softmax CE."""

    def __init__(self, seed, dtype=np.float64, hidden=H, head=True):
        rng = np.random.default_rng(seed)
        self.lstm = fastrnn.LSTM(I, hidden, num_layers=L, dtype=dtype, seed=rng)
        self.head = nn.Dense(hidden, C, dtype=dtype, seed=rng)
        self.modules = [self.lstm, self.head] if head else [self.lstm]

    def loss_and_backward(self, x, y, lengths, after_block=lambda m: None):
        """Mean loss over this batch; backward; `after_block(m)` once each block is done."""
        _, (h_n, _) = self.lstm(x, lengths=lengths)
        loss, d = nn.softmax_cross_entropy(self.head(h_n[-1]), y)
        dh_n = np.zeros_like(h_n)
        dh_n[-1] = self.head.backward(d)
        after_block(self.head)
        self.lstm.backward(None, (dh_n, None))
        after_block(self.lstm)
        return loss


def batches(B):
    """The same global batches on every rank (one generator, one seed)."""
    rng = np.random.default_rng(1)
    for _ in range(STEPS):
        yield (rng.standard_normal((T, B, I)), rng.integers(0, C, B),
               rng.integers(1, T + 1, B))


def make_optimizer(name, modules):
    return optim.SGD(modules, lr=0.5, momentum=0.9) if name == "sgd" \
        else optim.Adam(modules, lr=0.05)


def train_parallel(opt_name, mode, B, weighted):
    model = Model(seed=RANK)                 # different on each rank until the broadcast
    dp = DataParallel(model.modules)
    opt = make_optimizer(opt_name, model.modules)
    norms = []
    for x, y, lengths in batches(B):
        x, y, lengths = shard(x, axis=1), shard(y, axis=0), shard(lengths, axis=0)
        weight = len(y) if weighted else None
        opt.zero_grad()
        if mode == "overlap":
            model.loss_and_backward(x, y, lengths, lambda m: dp.grads_ready(m, weight))
            dp.synchronize()
        else:
            model.loss_and_backward(x, y, lengths)
            dp.allreduce_grads(weight)
        norms.append(dp.clip_grad_norm(MAX_NORM))
        opt.step()
    return model, norms


def train_single(opt_name, B):
    model = Model(seed=0)
    opt = make_optimizer(opt_name, model.modules)
    norms = []
    for x, y, lengths in batches(B):
        opt.zero_grad()
        model.loss_and_backward(x, y, lengths)
        norms.append(optim.clip_grad_norm(model.modules, MAX_NORM))
        opt.step()
    return model, norms


def params(model):
    return {f"{i}.{k}": p for i, m in enumerate(model.modules) for k, p in m.params.items()}


def rel_diff(a, b):
    """max over tensors of max|a - b| / max|b|."""
    return max(float(np.max(np.abs(a[k] - b[k])) / np.max(np.abs(b[k]))) for k in b)


def equality():
    threads = local_num_threads()
    if RANK == 0:
        print(json.dumps({"config": "threads", "local_num_threads": threads}), flush=True)
    configs = [("sgd", "blocking", 8, False), ("adam", "overlap", 8, False),
               ("sgd", "overlap", 7, True), ("adam", "blocking", 7, True),
               ("sgd", "blocking", 7, False)]     # unequal shards, unweighted: must differ
    for opt_name, mode, B, weighted in configs:
        model, norms = train_parallel(opt_name, mode, B, weighted)
        theirs = COMM.gather(params(model))
        if RANK == 0:
            ref, ref_norms = train_single(opt_name, B)
            mine = params(model)
            print(json.dumps({
                "config": f"{opt_name}-{mode}-B{B}-{'weighted' if weighted else 'mean'}",
                "vs_single": rel_diff(mine, params(ref)),
                "across_ranks": max(float(np.max(np.abs(t[k] - mine[k])))
                                    for t in theirs for k in mine),
                "norms": norms, "single_norms": ref_norms}), flush=True)


def mismatch():
    """Each bad setup must raise on both ranks; print what each rank caught."""
    cases = {
        "shape": lambda: Model(0, hidden=H + RANK).modules,
        "dtype": lambda: Model(0, dtype=(np.float64, np.float32)[RANK]).modules,
        "count": lambda: Model(0, head=RANK == 0).modules,
        "local": lambda: Model(0).modules + ([object()] if RANK == 1 else []),
    }
    for case, modules in cases.items():
        try:
            DataParallel(modules())
            print(f"{case} rank {RANK}: no error", flush=True)
        except Exception as e:
            print(f"{case} rank {RANK}: {type(e).__name__}: {e}", flush=True)
    try:
        DataParallel(Model(0).modules, root=RANK)
    except ValueError as e:
        print(f"root rank {RANK}: {type(e).__name__}: {e}", flush=True)


def crash():
    model = Model(seed=RANK)
    dp = DataParallel(model.modules)
    for step, (x, y, lengths) in enumerate(batches(8)):
        if RANK == 1 and step == 2:
            raise RuntimeError("injected failure on rank 1")
        model.loss_and_backward(shard(x, axis=1), shard(y, axis=0), shard(lengths, axis=0))
        dp.allreduce_grads()


if __name__ == "__main__":
    assert COMM.Get_size() == 2, f"run under mpiexec -n 2, got {COMM.Get_size()} rank(s)"
    {"equality": equality, "mismatch": mismatch, "crash": crash}[sys.argv[1]]()
