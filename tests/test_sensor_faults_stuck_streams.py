"""A stream whose colour alone (or depth alone) is frozen is a stuck sensor (audit 17 #4a): before, only a
repeat of the whole (colour, depth) pair was stuck_frame, so a frozen colour sensor beside a live depth
sensor (depth noise of +-1 mm) was scored as a normal scene. Now stuck_rgb / stuck_depth name which;
a folder (independent files) is still not checked for repeats, and synth:// never trips the check."""
from __future__ import annotations

import numpy as np

from edge_ad.runtime.capture import run_capture
from edge_ad.runtime.preprocess import PreprocessSpec, SensorLimits
from edge_ad.runtime.sensor_faults import FAULTS, SensorFaultDetector
from edge_ad.runtime.sources import Frame, Source, open_source

from test_capture import FakeScorer, read_lines  # noqa: E402
from test_sensor_faults import all_kinect_frames  # noqa: E402


def audit_stream(kinect_root):
    """The audit's bag as frames (mkbag2.py): 30 rectangle frames in millimetres; 5-9 repeat frame 4's
    colour with live depth (+-1 mm noise), 10-14 repeat frame 9's depth with live colour, 15-19 repeat
    frame 14 whole. Returns (frames, expected fault per frame)."""
    rng = np.random.default_rng(0)
    real = [(rgb, (d8.astype(np.uint16) * 700 // 255).astype(np.uint16))
            for _, rgb, d8 in list(all_kinect_frames(kinect_root))[:30]]
    frames, want = [], []
    for n, (rgb, d) in enumerate(real):
        if 5 <= n < 10:
            rgb, d0 = frames[4][0], frames[4][1].astype(int)
            d = np.where(d0 > 0, d0 + rng.integers(-1, 2, d0.shape), 0).astype(np.uint16)
            lab = "stuck_rgb"
        elif 10 <= n < 15:
            d, lab = frames[9][1], "stuck_depth"
        elif 15 <= n < 20:
            rgb, d, lab = frames[14][0].copy(), frames[14][1].copy(), "stuck_frame"
        else:
            lab = None
        frames.append((rgb, d))
        want.append(lab)
    return frames, want


def test_colour_only_and_depth_only_repeats_are_named(kinect_root):
    frames, want = audit_stream(kinect_root)
    det = SensorFaultDetector(PreprocessSpec())
    got = [next((f.name for f in det.check(rgb, d) if f.name.startswith("stuck")), None) for rgb, d in frames]
    assert got == want
    assert {"stuck_rgb", "stuck_depth", "stuck_frame"} <= set(FAULTS)
    # max_identical_frames applies to each stream: 2 allowed, the third in a row is stuck
    lenient = SensorFaultDetector(PreprocessSpec(sensor_faults=SensorLimits(max_identical_frames=2)))
    got = [[f.name for f in lenient.check(rgb, d)] for rgb, d in frames[4:8]]
    assert got == [[], [], ["stuck_rgb"], ["stuck_rgb"]]


class Stream(Source):
    uri = "recording"

    def __init__(self, frames, stream=True):
        self.frames, self.stream = frames, stream

    def __iter__(self):
        for i, (rgb, d) in enumerate(self.frames):
            yield Frame(str(i), rgb, d)


def test_a_frozen_colour_stream_is_an_error_line_a_folder_is_not_checked(tmp_path, kinect_root):
    frames, want = audit_stream(kinect_root)
    s = run_capture(Stream(frames), FakeScorer(), out=tmp_path / "r.jsonl", handle_signals=False)
    lines = [r for r in read_lines(tmp_path / "r.jsonl") if r["type"] in ("frame", "error")]
    assert [r.get("fault") for r in lines] == want
    assert "colour image is identical" in lines[5]["error"] and "colour sensor is frozen" in lines[5]["error"]
    assert s["sensor_faults"] == {"stuck_rgb": 5, "stuck_depth": 5, "stuck_frame": 5}
    s = run_capture(Stream(frames, stream=False), FakeScorer(), out=tmp_path / "f.jsonl", handle_signals=False)
    assert (s["frames_scored"], s["sensor_faults"]) == (30, {})


def test_synth_and_real_streams_never_trip_the_stuck_checks(kinect_root):
    det = SensorFaultDetector(PreprocessSpec())
    for fr in open_source("synth://?n=400&anomaly_rate=0.3&seed=21"):
        assert det.check(fr.rgb, fr.depth) == [], fr.id
    det = SensorFaultDetector(PreprocessSpec())
    for fid, rgb, d8 in list(all_kinect_frames(kinect_root))[::3]:
        assert det.check(rgb, d8) == [], fid


def test_a_fault_streak_is_said_once_when_it_starts_and_once_when_it_ends(tmp_path, kinect_root):
    """Audit 32 #2: a stuck or covered camera wrote one console line per frame ("frame ...: skipped: sensor fault
    stuck_frame ..."), also with -q: a lens cap left on for a shift is ~860 000 journal lines at 30 fps. Now the
    log says a fault once when its streak starts and once, with the count, when it ends (another fault, a scored
    frame, or the run's end); the results file keeps an error line per frame. A stream: 3 good frames, the 4th
    repeated 7 times (stuck_frame x 6), 2 good, 3 black frames with live depth (black_rgb, until the run ends)."""
    real = [(rgb, d8) for _, rgb, d8 in list(all_kinect_frames(kinect_root))[:6]]
    black = [(np.zeros_like(rgb), d) for rgb, d in real[:3]]      # black colour, live depth: black_rgb
    seq = real[:4] + [tuple(a.copy() for a in real[3])] * 6 + real[4:6] + black
    frames = [Frame(str(i), rgb, d, timestamp=0.1 * i) for i, (rgb, d) in enumerate(seq)]

    class Camera(Source):
        uri = "camera"

        def __iter__(self):
            yield from frames

    said = []
    s = run_capture(Camera(), FakeScorer(), out=tmp_path / "r.jsonl", handle_signals=False, log=said.append)
    assert s["sensor_faults"] == {"stuck_frame": 6, "black_rgb": 3}, s
    errors = [r for r in read_lines(tmp_path / "r.jsonl") if r["type"] == "error"]
    assert [r["fault"] for r in errors] == ["stuck_frame"] * 6 + ["black_rgb"] * 3     # a line per frame
    faults = [m for m in said if "stuck_frame" in m or "black_rgb" in m]
    assert len(faults) == 4, faults
    assert faults[0].startswith("frame 4: skipped: sensor fault stuck_frame") and "counted" in faults[0]
    assert faults[1] == ("stuck_frame ended: 6 frames in a row skipped, frames 4 .. 9 (0.50 s; an error line each "
                         "in the results)"), faults[1]
    assert faults[2].startswith("frame 12: skipped: sensor fault black_rgb")
    assert faults[3].startswith("black_rgb ended: 3 frames in a row skipped, frames 12 .. 14"), faults[3]
