"""The `porttax` command line: argument parsing and exit codes only; the work is in the library.

Exit codes: 0 success, 1 parity failed, 2 bad input (unreadable file, unsupported op, existing output),
3 internal error (a porttax bug), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from porttax import __version__
from porttax.errors import PorttaxError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="porttax",
        description="Move trained models between PyTorch and Keras 3 / TensorFlow, and measure the porting tax.",
    )
    p.add_argument("--version", action="version", version=f"porttax {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    c = sub.add_parser("convert", help="convert a PyTorch model to Keras 3 (.keras) or a TF SavedModel",
                       description="Convert a PyTorch model and check parity on seeded inputs. "
                       "Exit 0 ok, 1 parity failed, 2 bad input.")
    c.add_argument("source", help=".pt2 (torch.export), .pt/.pth (state_dict, or pickled module with "
                   "--trust-pickle) or .safetensors (with --arch or a <name>.config.json beside it)")
    c.add_argument("--to", choices=["keras", "savedmodel"], help="target format (default: from -o)")
    c.add_argument("-o", "--output", required=True, help="output .keras file or SavedModel directory")
    c.add_argument("--force", action="store_true", help="replace the output if it exists")
    c.add_argument("--trust-pickle", action="store_true",
                   help="allow loading a pickled module (runs code from the file: only for files you trust)")
    c.add_argument("--arch", help="architecture of a state_dict checkpoint (see `porttax models list`)")
    c.add_argument("--config", help="JSON config for --arch")
    c.add_argument("--input-shape", action="append", metavar="SHAPE",
                   help="input shape, e.g. 1,3,224,224; repeat for several inputs")
    c.add_argument("--input-dtype", action="append", metavar="DTYPE",
                   help="input dtype (float32, int64, ...); repeat per input")
    c.add_argument("--no-parity", action="store_true", help="skip the parity check")
    c.add_argument("--seeds", type=int, default=3, help="parity seeds (default 3)")
    c.add_argument("--no-latency", action="store_true", help="skip timing source vs converted")
    c.add_argument("--report", metavar="FILE.json", help="write the full report (tax, parity, mapping) as JSON")
    c.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    c.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")

    m = sub.add_parser("models", help="bundled reference architectures and checkpoints")
    msub = m.add_subparsers(dest="models_command", metavar="ACTION")
    msub.add_parser("list", help="list architectures and presets")
    b = msub.add_parser("build", help="write a deterministic checkpoint of a preset (with its config sidecar)")
    b.add_argument("preset")
    b.add_argument("-o", "--output", required=True, help=".pt, .safetensors or .pt2 path")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--force", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help()
        return 2
    try:
        if args.command == "convert":
            return _convert(args)
        if args.command == "models":
            return _models(args)
    except PorttaxError as exc:
        print(f"porttax: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("porttax: interrupted; nothing was written", file=sys.stderr)
        return 130
    except Exception:  # a bug in porttax or a framework, not bad input and not drift: say so
        import traceback

        traceback.print_exc()
        print("porttax: internal error (exit 3): this is a porttax bug, not a problem with your model; "
              "please report it with the traceback above", file=sys.stderr)
        return 3
    return 2


def _convert(args: argparse.Namespace) -> int:
    from porttax.conversion import convert
    from porttax.loading import parse_shape
    from porttax.progress import Progress

    progress = Progress(enabled=not (args.quiet or args.json))
    result = convert(
        args.source, to=args.to, output=args.output, arch=args.arch, config=args.config,
        input_shapes=[parse_shape(s) for s in args.input_shape] if args.input_shape else None,
        input_dtypes=args.input_dtype, trust_pickle=args.trust_pickle, parity=not args.no_parity,
        seeds=tuple(range(args.seeds)), measure_latency=not args.no_latency, force=args.force,
        progress=progress,
    )
    report = result.to_dict()
    if args.report:
        from porttax.saving import atomic_output

        with atomic_output(args.report, force=True) as tmp:
            tmp.write_text(json.dumps(report, indent=2, default=str))
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(f"wrote {result.output} ({result.target})")
        if result.parity is not None:
            print(result.parity.summary_line())
        print("porting tax:")
        for line in result.tax.lines():
            print(f"  {line}")
        if args.report:
            print(f"report: {args.report}")
    if not result.passed:
        print("porttax: parity FAILED: the converted model does not compute the same function within "
              "tolerance (output kept for inspection)", file=sys.stderr)
        return 1
    return 0


def _models(args: argparse.Namespace) -> int:
    from porttax import models

    if args.models_command == "list" or args.models_command is None:
        for name in models.list_architectures():
            arch = models.ARCHITECTURES[name]
            print(f"{name:10s} {arch.family}")
            print(f"{'':10s} presets: {', '.join(models.list_presets(name))}")
        return 0
    from porttax.saving import atomic_output, check_output

    out = check_output(args.output, args.force)
    if out.suffix == ".pt2":
        from porttax._frameworks import import_torch

        torch = import_torch()
        module = models.build_model(args.preset, seed=args.seed)
        program = torch.export.export(module, models.example_inputs(args.preset, batch=1, seq=16))
        with atomic_output(out, force=args.force) as tmp:
            torch.export.save(program, str(tmp))
    else:
        models.build_checkpoint(args.preset, out, seed=args.seed)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
