"""Migration audits: the porting tax of a whole fleet of models (`porttax audit`, `porttax.audit.audit`)."""

from __future__ import annotations

from typing import Any

__all__ = ["audit", "AuditReport", "AuditRow"]


def __getattr__(name: str) -> Any:
    if name == "audit":
        from porttax.audit.run import audit

        return audit
    if name in ("AuditReport", "AuditRow"):
        from porttax.audit import rows

        return getattr(rows, name)
    raise AttributeError(f"module 'porttax.audit' has no attribute {name!r}")
