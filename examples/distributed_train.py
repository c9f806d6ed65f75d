"""Data-parallel training over MPI: forecast_gru.py's GRU forecaster on several ranks.

    mpiexec -n 2 python examples/distributed_train.py --quick
    mpiexec -n 2 python examples/distributed_train.py --overlap   # non-blocking allreduce
    python examples/distributed_train.py --quick                  # one rank, same numbers
    mpiexec -n 2 python examples/distributed_train.py --quick --plot dp.png   # curves

The model, data and metric are those of forecast_gru.py (imported from it): a GRU reads
72 hours of a synthetic series and forecasts the next 12. Every rank makes the same data
(one seed); each step's global batch (--batch windows) is split among the ranks with
`fastrnn.distributed.shard`, every rank runs forward and backward on its part, and
`DataParallel` averages the gradients weighted by the part sizes. So the training is the
one-process training on the whole batch (up to float round-off) for any number of ranks.
The test windows are split too and the absolute errors summed across ranks.

Kernel threads per rank: `--threads`, else `local_num_threads()` (the cores this rank
shares with the other ranks of its node, divided among them: ranks x threads <= cores).
Rank 0 prints; the last line is forecast_gru.py's: `test MAE: <gru> (naive ..., ...)`.
Needs mpi4py (`pip install fastrnn[mpi]`).
"""
import time

import numpy as np

import fastrnn
from fastrnn import nn, optim
from fastrnn.distributed import DataParallel, local_num_threads, shard
from forecast_gru import K, W, Forecaster, baseline_maes, predict, splits
import _common


def sharded_mae(comm, model, x, y, last, scale):
    """Mean absolute error over all windows; each rank forecasts its block of them."""
    cols = shard(np.arange(x.shape[1]), axis=0, comm=comm)
    err = float(np.abs(predict(model, x[:, cols], last[cols], scale) - y[:, cols]).sum())
    return comm.allreduce(err) / y.size


def main(argv=None):
    ap = _common.parser(__doc__, epochs=None, weeks=None,
                        batch=(64, "global batch (all ranks)"), hidden=32, lr=5e-3,
                        threads=(None, "kernel threads per rank"))
    ap.add_argument("--overlap", action="store_true",
                    help="start each block's allreduce as soon as its backward is done")
    args = _common.parse(ap, argv)
    from mpi4py import MPI                  # after the arguments: --help needs no MPI
    epochs = args.epochs or (4 if args.quick else 15)
    weeks = args.weeks or (20 if args.quick else 40)

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    say = print if rank == 0 else (lambda *a, **k: None)
    threads = args.threads or local_num_threads(comm)
    fastrnn.set_num_threads(threads)

    rng = np.random.default_rng(args.seed)            # the same stream on every rank
    _, scale, (xtr, ytr, ltr), (xva, yva, lva), (xte, yte, lte) = splits(rng, weeks)
    rel_x, rel_y = (xtr - ltr) / scale, (ytr - ltr) / scale
    N = xtr.shape[1]
    say(f"{size} ranks x {threads} kernel thread{'s' if threads > 1 else ''}; global batch "
        f"{args.batch} ({args.batch // size}-{-(-args.batch // size)} per rank); {N} "
        f"training windows of {W} h -> {K} h; {'overlapped' if args.overlap else 'blocking'}"
        " allreduce")

    model = Forecaster(args.hidden, args.seed)
    dp = DataParallel(model.modules, comm)        # checks the model, copies rank 0's weights
    opt = optim.Adam(model.modules, lr=args.lr)
    curve = []                                    # (epoch, train mse, validation MAE)
    for epoch in range(epochs):
        t0 = time.perf_counter()
        order = rng.permutation(N)
        loss_sum, seen = 0.0, 0                  # this rank's, summed over ranks per epoch
        for i in range(0, N, args.batch):
            idx = order[i:i + args.batch]
            if len(idx) < size:                    # a tail too short to give every rank one
                continue
            mine = shard(idx, axis=0, comm=comm)
            opt.zero_grad()
            loss, d = nn.mse(model(rel_x[:, mine]), rel_y[:, mine].T.astype(np.float32))
            if args.overlap:
                dh = model.head.backward(d)
                dp.grads_ready(model.head, weight=len(mine))   # reduced during gru.backward
                model.gru.backward(None, dh[None])
                dp.synchronize(weight=len(mine))
            else:
                model.backward(d)
                dp.allreduce_grads(weight=len(mine))
            dp.clip_grad_norm(1.0)
            opt.step()
            loss_sum, seen = loss_sum + loss * len(mine), seen + len(mine)
        seconds = time.perf_counter() - t0
        train_mse = comm.allreduce(loss_sum) / comm.allreduce(seen)
        val_mae = sharded_mae(comm, model, xva, yva, lva, scale)
        curve.append((epoch + 1, train_mse, val_mae))
        say(f"epoch {epoch + 1}: train mse {train_mse:.4f} (scaled), validation MAE "
            f"{val_mae:.3f}, {seconds:.1f}s ({N / seconds:.0f} windows/s)", flush=True)

    mae = sharded_mae(comm, model, xte, yte, lte, scale)
    naive, seasonal = baseline_maes(xte, yte, lte)
    if args.plot and rank == 0:
        e, mse, val = np.array(curve).T
        with _common.figure(args.plot, ncols=2, figsize=(9, 3.5)) as (fig, (a1, a2)):
            a1.plot(e, mse, "o-")
            a1.set(xlabel="epoch", ylabel="training MSE (scaled)", title=f"{size} ranks")
            a2.plot(e, val, "o-", label="GRU")
            a2.axhline(naive, color="gray", ls="--", label="naive last value (test)")
            a2.set(xlabel="epoch", ylabel="validation MAE", title="data-parallel GRU")
            a2.legend()
    say(f"test MAE: {mae:.3f} (naive last-value {naive:.3f}, seasonal naive {seasonal:.3f})")
    return mae


if __name__ == "__main__":
    main()
