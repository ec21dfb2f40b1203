"""Which frames of the source calibration uses, and the log lines that say so. Of a source that knows its
length (a folder, synth://?n=N, a ROS bag, a RealSense recording: ``source_length``) and holds more than
``max_frames``, exactly ``max_frames`` frames spread evenly over it are used (``spread_positions``), so they
cover the whole recording (measured on kinect-rgbd: 50 frames of one stretch of a recording can look like the
model's rate while the rest does not, models/kinect-rgbd/HISTORY.md, session 23); a labelled folder spreads
them over the frames it labels normal (``labelled_normals``); ``every`` K uses every K-th frame instead (1:
the first ``max_frames``; a camera: ``max_frames`` frames over max_frames x K frames of time; a bag or
recording is then not counted). ``frame_plan`` decides; ``read_scene`` (scene_frames.py) reads by it."""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import numpy as np

from .errors import CalibrationError


def source_length(frames, count: bool = True) -> Optional[int]:
    """How many frames ``frames`` holds when it knows: a ROS bag's or RealSense recording's ``frame_count()``
    (Source.frame_count: one pass over its message stamps, no image decoded; not asked when ``count`` is
    False: --every K picks the frames without it), a folder's or a list's len(), synth://?n=N's N; else None
    (a camera, an endless synth)."""
    from ..sources.synth_source import SynthSource
    counter = getattr(frames, "frame_count", None) if count else None
    n = counter() if callable(counter) else None
    if n is not None:
        return n
    try:
        return len(frames)
    except TypeError:
        return frames.n if isinstance(frames, SynthSource) else None


def spread_positions(length: Optional[int], max_frames: Optional[int]) -> Optional[tuple]:
    """The 0-based positions of the frames ``read_scene`` uses by default from a source of known ``length``
    that holds more than ``max_frames``: exactly ``max_frames`` positions spread evenly over it,
    floor(i x length / max_frames) for i = 0 .. max_frames - 1 (the first frame, then one every
    length / max_frames frames: 10 of 30 -> 0, 3, ..., 27; 10 of 31 -> 0, 3, 6, 9, 12, 15, 18, 21, 24, 27;
    10 of 17 -> 0, 1, 3, 5, 6, 8, 10, 11, 13, 15). None (every frame: the first ``max_frames``) when the
    length is unknown (a camera, an endless synth), there is no limit, or the source holds no more
    frames than the limit."""
    if length is None or max_frames is None or length <= max_frames:
        return None
    return tuple(i * int(length) // int(max_frames) for i in range(int(max_frames)))


class FramePlan(NamedTuple):
    """Which frames of a source ``read_scene`` selects (``frame_plan``): the ``positions`` (0-based,
    increasing) spread over a source of known length, else every ``every``-th frame (1: every frame) until
    ``max_frames`` are selected; ``to_read``: the frames it reads at most (None: unbounded)."""
    every: Optional[int]                # K of "every K-th frame"; None when spread by positions
    positions: Optional[tuple]          # (max_frames,) positions, or None
    to_read: Optional[int]


def check_every(every) -> None:
    """CalibrationError naming ``every`` unless it is a whole number >= 1 (the K of "every K-th frame")."""
    if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
        raise CalibrationError(f"every (use every K-th frame of the source) must be a whole number >= 1, got {every!r}")


def labelled_normals(frames) -> Optional[list]:
    """The 0-based positions of the frames a labelled source knows as normal before it is read (a labelled
    folder's ``normal_positions()``); None for any other source."""
    known = getattr(frames, "normal_positions", None)
    return list(known()) if callable(known) else None


def frame_plan(length: Optional[int], max_frames: Optional[int], every: Optional[int] = None,
               normals: Optional[Sequence[int]] = None) -> FramePlan:
    """The ``FramePlan`` of ``read_scene`` on a source of ``length`` frames (None: unknown): every K-th frame
    (``every`` = K) until ``max_frames`` are selected, so it reads at most (max_frames - 1) K + 1 frames; with
    ``every`` None, ``max_frames`` positions spread evenly over a source of known length (``spread_positions``),
    else every frame (the first ``max_frames``). ``normals``: the positions of the frames a labelled source
    labels normal (``labelled_normals``): with ``every`` None the positions are spread over them only (all of
    them when they are no more than ``max_frames``), as its anomalies are never used."""
    if every is not None:
        check_every(every)
    if every is None and normals:
        normals = [int(p) for p in normals]
        spread = spread_positions(len(normals), max_frames)            # indices into normals
        chosen = tuple(normals) if spread is None else tuple(normals[i] for i in spread)
        return FramePlan(None, chosen, chosen[-1] + 1)
    positions = spread_positions(length, max_frames) if every is None else None
    if positions is not None:
        return FramePlan(None, positions, positions[-1] + 1)
    k = 1 if every is None else int(every)
    bounds = [v for v in (length, None if max_frames is None else (max_frames - 1) * k + 1) if v is not None]
    return FramePlan(k, None, min(bounds) if bounds else None)


def selection_text(plan: FramePlan, length: Optional[int], max_frames: Optional[int],
                   normals: Optional[Sequence[int]] = None) -> Optional[str]:
    """The log line that says which frames ``plan`` uses (None when it uses every frame up to the limit of a
    source no longer than it, or of unknown length: nothing to say). ``normals``: as ``frame_plan``."""
    if plan.positions is not None and plan.every is None and normals:
        n = len(normals)
        return (f"using {len(plan.positions)} of the {n} frames the source labels normal ({length} frames in all: "
                "its anomalies are never used)" + (f", spread evenly over them (one every {n / len(plan.positions):.3g})"
                                                  if len(plan.positions) < n else ""))
    if plan.positions is not None:
        return (f"using {len(plan.positions)} of {length} frames, spread evenly over the source (one every "
                f"{length / len(plan.positions):.3g}; --every 1: its first {max_frames})")
    if plan.every > 1:
        return (f"using every {ordinal(plan.every)} of {length} frames (at most {max_frames})" if length is not None
                else f"using every {ordinal(plan.every)} frame (at most {max_frames}: spread over "
                     f"{plan.to_read} frames of the source)")
    if max_frames is not None and (length or 0) > max_frames:
        return f"using the first {max_frames} of {length} frames (every 1)"
    return None


def uncounted_text(frames, plan: FramePlan, max_frames: Optional[int]) -> Optional[str]:
    """The log line of a source that counts its frames but could not (its ``count_error``: a bag that cannot be
    read to its end): why, and, unless --every picks the frames, that it uses the first ``max_frames``; None
    for any other source."""
    why = getattr(frames, "count_error", None)
    if not why:
        return None
    line = f"could not count the frames of {getattr(frames, 'uri', '') or 'the source'} ({why})"
    if plan.every == 1 and max_frames is not None:
        line += f": using its first {max_frames} frames, one stretch of it (--every K: every K-th frame instead)"
    return line


def how_selected(every: Optional[int], read: int) -> Optional[str]:
    """How the frames used were picked from the ``read`` frames, for messages (the calibration record's
    "every": None = spread by positions): "spread over 28 read", "every 3rd of 28 read"; None for every frame."""
    if every is None:
        return f"spread over {read} read"
    return None if every == 1 else f"every {ordinal(every)} of {read} read"


def selected_text(plan: FramePlan, selected: int, read: int) -> str:
    """The frames counted by a message: "28 read" (every frame), "10 selected (every 3rd of 28 read)" or
    "10 selected (spread over 28 read)"."""
    how = how_selected(plan.every, read)
    return f"{read} read" if how is None else f"{selected} selected ({how})"


def ordinal(k: int) -> str:
    """'2nd', '3rd', '11th', '21st': the K of "every K-th frame"."""
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"
