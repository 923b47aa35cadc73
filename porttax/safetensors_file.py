"""Writing `.safetensors` files deterministically, one tensor at a time.

The `safetensors` library keeps `__metadata__` in a hash map, so the header's key order (and with it
the file's bytes) changes from run to run; CI that caches or compares artefacts by hash needs the
same bytes for the same weights. This writer sorts every key, and streams each tensor straight to
the file, so memory stays at one tensor, not the model. The layout is the library's: an 8-byte
little-endian header length, the JSON header padded with spaces to a multiple of 8, then the data,
largest element size first so every tensor stays aligned for memory-mapped readers.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

from porttax._frameworks import import_torch

_TORCH_DTYPES = {
    "float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16", "int64": "I64", "int32": "I32",
    "int16": "I16", "int8": "I8", "uint8": "U8", "uint16": "U16", "uint32": "U32", "uint64": "U64",
    "bool": "BOOL", "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2",
}


def write_safetensors(tensors: Mapping[str, Any], path: str | os.PathLike[str],
                      metadata: Mapping[str, str] | None = None) -> None:
    """Write torch tensors (or NumPy arrays) as safetensors, byte-identical for identical input."""
    torch = import_torch()
    entries: list[tuple[str, Any]] = []
    for name, value in tensors.items():
        t = value if isinstance(value, torch.Tensor) else torch.from_numpy(value)
        entries.append((name, t.detach()))
    entries.sort(key=lambda e: (-e[1].element_size(), e[0]))
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in sorted(metadata.items())}
    offset = 0
    for name, t in entries:
        dtype = _TORCH_DTYPES.get(str(t.dtype).removeprefix("torch."))
        if dtype is None:
            raise ValueError(f"tensor {name!r}: dtype {t.dtype} has no safetensors equivalent")
        size = t.numel() * t.element_size()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for _, t in entries:
            if t.numel():
                f.write(memoryview(t.contiguous().cpu().reshape(-1).view(torch.uint8).numpy()))
