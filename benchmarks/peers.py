"""Backend adapters: fastrnn, the NumPy reference, PyTorch CPU and ONNX Runtime.

Each backend binds a `cases.Problem` to callables, one per mode it supports:
  "inference" -> out (T, B, H)
  "training"  -> (out, grads) with grads = {dx, dw_ih, dw_hh, db_ih, db_hh} (gradient of sum(out))
The callables are what gets timed, so conversion work stays outside them where it can.
An absent backend has `available = False` and `reason` says why.
"""
import importlib
import importlib.util
import os
import re
import sys
from pathlib import Path


GRAD_NAMES = ("dx", "dw_ih", "dw_hh", "db_ih", "db_hh")


class Backend:
    name = ""
    modes = ("inference", "training")
    available = True
    reason = None

    def info(self):
        """What the report says about this backend (version, how its threads are set)."""
        if not self.available:
            return {"available": False, "reason": self.reason}
        return {"available": True, **self._info()}

    def _absent(self, err):
        self.available = False
        self.reason = f"{type(err).__name__}: {err}"


class Functional(Backend):
    """fastrnn.functional or fastrnn.reference: the same *_forward / *_backward API."""

    def __init__(self, name, module_name):
        self.name = name
        try:
            self.fn = importlib.import_module(module_name)
            for cell in ("lstm", "gru", "rnn"):
                getattr(self.fn, f"{cell}_forward"), getattr(self.fn, f"{cell}_backward")
        except Exception as err:   # a half-built extension may fail in any way
            self._absent(err)
            return
        self.package = importlib.import_module(self.fn.__package__)
        self.set_num_threads = getattr(self.package, "set_num_threads", None)

    def _info(self):
        if self.name == "reference":
            threads = "NumPy's BLAS via threadpoolctl"
        elif self.set_num_threads is not None:
            threads = "fastrnn.set_num_threads"
        else:
            threads = "OpenMP via threadpoolctl (fastrnn.set_num_threads absent)"
        info = {"version": getattr(self.package, "__version__", None), "module": self.fn.__name__,
                "threads_set_by": threads, "path": str(Path(self.package.__file__).parent)}
        if self.name != "reference" and hasattr(self.package, "config"):
            info["isa"] = self.package.config()["isa"]
        return info

    def set_threads(self, n):
        if self.name != "reference" and self.set_num_threads is not None:
            self.set_num_threads(n)

    def bind(self, p, threads):
        forward = getattr(self.fn, f"{p.cell}_forward")
        backward = getattr(self.fn, f"{p.cell}_backward")
        args = (p.x, p.w_ih, p.w_hh, p.b_ih, p.b_hh)

        def inference():
            return forward(*args, training=False)[0]

        def training():
            res = forward(*args, training=True)
            grads = backward(res[-1], d_out=p.d_out)
            return res[0], {k: getattr(grads, k) for k in GRAD_NAMES}

        return {"inference": inference, "training": training}


class Torch(Backend):
    """torch.nn.LSTM/GRU/RNN on the CPU; training computes dx too (fastrnn always does)."""
    name = "torch"

    def __init__(self):
        try:
            import torch
        except Exception as err:
            self._absent(err)
            return
        self.torch = torch

    def _info(self):
        return {"version": self.torch.__version__, "threads_set_by": "torch.set_num_threads"}

    def set_threads(self, n):
        self.torch.set_num_threads(n)

    def bind(self, p, threads):
        torch = self.torch
        s = p.shape
        module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU,
                  "rnn": lambda i, h: torch.nn.RNN(i, h, nonlinearity="tanh")}[p.cell](s.I, s.H)
        params = {"dw_ih": module.weight_ih_l0, "dw_hh": module.weight_hh_l0,
                  "db_ih": module.bias_ih_l0, "db_hh": module.bias_hh_l0}
        with torch.no_grad():
            for key, w in zip(params, (p.w_ih, p.w_hh, p.b_ih, p.b_hh)):
                params[key].copy_(torch.from_numpy(w))
        x = torch.from_numpy(p.x)
        x_grad = x.clone().requires_grad_()

        def inference():
            with torch.no_grad():
                return module(x)[0].numpy()

        def training():
            module.zero_grad(set_to_none=True)
            x_grad.grad = None
            out = module(x_grad)[0]
            out.sum().backward()
            grads = {k: w.grad.numpy() for k, w in params.items()}
            return out.detach().numpy(), {"dx": x_grad.grad.numpy(), **grads}

        return {"inference": inference, "training": training}


class OnnxRuntime(Backend):
    """The layer exported by `fastrnn.onnx.export` (one ONNX LSTM/GRU/RNN node), run by an
    ONNX Runtime CPU session: the benchmark exercises the exporter as well."""
    name = "onnxruntime"
    modes = ("inference",)
    LAYERS = {"lstm": "LSTM", "gru": "GRU", "rnn": "SimpleRNN"}

    def __init__(self):
        try:
            import onnx
            import onnxruntime
            import fastrnn
            import fastrnn.onnx
        except Exception as err:
            self._absent(err)
            return
        self.onnx, self.ort, self.fastrnn = onnx, onnxruntime, fastrnn

    def _info(self):
        return {"version": self.ort.__version__, "onnx": self.onnx.__version__,
                "exported_by": "fastrnn.onnx.export",
                "threads_set_by": "SessionOptions.intra_op_num_threads"}

    def set_threads(self, n):
        """Threads are a session option: see bind()."""

    def _model(self, p):
        s = p.shape
        layer = getattr(self.fastrnn, self.LAYERS[p.cell])(s.I, s.H).eval()
        layer.load_state_dict({"weight_ih_l0": p.w_ih, "weight_hh_l0": p.w_hh,
                               "bias_ih_l0": p.b_ih, "bias_hh_l0": p.b_hh})
        return self.fastrnn.onnx.export(layer, dynamic_axes={"T": s.T, "B": s.B})

    def bind(self, p, threads):
        opts = self.ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        session = self.ort.InferenceSession(self._model(p).SerializeToString(), opts,
                                            providers=["CPUExecutionProvider"])
        feed = {"x": p.x}

        def inference():
            return session.run(["y"], feed)[0]

        return {"inference": inference}


class Engine(Backend):
    """fastrnn's inference engine (`layer.inference()`, docs/engine.md): the problem's
    weights in a layer, packed once when bound; calls time `eng(x)` alone."""
    name = "engine"
    modes = ("inference",)

    def __init__(self):
        try:
            import fastrnn
            fastrnn.LSTM.inference
        except Exception as err:
            self._absent(err)
            return
        self.fastrnn = fastrnn

    def _info(self):
        return {"version": self.fastrnn.__version__, "threads_set_by": "fastrnn.set_num_threads"}

    def set_threads(self, n):
        self.fastrnn.set_num_threads(n)

    def bind(self, p, threads):
        f, s = self.fastrnn, p.shape
        layer = {"lstm": f.LSTM, "gru": f.GRU, "rnn": f.SimpleRNN}[p.cell](s.I, s.H)
        layer.load_state_dict({"weight_ih_l0": p.w_ih, "weight_hh_l0": p.w_hh,
                               "bias_ih_l0": p.b_ih, "bias_hh_l0": p.b_hh})
        eng = layer.inference()

        def inference():
            return eng(p.x)[0]

        return {"inference": inference}


class Build(Functional):
    """fastrnn from another build, to time builds side by side: the `fastrnn` package in
    directory `path` (say a virtual environment's site-packages), imported under a name of
    its own beside the fastrnn on sys.path, with FASTRNN_ISA=isa (None: unset) while it
    picks its kernel module."""

    def __init__(self, name, path, isa=None):
        package = "fastrnn_build_" + re.sub(r"\W", "_", name)
        try:
            _import_package(package, Path(path) / "fastrnn", isa)
        except Exception as err:
            self.name = name
            self._absent(err)
            return
        super().__init__(name, f"{package}.functional")


def _import_package(name, directory, isa):
    init = directory / "__init__.py"
    if not init.is_file():
        raise FileNotFoundError(f"no fastrnn package in {directory.parent}")
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(directory)])
    module = importlib.util.module_from_spec(spec)
    saved = os.environ.pop("FASTRNN_ISA", None)
    if isa is not None:
        os.environ["FASTRNN_ISA"] = isa
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    finally:
        os.environ.pop("FASTRNN_ISA", None)
        if saved is not None:
            os.environ["FASTRNN_ISA"] = saved


# In table order: the oracle first, fastrnn next, then the peers.
BACKENDS = {
    "reference": lambda: Functional("reference", "fastrnn.reference"),
    "fastrnn": lambda: Functional("fastrnn", "fastrnn.functional"),
    "engine": Engine,
    "torch": Torch,
    "onnxruntime": OnnxRuntime,
}
