"""What is benchmarked: the DESIGN §5 shape grid, the cells, the FLOP formula and the inputs."""
from dataclasses import dataclass

import numpy as np

CELLS = ("lstm", "gru", "rnn")          # rnn = SimpleRNN with tanh
GATES = {"lstm": 4, "gru": 3, "rnn": 1}
MODES = ("inference", "training")       # forward(training=False) / forward + backward of sum(out)


@dataclass(frozen=True)
class Shape:
    name: str
    T: int
    B: int
    I: int
    H: int

    def dims(self):
        return f"{self.T},{self.B},{self.I},{self.H}"


GRID = (
    Shape("latency_b1", 100, 1, 128, 128),
    Shape("mid_b32", 100, 32, 256, 256),
    Shape("big_b64", 50, 64, 512, 512),
    Shape("long_t1000", 1000, 16, 128, 128),
    Shape("small_h64", 200, 64, 32, 64),
)
QUICK_SHAPES = ("latency_b1", "mid_b32")


def parse_shape(text):
    """'T,B,I,H' or 'name=T,B,I,H' -> Shape (for --shape and --memory)."""
    name, _, dims = text.rpartition("=")
    try:
        T, B, I, H = (int(v) for v in dims.split(","))
    except ValueError:
        raise ValueError(f"a shape is T,B,I,H or name=T,B,I,H (four integers), got {text!r}")
    if min(T, B, I, H) < 1:
        raise ValueError(f"shape sizes must be positive, got {text!r}")
    return Shape(name or f"T{T}_B{B}_I{I}_H{H}", T, B, I, H)


def flops(cell, shape, mode):
    """DESIGN §5: GEMM FLOPs of one forward = 2·T·B·(I+H)·G·H; training (fwd + bwd) = 3×."""
    fwd = 2 * shape.T * shape.B * (shape.I + shape.H) * GATES[cell] * shape.H
    return fwd if mode == "inference" else 3 * fwd


@dataclass
class Problem:
    """Float32 inputs of one layer-direction, weights in PyTorch layout and init range."""
    cell: str
    shape: Shape
    x: np.ndarray        # (T, B, I)
    w_ih: np.ndarray     # (G·H, I)
    w_hh: np.ndarray     # (G·H, H)
    b_ih: np.ndarray     # (G·H,)
    b_hh: np.ndarray     # (G·H,)
    d_out: np.ndarray    # (T, B, H) ones: the gradient of sum(out)


def make_problem(cell, shape, seed=0, with_d_out=True):
    rng = np.random.default_rng(seed)
    GH, k = GATES[cell] * shape.H, 1.0 / np.sqrt(shape.H)

    def uniform(*size):
        return rng.uniform(-k, k, size).astype(np.float32)

    x = rng.standard_normal((shape.T, shape.B, shape.I), dtype=np.float32)
    d_out = np.ones((shape.T, shape.B, shape.H), np.float32) if with_d_out else None
    return Problem(cell, shape, x, uniform(GH, shape.I), uniform(GH, shape.H),
                   uniform(GH), uniform(GH), d_out)
