"""What the example scripts share: their command line, the training loop, plots.

- `parser(doc, **options)` starts an argument parser with the options every example has
  (`--quick`, `--seed`, `--plot PNG`) and the script's own; `parse(ap, argv)` parses,
  and fails at once, before any training, when `--plot` is asked for without matplotlib.
- `train(step, steps, ...)` runs `step(i) -> loss` for each step, behind a tqdm progress
  bar with the running loss in full runs (tqdm is optional: without it, or in `--quick`
  runs, it prints the running loss every `every` steps instead) and returns the losses.
- `update(model, opt, d_output, clip)` is the rest of a training step once the loss
  gradient is known: zero the gradients, backward, clip the global norm, step.
- `batches(rng, n, batch)` returns shuffled index blocks: one epoch over n examples.
- `figure(path, ...)` is a context manager that yields matplotlib axes and saves the PNG;
  `smooth(values, k)` is the running mean a learning curve is drawn with.

The scripts import this module as `_common` (Python puts the script's folder first on
sys.path), so they still run as `python examples/<name>.py` from anywhere.
"""
import argparse
import contextlib
import importlib
import time

import numpy as np

from fastrnn import optim

INSTALL_HINT = "pip install 'fastrnn[examples]'   (or: pip install matplotlib)"


def parser(doc, **options):
    """An ArgumentParser described by the module docstring's first paragraph, with the
    options every example shares, and one `--name` option for each keyword: its default
    (None: an int that --quick or the full run chooses), or (default, help text)."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short run (well under a minute)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plot", metavar="PNG", help="save the example's figure to this file "
                    "(needs matplotlib)")
    for name, value in options.items():
        default, help_text = value if isinstance(value, tuple) else (value, None)
        ap.add_argument("--" + name.replace("_", "-"), default=default, help=help_text,
                        type=int if default is None else type(default))
    return ap


def parse(ap, argv=None):
    args = ap.parse_args(argv)
    if args.plot:
        try:                                  # before training, not after it
            importlib.import_module("matplotlib")
        except ImportError:
            ap.error(f"--plot needs matplotlib, which is not installed: {INSTALL_HINT}")
    return args


def _tqdm(quick):
    if quick:
        return None
    try:
        from tqdm import tqdm
    except ImportError:                       # the progress bar is optional
        return None
    return tqdm


def train(step, steps, *, quick=False, desc="train", every=250, name="loss"):
    """Call `step(i)` (returns the loss, a float) for i in range(steps); show the running
    mean of the last 20 losses on a progress bar (full runs with tqdm) or print the mean
    of the last `every` ones every `every` steps. Returns the list of losses."""
    tqdm = _tqdm(quick)
    bar = tqdm(range(steps), desc=desc, disable=None) if tqdm else range(steps)
    history = []
    for i in bar:
        history.append(float(step(i)))
        if tqdm:
            bar.set_postfix({name: f"{np.mean(history[-20:]):.4f}"})
        elif (i + 1) % every == 0:
            print(f"{desc} step {i + 1}: {name} {np.mean(history[-every:]):.4f}", flush=True)
    return history


def batches(rng, n, batch):
    """Index arrays of one shuffled pass over n examples, `batch` at a time."""
    order = rng.permutation(n)
    return [order[i:i + batch] for i in range(0, n, batch)]


def update(model, opt, d_output, clip=None):
    """The rest of a training step once the loss and its gradient `d_output` are known:
    zero the gradients, `model.backward(d_output)`, clip the global gradient norm to
    `clip` (None: no clipping), step. Returns the norm before clipping."""
    opt.zero_grad()
    model.backward(d_output)
    norm = optim.clip_grad_norm(model.modules, clip) if clip else grad_norm(model.modules)
    opt.step()
    return norm


def grad_norm(modules):
    """The global gradient norm over the modules (what clip_grad_norm would clip)."""
    return float(np.sqrt(sum(np.sum(np.square(g, dtype=np.float64))
                             for m in modules for g in m.grads.values())))


class Timer:
    """`with Timer() as t: ...` then `t.seconds`."""

    def __enter__(self):
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self._t0


def smooth(values, k):
    """Running mean over k values (fewer at the start): (x, y) for a learning curve."""
    v = np.asarray(values, dtype=np.float64)
    k = max(1, min(k, len(v)))
    y = np.convolve(v, np.ones(k) / k, mode="valid")
    return np.arange(len(y)) + k, y


@contextlib.contextmanager
def figure(path, ncols=1, nrows=1, figsize=(6, 3.5), **kwargs):
    """Yield (fig, axes) of a new matplotlib figure and save it to `path` (Agg backend,
    no window) when the block ends."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(nrows, ncols, figsize=figsize, **kwargs)
    yield fig, axes
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"saved {path}")
