"""The `porttax` command line: argument parsing and exit codes only; the work is in the library.

Exit codes: 0 success, 1 parity failed, 2 bad input (unreadable file, unsupported op, existing output),
3 internal error (a porttax bug), 130 interrupted (Ctrl-C / SIGINT), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from porttax import __version__
from porttax.errors import PorttaxError


def _parser() -> argparse.ArgumentParser:
    from porttax.targets import all_targets

    p = argparse.ArgumentParser(
        prog="porttax",
        description="Move trained models between PyTorch and Keras 3 / TensorFlow, and measure the porting tax.",
    )
    p.add_argument("--version", action="version", version=f"porttax {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    c = sub.add_parser("convert", help="convert PyTorch → Keras 3 / SavedModel, or Keras → PyTorch",
                       description="Convert a model and check parity on seeded inputs. "
                       "Exit 0 ok, 1 parity failed, 2 bad input.")
    c.add_argument("source", help="PyTorch: .pt2 (torch.export), .pt/.pth (state_dict, or pickled module with "
                   "--trust-pickle), TorchScript (with --trust-code), .safetensors (with --arch or a <name>.config.json beside it) or a Hugging Face "
                   "folder (config.json + safetensors shards). "
                   "Keras: .keras, .h5, or a SavedModel directory written by porttax")
    c.add_argument("--to", choices=[t.name for t in all_targets()],
                   help="target format (default: from -o's suffix); `porttax targets` lists them")
    c.add_argument("-o", "--output", required=True,
                   help="output: .keras file, SavedModel directory, .onnx, .tflite or .pte (ExecuTorch) file, "
                   "TF.js graph-model directory (--to tfjs); .pt2 / .safetensors / .pt for Keras sources; a folder "
                   "with --to safetensors: the source checkpoint's own layout (Hugging Face: config.json + "
                   "safetensors shards) from a .keras porttax converted from a checkpoint")
    c.add_argument("--dtype", choices=["float32", "bfloat16", "float16"],
                   help="float dtype of the output. --to keras/savedmodel: bfloat16 or float16 builds the Keras "
                   "model in that dtype (variables and compute; half the size), checked against the source in "
                   "that dtype under the bf16/fp16 profile; float32 widens a half-precision checkpoint's weights "
                   "(default: weights as the checkpoint stores them, computed in float32). Checkpoint folder from a "
                   ".keras: write floats in this dtype (default: as the source checkpoint stored them)")
    c.add_argument("--max-shard-size", metavar="SIZE",
                   help="checkpoint folder output: largest safetensors shard, e.g. 5GB (the default) or 500MB")
    c.add_argument("--max-cache-len", type=int, metavar="N",
                   help="SavedModel of a Llama-family checkpoint: KV-cache slots of its 'decode' signature "
                   "(default: max_position_embeddings, at most 4096)")
    c.add_argument("--weight-map", metavar="ORIGINAL.keras",
                   help="checkpoint folder output from a .keras that Keras saved again (e.g. fine-tuned): read "
                   "each weight's source name and layout from the .keras porttax wrote")
    c.add_argument("--trust-code", action="store_true",
                   help="allow stored code to load and run: a TorchScript archive (torch.jit.save), a Keras "
                   "file's Lambda layers (only for files you trust)")
    c.add_argument("--channels-first", action="store_true",
                   help="Keras → torch: give image inputs/outputs (rank ≥ 4) torch's NCHW layout "
                   "(default: the Keras model's own layout, a drop-in replacement)")
    c.add_argument("--force", action="store_true", help="replace the output if it exists")
    c.add_argument("--trust-pickle", action="store_true",
                   help="allow loading a pickled module (runs code from the file: only for files you trust)")
    c.add_argument("--arch", help="architecture of a state_dict checkpoint (see `porttax models list`)")
    c.add_argument("--config", help="JSON config for --arch")
    c.add_argument("--input-shape", action="append", metavar="SHAPE",
                   help="input shape, e.g. 1,3,224,224 (a name such as batch,3,224,224 keeps that dim open); "
                   "repeat for several inputs")
    c.add_argument("--input-dtype", action="append", metavar="DTYPE",
                   help="input dtype (float32, int64, ...); repeat per input")
    c.add_argument("--static", action="store_true",
                   help="capture with every input dim fixed (default: an open batch, and sequence for token inputs, "
                   "or the names in --input-shape such as batch,3,224,224, stay open in every target)")
    c.add_argument("--route", choices=["fallback", "direct", "onnx", "onnx2tf", "auto"], default="fallback",
                   help="PyTorch → Keras/SavedModel road: fallback (default: direct op mapping, and through ONNX "
                   "only where the direct road has no converter for an op), direct (never ONNX), through ONNX "
                   "with porttax's registry, through ONNX with onnx2tf (SavedModel only), or auto (direct and "
                   "onnx tried and checked; the one with least drift, then the fastest, kept)")
    c.add_argument("--jit", action="store_true",
                   help="compile the SavedModel's serving function with XLA (faster for small models; "
                   "TF Serving then needs --xla_cpu_compilation_enabled=true)")
    c.add_argument("--quantize", choices=["dynamic", "int8"],
                   help="--to tflite: dynamic-range (int8 weights) or full int8 quantisation; parity then uses the "
                   "int8 profile (top-1 agreement ≥ 90%%) over ≥ 32 seeded inputs")
    c.add_argument("--calibration", metavar="CASES.npz", help="int8 calibration inputs (default: 32 seeded inputs)")
    c.add_argument("--profile", default="fp32", help="parity tolerance profile (fp32, tf32, bf16, fp16, int8)")
    c.add_argument("--reference", choices=["auto", "float64", "none"], default="auto",
                   help="judge drift against the source run in float64 (auto: where it fits in memory; "
                   "float64: whatever the estimate) or by the fixed tolerance alone (none)")
    c.add_argument("--no-parity", action="store_true", help="skip the parity check")
    c.add_argument("--seeds", type=int, default=3, help="parity seeds (default 3)")
    c.add_argument("--no-latency", action="store_true", help="skip timing source vs converted")
    c.add_argument("--report", metavar="FILE.json", help="write the full report (tax, parity, mapping) as JSON")
    c.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    c.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")

    _add_parity_parser(sub)
    _add_inspect_parser(sub)
    _add_audit_parser(sub)

    tg = sub.add_parser("targets", help="list the output formats --to takes, with the -o endings that pick each")
    tg.add_argument("--json", action="store_true", help="print the list as JSON")
    m = sub.add_parser("models", help="bundled reference architectures and checkpoints")
    msub = m.add_subparsers(dest="models_command", metavar="ACTION")
    msub.add_parser("list", help="list architectures and presets")
    b = msub.add_parser("build", help="write a deterministic checkpoint of a preset (with its config sidecar)")
    b.add_argument("preset")
    b.add_argument("-o", "--output", required=True, help=".pt, .safetensors or .pt2 path")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--force", action="store_true")
    return p


def _add_parity_parser(sub: Any) -> None:
    p = sub.add_parser(
        "parity", help="check that two models compute the same function (CI gate and debugger)",
        description="Run SOURCE and CONVERTED on the same inputs, compare every output in float64 and judge "
        "it against a tolerance profile; name the first diverging layer when it fails. Either side may be "
        ".pt2/.pt/.pth/.safetensors (PyTorch), .keras, a SavedModel directory or .onnx. "
        "Exit 0 pass, 1 parity failure, 2 bad input.")
    p.add_argument("source", help="the reference model")
    p.add_argument("converted", help="the model under test")
    g = p.add_argument_group("inputs")
    g.add_argument("--inputs", metavar="CASES.npz", help="user cases: input names, or caseN/<input> for several")
    g.add_argument("--seeds", type=int, default=3, help="seeded cases per shape (default 3)")
    g.add_argument("--shapes", action="append", metavar="DIM=N,N,...",
                   help="sizes for a dynamic dim, e.g. seq=16,64,128; repeat for more dims (every combination runs)")
    g.add_argument("--arch", help="architecture of a state_dict source (see `porttax models list`)")
    g.add_argument("--config", help="JSON config for --arch")
    g.add_argument("--trust-pickle", action="store_true", help="allow a pickled torch module (runs its code)")
    g.add_argument("--trust-code", action="store_true",
                   help="allow a TorchScript archive or a Keras file's Lambda layers (runs their code)")
    g.add_argument("--input-shape", action="append", metavar="SHAPE", help="input shape of a source that has none")
    g.add_argument("--input-dtype", action="append", metavar="DTYPE", help="input dtype, per input")
    r = p.add_argument_group("where and how precisely")
    r.add_argument("--device", choices=["cpu", "cuda", "all"], default="cpu",
                   help="where the converted model runs; all = cpu, then cuda when present (default cpu)")
    r.add_argument("--source-device", choices=["cpu", "cuda"], help="where the source runs (default: --device)")
    r.add_argument("--backend", choices=["tensorflow", "torch", "jax"],
                   help="Keras backend for a .keras model (other backends run in a worker process)")
    r.add_argument("--profile", default="fp32", help="tolerance profile: fp32 (default), tf32, bf16, fp16, int8 (top-1)")
    r.add_argument("--reference", choices=["auto", "float64", "none"], default="auto",
                   help="auto (default): run the source in float64 too and allow the converted model up to "
                   "--noise-factor x the source's own float32 error (never below the profile's threshold); "
                   "float64: try even past the memory estimate; none: the fixed threshold alone")
    r.add_argument("--noise-factor", type=float, default=None, metavar="K",
                   help="how many times the source's own error against float64 the converted model may be "
                   "(default: porttax.parity.profiles.NOISE_FACTOR, chosen by bench/parity_noise.py)")
    r.add_argument("--stat", help="gating statistic: rel_l2 (default), max_abs, max_rel, mean_abs, median_abs")
    r.add_argument("--atol", action="append", metavar="[OUTPUT=]V", help="absolute floor, for all or one output")
    r.add_argument("--rtol", action="append", metavar="[OUTPUT=]V",
                   help="threshold on the gating statistic, for all or one output")
    r.add_argument("--topk", default="1,5", help="top-k agreement to report for logits (default 1,5)")
    d = p.add_argument_group("debugging and gates")
    loc = d.add_mutually_exclusive_group()
    loc.add_argument("--localize", action="store_true", help="always report per-layer drift (default: on failure)")
    loc.add_argument("--no-localize", action="store_true", help="never localise")
    d.add_argument("--generate", type=int, default=0, metavar="N", help="also decode N tokens greedily (causal LMs)")
    d.add_argument("--baseline", metavar="R.json", help="fail when drift grew beyond --baseline-margin since this report")
    d.add_argument("--baseline-margin", type=float, default=2.0, help="allowed growth factor (default 2)")
    o = p.add_argument_group("reports")
    o.add_argument("--json", metavar="R.json", help="JSON report (documented in docs/parity-report.md)")
    o.add_argument("--junit", metavar="R.xml", help="JUnit XML: one test case per model x case x output")
    o.add_argument("--markdown", metavar="R.md", help="Markdown for a pull-request comment")
    o.add_argument("--html", metavar="R.html", help="self-contained HTML with a per-layer drift plot")
    o.add_argument("--name", help="label for this model in the reports (default: the converted file name)")
    o.add_argument("-q", "--quiet", action="store_true", help="no progress or table; reports and exit code only")


def _add_inspect_parser(sub: Any) -> None:
    i = sub.add_parser("inspect", help="list a model's layers, parameters and which road converts each, without converting",
                       description="Read a model (any format porttax converts) and list its layer and op types with "
                       "counts, parameters and dtypes, and which road covers each; unsupported ops are named with "
                       "where they occur. Nothing is converted or run. Exit 0 when read, 2 bad input.")
    i.add_argument("model", nargs="?",
                   help="a .pt2, .pt/.pth, .safetensors, Hugging Face folder, .keras, .h5, SavedModel or .onnx")
    i.add_argument("--coverage", action="store_true",
                   help="instead of a model: what each direct road converts, against core ATen, keras.layers and "
                   "the ONNX operator set (docs/coverage.md)")
    i.add_argument("--road", action="append", choices=["torch-keras", "keras-torch", "onnx-torch"],
                   help="with --coverage: only this road (repeatable)")
    i.add_argument("--markdown", action="store_true", help="with --coverage: every row, as Markdown")
    i.add_argument("--arch", help="architecture of a state_dict checkpoint (see `porttax models list`)")
    i.add_argument("--config", help="JSON config for --arch")
    i.add_argument("--trust-pickle", action="store_true", help="allow a pickled torch module (runs its code)")
    i.add_argument("--trust-code", action="store_true",
                   help="allow a TorchScript archive or a Keras file's Lambda layers (runs their code)")
    i.add_argument("--input-shape", action="append", metavar="SHAPE", help="input shape of a source that has none")
    i.add_argument("--input-dtype", action="append", metavar="DTYPE", help="input dtype, per input")
    i.add_argument("--deep", action="store_true",
                   help="PyTorch sources: also export to ONNX in a scratch folder to price the ONNX road")
    i.add_argument("--json", action="store_true", help="print the inspection as JSON")


def _add_audit_parser(sub: Any) -> None:
    from porttax.audit.cli import add_audit_parser

    add_audit_parser(sub)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C so every temporary output is removed on the way out."""


def _quiet_teardown() -> None:
    """A signal can land inside a framework object's constructor; its __del__ then complains while the
    stack unwinds or the process shuts down ("Exception ignored in ..."), noise after a clean stop."""
    sys.unraisablehook = lambda unraisable: None


def _on_sigterm(signum: int, frame: Any) -> None:
    _stop(Terminated())


def _on_sigint(signum: int, frame: Any) -> None:
    _stop(KeyboardInterrupt())


def _stop(exc: KeyboardInterrupt) -> None:
    from porttax.saving import request_stop

    _quiet_teardown()
    request_stop(exc)  # in case this raise is swallowed where it lands: nothing gets published after it
    raise exc


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help()
        return 2
    import signal
    import threading

    in_main = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, handler) for sig, handler in
                ((signal.SIGTERM, _on_sigterm), (signal.SIGINT, _on_sigint))} if in_main else {}
    try:
        return _dispatch(args)
    finally:
        if in_main:
            from porttax.saving import request_stop

            request_stop(None)
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def _dispatch(args: argparse.Namespace) -> int:
    try:
        if args.command == "convert":
            return _convert(args)
        if args.command == "models":
            return _models(args)
        if args.command == "targets":
            return _targets(args)
        if args.command == "parity":
            return _parity(args)
        if args.command == "inspect":
            return _inspect(args)
        if args.command == "audit":
            from porttax.audit.cli import run_audit_command

            return run_audit_command(args)
    except PorttaxError as exc:
        print(f"porttax: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        _quiet_teardown()
        signal_name, code = ("SIGTERM", 143) if isinstance(exc, Terminated) else ("interrupt", 130)
        print(f"porttax: stopped by {signal_name}; no output was written and temporary files were removed",
              file=sys.stderr)
        return code
    except Exception:  # a bug in porttax or a framework, not bad input and not drift: say so
        import traceback

        traceback.print_exc()
        print("porttax: internal error (exit 3): this is a porttax bug, not a problem with your model; "
              "please report it with the traceback above", file=sys.stderr)
        return 3
    return 2


def _targets(args: argparse.Namespace) -> int:
    """`porttax targets`: the registry of porttax.targets, as a table or JSON."""
    from porttax.targets import all_targets

    rows = [{"name": t.name, "aliases": list(t.aliases), "suffixes": list(t.suffixes), "output": t.output,
             "takes": list(t.ways), "summary": t.summary} for t in all_targets()]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'target':<14} {'-o endings':<22} {'from':<19} what it writes")
    for row in rows:
        picks = ", ".join(row["suffixes"]) or "-"
        print(f"{row['name']:<14} {picks:<22} {', '.join(row['takes']):<19} {row['summary']}")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from porttax.conversion import convert
    from porttax.sources.torch_source import parse_shape
    from porttax.progress import Progress

    progress = Progress(enabled=not (args.quiet or args.json))
    result = convert(
        args.source, to=args.to, output=args.output, arch=args.arch, config=args.config,
        input_shapes=[parse_shape(s) for s in args.input_shape] if args.input_shape else None,
        input_dtypes=args.input_dtype, trust_pickle=args.trust_pickle, parity=not args.no_parity,
        seeds=tuple(range(args.seeds)), measure_latency=not args.no_latency, force=args.force,
        jit=args.jit, trust_code=args.trust_code, channels_first=args.channels_first, route=args.route,
        quantize=args.quantize, calibration=args.calibration, profile=args.profile, reference=args.reference,
        progress=progress,
        dtype=args.dtype, max_shard_size=args.max_shard_size, weight_map_from=args.weight_map,
        max_cache_len=args.max_cache_len, static=args.static,
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
        if result.generation is not None:
            from porttax.targets.llm_signatures import summary_line

            print(summary_line(result.generation))
        print("porting tax:")
        for line in result.tax.lines():
            print(f"  {line}")
        if result.roads_text and (len(result.roads_text) > 1 or args.route not in ("direct", "fallback")):
            print("roads tried (* kept):")
            for line in result.roads_text:
                print(f"  {line}")
        if args.report:
            print(f"report: {args.report}")
    if not result.passed:
        print("porttax: parity FAILED: the converted model does not compute the same function within "
              "tolerance (output kept for inspection)", file=sys.stderr)
        return 1
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from porttax.errors import InputError

    if args.coverage:
        return _coverage(args)
    if args.model is None:
        raise InputError("porttax inspect: name a model file or folder, or pass --coverage")
    if args.markdown or args.road:
        raise InputError("porttax inspect: --markdown and --road go with --coverage")
    from porttax.inspection import inspect_model
    from porttax.sources.torch_source import parse_shape

    result = inspect_model(args.model, arch=args.arch, config=args.config, trust_pickle=args.trust_pickle,
                           trust_code=args.trust_code, deep=args.deep,
                           input_shapes=[parse_shape(s) for s in args.input_shape] if args.input_shape else None,
                           input_dtypes=args.input_dtype)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print("\n".join(result.lines()))
    return 0


def _coverage(args: argparse.Namespace) -> int:
    from porttax.operator_sets import coverage
    from porttax.errors import InputError

    if args.model is not None:
        raise InputError(f"porttax inspect --coverage describes the converters, not a model: drop {args.model!r}")
    tables = coverage.coverage(args.road)
    if args.json:
        print(json.dumps([t.to_dict() for t in tables], indent=2))
    elif args.markdown:
        print(coverage.markdown(tables), end="")
    else:
        print("\n".join(coverage.lines(tables)))
    return 0


def _per_output(values: list[str] | None, flag: str) -> tuple[float | None, dict[str, float]]:
    """`--rtol 1e-4 --rtol logits=1e-3` → (1e-4, {"logits": 1e-3})."""
    from porttax.errors import InputError

    default, per = None, {}
    for item in values or []:
        name, _, value = item.rpartition("=")
        try:
            number = float(value)
        except ValueError:
            raise InputError(f"{flag} {item!r}: expected a number or OUTPUT=number") from None
        if name:
            per[name] = number
        else:
            default = number
    return default, per


def _parse_shapes(items: list[str] | None) -> dict[str, list[int]]:
    from porttax.errors import InputError

    shapes: dict[str, list[int]] = {}
    for item in items or []:
        name, sep, sizes = item.partition("=")
        try:
            values = [int(v) for v in sizes.split(",") if v.strip()]
        except ValueError:
            values = []
        if not sep or not name or not values or min(values) < 1:
            raise InputError(f"--shapes {item!r}: expected DIM=N[,N...] with positive sizes, e.g. seq=16,64")
        shapes[name.strip()] = values
    return shapes


def _parity(args: argparse.Namespace) -> int:
    from porttax.errors import InputError
    from porttax.sources.torch_source import parse_shape
    from porttax.parity import Tolerance, check_parity, expand_sizes, load_npz_cases
    from porttax.parity.open import OpenOptions, cuda_available, open_pair
    from porttax.parity.render import print_table, write_reports
    from porttax.saving import atomic_output

    atol, atols = _per_output(args.atol, "--atol")
    rtol, rtols = _per_output(args.rtol, "--rtol")
    tolerances = {n: Tolerance(atols.get(n), rtols.get(n)) for n in set(atols) | set(rtols)}
    topk = tuple(int(k) for k in args.topk.split(",") if k.strip())
    sizes = expand_sizes(_parse_shapes(args.shapes))
    cases = load_npz_cases(args.inputs) if args.inputs else None
    if cases is not None and args.shapes:
        raise InputError("--inputs and --shapes do not mix: user cases carry their own shapes")
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    if args.device == "all" and not cuda_available():
        devices = ["cpu"]
        if not args.quiet:
            print("porttax: no CUDA device here; --device all checks the CPU only", file=sys.stderr)
    common = dict(arch=args.arch, config=args.config, trust_pickle=args.trust_pickle, trust_code=args.trust_code,
                  input_shapes=[parse_shape(s) for s in args.input_shape] if args.input_shape else None,
                  input_dtypes=args.input_dtype)
    reports = []
    for device in devices:
        source, converted = open_pair(args.source, args.converted,
                                      OpenOptions(**common, device=args.source_device or device),
                                      OpenOptions(**common, device=device, backend=args.backend))

        def progress(done: int, total: int, label: str, _device: str = device) -> None:
            if not args.quiet and done < total:
                print(f"porttax: [{_device}] case {done + 1}/{total}: {label}", file=sys.stderr, flush=True)

        reports.append(check_parity(
            source, converted, seeds=tuple(range(args.seeds)), profile=args.profile, cases=cases,
            sizes=sizes, atol=atol, rtol=rtol, tolerances=tolerances, stat=args.stat, topk=topk,
            localize=True if args.localize else (False if args.no_localize else None),
            baseline=args.baseline, baseline_margin=args.baseline_margin, generate=args.generate,
            model=args.name or Path(args.converted).name, progress=progress, reference=args.reference,
            **({} if args.noise_factor is None else {"noise_factor": args.noise_factor}),
        ))
    if len(reports) == 1:
        write_reports(reports[0], json_path=args.json, markdown_path=args.markdown, junit_path=args.junit,
                      html_path=args.html)
    else:  # one file per device for JSON/Markdown/HTML; JUnit holds every device as its own suite
        for report, device in zip(reports, devices):
            write_reports(report, json_path=_suffixed(args.json, device), markdown_path=_suffixed(args.markdown, device),
                          html_path=_suffixed(args.html, device))
        if args.junit:
            from porttax.parity.render import to_junit

            with atomic_output(args.junit, force=True) as tmp:
                tmp.write_text(to_junit(reports))
    if not args.quiet:
        for report in reports:
            print_table(report)
    return 0 if all(r.passed for r in reports) else 1


def _suffixed(path: str | None, device: str) -> str | None:
    if path is None:
        return None
    p = Path(path)
    return str(p.with_name(f"{p.stem}.{device}{p.suffix}"))


def _models(args: argparse.Namespace) -> int:
    from porttax import models

    if args.models_command == "list" or args.models_command is None:
        for name in models.list_architectures():
            arch = models.ARCHITECTURES[name]
            print(f"{name:10s} {arch.family}")
            print(f"{'':10s} presets: {', '.join(models.list_presets(name))}")
        return 0
    from porttax.saving import atomic_output, check_output
    from porttax.targets.torch import write_pt2

    out = check_output(args.output, args.force)
    if out.suffix == ".pt2":
        module = models.build_model(args.preset, seed=args.seed)
        with atomic_output(out, force=args.force) as tmp:
            write_pt2(module, tmp, models.example_inputs(args.preset, batch=1, seq=16))
    else:
        models.build_checkpoint(args.preset, out, seed=args.seed)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
