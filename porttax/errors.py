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
        self.message = message
        self.path = path
        self.hint = hint
        parts = [f"{path}: {message}" if path else message]
        if hint:
            parts.append(f"What to do: {hint}")
        super().__init__("\n".join(parts))


    def at(self, path: str) -> "PorttaxError":
        """The same error, naming `path` when the code that raised it did not know the file."""
        if self.path is not None:
            return self
        return type(self)(self.message, path=path, hint=self.hint)


def brief(exc: BaseException, limit: int = 300) -> str:
    """A framework exception as one short line: errors must stay one readable paragraph, and Keras and
    TensorFlow put whole configs and stack dumps into theirs."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    if text.endswith(":") and len(lines) > 1:  # "Example error message for ...:" introduces the cause
        text = f"{text} {lines[1]}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class InputError(PorttaxError):
    """A model file or argument porttax cannot read as given."""


class UntrustedInputError(InputError):
    """Loading the file would execute code from it, and the user has not said they trust it."""


class UnsupportedError(PorttaxError):
    """The model uses an op or layer that no converter covers."""


class OutputExistsError(PorttaxError):
    """The output path exists and --force was not given."""


class OutputError(PorttaxError):
    """The output could not be written: no space, no permission, or its parent is not a directory."""


class ParityFailure(Exception):
    """The converted model does not compute the same function within tolerance. CLI exit code 1."""

    exit_code = 1

    def __init__(self, message: str, report: object | None = None) -> None:
        self.report = report
        super().__init__(message)
