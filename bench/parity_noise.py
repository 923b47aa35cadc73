"""Choosing the noise factor: clean conversions of real architectures against planted faults in them.

    .venv/bin/python bench/parity_noise.py [--models resnet50,googlenet,...] [--seeds 5] [--size 224]
                                           [--targets keras,savedmodel] [--out bench/results/parity_noise.jsonl]

For each torchvision architecture and weight seed: random weights, BatchNorm statistics calibrated on
random batches (train mode for a few forward passes, then eval), exported with torch.export, and
converted with `porttax convert` default options to `.keras` and SavedModel. Each parity case records
the source's own float32 error and the converted model's error, both against the float64 reference,
and what the fixed 1e-5 rule would have said. Then one fault of each kind (porttax.parity.planted:
weight x1.01, Keras's default epsilon, a dropped bias, a transposed square weight) is planted in one
layer of the `.keras` model and parity runs with localisation: is it caught, and is the layer named
the planted one? Rows go to a JSON-lines file as they finish, so a long table can be run in parts
(`--resume` skips rows already there); the summary at the end counts false alarms and misses for a
sweep of factors, from the whole file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from porttax._frameworks import import_torch, import_torchvision  # noqa: E402

MODELS = ("resnet50", "googlenet", "densenet121", "efficientnet_b0", "regnet_y_400mf", "vit_b_16")
FACTORS = (1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 16.0)


def build(name: str, seed: int, size: int):
    """A torchvision architecture with random weights and BatchNorm statistics calibrated on random
    batches: the recipe the issue measured with (cumulative averages, so the statistics are the data's)."""
    torch = import_torch()
    tv = import_torchvision()
    torch.manual_seed(seed)
    kwargs = {"weights": None}
    if name == "googlenet":
        kwargs.update(aux_logits=False, init_weights=True)
    if name.startswith("vit"):
        kwargs["image_size"] = size
    model = getattr(tv.models, name)(**kwargs)
    g = torch.Generator().manual_seed(1000 + seed)
    with torch.no_grad():  # torchvision starts every norm at gamma 1, beta 0: random weights are random there too
        for m in model.modules():
            if isinstance(m, torch.nn.Linear) and not m.weight.any():  # ViT's head starts at zero: output 0
                torch.nn.init.normal_(m.weight, std=m.in_features ** -0.5, generator=g)
            if isinstance(m, torch.nn.Linear) and m.bias is not None and m.bias.abs().max() < 1e-3:
                torch.nn.init.normal_(m.bias, std=0.02, generator=g)  # ViT's MLP biases start at ~1e-6
            if isinstance(m, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.LayerNorm)) and m.weight is not None:
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if bns:
        for m in bns:
            m.momentum = None  # a cumulative average over the calibration batches
        model.train()
        with torch.no_grad():
            for _ in range(4):
                model(torch.randn(8, 3, size, size, generator=g))
    return model.eval()


def clean_rows(report, model: str, seed: int, target: str) -> list[dict]:
    rows = []
    for case in report.cases:
        for out in case.outputs:
            n = out.noise
            rows.append({"kind": "clean", "model": model, "seed": seed, "target": target, "case": case.label,
                         "output": out.name, "passed": out.passed, "rule": out.rule,
                         "drift_vs_source": out.metrics.rel_l2,
                         "fixed_rule_passed": out.metrics.rel_l2 is not None and out.metrics.rel_l2 <= 1e-5,
                         "source_error": n.source_error if n else None,
                         "converted_error": n.converted_error if n else None,
                         "ratio": n.ratio if n else None})
    return rows


def fault_rows(pt2: Path, keras_path: Path, model_name: str, seed: int, kinds: list[str]) -> list[dict]:
    import numpy as np

    from porttax._frameworks import import_torch
    from porttax.layer_map import read_keras_file
    from porttax.parity import KerasRunner, TorchRunner, check_parity
    from porttax.parity.planted import plant
    from porttax.parity.runners import load_keras_model

    torch = import_torch()
    program = torch.export.load(str(pt2))
    specs = None
    model = load_keras_model(keras_path)
    layer_map = read_keras_file(keras_path)
    rows = []
    for kind in kinds:
        rng = np.random.default_rng(seed * 31 + len(kind))
        planted = plant(model, kind, rng)
        if planted is None:
            rows.append({"kind": "fault", "fault": kind, "model": model_name, "seed": seed, "layer": None,
                         "note": "no layer of this kind"})
            continue
        try:
            source = TorchRunner(program, [s.name for s in _specs(program)], specs=_specs(program))
            converted = KerasRunner(model, compiled=True, layer_map=layer_map)
            report = check_parity(source, converted, specs, seeds=(0, 1, 2), localize=True)
        finally:
            planted.undo()
        loc = report.localization
        first = next((lay for lay in loc.layers if not lay.passed), None) if loc else None
        ratios = [o.noise.ratio for c in report.cases for o in c.outputs if o.noise is not None]
        pairs = [[o.noise.source_error, o.noise.converted_error] for c in report.cases for o in c.outputs
                 if o.noise is not None]
        fixed = all(o.metrics.rel_l2 is not None and o.metrics.rel_l2 <= 1e-5 for c in report.cases for o in c.outputs)
        rows.append({"kind": "fault", "fault": kind, "model": model_name, "seed": seed, "layer": planted.layer,
                     "detail": planted.detail, "caught": not report.passed, "fixed_rule_caught": not fixed,
                     "min_ratio": min(ratios) if ratios else None, "cases": pairs,
                     "named": first.target if first else None, "named_source": first.name if first else None,
                     "localised": _names(first.target if first else None, first.name if first else None,
                                         planted.layer)})
    return rows


def _names(target: str | None, source_name: str | None, layer: str) -> bool:
    """The first diverging layer is the planted one: the same Keras layer, or the source module the
    planted layer belongs to (an attention module's output is a reshape; its projections are
    `<module>` and `<module>_1`)."""
    from porttax.layer_map import keras_layer_name

    if target is None or source_name is None:
        return False
    module = keras_layer_name(source_name)
    return target == layer or layer == module or layer.startswith(module + "_")


def _specs(program):
    from porttax.sources.torch_program import specs_from_program

    return specs_from_program(program)


def summarise(path: Path) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    clean = [r for r in rows if r["kind"] == "clean" and r.get("ratio") is not None]
    faults = [r for r in rows if r["kind"] == "fault" and r.get("layer")]
    for r in faults:  # rows from before the module-level criterion: judged again from what they named
        r["localised"] = r["localised"] or _names(r.get("named"), r.get("named_source"), r["layer"])
    print(f"\n{len(clean)} clean output checks over {len({(r['model'], r['seed']) for r in clean})} model seeds; "
          f"{len(faults)} planted faults")
    by_model: dict[str, list[dict]] = {}
    for r in clean:
        by_model.setdefault(r["model"], []).append(r)
    print(f"{'model':18} {'source err':>22} {'converted err':>22} {'ratio':>14} {'fixed 1e-5 fails':>16}")
    for model, rs in by_model.items():
        src = [r["source_error"] for r in rs]
        conv = [r["converted_error"] for r in rs]
        ratio = [r["ratio"] for r in rs]
        fixed_fail = sum(not r["fixed_rule_passed"] for r in rs)
        print(f"{model:18} {min(src):9.2e}..{max(src):9.2e} {min(conv):9.2e}..{max(conv):9.2e} "
              f"{min(ratio):5.2f}..{max(ratio):5.2f} {fixed_fail:>10}/{len(rs)}")
    print("\nfactor sweep (threshold = max(1e-5, factor x source error)):")
    print(f"{'factor':>7} {'false alarms':>13} {'faults missed':>14}")
    for f in FACTORS:
        alarms = sum(r["converted_error"] > max(1e-5, f * r["source_error"]) for r in clean)
        # a fault is caught when any case's converted error is over that case's threshold
        missed = sum(not any(conv > max(1e-5, f * src) for src, conv in r["cases"]) for r in faults)
        print(f"{f:7g} {alarms:>8}/{len(clean):<4} {missed:>9}/{len(faults)}")
    print("\nplanted faults at the shipped factor:")
    print(f"{'model':18} {'fault':10} {'caught':>8} {'localised':>10} {'fixed rule caught':>18}")
    for model in sorted({r["model"] for r in faults}):
        for kind in sorted({r["fault"] for r in faults}):
            rs = [r for r in faults if r["model"] == model and r["fault"] == kind]
            if rs:
                print(f"{model:18} {kind:10} {sum(r['caught'] for r in rs):>4}/{len(rs):<3} "
                      f"{sum(r['localised'] for r in rs):>6}/{len(rs):<3} {sum(r['fixed_rule_caught'] for r in rs):>12}/{len(rs)}")
    misses = [r for r in faults if not r["caught"] or not r["localised"]]
    caught = sum(r["caught"] for r in faults)
    print(f"\nall planted faults: caught {caught}/{len(faults)}, localised {sum(r['localised'] for r in faults)}/{len(faults)}; "
          f"clean conversions failing: {sum(not r['passed'] for r in clean)}/{len(clean)} "
          f"(the fixed 1e-5 rule: {sum(not r['fixed_rule_passed'] for r in clean)}/{len(clean)})")
    for r in misses:
        print(f"  not caught/localised: {r['model']} seed {r['seed']} {r['fault']} in {r['layer']} ({r['detail']}): "
              f"caught={r['caught']} named={r['named']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--targets", default="keras,savedmodel")
    ap.add_argument("--faults", default="scale,epsilon,bias,transpose")
    ap.add_argument("--out", default="bench/results/parity_noise.jsonl")
    ap.add_argument("--resume", action="store_true", help="skip (model, seed) pairs already in --out")
    ap.add_argument("--summary-only", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.summary_only:
        summarise(out)
        return
    done = set()
    if args.resume and out.exists():
        done = {(json.loads(line)["model"], json.loads(line)["seed"]) for line in out.read_text().splitlines() if line}
    elif out.exists():
        out.unlink()
    import porttax

    torch = import_torch()
    for name in args.models.split(","):
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            if (name, seed) in done:
                continue
            t0 = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                model = build(name, seed, args.size)
                pt2 = Path(tmp) / f"{name}.pt2"
                torch.export.save(torch.export.export(model, (torch.randn(1, 3, args.size, args.size),)), str(pt2))
                del model
                rows = []
                for target in args.targets.split(","):
                    dest = Path(tmp) / (f"{name}.keras" if target == "keras" else f"{name}_sm")
                    result = porttax.convert(str(pt2), to=target, output=str(dest), measure_latency=False)
                    rows += clean_rows(result.parity, name, seed, target)
                if "keras" in args.targets.split(",") and args.faults:
                    rows += fault_rows(pt2, Path(tmp) / f"{name}.keras", name, seed, args.faults.split(","))
            with out.open("a") as f:
                for r in rows:
                    f.write(json.dumps(r) + "\n")
            worst = max((r["ratio"] for r in rows if r.get("ratio") is not None), default=float("nan"))
            print(f"{name} seed {seed}: {time.perf_counter() - t0:.0f} s, worst clean ratio {worst:.2f}, faults "
                  + ", ".join(f"{r['fault']}:{'caught' if r.get('caught') else 'MISSED'}"
                              f"{'' if r.get('localised') else ' (named ' + str(r.get('named')) + ')'}"
                              for r in rows if r["kind"] == "fault" and r.get("layer")), flush=True)
    summarise(out)


if __name__ == "__main__":
    main()
