"""The capture loop's policies as named helpers, each testable alone: a frame's results line
(``frame_record``), the pre-scoring checks (``check_frame``), reopening a camera
(``reopen_with_backoff``), how a run ended (``stop_reason``) and its exit status (``exit_status``,
shared by ``edge-ad run`` and the ROS 2 node)."""
from __future__ import annotations

import json
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from edge_ad.runtime import capture
from edge_ad.runtime.capture import (EXIT_BAD_FRAMES, EXIT_FATAL, EXIT_NO_FRAMES, EXIT_OK, FAILED_STOPS,
                                     check_frame, exit_status, frame_record, frame_truth, latency_record,
                                     reopen_with_backoff, run_capture, stop_reason)
from edge_ad.runtime.preprocess import FrameError, PreprocessSpec
from edge_ad.runtime.sensor_faults import SensorFaultDetector, SensorFaultError
from edge_ad.runtime.sources import Frame, SourceError, open_source


# docs/sources-and-results.md's JSON-line fields of a scored frame (issue 3: frame, score, seed_losses), written down here
# and not read from frame_record, so a renamed or dropped field fails; the demo model uses the latent
# memory (latent_distance) and synth:// carries truth
FRAME_LINE_FIELDS = {"type", "frame", "index", "timestamp", "score", "threshold", "anomalous", "latency_ms",
                     "seed_losses", "latent_distance", "truth"}
LATENCY_FIELDS = {"capture", "preprocess", "search", "total"}
TRUTH_FIELDS = {"anomalous", "kind"}


def test_frame_record_is_the_frame_line_the_loop_writes(tmp_path):
    """The demo model on synth:// writes frame lines with exactly the documented fields
    (FRAME_LINE_FIELDS, LATENCY_FIELDS, TRUTH_FIELDS); ``frame_record`` on its own result gives
    exactly the line run_capture wrote; on a stand-in result carrying the same fields, the same key set."""
    from edge_ad.runtime import Scorer, demo_model_dir
    scorer = Scorer.load(demo_model_dir(), threads=1)
    seen = []
    out = tmp_path / "r.jsonl"
    run_capture(open_source("synth://?n=3&seed=5"), scorer, threshold=scorer.threshold, out=out, handle_signals=False,
                on_result=lambda rec, fr, res: seen.append((fr, res)))
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    frames = [x for x in lines if x["type"] == "frame"]
    assert len(frames) == 3 == len(seen)
    for line in frames:
        assert set(line) == FRAME_LINE_FIELDS and set(line["latency_ms"]) == LATENCY_FIELDS
        assert set(line["truth"]) == TRUTH_FIELDS and len(line["seed_losses"]) == scorer.n_seed
    for line, (fr, res) in zip(frames, seen):
        base = {k: line[k] for k in ("frame", "index", "timestamp")}
        rec = frame_record(base, res, float(res.score), scorer.threshold, line["latency_ms"], frame_truth(fr))
        assert json.loads(json.dumps(rec)) == line
    stand_in = SimpleNamespace(score=0.5, seed_losses=np.zeros(scorer.n_seed, np.float32),
                               **{k: 0.1 for k in ("latent_distance",) if "latent_distance" in frames[0]},
                               **{k: (0, 1) for k in ("shift",) if "shift" in frames[0]})
    fr = Frame("x", None, None, meta={"anomalous": True, "kind": "box"})
    rec = frame_record({"frame": "x", "index": 0, "timestamp": 0.0}, stand_in, 0.5, 0.3,
                       latency_record(1.0, {"preprocess_ms": 2.0, "search_ms": 3.0}, 0.5, 7.0), frame_truth(fr))
    assert set(rec) == set(frames[0]) == FRAME_LINE_FIELDS
    assert rec["anomalous"] is True and rec["latency_ms"] == {"capture": 1.0, "preprocess": 2.5, "search": 3.0,
                                                              "total": 7.0}
    assert frame_record({}, stand_in, 0.2, None, {})["anomalous"] is None          # no threshold: not flagged
    assert frame_record({}, stand_in, 0.3, 0.3, {})["anomalous"] is False          # flagged above, not at


def test_check_frame_refuses_large_frames_and_sensor_faults():
    spec = PreprocessSpec()
    fr = next(iter(open_source("synth://?n=1&seed=2")))
    rgb, depth = fr.rgb, fr.depth
    u8, resize_ms = check_frame(Frame("ok", rgb, depth), SensorFaultDetector(spec, stuck=False), None, True)
    assert u8.shape == (spec.resolution, spec.resolution, 4) and u8.dtype == np.uint8 and resize_ms > 0
    assert check_frame(Frame("ok", rgb, depth), SensorFaultDetector(spec), None, False) == (None, 0.0)
    assert check_frame(Frame("ok", rgb, depth), None, None, True) == (None, 0.0)   # no checks: nothing made
    with pytest.raises(FrameError, match="depth"):
        check_frame(Frame("big", rgb[:8, :8], np.zeros((100, 100), np.uint8)), None, 1000, True)
    with pytest.raises(SensorFaultError) as e:
        check_frame(Frame("dark", np.zeros_like(rgb), depth), SensorFaultDetector(spec), None, True)
    assert e.value.fault == "black_rgb"


class _Report:
    """What reopen_with_backoff writes: results lines and log messages, in order."""

    def __init__(self):
        self.lines, self.logs = [], []

    def emit(self, rec):
        self.lines.append(rec)

    def outage(self, event, err):
        self.lines.append({"event": event, "error": str(err)})

    def log(self, msg):
        self.logs.append(msg)


def test_reopen_with_backoff_alone():
    """Two failed reopens (waits 0.05, 0.1, 0.2 s: doubling), then a new source: source_lost, source_reopened,
    one outage counted and the new source is the run's; a stop request ends the tries (False)."""
    class Closing:
        closed = False

        def close(self):
            self.closed = True

    old, new, tries = Closing(), Closing(), []

    def reopen():
        tries.append(1)
        if len(tries) < 3:
            raise SourceError("no camera yet")
        return new

    run = capture._Run(old, 0, threading.Event(), None)
    rep = _Report()
    assert reopen_with_backoff(run, SourceError("unplugged"), reopen, (0.05, 1.0), rep)
    assert run.source is new and old.closed and len(tries) == 3
    assert [x.get("event") for x in rep.lines] == ["source_lost", "source_reopened"]
    assert rep.lines[0]["error"] == "unplugged" and run.stats.outages == 1 and run.stats.outage_s > 0
    assert [m for m in rep.logs if "reopen failed" in m] == [
        "reopen failed: no camera yet; next try in 0.1 s", "reopen failed: no camera yet; next try in 0.2 s"]
    assert 0.35 <= run.stats.outage_s < 5

    stop = threading.Event()
    stop.set()
    run = capture._Run(old, 0, stop, None)
    assert not reopen_with_backoff(run, SourceError("gone"), lambda: new, (0.01, 0.02), _Report())
    assert run.source is old and run.stats.outages == 1


def _summary(stopped, scored=3, errors=0, abandoned=None):
    s = {"stopped": stopped, "frames_scored": scored, "frame_errors": errors}
    if abandoned is not None:
        s["abandoned_frame"] = abandoned
    return s


@pytest.mark.parametrize("summary, status", [
    (_summary("end"), EXIT_OK),
    (_summary("max_frames"), EXIT_OK),
    (_summary("stopped"), EXIT_OK),
    (_summary("interrupted"), EXIT_OK),
    (_summary("signal:SIGTERM", scored=0, errors=2), EXIT_OK),       # a signal ends a run cleanly
    (_summary("signal:SIGINT", abandoned="f7"), EXIT_FATAL),         # ... unless a frame was left scoring
    (_summary("source_failed"), EXIT_FATAL),
    (_summary("frame_timeout"), EXIT_FATAL),
    (_summary("fatal", scored=0), EXIT_FATAL),
    (_summary("end", errors=1), EXIT_BAD_FRAMES),
    (_summary("stopped", errors=1), EXIT_BAD_FRAMES),
    (_summary("end", scored=0, errors=4), EXIT_NO_FRAMES),
    (_summary("end", scored=0), EXIT_NO_FRAMES),
])
def test_exit_status(summary, status):
    assert exit_status(summary) == status


def test_stop_reason():
    assert stop_reason("end", False, None) == "end"
    assert stop_reason("end", True, "SIGTERM") == "signal:SIGTERM"
    assert stop_reason("max_frames", True, None) == "stopped"      # the stop event, no signal
    for kept in FAILED_STOPS + ("interrupted",):
        assert stop_reason(kept, True, "SIGINT") == kept


@pytest.mark.parametrize("summary, node_status", [
    (_summary("signal:SIGINT"), 0), (_summary("stopped", errors=2), 0), (_summary("end", scored=0), 0),
    (_summary("source_failed"), 1), (_summary("frame_timeout"), 1), (_summary("fatal"), 1)])
def test_ros_node_exits_1_where_run_exits_fatal(monkeypatch, summary, node_status):
    """The ROS 2 node's exit status follows ``exit_status``: 1 exactly where edge-ad run exits
    EXIT_FATAL; bad frames (published on ~/fault) or no frame do not fail the node."""
    from edge_ad.jetson import ros2_node
    from test_ros import MapScorer, fake_ros   # noqa: E402  (tests/ is on sys.path under pytest)
    monkeypatch.setattr(capture, "run_capture", lambda *a, **kw: {"type": "summary", **summary})
    fake_ros(monkeypatch, {}, scorer=MapScorer())
    assert ros2_node.main([]) == node_status
