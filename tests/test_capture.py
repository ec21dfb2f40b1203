"""The capture loop with a stand-in scorer: JSON lines and summary, bad frames, the newest-frame
policy on a live source, reopen with backoff, and SIGTERM leaving a complete results file."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from edge_ad.runtime.capture import LatestSlot, run_capture
from edge_ad.runtime.preprocess import PreprocessSpec, preprocess
from edge_ad.runtime.sources import Frame, Source, SourceError, open_source


class FakeScorer:
    """Deterministic stand-in for runtime.Scorer: score = mean |x| + a seed-dependent epsilon."""

    def __init__(self, delay: float = 0.0):
        self.delay, self.calls = delay, []
        self.preprocess = PreprocessSpec()

    def score(self, rgb, depth, z0=None, seed=None, **kw):
        t0 = time.perf_counter()
        x = preprocess(rgb, depth, self.preprocess)  # raises FrameError for bad frames
        t1 = time.perf_counter()
        if self.delay:
            time.sleep(self.delay)
        self.calls.append(seed)
        s = float(np.abs(x).mean()) + (0 if seed is None else (seed % 1000) * 1e-9)
        return SimpleNamespace(score=s, timings={"preprocess_ms": (t1 - t0) * 1e3,
                                                 "search_ms": (time.perf_counter() - t1) * 1e3})


def read_lines(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def test_sync_source_every_frame_and_summary(tmp_path):
    out = tmp_path / "r.jsonl"
    sc = FakeScorer()
    src = open_source("synth://?n=7&anomaly_rate=0.5&seed=3")
    summary = run_capture(src, sc, threshold=0.5, out=out, seed=11, handle_signals=False)
    lines = read_lines(out)
    frames = [r for r in lines if r["type"] == "frame"]
    assert len(frames) == 7 and lines[-1] == summary and summary["type"] == "summary"
    assert [r["index"] for r in frames] == list(range(7))
    assert summary["frames_scored"] == 7 and summary["frame_errors"] == 0 and summary["skipped"] == 0
    assert summary["anomalies"] == sum(r["anomalous"] for r in frames)
    assert summary["anomalies"] == sum(r["score"] > 0.5 for r in frames)
    assert summary["stopped"] == "end"
    for r in frames:
        assert set(r["latency_ms"]) == {"capture", "preprocess", "search", "total"}
        assert r["latency_ms"]["total"] >= r["latency_ms"]["search"] >= 0
        assert r["threshold"] == 0.5 and "truth" in r
    # per-frame seeds: frame_seed(run seed, index), reproducible and distinct
    from edge_ad.runtime.config import frame_seed
    assert sc.calls == [frame_seed(11, i) for i in range(7)]
    assert summary["latency_ms"]["p50"] <= summary["latency_ms"]["p95"]


def test_bad_frames_reported_run_goes_on(tmp_path):
    good = open_source("synth://?n=3&seed=1")
    goods = list(good)

    class Mixed(Source):
        uri = "mixed"

        def __iter__(self):
            yield goods[0]
            yield Frame("unreadable", None, None, error="unreadable RGB x.jpg: truncated")
            yield Frame("nan", goods[1].rgb, np.full(goods[1].depth.shape, np.nan, np.float32))
            yield Frame("small", np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8))
            yield goods[2]

    out = tmp_path / "r.jsonl"
    summary = run_capture(Mixed(), FakeScorer(), out=out, handle_signals=False)
    lines = read_lines(out)
    errs = {r["frame"]: r["error"] for r in lines if r["type"] == "error"}
    assert set(errs) == {"unreadable", "nan", "small"}
    assert "truncated" in errs["unreadable"] and "NaN" in errs["nan"] and "too small" in errs["small"]
    assert [r["frame"] for r in lines if r["type"] == "frame"] == [goods[0].id, goods[2].id]
    assert summary["frames_scored"] == 2 and summary["frame_errors"] == 3
    assert [r["anomalous"] for r in lines if r["type"] == "frame"] == [None, None]  # no threshold


class FastCamera(Source):
    """A live source producing frames every ``period`` s on its own clock; fails after ``fail_after``."""

    live = True

    def __init__(self, period=0.005, fail_after=None, n=None, tag="cam"):
        self.period, self.fail_after, self.n, self.tag = period, fail_after, n, tag
        self.produced = 0
        self.uri = f"fake://{tag}"
        self._closed = threading.Event()
        self._frame = list(open_source("synth://?n=1&seed=0"))[0]
        self._fg = tuple(np.argwhere(self._frame.depth > 0)[0])   # one foreground pixel, its depth varied

    def __iter__(self):
        while not self._closed.is_set():
            if self.fail_after is not None and self.produced >= self.fail_after:
                raise SourceError(f"{self.tag} unplugged")
            if self.n is not None and self.produced >= self.n:
                return
            time.sleep(self.period)
            self.produced += 1
            rgb = self._frame.rgb.copy()
            rgb[0, 0, 0] = self.produced % 256  # like a real sensor, no two consecutive frames identical
            depth = self._frame.depth.copy()     # ... in colour or in depth (stuck_rgb / stuck_depth)
            depth[self._fg] = 1 + self.produced % 255
            yield Frame(f"{self.tag}-{self.produced}", rgb, depth, time.time())

    def close(self):
        self._closed.set()


def test_live_source_scores_newest_and_counts_skipped(tmp_path):
    cam = FastCamera(period=0.002, n=150)
    sc = FakeScorer(delay=0.03)  # ~15x slower than the camera
    out = tmp_path / "r.jsonl"
    summary = run_capture(cam, sc, out=out, handle_signals=False)
    scored = [r for r in read_lines(out) if r["type"] == "frame"]
    assert summary["skipped"] > 50
    # every produced frame is either scored or counted as skipped (the last may be in flight)
    assert cam.produced - 1 <= summary["frames_scored"] + summary["skipped"] <= cam.produced
    ids = [int(r["frame"].split("-")[1]) for r in scored]
    assert ids == sorted(ids) and ids[-1] >= cam.produced - 1


def test_latest_slot_keeps_one_item():
    slot = LatestSlot()
    for i in range(100):
        slot.put(i)
    assert slot.take(0.01) == 99 and slot.skipped == 99 and slot.take(0.01) is None


def test_live_source_reopened_with_backoff(tmp_path):
    opened = []

    def reopen():
        opened.append(time.perf_counter())
        if len(opened) < 3:
            raise SourceError("camera not found")  # still unplugged twice
        return FastCamera(period=0.01, n=5, tag="again")

    out = tmp_path / "r.jsonl"
    logs = []
    summary = run_capture(FastCamera(period=0.01, fail_after=4, tag="first"), FakeScorer(), out=out,
                          reopen=reopen, backoff=(0.05, 0.2), log=logs.append, handle_signals=False)
    lines = read_lines(out)
    events = [r["event"] for r in lines if r["type"] == "event"]
    assert events == ["source_lost", "source_reopened"]
    assert summary["outages"] == 1 and summary["outage_s"] >= 0.05 + 0.1 + 0.2 - 0.02
    assert len(opened) == 3 and opened[2] - opened[1] >= 0.18  # backoff doubled (capped at 0.2)
    ids = [r["frame"] for r in lines if r["type"] == "frame"]
    assert any(i.startswith("first") for i in ids) and any(i.startswith("again") for i in ids)
    assert any("reopen failed" in m for m in logs)


def test_max_frames_and_stop_event(tmp_path):
    summary = run_capture(open_source("synth://?seed=2"), FakeScorer(), max_frames=3,
                          out=tmp_path / "a.jsonl", handle_signals=False)
    assert summary["frames_scored"] == 3 and summary["stopped"] == "max_frames"
    stop = threading.Event()
    stop.set()
    summary = run_capture(open_source("synth://?seed=2"), FakeScorer(), stop=stop,
                          out=tmp_path / "b.jsonl", handle_signals=False)
    assert summary["frames_scored"] <= 1


SIGTERM_SCRIPT = textwrap.dedent("""
    import sys, time
    from types import SimpleNamespace
    from edge_ad.runtime.capture import run_capture
    from edge_ad.runtime.sources import open_source

    class Slow:
        def score(self, rgb, depth, z0=None, seed=None, **kw):
            time.sleep(0.05)
            return SimpleNamespace(score=float(rgb.mean()), timings={})

    s = run_capture(open_source("synth://?seed=1"), Slow(), out=sys.argv[1], threshold=50.0)
    print("stopped", s["stopped"], flush=True)
""")


def run_until_lines(out, n: int) -> subprocess.Popen:
    """SIGTERM_SCRIPT started in a subprocess writing to ``out``, returned once ``out`` holds ``n`` lines (or
    after 60 s: the caller's assertions then say what is missing)."""
    p = subprocess.Popen([sys.executable, "-c", SIGTERM_SCRIPT, str(out)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and (not out.exists() or out.read_text().count("\n") < n):
        time.sleep(0.05)
    return p


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_sigterm_leaves_complete_results(tmp_path, sig):
    """SIGTERM, and SIGHUP (a closed SSH session or terminal; audit 28 #23: it killed the run, no summary),
    stop the run in order: the summary names the signal, every line whole, exit 0."""
    out = tmp_path / "r.jsonl"
    p = run_until_lines(out, 5)
    n_before = out.read_text().count("\n")
    assert n_before >= 5, p.stderr.read() if p.poll() is not None else "no lines"
    p.send_signal(getattr(signal, sig))
    stdout, stderr = p.communicate(timeout=30)
    assert p.returncode == 0, stderr
    assert f"stopped signal:{sig}" in stdout
    lines = read_lines(out)  # every line parses
    assert lines[-1]["type"] == "summary" and lines[-1]["stopped"] == f"signal:{sig}"
    frames = [r for r in lines if r["type"] == "frame"]
    assert len(frames) >= n_before and lines[-1]["frames_scored"] == len(frames)
    assert out.read_bytes().endswith(b"\n")  # no half-written line


def test_sigkill_loses_at_most_the_line_in_flight(tmp_path):
    """Lines are flushed as written: after a hard kill every scored frame but the last is on disk."""
    out = tmp_path / "r.jsonl"
    p = run_until_lines(out, 6)
    p.kill()
    p.communicate(timeout=30)
    text = out.read_text()
    complete = text.splitlines()[: text.count("\n")]
    recs = [json.loads(x) for x in complete]  # every complete line parses
    assert len(recs) >= 6 and all(r["type"] == "frame" for r in recs)
    assert [r["index"] for r in recs] == list(range(len(recs)))  # none missing in between


def test_a_second_signal_while_a_frame_scores_names_the_abandoned_frame(tmp_path, capsys, monkeypatch):
    """A second Ctrl-C / SIGTERM while a frame is scoring (KeyboardInterrupt out of the scoring call; `timeout`
    sends SIGTERM to the child and to its group, two at once): the run ends with the frame abandoned (exit 1), and
    before, no fatal_error: `edge-ad run` said only "error: None". Now the summary and the line name the frame."""
    from edge_ad.commands.run import _exit_with_status

    class Interrupted(FakeScorer):
        def score(self, rgb, depth, **kw):
            if len(self.calls) >= 2:
                raise KeyboardInterrupt
            return super().score(rgb, depth, **kw)
    s = run_capture(open_source("synth://?n=5"), Interrupted(), out=tmp_path / "r.jsonl", handle_signals=False)
    want = "frame synth-000002 abandoned: interrupted (second signal)"
    assert (s["stopped"], s["abandoned_frame"], s["frames_scored"]) == ("interrupted", "synth-000002", 2)
    assert s["fatal_error"] == want and read_lines(tmp_path / "r.jsonl")[-1]["fatal_error"] == want
    def leave(status):                   # the CLI leaves with os._exit (the abandoned call may still run)
        raise SystemExit(status)
    monkeypatch.setattr("edge_ad.commands.run.os._exit", leave)
    with pytest.raises(SystemExit) as e:
        _exit_with_status(s, None)
    assert e.value.code == 1 and capsys.readouterr().err.strip() == f"error: {want}"


def test_a_raising_hook_is_reported_and_the_run_goes_on(tmp_path):
    """A hook raising OSError from frame 1 on (a full disk): every frame is scored and written, the
    other hook still sees every frame, one hook_failed event for the failing streak (not one per
    frame), a second one when it fails again after it worked, the failures counted in the summary."""
    out = tmp_path / "r.jsonl"
    seen = []

    def save_pictures(rec, fr, res):
        if rec["index"] in (1, 2, 3, 5):
            raise OSError(28, "No space left on device")

    def count(rec, fr, res):
        seen.append(rec["index"])

    s = run_capture(open_source("synth://?n=7&seed=3"), FakeScorer(), threshold=0.5, out=out,
                    on_result=[save_pictures, count], handle_signals=False)
    lines = read_lines(out)
    assert [r["index"] for r in lines if r["type"] == "frame"] == list(range(7)) == seen
    events = [r for r in lines if r.get("event") == "hook_failed"]
    assert [(e["hook"], e["index"]) for e in events] == [("save_pictures", 1), ("save_pictures", 5)]
    assert events[0]["error"] == "OSError: [Errno 28] No space left on device"
    assert s["stopped"] == "end" and "fatal_error" not in s and s["frames_scored"] == 7
    assert s["hook_failures"] == {"save_pictures": 4} and s["frame_errors"] == 0
    # a run whose hooks all work has no hook_failures in its summary
    s = run_capture(open_source("synth://?n=2&seed=3"), FakeScorer(), on_result=count, handle_signals=False)
    assert "hook_failures" not in s


def test_a_raising_error_hook_is_reported_and_the_run_goes_on(tmp_path):
    """on_error hooks (the ROS node's fault publisher) get the same protection as on_result hooks."""
    goods = list(open_source("synth://?n=2&seed=1"))

    class WithBad(Source):
        uri = "with-bad"

        def __iter__(self):
            yield goods[0]
            yield Frame("unreadable", None, None, error="unreadable RGB x.jpg")
            yield goods[1]

    def publish_fault(rec, fr):
        raise RuntimeError("publisher gone")

    out = tmp_path / "r.jsonl"
    s = run_capture(WithBad(), FakeScorer(), out=out, on_error=publish_fault, handle_signals=False)
    lines = read_lines(out)
    assert s["stopped"] == "end" and s["frames_scored"] == 2 and s["frame_errors"] == 1
    ev = [r for r in lines if r.get("event") == "hook_failed"]
    assert len(ev) == 1 and ev[0]["hook"] == "publish_fault" and ev[0]["frame"] == "unreadable"
    assert s["hook_failures"] == {"publish_fault": 1}


def test_a_threshold_that_is_not_a_positive_number_is_refused(tmp_path):
    """run_capture (edge-ad run, batch and the ROS node's threshold parameter go through it) refuses a
    threshold <= 0 or non-finite before the results file is touched, as manifests refuse one."""
    import pytest
    from edge_ad.runtime.capture import valid_threshold
    out = tmp_path / "r.jsonl"
    for bad in (0, 0.0, -0.1, float("nan"), float("inf"), True, "x"):
        with pytest.raises(ValueError, match="threshold must be a finite number > 0"):
            run_capture(open_source("synth://?n=1"), FakeScorer(), threshold=bad, out=out, handle_signals=False)
    assert not out.exists()
    with pytest.raises(ValueError, match="^parameter threshold must be"):
        valid_threshold(-1.0, "parameter threshold")
    assert valid_threshold(0.25) == 0.25 and valid_threshold(1) == 1.0


def test_run_capture_without_a_threshold_says_the_model_has_one(tmp_path):
    """Audit 28 #8 (a): run_capture(source, scorer) without ``threshold`` flagged nothing (every line
    anomalous: null) although the scorer carries a calibrated threshold, and said nothing. It still flags
    nothing (the caller decides), but warns and logs, naming the model's threshold and how to use it."""
    import pytest

    from edge_ad.runtime import Scorer, demo_model_dir
    logs = []
    with Scorer.load(demo_model_dir(), threads=1) as scorer:
        with pytest.warns(UserWarning, match=r"run_capture: no threshold given, so no frame is flagged \(anomalous: "
                                             rf"null\); the model's calibrated threshold is {scorer.threshold:.4g}: "
                                             r"pass threshold=scorer\.threshold to flag at it"):
            s = run_capture(open_source("synth://?n=3"), scorer, out=tmp_path / "r.jsonl", handle_signals=False,
                            log=logs.append)
        assert s["frames_scored"] == 3 and any("no threshold given" in m for m in logs), logs
        rows = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
        assert all(r["anomalous"] is None for r in rows if r.get("type") == "frame")
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("error")               # given: no warning
            run_capture(open_source("synth://?n=1"), scorer, threshold=scorer.threshold, handle_signals=False)
