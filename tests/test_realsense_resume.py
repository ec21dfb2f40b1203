"""Reading a RealSense recording must not stall (review 25 #1): librealsense's ``playback.resume()`` waits (up to
10 s) for its player thread, which, not in real time, blocks in the sensor callback once the reader's bounded
queue is full, and nobody drained that queue until ``resume()`` returned: a read paid 10 s now and then (the
reviewer: 10 of 20 reads of a 16-frame recording with the default queue of 8; here 2 of 12, and 1 of 12 with a
queue of 2: it depends on how librealsense's threads meet). Now resume() runs on a helper thread while
``__iter__`` drains the queue. A fake player (no pyrealsense2) makes the stall deterministic; a real 16-frame
recording read 5 times checks librealsense itself (probabilistic: the old code passes it now and then).
Reading and counting (``_played_stamps``) a recording give up on a player that hangs (review 25 #4, #7)."""
from __future__ import annotations

import queue
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from edge_ad.runtime.sources.realsense import RealSenseRecording

RS = SimpleNamespace(stream=SimpleNamespace(color="colour", depth="depth"),
                     playback_status=SimpleNamespace(stopped="stopped", playing="playing"),
                     format=SimpleNamespace(rgb8="rgb8", bgr8="bgr8", rgba8="rgba8", bgra8="bgra8", z16="z16"))


class FakeProfile:
    def __init__(self, kind):
        self.kind = kind

    def stream_type(self):
        return self.kind

    def format(self):
        return "rgb8" if self.kind == "colour" else "z16"


class FakeFrame:
    def __init__(self, kind, k):
        self.kind, self.k = kind, k

    def keep(self):
        pass

    def get_profile(self):
        return FakeProfile(self.kind)

    def get_timestamp(self):
        return 1000.0 + 33.3 * self.k

    def get_frame_number(self):
        return self.k

    def get_data(self):
        return (np.full((4, 6, 3), self.k, np.uint8) if self.kind == "colour"
                else np.full((4, 6), 500 + self.k, np.uint16))


class FakeSensor:
    def __init__(self, player):
        self.player = player

    def open(self, profiles):
        pass

    def start(self, callback):
        self.player.callbacks.append(callback)

    def stop(self):
        pass

    def close(self):
        pass


class FakePlayer:
    """librealsense's non-real-time playback at its worst: resume() starts the player thread, which hands the
    colour then the depth frame of ``n`` frames to the sensor callbacks, and waits for that thread (the
    dispatcher flush) up to ``flush_s`` (librealsense: 10 s); ``timed_out`` records that it gave up. The status
    is "stopped" before resume() (as a freshly loaded recording's) and once every frame is delivered.
    ``start_delay_s``: resume() waits that long before it starts the player thread."""

    def __init__(self, n, flush_s=2.0, start_delay_s=0.0):
        self.n, self.flush_s, self.start_delay_s = n, flush_s, start_delay_s
        self.callbacks, self.status, self.timed_out, self.thread = [], "stopped", False, None

    def pause(self):
        pass

    def current_status(self):
        return self.status

    def _play(self):
        for k in range(self.n):
            for cb, kind in zip(self.callbacks, ("colour", "depth")):
                cb(FakeFrame(kind, k))
        self.status = "stopped"

    def resume(self):
        time.sleep(self.start_delay_s)
        self.status = "playing"
        self.thread = threading.Thread(target=self._play, daemon=True)
        self.thread.start()
        self.thread.join(self.flush_s)
        self.timed_out = self.thread.is_alive()


def fake_recording(player, queue_size=2) -> RealSenseRecording:
    src = object.__new__(RealSenseRecording)     # no pyrealsense2 here: the attributes __init__ sets
    colour, depth = FakeSensor(player), FakeSensor(player)
    src._rs, src.path, src.uri, src.playback, src.depth_scale = RS, "fake.db3", "fake.db3", player, 0.001
    src._profiles = {"colour": (colour, FakeProfile("colour")), "depth": (depth, FakeProfile("depth"))}
    src._needs_align, src.slop_ms, src.stats, src._count = False, 16.7, {}, None
    src._queue, src._closing, src._running = queue.Queue(maxsize=queue_size), threading.Event(), False
    return src


def test_a_queue_smaller_than_the_recording_does_not_stall_resume():
    """16 frames (32 callbacks) through a queue of 2: the player thread blocks on the full queue at once, so a
    resume() called where __iter__ cannot drain waits its whole flush timeout (the 10-s stall). Every frame
    is read, in order, with resume() never timing out."""
    player = FakePlayer(16, flush_s=2.0)
    src = fake_recording(player, queue_size=2)
    t = time.perf_counter()
    got = list(src)
    took = time.perf_counter() - t
    src.close()
    assert not player.timed_out, f"resume() waited {player.flush_s} s for the player blocked on the full queue"
    assert [f.id for f in got] == [str(k) for k in range(16)] and all(f.error is None for f in got)
    assert [int(f.depth[0, 0]) for f in got] == [500 + k for k in range(16)]
    assert took < 1.5 and not src._resumer.is_alive()


def test_a_recording_reported_stopped_before_resume_returns_is_not_over():
    """A loaded recording's player says "stopped" until resume() has started it: __iter__ must not take that
    for the end (three empty polls of 0.1 s while resume() is still on its way: here 0.6 s) and read nothing."""
    player = FakePlayer(5, start_delay_s=0.6)
    src = fake_recording(player)
    got = list(src)
    src.close()
    assert [f.id for f in got] == [str(k) for k in range(5)]


def test_close_while_the_player_waits_on_the_full_queue():
    """A reader that stops after one frame (close() with the player blocked on the full queue): close()
    unblocks the callback and returns at once, the helper thread ends, resume() did not time out."""
    player = FakePlayer(16, flush_s=3.0)
    src = fake_recording(player, queue_size=2)
    it = iter(src)
    assert next(it).id == "0"
    t = time.perf_counter()
    src.close()
    assert time.perf_counter() - t < 1.0
    assert not src._resumer.is_alive() and not player.thread.is_alive() and not player.timed_out


def test_a_real_recording_read_five_times_never_stalls(tmp_path, kinect_root):
    """A real 16-frame .db3 (librealsense's software device + recorder), each read with a queue of 2: every
    frame, each read well under librealsense's 10-s resume timeout (before: 1 to 10 reads in 20 took 10.3 s)."""
    pytest.importorskip("pyrealsense2")
    from test_sources import d8_to_mm, kinect_frames, record_realsense_db3
    frames = [(i, rgb, d8_to_mm(d8)) for i, rgb, d8 in kinect_frames(kinect_root, 16)]
    path = tmp_path / "rec.db3"
    record_realsense_db3(path, frames)
    times = []
    for _ in range(5):
        with RealSenseRecording(path, queue_size=2) as src:
            t = time.perf_counter()
            got = list(src)
            times.append(time.perf_counter() - t)
        assert [f.id for f in got] == [str(k) for k in range(16)]
    assert max(times) < 3.0, times


class HangingPlayer(FakePlayer):
    """A player that delivers ``n`` frames (``gap_s`` apart), then nothing, and never says it stopped
    (librealsense #10312)."""

    def __init__(self, n, gap_s=0.0):
        super().__init__(n)
        self.gap_s = gap_s

    def _play(self):
        for k in range(self.n):
            time.sleep(self.gap_s if k else 0.0)
            for cb, kind in zip(self.callbacks, ("colour", "depth")):
                cb(FakeFrame(kind, k))


def test_counting_a_recording_whose_player_hangs_gives_up(monkeypatch):
    """_played_stamps (frame_count's playback) on a player that stops delivering after 3 frames without saying
    it stopped: RuntimeError after PLAYER_STALL_S without a frame (before: it polled forever, calibrate hung
    before its first line); frame_count() is then None, remembered with count_error, and calibrate says why."""
    import edge_ad.runtime.sources.realsense as rsm
    from edge_ad.runtime.calibrate import frame_plan, uncounted_text
    player = HangingPlayer(3)

    class Device:
        def as_playback(self):
            return player

        def set_real_time(self, on):
            pass

        def query_sensors(self):
            return [Sensor(player, "colour"), Sensor(player, "depth")]

    class Sensor(FakeSensor):
        def __init__(self, player, kind):
            super().__init__(player)
            self.kind = kind

        def get_stream_profiles(self):
            return [FakeProfile(self.kind)]
    player.set_real_time = lambda on: None
    rs = SimpleNamespace(**vars(RS), context=lambda: SimpleNamespace(load_device=lambda path: Device()))
    monkeypatch.setattr(rsm, "PLAYER_STALL_S", 0.3)
    out = {}

    def count():
        try:
            out["stamps"] = rsm._played_stamps(rs, "hang.db3")
        except RuntimeError as e:
            out["error"] = str(e)
    th = threading.Thread(target=count, daemon=True)     # a hang fails the test instead of hanging it
    th.start()
    th.join(3.0)
    assert not th.is_alive(), "_played_stamps still polling a hung player after 3 s"
    assert out == {"error": "the player delivered no frame for 0.3 s after 6 colour / depth frames and did not stop (a playback hang)"}
    src = fake_recording(HangingPlayer(3))
    src._rs, calls = rs, []
    monkeypatch.setattr(rsm, "_played_stamps", lambda *a: calls.append(a) or (_ for _ in ()).throw(
        RuntimeError("the player delivered no frame for 0.3 s after 6 colour / depth frames and did not stop (a playback hang)")))
    src.count_error = None
    assert src.frame_count() is None and src.frame_count() is None and len(calls) == 1
    assert uncounted_text(src, frame_plan(None, 10), 10) == (
        "could not count the frames of fake.db3 (the player delivered no frame for 0.3 s after 6 colour / depth frames and did not stop "
        "(a playback hang)): using its first 10 frames, one stretch of it (--every K: every K-th frame instead)")


def test_reading_a_recording_whose_player_hangs_raises(monkeypatch):
    """Review 25 #7: a player that stops delivering after 3 frames (0.8 s apart) without saying it stopped:
    iterating yields those 3 frames, then raises SourceError after PLAYER_STALL_S (0.5 s) without a frame
    (before: it polled forever and edge-ad run / calibrate hung silently). The deadline counts the reader's wait
    only: a consumer that takes 0.6 s per frame, then waits 0.2 s for the next, is not a hang."""
    import edge_ad.runtime.sources.realsense as rsm
    from edge_ad.runtime.sources import SourceError
    monkeypatch.setattr(rsm, "PLAYER_STALL_S", 0.5)
    src, out = fake_recording(HangingPlayer(3, gap_s=0.8)), {"ids": []}

    def read():
        try:
            for f in src:
                out["ids"].append(f.id)
                time.sleep(0.6)             # a slow consumer: longer than the deadline, not a hang
        except SourceError as e:
            out["error"] = str(e)
    th = threading.Thread(target=read, daemon=True)     # a hang fails the test instead of hanging it
    th.start()
    th.join(6.0)
    src.close()
    assert not th.is_alive(), f"still iterating after 6 s: {out}"
    assert out == {"ids": ["0", "1", "2"], "error": "RealSense recording fake.db3: the player delivered no frame "
                   "for 0.5 s after 6 colour / depth frames and did not stop (a playback hang)"}
