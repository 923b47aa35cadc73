"""Errors porttax raises on purpose.

Each carries what a person needs to act: the file, the layer or op, and the fix. The CLI maps
`PorttaxError` subclasses to exit code 2 ("bad input") and `ParityFailure` to exit code 1, so a CI
gate can tell a broken model file from a port that drifts.
"""

from __future__ import annotations


class PorttaxError(Exception):
    """Base class: bad input or an unsupported model. CLI exit code 2."""

    exit_code = 2

    def __init__(self, message: str, *, path: str | None = None, hint: str | None = None) -> None:
        self.path = path
        self.hint = hint
        parts = [f"{path}: {message}" if path else message]
        if hint:
            parts.append(f"What to do: {hint}")
        super().__init__("\n".join(parts))


class InputError(PorttaxError):
    """A model file or argument porttax cannot read as given."""


class UntrustedInputError(InputError):
    """Loading the file would execute code from it, and the user has not said they trust it."""


class UnsupportedError(PorttaxError):
    """The model uses an op or layer that no converter covers."""


class OutputExistsError(PorttaxError):
    """The output path exists and --force was not given."""


class ParityFailure(Exception):
    """The converted model does not compute the same function within tolerance. CLI exit code 1."""

    exit_code = 1

    def __init__(self, message: str, report: object | None = None) -> None:
        self.report = report
        super().__init__(message)
