"""Pair a colour stream with a depth stream by timestamp, streaming, with bounded buffers.

Used by the ROS 2 bag reader and the RealSense recording player. Each stream's stamps are assumed
non-decreasing (as recorded). A colour item is paired with the depth item nearest in time once no
later depth can be nearer; a pair further apart than ``slop`` seconds is not made, and the
unpaired items are counted (like message_filters' ApproximateTime, nothing is paired twice). A run of
unpaired items of one stream BETWEEN two pairs is a gap (``gaps``: frames lost) only when the other stream was
silent there for more than ``STALL_PERIODS`` of its own usual periods (the median of its recent intervals):
it stalled mid-recording. A steady rate difference (colour 30 fps, depth 15 fps: every other colour frame
without a partner), a single dropped or late frame, a stream that started later or stopped earlier: counted
only (audit 27 #22: a cadence was reported as a stall per frame).
"""
from __future__ import annotations

from collections import deque
from statistics import median
from typing import Any, Iterator, Optional

STALL_PERIODS = 3.0       # silence of a stream, in its own usual periods, that makes its partner's drops a gap
PERIOD_HISTORY = 16       # recent intervals of each stream its usual period is the median of


class TimePairer:
    """Feed ``add_colour(t, item)`` / ``add_depth(t, item)``; collect pairs from ``pop_pairs()``;
    call ``finish()`` at the end of the streams. ``unpaired_colour`` / ``unpaired_depth`` count drops;
    ``gaps``: the runs of drops of one stream between two pairs, in the order they closed, each
    {"unpaired": "colour" | "depth" (the stream whose items went unpaired: the other one had the gap),
    "frames": how many, "first_t", "last_t": their stamps (the streams' unit)}: drops between two pairs whose
    other stream's messages lie more than STALL_PERIODS of its usual period apart (module doc); other drops are
    counted only. The usual period needs a few messages of history: a stall in a stream's first frames is
    counted only."""

    def __init__(self, slop: float, max_pending: int = 64):
        if not slop >= 0:    # NaN too: it would pair nothing
            raise ValueError(f"slop must be >= 0 seconds, got {slop}")
        self.slop, self.max_pending = float(slop), int(max_pending)
        self.colour: deque = deque()   # (t, item)
        self.depth: deque = deque()    # (t, item)
        self.pairs: deque = deque()    # (colour_t, colour_item, depth_t, depth_item)
        self.unpaired_colour = 0
        self.unpaired_depth = 0
        self.gaps: list = []           # closed mid-stream gaps (see the class doc)
        self._open = {}                # stream -> the run of drops since the last pair
        self._ended = False
        self._last = {"colour": None, "depth": None}                 # each stream's latest stamp
        self._intervals = {"colour": deque(maxlen=PERIOD_HISTORY), "depth": deque(maxlen=PERIOD_HISTORY)}
        self._pair_t: Optional[dict] = None       # the previous pair's stamps {"colour": tc, "depth": td}
        self._period: dict = {}                   # each stream's usual period as of the previous pair

    def _seen(self, stream: str, t: float) -> None:
        last = self._last[stream]
        if last is not None and t > last:
            self._intervals[stream].append(t - last)
        self._last[stream] = t

    def _drop(self, stream: str, t: float) -> None:
        """Count an unpaired item of ``stream`` at ``t``; it extends that stream's run of drops."""
        if stream == "colour":
            self.unpaired_colour += 1
        else:
            self.unpaired_depth += 1
        run = self._open.get(stream)
        if run is None:
            self._open[stream] = {"unpaired": stream, "frames": 1, "first_t": t, "last_t": t}
        else:
            run["frames"], run["last_t"] = run["frames"] + 1, t

    def _paired_now(self, tc: float, td: float) -> None:
        """A pair (``tc``, ``td``) was made: a run of drops since the previous pair is a gap when the other
        stream was silent between the two pairs for more than STALL_PERIODS of its usual period (none before
        the first pair; none without a usual period yet)."""
        now = {"colour": tc, "depth": td}
        for stream, run in self._open.items():
            missing = "depth" if stream == "colour" else "colour"
            period = self._period.get(missing)        # None before the first pair, or without history
            if period and now[missing] - self._pair_t[missing] > STALL_PERIODS * period:
                self.gaps.append(run)
        self._open.clear()
        self._pair_t = now
        self._period = {s: (median(v) if len(v) >= 2 else None) for s, v in self._intervals.items()}

    def add_colour(self, t: float, item: Any) -> None:
        self._seen("colour", float(t))
        self.colour.append((float(t), item))
        self._match()

    def add_depth(self, t: float, item: Any) -> None:
        self._seen("depth", float(t))
        self.depth.append((float(t), item))
        self._match()

    def finish(self) -> None:
        """No more items will come: decide everything still pending."""
        self._ended = True
        self._match()
        for t, _ in self.depth:
            self._drop("depth", t)
        self.depth.clear()

    def pop_pairs(self) -> Iterator[tuple]:
        while self.pairs:
            yield self.pairs.popleft()

    def pop_gaps(self) -> list:
        """The gaps closed since the last call (taken from ``gaps``)."""
        gaps, self.gaps = self.gaps, []
        return gaps

    def _match(self) -> None:
        while self.colour:
            tc, c = self.colour[0]
            # depths too old to pair with this (or any later) colour item
            while self.depth and self.depth[0][0] < tc - self.slop:
                self._drop("depth", self.depth.popleft()[0])
            if not self.depth:
                if self._ended:
                    self._drop("colour", self.colour.popleft()[0])
                    continue
                break
            if self.depth[-1][0] < tc and not self._ended:
                break  # a later depth may still be nearer
            best = min(range(len(self.depth)), key=lambda i: abs(self.depth[i][0] - tc))
            td, d = self.depth[best]
            self.colour.popleft()
            if abs(td - tc) <= self.slop:
                for _ in range(best):
                    self._drop("depth", self.depth.popleft()[0])
                self.depth.popleft()
                self.pairs.append((tc, c, td, d))
                self._paired_now(tc, td)
            else:
                self._drop("colour", tc)
        # bounded memory when one stream is missing or far behind
        while len(self.colour) > self.max_pending:
            self._drop("colour", self.colour.popleft()[0])
        while len(self.depth) > self.max_pending:
            self._drop("depth", self.depth.popleft()[0])

    @property
    def stats(self) -> dict:
        return {"unpaired_colour": self.unpaired_colour, "unpaired_depth": self.unpaired_depth}



def check_slop(slop) -> float:
    """``slop`` (seconds a colour and a depth stamp may lie apart to pair) as a float; ValueError naming it
    unless it is a finite number >= 0."""
    s = float(slop)
    if not 0 <= s < float("inf"):
        raise ValueError(f"slop (the seconds colour and depth stamps may lie apart to pair) must be a finite "
                         f"number >= 0, got {slop!r}")
    return s


def no_pairs_note(stats: Optional[dict], slop: Optional[float] = None) -> Optional[str]:
    """Why a source that pairs colour and depth by time (a ROS bag: its ``stats`` count ``pairs``) gave no
    frame although it read messages: none paired within the slop (None when it paired some, read none, or
    does not count pairs)."""
    stats = stats or {}
    c, d = stats.get("unpaired_colour", 0), stats.get("unpaired_depth", 0)
    if "pairs" not in stats or stats["pairs"] or not (c or d):
        return None
    within = "within the slop" if slop is None else f"within slop {slop:g} s"
    return (f"its {c} colour and {d} depth message(s) never paired {within} (their stamps lie further apart: "
            "colour and depth not synchronised?): give a larger slop, e.g. rosbag://PATH?slop=0.05")


def gap_event(gap: dict, uri: str, seconds: float = 1.0) -> dict:
    """The ``stream_gap`` event of a source's results for a gap of ``TimePairer`` (its ``pop_gaps``): which
    stream was ``missing``, how many ``frames`` of the other went unpaired (lost: never scored), and their
    first and last stamps in seconds (``seconds``: the stamps' unit, 1e-3 for milliseconds)."""
    missing = "depth" if gap["unpaired"] == "colour" else "colour"
    return {"event": "stream_gap", "source": uri, "missing": missing, "unpaired": gap["unpaired"],
            "frames": int(gap["frames"]), "first_stamp": gap["first_t"] * seconds, "last_stamp": gap["last_t"] * seconds}


def gap_text(ev: dict) -> str:
    """The console line of a ``stream_gap`` event."""
    return (f"{ev.get('source')}: {ev.get('missing')} stream gap: {ev.get('frames')} {ev.get('unpaired')} frame(s) "
            f"without {ev.get('missing')} (stamps {ev.get('first_stamp', 0):.3f} - {ev.get('last_stamp', 0):.3f} s) "
            "were not scored")
