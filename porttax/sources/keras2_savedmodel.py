"""SavedModels written by TF-Keras 2 (`model.save(dir)` before Keras 3): rebuild the model in Keras 3.

TF-Keras stored the model's config beside the graph in `keras_metadata.pb` (a `SavedMetadata`
protobuf whose root node carries the model config as JSON). Reading it needs no tf_keras: the
message is three fields deep, so it is decoded here by hand, as data, with bounds on every length.
The config is Keras 2 JSON, which Keras 3's legacy loader (the one it uses for `.h5` files) rebuilds
in safe mode; the weights come from the SavedModel's variables by name (`dense/kernel:0` is Keras 3's
`dense/kernel`), every one matched and shape-checked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from porttax.errors import InputError, brief

METADATA = "keras_metadata.pb"
_MAX_METADATA = 512 * 1024**2
_HINT = "load the model with tf_keras and save it as .h5 (model.save('m.h5')), then convert that"


def has_keras2_metadata(path: Path) -> bool:
    return (path / METADATA).is_file()


def root_config(path: Path) -> dict[str, Any]:
    """The model config TF-Keras stored for the SavedModel's root object ({"class_name", "config"})."""
    meta = path / METADATA
    size = meta.stat().st_size
    if size > _MAX_METADATA:
        raise InputError(f"{METADATA} is {size} bytes, more than a model config takes", path=str(path), hint=_HINT)
    data = meta.read_bytes()
    try:
        for field, node in _fields(data, 0, len(data)):
            if field != 1 or not isinstance(node, tuple):
                continue
            values = {f: v for f, v in _fields(data, *node) if isinstance(v, tuple)}
            if 3 in values and data[slice(*values[3])] == b"root" and 5 in values:
                meta_json = json.loads(data[slice(*values[5])])
                if not isinstance(meta_json, dict) or "config" not in meta_json:
                    break
                return _plain({"class_name": meta_json.get("class_name", "Functional"), "config": meta_json["config"]})
    except (ValueError, RecursionError) as exc:
        raise InputError(f"{METADATA} is not a readable TF-Keras metadata file ({brief(exc)})", path=str(path),
                         hint=_HINT) from None
    raise InputError(f"{METADATA} holds no model config for the root object (a subclassed TF-Keras model "
                     "stores none)", path=str(path), hint=_HINT)


def _candidates(path: str) -> Iterator[str]:
    """TF-Keras names a variable by its layer alone (`dense/kernel:0`), Keras 3 by the models around it
    too (`block/dense/kernel`), and DepthwiseConv2D's kernel changed name; try the Keras 3 path, then
    without its outer scopes, each also with the old kernel name."""
    parts = path.split("/")
    for start in range(len(parts) - 1):
        name = "/".join(parts[start:])
        yield name
        if parts[-1] == "kernel" and len(parts) - start >= 2:
            yield "/".join(parts[start:-1] + ["depthwise_kernel"])


def _plain(node: Any) -> Any:
    """TF-Keras' SavedModel JSON encodes tuples and TensorShapes as {"class_name": "__tuple__" /
    "TensorShape", "items": [...]}; the `.h5` config Keras 3 reads has plain lists there."""
    if isinstance(node, dict):
        if node.get("class_name") in ("__tuple__", "TensorShape") and set(node) == {"class_name", "items"}:
            return [_plain(v) for v in node["items"]] if node["items"] is not None else None
        return {k: _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


_DROPPED = {  # Keras 2 arguments Keras 3 no longer takes, with the value that makes them no-ops
    "DepthwiseConv2D": {"groups": 1},
    "LSTM": {"time_major": False}, "GRU": {"time_major": False}, "SimpleRNN": {"time_major": False},
}
_WRAPPED = ("layer", "backward_layer", "cell")  # wrapper arguments that hold a whole layer config


def keras3_config(node: Any, wrapped: bool = False) -> Any:
    """Translate the Keras 2 config differences Keras 3's legacy loader does not absorb.

    Arguments Keras 3 dropped are removed when they hold the value that made them no-ops (anything
    else is refused: the model would compute something else); layers inside wrappers (Bidirectional,
    TimeDistributed, RNN cells) get the module Keras 3 looks them up by; and a Sequential called
    inside a functional model had a node of its own in Keras 2, so calls to it count one node less.
    """
    if isinstance(node, list):
        return [keras3_config(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: keras3_config(v, wrapped=k in _WRAPPED) for k, v in node.items()}
    cls, cfg = out.get("class_name"), out.get("config")
    if isinstance(cls, str) and isinstance(cfg, dict):
        for arg, neutral in _DROPPED.get(cls, {}).items():
            if arg in cfg and cfg.pop(arg) != neutral:
                raise ValueError(f"{cls} {cfg.get('name', '')!r} uses {arg}, which Keras 3 no longer has")
        if wrapped and "module" not in out:
            out["module"], out["registered_name"] = "keras.layers", None
        if isinstance(cfg.get("layers"), list):
            _renumber_sequential_calls(cfg["layers"])
    return out


def _renumber_sequential_calls(layers: list[Any]) -> None:
    sequential = {l["config"].get("name") for l in layers
                  if isinstance(l, dict) and l.get("class_name") == "Sequential" and isinstance(l.get("config"), dict)}
    for layer in layers:
        for node in (layer.get("inbound_nodes") or []) if isinstance(layer, dict) else []:
            for ref in node if isinstance(node, list) else []:
                if isinstance(ref, list) and len(ref) >= 2 and ref[0] in sequential and isinstance(ref[1], int) \
                        and ref[1] > 0:
                    ref[1] -= 1


def _fields(data: bytes, start: int, end: int) -> Iterator[tuple[int, int | tuple[int, int]]]:
    """Protobuf wire fields in data[start:end]: (field number, varint value or (begin, end) span)."""
    pos = start
    while pos < end:
        key, pos = _varint(data, pos, end)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos, end)
            yield field, value
        elif wire == 2:
            length, pos = _varint(data, pos, end)
            if pos + length > end:
                raise ValueError("a length-delimited field runs past its message")
            yield field, (pos, pos + length)
            pos += length
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
            if pos > end:
                raise ValueError("a fixed-width field runs past its message")
        else:
            raise ValueError(f"unsupported wire type {wire}")


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= end or shift > 63:
            raise ValueError("a truncated or overlong varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def rebuild(path: Path) -> Any:
    """A Keras 3 model from a TF-Keras 2 SavedModel's config, with its weights loaded."""
    from porttax._frameworks import import_keras, import_tf
    from porttax.sources.savedmodel_checks import check_savedmodel_ops

    keras = import_keras()
    config = root_config(path)
    try:
        from keras.src.legacy.saving import saving_utils

        model = saving_utils.model_from_config(keras3_config(config))
    except Exception as exc:  # Keras raises TypeError/ValueError for classes or arguments it lacks
        raise InputError(f"Keras 3 cannot rebuild this TF-Keras 2 model ({type(exc).__name__}: {brief(exc)})",
                         path=str(path), hint=_HINT) from exc
    if not isinstance(model, keras.Model):
        raise InputError("the TF-Keras metadata does not describe a model", path=str(path), hint=_HINT)
    check_savedmodel_ops(path)  # restoring runs the SavedModel's functions; refuse file I/O first
    tf = import_tf()
    loaded = tf.saved_model.load(str(path))
    stored: dict[str, Any] = {}
    for v in getattr(loaded, "variables", []):
        stored.setdefault(v.name.rsplit(":", 1)[0], v)
    missing, wrong, used = [], [], set()
    for w in model.weights:
        key = next((k for k in _candidates(w.path) if k in stored and k not in used), None)
        value = stored.get(key) if key else None
        used.add(key)
        if value is None:
            missing.append(w.path)
        elif tuple(value.shape) != tuple(w.shape):
            wrong.append(f"{w.path} (SavedModel {tuple(value.shape)}, model {tuple(w.shape)})")
        else:
            w.assign(value.numpy())
    if missing or wrong:
        problems = ([f"missing {', '.join(missing[:8])}"] if missing else []) + (
            [f"shape mismatches {', '.join(wrong[:8])}"] if wrong else [])
        raise InputError(f"the SavedModel's variables do not fit its TF-Keras config: {'; '.join(problems)}",
                         path=str(path), hint=_HINT)
    return model
