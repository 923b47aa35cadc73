"""A TF.js graph model folder read safely, and run in one long-lived Node.js process.

The folder's `model.json` is read here first (plain JSON; every weight path must name a file inside
the folder), so a bad folder is an `InputError` naming it before Node starts. Then one Node process
per model loads it (`run_graph_model.mjs`) and serves runs over stdin/stdout in length-prefixed frames:
starting Node and parsing the weights costs far more than a run, so keeping the process alive is what
lets porttax time the model itself rather than Node's start-up. Numbers cross the pipe as raw
little-endian buffers, bit for bit.

TF.js computes in float32, int32 and bool only: a graph model's int64 inputs (token ids) take int32
tensors, so they are sent as int32 after checking that every value fits, and outputs come back in the
dtype the signature declares.
"""

from __future__ import annotations

import json
import struct
import subprocess
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from porttax.errors import InputError, brief
from porttax.tfjs.env import NodeRuntime

MODEL_JSON = "model.json"
MAX_MODEL_JSON = 512 * 1024 * 1024  # a graph's topology, not its weights: far smaller than this
MAX_HEADER = 64 * 1024 * 1024  # a reply's JSON header lists tensors; anything longer is not a reply

# TensorFlow dtype names in model.json signatures → NumPy dtype names
TF_DTYPES = {"DT_FLOAT": "float32", "DT_INT32": "int32", "DT_INT64": "int64", "DT_BOOL": "bool",
             "DT_DOUBLE": "float64", "DT_HALF": "float16", "DT_UINT8": "uint8", "DT_INT8": "int8",
             "DT_INT16": "int16"}
# what each NumPy dtype crosses the pipe as (TF.js has float32, int32 and bool tensors)
_WIRE = {"float32": "float32", "float64": "float32", "float16": "float32", "int32": "int32", "int64": "int32",
         "int16": "int32", "int8": "int32", "uint8": "int32", "bool": "bool"}
_FROM_WIRE = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}


@dataclass
class TensorInfo:
    key: str  # the signature key (`input_ids`, `output_0`)
    dtype: str  # NumPy dtype name the signature declares
    shape: tuple[int | None, ...] | None  # None where the signature gives no shape


@dataclass
class GraphModelSignature:
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    converted_by: str | None
    weight_files: list[Path]


def read_graph_model(folder: str | Path) -> GraphModelSignature:
    """The signature of a TF.js graph model folder, with its weight files checked to be inside it."""
    folder = Path(folder)
    file = folder / MODEL_JSON
    if not file.is_file():
        raise InputError(f"not a TensorFlow.js model folder (no {MODEL_JSON})", path=str(folder))
    if file.stat().st_size > MAX_MODEL_JSON:
        raise InputError(f"{MODEL_JSON} is {file.stat().st_size} bytes, too large to be a model topology",
                         path=str(file))
    try:
        model = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{MODEL_JSON} is not valid JSON: {brief(exc)}", path=str(file)) from None
    if not isinstance(model, dict) or "modelTopology" not in model:
        raise InputError(f"{MODEL_JSON} holds no model topology", path=str(file))
    try:
        return _parse(model, folder, file)
    except (AttributeError, TypeError, ValueError, KeyError) as exc:  # valid JSON, wrong shape
        raise InputError(f"{MODEL_JSON} is malformed ({type(exc).__name__}: {brief(exc)})", path=str(file),
                         hint="re-convert the model with tensorflowjs_converter") from None


def _parse(model: dict[str, Any], folder: Path, file: Path) -> GraphModelSignature:
    if model.get("format") != "graph-model":
        raise InputError(f"a TF.js {model.get('format') or 'model of unknown format'}, not a graph model",
                         path=str(file), hint="porttax runs TF.js graph models (tensorflowjs_converter "
                         "--output_format=tfjs_graph_model)")
    signature = model.get("signature") or {}
    if not signature.get("inputs") or not signature.get("outputs"):
        raise InputError("the graph model has no signature (inputs and outputs by name)", path=str(file),
                         hint="convert from a SavedModel with --signature_name=serving_default")
    root = folder.resolve()
    files = []
    for group in model.get("weightsManifest") or []:
        for name in group.get("paths") or []:
            target = (folder / str(name)).resolve()
            if Path(str(name)).is_absolute() or root not in target.parents:
                raise InputError(f"weight file {name!r} lies outside the model folder", path=str(file),
                                 hint="a graph model's weight shards must sit inside its folder")
            if not target.is_file():
                raise InputError(f"weight file {name!r} is missing", path=str(folder))
            files.append(target)
    return GraphModelSignature(_infos(signature["inputs"], file), _infos(signature["outputs"], file),
                               model.get("convertedBy"), files)


def _infos(entries: dict[str, Any], file: Path) -> list[TensorInfo]:
    infos = []
    for key, entry in entries.items():
        dtype = TF_DTYPES.get(str(entry.get("dtype")))
        if dtype is None:
            raise InputError(f"tensor {key!r} has dtype {entry.get('dtype')}, which porttax does not feed or read",
                             path=str(file))
        shape_proto = entry.get("tensorShape") or {}
        shape = None
        if not shape_proto.get("unknownRank"):
            shape = tuple(None if int(d.get("size", -1)) < 0 else int(d["size"]) for d in shape_proto.get("dim", []))
        infos.append(TensorInfo(key, dtype, shape))
    return infos


def to_wire(name: str, array: np.ndarray) -> tuple[dict[str, Any], bytes]:
    """A frame entry and its bytes; int64 values are checked to fit TF.js's int32."""
    wire = _WIRE.get(array.dtype.name)
    if wire is None:
        raise InputError(f"input {name!r} has dtype {array.dtype.name}, which TF.js cannot take")
    if array.dtype.kind in "iu" and array.size and (array.min() < -2**31 or array.max() >= 2**31):
        raise InputError(f"input {name!r} holds values outside int32, which TF.js computes integers in",
                         hint="TF.js has no int64 tensors; token ids and indices must stay below 2**31")
    dtype = np.dtype(np.uint8) if wire == "bool" else np.dtype(_FROM_WIRE[wire]).newbyteorder("<")
    raw = np.ascontiguousarray(array, dtype=dtype).tobytes()
    return {"name": name, "dtype": wire, "shape": [int(d) for d in array.shape], "bytes": len(raw)}, raw


def from_wire(entry: dict[str, Any], raw: bytes) -> np.ndarray:
    kind = _FROM_WIRE.get(entry["dtype"])
    if kind is None:
        raise InputError(f"TF.js returned output {entry['name']!r} as {entry['dtype']}, which porttax cannot read")
    dtype = np.dtype(kind).newbyteorder("<") if entry["dtype"] != "bool" else np.dtype(np.uint8)
    array = np.frombuffer(raw, dtype=dtype).reshape(entry["shape"])
    return array.astype(np.bool_) if entry["dtype"] == "bool" else array.astype(kind)


class GraphModelProcess:
    """One Node.js process holding one loaded graph model; `run` sends inputs and reads outputs back."""

    def __init__(self, folder: Path, runtime: NodeRuntime) -> None:
        self.folder = folder
        self._stderr = tempfile.TemporaryFile()
        try:
            self._proc = subprocess.Popen([runtime.node, str(runtime.script), str(runtime.modules), str(folder)],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr)
        except OSError as exc:
            raise InputError(f"cannot start Node.js: {exc.strerror or exc}", path=runtime.node) from None
        self._finalizer = weakref.finalize(self, _stop, self._proc, self._stderr)
        hello = self._read(at_start=True)[0]
        if not hello.get("ok"):
            self.close()
            raise InputError(f"TF.js cannot load the model: {hello.get('error')}", path=str(folder))
        self.hello = hello

    def run(self, tensors: Sequence[tuple[str, np.ndarray]], outputs: Sequence[str]) -> list[np.ndarray]:
        entries, payload = [], []
        for name, array in tensors:
            entry, raw = to_wire(name, np.asarray(array))
            entries.append(entry)
            payload.append(raw)
        self._write({"tensors": entries, "outputs": list(outputs)}, payload)
        header, body = self._read()
        if not header.get("ok"):
            raise InputError(f"TF.js failed to run the model: {header.get('error')}", path=str(self.folder))
        self.last_ms = header.get("ms")
        arrays, offset = [], 0
        for entry in header["tensors"]:
            arrays.append(from_wire(entry, body[offset: offset + entry["bytes"]]))
            offset += entry["bytes"]
        return arrays

    def close(self) -> None:
        self._finalizer()

    def _write(self, header: dict[str, Any], payload: Sequence[bytes]) -> None:
        data = json.dumps(header).encode()
        try:
            assert self._proc.stdin is not None
            self._proc.stdin.write(struct.pack("<I", len(data)) + data)
            for raw in payload:
                self._proc.stdin.write(raw)
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._died() from None

    def _read(self, at_start: bool = False) -> tuple[dict[str, Any], bytes]:
        assert self._proc.stdout is not None
        head = self._proc.stdout.read(4)
        if len(head) < 4:
            raise self._died(at_start)
        length = struct.unpack("<I", head)[0]
        data = self._proc.stdout.read(length) if length <= MAX_HEADER else b""
        try:
            header = json.loads(data)
            size = sum(int(t.get("bytes", 0)) for t in header.get("tensors", []))
        except (ValueError, TypeError, AttributeError):  # not porttax's runner talking (a wrapper printing?)
            self.close()
            raise InputError(f"the Node.js TF.js runner sent a reply porttax cannot read: {head + data[:60]!r}",
                             path=str(self.folder), hint="check that the `node` porttax runs is Node.js itself "
                             "and prints nothing of its own on stdout") from None
        body = self._proc.stdout.read(size) if size else b""
        if len(body) < size:
            raise self._died(at_start)
        return header, body

    def _died(self, at_start: bool = False) -> InputError:
        code = self._proc.poll()
        if code is None:
            try:
                code = self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                code = None
        self._stderr.seek(0)
        lines = [ln for ln in self._stderr.read().decode(errors="replace").splitlines() if ln.strip()]
        how = "did not start" if at_start else "stopped"
        reason = f"exit {code}" if code is not None and code >= 0 else f"signal {-code}" if code else "no reply"
        tail = lines[-1][:300] if lines else reason
        self.close()
        return InputError(f"the Node.js TF.js runner {how} ({reason}): {tail}", path=str(self.folder),
                          hint="check `node --version` (18+) and delete the cached TF.js runtime folder "
                          "to reinstall it")


def _stop(proc: subprocess.Popen, stderr: Any) -> None:
    """End the Node process: closing stdin lets it finish its loop; kill it if it does not."""
    try:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        proc.kill()
        proc.wait()
    finally:
        if proc.stdout is not None:
            proc.stdout.close()
        stderr.close()

