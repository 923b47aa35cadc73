"""Reading Keras sources safely: `.keras` archives, legacy `.h5` files, SavedModels that carry a Keras model.

Safe by default: Keras files are loaded with `safe_mode=True`, so a Lambda layer or other code stored
in the file is refused unless the caller passes `trust_code=True` (loading it runs that code). A
SavedModel is read only when it carries the Keras model's configuration (porttax writes it into
`assets.extra/porttax/keras_model.json`); a bare graph has no layers to map, and the error says so.
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from porttax._frameworks import import_keras
from porttax.errors import InputError, UntrustedInputError, brief
from porttax.sources import LoadOptions, SourceFormat, register_format
from porttax.types import TensorSpec

KERAS_CONFIG = Path("assets.extra") / "porttax" / "keras_model.json"


@dataclass
class KerasSource:
    """A Keras model ready to convert, with the signature parity feeds it by."""

    model: Any  # keras.Model
    specs: list[TensorSpec]
    origin: str  # "model", "keras", "h5", "savedmodel"
    path: str | None = None

    @property
    def name(self) -> str:
        if self.path:
            return Path(self.path).stem if not Path(self.path).is_dir() else Path(self.path).name
        return str(getattr(self.model, "name", "model"))


def load_keras_source(source: Any, *, trust_code: bool = False) -> KerasSource:
    if not isinstance(source, (str, Path)):
        keras = import_keras()
        if not isinstance(source, keras.Model):
            raise InputError(f"expected a Keras model or a path, got {type(source).__name__}")
        return KerasSource(source, keras_specs(source), "model")
    path = Path(source)
    if not path.exists():
        raise InputError("no such model file or directory", path=str(path))
    if path.is_dir():
        from porttax.layer_map import read_savedmodel

        model = _load_savedmodel(path)
        _mark_porttax_names(model, read_savedmodel(path))
        return KerasSource(model, keras_specs(model), "savedmodel", str(path))
    suffix = path.suffix.lower()
    if suffix == ".keras":
        from porttax.layer_map import read_keras_file

        model = load_keras_file(path, trust_code)
        _mark_porttax_names(model, read_keras_file(path))
        return KerasSource(model, keras_specs(model), "keras", str(path))
    if suffix in (".h5", ".hdf5"):
        model = load_keras_file(path, trust_code)
        return KerasSource(model, keras_specs(model), "h5", str(path))
    raise InputError(f"not a Keras model file ({suffix or 'no extension'})", path=str(path),
                     hint="use a .keras or .h5 file, or a SavedModel directory")


_LOAD_HINT = ("re-save the model with model.save('name.keras'); a model with custom layers needs their classes "
              "registered (keras.saving.register_keras_serializable) before it loads")


def load_keras_file(path: Path, trust_code: bool = False) -> Any:
    """A `.keras` or `.h5` model, loaded in safe mode unless `trust_code` (the one place Keras files load)."""
    keras = import_keras()
    kind = "keras" if path.suffix.lower() == ".keras" else "h5"
    config: Any = None
    if kind == "keras":
        from porttax.sources.file_checks import check_zip

        if not zipfile.is_zipfile(path):
            raise InputError("not a .keras archive (not a zip file)", path=str(path),
                             hint="re-save it with model.save('name.keras')")
        config = _archive_config(path)
    if kind == "h5" and not _is_hdf5(path):
        raise InputError("not an HDF5 file", path=str(path))
    try:
        model = keras.saving.load_model(path, safe_mode=not trust_code, compile=False)
    except ValueError as exc:
        text = str(exc)
        if not trust_code and ("safe_mode" in text or "Lambda" in text or "lambda" in text):
            names = _code_layers(config) if kind == "keras" else []
            which = f"layer {', '.join(repr(n) for n in names)}" if names else "a Lambda layer or similar"
            raise UntrustedInputError(
                f"the model stores Python code ({which}); loading it would run that code",
                path=str(path), hint="pass --trust-code only if you trust where the file came from; porttax "
                "still cannot convert the code itself, so expect an error naming the layer") from exc
        raise InputError(f"cannot load Keras model: {brief(exc)}", path=str(path), hint=_LOAD_HINT) from exc
    except Exception as exc:  # keras raises TypeError/OSError/KeyError with no path in the message
        from porttax.saving import write_failure

        failure = write_failure(exc)
        if failure is not None:  # Keras unpacks a .keras file's weights into the temporary folder
            raise InputError(f"cannot load Keras model: could not write its temporary files ({failure})",
                             path=str(path), hint=f"Keras unpacks the weights into {tempfile.gettempdir()}: free "
                             "space there, or point TMPDIR at a folder with room") from exc
        raise InputError(f"cannot load Keras model ({type(exc).__name__}: {brief(exc)})", path=str(path),
                         hint=_LOAD_HINT) from exc
    if isinstance(model, list) or not hasattr(model, "layers"):
        raise InputError("the file holds no Keras model (only weights?)", path=str(path))
    return model


def _archive_config(path: Path) -> Any:
    """The archive's config.json, checked as data before Keras deserialises anything from it."""
    from porttax.sources.file_checks import check_zip

    members = check_zip(path, what="Keras archive")
    if "config.json" not in members:
        raise InputError("the Keras archive has no config.json", path=str(path),
                         hint="re-save the model with model.save('name.keras')")
    try:
        with zipfile.ZipFile(path) as zf:
            return json.loads(zf.read("config.json"))
    except (ValueError, RecursionError) as exc:
        raise InputError(f"config.json inside the archive is not valid JSON ({brief(exc)})", path=str(path),
                         hint="re-save the model with model.save('name.keras')") from None


def _code_layers(config: Any) -> list[str]:
    """Names of the layers whose config carries Python code (Lambda and its kin)."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("class_name") in ("Lambda", "TFOpLambda") and isinstance(node.get("config"), dict):
                found.append(str(node["config"].get("name", node.get("name", "?"))))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    return found


def _mark_porttax_names(model: Any, layer_map: Any) -> None:
    """A model porttax converted from torch names its layers after module paths (`layers-0-mlp`); the
    layer map it carries says so, and the torch road then restores the paths (`layers.0.mlp`)."""
    if layer_map is not None:
        model._porttax_layer_map = layer_map


def _is_hdf5(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == b"\x89HDF\r\n\x1a\n"


def _load_savedmodel(path: Path) -> Any:
    """A SavedModel porttax wrote: rebuild the Keras model from its stored config, weights by variable path."""
    from porttax._frameworks import import_tf
    from porttax.sources.savedmodel_checks import check_savedmodel_ops

    keras = import_keras()
    if not (path / "saved_model.pb").is_file():
        raise InputError("a directory must be a SavedModel (no saved_model.pb here)", path=str(path))
    config_file = path / KERAS_CONFIG
    if not config_file.is_file():
        from porttax.sources import keras2_savedmodel

        if keras2_savedmodel.has_keras2_metadata(path):
            return keras2_savedmodel.rebuild(path)
        raise InputError("this SavedModel carries no Keras model configuration", path=str(path),
                         hint="a SavedModel without a Keras model inside is a bare graph with no layers to map; "
                         "save the Keras model as .keras and convert that, or use the ONNX road when it lands")
    try:
        config = json.loads(config_file.read_text())
        model = keras.saving.deserialize_keras_object(config, safe_mode=True)
    except Exception as exc:
        raise InputError(f"cannot rebuild the Keras model from {KERAS_CONFIG} ({type(exc).__name__}: {exc})",
                         path=str(path)) from exc
    check_savedmodel_ops(path)  # restoring runs the SavedModel's functions; refuse file I/O first
    tf = import_tf()
    loaded = tf.saved_model.load(str(path))
    stored = {v.name.rsplit(":", 1)[0]: v for v in getattr(loaded, "variables", [])}
    missing = [w.path for w in model.weights if w.path not in stored]
    if missing:
        raise InputError(f"the SavedModel lacks {len(missing)} weight(s) of its Keras model: "
                         f"{', '.join(missing[:10])}", path=str(path))
    for w in model.weights:
        value = stored[w.path].numpy()
        if tuple(value.shape) != tuple(w.shape):
            raise InputError(f"weight {w.path} has shape {value.shape} in the SavedModel, {tuple(w.shape)} in "
                             "its Keras model", path=str(path))
        w.assign(value)
    return model


def keras_specs(model: Any) -> list[TensorSpec]:
    """Input specs with symbolic batch/other dims, and token-id ranges from the Embeddings inputs feed."""
    from porttax.converters.keras_to_torch.driver import functional_view
    from porttax.types import spec_dims

    specs = []
    for t in functional_view(model).inputs:
        name = t.name
        dtype = str(t.dtype)
        value_range = None
        if "int" in dtype:
            high = _embedding_bound(model, t)
            value_range = (0, high) if high is not None else None
        specs.append(TensorSpec(name, spec_dims(t.shape, name), dtype, value_range))
    return specs


def _embedding_bound(model: Any, tensor: Any) -> int | None:
    """The smallest input_dim among Embedding layers that read `tensor` (token ids must stay below it)."""
    keras = import_keras()
    bounds = []
    for layer in _all_layers(model):
        if not isinstance(layer, keras.layers.Embedding):
            continue
        for node in layer._inbound_nodes:
            if any(kt is tensor for kt in node.arguments.keras_tensors):
                bounds.append(int(layer.input_dim))
    return min(bounds) if bounds else None


def _all_layers(model: Any) -> list[Any]:
    keras = import_keras()
    out = []
    for layer in getattr(model, "layers", []):
        out.append(layer)
        if isinstance(layer, keras.Model):
            out.extend(_all_layers(layer))
    return out


def savedmodel_config(model: Any) -> str:
    """The JSON a SavedModel carries so porttax (and Keras) can rebuild its layers later."""
    keras = import_keras()
    return json.dumps(keras.saving.serialize_keras_object(model))


def _load_path(path: Path, options: LoadOptions) -> KerasSource:
    return load_keras_source(path, trust_code=options.trust_code)


register_format(SourceFormat("keras", "keras", "a Keras 3 model file (.keras)", load=_load_path,
                             sniff=lambda p: p.suffix.lower() == ".keras"))
register_format(SourceFormat("h5", "keras", "a legacy Keras HDF5 model (.h5, .hdf5)", load=_load_path,
                             sniff=lambda p: p.suffix.lower() in (".h5", ".hdf5")))
register_format(SourceFormat("savedmodel", "keras", "a TensorFlow SavedModel directory (Keras 3, or TF-Keras 2)",
                             load=_load_path, sniff=lambda p: p.is_dir() and (p / "saved_model.pb").is_file()))
