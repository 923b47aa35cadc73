"""The layer map: which tensor of a converted model carries each source module's output.

A *tap* is one output of one module call in the source graph, keyed `"<module path>[@call]#<n>"`
(`layers.0.mlp#0`, `block.act@2#0` for the third call of a shared module); `porttax.torch_ir` names
them from `torch.export`'s `nn_module_stack`, so the converter (which walks that graph) and the parity
localiser (which runs it) name every tap the same way without any hand-kept table.

The converter records, for each tap, the Keras operation and tensor that carry it and the layout
permutation it is held in; constants it folded away (rotary tables, masks) are stored by value when
small. The map travels inside the artefact: a `porttax/layer_map.json` entry in the `.keras` zip (Keras
ignores entries it does not know), for a SavedModel an extra `porttax_layers` signature plus
`assets.extra/porttax_layer_map.json`, and in a `.pt2` of the Keras → torch road an extra file
(`PT2_ENTRY`). A model porttax did not write has no map; localisation then says so.

This is base: writers (targets), readers (sources, parity) and converters all import it, and it
imports nothing of porttax.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

LAYER_MAP_VERSION = 1
KERAS_ENTRY = "porttax/layer_map.json"
KERAS_CONSTS_ENTRY = "porttax/layer_consts.npz"
SAVEDMODEL_ENTRY = "assets.extra/porttax_layer_map.json"
SAVEDMODEL_CONSTS = "assets.extra/porttax_layer_consts.npz"
SIGNATURE = "porttax_layers"
MAP_SIGNATURE = "porttax_layer_map"  # the map itself, as a no-input signature: survives a TF re-save
PT2_ENTRY = "porttax/layer_map.json"  # in a .pt2 of the Keras → torch road: torch module outputs ↔ Keras layer outputs
# a .pte carries its input and output names as constant methods (ExecuTorch has no signature names)
PTE_INPUT_NAMES = "porttax_input_names"
PTE_OUTPUT_NAMES = "porttax_output_names"
MAX_CONST_ELEMENTS = 1 << 20  # folded constants up to 4 MiB (float32) are kept for comparison


def keras_layer_name(module_path: str) -> str:
    """The Keras layer name for a source module path: `layer1.0.conv1` → `layer1-0-conv1`.

    Keras' torch backend turns layer names into torch parameter names, which may not contain dots;
    module paths are Python identifiers joined by dots and never contain "-", so the mapping is
    readable and exactly reversible (`name.replace("-", ".")`) when layers are matched later — by the
    converter's layer map, or by parity from names alone when a re-saved file has lost that map.
    """
    return module_path.replace(".", "-").replace("/", "-")


@dataclass
class Tap:
    """One module output. `kind`: "tensor" (computed by the converted model) or "const" (folded)."""

    key: str
    module: str  # module path (without call suffix)
    module_type: str
    order: int  # execution order in the source graph
    kind: str = "tensor"
    operation: str | None = None  # Keras operation producing it
    node_index: int = 0
    tensor_index: int = 0
    perm: list[int] | None = None  # converted tensor == source tensor.permute(perm)
    shape: list[int] = field(default_factory=list)  # source-layout shape
    output: str | None = None  # output name in the SavedModel's porttax_layers signature

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LayerMap:
    taps: list[Tap]
    consts: dict[str, np.ndarray] = field(default_factory=dict)  # tap key -> folded value

    def to_json(self) -> str:
        return json.dumps({"version": LAYER_MAP_VERSION, "taps": [t.to_dict() for t in self.taps]}, indent=1)

    @classmethod
    def from_json(cls, text: str, consts: dict[str, np.ndarray] | None = None) -> LayerMap:
        data = json.loads(text)
        if data.get("version") != LAYER_MAP_VERSION:
            raise ValueError(f"layer map version {data.get('version')} (this porttax reads {LAYER_MAP_VERSION})")
        return cls([Tap(**t) for t in data["taps"]], dict(consts or {}))

    def consts_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, **{_npz_key(k): v for k, v in self.consts.items()})
        return buf.getvalue()


def _npz_key(tap_key: str) -> str:
    return tap_key.replace("/", "|")  # npz member names are paths


def _read_consts(data: bytes | None) -> dict[str, np.ndarray]:
    if not data:
        return {}
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {k.replace("|", "/"): npz[k] for k in npz.files}


# --- storing the map in artefacts -----------------------------------------------------------------


def add_to_keras_file(path: str | Path, layer_map: LayerMap) -> None:
    with zipfile.ZipFile(path, "a") as z:
        z.writestr(KERAS_ENTRY, layer_map.to_json())
        if layer_map.consts:
            z.writestr(KERAS_CONSTS_ENTRY, layer_map.consts_bytes())


def read_keras_file(path: str | Path) -> LayerMap | None:
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        if KERAS_ENTRY not in names:
            return None
        consts = _read_consts(z.read(KERAS_CONSTS_ENTRY) if KERAS_CONSTS_ENTRY in names else None)
        return LayerMap.from_json(z.read(KERAS_ENTRY).decode(), consts)


def add_to_savedmodel(path: str | Path, layer_map: LayerMap) -> None:
    path = Path(path)
    (path / SAVEDMODEL_ENTRY).parent.mkdir(exist_ok=True)
    (path / SAVEDMODEL_ENTRY).write_text(layer_map.to_json())
    if layer_map.consts:
        (path / SAVEDMODEL_CONSTS).write_bytes(layer_map.consts_bytes())


def read_savedmodel(path: str | Path) -> LayerMap | None:
    path = Path(path)
    if not (path / SAVEDMODEL_ENTRY).is_file():
        return None
    consts_file = path / SAVEDMODEL_CONSTS
    consts = _read_consts(consts_file.read_bytes() if consts_file.is_file() else None)
    return LayerMap.from_json((path / SAVEDMODEL_ENTRY).read_text(), consts)
