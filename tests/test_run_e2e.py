"""``edge-ad run`` end to end with a real exported (tiny, k=2) model and runtime.Scorer:
a RealSense .db3 recording and a ROS 2 bag, every frame scored with the same scores as scoring the
original frames directly; SIGTERM on the real command; the no-argument default."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edge_ad.commands import run as run_cmd
from edge_ad.runtime import demo_model_dir
from edge_ad.runtime.config import frame_seed

from test_sources import d8_to_mm, kinect_frames, record_realsense_db3, write_ros2_bag  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_model(export_tiny):
    """The width-8 generator exported with k=2, n_seed=2."""
    return export_tiny(2, 2)


@pytest.fixture(scope="module")
def scorer(tiny_model):
    try:
        from edge_ad.runtime import Scorer
    except ImportError:
        from edge_ad.runtime.scorer import Scorer
    return Scorer.load(tiny_model)


def lines(path):
    return [json.loads(x) for x in Path(path).read_text().splitlines()]


def direct_scores(scorer, frames, seed):
    return [scorer.score(rgb, d8, seed=frame_seed(seed, i)).score for i, (_, rgb, d8) in enumerate(frames)]


def test_realsense_recording_every_frame_scored(tmp_path, kinect_root, tiny_model, scorer):
    frames = kinect_frames(kinect_root, 6, "sphere")
    rec = tmp_path / "rec.db3"
    record_realsense_db3(rec, [(i, rgb, d8_to_mm(d8)) for i, rgb, d8 in frames])
    out = tmp_path / "r.jsonl"
    r = CliRunner().invoke(run_cmd.cmd, ["--source", str(rec), "--model", str(tiny_model), "--seed", "3",
                                         "--threshold", "0.1", "--out", str(out), "-q"])
    assert r.exit_code == 0, r.output
    recs = lines(out)
    scored = [x for x in recs if x["type"] == "frame"]
    assert [x["frame"] for x in scored] == [str(k) for k in range(len(frames))]
    assert recs[-1]["frames_scored"] == len(frames) and recs[-1]["frame_errors"] == 0
    # depth went 8-bit -> millimetres -> recording -> millimetres -> 8-bit: the same model input
    expect = direct_scores(scorer, frames, seed=3)
    np.testing.assert_allclose([x["score"] for x in scored], expect, rtol=1e-6)
    assert all(x["latency_ms"]["search"] > 0 for x in scored)


def test_ros2_bag_scored(tmp_path, kinect_root, tiny_model, scorer):
    frames = kinect_frames(kinect_root, 5, "cylinder")
    write_ros2_bag(tmp_path / "bag", [(i, rgb, d8_to_mm(d8)) for i, rgb, d8 in frames], storage="mcap")
    out = tmp_path / "r.jsonl"
    r = CliRunner().invoke(run_cmd.cmd, ["--source", str(tmp_path / "bag"), "--model", str(tiny_model),
                                         "--out", str(out), "-q"])
    assert r.exit_code == 0, r.output
    scored = [x for x in lines(out) if x["type"] == "frame"]
    np.testing.assert_allclose([x["score"] for x in scored], direct_scores(scorer, frames, seed=0), rtol=1e-6)


def test_sigterm_on_edge_ad_run(tmp_path, tiny_model):
    out = tmp_path / "r.jsonl"
    p = subprocess.Popen([sys.executable, "-m", "edge_ad.cli", "run", "--model", str(tiny_model),
                          "--threshold", "0.1", "--out", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None and (not out.exists() or out.read_text().count("\n") < 3):
        time.sleep(0.1)
    assert p.poll() is None, p.communicate()[1]
    p.send_signal(signal.SIGTERM)
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 0, stderr
    recs = lines(out)
    assert recs[-1]["type"] == "summary" and recs[-1]["stopped"] == "signal:SIGTERM"
    assert recs[-1]["frames_scored"] == sum(x["type"] == "frame" for x in recs) >= 3
    assert "summary (signal:SIGTERM)" in stdout


def test_default_run_uses_demo_model_on_synth(tmp_path):
    """No arguments but an output file: the shipped demo model on synth://, with its threshold."""
    demo = demo_model_dir()
    assert (demo / "manifest.json").exists(), f"the shipped demo model is missing: {demo}"
    out = tmp_path / "r.jsonl"
    p = subprocess.run([sys.executable, "-m", "edge_ad.cli", "run", "--max-frames", "2", "-q", "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "2 frames scored" in p.stdout
    recs = lines(out)
    frames = [r for r in recs if r["type"] == "frame"]
    assert len(frames) == 2 and all(r["threshold"] > 0 and isinstance(r["anomalous"], bool) for r in frames)
    # the summary names the search that ran: the demo export's (issue 13: a k = 0 configuration, the
    # encoder gives z and one generator pass scores it, the "forward" variant; never the old unrolled graph)
    from edge_ad.runtime import Scorer
    assert recs[-1]["type"] == "summary" and recs[-1]["search"] == Scorer.load(demo).mode
    assert recs[-1]["search"] == "forward"
