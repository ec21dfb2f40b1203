"""`edge-ad trace`: the search-trajectory grid (study Figure 1) on real kinect frames."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edge_ad.commands.trace import cmd as trace_cmd
from edge_ad.models.checkpoint import save_checkpoint
from edge_ad.runtime.preprocess import PreprocessSpec


@pytest.fixture
def tiny_ckpt(tmp_path, tiny_generator):
    p = tmp_path / "g.pt"
    save_checkpoint(p, tiny_generator, preprocess=PreprocessSpec())
    return p


def test_trace_writes_grid_and_per_step_losses(tmp_path, tiny_ckpt, kinect_root):
    out = tmp_path / "trace.png"
    r = CliRunner().invoke(trace_cmd, ["--model", str(tiny_ckpt), "--data", str(kinect_root), "--class", "rectangle",
                                       "--anomalous-class", "sphere", "--k", "4", "--lr-theta-high", "1e-2",
                                       "--out", str(out)])
    assert r.exit_code == 0, r.output
    im = np.asarray(Image.open(out))
    assert im.ndim == 3 and im.shape[0] > 200 and im.shape[1] > 300      # 4 rows x (1 + 5) cells
    assert im.std() > 5                                                  # not a blank picture
    info = json.loads(out.with_suffix(".json").read_text())
    rows = info["rows"]
    assert [(r_["kind"], r_["lr_theta"]) for r_ in rows] == [("normal", 6e-9), ("normal", 1e-2),
                                                             ("anomalous", 6e-9), ("anomalous", 1e-2)]
    for r_ in rows:
        assert len(r_["loss_per_step"]) == 5                             # after 0..k steps
    # same input, same z0: letting the weights move (high lr_theta) fits the frame better
    for a, b in ((rows[0], rows[1]), (rows[2], rows[3])):
        assert a["loss_per_step"][0] == pytest.approx(b["loss_per_step"][0], rel=1e-6)
        assert b["loss_per_step"][-1] < a["loss_per_step"][-1]


def test_trace_rejects_bad_arguments(tmp_path, tiny_ckpt, kinect_root):
    base = ["--model", str(tiny_ckpt), "--data", str(kinect_root), "--out", str(tmp_path / "t.png")]
    r = CliRunner().invoke(trace_cmd, base + ["--class", "cube"])
    assert r.exit_code != 0 and "must be one of" in r.output
    r = CliRunner().invoke(trace_cmd, base + ["--class", "rectangle", "--anomalous-class", "rectangle"])
    assert r.exit_code != 0 and "other than" in r.output
    r = CliRunner().invoke(trace_cmd, base + ["--class", "rectangle", "--index", "100000"])
    assert r.exit_code != 0 and "frames" in r.output


def test_trace_never_replaces_a_file(tmp_path, tiny_ckpt, kinect_root, monkeypatch):
    """Audit 27 #15: trace replaced an existing --out PNG and its .json sidecar (an earlier trace's numbers, or
    any file) without a word; now an existing FILE.png or FILE.json is refused before the search runs (exit 1,
    both files unchanged), as bench --out is."""
    import edge_ad.models.search as search_mod

    def no_search(*a, **k):
        raise AssertionError("the search ran before the refusal")
    monkeypatch.setattr(search_mod, "search", no_search)
    base = ["--model", str(tiny_ckpt), "--data", str(kinect_root), "--class", "rectangle", "--k", "1"]
    for existing in ("t.png", "t.json"):
        d = tmp_path / existing.replace(".", "_")
        d.mkdir()
        (d / existing).write_text("precious")
        r = CliRunner().invoke(trace_cmd, base + ["--out", str(d / "t.png")])
        assert r.exit_code == 1 and f"{d / existing} exists" in r.output and "is never replaced" in r.output, r.output
        assert (d / existing).read_text() == "precious" and sorted(p.name for p in d.iterdir()) == [existing]
