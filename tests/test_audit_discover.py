"""What an audit takes as models (folders, globs, list files), its cache key material and its effort file:
fast checks on real files, no framework needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from porttax.audit.discover import content_hash, discover
from porttax.audit.effort import DEFAULT_FILE, load_effort
from porttax.audit.rows import AuditRow, WorkItem
from porttax.errors import InputError


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "zoo"
    _touch(root / "a.pt2")
    _touch(root / "b.safetensors")
    _touch(root / "b.config.json", b"{}")  # rides along with b.safetensors
    _touch(root / "orphan.config.json", b"{}")  # no model beside it: skipped, with a reason
    _touch(root / "vision" / "c.onnx")
    _touch(root / "vision" / "c.onnx.data")  # external data
    _touch(root / "vision" / "sm" / "saved_model.pb")  # a SavedModel folder is one model
    _touch(root / "vision" / "sm" / "variables" / "variables.index")
    _touch(root / "hf" / "config.json", b"{}")
    _touch(root / "hf" / "model.safetensors")
    _touch(root / "README.md")
    _touch(root / ".hidden.pt2")
    return root


def test_folder_walk_finds_models_and_leaves_sidecars(tree: Path) -> None:
    models, skipped = discover(tree)
    assert [m.name for m in models] == ["a.pt2", "b.safetensors", "hf", "vision/c.onnx", "vision/sm"]
    assert all(m.path.is_absolute() and m.path.exists() for m in models)
    assert [s["path"] for s in skipped] == ["README.md", "orphan.config.json"]
    assert "not a model format" in skipped[0]["reason"]


def test_glob_and_single_model(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tree)
    models, _ = discover("**/*.onnx")
    assert [m.name for m in models] == ["vision/c.onnx"]
    with pytest.raises(InputError, match="matches nothing"):
        discover("*.nothing")
    single, skipped = discover(tree / "vision" / "sm")
    assert [m.name for m in single] == ["sm"] and skipped == []


def test_list_file_options_and_errors(tree: Path) -> None:
    listing = tree / "fleet.txt"
    listing.write_text("# fleet\n\na.pt2\nb.safetensors --arch resnet --config b.config.json\n"
                       "'name with space.pt' --trust-pickle --input-shape 1,3,8,8 --input-dtype float32 --to savedmodel\n")
    models, skipped = discover(listing)
    assert [m.name for m in models] == ["a.pt2", "b.safetensors", "name with space.pt"] and skipped == []
    assert models[1].options == {"arch": "resnet", "config": str((tree / "b.config.json").resolve())}
    assert models[2].options == {"input_shapes": [[1, 3, 8, 8]], "input_dtypes": ["float32"], "trust_pickle": True,
                                 "to": "savedmodel"}
    assert not models[2].path.exists()  # named but missing: the audit reports it as an error row
    listing.write_text("a.pt2 --frobnicate\n")
    with pytest.raises(InputError, match=r"fleet.txt:1.*--frobnicate"):
        discover(listing)
    listing.write_text("# nothing\n")
    with pytest.raises(InputError, match="names no models"):
        discover(listing)
    with pytest.raises(InputError, match="no such"):
        discover(tree / "absent")


def test_content_hash_covers_sidecars_and_folders(tree: Path) -> None:
    model = tree / "b.safetensors"
    before = content_hash(model)
    assert content_hash(model) == before  # stable
    (tree / "b.config.json").write_bytes(b'{"width": 2}')
    assert content_hash(model) != before  # the config decides the architecture: part of the content
    onnx, sm = tree / "vision" / "c.onnx", tree / "vision" / "sm"
    h_onnx, h_sm = content_hash(onnx), content_hash(sm)
    (tree / "vision" / "c.onnx.data").write_bytes(b"other weights")
    (sm / "variables" / "variables.index").write_bytes(b"other index")
    assert content_hash(onnx) != h_onnx and content_hash(sm) != h_sm


def test_effort_file_defaults_overrides_and_refusals(tmp_path: Path) -> None:
    default = load_effort()
    assert default.source == str(DEFAULT_FILE) and "per_op_type" in DEFAULT_FILE.read_text()
    row = AuditRow(model="m", format="pt2", direction="torch→keras", status="unsupported",
                   manual_work=[WorkItem("aten.topk", 3, ["a"]), WorkItem("aten.topk", 1, ["b"]),
                                WorkItem("aten.sort", 2, ["c"])])
    c = default.coefficients
    hours, terms = default.estimate(row)
    assert terms == {"unsupported op types": 2 * c["per_op_type"], "occurrences": 6 * c["per_occurrence"]}
    assert hours == sum(terms.values())
    custom = tmp_path / "team.toml"
    custom.write_text("[effort]\nper_op_type = 10\n")
    mine = load_effort(custom)
    assert mine.estimate(row)[0] == 20 + 6 * c["per_occurrence"] and "10 × unsupported op types" in mine.formula
    for text, match in (("[effort]\nper_op_type = -1\n", "non-negative"), ("[effort]\nper_layer = 1\n", "per_layer"),
                        ("[effort\n", "TOML"), ("[effort]\nper_op_type = true\n", "non-negative")):
        custom.write_text(text)
        with pytest.raises(InputError, match=match):
            load_effort(custom)
    with pytest.raises(InputError, match="no such effort file"):
        load_effort(tmp_path / "absent.toml")
