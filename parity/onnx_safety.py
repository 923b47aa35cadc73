"""Where the parity runners look for the ONNX external-data check; it lives in porttax.sources.file_checks."""

from __future__ import annotations

from porttax.sources.file_checks import check_onnx_external_data as check_external_data

__all__ = ["check_external_data"]
