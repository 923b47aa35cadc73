"""Layer taps: where each source module's output lives in the converted model, so drift can be localised.

A *tap* is one output of one module call in the source graph, keyed `"<module path>[@call]#<n>"`
(`layers.0.mlp#0`, `block.act@2#0` for the third call of a shared module). Keys come from
`torch.export`'s `nn_module_stack`, so the converter (which walks that graph) and the torch side of a
parity check (which runs it) name every tap the same way without any hand-kept table.

The converter records, for each tap, the Keras operation and tensor that carry it and the layout
permutation it is held in; constants it folded away (rotary tables, masks) are stored by value when
small. The map travels inside the artefact: a `porttax/layer_map.json` entry in the `.keras` zip (Keras
ignores entries it does not know), and for a SavedModel an extra `porttax_layers` signature plus
`assets.extra/porttax_layer_map.json`. A model porttax did not write has no map; localisation then says so.
"""

from __future__ import annotations

import io
import json
import re
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
MAX_CONST_ELEMENTS = 1 << 20  # folded constants up to 4 MiB (float32) are kept for comparison

_CALL_SUFFIX = re.compile(r"@(\d+)$")


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


# --- which graph nodes are module outputs -------------------------------------------------------


def _scopes(node: Any) -> dict[str, tuple[str, str]]:
    """{scope key: (call name, module type)} for every module call enclosing `node` (root excluded)."""
    out = {}
    for key, (path, type_name) in (node.meta.get("nn_module_stack") or {}).items():
        if not path:
            continue
        m = _CALL_SUFFIX.search(key)
        call = f"{path}@{m.group(1)}" if m and m.group(1) != "0" else path
        type_short = type_name.rsplit(".", 1)[-1] if isinstance(type_name, str) else getattr(type_name, "__name__", "")
        out[key] = (call, type_short)
    return out


def module_outputs(graph: Any) -> list[tuple[Tap, Any]]:
    """(Tap, node) for every tensor a module call hands to code outside it, in execution order.

    A node is an output of module call S when some user of it lies outside S (or is the graph output).
    Inner modules come before the modules that contain them when they share an output node.
    """
    nodes = [n for n in graph.nodes if n.op == "call_function"]
    scopes = {n: _scopes(n) for n in nodes}
    found: list[tuple[int, int, str, str, Any]] = []
    for position, node in enumerate(nodes):
        val = node.meta.get("val")
        if val is None or not hasattr(val, "shape") or not hasattr(val, "dtype"):
            continue  # tuples (their getitems are tapped) and non-tensors
        for key, (call, type_name) in scopes[node].items():
            if any(u.op == "output" or key not in scopes.get(u, {}) for u in node.users):
                found.append((position, -call.count("."), call, type_name, node))
    found.sort(key=lambda f: (f[0], f[1]))
    counts: dict[str, int] = {}
    taps = []
    for order, (_, _, call, type_name, node) in enumerate(found):
        n = counts.get(call, 0)
        counts[call] = n + 1
        shape = [int(d) for d in node.meta["val"].shape]
        taps.append((Tap(f"{call}#{n}", _CALL_SUFFIX.sub("", call), type_name, order, shape=shape), node))
    return taps


# --- the torch side ---------------------------------------------------------------------------------


def capture_torch(program: Any, args: list[Any]) -> tuple[dict[str, np.ndarray], list[Tap]]:
    """Run an ExportedProgram node by node, keeping the value of every module output."""
    from porttax._frameworks import import_torch

    from porttax.converters.torch_to_keras.driver import decompose

    torch = import_torch()
    gm = decompose(program).module()
    taps = module_outputs(gm.graph)
    wanted: dict[str, list[Tap]] = {}
    for tap, node in taps:
        wanted.setdefault(node.name, []).append(tap)
    values: dict[str, np.ndarray] = {}

    class _Recorder(torch.fx.Interpreter):
        def run_node(self, n: Any) -> Any:
            result = super().run_node(n)
            if n.name in wanted and isinstance(result, torch.Tensor):
                t = result.detach().cpu()
                array = (t.float() if t.dtype in (torch.bfloat16, torch.float16) else t).numpy().copy()
                for tap in wanted[n.name]:
                    values[tap.key] = array
            return result

    with torch.no_grad():
        _Recorder(gm).run(*args)
    return values, [tap for tap, _ in taps]


# --- the Keras side ----------------------------------------------------------------------------------


def tap_tensors(model: Any, taps: list[Tap]) -> dict[str, Any]:
    """{tap key: the symbolic Keras tensor carrying it} in a functional `model`, for its "tensor" taps.

    A tap whose operation is missing (a model edited after conversion) is left out rather than guessed.
    """
    ops = {op.name: op for op in model.operations}
    found = {}
    for tap in taps:
        op = ops.get(tap.operation) if tap.kind == "tensor" else None
        if op is not None and tap.node_index < len(op._inbound_nodes):
            found[tap.key] = op._inbound_nodes[tap.node_index].output_tensors[tap.tensor_index]
    return found


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


def to_source_layout(array: np.ndarray, perm: list[int] | None) -> np.ndarray:
    """Undo the converter's layout permutation (converted == source.permute(perm))."""
    if not perm:
        return array
    return np.transpose(array, np.argsort(perm))
