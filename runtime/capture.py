"""The capture-and-score loop shared by ``edge-ad run`` and the ROS 2 node.

* Recordings, folders and ``synth://`` are read in order, every frame scored.
* Live cameras (``source.live``) are read by a grabber thread into a one-frame slot: the loop
  always scores the newest frame and counts the ones it never saw (``skipped``), so a slow model
  never builds a queue. A camera that stops is reopened with exponential backoff; the outage is
  logged.
* A frame that cannot be read or scored (``Frame.error``, ``FrameError``) is logged with its reason
  and the run goes on.
* An ``on_result`` / ``on_error`` hook that raises (``--save-anomalies`` on a full disk, a viewer or
  publisher that went away) never ends the run: a ``hook_failed`` event names the hook and the
  error, the frame's line stays written and the hook is called again for later frames (a disk
  that was full may be freed; one odd frame does not stop the pictures of the others). A hook failing frame after frame writes one event,
  not one per frame (another one only after it worked again); the summary counts the failures
  per hook (``hook_failures``). A hook with ``only_flagged = True`` (``--save-anomalies``) is called
  for flagged frames only, so the unflagged frames between two failing flagged ones do not end its streak.
* Sensor faults (dead depth, black / saturated / noise colour, a stuck camera: only for a stream,
  ``Source.stream``, not a folder of files; ``sensor_faults.py``,
  limits in the model's preprocessing spec) and frames over ``max_pixels`` are reported as
  ``error`` lines naming the fault, never scored. The loop checks each frame once and scores it
  with ``check_faults=False`` (``Scorer.score`` would check again) or through ``score_uint8``.
* Scoring runs on a watchdog thread (``watchdog.py``): SIGINT/SIGTERM are handled at once; the
  current frame gets ``stop_grace`` seconds to finish, then it is abandoned (the summary says so
  and the run ends non-zero). ``frame_timeout``: a frame scoring longer ends the run as fatal.
* The summary is written on every path and says how the run ended (``stopped``: the STOP_*
  constants: end, max_frames, stopped (the stop event without a signal), signal:NAME, interrupted,
  source_failed, frame_timeout, fatal, with ``fatal_error`` naming the reason); ``exit_status``
  turns it into the process exit status (``edge-ad run``, the ROS 2 node). Results are appended,
  never overwritten; a restart continues the frame index (``results.py``); latency statistics use
  bounded memory (``latency_stats.py``).
  Every JSON line is flushed when written, so a hard kill loses at most the line being written.
* Alarm-rate watch (``alarm_watch.py``): over the last ``alarm_window`` scored frames, the share flagged
  is compared with the rate the model's threshold was calibrated at (exact one-sided binomial test);
  one ``alarm_rate_high`` event when it is implausibly high (a run of real anomalies, or a scene that
  changed), one ``alarm_rate_normal`` when plausible again; the summary's ``alarm_watch`` records it.
  It only reads each frame's flag: scores, threshold and ``anomalous`` are as without it. Off (said
  once in the log) for a threshold that is not the model's calibrated one or has no known rate, and by
  default (``alarm_window`` None: auto) for a source that labels its frames (``Source.labelled``:
  ``synth://``, a labelled folder), whose recall and false-alarm rate the summary's ``truth`` measures;
  an explicit ``alarm_window`` switches it on there too.
* The model is named (``Scorer.identity``: path, manifest sha256, configuration, config_sha256) in
  the ``start`` event of a new results file, the ``resumed`` event of a restart and the summary; a restart onto a
  file written by another model is refused (``results.ResultsFileError``): two models' scores are
  never mixed in one file.

The source is a ``sources.Source`` (``live``, ``events``, ``stats``, ``uri``, ``stream`` have
defaults there) or any iterable of Frames (a list, a generator: read through ``FrameSource``). The
scorer is a ``ScorerLike`` (``runtime.Scorer`` is one): ``score(rgb, depth, z0=None, seed=None,
check_faults=True, **score_kwargs)``, or ``score(rgb, depth, z0=None, seed=None)`` of the older
contract (no ``check_faults``: decided once per run, ``takes_check_faults``; the loop checks the
faults either way), returning a result with ``.score`` and
``.timings`` (``Scorer``'s ``preprocess_s`` / ``search_s`` seconds, or ``preprocess_ms`` /
``search_ms``; ``timings_ms`` reads either). A scorer that also has ``score_uint8(u8, ...)``
(``runtime.Scorer``) gets the model-resolution frame that the sensor-fault checks already made, so a
frame is resized once (at 1280 x 720 the resize costs ~8 ms).
"""
from __future__ import annotations

import contextlib
import math
import os
import threading
import time
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Protocol

import numpy as np

from .alarm_watch import DEFAULT_ALPHA, DEFAULT_WINDOW, check_watch_settings, watch_for
from .config import frame_seed
from .latency_stats import RollingStats
from .preprocess import DEFAULT_MAX_PIXELS, FrameError, check_pixels, frame_to_uint8_pair
from .results import ResultWriter
from .sensor_faults import SensorFaultDetector, SensorFaultError
from .sources.base import Frame, Source, SourceError, is_stream
from .sources.pairing import gap_text
from .stop_signals import stop_signals
from .truth import TruthTally
from .watchdog import Abandoned, FrameTimeout, ScoreWorker

__all__ = ["run_capture", "ScorerLike", "ResultWriter", "LatestSlot", "RunStats", "timings_ms",
           "best_reconstruction", "FrameSource", "LABELLED_WATCH_OFF", "takes_check_faults", "scorer_spec",
           "scorer_threshold", "scorer_threshold_rate", "valid_threshold",
           "check_frame", "frame_record", "latency_record", "frame_truth", "reopen_with_backoff", "exit_status",
           "stop_reason", "STOP_END", "STOP_MAX_FRAMES", "STOP_REQUESTED", "STOP_SIGNAL", "STOP_INTERRUPTED",
           "STOP_SOURCE_FAILED", "STOP_FRAME_TIMEOUT", "STOP_FATAL", "FAILED_STOPS",
           "EXIT_OK", "EXIT_FATAL", "EXIT_BAD_FRAMES", "EXIT_NO_FRAMES"]

Log = Callable[[str], None]

# the alarm-rate watch's reason to be off by default for a source that labels its frames
LABELLED_WATCH_OFF = "the source labels its frames: recall and false-alarm rate are measured directly"


class ScorerLike(Protocol):
    """What run_capture needs of a scorer (``runtime.Scorer`` is one; test doubles implement ``score``).

    ``score``: (H, W, 3) uint8 RGB and (H, W) depth -> a result with ``.score`` (float) and
    ``.timings``; optionally ``.error_map``, ``.reconstruction``, ``.seed_losses``,
    ``.latent_distance``, ``.pixel_distance``, ``.shift``, ``.silhouette_version`` / ``.silhouette_scores``
    (``frame_record`` writes those it has). The loop checks sensor faults itself and calls it with
    ``check_faults=False`` (without it when ``score`` has no such parameter, the older contract:
    ``takes_check_faults``); ``score_kwargs`` (e.g. ``keep_reconstructions=True``) are passed on. Read where the scorer has them (``runtime.Scorer``
    has all): ``score_uint8(u8, z0=, seed=, **score_kwargs)`` (the one-resize path), ``preprocess``
    (its PreprocessSpec: the sensor-fault limits), ``threshold`` / ``threshold_rate`` (the calibrated
    threshold and its false-alarm rate), ``identity`` and ``earlier_config_sha256s`` (which model
    wrote a results file), ``mode`` (the summary's ``search``)."""

    def score(self, rgb: np.ndarray, depth: np.ndarray, z0: Optional[np.ndarray] = None,
              seed: Optional[int] = None, check_faults: bool = True, **score_kwargs): ...

# the summary's ``stopped``
STOP_END = "end"                      # the source ended
STOP_MAX_FRAMES = "max_frames"        # ``max_frames`` frames were scored
STOP_REQUESTED = "stopped"            # the stop event, set without a signal (--display q/Esc, a caller, the ROS node)
STOP_SIGNAL = "signal:"               # + the signal's name: "signal:SIGINT", "signal:SIGTERM"
STOP_INTERRUPTED = "interrupted"      # a second signal while a frame was scoring
STOP_SOURCE_FAILED = "source_failed"  # the source failed (and could not be reopened)
STOP_FRAME_TIMEOUT = "frame_timeout"  # a frame scored longer than ``frame_timeout``
STOP_FATAL = "fatal"                  # an exception in the scorer or the loop (``fatal_error`` names it)
FAILED_STOPS = (STOP_SOURCE_FAILED, STOP_FRAME_TIMEOUT, STOP_FATAL)   # the run failed

# the exit status of a run (``edge-ad run``; 2 is a bad command line)
EXIT_OK, EXIT_FATAL, EXIT_BAD_FRAMES, EXIT_NO_FRAMES = 0, 1, 3, 4


class LatestSlot:
    """A one-frame mailbox: ``put`` replaces an untaken item and counts it as skipped."""

    def __init__(self):
        self._cond = threading.Condition()
        self._item = None
        self.skipped = 0
        self.closed = False
        self.error: Optional[BaseException] = None

    def put(self, item) -> None:
        with self._cond:
            if self._item is not None:
                self.skipped += 1
            self._item = item
            self._cond.notify_all()

    def fail(self, error: Optional[BaseException]) -> None:
        with self._cond:
            self.error, self.closed = error, True
            self._cond.notify_all()

    def take(self, timeout: float):
        """The newest item, or None after ``timeout`` s / when closed (check ``closed``/``error``)."""
        with self._cond:
            self._cond.wait_for(lambda: self._item is not None or self.closed, timeout)
            item, self._item = self._item, None
            return item


class _Grabber(threading.Thread):
    """Reads a live source as fast as it delivers into a LatestSlot."""

    def __init__(self, source: Source, slot: LatestSlot):
        super().__init__(daemon=True, name="edge-ad-grabber")
        self.source, self.slot = source, slot
        self.halt = threading.Event()

    def run(self):
        try:
            for fr in self.source:
                self.slot.put((fr, time.perf_counter()))
                if self.halt.is_set():
                    break
            self.slot.fail(None)
        except BaseException as e:  # handed to the loop, which decides (reopen or stop)
            self.slot.fail(e)


@dataclass
class RunStats:
    """Running totals, turned into the summary at the end."""

    scored: int = 0
    errors: int = 0
    anomalies: int = 0
    skipped: int = 0
    outages: int = 0
    outage_s: float = 0.0
    total_ms: RollingStats = field(default_factory=RollingStats)    # bounded: a fixed reservoir
    search_ms: RollingStats = field(default_factory=RollingStats)
    faults: dict = field(default_factory=dict)    # sensor fault name -> frames
    stopped: str = STOP_END
    fatal_error: Optional[str] = None
    abandoned_frame: Optional[str] = None

    def add_scored(self, total_ms: float, search_ms: Optional[float], anomalous: Optional[bool]) -> None:
        self.scored += 1
        self.anomalies += int(bool(anomalous))
        self.total_ms.add(total_ms)
        if search_ms is not None:
            self.search_ms.add(float(search_ms))

    def add_error(self, fault: Optional[str] = None) -> None:
        """A skipped frame (``fault``: the sensor fault's name, when it was one)."""
        self.errors += 1
        if fault is not None:
            self.faults[fault] = self.faults.get(fault, 0) + 1


def timings_ms(res) -> dict:
    """{"preprocess_ms", "search_ms"} and, for a model with a pixel memory, "pixel_ms" (part of the search)
    from a ScoreResult's timings (``*_ms``, or ``*_s`` seconds)."""
    tm = getattr(res, "timings", None) or {}
    out = {}
    for k in ("preprocess", "search", "pixel"):
        if f"{k}_ms" in tm:
            out[f"{k}_ms"] = float(tm[f"{k}_ms"])
        elif f"{k}_s" in tm:
            out[f"{k}_ms"] = float(tm[f"{k}_s"]) * 1000.0
    return out


def best_reconstruction(res) -> Optional[np.ndarray]:
    """The best seed's reconstruction (C, H, W) of a ScoreResult, or None when it has none."""
    rec = getattr(res, "reconstruction", None)
    return None if rec is None else np.asarray(rec)


def scorer_spec(scorer):
    """The scorer's PreprocessSpec (``.preprocess``), or the default spec for a scorer without one."""
    from .preprocess import PreprocessSpec
    return getattr(scorer, "preprocess", None) or PreprocessSpec()


def model_identity(scorer) -> Optional[dict]:
    """The scorer's ``identity`` (``Scorer.identity``: path, manifest_sha256, configuration,
    config_sha256), or None for a scorer without one (a test double)."""
    ident = getattr(scorer, "identity", None)
    return dict(ident) if isinstance(ident, dict) else None


def valid_threshold(value, what: str = "threshold") -> float:
    """``value`` as the anomaly threshold of a run, or ValueError naming ``what``: a finite number
    > 0, as a manifest's (scores are >= 0: a threshold <= 0 flags every frame, NaN none)."""
    try:
        thr = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a finite number > 0, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(thr) or thr <= 0:
        raise ValueError(f"{what} must be a finite number > 0 (scores are >= 0), got {value!r}")
    return thr


def scorer_threshold(scorer) -> Optional[float]:
    """The model's calibrated threshold (``Scorer.threshold``, from the manifest), or None."""
    thr = getattr(scorer, "threshold", None)
    return None if thr is None else float(thr)


def scorer_threshold_rate(scorer) -> Optional[float]:
    """The false-alarm rate the model's threshold was calibrated at (``Scorer.threshold_rate``), or None."""
    rate = getattr(scorer, "threshold_rate", None)
    return None if rate is None else float(rate)


def _pct(v: RollingStats, q: float) -> Optional[float]:
    p = v.percentile(q)
    return None if p is None else round(p, 3)


def hook_name(hook) -> str:
    """How events name a hook: its ``name`` attribute, else its function or class name."""
    name = getattr(hook, "name", None)
    if isinstance(name, str) and name:
        return name
    return getattr(hook, "__name__", None) or type(hook).__name__


class _Hooks:
    """The ``on_result`` / ``on_error`` hooks of a run; one that raises is reported and called
    again next frame. ``failures`` (hook name -> frames on which it raised) may be shared. A hook whose
    ``only_flagged`` attribute is true is not called for a record that is not ``anomalous`` (it would do
    nothing there, and a call that did nothing must not end a failing streak: one event per streak)."""

    def __init__(self, hooks, failures: dict):
        if hooks is None:
            hooks = []
        elif callable(hooks):
            hooks = [hooks]
        self.hooks = [(h, hook_name(h)) for h in hooks]
        self.failures = failures
        self._failing: set = set()    # hooks whose last call raised (no new event until one works)

    def call(self, args: tuple, emit, log: Log) -> None:
        """Call every hook with ``args`` (``args[0]``: the frame's record)."""
        rec = args[0]
        for hook, name in self.hooks:
            if getattr(hook, "only_flagged", False) and not rec.get("anomalous"):
                continue
            try:
                hook(*args)
            except Exception as e:   # a picture, a viewer, a publisher: never worth the run
                self.failures[name] = self.failures.get(name, 0) + 1
                if name in self._failing:
                    continue
                self._failing.add(name)
                err = f"{type(e).__name__}: {e}"
                emit({"type": "event", "event": "hook_failed", "time": time.time(), "hook": name,
                      "frame": rec.get("frame"), "index": rec.get("index"), "error": err})
                log(f"frame {rec.get('frame')}: {name} failed: {err} (the run goes on; {name} is tried "
                    "again on the next frame)")
            else:
                self._failing.discard(name)


# --------------------------------------------------------------------------- how a run ends

def stop_reason(stopped: str, stop_requested: bool, signal_name: Optional[str]) -> str:
    """The summary's ``stopped`` once the loop has left it: a stop request names the end (the
    signal's name, else STOP_REQUESTED) unless the run had already failed or been interrupted."""
    if not stop_requested or stopped in FAILED_STOPS + (STOP_INTERRUPTED,):
        return stopped
    return STOP_SIGNAL + signal_name if signal_name else STOP_REQUESTED


def exit_status(summary: dict) -> int:
    """The exit status of a run ending with ``summary``: EXIT_FATAL when it failed (``stopped`` in
    FAILED_STOPS) or abandoned a frame still scoring, EXIT_OK after a signal, EXIT_NO_FRAMES when no
    frame was scored, EXIT_BAD_FRAMES when some frames were bad (error lines) or lost (a recording cut
    short: ``recording_truncated``; a stream that stalled mid-recording: ``stream_gaps``; result lines not
    written for lack of space: ``results_lost``), else EXIT_OK."""
    stopped = summary["stopped"]
    if summary.get("abandoned_frame") is not None or stopped in FAILED_STOPS:
        return EXIT_FATAL
    if stopped.startswith(STOP_SIGNAL):
        return EXIT_OK
    if not summary.get("frames_scored"):
        return EXIT_NO_FRAMES
    lost = summary.get("recording_truncated") or summary.get("stream_gaps") or summary.get("results_lost")
    return EXIT_BAD_FRAMES if summary.get("frame_errors") or lost else EXIT_OK


# --------------------------------------------------------------------------- one frame

def check_frame(fr: Frame, detector: Optional[SensorFaultDetector], max_pixels: Optional[int],
                want_u8: bool) -> tuple:
    """Check a readable frame before it is scored: ``(u8, resize_ms)``. ``u8``: the frame at model
    resolution, (R, R, 4) uint8 (``frame_to_uint8``), made once for the sensor-fault checks and the
    scorer when there is a ``detector`` and ``want_u8`` (else None); ``resize_ms``: what making it
    cost (0.0 without it). Raises FrameError / ValueError (over ``max_pixels``, sizes that differ,
    ...) or SensorFaultError (the detector's faults; ``.fault`` names the first)."""
    if max_pixels is not None:
        for what, a in (("RGB", fr.rgb), ("depth", fr.depth)):
            if a is not None and np.ndim(a) >= 2:
                check_pixels(np.shape(a)[1], np.shape(a)[0], max_pixels, what)
    if detector is None:
        return None, 0.0
    t0 = time.perf_counter()
    # the model's frame and the checks' frame as captured from one depth conversion (depth_fill / close: two arrays)
    u8, captured = frame_to_uint8_pair(fr.rgb, fr.depth, detector.spec) if want_u8 else (None, None)
    resize_ms = (time.perf_counter() - t0) * 1000.0 if u8 is not None else 0.0
    faults = detector.check(fr.rgb, fr.depth, captured=captured)
    if faults:
        raise SensorFaultError(faults)
    return u8, resize_ms


def latency_record(capture_ms: float, timings: dict, resize_ms: float, total_ms: float) -> dict:
    """A frame line's ``latency_ms``: capture, preprocess (the scorer's, plus the loop's resize),
    search, total, and ``pixel`` (the pixel memory's distance, part of search) only when the result
    timed one; ``timings``: ``timings_ms`` of the result."""
    out = {"capture": round(capture_ms, 3),
           "preprocess": round(float(timings.get("preprocess_ms", 0.0)) + resize_ms, 3),
           "search": round(float(timings.get("search_ms", 0.0)), 3),
           "total": round(total_ms, 3)}
    if "pixel_ms" in timings:
        out["pixel"] = round(float(timings["pixel_ms"]), 3)
    return out


def frame_truth(fr: Frame) -> Optional[dict]:
    """``{"anomalous", "kind"}``: the ground truth a frame carries (synth://, a labelled folder), or None."""
    if "anomalous" not in fr.meta:
        return None
    return {"anomalous": bool(fr.meta["anomalous"]), "kind": fr.meta.get("kind")}


def frame_record(base: dict, res, score: float, threshold: Optional[float], latency_ms: dict,
                 truth: Optional[dict] = None) -> dict:
    """A scored frame's results line. ``base``: {"frame", "index", "timestamp"}; ``anomalous``:
    score > threshold (None without a threshold); ``latency_ms``: ``latency_record``; from the
    result when it has them: ``seed_losses`` (per seed), ``latent_distance`` (d(E(x), bank)),
    ``pixel_distance`` (d_pix(x), the pixel memory), ``shift`` (the shift-min's winning (dy, dx)),
    ``silhouette_version`` and ``silhouette_scores`` (the silhouette lever's winning version, "id" / "ero" / "dil", and
    {version: its own score}, runtime/silhouette.py); ``truth``: ``frame_truth``."""
    rec = {"type": "frame", **base, "score": score, "threshold": threshold,
           "anomalous": None if threshold is None else bool(score > threshold), "latency_ms": latency_ms}
    sl = getattr(res, "seed_losses", None)
    if sl is not None:  # per-seed final losses (issue 3: results carry frame, score, seed_losses)
        rec["seed_losses"] = [float(v) for v in np.asarray(sl).ravel()]
    ld = getattr(res, "latent_distance", None)
    if ld is not None:  # the latent-memory distance, when the scoring configuration uses it
        rec["latent_distance"] = float(ld)
    pd = getattr(res, "pixel_distance", None)
    if pd is not None:  # the pixel-memory distance, when the scoring configuration uses it
        rec["pixel_distance"] = float(pd)
    sh = getattr(res, "shift", None)
    if sh is not None:  # when the configuration has score_shift_radius > 0
        rec["shift"] = [int(v) for v in sh]
    won = getattr(res, "silhouette_version", None)
    if won is not None:  # the silhouette lever (silhouette_versions_weight > 0): the winner, each version's own score
        rec["silhouette_version"] = str(won)
        rec["silhouette_scores"] = {str(v): float(s) for v, s in (getattr(res, "silhouette_scores", None) or {}).items()}
    if truth is not None:
        rec["truth"] = truth
    return rec


def takes_check_faults(score) -> bool:
    """Whether a scorer's ``score`` method takes ``check_faults`` (by name or ``**kwargs``);
    ``runtime.Scorer``'s does. A signature that cannot be read: the ScorerLike contract, True."""
    import inspect
    try:
        params = inspect.signature(score).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.name == "check_faults" or p.kind is p.VAR_KEYWORD for p in params)


class FrameSource(Source):
    """Any iterable of Frames (a list, a generator, an older source class) as a Source: its ``uri``,
    ``stream``, ``live``, ``labelled``, ``stats``, ``events`` and ``warnings`` where it has them, else
    Source's defaults; ``close()`` closes it when it can be closed."""

    def __init__(self, frames):
        if not hasattr(frames, "__iter__"):
            raise TypeError(f"run_capture reads a runtime.sources.Source or an iterable of Frames, "
                            f"got {type(frames).__name__}")
        self.frames = frames
        for name in ("uri", "stream", "live", "labelled", "stats"):
            if hasattr(frames, name):
                setattr(self, name, getattr(frames, name))
        for name in ("events", "warnings"):
            value = getattr(frames, name, None)
            if isinstance(value, list):   # the same list: the loop pops the events it writes
                setattr(self, name, value)

    def __iter__(self) -> Iterator[Frame]:
        return iter(self.frames)

    def close(self) -> None:
        close = getattr(self.frames, "close", None)
        if callable(close):
            close()


@dataclass
class _Scoring:
    """How every frame of a run is scored: on the watchdog ``worker``, with frame i's latents from
    ``frame_seed(seed, i)`` (or the fixed ``z0``), ``score_kwargs`` added; through ``score_uint8``
    when the scorer has it (the loop's resize reused), else ``score`` without a second fault check."""

    scorer: ScorerLike
    worker: ScoreWorker
    stop: threading.Event
    threshold: Optional[float]
    detector: Optional[SensorFaultDetector]
    max_pixels: Optional[int]
    seed: int = 0
    z0: Optional[np.ndarray] = None
    score_kwargs: dict = field(default_factory=dict)

    def __post_init__(self):
        self.score_uint8 = getattr(self.scorer, "score_uint8", None)   # the one-resize path (runtime.Scorer)
        if getattr(self.scorer, "needs_raw_frames", False):   # the silhouette lever: its versions need the raw frame
            self.score_uint8 = None
        # decided once: a scorer written to the older contract, score(rgb, depth, z0=None, seed=None),
        # has no check_faults keyword and never checks faults itself; the loop checks them either way
        self.faults_kw = {"check_faults": False} if takes_check_faults(self.scorer.score) else {}

    def score(self, fr: Frame, u8: Optional[np.ndarray], i: int) -> tuple:
        """(result, score) of frame ``i``; FrameError for a score that is not finite; FrameTimeout /
        Abandoned / KeyboardInterrupt when the call had to be left running."""
        kw = {"z0": self.z0} if self.z0 is not None else {"seed": frame_seed(self.seed, i)}
        kw.update(self.score_kwargs)
        if u8 is not None:
            res = self.worker.call(lambda: self.score_uint8(u8, **kw), self.stop)
        else:   # faults checked by the loop (or switched off): never twice
            res = self.worker.call(lambda: self.scorer.score(fr.rgb, fr.depth, **self.faults_kw, **kw),
                                   self.stop)
        s = float(res.score)
        if not math.isfinite(s):
            raise FrameError(f"score is {s}")
        return res, s


@dataclass
class _Run:
    """What a run carries from frame to frame: its source (a new one after a reopen), the next results
    index, the totals and the truth tally."""

    source: Source
    index: int
    stop: threading.Event
    max_frames: Optional[int]
    stats: RunStats = field(default_factory=RunStats)
    truth: TruthTally = field(default_factory=TruthTally)   # score vs the source's ground truth

    def next_index(self) -> int:
        i, self.index = self.index, self.index + 1
        return i

    def done(self) -> bool:
        """Stop requested, or ``max_frames`` scored (then ``stopped`` says so)."""
        if self.stop.is_set():
            return True
        if self.max_frames is not None and self.stats.scored >= self.max_frames:
            self.stats.stopped = STOP_MAX_FRAMES
            return True
        return False


class _Report:
    """Where a run's lines go: the results file (``emit``), the log and the hooks."""

    def __init__(self, writer: ResultWriter, log: Log, on_result, on_error, on_outage, on_alarm_rate):
        self.writer, self.log = writer, log
        self.truncated: Optional[dict] = None   # a recording_truncated event's facts (the summary's recording_truncated)
        self.gaps = {"gaps": 0, "frames": 0}    # stream_gap events: frames lost to a stalled stream (summary's stream_gaps)
        self.hook_failures: dict = {}   # hook name -> frames on which it raised (the summary's hook_failures)
        # the sensor fault of the frames skipped in a row so far (fault, frames, first and last frame's base):
        # said in the log once when it starts and once, with the count, when it ends (audit 32 #2: a lens cap
        # left on wrote a console line per frame, -q too); the results file keeps an error line per frame
        self.fault_streak: Optional[dict] = None
        self.results, self.errors, self.outages, self.alarms = (
            _Hooks(h, self.hook_failures) for h in (on_result, on_error, on_outage, on_alarm_rate))

    def emit(self, rec: dict) -> None:
        self.writer.write(rec)
        while self.writer.space_notes:   # results paused for lack of space, or written again: said on the console
            note = self.writer.space_notes.pop(0)
            self.log(f"results written again to {self.writer.path}: {note['lines']} line(s) lost while there was no "
                     f"space ({note['error']}; a results_lost event says it)" if "until" in note else
                     f"cannot write results to {self.writer.path}: {note['error']}: scoring goes on, result lines "
                     "are dropped (counted) until there is space again")
        while self.writer.pruned:        # a rotation deleted old results (rotate_keep): said on the console too
            gone = self.writer.pruned.pop(0)
            self.log(f"deleted {len(gone)} old results file(s) to keep the newest {self.writer.rotate_keep} "
                     f"rotated ones: {', '.join(gone)}")

    def drain(self, source: Source) -> None:
        """Write the events a source queued (``source.events``: dicts, e.g. a truncated recording)."""
        events = source.events
        while events:
            ev = events.pop(0)
            self.emit({"type": "event", "time": time.time(), **ev})
            if ev.get("event") == "recording_truncated":     # frames may be lost: said on the console too
                self.truncated = {k: v for k, v in ev.items() if k != "event"}
                self.log(f"recording {ev.get('file')} is cut short ({ev.get('reason')}): read up to its message "
                         f"{ev.get('messages')}, frames after it are lost")
            elif ev.get("event") == "stream_gap":              # one stream stalled: the other's frames lost
                self.gaps["gaps"] += 1
                self.gaps["frames"] += int(ev.get("frames") or 0)
                self.log(gap_text(ev))
            elif ev.get("event") == "camera_restart":          # a live camera's frame counter went back
                self.log(ev.get("message", "camera restarted"))

    def frame_error(self, base: dict, msg: str, fr: Frame, fault: Optional[str] = None) -> None:
        """An error line for a frame that is skipped (``fault``: a sensor fault's name)."""
        rec = {"type": "error", **base, "error": msg}
        if fault is not None:
            rec["fault"] = fault
        self.emit(rec)
        streak = self.fault_streak
        if fault is not None and streak is not None and streak["fault"] == fault:
            streak["frames"] += 1                   # counted, not said again
            streak["last"] = base
        else:
            self.end_fault_streak()
            if fault is not None:
                self.fault_streak = {"fault": fault, "frames": 1, "first": base, "last": base}
            self.log(f"frame {base['frame']}: skipped: {msg}" + (
                f" (further {fault} frames in a row are counted, said when it ends)" if fault is not None else ""))
        self.errors.call((rec, fr), self.emit, self.log)

    def end_fault_streak(self) -> None:
        """The sensor fault repeating until now has ended (a frame without it, or the run's end): one log line
        with how many frames in a row it skipped, when more than the one its first line said."""
        streak, self.fault_streak = self.fault_streak, None
        if streak is not None and streak["frames"] > 1:
            first, last = streak["first"], streak["last"]
            self.log(f"{streak['fault']} ended: {streak['frames']} frames in a row skipped, frames "
                     f"{first['frame']} .. {last['frame']} ({last['timestamp'] - first['timestamp']:.2f} s; an error "
                     "line each in the results)")

    def not_scored(self, base: dict, fr: Frame, why: str) -> None:
        """The error line of the frame a run ends on (still scoring, abandoned): ``fatal``."""
        self.end_fault_streak()
        rec = {"type": "error", **base, "error": f"not scored: {why}", "fatal": True}
        self.emit(rec)
        self.errors.call((rec, fr), self.emit, self.log)   # the consumer hears this frame was not scored

    def result(self, rec: dict, fr: Frame, res) -> None:
        self.end_fault_streak()
        self.emit(rec)
        self.results.call((rec, fr, res), self.emit, self.log)

    def outage(self, event: str, err: BaseException) -> None:
        """A ``source_lost`` / ``source_failed`` event line, then the outage hooks."""
        rec = {"type": "event", "event": event, "time": time.time(), "error": str(err)}
        self.emit(rec)
        self.outages.call((rec,), self.emit, self.log)

    def alarm_rate(self, change: dict) -> None:
        """An alarm-rate watch event (``AlarmRateWatch.add``'s fields), then the alarm hooks."""
        event = {"type": "event", "event": change.pop("event"), "time": time.time(), **change}
        self.emit(event)
        self.log(f"{event['event']}: {event['flagged']} of the last {event['frames']} scored frames flagged, "
                 f"expected rate {event['expected_rate']:g} (p = {event['p_value']:.2g}): {event['hint']}")
        self.alarms.call((event,), self.emit, self.log)


def _skip(run: _Run, report: _Report, base: dict, fr: Frame, msg: str, fault: Optional[str] = None) -> None:
    run.stats.add_error(fault)
    report.frame_error(base, msg, fr, fault)


def _score_frame(run: _Run, how: _Scoring, report: _Report, watch, fr: Frame, ready_at: float,
                 capture_ms: float) -> None:
    """Check, score and report one frame: a frame line (then the alarm-rate watch), or an error line."""
    i = run.next_index()
    base = {"frame": fr.id, "index": i, "timestamp": round(float(fr.timestamp), 6)}
    if fr.error is not None:
        return _skip(run, report, base, fr, fr.error)
    try:
        u8, resize_ms = check_frame(fr, how.detector, how.max_pixels, how.score_uint8 is not None)
    except SensorFaultError as e:
        return _skip(run, report, base, fr, str(e), e.fault)
    except (FrameError, ValueError) as e:
        return _skip(run, report, base, fr, str(e))
    try:
        res, score = how.score(fr, u8, i)
    except (FrameError, ValueError) as e:   # an odd frame (the scorer's input checks): skip it
        return _skip(run, report, base, fr, str(e))
    except (FrameTimeout, Abandoned, KeyboardInterrupt) as e:   # the call may still be running: the run ends
        run.stats.errors += 1
        run.stats.abandoned_frame = str(fr.id)
        report.not_scored(base, fr, "interrupted (second signal)" if isinstance(e, KeyboardInterrupt) else str(e))
        raise
    total_ms = (time.perf_counter() - ready_at) * 1000.0 + capture_ms
    tm = timings_ms(res)
    rec = frame_record(base, res, score, how.threshold, latency_record(capture_ms, tm, resize_ms, total_ms),
                       frame_truth(fr))
    run.stats.add_scored(total_ms, tm.get("search_ms"), rec["anomalous"])
    if "truth" in rec:
        run.truth.add(score, rec["truth"]["anomalous"], rec["anomalous"])
    report.result(rec, fr, res)
    change = watch.add(rec["anomalous"], i) if watch is not None else None
    if change is not None:   # the share of flagged frames became implausible, or plausible again
        report.alarm_rate(change)


# --------------------------------------------------------------------------- frames in, policies

def _recorded_frames(run: _Run, report: _Report) -> Iterator[tuple]:
    """(frame, ready_at, capture_ms) of a recording, folder or synth://: every frame, in order;
    ``capture_ms``: how long reading it took."""
    it = iter(run.source)
    while True:
        t0 = time.perf_counter()
        try:
            fr = next(it)
        except StopIteration:
            return
        finally:
            report.drain(run.source)
        t1 = time.perf_counter()
        yield fr, t1, (t1 - t0) * 1000.0
        if run.done():
            return


def _live_frames(run: _Run, report: _Report, reopen: Optional[Callable[[], Source]],
                 backoff: tuple) -> Iterator[tuple]:
    """(frame, ready_at, capture_ms) of a live source, newest first: a grabber thread reads it into a
    one-frame slot, frames the loop never took count as ``skipped``; ``capture_ms``: how long the
    frame waited for the scorer. A source that stops with a SourceError is reopened
    (``reopen_with_backoff``) when there is a ``reopen``, else the error ends the run."""
    while not run.done():
        slot = LatestSlot()
        grabber = _Grabber(run.source, slot)
        grabber.start()
        try:
            while not run.done():
                item = slot.take(timeout=0.2)
                if item is None:
                    if slot.closed:
                        break
                    continue
                fr, t_cap = item
                t_take = time.perf_counter()
                yield fr, t_take, (t_take - t_cap) * 1000.0
                report.drain(run.source)
        finally:
            grabber.halt.set()
            run.stats.skipped += slot.skipped
        if run.done():
            return
        err = slot.error
        if err is None:
            run.stats.stopped = STOP_END
            return
        if not isinstance(err, SourceError) or reopen is None:
            raise err
        if not reopen_with_backoff(run, err, reopen, backoff, report):
            return
        grabber.join(timeout=1.0)


def reopen_with_backoff(run: _Run, err: BaseException, reopen: Callable[[], Source], backoff: tuple,
                        report: _Report) -> bool:
    """A live source stopped with ``err``: a ``source_lost`` event, then ``reopen()`` after
    ``backoff[0]`` s, the wait doubling up to ``backoff[1]`` s, until a source opens (a
    ``source_reopened`` event, it becomes ``run.source``: True) or the run is asked to stop (False).
    The outage is counted in ``run.stats``."""
    st = run.stats
    st.outages += 1
    t_lost = time.perf_counter()
    report.outage("source_lost", err)
    report.log(f"source lost: {err}; reopening")
    _close_quietly(run.source)
    delay = backoff[0]
    while not run.stop.is_set():
        if run.stop.wait(delay):
            break
        try:
            run.source = reopen()
        except SourceError as e:
            report.log(f"reopen failed: {e}; next try in {min(delay * 2, backoff[1]):.1f} s")
            delay = min(delay * 2, backoff[1])
            continue
        out_s = time.perf_counter() - t_lost
        st.outage_s += out_s
        report.emit({"type": "event", "event": "source_reopened", "time": time.time(),
                     "outage_s": round(out_s, 3)})
        report.log(f"source reopened after {out_s:.1f} s")
        return True
    st.outage_s += time.perf_counter() - t_lost
    return False


def _record_end(st: RunStats, e: BaseException, report: _Report) -> None:
    """Note in ``st`` how the exception ``e`` ended the loop (and say so in the log / results)."""
    if isinstance(e, SourceError):
        st.stopped, st.fatal_error = STOP_SOURCE_FAILED, str(e)
        report.outage("source_failed", e)
        report.log(f"source failed: {e}")
    elif isinstance(e, KeyboardInterrupt):
        st.stopped = STOP_INTERRUPTED
        if st.abandoned_frame is not None:   # the second signal came while a frame was scoring: it is left running
            st.fatal_error = f"frame {st.abandoned_frame} abandoned: interrupted (second signal)"
    elif isinstance(e, Abandoned):   # a stop request and a frame that did not finish in time
        st.fatal_error = f"frame {st.abandoned_frame} abandoned: {e}"
        report.log(st.fatal_error)
    elif isinstance(e, FrameTimeout):
        st.stopped, st.fatal_error = STOP_FRAME_TIMEOUT, f"frame {st.abandoned_frame}: {e}"
        report.log(f"fatal: {st.fatal_error}")
    else:   # MemoryError, a backend failure, a bug in the loop
        st.stopped, st.fatal_error = STOP_FATAL, f"{type(e).__name__}: {e}"
        report.log(f"fatal: {st.fatal_error}\n{traceback.format_exc()}")


def _close_quietly(source) -> None:
    try:
        source.close()
    except Exception:
        pass


# --------------------------------------------------------------------------- the loop


def run_capture(source: Source, scorer: ScorerLike, *, threshold: Optional[float] = None,
                out: Optional[os.PathLike] = None, max_frames: Optional[int] = None,
                seed: int = 0, z0: Optional[np.ndarray] = None,
                reopen: Optional[Callable[[], Source]] = None,
                on_result=None,
                on_error=None,
                on_outage=None,
                on_alarm_rate=None,
                log: Optional[Log] = None, stop: Optional[threading.Event] = None,
                handle_signals: bool = True, backoff: tuple = (0.5, 10.0),
                live: Optional[bool] = None, score_kwargs: Optional[dict] = None,
                frame_timeout: Optional[float] = None, stop_grace: float = 5.0,
                rotate_bytes: Optional[int] = None, rotate_keep: Optional[int] = None,
                max_pixels: Optional[int] = DEFAULT_MAX_PIXELS,
                check_sensor: bool = True, alarm_window: Optional[int] = None,
                alarm_alpha: float = DEFAULT_ALPHA) -> dict:
    """Score frames of ``source`` until it ends, ``max_frames`` are scored, or a signal arrives.

    ``threshold``: a frame scoring above it is flagged (``anomalous``); None flags no frame (``anomalous``
    null), said with a warning when the scorer has a calibrated one: ``edge-ad run`` and the ROS node pass
    ``scorer.threshold`` (or an override).

    Writes one JSON line per frame (``type``: "frame", "error", "event") and a final "summary"
    line to ``out`` (appended; a restart continues the frame index); returns the summary dict,
    also when the run ends on an error (``stopped`` "fatal"/"frame_timeout" with ``fatal_error``).
    ``seed``: frame i is scored with latents from ``frame_seed(seed, i)`` unless a fixed ``z0``
    (n_seed, z_dim) is given. ``reopen`` is called (with backoff) to reopen a live source that
    stopped. ``score_kwargs`` are passed to ``scorer.score_uint8`` where the scorer has it (a
    ``runtime.Scorer``), else to ``scorer.score`` (e.g. ``keep_reconstructions=True``).
    ``on_result(rec, frame, res)`` is called after each scored frame's line, ``on_error(rec, frame)`` after each frame's error line (a sensor fault: ``rec["fault"]``
    names it; an unreadable or unscorable frame: no ``fault``), so a consumer never mistakes a frame
    that was not scored for a normal one (the ROS node publishes it). ``frame_timeout`` (s): a
    scoring call running longer ends the run;
    ``stop_grace`` (s): how long a frame in flight may still run after a stop request.
    ``rotate_bytes``: rotate ``out`` past this size; ``rotate_keep``: keep only the newest N rotated files (ResultWriter). ``max_pixels``: larger frames are refused
    (None: no limit). ``check_sensor``: report sensor faults (limits: the scorer's spec).
    ``on_outage(rec)`` is called after a ``source_lost`` / ``source_failed`` event line (the camera
    stopped; ``rec["error"]`` says why), so a consumer hears that no frames are coming.
    ``alarm_window`` (scored frames; 0: off; None, the default: auto, DEFAULT_WINDOW unless the source
    labels its frames, ``source.labelled``: then off, LABELLED_WATCH_OFF) and ``alarm_alpha``: the
    alarm-rate watch (``alarm_watch.py``), on when ``threshold`` is the scorer's calibrated one and its rate is known
    (``Scorer.threshold_rate``); ``on_alarm_rate(rec)`` is called after each ``alarm_rate_high`` /
    ``alarm_rate_normal`` event line.
    ``on_result`` / ``on_error`` / ``on_outage`` / ``on_alarm_rate`` may also be lists of hooks; an
    Exception in a hook is reported (``hook_failed`` event), never fatal (see the module docstring).
    """
    if threshold is not None:
        threshold = valid_threshold(threshold)    # before the results file is touched
    check_watch_settings(DEFAULT_WINDOW if alarm_window is None else alarm_window, alarm_alpha)
    log = log or (lambda msg: None)
    _warn_without_threshold(scorer, threshold, log)
    stop = stop or threading.Event()
    if not isinstance(source, Source):   # a list of Frames, a generator: read through the Source interface
        source = FrameSource(source)
    live = bool(source.live) if live is None else live
    model = model_identity(scorer)
    writer = _results_writer(out, scorer, model, rotate_bytes, rotate_keep)   # refuses another model's file
    report = _Report(writer, log, on_result, on_error, on_outage, on_alarm_rate)
    # the stuck_frame check for streams only (a camera, a recording); a folder's files are independent
    detector = SensorFaultDetector(scorer_spec(scorer), stuck=is_stream(source)) if check_sensor else None
    how = _Scoring(scorer, ScoreWorker(timeout_s=frame_timeout, grace_s=stop_grace), stop, threshold, detector,
                   max_pixels, seed, z0, dict(score_kwargs or {}))
    watch, alarm_window, watch_off = _alarm_watch(source, scorer, threshold, alarm_window, alarm_alpha, log)
    run = _Run(source, writer.next_index, stop, max_frames)
    first_index = run.index
    _start_results(writer, out, model, live, first_index, log)
    t_start = time.perf_counter()

    with stop_signals(stop, handle_signals) as sigs:
        frames = _live_frames(run, report, reopen, backoff) if live else _recorded_frames(run, report)
        try:
            with contextlib.closing(frames):
                for fr, ready_at, capture_ms in frames:
                    _score_frame(run, how, report, watch, fr, ready_at, capture_ms)
        except BaseException as e:   # the source failed, a signal, a stuck frame, a bug: the summary says which
            _record_end(run.stats, e, report)
        finally:
            run.stats.stopped = stop_reason(run.stats.stopped, stop.is_set(), sigs.name)
            _close_quietly(run.source)
            how.worker.close()
            alarm = watch.state() if watch is not None else {"window": alarm_window, "state": "off",
                                                               "reason": watch_off}
            summary = _summary(run, scorer, threshold, time.perf_counter() - t_start, first_index, writer,
                               model, report.hook_failures, alarm)
            _write_summary(summary, run.source, report, writer)
    return summary


def _warn_without_threshold(scorer, threshold: Optional[float], log: Log) -> None:
    """No ``threshold`` given while the scorer has a calibrated one (an embedder's easy slip): said, not
    guessed, as a warning pointing at run_capture's caller and in ``log``."""
    if threshold is None and scorer_threshold(scorer) is not None:
        said = (f"run_capture: no threshold given, so no frame is flagged (anomalous: null); the model's calibrated "
                f"threshold is {scorer_threshold(scorer):.4g}: pass threshold=scorer.threshold to flag at it")
        warnings.warn(said, stacklevel=3)
        log(said)


def _results_writer(out: Optional[os.PathLike], scorer, model: Optional[dict], rotate_bytes: Optional[int],
                    rotate_keep: Optional[int]) -> ResultWriter:
    """The run's ResultWriter on ``out`` (appended to; it refuses a file another model wrote, taking the
    scorer's ``earlier_config_sha256s``, its config_sha256 as older edge-ads wrote it, for its own)."""
    earlier = getattr(scorer, "earlier_config_sha256s", ())
    return ResultWriter(out, rotate_bytes=rotate_bytes, rotate_keep=rotate_keep, model=model,
                        earlier_config_sha256s=earlier if isinstance(earlier, tuple) else ())


def _alarm_watch(source: Source, scorer, threshold: Optional[float], alarm_window: Optional[int],
                 alarm_alpha: float, log: Log) -> tuple:
    """(the alarm-rate watch or None, its window, why it is off) of a run. The watch runs only for the
    model's own threshold, whose false-alarm rate is known; ``alarm_window`` None (auto) switches it off
    where the frames carry their truth (the summary's truth measures the alarm rates). ``log`` says when
    it is off."""
    if alarm_window is None and source.labelled:
        alarm_window, watch, watch_off = 0, None, LABELLED_WATCH_OFF
        log(f"alarm-rate watch off: {watch_off} (an explicit alarm window switches it on)")
    else:
        alarm_window = DEFAULT_WINDOW if alarm_window is None else alarm_window
        watch, watch_off = watch_for(threshold, scorer_threshold(scorer), scorer_threshold_rate(scorer),
                                     alarm_window, alarm_alpha, getattr(scorer, "threshold_n_normal", None),
                                     getattr(scorer, "threshold_frames_above", None))
        if watch is None and alarm_window:
            log(f"alarm-rate watch off: {watch_off}")
    return watch, alarm_window, watch_off


def _start_results(writer: ResultWriter, out: Optional[os.PathLike], model: Optional[dict], live: bool,
                   first_index: int, log: Log) -> None:
    """Where this run's lines start: continuing an earlier run's file is said in ``log`` (a recorded source
    is scored from its first frame again); a new file gets a ``start`` event naming the model."""
    if writer.resumed is not None:
        log(f"{out}: continuing an earlier run's results at frame index {first_index}" + ("" if live else
            " (the frame index only: this source is read from its first frame again, so frames an earlier run "
            f"scored appear twice in {out}; edge-ad batch skips the sources it finished)"))
    elif model is not None:   # a new file: which model wrote it (a restart's resumed event says it again)
        writer.write({"type": "event", "event": "start", "time": time.time(), "model": model})


def _write_summary(summary: dict, source: Source, report: _Report, writer: ResultWriter) -> None:
    """Complete ``summary`` with what the run's report and results file noted (events the source still
    queued, a truncated recording, stream gaps, result lines lost for lack of space), write it as the
    file's last line of the run and close the file."""
    try:
        report.end_fault_streak()    # a fault lasting until the end is counted too
        report.drain(source)
        if report.truncated is not None:
            summary["recording_truncated"] = report.truncated
        if report.gaps["gaps"]:
            summary["stream_gaps"] = dict(report.gaps)
        if writer.lost_lines:    # result lines not written for lack of space
            summary["results_lost"] = writer.lost_lines
        report.emit(summary)     # (a rotation it causes may prune: said too)
        if writer.lost_lines:    # the summary line itself may be among them: the caller's summary counts it
            summary["results_lost"] = writer.lost_lines
    finally:
        writer.close()


def _summary(run: _Run, scorer, threshold, wall: float, first_index: int, writer: ResultWriter,
             model: Optional[dict], hook_failures: dict, alarm_watch: dict) -> dict:
    """The run's final JSON line."""
    st, source = run.stats, run.source
    summary = {
        "type": "summary", "source": source.uri,
        "frames_scored": st.scored, "frame_errors": st.errors, "anomalies": st.anomalies,
        "skipped": st.skipped, "outages": st.outages, "outage_s": round(st.outage_s, 3),
        "duration_s": round(wall, 3), "fps": round(st.scored / wall, 3) if wall > 0 else None,
        "latency_ms": {"p50": _pct(st.total_ms, 50), "p95": _pct(st.total_ms, 95),
                       "search_p50": _pct(st.search_ms, 50), "search_p95": _pct(st.search_ms, 95),
                       "mean": None if st.total_ms.mean is None else round(st.total_ms.mean, 3),
                       "max": None if st.total_ms.max is None else round(st.total_ms.max, 3)},
        "threshold": threshold, "stopped": st.stopped,
        "sensor_faults": dict(st.faults),
        "first_index": first_index, "next_index": run.index,
    }
    if st.fatal_error is not None:
        summary["fatal_error"] = st.fatal_error
    if st.abandoned_frame is not None:
        summary["abandoned_frame"] = st.abandoned_frame
    if writer.resumed is not None:
        summary["resumed"] = True
    if writer.rotations:
        summary["rotations"] = writer.rotations
    mode = getattr(scorer, "mode", None)       # which search ran (Scorer.load's variant choice)
    if isinstance(mode, str):
        summary["search"] = mode
    if source.stats:
        summary["source_stats"] = dict(source.stats)
    if model is not None:
        summary["model"] = model
    if hook_failures:
        summary["hook_failures"] = dict(hook_failures)
    summary["alarm_watch"] = alarm_watch
    if len(run.truth):      # AUROC, recall, false-alarm rate vs truth
        summary["truth"] = run.truth.metrics()
    return summary
