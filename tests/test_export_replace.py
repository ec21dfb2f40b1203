"""``edge-ad export --out DIR`` never destroys a working model (audit 4d): the export is built beside DIR
and moved into place only after its parity check passed; a failed export leaves DIR byte for byte
unchanged (the failure kept in DIR.failed); a DIR holding other files than an export is refused."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")

from edge_ad.export.exporter import ExportError, export_model  # noqa: E402
from edge_ad.runtime import Scorer  # noqa: E402
from edge_ad.runtime.config import SearchConfig  # noqa: E402


def snapshot(d: Path) -> dict:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def quiet(*a):
    pass


def test_a_failing_export_leaves_the_previous_model_unchanged(tmp_path, tiny_generator, val_frames):
    d = tmp_path / "model"
    export_model(tiny_generator, d, search=SearchConfig(k=0, n_seed=2), parity=False, log=quiet)
    before = snapshot(d)
    frames = [{"id": "f0", "label": None, "rgb": rgb, "depth": depth} for rgb, depth in val_frames(1)]
    with pytest.raises(ExportError, match=r"parity check FAILED") as e:
        export_model(tiny_generator, d, search=SearchConfig(k=0, n_seed=2), parity_frames=frames,
                     tolerance=1e-30, check_fp64=False, log=quiet)          # an impossible tolerance
    assert snapshot(d) == before                                             # every byte of the old export
    Scorer.load(d)                                                           # and it still loads
    assert f"{d} was not changed" in str(e.value) and "model.failed" in str(e.value)
    failed = json.loads((tmp_path / "model.failed" / "manifest.json").read_text())
    assert failed["parity"]["passed"] is False
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "model.failed"]   # no staging dir left


def test_a_passing_export_replaces_the_previous_one_whole(tmp_path, tiny_generator):
    d = tmp_path / "model"
    export_model(tiny_generator, d, search=SearchConfig(k=2, n_seed=2), parity=False, log=quiet)
    (d / "engines").mkdir()
    (d / "engines" / "step.engine").write_bytes(b"built for the old graphs")
    assert (d / "step.onnx").exists()
    man = export_model(tiny_generator, d, search=SearchConfig(k=0, n_seed=2), parity=False, log=quiet)
    assert {p.name for p in d.iterdir()} == set(man["files"]) | {"manifest.json"}   # no file of the k = 2 export
    assert Scorer.load(d).config.k == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_an_out_dir_with_other_files_is_refused(tmp_path, tiny_generator):
    d = tmp_path / "notes"
    d.mkdir()
    (d / "todo.txt").write_text("mine")
    with pytest.raises(ExportError, match="not empty and holds no export"):
        export_model(tiny_generator, d, search=SearchConfig(k=0, n_seed=2), parity=False, log=quiet)
    m = tmp_path / "model"
    export_model(tiny_generator, m, search=SearchConfig(k=0, n_seed=2), parity=False, log=quiet)
    (m / "README.md").write_text("my notes on this model")
    before = snapshot(m)
    with pytest.raises(ExportError, match="not part of its export: README.md"):
        export_model(tiny_generator, m, search=SearchConfig(k=0, n_seed=2), parity=False, log=quiet)
    assert snapshot(m) == before and snapshot(d) == {"todo.txt": b"mine"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "notes"]
