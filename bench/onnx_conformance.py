"""ONNX's own node conformance tests, run against porttax's roads and onnxruntime in one run.

    .venv/bin/python bench/onnx_conformance.py                       # every case, every road (long)
    .venv/bin/python bench/onnx_conformance.py --roads torch,onnxruntime --ops Resize,TopK
    .venv/bin/python bench/onnx_conformance.py --per-op 2 --json conformance.json   # a quick table

The cases are the ones `onnx.backend.test.case.node.collect_testcases()` builds offline (1,884 with onnx
1.23): a model, its inputs and the outputs ONNX's reference computed. Each road is porttax as an
`onnx.backend` backend (porttax.operator_sets.onnx_backend): the torch road runs the `torch.export` program porttax
captures from the file, the Keras road the Keras model converted from it, the SavedModel road the
reloaded SavedModel's serving signature; onnxruntime runs the same models as the reference point.
Outputs are compared as ONNX's own runner does (same shapes and dtypes; `assert_allclose` at each case's
rtol/atol, 1e-3/1e-7 unless the case says otherwise).

Out of scope, listed by name with the reason: what an inference converter cannot mean — string, optional
and sequence-typed tensors, random ops without a seed contract, training ops — and the ai.onnx.ml domain
(classic-ML operators; porttax converts the default-domain operator set).

Cases run in worker processes, a chunk at a time, so a crash in one framework costs one case, not the run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterable

import numpy as np

HERE = Path(__file__).resolve()
PORTTAX_ROADS = ("torch", "keras", "savedmodel")
ALL_ROADS = (*PORTTAX_ROADS, "onnxruntime")


# ---- the cases, and which are in scope ---------------------------------------------------------------


def load_cases() -> list[Any]:
    import warnings

    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # the generators overflow casts on purpose
        return collect_testcases(None)


def _snake(op: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", op).lower()


def primary_op(case: Any) -> str:
    """The op a case tests: the graph's op whose name starts the case name (`test_resize_…` → Resize);
    `Op (expanded)` for cases that run an op's function body, which other ops compute."""
    ops = [n.op_type for n in case.model.graph.node]
    name = case.name[len("test_"):]
    candidates = [op for op in dict.fromkeys(ops) if name.startswith(_snake(op)) or name.startswith(op.lower())]
    op = max(candidates, key=len) if candidates else (ops[0] if ops else "?")
    return f"{op} (expanded)" if "_expanded" in case.name else op


def out_of_scope(case: Any) -> str | None:
    """Why a case is out of scope, or None."""
    from porttax.operator_sets.coverage import ONNX_OUT_OF_SCOPE

    graph = case.model.graph
    for node in _all_nodes(graph):
        if node.domain == "ai.onnx.ml":
            return "ai.onnx.ml domain: classic-ML operators, not the default-domain operator set"
        if node.domain.startswith("ai.onnx.preview.training"):
            return "training operators"
        if node.domain in ("", "ai.onnx") and node.op_type in ONNX_OUT_OF_SCOPE:
            return f"{node.op_type}: {ONNX_OUT_OF_SCOPE[node.op_type]}"
    for value in [*graph.input, *graph.output]:
        kind = value.type.WhichOneof("value")
        if kind in ("sequence_type", "optional_type", "sparse_tensor_type", "map_type"):
            return f"{kind.replace('_type', '')}-typed {'input' if value in graph.input else 'output'}"
        if kind == "tensor_type" and value.type.tensor_type.elem_type == 8:  # STRING
            return "string tensors"
    return None


def _all_nodes(graph: Any) -> Iterable[Any]:
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _all_nodes(sub)


# ---- one case on one road (in a worker) --------------------------------------------------------------


def compare(expected: list[np.ndarray], got: list[np.ndarray], rtol: float, atol: float) -> str | None:
    """None when `got` matches as ONNX's runner requires, else what differs."""
    if len(got) != len(expected):
        return f"{len(got)} outputs, expected {len(expected)}"
    for i, (e, g) in enumerate(zip(expected, got)):
        e, g = np.asarray(e), np.asarray(g)
        if g.shape != e.shape:
            return f"output {i}: shape {g.shape}, expected {e.shape}"
        if g.dtype != e.dtype:
            return f"output {i}: dtype {g.dtype}, expected {e.dtype}"
        try:
            if e.dtype == object or e.dtype == bool or np.issubdtype(e.dtype, np.integer):
                np.testing.assert_array_equal(g, e)
            else:
                np.testing.assert_allclose(g.astype(np.float64), e.astype(np.float64), rtol=rtol, atol=atol)
        except AssertionError as exc:
            lines = [ln for ln in str(exc).splitlines() if ln.strip()]
            return f"output {i}: " + "; ".join(lines[1:4])[:300]
    return None


def run_case(case: Any, road: str) -> tuple[str, str]:
    """(status, detail): pass, fail (wrong numbers), refused (porttax says why), error (anything else)."""
    from porttax.errors import PorttaxError

    try:
        if road == "onnxruntime":
            rep: Any = _OrtRep(case.model)
        else:
            from porttax.operator_sets.onnx_backend import BACKENDS

            rep = BACKENDS[road].prepare(case.model)
        for inputs, expected in case.data_sets:
            got = list(rep.run([_array(x) for x in inputs]))
            diff = compare([_array(e) for e in expected], got, case.rtol, case.atol)
            if diff:
                return "fail", diff
        folded = sorted({i for f in getattr(rep, "folded", {}).values() for i in f})
        return "pass", f"inputs {folded} taken as constants" if folded else ""
    except PorttaxError as exc:
        return "refused", str(exc).splitlines()[0][:300]
    except Exception as exc:  # noqa: BLE001  (a conformance run counts every failure; it never stops)
        return "error", f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"


def _array(value: Any) -> Any:
    """Cases of dtypes NumPy lacks a name for (float16 in some, float8, int4) hold TensorProtos."""
    from onnx import TensorProto, numpy_helper

    return numpy_helper.to_array(value) if isinstance(value, TensorProto) else value


class _OrtRep:
    def __init__(self, model: Any) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self.names = [i.name for i in self.session.get_inputs()]

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return self.session.run(None, dict(zip(self.names, inputs)))


def worker(names: list[str], roads: list[str]) -> None:
    """Run the named cases on the roads; one JSON line per (case, road) on stdout, flushed as it goes."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from porttax._frameworks import import_keras, import_torch

    import_torch()
    if any(r in ("keras", "savedmodel") for r in roads):
        import_keras()
    wanted = set(names)
    cases = [c for c in load_cases() if c.name in wanted]
    out = sys.__stdout__
    for case in cases:
        for road in roads:
            start = time.perf_counter()
            status, detail = run_case(case, road)
            out.write(json.dumps({"case": case.name, "road": road, "status": status, "detail": detail,
                                  "seconds": round(time.perf_counter() - start, 3)}) + "\n")
            out.flush()


# ---- the run: chunks of cases in worker processes ----------------------------------------------------


def run_all(names: list[str], roads: list[str], chunk: int, log: Any) -> dict[tuple[str, str], dict]:
    results: dict[tuple[str, str], dict] = {}
    pending = list(names)
    while pending:
        batch, pending = pending[:chunk], pending[chunk:]
        cmd = [sys.executable, str(HERE), "--worker", "--cases", ",".join(batch), "--roads", ",".join(roads)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("{"):
                r = json.loads(line)
                results[(r["case"], r["road"])] = r
        proc.wait()
        done = {c for c, _ in results}
        unfinished = [n for n in batch if any((n, r) not in results for r in roads)]
        if proc.returncode != 0 and unfinished:  # the worker died inside the first unfinished case
            dead = unfinished[0]
            for road in roads:
                results.setdefault((dead, road), {"case": dead, "road": road, "status": "error",
                                                  "detail": f"worker crashed (exit {proc.returncode})", "seconds": 0})
            pending = unfinished[1:] + pending
        log(f"{len(done)}/{len(names)} cases")
    return results


def table(cases: list[Any], results: dict, roads: list[str], scope: dict[str, str | None]) -> dict[str, Any]:
    in_scope = [c for c in cases if scope[c.name] is None]
    summary: dict[str, Any] = {"cases": len(cases), "in_scope": len(in_scope), "roads": {}, "per_op": {},
                               "out_of_scope": Counter(v for v in scope.values() if v)}
    for road in roads:
        statuses = Counter(results[(c.name, road)]["status"] for c in in_scope)
        folded = sum(results[(c.name, road)]["detail"].endswith("taken as constants") for c in in_scope
                     if results[(c.name, road)]["status"] == "pass")
        summary["roads"][road] = dict(statuses, share=statuses["pass"] / max(1, len(in_scope)), folded=folded)
    per_op: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    for c in in_scope:
        for road in roads:
            per_op[primary_op(c)][road][results[(c.name, road)]["status"]] += 1
    summary["per_op"] = {op: {r: dict(v) for r, v in roads_.items()} for op, roads_ in sorted(per_op.items())}
    return summary


def claimed_but_failing(cases: list[Any], results: dict, scope: dict[str, str | None]) -> dict[str, list[str]]:
    """Ops the ONNX → torch registry claims, with each of their own (not expanded) cases the torch road fails."""
    from porttax._frameworks import import_torch

    import_torch()
    import porttax.converters.onnx_to_torch.families  # noqa: F401
    from porttax.converters.registry import REGISTRY

    out: dict[str, list[str]] = defaultdict(list)
    for c in cases:
        op = primary_op(c)
        if scope[c.name] is None and REGISTRY.lookup("onnx", "torch", op) is not None \
                and results.get((c.name, "torch"), {}).get("status") not in (None, "pass"):
            out[op].append(c.name)
    return dict(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--roads", default=",".join(ALL_ROADS), help=f"comma-separated, of {', '.join(ALL_ROADS)}")
    p.add_argument("--ops", help="only cases of these op types (comma-separated, e.g. Resize,TopK)")
    p.add_argument("--per-op", type=int, help="at most N cases per op type (a quick, representative table)")
    p.add_argument("--chunk", type=int, default=150, help="cases per worker process")
    p.add_argument("--json", metavar="F", help="write the summary and every case's result here")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--cases", help=argparse.SUPPRESS)
    args = p.parse_args()
    roads = [r for r in args.roads.split(",") if r]
    if unknown := set(roads) - set(ALL_ROADS):
        p.error(f"unknown roads {sorted(unknown)}")
    if args.worker:
        worker(args.cases.split(","), roads)
        return
    start = time.perf_counter()
    cases = load_cases()
    if args.ops:
        wanted = set(args.ops.split(","))
        cases = [c for c in cases if primary_op(c).replace(" (expanded)", "") in wanted]
    if args.per_op:
        seen: Counter = Counter()
        kept = []
        for c in cases:
            if seen[primary_op(c)] < args.per_op:
                seen[primary_op(c)] += 1
                kept.append(c)
        cases = kept
    scope = {c.name: out_of_scope(c) for c in cases}
    runnable = [c.name for c in cases if scope[c.name] is None]
    print(f"{len(cases)} ONNX node cases, {len(runnable)} in scope; roads: {', '.join(roads)}", flush=True)
    results = run_all(runnable, roads, args.chunk, lambda m: print(f"  … {m} ({time.perf_counter() - start:.0f} s)",
                                                                    flush=True))
    summary = table(cases, results, roads, scope)
    print(f"\nONNX node conformance (onnx {_onnx_version()}), {summary['in_scope']} of {summary['cases']} cases in scope:")
    print("| road | pass | of which with inputs as constants | fail | refused | error | pass share |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for road, s in summary["roads"].items():
        print(f"| {road} | {s.get('pass', 0)} | {s['folded']} | {s.get('fail', 0)} | {s.get('refused', 0)} | "
              f"{s.get('error', 0)} | {100 * s['share']:.1f}% |")
    print("(ONNX's cases pass axes, shapes, pads and weights as graph inputs; where porttax needs one known at\n"
          " conversion, as it is in an exported file, the backend takes it as a constant at the value given.)")
    print("\nout of scope:")
    for reason, n in summary["out_of_scope"].most_common():
        print(f"  {n:4d}  {reason}")
    if "torch" in roads:
        failing = claimed_but_failing(cases, results, scope)
        print(f"\nops the registry claims with a torch-road case that does not pass: {len(failing)}")
        for op, names in sorted(failing.items()):
            details = {results[(n, 'torch')]['detail'][:120] for n in names}
            print(f"  {op}: {len(names)} ({', '.join(names[:4])}{', …' if len(names) > 4 else ''}) — {'; '.join(sorted(details))[:300]}")
    for road in [r for r in ("keras", "savedmodel") if r in roads and "torch" in roads]:
        gaps: dict[str, list[str]] = defaultdict(list)
        for c in cases:
            if scope[c.name] is None and results[(c.name, "torch")]["status"] == "pass" \
                    and results[(c.name, road)]["status"] != "pass":
                gaps[primary_op(c)].append(results[(c.name, road)]["detail"][:100])
        print(f"\ncases the torch road passes and the {road} road does not: {sum(map(len, gaps.values()))}")
        for op, details in sorted(gaps.items()):
            print(f"  {op}: {len(details)} — {'; '.join(sorted(set(details)))[:300]}")
    print(f"\n{time.perf_counter() - start:.0f} s")
    if args.json:
        payload = {"summary": {**summary, "out_of_scope": dict(summary["out_of_scope"])},
                   "results": list(results.values())}
        Path(args.json).write_text(json.dumps(payload, indent=1))


def _onnx_version() -> str:
    import onnx

    return onnx.__version__


if __name__ == "__main__":
    main()
