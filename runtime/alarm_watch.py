"""Alarm-rate watch: is the share of frames flagged anomalous still plausible for the threshold's rate?

A model's threshold is calibrated at a false-alarm rate (the manifest's threshold ``target_fpr``, e.g.
0.07: 7 % of normal frames score above it). When the camera is bumped or the light changes, normal
frames score higher and false alarms rise (kinect-rgbd rectangle with every frame shifted by (-2, +2)
px: 18 % instead of 6 %), while each frame on its own still looks like an alarm or not. The watch looks
at the last ``window`` scored frames: when more of them are flagged than the calibrated rate allows
(exact one-sided binomial test, ``binomial.binomial_tail``: P(X >= flagged), X ~ Binomial(frames, rate),
below ``alpha``), it reports ONE ``alarm_rate_high`` event, then stays quiet until the window's count is
plausible again (p >= NORMAL_P = 0.05, a gap so that a count wavering near the limit does not fire
again and again), which it reports as ``alarm_rate_normal``; only a new excursion fires again.

- Only scored frames count (``add`` is fed each scored frame's ``anomalous`` flag); error frames and
  sensor faults are not fed. The watch never changes a score, a threshold or a flag.
- The test starts once the window holds ``min(window, MIN_FRAMES)`` = 50 frames (a camera bumped before
  a start is seen after ~50-70 frames, not only once 200 are in), then tests the last ``window`` frames.
- False fires: the binomial test takes frames as independent. On such streams at exactly the
  calibrated rate, known exactly (no n_normal) (window 200, alpha 1e-3; ``benchmarks/alarm_watch_rates.py``, 300 seeded streams of
  10 000 frames) the watch fired 0.26 times per 10 000 frames at rate 0.07 and 0.18 at rate 0.05: about
  once in 40 000-55 000 frames (at 10 fps, once in 1-1.5 hours). A stream at 0.18 instead of 0.07 (the
  camera-shift case above) fired in every one of 200 streams, first at frame 68 (median; 90 %: 128).
  alpha 1e-4: 0.027 false fires per 10 000 frames at 0.07, and the 0.18 streams first at frame 95 (90 %: 171).
  A camera's consecutive frames are correlated: one real anomaly in view for many frames is a run of
  flags, which fires it too (the event's hint says so).
- A restarted run starts with an empty window.

- The threshold's rate is itself an estimate: a (1 - rate) quantile of ``n`` normal frames (the
  manifest threshold's ``n_normal``: 400 for the shipped models, the scene's ~50 frames after ``edge-ad
  calibrate``) flags a true share of normal frames that varies around the rate (Beta(k + 1, n - k), k
  the frames above it). Tested against the rate itself, a 50-frame threshold set the watch off 2.48
  times per 10 000 normal frames. So the watch tests against the rate's upper RATE_CONFIDENCE = 95 %
  bound given n (``binomial.exceedance_upper_bound``: 0.121 for 5 % of 50 frames, 0.069 of 400).
  ``benchmarks/alarm_watch_rates.py --n-normal 50 400`` (thresholds drawn from n frames at 5 %, 300
  streams of 10 000 frames each): 50 frames 0.38 false fires per 10 000 frames, 400 frames 0.03
  (against the rate itself: 2.73 and 0.67). The price: frames at 3x the rate (0.15) fire in 155 of 200
  streams within 2000 frames for a 50-frame threshold (first at frame 796, median), 200 of 200 for a
  400-frame one (frame 108). A threshold without a recorded ``n_normal`` is tested against its rate as
  exact (the summary's ``alarm_watch`` says so in ``rate_bound``).

``watch_for`` decides whether a run has a watch (it needs the threshold's calibrated rate).
"""
from __future__ import annotations

import math
import threading
from collections import deque
from typing import Optional

from .binomial import accepted_count, binomial_tail, exceedance_upper_bound, frames_above_quantile, is_count

__all__ = ["AlarmRateWatch", "watch_for", "check_watch_settings", "count_limits", "DEFAULT_WINDOW", "DEFAULT_ALPHA",
           "NORMAL_P", "MIN_FRAMES", "HIGH_HINT", "NORMAL_HINT", "RATE_CONFIDENCE", "watched_rate"]

DEFAULT_WINDOW = 200     # scored frames; at 5-10 fps the last 20-40 s
DEFAULT_ALPHA = 1e-3     # fire when P(at least this many flagged | calibrated rate) < alpha
NORMAL_P = 0.05          # plausible again (alarm_rate_normal) when that chance is >= NORMAL_P
RATE_CONFIDENCE = 0.95   # the watch tests against this upper bound of the threshold's true rate, given n_normal
MIN_FRAMES = 50          # frames in the window before it is tested (fewer when the window is smaller)

HIGH_HINT = ("more alarms than the threshold's calibrated rate allows: a run of real anomalies, or the scene "
             "changed (light, camera moved); if the scene changed, adapt the model with edge-ad calibrate")
NORMAL_HINT = "the share of flagged frames is plausible again for the threshold's calibrated rate"


def check_watch_settings(window, alpha) -> tuple:
    """(window, alpha) checked: ``window`` an integer >= 0 (0: no watch), ``alpha`` a number in
    (0, NORMAL_P); ValueError naming the bad one."""
    if not is_count(window):
        raise ValueError(f"alarm window must be an integer >= 0 (0: no alarm-rate watch), got {window!r}")
    ok = isinstance(alpha, (int, float)) and not isinstance(alpha, bool) and math.isfinite(alpha)
    if not ok or not 0 < alpha < NORMAL_P:
        raise ValueError(f"alarm alpha must be a number in (0, {NORMAL_P:g}), got {alpha!r}")
    return window, float(alpha)


def _valid_rate(rate) -> bool:
    return isinstance(rate, (int, float)) and not isinstance(rate, bool) and 0 < rate < 1


def watched_rate(rate: float, n_normal, frames_above=None) -> tuple:
    """(the rate the watch tests against, how it was set): the upper RATE_CONFIDENCE bound of the true
    false-alarm rate of a threshold read at ``rate`` from ``n_normal`` normal frames; ``rate`` itself
    when n_normal is not a whole number >= 2 (not recorded). ``frames_above``: how many of those frames
    score above the threshold when recorded (edge-ad calibrate's raised threshold lets more of them above
    it than a (1 - rate) quantile does); otherwise the quantile's count (``frames_above_quantile``)."""
    if not is_count(n_normal, 2):
        return rate, "none: the threshold's n_normal is not recorded, its rate is taken as exact"
    recorded = is_count(frames_above) and frames_above < n_normal
    k = frames_above if recorded else frames_above_quantile(n_normal, rate)
    bound = max(rate, exceedance_upper_bound(k, n_normal, RATE_CONFIDENCE))
    if recorded:
        return bound, (f"upper {RATE_CONFIDENCE:.0%} bound of the true rate of a threshold that {k} of its "
                       f"{n_normal} normal frames score above")
    return bound, (f"upper {RATE_CONFIDENCE:.0%} bound of the true rate of a {rate:g} quantile of "
                   f"{n_normal} normal frames")


def watch_for(threshold: Optional[float], model_threshold: Optional[float], model_rate,
              window: int = DEFAULT_WINDOW, alpha: float = DEFAULT_ALPHA, model_n_normal=None,
              model_frames_above=None) -> tuple:
    """(AlarmRateWatch or None, why none): a run flagging at ``threshold`` gets a watch when that is the
    model's calibrated threshold (``model_threshold``) and its calibrated false-alarm rate
    (``model_rate``, the manifest's threshold target_fpr) is known; ``window`` 0 switches it off.
    ``model_n_normal``: how many normal frames the threshold was read from (``Scorer.threshold_n_normal``);
    the watch tests against the rate's upper bound given it and ``model_frames_above``, how many of those
    frames score above the threshold where recorded (``Scorer.threshold_frames_above``; ``watched_rate``)."""
    window, alpha = check_watch_settings(window, alpha)
    if window == 0:
        return None, "switched off (alarm window 0)"
    if threshold is None:
        return None, "no threshold: no frame is flagged"
    if model_threshold is None or float(threshold) != float(model_threshold):
        return None, (f"the threshold {threshold:g} is not the model's calibrated one (an override): its "
                      "false-alarm rate is unknown")
    if not _valid_rate(model_rate):
        return None, "the model's threshold does not say the false-alarm rate it was calibrated at (target_fpr)"
    expected, how = watched_rate(float(model_rate), model_n_normal, model_frames_above)
    watch = AlarmRateWatch(expected, window, alpha)
    watch.calibration = {"calibrated_rate": float(model_rate), "n_normal": model_n_normal, "rate_bound": how}
    return watch, None


_LIMITS: dict = {}              # (frames, rate, alpha) -> (fire, calm)
_LIMITS_LOCK = threading.Lock()
_MAX_LIMITS = 100_000           # entries kept; when full the cache is emptied (each watch goes cold once)


def count_limits(n: int, rate: float, alpha: float) -> tuple:
    """(fire, calm) for a window of ``n`` frames at the calibrated ``rate``: the least flagged count whose
    tail P(X >= count) is < ``alpha`` (n + 1: none) and the largest whose tail is >= NORMAL_P. The tail
    falls as the count grows, so comparing the window's count with these is the test itself, without a
    tail sum per frame. Computed once per window size, rate and alpha (cached; a window holds at most
    ``window`` sizes). A size one frame above a cached one costs one ``binomial_tail`` per limit: one
    more frame moves each limit by 0 or +1 (X(n) >= k + 1 implies X(n - 1) >= k, and P(X(n) >= k) >=
    P(X(n - 1) >= k)); a cold size costs ``binomial.accepted_count``'s bisection (fire: at ``alpha``,
    plus one; calm: at NORMAL_P), 2 x ~log2(n) tails. Each tail sums up to n terms: filling a 1000-frame
    window took 0.54 s CPU (session 23, as the frame-by-frame table before), a full window a dict lookup.
    The global lock is held only to read and publish entries, never while computing one."""
    key = (n, rate, alpha)
    with _LIMITS_LOCK:
        known, before = _LIMITS.get(key), _LIMITS.get((n - 1, rate, alpha))
    if known is not None:
        return known
    if before is None:
        limits = (accepted_count(n, rate, alpha) + 1, accepted_count(n, rate, NORMAL_P))
    else:
        fire, calm = before
        fire = fire if binomial_tail(fire, n, rate) < alpha else fire + 1
        calm = calm + 1 if binomial_tail(calm + 1, n, rate) >= NORMAL_P else calm
        limits = (fire, calm)
    with _LIMITS_LOCK:
        if len(_LIMITS) >= _MAX_LIMITS:
            _LIMITS.clear()
        return _LIMITS.setdefault(key, limits)


class AlarmRateWatch:
    """Fed each scored frame's flag (``add``), says when the share flagged in the last ``window`` frames
    becomes implausible for ``expected_rate`` (an ``alarm_rate_high`` event dict) and when it is
    plausible again (``alarm_rate_normal``); None otherwise. ``state()`` is the summary's record.
    Thread-safe: ``add`` and ``state`` may be called from different threads."""

    def __init__(self, expected_rate: float, window: int = DEFAULT_WINDOW, alpha: float = DEFAULT_ALPHA):
        if not _valid_rate(expected_rate):
            raise ValueError(f"expected_rate must be a false-alarm rate in (0, 1), got {expected_rate!r}")
        window, alpha = check_watch_settings(window, alpha)
        if window == 0:
            raise ValueError("an AlarmRateWatch needs a window of at least 1 frame")
        self.expected_rate, self.window, self.alpha = float(expected_rate), window, alpha
        self.min_frames = min(window, MIN_FRAMES)
        self._frames: deque = deque()     # (results index, flagged) of the last ``window`` scored frames
        self._flagged = 0                 # flagged frames in _frames
        self._high = False
        self.fired = 0                    # alarm_rate_high events so far
        self._lock = threading.Lock()
        # where expected_rate came from, for the summary (watch_for sets it): {"calibrated_rate", "n_normal", "rate_bound"}
        self.calibration: dict = {}

    def p_value(self, flagged: int, frames: int) -> float:
        """P(X >= flagged), X ~ Binomial(frames, expected_rate): how likely this many alarms or more
        are when the threshold flags at its calibrated rate."""
        return binomial_tail(flagged, frames, self.expected_rate)

    def add(self, flagged: bool, index: int) -> Optional[dict]:
        """Count one scored frame (``flagged``: its ``anomalous``; ``index``: its results index); returns
        the event's fields ({"event": "alarm_rate_high" | "alarm_rate_normal", "window", "frames",
        "flagged", "expected_rate", "alpha", "p_value", "first_index", "last_index", "hint"}) when the
        state changes, else None."""
        with self._lock:
            self._frames.append((int(index), bool(flagged)))
            self._flagged += bool(flagged)
            if len(self._frames) > self.window:
                self._flagged -= self._frames.popleft()[1]
            n = len(self._frames)
            if n < self.min_frames:
                return None
            fire, calm = count_limits(n, self.expected_rate, self.alpha)
            if not self._high and self._flagged >= fire:
                self._high = True
                self.fired += 1
                return self._event("alarm_rate_high", HIGH_HINT)
            if self._high and self._flagged <= calm:
                self._high = False
                return self._event("alarm_rate_normal", NORMAL_HINT)
            return None

    def _event(self, name: str, hint: str) -> dict:
        n = len(self._frames)
        return {"event": name, "window": self.window, "frames": n, "flagged": self._flagged,
                "expected_rate": self.expected_rate, "alpha": self.alpha,
                "p_value": self.p_value(self._flagged, n),
                "first_index": self._frames[0][0], "last_index": self._frames[-1][0], "hint": hint}

    def state(self) -> dict:
        """The watch for the run summary: {"window", "alpha", "expected_rate" (the rate tested against),
        "fired", "state" ("high" / "normal"), "frames", "flagged", "p_value" (None before any frame)}, plus
        ``calibration`` when watch_for made it ("calibrated_rate", "n_normal", "rate_bound")."""
        with self._lock:
            n = len(self._frames)
            return {"window": self.window, "alpha": self.alpha, "expected_rate": self.expected_rate,
                    "fired": self.fired, "state": "high" if self._high else "normal", "frames": n,
                    "flagged": self._flagged, "p_value": self.p_value(self._flagged, n) if n else None,
                    **self.calibration}
