"""Streaming a large checkpoint: parameters stay on torch's `meta` device, and each is read from its
safetensors file only when a converter needs its values, then dropped.

Why: the usual way — load every tensor, build the model, load the tensors into it, export, convert —
holds the model two or three times over (a 1.1B-parameter Llama is 4.4 GB in float32 per copy). With
streaming, `torch.export` captures the architecture on meta parameters (it only needs shapes), and the
torch → Keras converter reads each weight with `pread` into one NumPy array, transforms it and assigns
it to its Keras variable. The Keras model is then the only copy in memory; the checkpoint is read
through plain reads, not a memory map, so the page cache it fills is not counted against the process.

A streamed source has no runnable torch model until `materialize` reads every weight into it (parity
does that, after conversion, when the user asks for it). Only the direct road streams: the ONNX
exporter needs the weights in memory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from porttax._frameworks import import_torch
from porttax.errors import InputError

STREAM_THRESHOLD_BYTES = 1 << 30
_SLICE_BYTES = 8 << 20  # a streamed weight is read in slices of about this many bytes  # checkpoints this large stream by default (PORTTAX_STREAM=0/1 overrides)

# safetensors dtype → (NumPy dtype to read the bytes as, torch dtype name)
_DTYPES = {"F64": ("float64", "float64"), "F32": ("float32", "float32"), "F16": ("float16", "float16"),
           "BF16": ("uint16", "bfloat16"), "I64": ("int64", "int64"), "I32": ("int32", "int32"),
           "I16": ("int16", "int16"), "I8": ("int8", "int8"), "U8": ("uint8", "uint8"), "BOOL": ("bool", "bool")}


ALIGNMENT = 64  # what TensorFlow asks of a buffer it adopts without copying (see the converter's _Given)


def aligned_empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """np.empty whose data starts on an ALIGNMENT-byte boundary (NumPy gives 16)."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + ALIGNMENT, dtype=np.uint8)
    start = (-raw.ctypes.data) % ALIGNMENT
    return raw[start:start + nbytes].view(dtype).reshape(shape)


@dataclass(frozen=True)
class LazyTensor:
    """Where one tensor's bytes are: the file, the absolute offset, and how to read them."""

    path: str
    name: str
    dtype: str  # safetensors dtype ("F32", "BF16", ...)
    shape: tuple[int, ...]
    offset: int
    nbytes: int

    @property
    def torch_dtype(self) -> str:
        """The stored dtype by torch's name ("bfloat16", "float32", ...)."""
        return _DTYPES[self.dtype][1]

    def read(self) -> np.ndarray:
        """The tensor as a fresh NumPy array in its stored type (bf16 arrives as its uint16 bits)."""
        return self._read_rows(0, self.shape[0] if self.shape else 1)

    def _read_rows(self, start: int, stop: int) -> np.ndarray:
        """Rows start:stop of the first axis (the whole tensor for a scalar), read with pread."""
        np_dtype = np.dtype(_DTYPES[self.dtype][0])
        rows = self.shape[0] if self.shape else 1
        row_bytes = self.nbytes // rows if rows else 0
        out = np.empty(((stop - start), *self.shape[1:]) if self.shape else (), dtype=np_dtype)
        view = memoryview(out.reshape(-1).view(np.uint8)) if out.size else memoryview(b"")
        want = (stop - start) * row_bytes
        with open(self.path, "rb", buffering=0) as f:
            done = 0
            while done < want:
                n = os.preadv(f.fileno(), [view[done:]], self.offset + start * row_bytes + done)
                if n <= 0:
                    raise InputError(f"tensor {self.name} ends past the end of the file", path=self.path,
                                     hint="the file changed or was truncated while porttax read it")
                done += n
        return out

    def numpy_float(self, perm: tuple[int, ...] | None = None, *, keep: bool = False) -> np.ndarray:
        """Floats widened to float32 (what Keras variables hold), integers as they are; `keep` leaves
        bf16/fp16 as stored (bf16 as ml_dtypes.bfloat16), for variables of that dtype. `perm` gives
        the result transposed (contiguous). The file is read in slices of rows straight into the
        result, so memory holds the result and one slice: no copy of the whole tensor as stored
        beside it, and no second one in the source layout (for an embedding-sized kernel that is a
        few hundred MB less at the peak of a streamed conversion)."""
        if keep and self.dtype == "BF16":
            import ml_dtypes

            return self._read_as(perm, np.dtype(ml_dtypes.bfloat16), lambda raw: raw.view(ml_dtypes.bfloat16))
        if keep and self.dtype == "F16":
            return self._read_as(perm, np.dtype(np.float16), lambda raw: raw)
        wide_dtype = np.float32 if self.dtype in ("BF16", "F16") else np.dtype(_DTYPES[self.dtype][0])
        return self._read_as(perm, wide_dtype, self._widen)

    def _read_as(self, perm: tuple[int, ...] | None, dtype: np.dtype, convert: Any) -> np.ndarray:
        if not self.shape:
            return convert(self.read())
        perm = tuple(perm) if perm is not None else tuple(range(len(self.shape)))
        out = aligned_empty(tuple(self.shape[a] for a in perm), dtype)
        rows = self.shape[0]
        step = max(1, _SLICE_BYTES // max(1, self.nbytes // max(rows, 1)))
        axis = perm.index(0)  # where the stored first axis lands in the result
        for start in range(0, rows, step):
            stop = min(rows, start + step)
            index = tuple(slice(start, stop) if a == axis else slice(None) for a in range(len(perm)))
            out[index] = convert(np.transpose(self._read_rows(start, stop), perm))
        return out

    def _widen(self, raw: np.ndarray) -> np.ndarray:
        if self.dtype == "BF16":  # bf16 is the top half of a float32
            return (raw.astype(np.uint32) << 16).view(np.float32)
        if self.dtype == "F16":
            return raw.astype(np.float32)
        return raw

    def torch(self) -> Any:
        torch = import_torch()
        raw = self.read()
        t = torch.from_numpy(raw)
        return t.view(torch.bfloat16) if self.dtype == "BF16" else t

    def meta(self) -> Any:
        """A meta tensor of the right shape and dtype that knows where its values are."""
        torch = import_torch()
        t = torch.empty(self.shape, dtype=getattr(torch, _DTYPES[self.dtype][1]), device="meta")
        t._porttax_lazy = self  # type: ignore[attr-defined]
        return t


def lazy_state(path: str | os.PathLike[str], entries: dict[str, Any]) -> dict[str, Any]:
    """Meta tensors for the entries `porttax.sources.file_checks.check_safetensors` returned for `path`."""
    with open(path, "rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
    data_start = 8 + header_len
    state = {}
    for name, e in entries.items():
        if e.dtype not in _DTYPES:
            raise InputError(f"tensor {name} has dtype {e.dtype}, which porttax does not stream", path=str(path),
                             hint="convert with PORTTAX_STREAM=0 to load the checkpoint whole")
        state[name] = LazyTensor(str(path), name, e.dtype, tuple(e.shape), data_start + e.start,
                                 e.end - e.start).meta()
    return state


_TORCH_TO_SAFETENSORS = {torch_name: code for code, (_, torch_name) in _DTYPES.items()}


def lazy_torch_state(path: str | os.PathLike[str], state: dict[str, Any]) -> dict[str, Any] | None:
    """Meta tensors for a state_dict that `torch.load(mmap=True, weights_only=True)` mapped from a
    `torch.save` zip: each tensor's bytes lie uncompressed in the file, at its address minus the
    mapping's start (from /proc/self/maps), so it can be read with pread like a safetensors tensor.
    None when that cannot be established for every tensor (not Linux, a strided or unusual tensor):
    the caller then loads the file whole."""
    torch = import_torch()
    real = os.path.realpath(path)
    size = os.path.getsize(real)
    base = None
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split(maxsplit=5)
                if len(fields) == 6 and fields[5].strip() == real and int(fields[2], 16) == 0:
                    start = int(fields[0].split("-")[0], 16)
                    base = start if base is None else min(base, start)
    except OSError:
        return None
    if base is None:
        return None
    out = {}
    for name, t in state.items():
        if not isinstance(t, torch.Tensor):
            return None
        code = _TORCH_TO_SAFETENSORS.get(str(t.dtype).removeprefix("torch."))
        nbytes = t.numel() * t.element_size()
        offset = t.data_ptr() - base if nbytes else 0
        if code is None or not t.is_contiguous() or offset < 0 or offset + nbytes > size:
            return None
        out[name] = LazyTensor(real, name, code, tuple(t.shape), offset, nbytes).meta()
    return out


def should_stream(files: Iterable[Path]) -> bool:
    """Stream when the checkpoint is large, unless PORTTAX_STREAM says otherwise."""
    forced = os.environ.get("PORTTAX_STREAM")
    if forced is not None:
        return forced.strip().lower() not in ("0", "false", "no", "")
    return sum(p.stat().st_size for p in files) >= STREAM_THRESHOLD_BYTES


def lazy_of(tensor: Any) -> LazyTensor | None:
    return getattr(tensor, "_porttax_lazy", None)


def is_streamed(module: Any) -> bool:
    return any(lazy_of(p) is not None for p in module.parameters())


def placeholder(shape: Any, dtype: Any) -> Any:
    """A CPU tensor of `shape` that owns one element: every entry is a view of it (stride 0).

    torch.export needs parameters on the inputs' device to trace, but only their shapes and dtypes
    to capture; the meta device would trip its device checks, and real storage is what we avoid."""
    torch = import_torch()
    return torch.zeros((), dtype=dtype).expand(tuple(shape))


def empty_parameters() -> Any:
    """A context in which modules get their parameters on the meta device, so initialisers cost
    nothing (`attach` then swaps in placeholders); buffers stay real: the rotary tables a Llama computes
    at construction are needed as constants."""
    import contextlib

    torch = import_torch()
    original = torch.nn.Module.register_parameter

    def register(module: Any, name: str, param: Any) -> None:
        if param is not None and not param.is_meta:
            param = torch.nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        original(module, name, param)

    @contextlib.contextmanager
    def patched() -> Any:
        torch.nn.Module.register_parameter = register
        try:
            yield
        finally:
            torch.nn.Module.register_parameter = original

    return patched()


def attach(module: Any, state: dict[str, Any]) -> None:
    """Give each meta parameter of `module` a placeholder that points at the checkpoint tensor of the
    same name (tied parameters stay one object); load buffers."""
    torch = import_torch()
    buffers = dict(module.named_buffers())
    swapped: dict[int, Any] = {}
    for name, param in list(module.named_parameters(remove_duplicate=False)):
        lazy = lazy_of(state.get(name))
        if lazy is None:
            continue
        if id(param) not in swapped:
            new = torch.nn.Parameter(placeholder(param.shape, param.dtype), requires_grad=False)
            new._porttax_lazy = lazy  # type: ignore[attr-defined]
            swapped[id(param)] = new
        owner_name, _, attr = name.rpartition(".")
        setattr(module.get_submodule(owner_name) if owner_name else module, attr, swapped[id(param)])
    for name, value in state.items():
        lazy = lazy_of(value)
        if name in buffers:
            real = lazy.torch() if lazy is not None else value
            with torch.no_grad():
                buffers[name].copy_(real)


def materialize(module: Any) -> Any:
    """Read every streamed parameter into `module` (in place); a module with none is returned as is."""
    torch = import_torch()
    real = {}
    for name, param in module.named_parameters(remove_duplicate=False):
        lazy = lazy_of(param)
        if lazy is not None:
            real[name] = torch.nn.Parameter(lazy.torch(), requires_grad=False)
    if not real:
        return module
    tied: dict[int, Any] = {}
    for name, param in list(module.named_parameters(remove_duplicate=False)):
        if name not in real:
            continue
        owner_name, _, attr = name.rpartition(".")
        owner = module.get_submodule(owner_name) if owner_name else module
        key = id(param)
        if key not in tied:
            tied[key] = real[name]
        setattr(owner, attr, tied[key])  # tied parameters stay one tensor
    return module
