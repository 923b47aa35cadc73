"""The bad-input catalog: hostile and broken files, each built on the fly by a small function.

A case writes its files into an empty folder and returns the command line to run and the file the
error must name. tests/test_bad_inputs.py runs every case through the real CLI and checks what a user
would see (exit code, message, nothing written, no temp files, no payload run, time). SECURITY.md
lists these families; add a case here whenever a loader learns to refuse something new.
"""

from __future__ import annotations

import json
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from porttax import models
from porttax._frameworks import import_keras, import_torch

CANARY = "canary"  # a file a payload would create in the case folder if it ever ran


@dataclass(frozen=True)
class Case:
    family: str
    name: str
    build: Callable[[Path], tuple[list[str], Path]]  # folder -> (CLI argv, the file the error must name)
    says: tuple[str, ...] = ()  # what the message must also name: a tensor, member, layer, key
    code: int = 2


CASES: list[Case] = []


def case(family: str, *says: str, code: int = 2) -> Callable:
    def register(fn: Callable[[Path], tuple[list[str], Path]]) -> Callable:
        CASES.append(Case(family, fn.__name__, fn, tuple(says), code))
        return fn
    return register


def convert(src: Path, d: Path, *extra: str, out: str = "out.keras") -> list[str]:
    return ["convert", str(src), "-o", str(d / out), "-q", "--no-latency", *extra]


# --- helpers that write real files -----------------------------------------------------------------

def mlp_state(d: Path) -> tuple[dict, Path]:
    """A valid mlp-tiny checkpoint and its config sidecar; returns (state_dict, config path)."""
    torch = import_torch()
    ckpt = models.build_checkpoint("mlp-tiny", d / "good.pt")
    state = torch.load(ckpt, weights_only=True)
    return state, models.sidecar_path(ckpt)


def raw_safetensors(path: Path, header: object, data: bytes, *, header_len: int | None = None) -> Path:
    text = json.dumps(header).encode() if not isinstance(header, bytes) else header
    n = len(text) if header_len is None else header_len
    path.write_bytes(struct.pack("<Q", n) + text + data)
    return path


def mlp_safetensors(d: Path, edit: Callable[[dict, bytearray], bytes | None] | None = None,
                    name: str = "model.safetensors") -> Path:
    """mlp-tiny weights as safetensors with `edit(header, data)` applied; the config sits beside it."""
    state, config = mlp_state(d)
    header: dict = {}
    data = bytearray()
    for key, t in state.items():
        raw = t.contiguous().numpy().tobytes()
        header[key] = {"dtype": "F32" if t.dtype.is_floating_point else "I64", "shape": list(t.shape),
                       "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    replaced = edit(header, data) if edit else None
    path = raw_safetensors(d / name, header, bytes(data) if replaced is None else replaced)
    config.rename(models.sidecar_path(path))
    return path


def first_key(header: dict) -> str:
    return next(k for k in header if k != "__metadata__")


class Payload:
    """Unpickling this calls open(canary, "w"): harmless, but proof that code from the file ran."""

    def __init__(self, canary: Path) -> None:
        self.canary = str(canary)

    def __reduce__(self):
        return (open, (self.canary, "w"))


def zip_with(path: Path, members: dict[str, bytes], *, symlink: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (0o120777 << 16)
            zf.writestr(info, "/etc/passwd")
    return path


def small_keras(d: Path, name: str = "model.keras") -> Path:
    keras = import_keras()
    inp = keras.Input((4,), name="x")
    model = keras.Model(inp, keras.layers.Dense(3, name="dense")(inp))
    path = d / name
    model.save(path)
    return path


def lambda_keras(d: Path, canary: Path, suffix: str = ".keras") -> Path:
    """A Keras file whose Lambda layer creates `canary` whenever its code runs (it runs once at save)."""
    keras = import_keras()
    fn = eval(f"lambda x: x + float(__import__('pathlib').Path({str(canary)!r}).touch() or 0)")  # noqa: S307
    inp = keras.Input((4,), name="x")
    model = keras.Model(inp, keras.layers.Lambda(fn, name="payload")(keras.layers.Dense(3)(inp)))
    path = d / f"lambda{suffix}"
    model.save(path)
    canary.unlink(missing_ok=True)
    return path


def rewrite_zip(src: Path, dst: Path, change: Callable[[str, bytes], tuple[str, bytes] | None],
                extra: dict[str, bytes] | None = None, symlink: str | None = None) -> Path:
    with zipfile.ZipFile(src) as zin:
        members = {}
        for info in zin.infolist():
            changed = change(info.filename, zin.read(info))
            if changed is not None:
                members[changed[0]] = changed[1]
    members.update(extra or {})
    return zip_with(dst, members, symlink=symlink)


def onnx_with_external(d: Path, location: str, *, offset: int = 0, length: int | None = None,
                       write_data: Path | None = None) -> Path:
    """y = x + W, with W (4 floats) stored as external data at `location`."""
    from onnx import TensorProto, helper

    w = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[4], data_location=TensorProto.EXTERNAL)
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(16 if length is None else length))):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    if write_data is not None:
        write_data.write_bytes(np.arange(4, dtype=np.float32).tobytes())
    graph = helper.make_graph([helper.make_node("Add", ["x", "W"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], initializer=[w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = d / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def parity(a: Path, b: Path, d: Path, *extra: str) -> list[str]:
    return ["parity", str(a), str(b), "-q", "--json", str(d / "out.keras"), *extra]


# --- safetensors -------------------------------------------------------------------------------------

@case("safetensors")
def st_empty_file(d):
    p = d / "empty.safetensors"
    p.write_bytes(b"")
    return convert(p, d, "--arch", "mlp"), p


@case("safetensors")
def st_shorter_than_length_prefix(d):
    p = d / "short.safetensors"
    p.write_bytes(b"\x10\x00\x00")
    return convert(p, d, "--arch", "mlp"), p


@case("safetensors")
def st_header_longer_than_file(d):
    p = raw_safetensors(d / "long.safetensors", {"a": {}}, b"", header_len=4096)
    return convert(p, d, "--arch", "mlp"), p


@case("safetensors")
def st_header_length_huge(d):
    p = raw_safetensors(d / "huge.safetensors", {"a": {}}, b"", header_len=2 ** 63)
    return convert(p, d, "--arch", "mlp"), p


@case("safetensors")
def st_header_not_json(d):
    p = raw_safetensors(d / "notjson.safetensors", b"\xff\xfe{not json", b"")
    return convert(p, d, "--arch", "mlp"), p


@case("safetensors")
def st_header_is_a_list(d):
    p = raw_safetensors(d / "list.safetensors", [1, 2, 3], b"")
    return convert(p, d, "--arch", "mlp"), p


@case("safetensors")
def st_nesting_bomb(d):
    p = raw_safetensors(d / "nested.safetensors", b"[" * 200_000 + b"]" * 200_000, b"")
    return convert(p, d, "--arch", "mlp"), p


def _set(field: str, value: object, key: str | None = None) -> Callable[[dict, bytearray], None]:
    def edit(header: dict, data: bytearray) -> None:
        header[key or first_key(header)][field] = value
    return edit


@case("safetensors", "F13")
def st_unknown_dtype(d):
    return convert(mlp_safetensors(d, _set("dtype", "F13")), d), d / "model.safetensors"


@case("safetensors", "layers.0.linear.weight")
def st_shape_disagrees_with_byte_span(d):
    return convert(mlp_safetensors(d, _set("shape", [9999, 2], "layers.0.linear.weight")), d), d / "model.safetensors"


@case("safetensors", "layers.0.linear.weight")
def st_negative_dim(d):
    return convert(mlp_safetensors(d, _set("shape", [-1, 16], "layers.0.linear.weight")), d), d / "model.safetensors"


@case("safetensors", "layers.0.linear.weight")
def st_offsets_past_end_of_file(d):
    def edit(header, data):
        begin, end = header["layers.0.linear.weight"]["data_offsets"]
        header["layers.0.linear.weight"]["data_offsets"] = [begin + 10 ** 9, end + 10 ** 9]
    return convert(mlp_safetensors(d, edit), d), d / "model.safetensors"


@case("safetensors")
def st_overlapping_spans(d):
    def edit(header, data):
        a, b = "layers.0.linear.bias", "layers.0.norm.weight"  # both (32,)
        header[b]["data_offsets"] = list(header[a]["data_offsets"])
    # two same-shape tensors whose spans coincide: one set of bytes read as two weights
    return convert(mlp_safetensors(d, edit), d), d / "model.safetensors"


@case("safetensors")
def st_truncated_data(d):
    return convert(mlp_safetensors(d, lambda h, data: bytes(data[: len(data) // 2])), d), d / "model.safetensors"


@case("safetensors")
def st_metadata_not_strings(d):
    return convert(mlp_safetensors(d, lambda h, data: h.__setitem__("__metadata__", {"a": [1, 2]})), d), \
        d / "model.safetensors"


@case("safetensors", "layers.0.linear.weight")
def st_missing_tensor(d):
    return convert(mlp_safetensors(d, _drop("layers.0.linear.weight")), d), d / "model.safetensors"


def _drop(key: str) -> Callable[[dict, bytearray], bytes]:
    def edit(header: dict, data: bytearray) -> bytes:
        begin, end = header.pop(key)["data_offsets"]
        for entry in header.values():
            b, e = entry["data_offsets"]
            if b >= end:
                entry["data_offsets"] = [b - (end - begin), e - (end - begin)]
        return bytes(data[:begin] + data[end:])
    return edit


@case("safetensors", "rogue.weight")
def st_unexpected_tensor(d):
    def edit(header, data):
        header["rogue.weight"] = {"dtype": "F32", "shape": [1], "data_offsets": [len(data), len(data) + 4]}
        return bytes(data) + b"\0\0\0\0"
    return convert(mlp_safetensors(d, edit), d), d / "model.safetensors"


@case("safetensors", "layers.0.linear.weight")
def st_shape_mismatch_with_architecture(d):
    def edit(header, data):
        entry = header["layers.0.linear.weight"]
        rows, cols = entry["shape"]
        entry["shape"] = [cols, rows]  # same byte count, transposed shape
    return convert(mlp_safetensors(d, edit), d), d / "model.safetensors"


# --- pickles and PyTorch archives ---------------------------------------------------------------------

@case("pickle")
def pickle_module_payload_untrusted(d):
    torch = import_torch()
    p = d / "payload.pt"
    torch.save({"weight": torch.zeros(2), "x": Payload(d / CANARY)}, p)
    return convert(p, d, "--arch", "mlp"), p


@case("pickle")
def pickle_legacy_format_payload(d):
    torch = import_torch()
    p = d / "legacy.pt"
    torch.save(Payload(d / CANARY), p, _use_new_zipfile_serialization=False)
    return convert(p, d), p


@case("pickle")
def pickle_raw_not_torch(d):
    import pickle

    p = d / "raw.pth"
    p.write_bytes(pickle.dumps(Payload(d / CANARY)))
    return convert(p, d), p


@case("pickle")
def pickle_whole_module_untrusted(d):
    torch = import_torch()
    p = d / "module.pt"
    torch.save(torch.nn.Sequential(torch.nn.Linear(4, 2)), p)
    return convert(p, d, "--input-shape", "1,4"), p


@case("pickle")
def pickle_holds_a_list(d):
    torch = import_torch()
    p = d / "list.pt"
    torch.save([torch.zeros(2)], p)
    return convert(p, d), p


@case("pickle", "..")
def pt_zip_slip_member(d):
    torch = import_torch()
    good = d / "good.pt"
    torch.save({"w": torch.zeros(2)}, good)
    p = rewrite_zip(good, d / "slip.pt", lambda n, b: (n, b), extra={"../../escape.txt": b"x"})
    return convert(p, d, "--arch", "mlp"), p


@case("pickle")
def pt_symlink_member(d):
    torch = import_torch()
    good = d / "good.pt"
    torch.save({"w": torch.zeros(2)}, good)
    p = rewrite_zip(good, d / "link.pt", lambda n, b: (n, b), symlink="good/data/evil")
    return convert(p, d, "--arch", "mlp"), p


@case("pickle")
def pt_truncated_zip(d):
    torch = import_torch()
    good = d / "good.pt"
    torch.save({"w": torch.zeros(1000)}, good)
    p = d / "cut.pt"
    p.write_bytes(good.read_bytes()[:700])
    return convert(p, d, "--arch", "mlp"), p


@case("pickle")
def pt2_not_an_archive(d):
    p = d / "model.pt2"
    p.write_bytes(b"PK\x03\x04 this is not really a zip")
    return convert(p, d), p


@case("pickle")
def torchscript_archive(d):
    torch = import_torch()
    p = d / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(4, 2)), str(p))
    return convert(p, d), p


# --- Keras archives ---------------------------------------------------------------------------------

@case("keras", "payload")
def keras_lambda_untrusted(d):
    p = lambda_keras(d, d / CANARY)
    return convert(p, d, out="out.pt2"), p


@case("keras")
def h5_lambda_untrusted(d):
    p = lambda_keras(d, d / CANARY, suffix=".h5")
    return convert(p, d, out="out.pt2"), p


@case("keras", "..")
def keras_zip_slip_member(d):
    p = rewrite_zip(small_keras(d, "good.keras"), d / "slip.keras", lambda n, b: (n, b),
                    extra={"../evil.py": b"print('x')"})
    return convert(p, d, out="out.pt2"), p


@case("keras", "assets/evil")
def keras_symlink_member(d):
    p = rewrite_zip(small_keras(d, "good.keras"), d / "link.keras", lambda n, b: (n, b), symlink="assets/evil")
    return convert(p, d, out="out.pt2"), p


@case("keras")
def keras_zip_bomb(d):
    good = small_keras(d, "good.keras")
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(d / "bomb.keras", "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info))
        zout.writestr("assets/zeros.bin", bytes(64 * 2 ** 20), compresslevel=9)
    return convert(d / "bomb.keras", d, out="out.pt2"), d / "bomb.keras"


@case("keras")
def keras_not_a_zip(d):
    p = d / "random.keras"
    p.write_bytes(np.random.default_rng(0).bytes(4096))
    return convert(p, d, out="out.pt2"), p


@case("keras", "config.json")
def keras_config_not_json(d):
    p = rewrite_zip(small_keras(d, "good.keras"), d / "badconfig.keras",
                    lambda n, b: (n, b"{this is not json" if n == "config.json" else b))
    return convert(p, d, out="out.pt2"), p


@case("keras", "config.json")
def keras_missing_config(d):
    p = rewrite_zip(small_keras(d, "good.keras"), d / "noconfig.keras",
                    lambda n, b: None if n == "config.json" else (n, b))
    return convert(p, d, out="out.pt2"), p


@case("keras", "NotARealLayer")
def keras_unknown_layer_class(d):
    def change(name, data):
        if name == "config.json":
            data = data.replace(b'"class_name": "Dense"', b'"class_name": "NotARealLayer"')
        return name, data
    p = rewrite_zip(small_keras(d, "good.keras"), d / "unknown.keras", change)
    return convert(p, d, out="out.pt2"), p


@case("keras", "dense")
def keras_weights_do_not_match_config(d):
    def change(name, data):
        if name == "config.json":
            data = data.replace(b'"units": 3', b'"units": 5')
        return name, data
    p = rewrite_zip(small_keras(d, "good.keras"), d / "mismatch.keras", change)
    return convert(p, d, out="out.pt2"), p


@case("keras")
def h5_garbage(d):
    p = d / "model.h5"
    p.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    return convert(p, d, out="out.pt2"), p


@case("keras")
def savedmodel_corrupt_pb(d):
    sm = d / "sm"
    (sm / "variables").mkdir(parents=True)
    (sm / "saved_model.pb").write_bytes(b"\x08\x01garbage")
    return convert(sm, d, out="out.pt2"), sm


@case("keras", "keras_metadata.pb")
def keras2_metadata_garbage(d):
    sm = d / "tf_keras_sm"
    (sm / "variables").mkdir(parents=True)
    (sm / "saved_model.pb").write_bytes(b"\x08\x01")
    (sm / "keras_metadata.pb").write_bytes(b"\x0a\xff\xff\xff\xff\x0f" + bytes(64))  # a length past the end
    return convert(sm, d, out="out.pt2"), sm


# --- ONNX ---------------------------------------------------------------------------------------------

@case("onnx", "W")
def onnx_external_data_absolute_path(d):
    p = onnx_with_external(d, "/etc/hostname")
    return parity(p, p, d), p


@case("onnx", "W")
def onnx_external_data_parent_escape(d):
    secret = d.parent / f"{d.name}-secret.bin"
    secret.write_bytes(bytes(16))
    p = onnx_with_external(d, f"../{secret.name}")
    return parity(p, p, d), p


@case("onnx", "W")
def onnx_external_data_symlink_escape(d):
    secret = d.parent / f"{d.name}-secret.bin"
    secret.write_bytes(bytes(16))
    (d / "weights.bin").symlink_to(secret)
    p = onnx_with_external(d, "weights.bin")
    return parity(p, p, d), p


@case("onnx", "W")
def onnx_external_data_missing(d):
    p = onnx_with_external(d, "weights.bin")
    return parity(p, p, d), p


@case("onnx", "W")
def onnx_external_data_past_end(d):
    p = onnx_with_external(d, "weights.bin", offset=8, length=64, write_data=d / "weights.bin")
    return parity(p, p, d), p


@case("onnx", "W")
def onnx_convert_external_data_escape(d):
    secret = d.parent / f"{d.name}-secret.bin"
    secret.write_bytes(bytes(16))
    p = onnx_with_external(d, f"../{secret.name}")
    return convert(p, d, out="out.pt2"), p


@case("onnx")
def onnx_garbage(d):
    p = d / "model.onnx"
    p.write_bytes(b"\x0a\xff\xff\xff\xff\x0f garbage")
    return parity(p, p, d), p


# --- Hugging Face folders -------------------------------------------------------------------------------

def hf_llama_folder(d: Path, shard_size: str = "100KB") -> Path:
    """A real Hugging Face folder: transformers' tiny random Llama, save_pretrained in safetensors shards."""
    torch = import_torch()
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=176, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    folder = d / "hf_llama"
    LlamaForCausalLM(config).eval().save_pretrained(folder, safe_serialization=True, max_shard_size=shard_size)
    return folder


def _edit_index(folder: Path, change: Callable[[dict], None]) -> Path:
    index = folder / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    change(data["weight_map"])
    index.write_text(json.dumps(data))
    return index


def _first_shard(folder: Path) -> str:
    return sorted(json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"].values())[0]


@case("hf", "..")
def hf_shard_outside_folder(d):
    folder = hf_llama_folder(d)
    (d / "outside.safetensors").write_bytes((folder / _first_shard(folder)).read_bytes())
    index = _edit_index(folder, lambda m: m.__setitem__("lm_head.weight", "../outside.safetensors"))
    return convert(folder, d), index


@case("hf", "symlinked.safetensors")
def hf_shard_symlink_outside(d):
    folder = hf_llama_folder(d)
    shard = _first_shard(folder)
    (d / "real.safetensors").write_bytes((folder / shard).read_bytes())
    (folder / "symlinked.safetensors").symlink_to(d / "real.safetensors")
    index = _edit_index(folder, lambda m: [m.__setitem__(k, "symlinked.safetensors")
                                           for k, v in list(m.items()) if v == shard])
    return convert(folder, d), index


@case("hf", "model-99-of-99.safetensors")
def hf_missing_shard(d):
    folder = hf_llama_folder(d)
    index = _edit_index(folder, lambda m: m.__setitem__("lm_head.weight", "model-99-of-99.safetensors"))
    return convert(folder, d), index


@case("hf")
def hf_index_not_json(d):
    folder = hf_llama_folder(d)
    (folder / "model.safetensors.index.json").write_text("{weight_map")
    return convert(folder, d), folder / "model.safetensors.index.json"


@case("hf", "lm_head.weight")
def hf_index_points_to_wrong_shard(d):
    folder = hf_llama_folder(d)
    def move(m):
        other = next(v for v in sorted(set(m.values())) if v != m["lm_head.weight"])
        m["lm_head.weight"] = other
    return convert(folder, d), _edit_index(folder, move)


@case("hf", "model.norm.weight")
def hf_shard_holds_a_second_copy(d):
    from safetensors.numpy import load_file, save_file

    folder = hf_llama_folder(d)
    weight_map = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]
    other = next(v for v in sorted(set(weight_map.values())) if v != weight_map["model.norm.weight"])
    tensors = load_file(str(folder / other))
    tensors["model.norm.weight"] = load_file(str(folder / weight_map["model.norm.weight"]))["model.norm.weight"]
    save_file(tensors, str(folder / other))  # two shards now hold model.norm.weight; which one wins?
    return convert(folder, d), folder / "model.safetensors.index.json"


@case("hf", "model.layers.0.mlp.up_proj.weight")
def hf_config_disagrees_with_tensors(d):
    folder = hf_llama_folder(d)
    config = json.loads((folder / "config.json").read_text())
    config["intermediate_size"] = 200
    (folder / "config.json").write_text(json.dumps(config))
    return convert(folder, d), folder


@case("hf", "gpt_neox")
def hf_unknown_model_type(d):
    folder = hf_llama_folder(d)
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "gpt_neox"
    (folder / "config.json").write_text(json.dumps(config))
    return convert(folder, d), folder / "config.json"


@case("hf")
def hf_only_pickled_bin_weights(d):
    torch = import_torch()
    folder = d / "hf_bin"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    torch.save({"w": torch.zeros(2)}, folder / "pytorch_model.bin")
    return convert(folder, d), folder


# --- inputs and CLI misuse ------------------------------------------------------------------------------

@case("cli")
def npz_with_pickled_payload(d):
    src = models.build_checkpoint("mlp-tiny", d / "mlp.pt")
    cases = d / "cases.npz"
    np.savez(cases, x=np.array([Payload(d / CANARY)], dtype=object))
    return parity(src, src, d, "--inputs", str(cases)), cases


@case("cli")
def npz_not_a_zip(d):
    src = models.build_checkpoint("mlp-tiny", d / "mlp.pt")
    cases = d / "cases.npz"
    cases.write_bytes(b"not a zip at all")
    return parity(src, src, d, "--inputs", str(cases)), cases


@case("cli")
def missing_source(d):
    return convert(d / "nope.pt2", d), d / "nope.pt2"


@case("cli")
def unknown_suffix(d):
    p = d / "model.xyz"
    p.write_bytes(b"\0" * 16)
    return convert(p, d), p


@case("pickle")
def bin_checkpoint_of_zeros(d):
    p = d / "pytorch_model.bin"
    p.write_bytes(b"\0" * 64)
    return convert(p, d, "--arch", "mlp"), p


@case("cli")
def state_dict_without_arch(d):
    torch = import_torch()
    p = d / "weights.pt"
    torch.save({"w": torch.zeros(2)}, p)
    return convert(p, d), p


@case("cli", "nosuch")
def unknown_arch(d):
    torch = import_torch()
    p = d / "weights.pt"
    torch.save({"w": torch.zeros(2)}, p)
    return convert(p, d, "--arch", "nosuch"), p


@case("cli")
def config_not_json(d):
    torch = import_torch()
    p = d / "weights.pt"
    torch.save({"w": torch.zeros(2)}, p)
    cfg = d / "cfg.json"
    cfg.write_text("{oops")
    return convert(p, d, "--arch", "mlp", "--config", str(cfg)), cfg


@case("cli")
def output_parent_is_a_file(d):
    src = models.build_checkpoint("mlp-tiny", d / "mlp.pt")
    (d / "afile").write_text("x")
    return ["convert", str(src), "-o", str(d / "afile" / "out.keras"), "-q"], d / "afile"


@case("cli")
def keras_source_to_keras(d):
    p = small_keras(d)
    return convert(p, d, "--to", "keras", out="again.keras"), p


@case("cli")
def directory_as_torch_source(d):
    (d / "folder.pt").mkdir()
    return convert(d / "folder.pt", d), d / "folder.pt"
