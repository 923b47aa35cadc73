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
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from porttax._frameworks import import_torch

_TORCH_DTYPES = {
    "float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16", "int64": "I64", "int32": "I32",
    "int16": "I16", "int8": "I8", "uint8": "U8", "uint16": "U16", "uint32": "U32", "uint64": "U64",
    "bool": "BOOL", "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2",
}
_ELEMENT_SIZE = {"float64": 8, "int64": 8, "uint64": 8, "float32": 4, "int32": 4, "uint32": 4, "float16": 2,
                 "bfloat16": 2, "int16": 2, "uint16": 2, "int8": 1, "uint8": 1, "bool": 1, "float8_e4m3fn": 1,
                 "float8_e5m2": 1}


def write_safetensors(tensors: Mapping[str, Any], path: str | os.PathLike[str],
                      metadata: Mapping[str, str] | None = None) -> None:
    """Write torch tensors (or NumPy arrays) as safetensors, byte-identical for identical input."""
    torch = import_torch()
    held = {name: (v if isinstance(v, torch.Tensor) else torch.from_numpy(v)).detach() for name, v in tensors.items()}
    write_safetensors_lazily([LazyEntry(name, str(t.dtype).removeprefix("torch."), tuple(t.shape),
                                        lambda t=t: t) for name, t in held.items()], path, metadata)


@dataclass(frozen=True)
class LazyEntry:
    """One tensor to write: its name, dtype (torch's name), shape, and how to make it when its turn
    comes, so a writer holds one tensor at a time however large the model is."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    make: Callable[[], Any]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * _ELEMENT_SIZE[self.dtype]


def write_safetensors_lazily(entries: Sequence[LazyEntry], path: str | os.PathLike[str],
                             metadata: Mapping[str, str] | None = None) -> None:
    """The same file `write_safetensors` writes, each tensor made only when it is written."""
    torch = import_torch()
    ordered = sorted(entries, key=lambda e: (-_ELEMENT_SIZE.get(e.dtype, 1), e.name))
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in sorted(metadata.items())}
    offset = 0
    for e in ordered:
        dtype = _TORCH_DTYPES.get(e.dtype)
        if dtype is None:
            raise ValueError(f"tensor {e.name!r}: dtype {e.dtype} has no safetensors equivalent")
        header[e.name] = {"dtype": dtype, "shape": list(e.shape), "data_offsets": [offset, offset + e.nbytes]}
        offset += e.nbytes
    text = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for e in ordered:
            t = e.make()
            t = t if isinstance(t, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(t))
            if str(t.dtype).removeprefix("torch.") != e.dtype or tuple(t.shape) != tuple(e.shape):
                raise ValueError(f"tensor {e.name!r} was announced as {e.dtype}{list(e.shape)} but made as "
                                 f"{t.dtype}{list(t.shape)}")
            if t.numel():
                f.write(memoryview(t.contiguous().cpu().reshape(-1).view(torch.uint8).numpy()))
