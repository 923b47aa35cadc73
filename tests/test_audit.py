"""`porttax audit` and `porttax inspect` on a real fleet: eight models in mixed formats and both directions
(tests/audit_fleet.py), audited by the CLI in worker processes, reported four ways, cached, and run
again through a local Ray instance that the test starts."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from audit_fleet import EXPECTED, SKIPPED, build_fleet
from conftest import run_cli
from test_audit_render import _browser_dom, _md_table, _md_text

pytestmark = pytest.mark.slow  # each audit converts and checks eight models in worker processes


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fleet(tmp_path_factory.mktemp("fleet") / "models")


def _audit(fleet: Path, out: Path, *extra: str, timeout: int = 900,
           env: dict | None = None) -> tuple[subprocess.CompletedProcess, dict]:
    out.mkdir(parents=True, exist_ok=True)
    done = run_cli("audit", str(fleet), "--jobs", "2", "--json", str(out / "audit.json"), "--html",
                   str(out / "audit.html"), "--markdown", str(out / "audit.md"), "--csv", str(out / "audit.csv"),
                   *extra, timeout=timeout, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done, json.loads((out / "audit.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def first_audit(fleet: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    out = tmp_path_factory.mktemp("audit")
    cache = out / "cache"
    _, report = _audit(fleet, out / "first", "--cache-dir", str(cache))
    return out / "first", cache, report


def _rows(report: dict) -> dict[str, dict]:
    return {r["model"]: r for r in report["models"]}


def test_every_model_is_a_row_with_the_verdict_it_deserves(first_audit: tuple[Path, Path, dict]) -> None:
    _, _, report = first_audit
    rows = _rows(report)
    assert {name: r["status"] for name, r in rows.items()} == EXPECTED
    assert [s["path"] for s in report["skipped"]] == SKIPPED
    assert report["summary"]["jobs_run"] == len(EXPECTED)
    directions = {r["direction"] for r in rows.values() if r["status"] == "converted"}
    assert {"torch→keras", "keras→torch", "onnx→keras"} <= directions
    for name, r in rows.items():
        if r["status"] != "converted":
            continue
        assert r["drift_rel_l2"] <= 1e-5 and r["layer_coverage"] == 1.0 and r["param_coverage"] == 1.0, name
        assert r["params_total"] > 0 and r["source_bytes"] > 0 and r["converted_bytes"] > 0, name
        m = r["measurements"]
        assert m["latency_ratio"] > 0 and m["memory_ratio"] > 0, name  # measured in this run, both sides
        assert m["source_memory_mb"] > 0 and m["converted_memory_mb"] > 0 and m["conversion_seconds"] > 0, name
        assert r["manual_work"] == [] and r["effort_hours"] == 0, name
        assert sum(road["chosen"] for road in r["roads"]) == 1, name
    torch_rows = [r for r in rows.values() if r["status"] == "converted" and r["direction"] == "torch→keras"]
    assert all({road["road"] for road in r["roads"]} == {"direct", "onnx"} for r in torch_rows)


def test_corrupt_file_and_unsupported_op_carry_their_reasons(first_audit: tuple[Path, Path, dict]) -> None:
    _, _, report = first_audit
    rows = _rows(report)
    broken = rows["broken.pt2"]
    assert "torch.export archive" in broken["reason"] and broken["effort_terms"] == {"unreadable": 1.0}
    topk = rows["topk.pt2"]
    assert topk["manual_work"] == [{"op": "aten.bernoulli.default", "count": 1, "where": ["<top level>"], "road": "direct"}]
    assert "direct:" in topk["reason"] and "onnx:" in topk["reason"] and "Bernoulli" in topk["reason"]
    assert [r["status"] for r in topk["roads"]] == ["not converted", "not converted"]
    # the Linear converts, the top-level module holding bernoulli does not
    assert (topk["layers_covered"], topk["layers_total"]) == (1, 2)
    coefficients = report["effort"]["coefficients"]
    assert topk["effort_hours"] == coefficients["per_op_type"] + coefficients["per_occurrence"]
    assert report["summary"]["effort_hours"] == topk["effort_hours"] + broken["effort_hours"]
    assert "per_op_type" in Path(report["effort"]["source"]).read_text()  # the formula's coefficients file


def _num(text: str) -> float | None:
    return None if text in ("", "—") else float(text)


def test_json_csv_markdown_and_html_agree(first_audit: tuple[Path, Path, dict], tmp_path: Path) -> None:
    out, _, report = first_audit
    models = [r["model"] for r in report["models"]]
    table = list(csv.DictReader(io.StringIO((out / "audit.csv").read_text(encoding="utf-8"))))
    assert [r["model"] for r in table] == models
    for row, r in zip(table, report["models"]):
        assert row["status"] == r["status"] and row["reason"] == (r["reason"] or "")
        assert _num(row["drift_rel_l2"]) == r["drift_rel_l2"]
        assert _num(row["effort_hours"]) == r["effort_hours"]
        assert _num(row["latency_ratio"]) == r["measurements"]["latency_ratio"]
    md_rows = _md_table((out / "audit.md").read_text(encoding="utf-8"))
    assert [_md_text(cells[0]) for cells in md_rows] == models
    for cells, r in zip(md_rows, report["models"]):
        assert r["status"] in cells
        drift = r["drift_rel_l2"]
        assert (f"{drift:.2e}" if drift is not None else "—") in cells
    dom = _browser_dom((out / "audit.html").read_text(encoding="utf-8"), tmp_path, "", "fleet")
    assert dom.body.get("data-ready") == "1" and dom.errors == ""
    assert [row["attrs"]["data-model"] for row in dom.rows] == models
    assert len(dom.bars["drift-chart"]) == sum(r["drift_rel_l2"] is not None for r in report["models"])
    assert len(dom.bars["speed-chart"]) == sum(r["measurements"]["latency_ratio"] is not None for r in report["models"])
    assert not dom.external


def test_second_run_converts_nothing_and_a_new_model_costs_one(first_audit: tuple[Path, Path, dict], fleet: Path,
                                                               tmp_path: Path) -> None:
    _, cache, first = first_audit
    done, again = _audit(fleet, tmp_path / "again", "--cache-dir", str(cache))
    assert again["summary"]["jobs_run"] == 0 and again["summary"]["cached"] == len(EXPECTED)
    assert "measuring" not in done.stderr  # no worker started
    strip = ("cached",)
    assert [{k: v for k, v in r.items() if k not in strip} for r in again["models"]] == \
        [{k: v for k, v in r.items() if k not in strip} for r in first["models"]]

    grown = tmp_path / "grown"
    shutil.copytree(fleet, grown)
    shutil.copy(grown / "mlp.pt2", grown / "mlp_copy.pt2")  # same bytes: the content hash is already known
    sidecar = grown / "resnet.config.json"  # a checkpoint's config is part of its content: measured again
    sidecar.write_text(sidecar.read_text() + "\n")
    _, third = _audit(grown, tmp_path / "third", "--cache-dir", str(cache))
    assert third["summary"]["jobs_run"] == 1
    assert [r["model"] for r in third["models"] if not r["cached"]] == ["resnet.safetensors"]
    assert len(third["models"]) == len(EXPECTED) + 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _deterministic(report: dict) -> list[dict[str, Any]]:
    """The report without clock and memory readings (`measurements`, each road's latency)."""
    rows = []
    for r in report["models"]:
        r = {k: v for k, v in r.items() if k != "measurements"}
        r["roads"] = [{k: v for k, v in road.items() if k != "latency_ms"} for road in r["roads"]]
        rows.append(r)
    return rows


# the fleet's quick models, one per outcome and direction: Ray's part is shipping jobs and results, which
# these exercise as well as the whole fleet does, in a third of the time
RAY_SUBSET = ("mlp.pt2", "cnn.keras", "topk.pt2", "broken.pt2")


def test_ray_executor_gives_the_same_report(first_audit: tuple[Path, Path, dict], fleet: Path, tmp_path: Path) -> None:
    _, _, local = first_audit
    listing = tmp_path / "subset.txt"
    listing.write_text("".join(f"{fleet / name}\n" for name in RAY_SUBSET))
    ray = Path(sys.executable).with_name("ray")
    port = _free_port()
    # a throwaway cluster on the loopback interface: no token (Ray's default now wants one per cluster)
    ray_env = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    env = dict(os.environ, **ray_env)
    temp = Path("/tmp") / f"ray-porttax-{os.getpid()}"  # Ray's socket paths must stay short
    start = subprocess.run([str(ray), "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
                            f"--temp-dir={temp}", "--disable-usage-stats", "--node-ip-address=127.0.0.1"],
                           capture_output=True, text=True, env=env, timeout=300)
    assert start.returncode == 0, start.stderr[-3000:]
    try:
        _, remote = _audit(listing, tmp_path / "ray", "--executor", "ray", "--address", f"127.0.0.1:{port}",
                           "--no-cache", env=ray_env)
    finally:
        subprocess.run([str(ray), "stop", "--force"], capture_output=True, env=env, timeout=300)
        shutil.rmtree(temp, ignore_errors=True)
    assert remote["options"]["executor"] == "ray" and remote["summary"]["jobs_run"] == len(RAY_SUBSET)
    local_rows = {r["model"]: r for r in _deterministic(local)}
    # a list file names its models by the paths it gives
    remote_rows = {Path(r["model"]).name: r | {"model": Path(r["model"]).name} for r in _deterministic(remote)}
    assert sorted(remote_rows) == sorted(RAY_SUBSET)
    assert remote_rows == {name: local_rows[name] for name in RAY_SUBSET}
    statuses = local["summary"]["by_status"]
    assert remote["summary"]["by_status"] == {s: sum(local_rows[n]["status"] == s for n in RAY_SUBSET) for s in statuses}


def test_per_model_time_limit_list_file_and_effort_file(fleet: Path, tmp_path: Path) -> None:
    listing = tmp_path / "fleet.txt"
    listing.write_text(f"# two models and a missing one\n{fleet / 'llama.pt'}\n"
                       f"{fleet / 'cnn.keras'}\nmissing.onnx --input-shape 1,3,8,8\n")
    effort = tmp_path / "effort.toml"
    effort.write_text("[effort]\nunreadable = 3.5\n")
    out = tmp_path / "out.json"
    done = run_cli("audit", str(listing), "--timeout", "3", "--no-cache", "--no-bench", "--seeds", "1",
                   "--effort", str(effort), "--json", str(out), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = _rows(report)
    assert list(rows) == [str(fleet / "llama.pt"), str(fleet / "cnn.keras"), "missing.onnx"]
    # three seconds cannot even import the frameworks: each live model times out, the audit goes on
    assert rows[str(fleet / "llama.pt")]["status"] == "timeout" and "3 s limit" in rows[str(fleet / "llama.pt")]["reason"]
    assert rows["missing.onnx"]["status"] == "error" and "no such file" in rows["missing.onnx"]["reason"]
    assert rows["missing.onnx"]["effort_hours"] == 3.5 and "3.5 × [file unreadable]" in report["effort"]["formula"]
    assert report["effort"]["source"] == str(effort)

    bad = tmp_path / "bad.toml"
    bad.write_text("[effort]\nper_layer = 2\n")
    refused = run_cli("audit", str(listing), "--effort", str(bad), "--json", str(tmp_path / "no.json"))
    assert refused.returncode == 2 and "per_layer" in refused.stderr and not (tmp_path / "no.json").exists()


def test_fail_on_gates_ci(fleet: Path, first_audit: tuple[Path, Path, dict], tmp_path: Path) -> None:
    _, cache, _ = first_audit
    done = run_cli("audit", str(fleet), "--cache-dir", str(cache), "--fail-on", "unsupported", "-q")
    assert done.returncode == 1 and done.stdout == ""
    assert run_cli("audit", str(fleet), "--cache-dir", str(cache), "--fail-on", "drifted,timeout", "-q").returncode == 0
    assert run_cli("audit", str(fleet), "--fail-on", "bogus").returncode == 2


# ---------------------------------------------------------------- inspect


def test_inspect_names_unsupported_ops_without_converting(fleet: Path, tmp_path: Path) -> None:
    before = sorted(p.name for p in fleet.iterdir())
    done = run_cli("inspect", str(fleet / "topk.pt2"), "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    info = json.loads(done.stdout)
    direct = next(r for r in info["roads"] if r["road"] == "direct")
    assert [(o["op"], o["count"], o["where"]) for o in direct["unsupported"]] == [("aten.bernoulli.default", 1, ["<top level>"])]
    assert not direct["complete"] and info["params_total"] == 16 * 16 + 16
    assert {o["op"]: o["roads"]["direct"] for o in info["ops"]} == {
        "aten.linear.default": True, "aten.sigmoid.default": True, "aten.bernoulli.default": False}
    assert sorted(p.name for p in fleet.iterdir()) == before  # nothing written

    text = run_cli("inspect", str(fleet / "resnet.safetensors"))
    assert text.returncode == 0 and "road direct  → keras: " in text.stdout and "covers everything" in text.stdout
    assert "Conv2d" in text.stdout and "aten.conv2d.default" in text.stdout

    keras = json.loads(run_cli("inspect", str(fleet / "cnn.keras"), "--json").stdout)
    assert keras["framework"] == "keras" and keras["layer_types"]["Conv2D"] == 1 and keras["roads"][0]["complete"]
    onnx = json.loads(run_cli("inspect", str(fleet / "encoder.onnx"), "--json").stdout)
    assert onnx["framework"] == "onnx" and onnx["roads"][0]["target"] == "torch" and onnx["roads"][0]["complete"]

    broken = run_cli("inspect", str(fleet / "broken.pt2"))
    assert broken.returncode == 2 and "broken.pt2" in broken.stderr


def test_inspect_deep_prices_the_onnx_road(fleet: Path) -> None:
    done = run_cli("inspect", str(fleet / "topk.pt2"), "--deep", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    onnx = next(r for r in json.loads(done.stdout)["roads"] if r["road"] == "onnx")
    assert [o["op"] for o in onnx["unsupported"]] == ["Bernoulli"] and not onnx["complete"]
    assert onnx["params_total"] == 16 * 16 + 16 and onnx["params_covered"] == 0


def test_cuda_parity_is_reported_per_model(fleet: Path, tmp_path: Path) -> None:
    """--device cpu,cuda adds a CUDA parity entry per converted model: measured where a GPU is, and
    'not available' (never a silent pass) where there is none."""
    out = tmp_path / "cuda.json"
    done = run_cli("audit", str(fleet / "mlp.pt2"), "--device", "cpu,cuda", "--no-cache", "--no-bench", "--seeds", "1",
                   "--json", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    (row,) = report["models"]
    assert row["status"] == "converted" and report["options"]["devices"] == ["cpu", "cuda"]
    cuda = row["devices"]["cuda"]
    assert cuda["profile"] == "tf32"
    import torch

    if torch.cuda.is_available():
        assert cuda["status"] == "passed" and cuda["drift_rel_l2"] <= 1e-3 and "torch" in cuda["precision"]
    else:
        assert cuda["status"] == "not available" and "no CUDA device" in cuda["reason"]
    assert run_cli("audit", str(fleet / "mlp.pt2"), "--device", "tpu").returncode == 2
