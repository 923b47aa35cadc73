"""Parity inputs: seeded from a model's signature, or read from the user's `.npz`.

Every input gets its own random stream derived from (seed, input name), so adding an input to a
signature or reordering the specs does not change the values the other inputs receive, and the same
seed gives the same arrays in every process (no use of Python's salted `hash`).
"""

from __future__ import annotations

import re
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from porttax.errors import InputError, brief
from porttax.sources.file_checks import check_zip
from porttax.types import TensorSpec

DEFAULT_INT_RANGE: tuple[int, int] = (0, 10)  # integer inputs without a value_range: small ids/indices

_CASE_KEY = re.compile(r"^case(\d+)/(.+)$")


def numpy_dtype(name: str) -> np.dtype:
    """`np.dtype(name)`, with bfloat16 from ml_dtypes (plain NumPy has no bfloat16)."""
    if name == "bfloat16":
        import ml_dtypes  # ships with jax and tensorflow; only needed for this one dtype

        return np.dtype(ml_dtypes.bfloat16)
    try:
        return np.dtype(name)
    except TypeError as exc:
        raise InputError(f"unknown dtype {name!r}", hint="use a NumPy dtype name such as 'float32'") from exc


def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(name.encode())])


def make_input(spec: TensorSpec, seed: int, sizes: dict[str, int] | None = None) -> np.ndarray:
    """One seeded array for `spec`.

    float: standard normal, or uniform in `value_range` when the spec gives one (pixel values in [0, 1]);
    int/uint: uniform integers in `value_range` (high exclusive), default [0, 10); bool: fair coin flips.
    """
    shape = spec.concrete_shape(sizes)
    if any(d <= 0 for d in shape):
        raise InputError(f"input {spec.name!r}: concrete shape {shape} has a non-positive dim",
                         hint="pass positive sizes for its symbolic dims")
    dtype = numpy_dtype(spec.dtype)
    rng = _rng(seed, spec.name)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if np.issubdtype(dtype, np.integer):
        low, high = spec.value_range or DEFAULT_INT_RANGE
        low, high = int(low), int(high)
        info = np.iinfo(dtype)
        if not (info.min <= low < high <= int(info.max) + 1):
            raise InputError(f"input {spec.name!r}: value_range [{low}, {high}) is empty or does not fit {dtype}")
        return rng.integers(low, high, size=shape, dtype=np.int64).astype(dtype)
    if spec.value_range is not None:
        low, high = map(float, spec.value_range)
        if not low < high:
            raise InputError(f"input {spec.name!r}: value_range [{low}, {high}) is empty")
        return rng.uniform(low, high, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def make_inputs(specs: Sequence[TensorSpec], seed: int, sizes: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """Seeded inputs for every spec, keyed by input name; `sizes` fixes symbolic dims ("batch": 2)."""
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise InputError(f"duplicate input names in signature: {names}")
    return {s.name: make_input(s, seed, sizes) for s in specs}


def load_npz_cases(path: str | Path) -> list[dict[str, np.ndarray]]:
    """Input cases from a user's `.npz` (read with allow_pickle=False: an npz must not run code).

    Two layouts: plain input names (`x`, `mask`) are one case; `case0/x`, `case0/mask`, `case1/x`, ...
    are several cases, returned in numeric case order. Mixing the two layouts is an error.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("no such input file", path=str(path))
    if not zipfile.is_zipfile(path):
        raise InputError("not an .npz file (not a zip archive)", path=str(path),
                         hint="write the cases with np.savez(path, name=array, ...)")
    check_zip(path, what=".npz input file")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except ValueError as exc:  # object arrays need pickle
        raise InputError(f"cannot read inputs: {brief(exc)}", path=str(path),
                         hint="save plain numeric arrays (np.savez) without object dtype") from exc
    except (OSError, EOFError, zipfile.BadZipFile) as exc:  # not a zip / truncated
        raise InputError(f"not a readable .npz file: {brief(exc)}", path=str(path),
                         hint="write the cases with np.savez(path, name=array, ...)") from exc
    if not arrays:
        raise InputError("the .npz file holds no arrays", path=str(path))
    matched = {k: _CASE_KEY.match(k) for k in arrays}
    if not any(matched.values()):
        return [arrays]
    plain = [k for k, m in matched.items() if m is None]
    if plain:
        raise InputError(f"mixes 'caseN/name' keys with plain keys {plain}", path=str(path),
                         hint="name every array 'caseN/<input>' or none of them")
    cases: dict[int, dict[str, np.ndarray]] = {}
    for key, m in matched.items():
        assert m is not None
        cases.setdefault(int(m.group(1)), {})[m.group(2)] = arrays[key]
    return [cases[i] for i in sorted(cases)]
