"""What every frame source yields, and the error a source raises."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Optional

import numpy as np


class SourceError(RuntimeError):
    """A source that cannot be opened or has stopped (camera gone, unreadable recording)."""


@dataclass
class Frame:
    """One RGB-D frame. ``error`` is set (and rgb/depth may be None) for a frame that could not be
    read: a run reports it and goes on. ``meta`` carries source-specific facts (e.g. synthetic label)."""

    id: str
    rgb: Optional[np.ndarray]    # H x W x 3 uint8
    depth: Optional[np.ndarray]  # H x W uint8 (8-bit) or uint16 (millimetres)
    timestamp: float = 0.0
    error: Optional[str] = None
    meta: dict = field(default_factory=dict)


class _OwnList:
    """A list attribute of which each instance has its own, made on first use (so a subclass need not
    call ``Source.__init__``); assigning it replaces the instance's list."""

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        return obj.__dict__.setdefault(self.name, [])

    def __set__(self, obj, value):
        obj.__dict__[self.name] = value


class Source:
    """A frame source: iterate it for Frames; ``close()`` releases the device or file. A subclass
    defines ``__iter__`` (and ``close`` when it holds something); every other member has a default.

    ``uri``: what it was opened from (the run summary's ``source``).
    ``stream``: True (the default) when consecutive frames are one sensor's pictures in time order
    (a camera, a recording, a ROS bag, ``synth://``), so a frame bit-identical to the previous one is
    a frozen driver re-sending it (the ``stuck_frame`` sensor fault). A folder of image files is a
    set of independent inputs (``FolderSource``: False): two identical files are two frames.
    ``labelled``: True when every frame carries its ground truth (``meta["anomalous"]``: ``synth://``,
    a labelled folder; default False): the run measures recall and false-alarm rate directly, so its
    alarm-rate watch is off unless asked for (``run_capture``'s ``alarm_window``).
    ``live``: True for a camera whose frames arrive on their own clock (default False): the run
    loop scores the newest frame, counts the others as skipped, and reopens it when it stops.
    ``stats``: counters for the run summary's ``source_stats`` (e.g. frames the driver dropped),
    or None. ``warnings``: messages for the person running it (``edge-ad run`` prints them on
    stderr). ``events``: dicts ({"event": name, ...}) for the results file, which the run loop
    takes (pops) and writes, e.g. a truncated recording.
    ``frame_count()``: how many frames iterating yields when the source can tell before (a ROS bag, a
    RealSense recording: one pass over its message stamps), else None (the default: a camera).
    ``count_error``: why ``frame_count()`` is None for a source that counts (a bag that cannot be read to its
    end), else None.
    ``truncation()``: where a recording cut short (a killed recorder) ends: the facts of its
    ``recording_truncated`` event (file, reason, messages, ...), also when its event is not written yet (a
    bag read only part-way); None for any other source (the default)."""

    uri: str = ""
    stream: bool = True
    labelled: bool = False
    live: bool = False
    stats: Optional[dict] = None
    warnings = _OwnList()   # list of str
    events = _OwnList()     # list of dict
    count_error: Optional[str] = None

    def __iter__(self) -> Iterator[Frame]:  # pragma: no cover - interface
        raise NotImplementedError

    def frame_count(self) -> Optional[int]:
        return None

    def truncation(self) -> Optional[dict]:
        return None

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def is_stream(frames) -> bool:
    """Whether ``frames`` (a Source, or any iterable of Frames) is a stream, where a repeated frame
    means a stuck sensor: its ``stream`` attribute, True when it has none (checked, as before)."""
    return bool(getattr(frames, "stream", True))


class Unopened(Source):
    """A live source that could not be opened yet (no camera connected at start): iterating it raises the
    SourceError it failed with, so run_capture treats it as a camera lost mid-run (a ``source_lost`` event,
    then ``reopen`` with backoff until one opens). ``edge-ad run --wait-for-camera``."""

    live = True

    def __init__(self, uri: str, error: str):
        self.uri, self.error = uri, error

    def __iter__(self) -> Iterator[Frame]:
        raise SourceError(self.error)

