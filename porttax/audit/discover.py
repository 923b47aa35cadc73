"""Which models an audit covers: a folder, a glob, a list file, or one model.

A list file (`.txt`, `.list`, `.lst`) names one model per line, relative to the file, optionally with
the options that model needs, in the CLI's spelling:

    vision/resnet.pt2
    nlp/bert.safetensors --arch encoder --config nlp/bert.json
    legacy/model.pt --trust-pickle --input-shape 1,3,224,224
    # comments and blank lines are ignored

Files that ride along with a model (a checkpoint's `<name>.config.json`, an ONNX file's external
data) are not models of their own; anything else porttax cannot read is listed as skipped, with why.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from porttax.errors import InputError
from porttax.inspection import sniff_format

MODEL_SUFFIXES = (".pt2", ".pt", ".pth", ".bin", ".ckpt", ".safetensors", ".keras", ".h5", ".hdf5", ".onnx")
LIST_SUFFIXES = (".txt", ".list", ".lst")


@dataclass
class ModelEntry:
    path: Path  # absolute
    name: str  # as reports show it: relative to the audited folder or list file
    options: dict[str, Any] = field(default_factory=dict)  # per-model: arch, config, input_shapes, ...


def discover(spec: str | Path) -> tuple[list[ModelEntry], list[dict[str, str]]]:
    """(models, skipped) for a folder, glob, list file or single model path."""
    text = str(spec)
    if any(ch in text for ch in "*?[") and not Path(text).exists():
        paths = sorted(Path(p) for p in glob.glob(text, recursive=True))
        if not paths:
            raise InputError(f"the pattern {text!r} matches nothing", hint="quote the pattern so the shell leaves it alone")
        return _entries(paths, Path.cwd())
    path = Path(text)
    if not path.exists():
        raise InputError("no such folder, list file or model", path=text)
    if path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
        return _read_list(path)
    if path.is_dir() and sniff_format(path) == "unknown":
        return _entries(_walk(path), path)
    return [ModelEntry(path.resolve(), path.name)], []


def _walk(root: Path) -> list[Path]:
    """Every model under `root`: model folders (SavedModel, Hugging Face) are not descended into."""
    found: list[Path] = []
    for child in sorted(root.iterdir()):
        if child.name.startswith("."):
            continue
        if child.is_dir():
            found.extend([child] if sniff_format(child) != "unknown" else _walk(child))
        else:
            found.append(child)
    return found


def _entries(paths: list[Path], root: Path) -> tuple[list[ModelEntry], list[dict[str, str]]]:
    models, skipped = [], []
    names = {p.resolve() for p in paths}
    for p in paths:
        name = _relative(p, root)
        if p.is_dir():
            if sniff_format(p) != "unknown":
                models.append(ModelEntry(p.resolve(), name))
            continue
        if _rides_along(p, names):
            continue
        if p.suffix.lower() in MODEL_SUFFIXES:
            models.append(ModelEntry(p.resolve(), name))
        else:
            skipped.append({"path": name, "reason": f"not a model format porttax reads ({p.suffix or 'no suffix'})"})
    return models, skipped


def _rides_along(p: Path, paths: set[Path]) -> bool:
    """A checkpoint's config sidecar or an ONNX file's external data."""
    name = p.name
    if name.endswith(".config.json"):
        stem = name[: -len(".config.json")]
        return any((p.parent / f"{stem}{s}").resolve() in paths for s in MODEL_SUFFIXES)
    if p.suffix in (".data", ".bin") and p.with_suffix("").suffix == ".onnx":
        return p.with_suffix("").resolve() in paths
    return False


def _relative(p: Path, root: Path) -> str:
    try:
        return str(p.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(p)


def _list_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="list file line", add_help=False, exit_on_error=False)
    p.add_argument("path")
    p.add_argument("--arch")
    p.add_argument("--config")
    p.add_argument("--input-shape", action="append")
    p.add_argument("--input-dtype", action="append")
    p.add_argument("--trust-pickle", action="store_true")
    p.add_argument("--trust-code", action="store_true")
    p.add_argument("--to")
    return p


def _read_list(path: Path) -> tuple[list[ModelEntry], list[dict[str, str]]]:
    from porttax.sources.torch_source import parse_shape

    models: list[ModelEntry] = []
    skipped: list[dict[str, str]] = []
    parser = _list_parser()
    base = path.parent
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path}:{number}"
        try:
            args, rest = parser.parse_known_args(shlex.split(line))
        except (argparse.ArgumentError, ValueError) as exc:
            raise InputError(f"cannot parse this line: {exc}", path=where) from None
        if rest:
            raise InputError(f"unknown option(s) {' '.join(rest)}", path=where,
                             hint="a line takes: PATH [--arch A] [--config F] [--input-shape S] [--input-dtype D] "
                             "[--trust-pickle] [--trust-code] [--to T]")
        model = (base / args.path) if not Path(args.path).is_absolute() else Path(args.path)
        options: dict[str, Any] = {}
        if args.arch:
            options["arch"] = args.arch
        if args.config:
            options["config"] = str((base / args.config).resolve())
        if args.input_shape:
            options["input_shapes"] = [list(parse_shape(s)) for s in args.input_shape]
        if args.input_dtype:
            options["input_dtypes"] = list(args.input_dtype)
        for flag in ("trust_pickle", "trust_code"):
            if getattr(args, flag):
                options[flag] = True
        if args.to:
            options["to"] = args.to
        models.append(ModelEntry(model.resolve(), args.path, options))  # a missing file becomes an error row
    if not models:
        raise InputError("the list file names no models", path=str(path))
    return models, skipped


def content_hash(path: Path) -> str:
    """sha256 of a model's bytes: a file, its sidecars (config, external data), or a folder's files."""
    h = hashlib.sha256()
    files: list[tuple[str, Path]] = []
    if path.is_dir():
        files = [(str(f.relative_to(path)), f) for f in sorted(path.rglob("*")) if f.is_file()]
    elif path.exists():
        files = [("", path)]
        for sidecar in sorted(path.parent.glob(f"{glob.escape(path.name)}.*")) + sorted(
                path.parent.glob(f"{glob.escape(path.stem)}.config.json")):
            if sidecar.is_file() and sidecar != path:
                files.append((sidecar.name, sidecar))
    for name, f in files:
        h.update(name.encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        h.update(b"\0")
    return h.hexdigest()
