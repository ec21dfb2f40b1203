"""The capture-and-score loop shared by ``edge-ad run`` and the ROS 2 node.

* Recordings, folders and ``synth://`` are read in order, every frame scored.
* Live cameras (``source.live``) are read by a grabber thread into a one-frame slot: the loop
  always scores the newest frame and counts the ones it never saw (``skipped``), so a slow model
  never builds a queue. A camera that stops is reopened with exponential backoff; the outage is
  logged.
* A frame that cannot be read or scored (``Frame.error``, ``FrameError``) is logged with its reason
  and the run goes on.
* SIGINT/SIGTERM: the current frame is finished, the results flushed and the summary written.
  Every JSON line is flushed when written, so a hard kill loses at most the line being written.

The scorer is any object with ``score(rgb, depth, z0=None, seed=None)`` returning an object with
``.score`` (float) and ``.timings`` ({"preprocess_ms", "search_ms"}), like ``runtime.Scorer``.
"""
from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional

import numpy as np

from .config import frame_seed
from .preprocess import FrameError
from .sources.base import Frame, Source, SourceError
from .truth import TruthTally

Log = Callable[[str], None]


class ResultWriter:
    """JSON lines to a file (or nowhere), each flushed as written."""

    def __init__(self, path: Optional[os.PathLike] = None):
        self.path = path
        self._f = None
        if path is not None:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self._f = open(path, "w", encoding="utf-8")

    def write(self, record: dict) -> None:
        if self._f is None:
            return
        self._f.write(json.dumps(record, allow_nan=False) + "\n")
        self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.flush()
            try:
                os.fsync(self._f.fileno())
            except OSError:
                pass
            self._f.close()
            self._f = None


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
    total_ms: list = field(default_factory=list)
    search_ms: list = field(default_factory=list)
    stopped: str = "end"


def timings_ms(res) -> dict:
    """{"preprocess_ms", "search_ms"} from a ScoreResult's timings (``*_ms``, or ``*_s`` seconds)."""
    tm = getattr(res, "timings", None) or {}
    out = {}
    for k in ("preprocess", "search"):
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


def scorer_threshold(scorer) -> Optional[float]:
    """The model's calibrated threshold (``Scorer.threshold``, from the manifest), or None."""
    thr = getattr(scorer, "threshold", None)
    return None if thr is None else float(thr)


def _pct(v: list, q: float) -> Optional[float]:
    return round(float(np.percentile(v, q)), 3) if v else None


class _Signals:
    """SIGINT/SIGTERM set ``stop`` (first time) and raise KeyboardInterrupt (second time)."""

    def __init__(self, stop: threading.Event):
        self.stop, self.name, self._old = stop, None, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame):
        if self.stop.is_set():
            raise KeyboardInterrupt
        self.name = signal.Signals(signum).name
        self.stop.set()

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def run_capture(source: Source, scorer, *, threshold: Optional[float] = None,
                out: Optional[os.PathLike] = None, max_frames: Optional[int] = None,
                seed: int = 0, z0: Optional[np.ndarray] = None,
                reopen: Optional[Callable[[], Source]] = None,
                on_result: Optional[Callable[[dict, Frame, object], None]] = None,
                log: Optional[Log] = None, stop: Optional[threading.Event] = None,
                handle_signals: bool = True, backoff: tuple = (0.5, 10.0),
                live: Optional[bool] = None, score_kwargs: Optional[dict] = None) -> dict:
    """Score frames of ``source`` until it ends, ``max_frames`` are scored, or a signal arrives.

    Writes one JSON line per frame (``type``: "frame", "error", "event") and a final "summary"
    line to ``out``; returns the summary dict. ``seed``: frame i is scored with latents from
    ``frame_seed(seed, i)`` unless a fixed ``z0`` (n_seed, z_dim) is given. ``reopen`` is called
    (with backoff) to reopen a live source that stopped. ``score_kwargs`` are passed to
    ``scorer.score`` (e.g. ``keep_reconstructions=True`` where the scorer takes it).
    """
    log = log or (lambda msg: None)
    stop = stop or threading.Event()
    live = bool(getattr(source, "live", False)) if live is None else live
    writer = ResultWriter(out)
    st = RunStats()
    truth = TruthTally()  # score vs the source's ground truth (synth://, labelled folders)
    t_start = time.perf_counter()
    state = {"source": source}
    index = 0

    def emit(rec: dict):
        writer.write(rec)

    def score_frame(fr: Frame, ready_at: float, capture_ms: float):
        nonlocal index
        i = index
        index += 1
        base = {"frame": fr.id, "index": i, "timestamp": round(float(fr.timestamp), 6)}
        if fr.error is not None:
            st.errors += 1
            emit({"type": "error", **base, "error": fr.error})
            log(f"frame {fr.id}: skipped: {fr.error}")
            return
        kw = {"z0": z0} if z0 is not None else {"seed": frame_seed(seed, i)}
        kw.update(score_kwargs or {})
        try:
            res = scorer.score(fr.rgb, fr.depth, **kw)
            s = float(res.score)
            if not math.isfinite(s):
                raise FrameError(f"score is {s}")
        except (FrameError, ValueError) as e:  # an odd frame (the scorer's input checks): skip it
            st.errors += 1
            emit({"type": "error", **base, "error": str(e)})
            log(f"frame {fr.id}: skipped: {e}")
            return
        total = (time.perf_counter() - ready_at) * 1000.0 + capture_ms
        tm = timings_ms(res)
        thr = threshold
        anomalous = None if thr is None else bool(s > thr)
        st.scored += 1
        st.anomalies += int(bool(anomalous))
        st.total_ms.append(total)
        if "search_ms" in tm:
            st.search_ms.append(float(tm["search_ms"]))
        rec = {"type": "frame", **base, "score": s, "threshold": thr, "anomalous": anomalous,
               "latency_ms": {"capture": round(capture_ms, 3),
                              "preprocess": round(float(tm.get("preprocess_ms", 0.0)), 3),
                              "search": round(float(tm.get("search_ms", 0.0)), 3),
                              "total": round(total, 3)}}
        sl = getattr(res, "seed_losses", None)
        if sl is not None:  # per-seed final losses (issue 3: results carry frame, score, seed_losses)
            rec["seed_losses"] = [float(v) for v in np.asarray(sl).ravel()]
        ld = getattr(res, "latent_distance", None)
        if ld is not None:  # the latent-memory distance d(E(x), bank), when the scoring configuration uses it
            rec["latent_distance"] = float(ld)
        if "anomalous" in fr.meta:  # ground truth from synth:// or a labelled folder
            rec["truth"] = {"anomalous": bool(fr.meta["anomalous"]), "kind": fr.meta.get("kind")}
            truth.add(s, rec["truth"]["anomalous"], anomalous)
        emit(rec)
        if on_result is not None:
            on_result(rec, fr, res)

    def done() -> bool:
        if stop.is_set():
            return True
        if max_frames is not None and st.scored >= max_frames:
            st.stopped = "max_frames"
            return True
        return False

    def sync_frames() -> Iterator[tuple]:
        it = iter(state["source"])
        while True:
            t0 = time.perf_counter()
            try:
                fr = next(it)
            except StopIteration:
                return
            t1 = time.perf_counter()
            yield fr, t1, (t1 - t0) * 1000.0

    def reopen_with_backoff(err: BaseException) -> bool:
        st.outages += 1
        t_lost = time.perf_counter()
        emit({"type": "event", "event": "source_lost", "time": time.time(), "error": str(err)})
        log(f"source lost: {err}; reopening")
        try:
            state["source"].close()
        except Exception:
            pass
        delay = backoff[0]
        while not stop.is_set():
            if stop.wait(delay):
                break
            try:
                state["source"] = reopen()
            except SourceError as e:
                log(f"reopen failed: {e}; next try in {min(delay * 2, backoff[1]):.1f} s")
                delay = min(delay * 2, backoff[1])
                continue
            out_s = time.perf_counter() - t_lost
            st.outage_s += out_s
            emit({"type": "event", "event": "source_reopened", "time": time.time(),
                  "outage_s": round(out_s, 3)})
            log(f"source reopened after {out_s:.1f} s")
            return True
        st.outage_s += time.perf_counter() - t_lost
        return False

    def live_loop():
        while not done():
            slot = LatestSlot()
            grabber = _Grabber(state["source"], slot)
            grabber.start()
            try:
                while not done():
                    item = slot.take(timeout=0.2)
                    if item is None:
                        if slot.closed:
                            break
                        continue
                    fr, t_cap = item
                    t_take = time.perf_counter()
                    # capture latency of a live frame: how long it waited for the scorer
                    score_frame(fr, t_take, (t_take - t_cap) * 1000.0)
            finally:
                grabber.halt.set()
                st.skipped += slot.skipped
            if done():
                break
            err = slot.error
            if err is None:
                st.stopped = "end"
                return
            if not isinstance(err, SourceError) or reopen is None:
                raise err
            if not reopen_with_backoff(err):
                return
            grabber.join(timeout=1.0)

    with (_Signals(stop) if handle_signals else _NoSignals()) as sigs:
        try:
            if live:
                live_loop()
            else:
                for fr, t_cap, cap_ms in sync_frames():
                    score_frame(fr, t_cap, cap_ms)
                    if done():
                        break
        except SourceError as e:
            st.stopped = "source_failed"
            emit({"type": "event", "event": "source_failed", "time": time.time(), "error": str(e)})
            log(f"source failed: {e}")
        except KeyboardInterrupt:
            st.stopped = "interrupted"
        finally:
            if stop.is_set() and st.stopped not in ("source_failed", "interrupted"):
                st.stopped = f"signal:{sigs.name}" if getattr(sigs, "name", None) else "stopped"
            try:
                state["source"].close()
            except Exception:
                pass
            wall = time.perf_counter() - t_start
            summary = {
                "type": "summary", "source": getattr(state["source"], "uri", ""),
                "frames_scored": st.scored, "frame_errors": st.errors, "anomalies": st.anomalies,
                "skipped": st.skipped, "outages": st.outages, "outage_s": round(st.outage_s, 3),
                "duration_s": round(wall, 3), "fps": round(st.scored / wall, 3) if wall > 0 else None,
                "latency_ms": {"p50": _pct(st.total_ms, 50), "p95": _pct(st.total_ms, 95),
                               "search_p50": _pct(st.search_ms, 50), "search_p95": _pct(st.search_ms, 95)},
                "threshold": threshold, "stopped": st.stopped,
            }
            mode = getattr(scorer, "mode", None)       # which search ran (Scorer.load's variant choice)
            if isinstance(mode, str):
                summary["search"] = mode
            src_stats = getattr(state["source"], "stats", None)
            if src_stats:
                summary["source_stats"] = dict(src_stats)
            if len(truth):                               # AUROC, recall, false-alarm rate vs truth
                summary["truth"] = truth.metrics()
            try:
                writer.write(summary)
            finally:
                writer.close()
    return summary


class _NoSignals:
    name = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass
