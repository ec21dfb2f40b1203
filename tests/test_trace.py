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
