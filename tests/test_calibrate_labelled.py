"""edge-ad calibrate on a labelled folder (audit 26 #9): --max-frames N spread its N positions over every frame of
``folder://DATA?normal=CLASS``, whose classes take turns, so with three classes only a third of them were normal
frames (10 of 30 used, then "calibration needs at least 20"). A labelled folder knows its normal frames before it
is read (``normal_positions``): the N frames are spread over them, the anomalies never selected."""
from __future__ import annotations

import json

from click.testing import CliRunner

from test_calibrate import _demo_copy, _numbered_folder, _synth_frames  # noqa: E402


def _classes(root, sizes: dict):
    """A folder of class folders ``root/<class>/{rgb,depth}/<k>.png`` of synth frames (no splits.json)."""
    for seed, (cls, n) in enumerate(sizes.items()):
        _numbered_folder(root / cls, _synth_frames(n, seed=seed + 1))
    return root


def test_normal_positions_follow_the_turns_of_the_classes(tmp_path):
    from edge_ad.runtime.sources import open_source
    root = _classes(tmp_path / "d", {"box": 4, "ball": 6, "can": 2})
    with open_source(f"folder://{root}?normal=box") as src:
        labels = [not f.meta["anomalous"] for f in src]
        assert src.normal_positions() == [k for k, normal in enumerate(labels) if normal] == [0, 3, 6, 8]
    with open_source(f"folder://{root}?normal=ball") as src:     # the longest class ends the run alone
        labels = [not f.meta["anomalous"] for f in src]
        assert src.normal_positions() == [k for k, normal in enumerate(labels) if normal] == [0, 3, 6, 8, 10, 11]


def test_max_frames_are_spread_over_the_normal_frames_of_a_labelled_folder(tmp_path):
    from edge_ad.cli import main
    from edge_ad.runtime.calibrate import FramePlan, frame_plan
    assert frame_plan(90, 10, None, list(range(0, 90, 3))) == FramePlan(None, tuple(range(0, 90, 9)), 82)
    assert frame_plan(90, 40, None, list(range(0, 90, 3))) == FramePlan(None, tuple(range(0, 90, 3)), 88)
    assert frame_plan(90, 10, 2, list(range(0, 90, 3))) == frame_plan(90, 10, 2)        # --every K: as before
    assert frame_plan(90, 10, None, []) == frame_plan(90, 10)                           # no normal frame: as before
    model = _demo_copy(tmp_path)
    root = _classes(tmp_path / "d", {"box": 30, "ball": 30, "can": 30})
    out = tmp_path / "cal"
    r = CliRunner().invoke(main, ["calibrate", "--model", str(model), "--source", f"folder://{root}?normal=box",
                                  "--out", str(out), "--max-shift", "0", "--min-frames", "10", "--max-frames", "10"])
    assert r.exit_code == 0, r.output
    c = json.loads((out / "manifest.json").read_text())["calibration"]
    assert c["frame_ids"] == [f"box/{k}" for k in range(0, 30, 3)]          # 10 of the 30 normals, spread
    assert (c["frames_selected"], c["frames_used"], c["skipped_anomalous"]) == (10, 10, 0)
    assert ("using 10 of the 30 frames the source labels normal (90 frames in all: its anomalies are never used), "
            "spread evenly over them (one every 3)") in r.output
    assert "frame 82/82 read" in r.output                                    # the progress knows where it stops
