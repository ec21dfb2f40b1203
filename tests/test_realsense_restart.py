"""A live RealSense whose colour frame counter goes back (the camera restarted: a firmware or USB reset; or the
counter wrapped). Before, ``RealSenseCamera.__iter__`` read every frame numbered up to the old count as "nothing
new": those frames were skipped without a word, and when the old count was more than ``stale_s`` of frames away the
camera was reported as a stale colour stream. Now the restart is a ``camera_restart`` event and the frames of the
new count are read. Real librealsense frames: a ``software_device``'s sensors, composed into framesets and aligned
by ``rs.align`` as on a camera (no camera needed; a pipeline cannot open a software device, so one stands in)."""
from __future__ import annotations

import time

import numpy as np
import pytest

from edge_ad.runtime.capture import run_capture
from edge_ad.runtime.sources import SourceError
from edge_ad.runtime.sources.realsense import RealSenseCamera, _Composer

from test_capture import FakeScorer, read_lines  # noqa: E402

rs = pytest.importorskip("pyrealsense2")
W, H, FPS = 64, 48, 30


class SoftwarePipeline:
    """``wait_for_frames`` of a camera whose colour and depth frames carry the numbers ``numbers`` in turn, one
    frameset every ``period_s``; RuntimeError once they are all sent (the camera gone)."""

    def __init__(self, numbers, period_s=0.005):
        self.numbers, self.k, self.period_s = list(numbers), 0, period_s
        self.dev = rs.software_device()
        self.sensors = []
        for name, kind, uid, fmt, bpp in (("Stereo Module", rs.stream.depth, 0, rs.format.z16, 2),
                                          ("RGB Camera", rs.stream.color, 1, rs.format.rgb8, 3)):
            v = rs.video_stream()
            v.type, v.index, v.uid, v.width, v.height, v.fps, v.bpp, v.fmt = kind, 0, uid, W, H, FPS, bpp, fmt
            i = rs.intrinsics()
            i.width, i.height, i.ppx, i.ppy, i.fx, i.fy = W, H, W / 2, H / 2, float(W), float(W)
            i.model, i.coeffs = rs.distortion.none, [0.0] * 5
            v.intrinsics = i
            sensor = self.dev.add_sensor(name)
            profile = sensor.add_video_stream(v).as_video_stream_profile()
            if kind == rs.stream.depth:
                sensor.add_read_only_option(rs.option.depth_units, 0.001)
            self.sensors.append((sensor, profile, bpp, rs.frame_queue(4, keep_frames=True)))
        ext = rs.extrinsics()
        ext.rotation, ext.translation = [1, 0, 0, 0, 1, 0, 0, 0, 1], [0, 0, 0]
        self.sensors[0][1].register_extrinsics_to(self.sensors[1][1], ext)
        for sensor, profile, _, q in self.sensors:
            sensor.open(profile)
            sensor.start(q)
        self.composer = _Composer(rs)
        yy, xx = np.mgrid[0:H, 0:W]
        self.rgb = np.stack([60 + yy, 70 + xx, 80 + (yy + xx) // 2], axis=-1).astype(np.uint8)   # (H, W, 3) smooth

    def wait_for_frames(self, timeout_ms):
        if self.k >= len(self.numbers):
            raise RuntimeError("Frame didn't arrive within 5000")
        time.sleep(self.period_s)
        n, k = self.numbers[self.k], self.k
        self.k += 1
        depth = np.zeros((H, W), np.uint16)                  # (H, W) mm, changing: no stuck-frame fault; an
        depth[6:-6, 12:-12] = 400 + k % 7                    # object alone (to the edges: background_in_view)
        rgb = self.rgb + np.uint8(k % 5)                     # (H, W, 3) changing too
        got = []
        for (sensor, profile, bpp, q), a in zip(self.sensors, (depth, rgb)):
            f = rs.software_video_frame()
            f.pixels, f.bpp, f.stride = np.ascontiguousarray(a), bpp, W * bpp
            f.timestamp, f.domain, f.frame_number = 1000.0 + k * 1000.0 / FPS, rs.timestamp_domain.hardware_clock, n
            f.profile = profile
            sensor.on_video_frame(f)
            got.append(q.wait_for_frame(1000))
        return self.composer.compose(*got)

    def stop(self):
        for sensor, *_ in self.sensors:
            sensor.stop()
            sensor.close()


def software_camera(numbers, stale_s=0.3) -> RealSenseCamera:
    cam = object.__new__(RealSenseCamera)       # no camera here: the attributes __init__ sets
    cam._rs, cam.pipeline, cam.align, cam._started = rs, SoftwarePipeline(numbers), rs.align(rs.stream.color), True
    cam.serial, cam.name, cam.uri = "sw", "software camera", "realsense://sw"
    cam.stats, cam.depth_scale, cam.timeout_ms, cam.stale_s = {"driver_dropped": 0, "restarts": 0}, 0.001, 5000, stale_s
    return cam


BEFORE, AFTER = list(range(1, 41)), list(range(0, 80))   # 80 frames at 5 ms: past stale_s 0.3 s below the old count


def test_a_frame_counter_that_goes_back_is_a_restart_not_a_stale_stream():
    cam = software_camera(BEFORE + AFTER)
    got = []
    with pytest.raises(SourceError, match="stopped delivering frames"):   # the software camera's end, not "stale"
        for fr in cam:
            got.append(fr)
    assert [f.id for f in got] == [str(n) for n in BEFORE + AFTER]
    assert all(f.error is None and f.rgb.shape == (H, W, 3) and f.depth.shape == (H, W) for f in got)
    assert cam.stats == {"driver_dropped": 0, "restarts": 1}
    assert [(e["event"], e["frame_number_before"], e["frame_number"]) for e in cam.events] == [("camera_restart", 40, 0)]
    assert "went back from 40 to 0: the camera restarted" in cam.events[0]["message"]


def test_a_frozen_counter_is_still_a_stale_colour_stream():
    cam = software_camera(BEFORE + [40] * 100)
    with pytest.raises(SourceError, match=r"colour frame number stuck at 40\): colour stream stale"):
        list(cam)
    assert cam.events == [] and cam.stats["restarts"] == 0


def test_run_capture_reports_the_restart_and_scores_the_new_count(tmp_path):
    """Every frame scored in order (live=False), the restart an event between the old count's last frame and the
    new count's first, said on the console, counted in the summary's source_stats."""
    logged = []
    s = run_capture(software_camera(BEFORE + AFTER), FakeScorer(), out=tmp_path / "r.jsonl", handle_signals=False,
                    live=False, log=logged.append)
    lines = read_lines(tmp_path / "r.jsonl")
    seq = [r["frame"] if r["type"] == "frame" else r.get("event") for r in lines if r["type"] in ("frame", "event")]
    i = seq.index("camera_restart")
    assert seq[i - 1:i + 2] == ["40", "camera_restart", "0"], seq[i - 3:i + 3]
    assert sum(r["type"] == "frame" for r in lines) == len(BEFORE + AFTER)
    assert s["source_stats"] == {"driver_dropped": 0, "restarts": 1}
    assert any("went back from 40 to 0" in m for m in logged), logged
