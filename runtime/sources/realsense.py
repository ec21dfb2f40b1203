"""Intel RealSense: live cameras (``realsense://[serial]``) and recordings (``.db3``, ``.bag``).

Colour is delivered as RGB uint8, depth aligned to colour (``rs.align``) in millimetres
(uint16 when the depth unit is 1 mm, else float32). Recordings are played back with
``set_real_time(False)`` through per-sensor callbacks, so no frame is dropped however slow the
scoring is: the callback blocks on a small bounded queue and the player waits (resumed from a helper thread,
as ``playback.resume()`` waits for the player).
``RealSenseRecording.frame_count()`` says how many frames that yields before: the recording played once
more with callbacks that keep only each frame's stream and timestamp, paired the same way.
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Iterator, Optional

import numpy as np

from .base import Frame, Source, SourceError
from .pairing import TimePairer, gap_event

DEFAULT_WIDTH, DEFAULT_HEIGHT, DEFAULT_FPS = 640, 480, 30
PLAYER_STALL_S = 5.0   # a recording's read or count gives up when its player sends no frame for this long, not stopped


def import_rs():
    """Import pyrealsense2 or raise SourceError saying how to install it."""
    try:
        import pyrealsense2 as rs
    except ImportError as e:
        hint = (" (the Debian/Ubuntu package libusb-1.0-0 is missing: apt-get install libusb-1.0-0)"
                if "libusb" in str(e) else "")
        raise SourceError(f"RealSense support needs pyrealsense2: pip install 'edge-ad[camera]'{hint}; "
                          f"import failed: {e}") from None
    return rs


def list_devices() -> list:
    """Connected RealSense devices with colour and depth: [{'name', 'serial', 'product_line'}]."""
    rs = import_rs()
    out = []
    for dev in rs.context().query_devices():
        info = lambda k: dev.get_info(k) if dev.supports(k) else ""  # noqa: E731
        kinds = set()
        for s in dev.query_sensors():
            for p in s.get_stream_profiles():
                kinds.add(p.stream_type())
        if rs.stream.depth in kinds and rs.stream.color in kinds:
            out.append({"name": info(rs.camera_info.name), "serial": info(rs.camera_info.serial_number),
                        "product_line": info(rs.camera_info.product_line)})
    return out


def _colour_to_rgb(rs, frame) -> np.ndarray:
    fmt = frame.get_profile().format()
    a = np.asanyarray(frame.get_data())
    if fmt == rs.format.rgb8:
        return a.copy()
    if fmt == rs.format.bgr8:
        return a[:, :, ::-1].copy()
    if fmt == rs.format.rgba8:
        return a[:, :, :3].copy()
    if fmt == rs.format.bgra8:
        return a[:, :, 2::-1].copy()
    raise SourceError(f"unsupported RealSense colour format {fmt}; record colour as rgb8/bgr8")


def _depth_to_mm(frame, depth_scale: float) -> np.ndarray:
    raw = np.asanyarray(frame.get_data())  # H x W uint16 depth units
    if abs(depth_scale - 0.001) < 1e-7:
        return raw.copy()
    return (raw.astype(np.float32) * np.float32(depth_scale * 1000.0))


def read_depth_scale(dev, what: str) -> float:
    """Metres per depth unit of RealSense device ``dev`` (a camera, or a recording's playback device); SourceError
    naming ``what`` when it cannot be read or is not a finite number > 0. A guessed 1 mm (a D405 counts 0.1 mm, an
    L515 0.25 mm) put every reading 10x / 4x too far, and the frames were refused as empty scenes (audit 30 #8)."""
    try:
        scale = float(dev.first_depth_sensor().get_depth_scale())
    except Exception as e:  # noqa: BLE001 - pyrealsense2 raises RuntimeError, a device without depth sensor others
        raise SourceError(f"cannot read the depth scale (depth units) of {what}: {e}; its depth readings cannot be "
                          "converted to millimetres") from None
    if not np.isfinite(scale) or scale <= 0:
        raise SourceError(f"{what} reports a depth scale of {scale!r} m per depth unit (need a finite number > 0): "
                          "its depth readings cannot be converted to millimetres")
    return scale


def restart_event(uri: str, before: int, after: int) -> dict:
    """The ``camera_restart`` event of a live camera whose colour frame number went back from ``before`` to
    ``after``: its ``message`` is the console line (``capture._Report.drain`` prints it)."""
    return {"event": "camera_restart", "source": uri, "frame_number_before": int(before), "frame_number": int(after),
            "message": f"{uri}: colour frame number went back from {before} to {after}: the camera restarted (or its "
                       f"frame counter wrapped); frames are read on from frame {after}"}


class RealSenseCamera(Source):
    """A live RealSense camera. ``wait_for_frames`` timing out raises SourceError (camera gone);
    the capture loop then reopens it with backoff. So does a camera that still sends framesets but
    no new colour frame for ``stale_s`` seconds (its colour frame number stopped advancing, or the
    framesets lack colour or depth: a frozen colour sensor beside a live depth sensor); None: the
    ``timeout_ms`` of ``wait_for_frames``. A colour frame number that goes BACK (below the previous one)
    is the camera restarting its counter (a firmware or USB reset, or the counter wrapping), not a stale
    stream: a ``camera_restart`` event (``restart_event``) and ``stats["restarts"]``, then the frames from
    the new count on are read as new (before, every frame up to the old count was skipped as "nothing new":
    lost silently, or reported after ``stale_s`` as a stale colour stream). ``live = True``: frames may be
    skipped."""

    live = True
    stale_s: Optional[float] = None

    def __init__(self, serial: Optional[str] = None, width: int = DEFAULT_WIDTH,
                 height: int = DEFAULT_HEIGHT, fps: int = DEFAULT_FPS, timeout_ms: int = 5000):
        rs = self._rs = import_rs()
        devices = list_devices()  # fail at once, not after pipeline.start()'s long timeout
        if not devices:
            raise SourceError("no RealSense camera with colour and depth is connected")
        if serial and serial not in {d["serial"] for d in devices}:
            raise SourceError(f"RealSense camera {serial!r} not found; connected: "
                              + ", ".join(f"{d['name']} ({d['serial']})" for d in devices))
        self.serial = serial or devices[0]["serial"]
        self.name = next(d["name"] for d in devices if d["serial"] == self.serial)
        self.uri = f"realsense://{self.serial}"
        self.timeout_ms = timeout_ms
        self.stats = {"driver_dropped": 0, "restarts": 0}
        cfg = rs.config()
        cfg.enable_device(self.serial)
        cfg.enable_stream(rs.stream.depth, width, height, rs.format.z16, fps)
        cfg.enable_stream(rs.stream.color, width, height, rs.format.rgb8, fps)
        self.pipeline = rs.pipeline()
        try:
            profile = self.pipeline.start(cfg)
        except RuntimeError as e:
            raise SourceError(f"cannot start RealSense {self.name} ({self.serial}) at "
                              f"{width}x{height}@{fps}: {e}") from None
        try:
            self.depth_scale = read_depth_scale(profile.get_device(), f"RealSense {self.name} ({self.serial})")
        except SourceError:
            self.pipeline.stop()
            raise
        self.align = rs.align(rs.stream.color)
        self._started = True

    def __iter__(self) -> Iterator[Frame]:
        rs, last = self._rs, None
        stale_s = self.timeout_ms / 1000.0 if self.stale_s is None else float(self.stale_s)
        fresh_t = time.monotonic()   # when the last new colour + depth pair arrived (or iteration began)
        while self._started:
            try:
                fs = self.pipeline.wait_for_frames(self.timeout_ms)
            except RuntimeError as e:
                raise SourceError(f"RealSense {self.serial} stopped delivering frames: {e}") from None
            t = time.time()
            fs = self.align.process(fs)
            c, d = fs.get_color_frame(), fs.get_depth_frame()
            n = int(c.get_frame_number()) if c and d else None
            if n is None or n == last:      # nothing new: a stale colour stream?
                if time.monotonic() - fresh_t > stale_s:
                    what = (f"framesets without {'a colour' if not c else 'a depth'} frame" if n is None
                            else f"colour frame number stuck at {last}")
                    raise SourceError(f"RealSense {self.serial} sent no new colour frame for {stale_s:g} s "
                                      f"({what}): colour stream stale")
                continue
            if last is not None and n < last:       # the counter went back: the camera restarted
                self.stats["restarts"] += 1
                self.events.append(restart_event(self.uri, last, n))
            elif last is not None and n > last + 1:
                self.stats["driver_dropped"] += n - last - 1
            last = n
            fresh_t = time.monotonic()
            try:
                rgb, depth = _colour_to_rgb(rs, c), _depth_to_mm(d, self.depth_scale)
            except SourceError as e:
                yield Frame(str(n), None, None, t, error=str(e))
                continue
            yield Frame(str(n), rgb, depth, t, meta={"device_timestamp_ms": c.get_timestamp()})

    def close(self) -> None:
        if getattr(self, "_started", False):
            self._started = False
            try:
                self.pipeline.stop()
            except RuntimeError:
                pass


class RealSenseRecording(Source):
    """A RealSense recording (``.db3`` from SDK >= 2.58, ``.bag`` from older SDKs), every frame,
    not in real time. Colour and depth are paired by device timestamp (within half a frame). A player that
    sends no frame for ``PLAYER_STALL_S`` seconds without stopping (a hang) raises SourceError."""

    live = False

    def __init__(self, path, queue_size: int = 8):
        rs = self._rs = import_rs()
        self.path = str(path)
        self.uri = self.path
        try:
            self.dev = rs.context().load_device(self.path)
        except RuntimeError as e:
            raise SourceError(f"cannot open RealSense recording {self.path}: {e}") from None
        self.playback = self.dev.as_playback()
        self.playback.set_real_time(False)
        self._profiles = _colour_depth_profiles(rs, self.dev)
        missing = [n for k, n in ((rs.stream.color, "colour"), (rs.stream.depth, "depth"))
                   if k not in self._profiles]
        if missing:
            raise SourceError(f"RealSense recording {self.path} has no {' or '.join(missing)} stream")
        self.depth_scale = read_depth_scale(self.dev, f"RealSense recording {self.path}")   # after: no depth stream, said so
        cp = self._profiles[rs.stream.color][1].as_video_stream_profile()
        dp = self._profiles[rs.stream.depth][1].as_video_stream_profile()
        self._needs_align = not _already_aligned(rs, dp, cp)
        fps = min(p.fps() for _, p in self._profiles.values() if p.fps() > 0) if any(
            p.fps() > 0 for _, p in self._profiles.values()) else 30
        self.slop_ms = 500.0 / fps
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._closing = threading.Event()
        self._running = False
        self.stats = {}
        self._count: Optional[int] = None
        self.count_error: Optional[str] = None
        self._truncated: Optional[dict] = None     # where a recording cut short ends (open_truncated_recording)

    def truncation(self) -> Optional[dict]:
        """Where the recording, cut short, ends (its salvaged copy's facts, known at open); None when intact."""
        return self._truncated

    def frame_count(self) -> Optional[int]:
        """How many frames iterating the recording yields (its colour/depth pairs), counted by playing it
        once more (a second playback device of the file, not in real time) with callbacks that keep only
        each frame's stream and timestamp, paired by the same ``TimePairer`` (no frame converted or aligned;
        its pairs do not depend on how the player's two threads interleave the streams); remembered. None
        when that playback fails; ``count_error`` then says why, and is remembered too (no second pass)."""
        if self._count is None and self.count_error is None:
            try:
                stamps = _played_stamps(self._rs, self.path)
            except RuntimeError as e:
                self.count_error = str(e) or type(e).__name__
                return None
            pairer, n = TimePairer(self.slop_ms), 0
            for colour, t in stamps:          # in the order played, as __iter__ feeds its pairer
                (pairer.add_colour if colour else pairer.add_depth)(t, None)
                n += sum(1 for _ in pairer.pop_pairs())
            pairer.finish()
            self._count = n + sum(1 for _ in pairer.pop_pairs())
        return self._count

    def _callback(self, frame):
        if self._closing.is_set():
            return
        frame.keep()
        while not self._closing.is_set():
            try:
                self._queue.put(frame, timeout=0.1)  # blocks the (non-real-time) player: no drops
                return
            except queue.Full:
                continue

    def _start(self):
        sensors = []
        for s, p in self._profiles.values():
            if s not in sensors:
                sensors.append(s)
        self._sensors = sensors
        for s in sensors:
            s.open([p for s2, p in self._profiles.values() if s2 == s])
        self.playback.pause()  # start every sensor before the first frame is read
        for s in sensors:
            s.start(self._callback)
        # resume() waits (up to 10 s) for the player's thread, which blocks in _callback once the queue is
        # full: resumed from a helper thread, __iter__ drains the queue meanwhile (review 25 #1)
        self._resume_error = None
        self._resumer = threading.Thread(target=self._resume, name="realsense-resume", daemon=True)
        self._resumer.start()
        self._running = True

    def _resume(self):
        try:
            self.playback.resume()
        except RuntimeError as e:
            self._resume_error = e

    def __iter__(self) -> Iterator[Frame]:
        rs = self._rs
        if self._running:
            raise SourceError("a RealSense recording can be iterated once; open it again")
        self._start()
        pairer = TimePairer(self.slop_ms)
        align = rs.align(rs.stream.color) if self._needs_align else None
        composer = _Composer(rs) if align is not None else None
        stopped_polls, delivered, wait_t = 0, 0, time.monotonic()   # wait_t: since when the queue is empty
        while True:
            try:
                f = self._queue.get(timeout=0.1)
            except queue.Empty:
                if self._resume_error is not None:
                    raise SourceError(f"cannot play RealSense recording {self.path}: {self._resume_error}")
                # "stopped" before resume() has returned too: the player counts as stopped once resumed
                if not self._resumer.is_alive() and self.playback.current_status() == rs.playback_status.stopped:
                    stopped_polls += 1
                    if stopped_polls >= 3:
                        break
                elif time.monotonic() - wait_t > PLAYER_STALL_S:    # librealsense #10312: a hung player
                    raise SourceError(f"RealSense recording {self.path}: the player delivered no frame for "
                                      f"{PLAYER_STALL_S:g} s after {delivered} colour / depth frames and did not "
                                      "stop (a playback hang)")
                continue
            stopped_polls, delivered = 0, delivered + 1
            t = f.get_timestamp()
            if f.get_profile().stream_type() == rs.stream.color:
                pairer.add_colour(t, f)
            else:
                pairer.add_depth(t, f)
            yield from self._emit(pairer, align, composer)
            wait_t = time.monotonic()       # the time the consumer spent on the frames does not count
        pairer.finish()
        yield from self._emit(pairer, align, composer)
        self.stats.update(pairer.stats)

    def _emit(self, pairer, align, composer):
        self.events += [gap_event(g, self.uri, 1e-3) for g in pairer.pop_gaps()]    # stamps in ms
        for tc, c, td, d in pairer.pop_pairs():
            n = str(int(c.get_frame_number()))
            try:
                if align is not None:
                    fs = align.process(composer.compose(d, c))
                    c, d = fs.get_color_frame(), fs.get_depth_frame()
                rgb, depth = _colour_to_rgb(self._rs, c), _depth_to_mm(d, self.depth_scale)
            except (SourceError, RuntimeError) as e:
                yield Frame(n, None, None, tc / 1000.0, error=str(e))
                continue
            yield Frame(n, rgb, depth, tc / 1000.0, meta={"depth_frame": int(d.get_frame_number())})

    def close(self) -> None:
        self._closing.set()
        if self._running:
            while True:  # unblock a callback waiting on a full queue
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
            self._resumer.join(timeout=12)   # _callback no longer waits; resume() gives up after 10 s itself
            for s in self._sensors:
                try:
                    s.stop()
                    s.close()
                except RuntimeError:
                    pass
            self._running = False
        tmp = getattr(self, "_cleanup", None)
        if tmp is not None:  # the salvaged copy of a truncated recording
            import shutil
            self.dev = self.playback = None
            shutil.rmtree(tmp, ignore_errors=True)
            self._cleanup = None


def _colour_depth_profiles(rs, dev) -> dict:
    """{rs.stream.color / rs.stream.depth: (sensor, its first stream profile of that kind)} of a device."""
    out = {}
    for s in dev.query_sensors():
        for p in s.get_stream_profiles():
            if p.stream_type() in (rs.stream.depth, rs.stream.color) and p.stream_type() not in out:
                out[p.stream_type()] = (s, p)
    return out


def _played_stamps(rs, path, poll_s: float = 0.01) -> list:
    """[(is colour, device timestamp ms)] of every colour and depth frame a playback of the recording at
    ``path`` delivers (the profiles RealSenseRecording plays), in the order delivered: a second playback
    device, not in real time, whose callbacks copy no pixels. Ends once the player has stopped and no frame
    came for 3 polls; raises RuntimeError when no frame came for ``PLAYER_STALL_S`` seconds while the player
    does not say it stopped (librealsense's non-real-time playback can hang so: its issue #10312)."""
    dev = rs.context().load_device(str(path))
    playback = dev.as_playback()
    playback.set_real_time(False)
    profiles = _colour_depth_profiles(rs, dev)
    got, lock = [], threading.Lock()

    def callback(frame):
        with lock:
            got.append((frame.get_profile().stream_type() == rs.stream.color, frame.get_timestamp()))
    sensors = []
    for s, _ in profiles.values():
        if s not in sensors:
            sensors.append(s)
    for s in sensors:
        s.open([p for s2, p in profiles.values() if s2 == s])
    playback.pause()
    try:
        for s in sensors:
            s.start(callback)
        playback.resume()
        quiet, seen, fresh_t = 0, -1, time.monotonic()
        while quiet < 3:
            time.sleep(poll_s)
            with lock:
                n = len(got)
            stopped = playback.current_status() == rs.playback_status.stopped
            if n != seen:
                fresh_t = time.monotonic()
            elif not stopped and time.monotonic() - fresh_t > PLAYER_STALL_S:
                raise RuntimeError(f"the player delivered no frame for {PLAYER_STALL_S:g} s after {n} colour / depth "
                                   "frames and did not stop (a playback hang)")
            quiet, seen = (quiet + 1 if stopped and n == seen else 0), n
    finally:
        for s in sensors:
            try:
                s.stop()
                s.close()
            except RuntimeError:
                pass
    with lock:
        return list(got)


def open_truncated_recording(path) -> "RealSenseRecording":
    """A RealSense .db3 cut short (the recorder killed): its readable rows are copied into a
    temporary intact database (librealsense needs one) that is played back and deleted on close;
    a ``recording_truncated`` event says where the recording ends."""
    import shutil
    import tempfile
    from pathlib import Path
    from .salvage import copy_readable
    tmp = Path(tempfile.mkdtemp(prefix="edge-ad-salvage-"))
    try:
        end = copy_readable(path, tmp / Path(path).name)
        src = RealSenseRecording(tmp / Path(path).name)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, SourceError):
            raise SourceError(f"cannot salvage the truncated RealSense recording {path}: {e}") from None
        raise
    src.uri = str(path)
    src._truncated = dict(end)
    src.events = [{"event": "recording_truncated", **end}]
    src._cleanup = tmp
    return src


def _already_aligned(rs, dp, cp) -> bool:
    """True when depth already lies in the colour image: same intrinsics, identity extrinsics."""
    try:
        di, ci = dp.get_intrinsics(), cp.get_intrinsics()
        ex = dp.get_extrinsics_to(cp)
    except RuntimeError:
        return False
    same = (di.width, di.height) == (ci.width, ci.height) and all(
        abs(a - b) < 1e-6 for a, b in ((di.fx, ci.fx), (di.fy, ci.fy), (di.ppx, ci.ppx), (di.ppy, ci.ppy)))
    ident = np.allclose(np.asarray(ex.rotation), np.eye(3).ravel(), atol=1e-9) and np.allclose(
        ex.translation, 0, atol=1e-9)
    return bool(same and ident and not any(di.coeffs) and not any(ci.coeffs))


class _Composer:
    """Builds an rs.frameset from a (depth, colour) pair so ``rs.align`` can process it."""

    def __init__(self, rs):
        self._pair = None
        self._q = rs.frame_queue(2)
        self._pb = rs.processing_block(
            lambda f, src: src.frame_ready(src.allocate_composite_frame(list(self._pair))))
        self._pb.start(self._q)

    def compose(self, depth, colour):
        self._pair = (depth, colour)
        self._pb.invoke(depth)
        return self._q.wait_for_frame().as_frameset()
