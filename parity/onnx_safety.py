"""ONNX external data must stay inside the model's folder.

An ONNX file names its external tensors by relative path; a hostile file can name `../../etc/passwd`
or an absolute path, and a loader that follows it reads (and, through the model's outputs, leaks) any
file the user can read. Checked on the protobuf before onnxruntime or onnx resolves a single path.
"""

from __future__ import annotations

from pathlib import Path

from porttax.errors import InputError


def check_external_data(path: str | Path) -> None:
    """Raise InputError when any tensor's external-data location escapes the model's directory."""
    import onnx

    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and friends
        raise InputError(f"not a readable ONNX model: {exc}", path=str(path)) from exc
    root = path.parent.resolve()
    tensors = list(model.graph.initializer)
    for node in model.graph.node:
        tensors.extend(a.t for a in node.attribute if a.HasField("t"))
    for tensor in tensors:
        for entry in tensor.external_data:
            if entry.key != "location":
                continue
            target = (root / entry.value).resolve()
            if Path(entry.value).is_absolute() or not target.is_relative_to(root):
                raise InputError(f"tensor {tensor.name!r} points its external data outside the model folder "
                                 f"({entry.value!r})", path=str(path),
                                 hint="keep external-data files next to the .onnx file and name them relatively")
