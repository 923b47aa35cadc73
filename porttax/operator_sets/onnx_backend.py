"""porttax as an `onnx.backend` backend, one per road, so ONNX's own conformance tests run against it.

Each backend takes an ONNX model the way a user's file is taken — written to a scratch folder and read by
porttax's ONNX source (checked, upgraded to a current opset, converted to a torch module, captured with
`torch.export`) — and then goes down its road: the torch road runs the captured program (what `--to
torch` writes), the Keras road converts that program to a Keras model (`--to keras`), the SavedModel road
writes and reloads that model as a SavedModel and calls its serving signature (`--to savedmodel`).

A model is converted at the sizes it is first run with (ONNX's node cases are fixed-size), and again for
other sizes. What the road refuses raises `porttax.errors.PorttaxError` from `run`; a caller that counts
(bench/onnx_conformance.py) tells refusals from wrong numbers.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from onnx.backend.base import Backend, BackendRep

from porttax.converters.onnx_to_torch.context import to_numpy, to_torch

ROADS = ("torch", "keras", "savedmodel")


class PorttaxRep(BackendRep):
    """A prepared model: converted on first `run` at the inputs' sizes, reused for later runs of those sizes."""

    def __init__(self, model: Any, road: str) -> None:
        if road not in ROADS:
            raise ValueError(f"road {road!r}: one of {', '.join(ROADS)}")
        self.model, self.road = model, road
        self._runs: dict[tuple, Any] = {}
        self.folded: dict[tuple, tuple[int, ...]] = {}  # per input sizes: the inputs taken as constants
        self._scratch = Path(tempfile.mkdtemp(prefix="porttax-onnx-backend-"))

    def __del__(self) -> None:
        shutil.rmtree(getattr(self, "_scratch", ""), ignore_errors=True)

    def run(self, inputs: Any, **kwargs: Any) -> tuple[Any, ...]:
        xs = [np.asarray(x) for x in (inputs if isinstance(inputs, (list, tuple)) else [inputs])]
        shapes = tuple((x.shape, str(x.dtype)) for x in xs)
        key = self._key(shapes, xs)
        if key not in self._runs:
            runner = self._convert(xs, len(self._runs))
            key = self._key(shapes, xs)  # with the values of the inputs the conversion folded, if any
            self._runs[key] = runner
        folded = self.folded.get(shapes, ())
        return tuple(self._runs[key]([x for i, x in enumerate(xs) if i not in folded]))

    def _key(self, shapes: tuple, xs: Sequence[np.ndarray]) -> tuple:
        return (*shapes, *(xs[i].tobytes() for i in self.folded.get(shapes, ())))

    def _convert(self, xs: Sequence[np.ndarray], n: int) -> Any:
        """The road's runner for inputs like `xs`. ONNX lets axes, shapes, pads and sizes arrive as graph
        inputs; porttax, like a user's exporter, needs those known when it converts (the converter says
        which: `NeedsConstant` names the input). Such a graph input is folded in as an initializer at the
        value given (`folded` records which), and a run with other values converts again."""
        from porttax.converters.onnx_to_torch.context import NeedsConstant

        shapes = tuple((x.shape, str(x.dtype)) for x in xs)
        names = _graph_input_names(self.model)
        folded = list(self.folded.get(shapes, ()))
        while True:
            model = _with_initializers(self.model, {i: xs[i] for i in folded}) if folded else self.model
            try:
                runner = self._convert_model(model, [x for i, x in enumerate(xs) if i not in folded], n)
            except NeedsConstant as exc:
                pos = names.index(exc.input_name) if exc.input_name in names else None
                if pos is None or pos in folded:
                    raise
                folded.append(pos)
                continue
            if folded:
                self.folded[shapes] = tuple(sorted(folded))
            return runner

    def _convert_model(self, model: Any, xs: Sequence[np.ndarray], n: int) -> Any:
        from porttax.sources.onnx_source import load_onnx_source

        path = self._scratch / f"model_{n}.onnx"
        path.write_bytes(model.SerializeToString())
        src, _ = load_onnx_source(path, input_shapes=[list(x.shape) for x in xs])
        if self.road == "torch":
            return _torch_runner(src.program)
        keras_model = _keras_model(src)
        if self.road == "keras":
            return _keras_runner(keras_model)
        return _savedmodel_runner(keras_model, self._scratch / f"savedmodel_{n}")


def _graph_input_names(model: Any) -> list[str]:
    inits = {t.name for t in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in inits]


def _with_initializers(model: Any, values: dict[int, np.ndarray]) -> Any:
    """A copy of `model` whose graph inputs at these positions are initializers holding these values."""
    import onnx
    from onnx import numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    real = [i for i in out.graph.input if i.name in set(_graph_input_names(model))]
    for pos, value in values.items():
        out.graph.initializer.append(numpy_helper.from_array(value, real[pos].name))
    keep = [i for n, i in enumerate(real) if n not in values]
    del out.graph.input[:]
    out.graph.input.extend(keep)
    return out


class _Road(Backend):
    road = "torch"

    @classmethod
    def prepare(cls, model: Any, device: str = "CPU", **kwargs: Any) -> PorttaxRep:
        if not cls.supports_device(device):
            raise ValueError(f"porttax's {cls.road} backend runs on CPU, not {device}")
        return PorttaxRep(model, cls.road)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return str(device).upper().startswith("CPU")


class TorchBackend(_Road):
    """ONNX → torch module → `torch.export` program: what `porttax convert m.onnx --to torch` writes."""

    road = "torch"


class KerasBackend(_Road):
    """ONNX → torch → Keras model: what `porttax convert m.onnx --to keras` writes."""

    road = "keras"


class SavedModelBackend(_Road):
    """ONNX → torch → Keras → SavedModel, reloaded with TensorFlow: what `--to savedmodel` writes."""

    road = "savedmodel"


BACKENDS: dict[str, type[_Road]] = {"torch": TorchBackend, "keras": KerasBackend, "savedmodel": SavedModelBackend}


def _numpy(values: Any) -> list[np.ndarray]:
    if isinstance(values, dict):
        values = list(values.values())
    if not isinstance(values, (list, tuple)):
        values = [values]
    out = []
    for v in values:
        if isinstance(v, (list, tuple)):
            out.extend(_numpy(v))
        elif hasattr(v, "detach"):
            out.append(to_numpy(v))
        else:
            out.append(np.asarray(v))
    return out


def _torch_runner(program: Any) -> Any:
    from porttax._frameworks import import_torch

    torch = import_torch()
    module = program.module()

    def run(xs: Sequence[np.ndarray]) -> list[np.ndarray]:
        with torch.no_grad():
            return _numpy(module(*(to_torch(x) for x in xs)))

    return run


def _keras_model(src: Any) -> Any:
    from porttax.converters.torch_to_keras.driver import convert_exported_program

    return convert_exported_program(src.program, name=src.name).model


def _keras_runner(model: Any) -> Any:
    def run(xs: Sequence[np.ndarray]) -> list[np.ndarray]:
        return _numpy(model(list(xs) if len(xs) != 1 else xs[0], training=False))

    return run


def _savedmodel_runner(model: Any, path: Path) -> Any:
    from porttax._frameworks import import_tf
    from porttax.targets.savedmodel import write_savedmodel

    tf = import_tf()
    write_savedmodel(model, path)
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    names = [t.name for t in model.inputs]

    def run(xs: Sequence[np.ndarray]) -> list[np.ndarray]:
        out = serve(**{n: tf.constant(x) for n, x in zip(names, xs)})
        return [out[k].numpy() for k in sorted(out, key=_output_index)]

    return run


def _output_index(name: str) -> int:
    """Signature outputs are named `output_0`, `output_1`, …: their order, not the names' sort order."""
    tail = name.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else 0
