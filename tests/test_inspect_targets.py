"""`porttax inspect` per target: which targets take the model, and the ops that stop the others."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_cli

from porttax._frameworks import import_torch
from porttax.inspection import inspect_model

torch = import_torch()


@torch.library.custom_op("porttax_test::twice", mutates_args=())
def _twice(x: torch.Tensor) -> torch.Tensor:
    return x * 2


@_twice.register_fake
def _(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


class _CustomOp(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _twice(self.proj(x))


class _Erf(torch.nn.Module):
    """torch.erf on its own: Keras builds it, TFLite's builtins lack it (only a whole GELU fuses)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.erf(self.proj(x))


def _pt2(module: torch.nn.Module, path: Path) -> Path:
    torch.export.save(torch.export.export(module.eval(), (torch.randn(2, 4),)), str(path))
    return path


def _targets(info: dict) -> dict[str, dict]:
    return {t["target"]: t for t in info["targets"]}


def test_a_custom_op_is_named_for_every_target_it_stops(tmp_path: Path) -> None:
    info = inspect_model(_pt2(_CustomOp(), tmp_path / "custom.pt2")).to_dict()
    targets = _targets(info)
    for name in ("keras", "savedmodel", "tflite", "tfjs", "executorch"):
        assert targets[name]["ok"] is False, (name, targets[name])
    assert [u["op"] for u in targets["executorch"]["unsupported"]] == ["porttax_test.twice"]
    assert targets["executorch"]["unsupported"][0]["where"] == ["<top level>"]
    assert [u["op"] for u in targets["keras"]["unsupported"]] == ["porttax_test.twice.default"]
    assert targets["onnx"]["ok"] is None  # only the exporter knows: --deep


def test_deep_tries_each_targets_own_converter(tmp_path: Path) -> None:
    source = _pt2(_Erf(), tmp_path / "erf.pt2")
    shallow = _targets(inspect_model(source).to_dict())
    assert shallow["keras"]["ok"] is True and shallow["tflite"]["ok"] is None and shallow["executorch"]["ok"] is True
    deep = _targets(inspect_model(source, deep=True).to_dict())
    assert deep["tflite"]["ok"] is False and deep["tflite"]["tried"] and "Erf" in deep["tflite"]["note"]
    assert deep["tfjs"]["ok"] is True and deep["tfjs"]["tried"]  # TF.js has an Erf kernel
    assert deep["executorch"]["ok"] is True and deep["executorch"]["note"].startswith("XNNPACK runs ")
    assert deep["onnx"]["ok"] is True and deep["keras"]["ok"] is True
    assert sorted(p.name for p in tmp_path.iterdir()) == ["erf.pt2"]  # nothing written beside it


def test_inspect_prints_a_line_per_target(tmp_path: Path) -> None:
    source = _pt2(_Erf(), tmp_path / "erf.pt2")
    done = run_cli("inspect", str(source))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "target keras       yes via direct road" in done.stdout
    assert "target tflite      unknown via SavedModel" in done.stdout and "--deep runs it" in done.stdout
    as_json = json.loads(run_cli("inspect", str(source), "--json").stdout)
    assert {t["target"] for t in as_json["targets"]} == {"keras", "savedmodel", "onnx", "tflite", "tfjs", "executorch"}
