"""porttax: move trained models between PyTorch and Keras 3 / TensorFlow, and measure the porting tax.

Importing porttax imports no framework; `convert` and the parity suite load torch, Keras and
TensorFlow on first use, in the order that keeps them from crashing each other (see _frameworks).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["convert", "check_parity", "ConversionResult", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("convert", "ConversionResult"):
        from porttax import conversion as _convert_module

        return getattr(_convert_module, name)
    if name == "check_parity":
        from porttax.parity import check_parity

        return check_parity
    raise AttributeError(f"module 'porttax' has no attribute {name!r}")
