"""A live RealSense whose colour frame number stops advancing (or whose framesets lack colour) while depth
keeps coming (audit 17 #4b): before, ``RealSenseCamera.__iter__`` skipped those framesets forever (no frame,
no error, no outage). Now it raises SourceError after ``stale_s`` without a new colour frame, which the
capture loop turns into a ``source_lost`` event and a reopen. A fake pipeline stands in for pyrealsense2."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import edge_ad.runtime.sources.realsense as rsm
from edge_ad.runtime.capture import run_capture
from edge_ad.runtime.sources import SourceError
from edge_ad.runtime.sources.realsense import RealSenseCamera

from test_capture import FakeScorer, read_lines  # noqa: E402


class FakeFrame:
    def __init__(self, n, arr):
        self.n, self.arr = n, arr

    def __bool__(self):
        return True

    def get_frame_number(self):
        return self.n

    def get_timestamp(self):
        return self.n * 33.0

    def get_data(self):
        return self.arr


class FakeFrameset:
    def __init__(self, c, d):
        self.c, self.d = c, d

    def get_color_frame(self):
        return self.c

    def get_depth_frame(self):
        return self.d


class FakePipeline:
    """Framesets every 5 ms; the colour frame number stops at ``freeze_at`` (``no_colour``: framesets
    without a colour frame from then on) while depth keeps coming."""

    def __init__(self, freeze_at=5, no_colour=False):
        self.k, self.freeze_at, self.no_colour = 0, freeze_at, no_colour
        rng = np.random.default_rng(0)
        self.rgb = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)

    def wait_for_frames(self, timeout_ms):
        time.sleep(0.005)
        self.k += 1
        if self.k > 600:   # ~3 s: a camera that never reports the stale stream (the old loop) fails, not hangs
            raise RuntimeError("fake pipeline: still no stale-colour error")
        frozen = self.k > self.freeze_at
        c = None if (frozen and self.no_colour) else FakeFrame(min(self.k, self.freeze_at), self.rgb)
        depth = np.full((48, 64), 400 + self.k % 7, np.uint16)
        return FakeFrameset(c, FakeFrame(self.k, depth))

    def stop(self):
        pass


class Align:
    def process(self, fs):
        return fs


def fake_camera(monkeypatch, stale_s=0.3, **kw) -> RealSenseCamera:
    cam = object.__new__(RealSenseCamera)       # no pyrealsense2 here: the attributes __init__ sets
    cam._rs, cam.pipeline, cam.align, cam._started = None, FakePipeline(**kw), Align(), True
    cam.serial, cam.name, cam.uri = "fake", "fake", "realsense://fake"
    cam.stats, cam.depth_scale, cam.timeout_ms, cam.stale_s = {"driver_dropped": 0, "restarts": 0}, 0.001, 5000, stale_s
    monkeypatch.setattr(rsm, "_colour_to_rgb", lambda rs, c: c.arr.copy())
    monkeypatch.setattr(rsm, "_depth_to_mm", lambda d, scale: d.arr.copy())
    return cam


@pytest.mark.parametrize("no_colour", [False, True])
def test_a_stale_colour_stream_raises_source_error(monkeypatch, no_colour):
    cam = fake_camera(monkeypatch, no_colour=no_colour)
    got, t0 = [], time.monotonic()
    with pytest.raises(SourceError, match="no new colour frame for 0.3 s") as e:
        for fr in cam:
            got.append(fr.id)
    assert got == ["1", "2", "3", "4", "5"]
    assert 0.3 <= time.monotonic() - t0 < 3.0
    assert ("without a colour frame" if no_colour else "colour frame number stuck at 5") in str(e.value)


def test_stale_s_defaults_to_the_frame_timeout(monkeypatch):
    cam = fake_camera(monkeypatch, stale_s=None)
    cam.timeout_ms = 200
    with pytest.raises(SourceError, match="no new colour frame for 0.2 s"):
        list(cam)


def test_the_capture_loop_reports_the_outage_and_reopens(monkeypatch, tmp_path):
    """The audit's probe (probe_rs.py): before, 8 s of frozen colour gave no event and no outage."""
    opened = [fake_camera(monkeypatch)]

    def reopen():
        opened.append(fake_camera(monkeypatch))
        return opened[-1]

    stop = threading.Event()
    timer = threading.Timer(1.5, stop.set)
    timer.start()
    try:
        s = run_capture(opened[0], FakeScorer(), out=tmp_path / "r.jsonl", stop=stop, handle_signals=False,
                        live=True, reopen=reopen, backoff=(0.05, 0.1))
    finally:
        timer.cancel()
    events = [r.get("event") for r in read_lines(tmp_path / "r.jsonl") if r["type"] == "event"]
    assert "source_lost" in events and "source_reopened" in events, events
    assert s["outages"] >= 1 and len(opened) >= 2
    lost = next(r for r in read_lines(tmp_path / "r.jsonl") if r.get("event") == "source_lost")
    assert "colour stream stale" in lost["error"]
