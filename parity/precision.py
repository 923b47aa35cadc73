"""Precision modes: which reduced-precision shortcuts each runtime had switched on, and what they explain.

TF32 (a 10-bit mantissa for float32 matmuls and convolutions on NVIDIA Ampere and later) moves
‖a−b‖/‖b‖ from ~1e-7 to ~1e-4. Several runtimes turn it on by default on a GPU — JAX's default matmul
precision, TensorFlow's `tensor_float_32_execution` — while torch keeps it off. A drift that only the
TF32 profile tolerates is then not a porting bug; the report must say so rather than let a team chase it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from porttax.parity.profiles import Profile

_REDUCED_PROFILES = {"tf32", "bf16", "fp16"}
_JAX_FULL = {"highest", "float32", "fp32"}


def reduced_modes(side: str, device: str, modes: Mapping[str, Any]) -> list[str]:
    """Descriptions of the reduced-precision modes in force for one runtime on `device`."""
    if not device.lower().startswith(("cuda", "gpu")):
        return []  # TF32 and friends only exist on NVIDIA GPUs
    found = []
    if "jax_default_matmul_precision" in modes:
        value = modes["jax_default_matmul_precision"]
        if value is None or str(value).lower() not in _JAX_FULL:
            found.append(f"{side}: JAX default matmul precision is {value!r} on {device}, which runs float32 "
                         "matmuls in TF32 on NVIDIA GPUs (set JAX_DEFAULT_MATMUL_PRECISION=highest to turn it off)")
    if modes.get("cuda_matmul_allow_tf32") or str(modes.get("float32_matmul_precision", "highest")) != "highest":
        found.append(f"{side}: torch allows TF32 matmuls on {device} "
                     f"(float32_matmul_precision={modes.get('float32_matmul_precision')!r})")
    if modes.get("cudnn_allow_tf32"):  # torch's default: convolutions in TF32 even when matmuls are not
        found.append(f"{side}: torch allows TF32 in cuDNN convolutions on {device} (torch.backends.cudnn.allow_tf32)")
    if modes.get("tensor_float_32_execution"):
        found.append(f"{side}: TensorFlow TF32 execution is enabled on {device} "
                     "(tf.config.experimental.enable_tensor_float_32_execution(False) turns it off)")
    return found


def precision_warnings(profile: Profile, sides: Mapping[str, tuple[str, Mapping[str, Any]]]) -> list[str]:
    """Warnings for modes the chosen profile did not ask for. `sides`: {"source": (device, modes), ...}."""
    if profile.name.split("/")[0] in _REDUCED_PROFILES:  # "tf32/max_abs": tf32 gated on another statistic
        return []
    warnings = []
    for side, (device, modes) in sides.items():
        for mode in reduced_modes(side, device, modes):
            warnings.append(f"{mode}; profile {profile.name!r} assumes full float32, so drift around 1e-4 is "
                            "this mode, not the port: rerun with --profile tf32 or turn the mode off")
    return warnings
