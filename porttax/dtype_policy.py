"""Which float dtypes a converted Keras model stores its weights in and computes in.

A checkpoint saved in bfloat16 or float16 keeps that dtype in what porttax writes, bit for bit, at half
the size of float32. By default it is *computed* in float32 all the same: every variable is read
through a cast (Keras' autocast), so the converted model computes exactly what the source computes
once its weights are widened, and parity holds at the fp32 profile. Computing in bf16 as well is a
different function, whose drift against the source is that of two bf16 implementations rounding in
different places; it is asked for with `--dtype bfloat16` and judged under the bf16 profile.

Keras has no policy for "store narrow, compute wide" (its mixed policies are the reverse), so
`StoredWeightsPolicy` is one. It never reaches a file: `plain_policies` puts plain compute-dtype
policies on the layers while a `.keras` is written, so the file loads in any Keras, with no porttax
installed, as a float32 model whose weights arrive from the half-precision file (exact).
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Mapping

from porttax._frameworks import import_keras

HALF_DTYPES = ("bfloat16", "float16")


def checkpoint_weight_dtype(stored: Mapping[str, str] | None) -> str | None:
    """The half dtype every float tensor of a checkpoint is stored in, or None (float32, mixed, unknown).

    A checkpoint mixing dtypes (fp32 norms beside bf16 matrices) is stored as float32: keeping the
    narrow dtype everywhere would round the wide tensors."""
    floats = {d for d in (stored or {}).values() if d.startswith(("float", "bfloat"))}
    if len(floats) == 1 and next(iter(floats)) in HALF_DTYPES:
        return next(iter(floats))
    return None


def stored_weights_policy(weight_dtype: str, compute_dtype: str = "float32") -> Any:
    """A Keras dtype policy whose variables are `weight_dtype` and whose computation is `compute_dtype`."""
    base = import_keras().DTypePolicy

    class StoredWeightsPolicy(base):  # type: ignore[misc, valid-type]
        def __init__(self, name: str = compute_dtype) -> None:
            super().__init__(name)
            self._variable_dtype = weight_dtype

        @property
        def name(self) -> str:
            return f"{weight_dtype}_weights_{compute_dtype}_compute"

        def get_config(self) -> dict[str, Any]:
            return {"name": compute_dtype}

    return StoredWeightsPolicy()


@contextlib.contextmanager
def keras_dtype(compute_dtype: str, weight_dtype: str | None = None) -> Iterator[None]:
    """Layers made inside compute in `compute_dtype` and store their weights in `weight_dtype`
    (default: the same)."""
    weight_dtype = weight_dtype or compute_dtype
    if compute_dtype == weight_dtype == "float32":
        yield
        return
    keras = import_keras()
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(compute_dtype if weight_dtype == compute_dtype
                                  else stored_weights_policy(weight_dtype, compute_dtype))
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


@contextlib.contextmanager
def plain_policies(model: Any) -> Iterator[None]:
    """Every layer of `model` shows a plain policy of its compute dtype while inside (a `.keras` being
    written); its variables, and so the weights written, keep their dtype."""
    changed = []
    for layer in model._flatten_layers(include_self=True):
        policy = layer.dtype_policy
        if stores_narrower(policy):
            changed.append((layer, policy))
            layer.dtype_policy = policy.compute_dtype
    try:
        yield
    finally:
        for layer, policy in changed:
            layer._dtype_policy = policy


def stores_narrower(policy: Any) -> bool:
    """Whether a layer's policy is porttax's store-narrow, compute-wide one."""
    return type(policy).__name__ == "StoredWeightsPolicy"


def is_narrowing(array_dtype: Any, variable_dtype: Any) -> bool:
    """Whether storing an array of `array_dtype` in a variable of `variable_dtype` can round it."""
    return str(variable_dtype) in HALF_DTYPES and str(array_dtype) not in HALF_DTYPES


def exactly_representable(array: Any, dtype: str, chunk: int = 1 << 22) -> bool:
    """Whether every value of a float array survives a round trip through `dtype` unchanged.

    Checked in chunks, so the check of a 500 MB embedding holds a few MB beside it, not two copies;
    a float32 value is a bfloat16 one exactly when its low 16 bits are zero."""
    import numpy as np

    flat = np.ascontiguousarray(array).reshape(-1)
    for start in range(0, flat.size, chunk):
        part = flat[start:start + chunk]
        if dtype == "bfloat16" and part.dtype == np.float32:
            if np.any(part.view(np.uint32) & np.uint32(0xFFFF)):
                return False
        elif not np.array_equal(part.astype(dtype).astype(part.dtype), part, equal_nan=True):
            return False
    return True
