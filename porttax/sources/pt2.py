"""`.pt2` archives (`torch.export.save`): a captured program already, so loading is reading it back.

The archive is a zip whose members torch unpickles in part; the zip is checked first (member names,
sizes, compression ratio: porttax.sources.file_checks) so a hostile archive is refused by name before
torch reads a byte of it.
"""

from __future__ import annotations

from pathlib import Path

from porttax._frameworks import import_torch
from porttax.errors import InputError, brief
from porttax.sources import LoadOptions, SourceFormat, register_format
from porttax.sources.file_checks import check_zip
from porttax.sources.torch_program import TorchSource, specs_from_program
from porttax.sources.torch_source import example_of


def load_pt2(path: Path, options: LoadOptions) -> TorchSource:
    torch = import_torch()
    check_zip(path, what="torch.export archive")
    try:
        program = torch.export.load(str(path))
    except Exception as exc:
        raise InputError(f"not a readable torch.export archive ({type(exc).__name__}: {brief(exc)})",
                         path=str(path), hint="re-save it with torch.export.save(program, path)") from exc
    return TorchSource(program, program, specs_from_program(program), example_of(program), "pt2", str(path))


register_format(SourceFormat("pt2", "torch", "a torch.export archive (.pt2)", load=load_pt2,
                             sniff=lambda p: p.suffix.lower() == ".pt2" and not p.is_dir()))
