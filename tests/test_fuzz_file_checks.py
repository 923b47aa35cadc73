"""porttax.sources.file_checks against hostile bytes: every input ends in a result or an InputError, never a crash.

The property tests run a fixed budget of examples from a fixed seed, so two runs see the same inputs;
set PORTTAX_FUZZ_SEED to explore others. A failure reports the seed and a @reproduce_failure blob.
Where the safetensors library can judge the same bytes, whatever our check accepts it must load too.
"""

from __future__ import annotations

import json
import math
import os
import posixpath
import struct
import warnings
import zipfile
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, note, seed, settings
from hypothesis import strategies as st
from safetensors import deserialize, safe_open
from safetensors.numpy import save_file

from porttax.errors import InputError
from porttax.sources.file_checks import (
    MAX_SAFETENSORS_HEADER,
    SAFETENSORS_DTYPE_BITS,
    check_onnx_external_data,
    check_safetensors,
    check_zip,
    check_zip_member_name,
    parse_safetensors_header,
    resolve_external_location,
)

SEED = int(os.environ.get("PORTTAX_FUZZ_SEED", "20261124"))
REPRO = f"reproduce with PORTTAX_FUZZ_SEED={SEED}"
FUZZ = settings(max_examples=300, deadline=2000, database=None, derandomize=False, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow])

NUMPY_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
                "I16": np.int16, "I8": np.int8, "U64": np.uint64, "U32": np.uint32, "U16": np.uint16,
                "U8": np.uint8, "BOOL": np.bool_}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


# --- safetensors: building and mutating files -------------------------------------------------------


def build_safetensors(tensors: list[tuple[str, str, tuple[int, ...]]], metadata: dict | None = None) -> bytes:
    """A valid file laid out the way safetensors writes one: contiguous spans, header padded to 8."""
    header: dict = {} if metadata is None else {"__metadata__": metadata}
    offset = 0
    for name, dtype, shape in tensors:
        size = math.prod(shape) * SAFETENSORS_DTYPE_BITS[dtype] // 8
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + bytes(range(256)) * (offset // 256) + bytes(offset % 256)


def _whole_bytes(dtype: str, shape: list[int]) -> tuple[int, ...]:
    """Pad a shape so F4/F6 tensors fill whole bytes, as the format requires."""
    bits = SAFETENSORS_DTYPE_BITS[dtype]
    return tuple(shape) if bits % 8 == 0 else (*shape, 8 // math.gcd(bits, 8))


tensor_names = st.text(max_size=8).filter(lambda n: n != "__metadata__")
tensor_specs = st.lists(
    st.tuples(tensor_names, st.sampled_from(sorted(SAFETENSORS_DTYPE_BITS)),
              st.lists(st.integers(0, 5), max_size=3)).map(lambda t: (t[0], t[1], _whole_bytes(t[1], t[2]))),
    max_size=5, unique_by=lambda t: t[0])
metadata_dicts = st.none() | st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=3)
json_scalars = st.none() | st.booleans() | st.integers(-2**65, 2**65) | st.floats() | st.text(max_size=6)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=12)
# Values a mutation puts into a tensor entry: mostly near-misses of valid ones.
field_values = st.one_of(st.integers(-3, 40), st.integers(2**62, 2**65), st.booleans(),
                         st.sampled_from(sorted(SAFETENSORS_DTYPE_BITS) + ["f32", "", "F128"]),
                         st.lists(st.integers(-1, 40) | st.booleans(), max_size=4), json_values)


def mutate(blob: bytes, data: st.DataObject) -> bytes:
    """One hostile edit of a safetensors file: raw byte flips, a new header length, resized data, or a
    changed, added or removed field in the JSON header."""
    (n,) = struct.unpack_from("<Q", blob)
    kind = data.draw(st.sampled_from(["flip", "length", "resize", "field", "key"]), label="mutation")
    if kind == "flip":
        at = data.draw(st.integers(0, min(len(blob), 8 + n) - 1), label="at")
        return blob[:at] + bytes([blob[at] ^ data.draw(st.integers(1, 255), label="xor")]) + blob[at + 1:]
    if kind == "length":
        new_n = data.draw(st.integers(0, 2**64 - 1) | st.integers(max(0, n - 16), n + 16), label="n")
        return struct.pack("<Q", new_n) + blob[8:]
    if kind == "resize":
        change = data.draw(st.integers(-min(len(blob), 32), 32), label="resize")
        return blob[:len(blob) + change] if change < 0 else blob + bytes(change)
    header = json.loads(blob[8:8 + n])
    names = [k for k in header if k != "__metadata__"]
    if kind == "field" and names:
        entry = header[data.draw(st.sampled_from(names), label="tensor")]
        field = data.draw(st.sampled_from(["dtype", "shape", "data_offsets"]), label="field")
        if field == "data_offsets" and data.draw(st.booleans(), label="shift"):
            entry[field] = [o + data.draw(st.integers(-8, 8), label="delta") for o in entry[field]]
        else:
            entry[field] = data.draw(field_values, label="value")
    else:
        target = data.draw(st.sampled_from(names + ["__metadata__", "extra"]), label="key")
        if data.draw(st.booleans(), label="remove") and target in header:
            del header[target]
        else:
            header[target] = data.draw(json_values, label="value")
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + blob[8 + n:]


def assert_sound(entries: dict, file_size: int, head: bytes) -> None:
    """What a successful check promises: spans inside the data section that never share a byte."""
    data_size = file_size - 8 - struct.unpack_from("<Q", head)[0]
    spans = sorted((e.start, e.end) for e in entries.values())
    assert all(0 <= start <= end <= data_size for start, end in spans)
    filled = [s for s in spans if s[0] < s[1]]
    assert all(a[1] <= b[0] for a, b in zip(filled, filled[1:]))


def assert_library_loads(blob: bytes, entries: dict) -> None:
    """Our check accepted the bytes; the safetensors loader must agree on every tensor."""
    loaded = {name: info for name, info in deserialize(blob)}
    assert loaded.keys() == entries.keys()
    for name, entry in entries.items():
        assert loaded[name]["dtype"] == entry.dtype and tuple(loaded[name]["shape"]) == entry.shape


# --- safetensors: properties ---------------------------------------------------------------------


@FUZZ
@seed(SEED)
@given(st.binary(max_size=200), st.integers(-16, 2**70))
def test_header_parser_on_arbitrary_bytes(head, file_size):
    note(REPRO)
    try:
        entries = parse_safetensors_header(head, file_size)
    except InputError:
        return
    assert_sound(entries, file_size, head)


@FUZZ
@seed(SEED)
@given(st.dictionaries(st.text(max_size=6), json_values, max_size=4) | json_values, st.integers(0, 64))
def test_header_parser_on_arbitrary_json(header, data_size):
    note(REPRO)
    raw = json.dumps(header).encode()
    blob = struct.pack("<Q", len(raw)) + raw + bytes(data_size)
    try:
        entries = parse_safetensors_header(blob, len(blob))
    except InputError:
        return
    assert_sound(entries, len(blob), blob)
    assert_library_loads(blob, entries)


@FUZZ
@seed(SEED)
@given(tensor_specs, metadata_dicts, st.data())
def test_header_parser_on_mutated_headers(tensors, metadata, data):
    note(REPRO)
    blob = mutate(build_safetensors(tensors, metadata), data)
    try:
        entries = parse_safetensors_header(blob, len(blob))
    except InputError:
        return
    assert_sound(entries, len(blob), blob)
    assert_library_loads(blob, entries)


@FUZZ
@seed(SEED)
@given(tensor_specs, metadata_dicts)
def test_header_parser_accepts_valid_headers_of_every_dtype(tensors, metadata):
    note(REPRO)
    blob = build_safetensors(tensors, metadata)
    entries = parse_safetensors_header(blob, len(blob))
    assert sorted(entries) == sorted(name for name, _, _ in tensors)
    assert_library_loads(blob, entries)


numpy_tensors = st.dictionaries(tensor_names.filter(bool), st.tuples(st.sampled_from(sorted(NUMPY_DTYPES)),
                                                                     st.lists(st.integers(0, 4), max_size=3)),
                                max_size=4)


@FUZZ
@seed(SEED)
@given(numpy_tensors, st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=3))
def test_files_the_library_writes_pass(workdir, tensors, metadata):
    note(REPRO)
    path = workdir / "written.safetensors"
    save_file({name: np.zeros(shape, NUMPY_DTYPES[dtype]) for name, (dtype, shape) in tensors.items()}, str(path),
              metadata=metadata or None)
    entries = check_safetensors(path)
    assert {name: (e.dtype, e.shape) for name, e in entries.items()} == \
        {name: (dtype, tuple(shape)) for name, (dtype, shape) in tensors.items()}


@FUZZ
@seed(SEED)
@given(numpy_tensors, st.data())
def test_mutated_files_on_disk(workdir, tensors, data):
    note(REPRO)
    path = workdir / "mutated.safetensors"
    save_file({name: np.ones(shape, NUMPY_DTYPES[dtype]) for name, (dtype, shape) in tensors.items()}, str(path))
    path.write_bytes(mutate(path.read_bytes(), data))
    try:
        entries = check_safetensors(path)
    except InputError:
        return
    with safe_open(str(path), framework="numpy") as f:
        assert set(f.keys()) == set(entries)
        for name in f.keys():
            if entries[name].dtype in NUMPY_DTYPES:
                assert f.get_tensor(name).shape == entries[name].shape
            else:
                assert tuple(f.get_slice(name).get_shape()) == entries[name].shape


# --- safetensors: one example per rule --------------------------------------------------------------


def header_blob(header: dict | str, data: bytes = b"") -> bytes:
    raw = (header if isinstance(header, str) else json.dumps(header)).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def f32(shape, begin, end) -> dict:
    return {"dtype": "F32", "shape": shape, "data_offsets": [begin, end]}


SAFETENSORS_CASES = [
    (b"\x01\x00", "too short"),
    (struct.pack("<Q", 0), "header length 0"),
    (struct.pack("<Q", 100 * 1024**2 + 1), "header length 104857601"),
    (struct.pack("<Q", 50) + b"{}", "header claims 50 bytes"),
    (header_blob("[" * 100_000), "nests too deeply"),
    (header_blob({"a": f32([2], 0, 8), "b": f32([1], 4, 8)}, bytes(8)), "'b' (bytes 4..8) overlaps tensor 'a'"),
    (header_blob({"a": f32([1], 0, 4), "b": f32([1], 8, 12)}, bytes(12)), "gap at 4..8"),
    (header_blob({"a": f32([1], 0, 4)}, bytes(6)), "2 bytes after the last tensor"),
    (header_blob({"a": f32([3], 0, 8)}, bytes(8)), "needs 12 bytes but data_offsets span 8"),
    (header_blob({"a": f32([True, 2], 0, 8)}, bytes(8)), "tensor 'a': shape [True, 2]"),
    (header_blob({"a": f32([2], 0, 8)}, bytes(4)), "<= 4 (the size of the data section)"),
    (header_blob({"a": {**f32([2], 0, 8), "extra": 1}}, bytes(8)), "expected exactly"),
    (header_blob({"a": {**f32([2], 0, 8), "dtype": "F128"}}, bytes(8)), "unknown dtype 'F128'"),
    (header_blob({"a": {"dtype": "F4", "shape": [3], "data_offsets": [0, 2]}}, bytes(2)), "whole number of bytes"),
    (header_blob({"a": f32([2**63, 4, 0], 0, 0)}), "overflows a 64-bit element count"),
    (header_blob({"__metadata__": {"k": 1}}), "__metadata__ must map strings to strings"),
    (header_blob('{"a": 1, "a": 2}'), "duplicate key 'a'"),
    (header_blob('{"\\ud800": 1}'), "unpaired surrogate"),
    (header_blob('{"a": {"dtype": "F32", "shape": [NaN], "data_offsets": [0, 0]}}'), "NaN is not JSON"),
    (struct.pack("<Q", 3) + b"\xff{}", "not UTF-8"),
]


@pytest.mark.parametrize(("blob", "words"), SAFETENSORS_CASES, ids=[words for _, words in SAFETENSORS_CASES])
def test_each_safetensors_rule(blob, words):
    with pytest.raises(InputError) as caught:
        parse_safetensors_header(blob, len(blob), "model.safetensors")
    message = str(caught.value)
    assert words in message and message.startswith("model.safetensors: ") and "What to do:" in message


def test_header_length_past_the_limit_is_refused_without_reading_it():
    head = struct.pack("<Q", MAX_SAFETENSORS_HEADER + 1)
    with pytest.raises(InputError, match="header length"):
        parse_safetensors_header(head, 2**40)


def test_check_reads_only_the_header(tmp_path):
    path = tmp_path / "big.safetensors"
    path.write_bytes(header_blob({"w": {"dtype": "U8", "shape": [2**32], "data_offsets": [0, 2**32]}}))
    with path.open("r+b") as f:  # a sparse 4 GiB data section: reading it would take seconds and 4 GiB
        f.truncate(path.stat().st_size + 2**32)
    assert check_safetensors(path)["w"].end == 2**32


def test_only_regular_files_are_opened(tmp_path):
    os.mkfifo(tmp_path / "pipe")  # opening a FIFO for reading would block until a writer comes
    for path, words in [(tmp_path / "pipe", "not a regular file"), (tmp_path, "not a regular file"),
                        (tmp_path / "missing", "no such")]:
        with pytest.raises(InputError, match=words):
            check_safetensors(path)


# --- zip member names ---------------------------------------------------------------------------------


def escapes(name: str) -> bool:
    """An independent opinion: would extracting `name` under a folder land outside it, on any OS?"""
    unified = name.replace("\\", "/")
    normal = posixpath.normpath(unified) if unified else ""
    return (not name or "\x00" in name or unified.startswith("/") or name[1:2] == ":"
            or normal == ".." or normal.startswith("../"))


hostile_parts = st.sampled_from(["a", "b.bin", "..", ".", "", "C:", "/", "\\", "\x00", "..\\", "../", "...", "a:b"])
hostile_names = st.lists(hostile_parts, max_size=6).map("".join) | st.text(max_size=12)
safe_names = st.lists(st.text("abcXYZ09._-", min_size=1, max_size=6).filter(lambda p: p != ".."),
                      min_size=1, max_size=4).map("/".join)


@FUZZ
@seed(SEED)
@given(hostile_names)
def test_member_names_that_escape_are_refused(name):
    note(REPRO)
    reason = check_zip_member_name(name)
    assert reason is None or isinstance(reason, str)
    if escapes(name):
        assert reason is not None


@FUZZ
@seed(SEED)
@given(safe_names)
def test_plain_relative_member_names_pass(name):
    note(REPRO)
    assert check_zip_member_name(name) is None


@pytest.mark.parametrize("name", ["../x", "a/../../b", "/etc/passwd", "C:\\x", "c:x", "a\\..\\b", "x\x00y", "",
                                  "\\\\server\\share\\x", "a/..", ".."])
def test_crafted_member_names_are_refused(name):
    assert check_zip_member_name(name)


@pytest.mark.parametrize("name", ["archive/data/0", "model.weights.h5", "a/./b", "dir/", "..hidden", "a..b"])
def test_ordinary_member_names_pass(name):
    assert check_zip_member_name(name) is None


# --- zip archives -----------------------------------------------------------------------------------


def build_zip(members: list[tuple[str, bytes, bool]]) -> bytes:
    buffer = BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w") as archive:
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names; they are the point
        for name, payload, is_link in members:
            info = zipfile.ZipInfo(name)
            if is_link:
                info.external_attr = 0o120777 << 16
            archive.writestr(info, payload)
    return buffer.getvalue()


zip_members = st.lists(st.tuples(st.sampled_from(["a", "b/c", "b/../../c", "/abs", "d\\..\\..\\e", "C:x", "f/"])
                                 | st.text(max_size=8).filter(lambda n: "\x00" not in n),
                                 st.binary(max_size=16), st.sampled_from([False, False, False, True])),
                       max_size=6)


@FUZZ
@seed(SEED)
@given(zip_members, st.integers(1, 8))
def test_zips_with_hostile_members(workdir, members, max_members):
    note(REPRO)
    path = workdir / "fuzz.zip"
    path.write_bytes(build_zip(members))
    names = [name for name, _, _ in members]
    refused = (any(check_zip_member_name(n) for n in names) or len(set(names)) < len(names)
               or any(is_link for _, _, is_link in members) or len(members) > max_members)
    if refused:
        with pytest.raises(InputError):
            check_zip(path, max_members=max_members)
    else:
        assert check_zip(path, max_members=max_members) == names


@FUZZ
@seed(SEED)
@given(st.binary(max_size=300) | st.builds(lambda b: b"PK\x03\x04" + b, st.binary(max_size=300)))
def test_random_bytes_are_not_a_zip(workdir, blob):
    note(REPRO)
    path = workdir / "random.zip"
    path.write_bytes(blob)
    try:
        names = check_zip(path)
    except InputError:
        return
    assert isinstance(names, list)


@FUZZ
@seed(SEED)
@given(st.data())
def test_corrupted_zips(workdir, data):
    note(REPRO)
    blob = bytearray(build_zip([("a/x.bin", b"x" * 40, False), ("b", b"", False), ("c.txt", b"hello" * 9, False)]))
    for _ in range(data.draw(st.integers(1, 4), label="flips")):
        at = data.draw(st.integers(0, len(blob) - 1), label="at")
        blob[at] = data.draw(st.integers(0, 255), label="byte")
    path = workdir / "corrupt.zip"
    path.write_bytes(bytes(blob))
    try:
        names = check_zip(path, what="Keras archive")
    except InputError as exc:
        assert str(exc).startswith(f"{path}: ")
        return
    assert all(check_zip_member_name(n) is None for n in names) and len(set(names)) == len(names)


def _patch_central(blob: bytes, field_offset: int, fmt: str, value: int, entry: int = 0) -> bytes:
    """Overwrite a field of the `entry`-th central-directory record."""
    at = -1
    for _ in range(entry + 1):
        at = blob.index(b"PK\x01\x02", at + 1)
    return blob[:at + field_offset] + struct.pack(fmt, value) + blob[at + field_offset + struct.calcsize(fmt):]


def test_zip_rules_one_by_one(tmp_path):
    def refused(blob: bytes, words: str, **limits) -> None:
        path = tmp_path / "case.zip"
        path.write_bytes(blob)
        with pytest.raises(InputError, match=words) as caught:
            check_zip(path, what="PyTorch checkpoint", **limits)
        assert "PyTorch checkpoint" in str(caught.value) and "What to do:" in str(caught.value)

    refused(build_zip([("a/../../evil", b"", False)]), r"member 'a/\.\./\.\./evil' .* '\.\.' component")
    refused(build_zip([("link", b"/etc/passwd", True)]), "'link' .* symbolic link")
    refused(build_zip([("w", b"1", False), ("w", b"2", False)]), "two members named 'w'")
    refused(build_zip([(str(i), b"", False) for i in range(4)]), "4 members", max_members=3)
    refused(build_zip([("xAy", b"", False)]).replace(b"xAy", b"x\x00y"), "NUL")
    refused(_patch_central(build_zip([("secret", b"data", False)]), 8, "<H", 1), "'secret' .* encrypted")
    refused(build_zip([("a", b"12345", False)]), "unpacks to 5 bytes", max_total_bytes=4)
    two = build_zip([("first", b"x" * 100, False), ("second", b"y" * 100, False)])
    # Point the second entry at the first member's local header: data shared by two entries.
    refused(_patch_central(two, 42, "<I", 0, entry=1), "overlaps")
    end = two.rindex(b"PK\x05\x06")
    refused(two[:end + 10] + struct.pack("<H", 60000) + two[end + 12:], "declares 60000 members", max_members=100)


def test_zip_bomb_ratio(tmp_path):
    path = tmp_path / "bomb.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("model.weights.h5", bytes(20 * 1024**2))  # deflates about 1030 to 1
    with pytest.raises(InputError, match="'model.weights.h5' .* more than 1000 times .*zip bomb"):
        check_zip(path, what="Keras archive")
    assert check_zip(path, max_ratio=2000) == ["model.weights.h5"]


def test_unpacked_limit_from_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "a.npz"
    path.write_bytes(build_zip([("x.npy", bytes(200), False)]))
    monkeypatch.delenv("PORTTAX_MAX_UNPACKED_BYTES", raising=False)
    assert check_zip(path) == ["x.npy"]
    monkeypatch.setenv("PORTTAX_MAX_UNPACKED_BYTES", "100")
    with pytest.raises(InputError, match="unpacks to 200 bytes.*limit of 100") as caught:
        check_zip(path)
    assert "PORTTAX_MAX_UNPACKED_BYTES" in str(caught.value)
    monkeypatch.setenv("PORTTAX_MAX_UNPACKED_BYTES", "lots")
    with pytest.raises(InputError, match="not a whole number of bytes"):
        check_zip(path)


def test_real_checkpoints_pass(tmp_path):
    import torch

    torch.save({"w": torch.zeros(3, 4), "b": torch.ones(2)}, tmp_path / "m.pt")
    assert "m/data.pkl" in check_zip(tmp_path / "m.pt", what="PyTorch checkpoint")
    np.savez_compressed(tmp_path / "c.npz", x=np.zeros(1000))
    assert check_zip(tmp_path / "c.npz") == ["x.npy"]


# --- ONNX external data ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A model folder with files, a subfolder and symlinks that stay inside or lead out."""
    base = tmp_path_factory.mktemp("external")
    root, outside = base / "model", base / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "a.bin").write_bytes(bytes(64))
    (root / "sub" / "b.bin").write_bytes(bytes(64))
    (outside / "secret").write_bytes(b"secret")
    os.symlink(root / "sub", root / "in_link")
    os.symlink(outside, root / "out_link")
    os.symlink(outside / "secret", root / "out_file")
    os.symlink(root / "loop", root / "loop")
    return root


location_parts = st.sampled_from(["a.bin", "sub", "b.bin", "..", ".", "", "in_link", "out_link", "out_file",
                                  "loop", "secret", "x", "C:", "\x00"])


@FUZZ
@seed(SEED)
@given(st.sampled_from(["", "", "/", "\\", "C:", "//"]), st.lists(location_parts, max_size=5),
       st.sampled_from(["/", "\\"]))
def test_external_locations_stay_inside(folder, prefix, parts, separator):
    note(REPRO)
    location = prefix + separator.join(parts)
    real_root = Path(os.path.realpath(folder))
    try:
        target = resolve_external_location(folder, location)
    except ValueError as exc:
        assert str(exc)
        return
    assert target != real_root and target.is_relative_to(real_root)
    assert os.path.realpath(target) == str(target)
    components = Path(location).parts  # split as this OS splits: a backslash is a separator on Windows only
    assert not components or components[0] not in ("out_link", "out_file")  # both lead out of the folder


def _onnx_with_external(folder: Path, entries: list[tuple[str, str]], in_subgraph: bool = False) -> Path:
    import onnx
    from onnx import TensorProto, helper

    weight = helper.make_tensor("w1", TensorProto.FLOAT, [4], [0.0] * 4)
    weight.ClearField("float_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in entries:
        item = weight.external_data.add()
        item.key, item.value = key, value
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    if in_subgraph:  # the weight sits in an If branch, not in the main graph's initializers
        branch = helper.make_graph([helper.make_node("Identity", ["w1"], ["z"])], "branch", [],
                                   [helper.make_tensor_value_info("z", TensorProto.FLOAT, [4])], [weight])
        cond = helper.make_tensor("cond", TensorProto.BOOL, [], [True])
        nodes = [helper.make_node("If", ["cond"], ["z"], then_branch=branch, else_branch=branch),
                 helper.make_node("Add", ["x", "z"], ["y"])]
        graph = helper.make_graph(nodes, "g", [x], [y], [cond])
    else:
        graph = helper.make_graph([helper.make_node("Add", ["x", "w1"], ["y"])], "g", [x], [y], [weight])
    path = folder / "model.onnx"
    onnx.save(helper.make_model(graph), str(path))
    return path


@pytest.mark.parametrize(("entries", "words"), [
    ([("location", "../outside/secret")], r"outside the model folder .* '\.\.' component"),
    ([("location", "/etc/passwd")], "outside the model folder .* absolute path"),
    ([("location", "C:\\weights.bin")], "drive letter"),
    ([("location", "out_file")], "outside the model folder .* resolves to"),
    ([("location", "out_link/secret")], "outside the model folder .* resolves to"),
    ([("location", "")], "location is empty"),
    ([("offset", "0")], "no location"),
    ([("location", "a.bin"), ("location", "../x")], "names 'location' twice"),
    ([("location", "a.bin"), ("offset", "-1")], "offset '-1' is not a non-negative integer"),
    ([("location", "a.bin"), ("length", "1e3")], "length '1e3'"),
    ([("location", "a.bin"), ("offset", "60"), ("length", "16")], r"runs past the end of 'a.bin' \(64 bytes\)"),
    ([("location", "missing.bin")], "'missing.bin' does not exist"),
])
def test_onnx_external_data_rules(folder, entries, words):
    for in_subgraph in (False, True):
        path = _onnx_with_external(folder, entries, in_subgraph)
        with pytest.raises(InputError, match=words) as caught:
            check_onnx_external_data(path)
        assert "tensor 'w1'" in str(caught.value)


def test_onnx_external_data_inside_the_folder_passes(folder):
    check_onnx_external_data(_onnx_with_external(folder, [("location", "a.bin"), ("offset", "48"), ("length", "16")]))
    check_onnx_external_data(_onnx_with_external(folder, [("location", "in_link/b.bin")], in_subgraph=True))


def test_onnx_unreadable_and_old_import_path(tmp_path):
    from porttax.parity.onnx_safety import check_external_data

    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\xff" * 64)
    with pytest.raises(InputError, match="not a readable ONNX model"):
        check_external_data(path)

