"""Where the kinect-rgbd frames are read from by default: one definition (runtime/data_root.py),
$EDGE_AD_DATA first, else ../shared/data/kinect-rgbd beside the checkout (review 17 #14)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from edge_ad.runtime.data_root import DATA_ENV, default_kinect_root

REPO = Path(__file__).resolve().parents[1]


def test_the_environment_variable_comes_first(monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert default_kinect_root() == tmp_path
    for unset in (None, ""):
        if unset is None:
            monkeypatch.delenv(DATA_ENV)
        else:
            monkeypatch.setenv(DATA_ENV, unset)
        assert default_kinect_root() == REPO.parent / "shared" / "data" / "kinect-rgbd"


def test_default_parity_frames_read_edge_ad_data(kinect_root, tmp_path, monkeypatch):
    """A copy with its val lists reversed: the parity frames are the copy's first val frames, not the
    ones of the data beside the checkout."""
    pytest.importorskip("onnx")
    from conftest import copy_kinect_layout

    from edge_ad.export.parity import default_parity_frames
    copy = copy_kinect_layout(kinect_root, tmp_path / "kinect", {"val": (2, "val")})
    splits = json.loads((copy / "splits.json").read_text())
    for c in splits:
        splits[c]["val"] = splits[c]["val"][::-1]
    (copy / "splits.json").write_text(json.dumps(splits))
    monkeypatch.setenv(DATA_ENV, str(copy))
    frames = default_parity_frames(train_class="sphere")
    assert [f["id"] for f in frames] == [f"sphere/{splits['sphere']['val'][0]}",
                                         f"cylinder/{splits['cylinder']['val'][0]}"]
    real = json.loads((kinect_root / "splits.json").read_text())
    assert frames[0]["id"] != f"sphere/{real['sphere']['val'][0]}"


def test_an_export_without_data_names_the_variable(tmp_path, monkeypatch, tiny_generator):
    pytest.importorskip("onnx")
    from edge_ad.export.errors import ExportError
    from edge_ad.export.exporter import export_model
    from edge_ad.runtime.config import SearchConfig
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "nothing-here"))
    with pytest.raises(ExportError, match=DATA_ENV) as e:
        export_model(tiny_generator, tmp_path / "m", search=SearchConfig(k=0, n_seed=1), log=lambda *a: None)
    assert str(tmp_path / "nothing-here") in str(e.value) and not (tmp_path / "m").exists()


def test_no_module_computes_the_data_path_from_its_own_location():
    """Every default goes through default_kinect_root (a path computed from __file__ is wrong in an
    installed wheel: <site-packages>/shared/data/...)."""
    pattern = re.compile(r'(parents\[\d\]|REPO|HERE|__file__)[^\n]*"shared[/"]')
    dirs = ("runtime", "models", "export", "jetson", "benchmarks", "edge_ad", "scripts", "tests")
    bad = [str(p.relative_to(REPO)) for d in dirs for p in (REPO / d).rglob("*.py")
           if p.name not in ("mutants.py", "test_data_root.py") and pattern.search(p.read_text(encoding="utf-8"))
           and p != REPO / "runtime" / "data_root.py"]
    assert not bad, bad
