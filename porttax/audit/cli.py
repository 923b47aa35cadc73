"""`porttax audit`: argument parsing and the terminal summary; the work is in porttax.audit.run."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_audit_parser(sub: Any) -> None:
    a = sub.add_parser(
        "audit", help="the porting-tax report for many models: coverage, drift, speed, memory, manual work",
        description="Inspect, convert (every road that applies), check parity and benchmark each model of a folder, "
        "glob or list file, each in its own worker process, and write one report. PyTorch and ONNX sources go "
        "--to the target; Keras and SavedModel sources go to torch. Results are cached by content hash. "
        "Exit 0 when the audit ran (whatever the models' verdicts; see --fail-on), 2 bad input.")
    a.add_argument("models", help="a folder (walked recursively), a quoted glob, a list file (.txt: one model per "
                   "line, with per-model options) or one model")
    a.add_argument("--to", choices=["keras", "savedmodel", "onnx", "tflite", "executorch", "tfjs"], default="keras",
                   help="target for PyTorch and ONNX sources (default keras)")
    a.add_argument("--roads", default="direct,onnx",
                   help="PyTorch roads to try, comma-separated: direct, onnx (default both; the one with least "
                   "drift is kept, direct first among equals)")
    a.add_argument("--seeds", type=int, default=3, help="parity seeds per model (default 3)")
    a.add_argument("--profile", default="fp32", help="tolerance profile (default fp32)")
    a.add_argument("--device", default="cpu", metavar="cpu[,cuda]",
                   help="also check parity of each converted model on CUDA (source and converted both there; "
                   "reported per model under `devices`, 'not available' without a GPU); CPU always runs")
    a.add_argument("--gpu-profile", default="tf32", help="tolerance profile on CUDA (default tf32)")
    a.add_argument("--jobs", type=int, default=1, help="models measured at once on this machine (default 1)")
    a.add_argument("--threads", type=int, help="threads per model (default: cores / jobs)")
    a.add_argument("--timeout", type=float, default=900.0, metavar="SECONDS", help="limit per model (default 900)")
    a.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local worker processes (default) or a Ray cluster (pip install 'porttax[ray]')")
    a.add_argument("--address", help="Ray cluster address (auto, HOST:PORT); default: start a local Ray")
    a.add_argument("--no-bench", action="store_true", help="skip latency and memory measurements")
    a.add_argument("--cache-dir", help="where results are cached (default ~/.cache/porttax/audit)")
    a.add_argument("--no-cache", action="store_true", help="measure every model again, and cache nothing")
    a.add_argument("--effort", metavar="FILE.toml", help="coefficients of the effort estimate (default: porttax's "
                   "porttax/audit/effort.toml; copy and edit it)")
    a.add_argument("--trust-pickle", action="store_true", help="allow pickled torch modules (runs their code)")
    a.add_argument("--trust-code", action="store_true", help="allow Keras Lambda layers (runs their code)")
    a.add_argument("--keep-outputs", metavar="DIR", help="keep each converted model in DIR")
    a.add_argument("--fail-on", default="", metavar="STATUS,...",
                   help="exit 1 when any model ends with one of these statuses (e.g. drifted,unsupported,error)")
    o = a.add_argument_group("reports")
    o.add_argument("--html", metavar="F.html", help="self-contained HTML: sortable table, drift and speed charts")
    o.add_argument("--json", metavar="F.json", help="JSON (documented in docs/audit-report.md)")
    o.add_argument("--markdown", metavar="F.md", help="Markdown summary")
    o.add_argument("--csv", metavar="F.csv", help="CSV, one row per model")
    a.add_argument("-q", "--quiet", action="store_true", help="no progress and no table")


def run_audit_command(args: argparse.Namespace) -> int:
    from porttax.audit.render import write_reports
    from porttax.audit.rows import STATUSES
    from porttax.audit.run import audit
    from porttax.errors import InputError

    fail_on = [s.strip() for s in args.fail_on.split(",") if s.strip()]
    if bad := [s for s in fail_on if s not in STATUSES]:
        raise InputError(f"--fail-on: unknown status(es) {', '.join(bad)}", hint=f"use: {', '.join(STATUSES)}")

    def say(message: str) -> None:
        if not args.quiet:
            print(f"porttax: {message}", file=sys.stderr, flush=True)

    report = audit(args.models, to=args.to, roads=[r.strip() for r in args.roads.split(",") if r.strip()],
                   seeds=args.seeds, profile=args.profile, bench=not args.no_bench, timeout_s=args.timeout,
                   jobs=args.jobs, threads=args.threads, executor=args.executor, address=args.address,
                   cache_dir=args.cache_dir, use_cache=not args.no_cache, effort=args.effort,
                   trust_pickle=args.trust_pickle, trust_code=args.trust_code, keep_dir=args.keep_outputs,
                   devices=[d.strip() for d in args.device.split(",") if d.strip()], gpu_profile=args.gpu_profile,
                   progress=say)
    written = write_reports(report, json_path=args.json, markdown_path=args.markdown, csv_path=args.csv,
                            html_path=args.html)
    if not args.quiet:
        print_summary(report)
        for path in written:
            print(f"report: {path}")
    return 1 if any(r.status in fail_on for r in report.rows) else 0


def print_summary(report: Any) -> None:
    header = f"{'model':<28} {'status':<11} {'road':<7} {'layers':>7} {'‖a−b‖/‖b‖':>10} {'speed':>7} {'memory':>7} {'hours':>6}"
    print(header)
    for r in report.rows:
        cov = f"{100 * r.layer_coverage:.0f}%" if r.layer_coverage is not None else "—"
        drift = f"{r.drift_rel_l2:.1e}" if r.drift_rel_l2 is not None else "—"
        speed = f"{r.measurements.latency_ratio:.2f}×" if r.measurements.latency_ratio else "—"
        mem = f"{r.measurements.memory_ratio:.2f}×" if r.measurements.memory_ratio else "—"
        hours = f"{r.effort_hours:g}" if r.effort_hours is not None else "—"
        name = r.model if len(r.model) <= 28 else "…" + r.model[-27:]
        print(f"{name:<28} {r.status:<11} {r.road or '—':<7} {cov:>7} {drift:>10} {speed:>7} {mem:>7} {hours:>6}")
        if r.status not in ("converted",) and r.reason:
            print(f"  ↳ {r.reason[:150]}")
        for device, d in r.devices.items():
            drift = f", ‖a−b‖/‖b‖ {d['drift_rel_l2']:.1e}" if d.get("drift_rel_l2") is not None else ""
            print(f"  ↳ {device}: {d['status']} ({d['profile']}{drift}){': ' + d['reason'] if d.get('reason') else ''}")
    s = report.summary()
    counts = ", ".join(f"{n} {k}" for k, n in s["by_status"].items() if n)
    print(f"{s['models']} model(s): {counts}; effort {s['effort_hours']:g} h ({report.effort_formula}); "
          f"{s['cached']} from the cache, {s['jobs_run']} measured")
