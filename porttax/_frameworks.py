"""The one place that imports the heavy frameworks, in a safe order.

With torch 2.14 and TensorFlow 2.21 in one process, loading triton's native library after TensorFlow
(`torch.export.export/load`, `import torch._dynamo`, `import torchvision`) segfaults. Importing
`torch._dynamo` before TensorFlow avoids it, so every porttax module reaches torch, Keras and
TensorFlow through these functions instead of importing them directly. They are also lazy, which
keeps `import porttax` and `porttax --help` free of framework imports.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from functools import cache
from types import ModuleType


def _torch_installed() -> bool:
    return importlib.util.find_spec("torch") is not None


def _quiet_tensorflow() -> None:
    """TensorFlow's C++ start-up lines (oneDNN, CUDA probing) drown porttax's own messages; a user who
    wants them sets TF_CPP_MIN_LOG_LEVEL themselves."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@cache
def import_torch() -> ModuleType:
    """torch, with torch._dynamo loaded so later TensorFlow imports cannot break torch.export."""
    if "tensorflow" in sys.modules and "torch._dynamo" not in sys.modules:
        # Too late to get the order right in this process; say so instead of segfaulting later.
        import warnings

        warnings.warn(
            "TensorFlow was imported before torch; torch.export may crash in this process. "
            "Import porttax (or torch._dynamo) before TensorFlow/Keras.",
            RuntimeWarning,
            stacklevel=2,
        )
    import torch
    import torch._dynamo  # noqa: F401  (import order: see module docstring)
    import torch.export  # noqa: F401

    return torch


@cache
def import_torchvision() -> ModuleType:
    import_torch()
    import torchvision

    return torchvision


@cache
def import_keras() -> ModuleType:
    """keras, after torch (when installed) so both frameworks can live in one process."""
    if _torch_installed():
        import_torch()
    _quiet_tensorflow()
    import keras

    return keras


@cache
def import_tf() -> ModuleType:
    if _torch_installed():
        import_torch()
    _quiet_tensorflow()
    import tensorflow as tf

    return tf


_EXECUTORCH_HINT = "pip install 'porttax[executorch]' (executorch 1.5, beside torch 2.14)"


def require_executorch() -> None:
    """Import ExecuTorch's exporter and runtime, or say how to install them (it is an optional extra)."""
    import logging

    pytree = logging.getLogger("torch.utils._pytree")  # torchao's import warns about an enum it registers
    level = pytree.level
    pytree.setLevel(logging.ERROR)
    try:
        import executorch.exir  # noqa: F401
        import executorch.runtime  # noqa: F401
    except ImportError as exc:
        from porttax.errors import InputError, brief

        raise InputError(f"ExecuTorch is not installed ({brief(exc)})", hint=_EXECUTORCH_HINT) from None
    finally:
        pytree.setLevel(level)
