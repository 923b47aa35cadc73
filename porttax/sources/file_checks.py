"""Structural checks on model files from strangers, run before any framework parses them.

A model file is input from whoever made it. The parsers that read them were written for files their
own library wrote: the safetensors loader trusts a header to size its buffers, zip readers follow
member names onto the filesystem and expand whatever sizes the central directory declares, and an ONNX
loader reads any path its external-data entries name. Each check here reads only the small structural
part of a file (a safetensors header, a zip central directory, an ONNX protobuf without its data),
refuses what a well-formed file never contains, and raises `InputError` naming the tensor or member
and what to do. Nothing is allocated from a declared size and nothing from the file is executed
before these checks pass; any other exception escaping them is a bug (tests/test_fuzz_file_checks.py
fuzzes for it).
"""

from __future__ import annotations

import json
import ntpath
import os
import re
import stat
import struct
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from porttax.errors import InputError, brief

# The safetensors Rust loader refuses headers over 100_000_000 bytes (MAX_HEADER_SIZE in
# safetensors/src/tensor.rs); using its limit, not 100 MiB, keeps us at least as strict as it is.
MAX_SAFETENSORS_HEADER = 100_000_000
MAX_ZIP_MEMBERS = 100_000
MAX_ZIP_TOTAL_BYTES = 256 * 1024**3
MAX_ZIP_RATIO = 1000.0
MAX_UNPACKED_ENV = "PORTTAX_MAX_UNPACKED_BYTES"
BOMB_MIN_BYTES = 16 * 1024**2  # a member this small is not worth calling a bomb, whatever its ratio
# zipfile builds an object of a few hundred bytes per central-directory entry (46 bytes at least), so
# the directory's size bounds the memory the parse takes; real entries average well under 200 bytes.
CENTRAL_BYTES_PER_MEMBER = 1024

# Bits per element of every dtype the safetensors format defines (Dtype::bitsize in
# safetensors/src/tensor.rs, v0.8). F4 and F6 pack several elements into a byte.
SAFETENSORS_DTYPE_BITS = {
    "BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8,
    "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32,
    "C64": 64, "F64": 64, "I64": 64, "U64": 64,
}
_TENSOR_KEYS = frozenset({"dtype", "shape", "data_offsets"})
_U64_MAX = 2**64 - 1  # the Rust loader keeps sizes in usize; anything past it overflows there

_SAFETENSORS_HINT = "re-save the tensors with safetensors.save_file, or ask whoever made the file for a clean copy"
_ZIP_HINT = "re-save the model with its framework's own save function; do not load a hand-edited archive"
_ONNX_HINT = "keep external-data files next to the .onnx file and name them relatively"


class SafetensorsEntry(NamedTuple):
    """One tensor of a safetensors header; start and end are offsets into the data section."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


def show_value(value: object, limit: int = 120) -> str:
    """repr() cut to a length fit for a message: names and values in a hostile file can be megabytes."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def open_regular(path: str | os.PathLike, what: str) -> BinaryIO:
    """Open a regular file for reading; a FIFO or device would block or never end, so refuse those."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise InputError(f"no such {what}", path=str(path), hint="check the path") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise InputError(f"cannot open the {what}: {exc}", path=str(path)) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise InputError(f"the {what} is not a regular file", path=str(path),
                         hint="pass the model file itself, not a directory, pipe or device")
    return os.fdopen(fd, "rb")


# --- safetensors ---------------------------------------------------------------------------------


def check_safetensors(path: str | os.PathLike) -> dict[str, SafetensorsEntry]:
    """Check a .safetensors file's header against its size; read only the header, never the data."""
    with open_regular(path, "safetensors file") as f:
        try:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            if len(head) == 8:
                (n,) = struct.unpack("<Q", head)
                if 0 < n <= MAX_SAFETENSORS_HEADER and 8 + n <= size:
                    head += f.read(n)
        except OSError as exc:
            raise InputError(f"cannot read the safetensors file: {exc}", path=str(path)) from None
    return parse_safetensors_header(head, size, str(path))


def parse_safetensors_header(head: bytes, file_size: int, path: str = "<bytes>") -> dict[str, SafetensorsEntry]:
    """Validate a safetensors header given the file's first bytes and its total size.

    `head` is at least the first 8 + N bytes of the file (N: the header length it declares). Returns the
    tensors by name. The rules are those of the safetensors Rust loader, plus a few it leaves out:
    duplicate JSON keys, unknown keys in a tensor entry and a non-object `__metadata__` are refused here.
    """
    if len(head) < 8 or file_size < 8:
        raise InputError(f"file is {min(len(head), max(file_size, 0))} bytes, too short for the 8-byte "
                         "header length of a safetensors file", path=path, hint=_SAFETENSORS_HINT)
    (n,) = struct.unpack_from("<Q", head)
    if n == 0 or n > MAX_SAFETENSORS_HEADER:
        raise InputError(f"header length {n} is outside 1..{MAX_SAFETENSORS_HEADER} bytes", path=path,
                         hint=_SAFETENSORS_HINT)
    if 8 + n > file_size:
        raise InputError(f"header claims {n} bytes but the file has only {file_size - 8} after the length",
                         path=path, hint="the file is truncated or not safetensors; download it again")
    if 8 + n > len(head):
        raise InputError(f"header claims {n} bytes but only {len(head) - 8} were read", path=path,
                         hint="the file changed while it was read; try again")
    header = _parse_header_json(head[8:8 + n], path)
    data_size = file_size - 8 - n
    entries = {name: _tensor_entry(name, value, data_size, path)
               for name, value in header.items() if name != "__metadata__"}
    _check_layout(entries, data_size, path)
    return entries


class _HeaderJsonError(ValueError):
    """JSON the standard parser accepts but a safetensors header must not hold."""


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A duplicate key is read as the last value by both Python and serde, but two readers of one
    # header could still disagree; refuse rather than guess.
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _HeaderJsonError(f"duplicate key {show_value(key)}")
        for text in (key, value):
            if isinstance(text, str) and not _encodes_as_utf8(text):
                raise _HeaderJsonError(f"string {show_value(text)} holds an unpaired surrogate escape")
        out[key] = value
    return out


def _encodes_as_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _reject_constant(name: str) -> Any:
    raise _HeaderJsonError(f"{name} is not JSON")


def _parse_header_json(raw: bytes, path: str) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"header is not UTF-8 (byte {exc.start})", path=path, hint=_SAFETENSORS_HINT) from None
    try:
        header = json.loads(text, object_pairs_hook=_object_without_duplicates, parse_constant=_reject_constant)
    except RecursionError:
        raise InputError("header JSON nests too deeply", path=path, hint=_SAFETENSORS_HINT) from None
    except MemoryError:
        raise InputError("header JSON is too large to parse", path=path, hint=_SAFETENSORS_HINT) from None
    except ValueError as exc:  # JSONDecodeError, _HeaderJsonError, int() digit limits
        raise InputError(f"header is not valid JSON: {exc}", path=path, hint=_SAFETENSORS_HINT) from None
    if not isinstance(header, dict):
        raise InputError(f"header is a JSON {type(header).__name__}, not an object", path=path,
                         hint=_SAFETENSORS_HINT)
    if "__metadata__" in header:
        metadata = header["__metadata__"]
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise InputError("__metadata__ must map strings to strings", path=path, hint=_SAFETENSORS_HINT)
    return header


def _tensor_entry(name: str, value: Any, data_size: int, path: str) -> SafetensorsEntry:
    def bad(reason: str) -> InputError:
        return InputError(f"tensor {show_value(name)}: {reason}", path=path, hint=_SAFETENSORS_HINT)

    if not isinstance(value, dict):
        raise bad(f"entry is a JSON {type(value).__name__}, not an object")
    if value.keys() != _TENSOR_KEYS:
        raise bad(f"entry has keys {show_value(sorted(value))}, expected exactly {sorted(_TENSOR_KEYS)}")
    dtype, shape, offsets = value["dtype"], value["shape"], value["data_offsets"]
    if not isinstance(dtype, str) or dtype not in SAFETENSORS_DTYPE_BITS:
        raise bad(f"unknown dtype {show_value(dtype)}")
    if not isinstance(shape, list) or not all(type(d) is int and 0 <= d <= _U64_MAX for d in shape):
        raise bad(f"shape {show_value(shape)} is not a list of non-negative integers")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int for o in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= data_size):
        raise bad(f"data_offsets {show_value(offsets)} are not [begin, end] with 0 <= begin <= end <= {data_size} "
                  "(the size of the data section)")
    # Fold like the Rust loader (checked_mul from 1, left to right), so a shape that overflows there,
    # such as [2**63, 4, 0], is refused here too even though its element count is 0.
    count = 1
    for d in shape:
        count *= d
        if count > _U64_MAX:
            raise bad(f"shape {show_value(shape)} overflows a 64-bit element count")
    bits = count * SAFETENSORS_DTYPE_BITS[dtype]
    if bits > _U64_MAX:
        raise bad(f"shape {show_value(shape)} of {dtype} overflows a 64-bit bit count")
    if bits % 8:
        raise bad(f"{count} elements of {dtype} do not fill a whole number of bytes")
    begin, end = offsets
    if end - begin != bits // 8:
        raise bad(f"shape {show_value(shape)} of {dtype} needs {bits // 8} bytes but data_offsets span {end - begin}")
    return SafetensorsEntry(name, dtype, tuple(shape), begin, end)


def _check_layout(entries: dict[str, SafetensorsEntry], data_size: int, path: str) -> None:
    """Spans must tile the data section exactly: no overlap, no gap, nothing after the last tensor.

    The Rust loader requires the same (Metadata::validate sorts by data_offsets and wants each begin to
    equal the previous end; read_metadata then wants the last end to be the data size, else
    "MetadataIncompleteBuffer"). Overlaps would let two tensors alias one buffer; gaps and a tail are
    room to hide bytes that no tensor accounts for.
    """
    cursor, previous = 0, None
    for entry in sorted(entries.values(), key=lambda e: (e.start, e.end)):
        if entry.start < cursor:
            raise InputError(f"tensor {show_value(entry.name)} (bytes {entry.start}..{entry.end}) overlaps tensor "
                             f"{show_value(previous)} (ends at {cursor})", path=path, hint=_SAFETENSORS_HINT)
        if entry.start > cursor:
            raise InputError(f"{entry.start - cursor} bytes before tensor {show_value(entry.name)} belong to no tensor "
                             f"(gap at {cursor}..{entry.start})", path=path, hint=_SAFETENSORS_HINT)
        cursor, previous = entry.end, entry.name
    if cursor != data_size:
        raise InputError(f"the data section has {data_size - cursor} bytes after the last tensor that belong "
                         "to no tensor", path=path, hint=_SAFETENSORS_HINT)


# --- zip archives (.pt/.pth/.pt2, .keras, .npz) ----------------------------------------------------


def check_zip_member_name(name: str) -> str | None:
    """Why extracting a member of this name could write outside the target folder, or None if it cannot."""
    if not name:
        return "the name is empty"
    if "\x00" in name:
        return "the name holds a NUL byte"
    if name.startswith(("/", "\\")):
        return "the name is an absolute path"
    if ntpath.splitdrive(name)[0]:
        return "the name starts with a drive letter"
    if ".." in re.split(r"[\\/]", name):
        return "the name has a '..' component"
    return None


def check_zip(path: str | os.PathLike, *, what: str = "archive", max_members: int = MAX_ZIP_MEMBERS,
              max_total_bytes: int = MAX_ZIP_TOTAL_BYTES, max_ratio: float = MAX_ZIP_RATIO) -> list[str]:
    """Check a zip's central directory; return its member names.

    Refuses what no framework writes and what turns unpacking into an attack: unsafe or duplicate names,
    symlinks, encryption, more than `max_members` members, more than `max_total_bytes` declared unpacked
    (the PORTTAX_MAX_UNPACKED_BYTES environment variable, when set, replaces that limit), members whose
    data overlap (the overlapping-file zip bomb), and members over 16 MiB that expand more than
    `max_ratio` times. Sizes are as declared: zip readers stop at the declared size.
    """
    max_total_bytes = _unpacked_limit(max_total_bytes)
    with open_regular(path, what) as f:
        declared, directory_bytes = _end_record(f, what, str(path))
        if declared > max_members:
            raise InputError(f"the {what} declares {declared} members, more than the {max_members} allowed",
                             path=str(path), hint=_ZIP_HINT)
        if directory_bytes > max_members * CENTRAL_BYTES_PER_MEMBER:
            raise InputError(f"the {what} has a central directory of {directory_bytes} bytes, more than "
                             f"{max_members} members take", path=str(path), hint=_ZIP_HINT)
        try:
            with zipfile.ZipFile(f) as archive:
                infos, start_dir = archive.infolist(), archive.start_dir
        except Exception as exc:  # zipfile raises BadZipFile, struct.error, ValueError, ... on corrupt input
            raise InputError(f"not a readable {what} (zip): {exc}", path=str(path), hint=_ZIP_HINT) from None
    if len(infos) > max_members:
        raise InputError(f"the {what} has {len(infos)} members, more than the {max_members} allowed",
                         path=str(path), hint=_ZIP_HINT)
    names: set[str] = set()
    total = 0
    for info in infos:
        _check_member(info, what, str(path), max_ratio)
        if info.filename in names:
            raise InputError(f"the {what} has two members named {show_value(info.filename)}; which one a reader takes "
                             "is up to the reader", path=str(path), hint=_ZIP_HINT)
        names.add(info.filename)
        total += info.file_size
    if total > max_total_bytes:
        raise InputError(f"the {what} unpacks to {total} bytes, more than the limit of {max_total_bytes}",
                         path=str(path),
                         hint=f"if you trust the file and have the space, raise the limit with {MAX_UNPACKED_ENV}")
    _check_no_overlap(infos, start_dir, what, str(path))
    return [info.filename for info in infos]


def _unpacked_limit(default: int) -> int:
    text = os.environ.get(MAX_UNPACKED_ENV)
    if text is None:
        return default
    if not re.fullmatch(r"\s*[0-9]{1,30}\s*", text):
        raise InputError(f"{MAX_UNPACKED_ENV}={show_value(text)} is not a whole number of bytes",
                         hint=f"set it like {MAX_UNPACKED_ENV}=300000000000, or unset it")
    return int(text)


def _end_record(f: BinaryIO, what: str, path: str) -> tuple[int, int]:
    """(member count, central-directory bytes) as the end-of-central-directory record declares them.

    Read before zipfile builds one object per entry, which for a hostile directory can take many times
    the file's size in memory.
    """
    size = f.seek(0, os.SEEK_END)
    tail_start = max(0, size - (22 + 0xFFFF))  # the record (22 bytes) plus the longest comment
    f.seek(tail_start)
    tail = f.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        raise InputError(f"not a readable {what} (zip): no end-of-central-directory record", path=path,
                         hint=_ZIP_HINT)
    count, directory_bytes = struct.unpack_from("<HI", tail, at + 10)
    at += tail_start
    if at >= 76:  # ZIP64: a 56-byte record and a 20-byte locator sit just before the classic record
        f.seek(at - 76)
        block = f.read(76)
        if block[:4] == b"PK\x06\x06" and block[56:60] == b"PK\x06\x07":
            count64, directory_bytes64 = struct.unpack_from("<QQ", block, 32)
            count, directory_bytes = max(count, count64), max(directory_bytes, directory_bytes64)
    f.seek(0)
    return count, directory_bytes


def _check_member(info: zipfile.ZipInfo, what: str, path: str, max_ratio: float) -> None:
    # orig_filename: ZipInfo cuts `filename` at the first NUL, which would hide the NUL from the check.
    reason = check_zip_member_name(info.orig_filename)
    if reason:
        raise InputError(f"member {show_value(info.orig_filename)} of the {what} is unsafe: {reason}", path=path,
                         hint=_ZIP_HINT)
    if stat.S_ISLNK(info.external_attr >> 16):
        raise InputError(f"member {show_value(info.filename)} of the {what} is a symbolic link", path=path, hint=_ZIP_HINT)
    if info.flag_bits & 0x1:
        raise InputError(f"member {show_value(info.filename)} of the {what} is encrypted", path=path,
                         hint="decrypt the archive first; porttax does not read encrypted members")
    if info.file_size > BOMB_MIN_BYTES and info.file_size > max_ratio * max(info.compress_size, 1):
        raise InputError(f"member {show_value(info.filename)} of the {what} expands from {info.compress_size} to "
                         f"{info.file_size} bytes, more than {max_ratio:g} times (a zip bomb)", path=path,
                         hint=_ZIP_HINT)


def _check_no_overlap(infos: list[zipfile.ZipInfo], start_dir: int, what: str, path: str) -> None:
    """Each member's local header (at least 30 bytes) and data must end before the next member starts.

    Central-directory entries that share or overlap data let a few KiB declare gigabytes in members of
    modest ratio each (D. Fifield, "A better zip bomb", 2019).
    """
    ordered = sorted(infos, key=lambda i: i.header_offset)
    for info, following in zip(ordered, ordered[1:] + [None]):
        limit = following.header_offset if following is not None else start_dir
        if info.header_offset + 30 + info.compress_size > limit:
            other = show_value(following.filename) if following is not None else "the central directory"
            raise InputError(f"member {show_value(info.filename)} of the {what} overlaps {other}", path=path,
                             hint=_ZIP_HINT)


# --- ONNX external data ------------------------------------------------------------------------------


def resolve_external_location(root: Path, location: str) -> Path:
    """The real path an external-data location names under `root`; ValueError if it could leave `root`.

    '..' is refused outright, not only when it escapes: a reader that normalises the path as text and
    one that follows symlinks first can land on different files for `link/../x`.
    """
    if not location:
        raise ValueError("the location is empty")
    if "\x00" in location:
        raise ValueError("the location holds a NUL byte")
    if location.startswith(("/", "\\")):
        raise ValueError("the location is an absolute path")
    if ntpath.splitdrive(location)[0]:
        raise ValueError("the location starts with a drive letter")
    if ".." in re.split(r"[\\/]", location):
        raise ValueError("the location has a '..' component")
    try:
        real_root = Path(os.path.realpath(root))
        target = Path(os.path.realpath(real_root / location))
    except (OSError, RecursionError) as exc:
        raise ValueError(f"the location cannot be resolved: {exc}") from None
    if target == real_root or not target.is_relative_to(real_root):
        raise ValueError(f"the location resolves to {target}, not to a file inside {real_root}")
    return target


def check_onnx_external_data(path: str | os.PathLike) -> None:
    """Raise InputError unless every external tensor of the model names an existing file inside the
    model's folder, with offset and length inside that file. Reads the protobuf only, not the data."""
    import onnx

    path = Path(path)
    with open_regular(path, "ONNX model") as f:
        try:
            model = onnx.load_model_from_string(f.read())  # bytes in, so no external data is followed
        except Exception as exc:  # protobuf DecodeError, OSError and friends
            raise InputError(f"not a readable ONNX model: {brief(exc)}", path=str(path),
                             hint="re-export the model (torch.onnx.export, or onnx.save on a ModelProto)") from None
    for tensor in _onnx_tensors(model):
        if tensor.external_data or tensor.data_location == onnx.TensorProto.EXTERNAL:
            _check_external_tensor(tensor, path)


def _onnx_tensors(model: Any) -> list[Any]:
    """Every TensorProto in the model: initializers, sparse initializers and tensor attributes, in the main
    graph, in subgraphs (If/Loop/Scan bodies), in functions and in training graphs."""
    tensors: list[Any] = []
    node_lists = [f.node for f in model.functions]
    graphs = [model.graph]
    for info in model.training_info:
        graphs += [info.initialization, info.algorithm]
    while graphs or node_lists:
        if graphs:
            graph = graphs.pop()
            tensors.extend(graph.initializer)
            for sparse in graph.sparse_initializer:
                tensors += [sparse.values, sparse.indices]
            node_lists.append(graph.node)
            continue
        for node in node_lists.pop():
            for attribute in node.attribute:
                if attribute.HasField("t"):
                    tensors.append(attribute.t)
                tensors.extend(attribute.tensors)
                sparse_tensors = list(attribute.sparse_tensors)
                if attribute.HasField("sparse_tensor"):
                    sparse_tensors.append(attribute.sparse_tensor)
                for sparse in sparse_tensors:
                    tensors += [sparse.values, sparse.indices]
                if attribute.HasField("g"):
                    graphs.append(attribute.g)
                graphs.extend(attribute.graphs)
    return tensors


def _check_external_tensor(tensor: Any, path: Path) -> None:
    def bad(message: str, hint: str = _ONNX_HINT) -> InputError:
        return InputError(f"tensor {show_value(tensor.name)}: {message}", path=str(path), hint=hint)

    entries: dict[str, str] = {}
    for entry in tensor.external_data:
        if entry.key in entries:
            raise bad(f"external data names {show_value(entry.key)} twice")
        entries[entry.key] = entry.value
    location = entries.get("location")
    if location is None:
        raise bad("external data has no location")
    try:
        target = resolve_external_location(path.parent, location)
    except ValueError as exc:
        raise bad(f"points its external data outside the model folder ({show_value(location)}): {exc}") from None
    numbers = {}
    for key in ("offset", "length"):
        if key in entries:
            if not re.fullmatch(r"[0-9]{1,20}", entries[key]):
                raise bad(f"external-data {key} {show_value(entries[key])} is not a non-negative integer")
            numbers[key] = int(entries[key])
    try:
        info = target.stat()
    except OSError:
        info = None
    if info is None or not stat.S_ISREG(info.st_mode):
        raise bad(f"external-data file {show_value(location)} does not exist next to the model (or is not a file)",
                  hint="copy the external-data files into the folder of the .onnx file")
    size = info.st_size
    offset, length = numbers.get("offset", 0), numbers.get("length", 0)
    if offset + length > size:
        raise bad(f"external data at offset {offset} with length {length} runs past the end of "
                  f"{show_value(location)} ({size} bytes)", hint="the external-data file is truncated or not the one "
                  "this model was saved with")
