"""Writing outputs so that a failed or interrupted run leaves nothing behind.

Everything is written to a temporary sibling of the final path and renamed into place only once it
is complete (and, for conversions, checked). An existing output is replaced only with `force`, and
then only after the new one is whole.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from porttax.errors import OutputError, OutputExistsError

_stop: BaseException | None = None  # a stop signal seen by this process (see request_stop)


def request_stop(exc: BaseException | None) -> None:
    """Remember a Ctrl-C / SIGTERM. A signal handler's exception can land where it is swallowed (a
    finalizer running at that instant, a library's blanket except), and the conversion would then go
    on to publish its output; atomic_output checks this before publishing. None forgets it."""
    global _stop
    _stop = exc


# errno values that mean "the output could not be written", not "porttax has a bug"
_WRITE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS}
_WRITE_WORDS = ("No space left", "File too large", "Disk quota", "Permission denied", "Read-only file system")


def check_output(path: str | os.PathLike[str], force: bool) -> Path:
    """Validate the destination before any work is done, so a long conversion can't fail at the end."""
    out = Path(path)
    if out.exists() and not force:
        raise OutputExistsError("output already exists", path=str(out),
                                hint="pass --force to replace it, or choose another -o path")
    parent = out.parent if str(out.parent) else Path(".")
    existing = next((p for p in (parent, *parent.parents) if p.exists()), Path("."))
    if not existing.is_dir():
        raise OutputError("the output's parent is not a directory", path=str(existing),
                          hint="choose an -o path inside a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError("the output directory is not writable", path=str(existing),
                          hint="choose an -o path in a directory you can write to")
    return out


@contextmanager
def atomic_output(path: str | os.PathLike[str], *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling path; on success it becomes `path`, on any error or signal it is removed.

    The temporary name keeps the final suffix (Keras insists on `.keras`) and starts with a dot so
    half-written artefacts are hidden and never mistaken for results. Without `force` the rename
    never replaces anything, even an output another process finished meanwhile (two conversions
    racing for one path: one wins, the other reports it). A write that fails for lack of space or
    permission surfaces as `OutputError`, whatever library was writing.
    """
    final = check_output(path, force)
    tmp = final.with_name(f".{final.stem}.porttax-tmp-{uuid.uuid4().hex[:8]}{final.suffix}")
    try:
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            yield tmp
        except BaseException as exc:
            failure = write_failure(exc)
            if failure is None:
                raise
            raise OutputError(f"could not write the output: {failure}", path=str(final),
                              hint="free space or choose another -o location, then run again") from exc
        if not tmp.exists():
            raise RuntimeError(f"nothing was written to {tmp}")
        if _stop is not None:  # the signal's own exception was lost on the way: stop here instead
            raise _stop
        _publish(tmp, final, force)
    finally:
        _remove(tmp)


def _publish(tmp: Path, final: Path, force: bool) -> None:
    if force and final.exists():
        backup = final.with_name(f".{final.name}.porttax-old-{uuid.uuid4().hex[:8]}")
        os.replace(final, backup)
        os.replace(tmp, final)
        _remove(backup)
        return
    try:
        if tmp.is_dir():
            os.rename(tmp, final)  # fails when `final` is a file or a non-empty directory
        else:
            os.link(tmp, final)  # fails when `final` exists, atomically: never replaces a file
    except FileExistsError:
        raise OutputExistsError("output appeared while converting (another run wrote it first)",
                                path=str(final), hint="pass --force to replace it") from None
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
            raise OutputExistsError("output appeared while converting (another run wrote it first)",
                                    path=str(final), hint="pass --force to replace it") from None
        if exc.errno not in (errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOTSUP):
            raise
        if final.exists():  # a filesystem without hard links: check, then rename
            raise OutputExistsError("output appeared while converting", path=str(final),
                                    hint="pass --force to replace it") from None
        os.replace(tmp, final)


def write_failure(exc: BaseException) -> str | None:
    """The reason a write failed for lack of space or permission, searched through the exception chain.

    TensorFlow, h5py, zipfile and torch each wrap OS errors in their own types; the errno or its
    message survives somewhere in the chain.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _WRITE_ERRNOS:
            return current.strerror or str(current)
        text = str(current)
        for words in _WRITE_WORDS:
            if words in text:
                return words
        current = current.__cause__ or current.__context__
    return None


class _FailureHoldingFile(io.RawIOBase):
    """A binary file that keeps its first OSError instead of raising it, and drops every later write.

    For torch's zip writer: see torch_archive_file.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._file = open(path, "wb")
        self.failure: OSError | None = None

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def _guard(self, action: Any, *args: Any) -> Any:
        if self.failure is None:
            try:
                return action(*args)
            except OSError as exc:
                self.failure = exc
        return None

    def write(self, data: Any) -> int:
        size = memoryview(data).nbytes
        self._guard(self._file.write, data)
        return size

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        position = self._guard(self._file.seek, offset, whence)
        return position if position is not None else 0

    def tell(self) -> int:
        position = self._guard(self._file.tell)
        return position if position is not None else 0

    def flush(self) -> None:
        if not self._file.closed:
            self._guard(self._file.flush)

    def close(self) -> None:
        self._guard(self._file.close)
        if not self._file.closed:  # the close itself failed to flush: close without writing more
            try:
                self._file.close()
            except OSError:
                pass
        super().close()


@contextmanager
def torch_archive_file(path: Path) -> Iterator[Any]:
    """A file to hand torch.save / torch.export.save instead of a path, so a full disk is an error.

    Given a path, torch's zip writer (PyTorchStreamWriter) finishes the archive in its C++
    destructor; after a failed write (disk full, file-size limit) that second attempt throws inside the
    destructor and the whole process aborts (SIGABRT: no message, no cleanup, a test run killed).
    Given this file, torch never sees the failure: the first OSError is kept, later writes are dropped,
    torch completes its archive, and the error is raised here once torch has returned, where
    atomic_output turns it into "could not write the output" (exit 2) and removes the partial file.
    """
    sink = _FailureHoldingFile(path)
    try:
        yield sink
    finally:
        sink.close()
    if sink.failure is not None:
        raise sink.failure


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)
