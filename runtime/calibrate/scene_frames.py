"""The scene's usable frames, read from the source by the ``frame_plan`` (selection.py): only frames
``edge-ad run`` would score as normal scene frames are used (``read_scene``): sensor faults (a black colour
sensor, a stuck camera's repeats, ...: ``SensorFaultDetector``), frames the source labels anomalous and
bit-identical copies of a frame already used are dropped and counted; a recording cut short says where it
ends (``recording_cut``), a stream that stalled what it cost (``stream_gaps``); too few usable frames stop the calibration (``check_enough_frames``); what was read
goes into the calibration record (``frames_record``)."""
from __future__ import annotations

from typing import Callable, Iterable, Optional, Sequence

from ..latent_bank import unaligned_uint8
from ..preprocess import FrameError
from ..sensor_faults import SensorFaultDetector, frame_digest
from ..silhouette import versions_uint8
from ..sources.base import is_stream
from .errors import CalibrationError
from .selection import FramePlan, check_every, selected_text

MIN_FRAMES = 20              # calibration refuses fewer usable frames (``check_enough_frames``)


def recording_cut(frames) -> Optional[dict]:
    """Where ``frames``, a recording cut short (a killed recorder: a salvaged bag or RealSense recording),
    ends: its ``truncation()`` facts (``Source.truncation``: file, reason, messages, ..., as its
    ``recording_truncated`` event) plus "frames", the frames it holds before the cut (``frame_count()``:
    counted already when the frames are spread, else one pass now; None when it cannot count); None for any
    other source."""
    ask = getattr(frames, "truncation", None)
    facts = ask() if callable(ask) else None
    if not facts:
        return None
    count = getattr(frames, "frame_count", None)
    return {**facts, "frames": count() if callable(count) else None}


def cut_text(cut: dict, read: int, max_frames: Optional[int], every: Optional[int]) -> str:
    """The log line of a recording cut short (``recording_cut``): which, why, how many frames it holds before
    the cut and how many were read; with the frames spread (``every`` None) over its count, that the count is
    of the frames before the cut: fewer than ``max_frames`` (all read), else spread over those only."""
    n = cut.get("frames")
    line = (f"recording {cut.get('file')} is cut short ({cut.get('reason')}): "
            + (f"{n} frames before the cut (up to its message {cut.get('messages')}), {read} of them read"
               if n is not None else f"{read} frames read before the cut (up to its message {cut.get('messages')})")
            + "; frames after the cut are lost")
    if n is not None and every is None and max_frames is not None:
        line += (f"; fewer than the --max-frames {max_frames} planned: every frame before the cut is read"
                 if n < max_frames else f"; the {max_frames} frames are spread over those before the cut only")
    return line


def read_scene(frames: Iterable, spec, max_frames: Optional[int] = None, progress: Optional[Callable] = None,
               every: int = 1, positions: Optional[Sequence[int]] = None, silhouette: bool = False) -> dict:
    """The scene's usable frames at the model's resolution: {"ids", "u8" [(R, R, 4) uint8 before align],
    "read", "selected", "every", "unreadable", "unscorable", "faulty", "faults" {fault name: frames},
    "skipped_anomalous", "duplicates", "reasons"}. ``frames`` yields runtime.sources Frames.
    ``silhouette`` (a model with the silhouette lever, runtime/silhouette.py): also "versions", per usable frame
    {"ero", "dil", "opened"} (R, R, 4) uint8 before align, made on the RAW frame (``silhouette.versions_uint8``);
    a frame they cannot be made of (e.g. float depth, which the lever's depth ops refuse, as Scorer.score does)
    could not be scored.

    Frames are SELECTED first: every ``every``-th frame read (the 1st, the (K + 1)-th, ...; 1: every frame),
    or, given ``positions`` (0-based, increasing), the frames at those positions, until ``max_frames`` are
    selected (``frame_plan``: calibrate_model spreads them over a source of known length); the frames between are read ("read" counts them) and fed to the sensor-fault detector, as a
    run checks every frame in order, but neither used nor counted as faults, duplicates or anything else.
    A selected frame is usable only when ``edge-ad run`` would score it as a normal scene frame: frames that
    cannot be read or preprocessed are dropped, so are sensor faults (``SensorFaultDetector`` with the
    model's limits, fed every readable frame in order as a run does: a black or blinded colour
    sensor, no depth, colour noise, and in a stream (``is_stream``: not a folder of files) a stuck
    camera's repeats, of which only the first counts) and
    frames the source labels anomalous (``meta["anomalous"]``: synth://, a labelled folder such as
    ``folder://DATA?normal=CLASS``). Each distinct frame is used once: a bit-identical copy of a frame
    already used (``duplicates``: a folder's copied files, which a run scores; a folder exported from a
    stuck camera) adds no scene information and, in another block, would score itself held out at
    distance 0. ``progress(read, usable, dropped)`` after each frame read, ``dropped`` {reason: frames} of
    the reasons seen so far (of the selected frames)."""
    check_every(every)
    if positions is None:
        def selects(i: int) -> bool:        # 0-based position i of the frame read
            return i % every == 0
    else:
        chosen = frozenset(int(p) for p in positions)

        def selects(i: int) -> bool:
            return i in chosen
    ids, u8, versions = [], [], []
    read = selected = unreadable = unscorable = faulty = skipped_anomalous = duplicates = 0
    used: dict = {}      # frame_digest -> id of the frame used
    faults_seen: dict = {}
    reasons = []
    detector = SensorFaultDetector(spec, stuck=is_stream(frames))   # stuck_frame: as edge-ad run, streams only
    for fr in frames:
        if max_frames is not None and selected >= max_frames:
            break
        read += 1
        readable = getattr(fr, "error", None) is None and fr.rgb is not None and fr.depth is not None
        if not selects(read - 1):           # between two selected frames: only the detector sees it
            if readable:
                try:
                    detector.check(fr.rgb, fr.depth)
                except (FrameError, ValueError):
                    pass
        elif not readable:
            selected += 1
            unreadable += 1
            reasons.append(f"{fr.id}: {fr.error or 'no image'}")
        else:
            selected += 1
            anomalous = bool((getattr(fr, "meta", None) or {}).get("anomalous"))    # the source's truth
            try:
                faults = detector.check(fr.rgb, fr.depth)     # every readable frame, in order, as a run does
                if anomalous:
                    skipped_anomalous += 1
                elif faults:
                    faulty += 1
                    faults_seen[faults[0].name] = faults_seen.get(faults[0].name, 0) + 1
                    reasons.append(f"{fr.id}: " + "; ".join(str(f) for f in faults))
                else:
                    digest = frame_digest(fr.rgb, fr.depth)
                    if digest in used:
                        duplicates += 1
                        reasons.append(f"{fr.id}: a bit-identical copy of frame {used[digest]}")
                    else:
                        made = unaligned_uint8(fr.rgb, fr.depth, spec)
                        if silhouette:
                            versions.append(versions_uint8(fr.rgb, fr.depth, spec))
                        u8.append(made)
                        ids.append(fr.id)
                        used[digest] = fr.id
            except (FrameError, ValueError) as e:
                if anomalous:
                    skipped_anomalous += 1
                else:
                    unscorable += 1
                    reasons.append(f"{fr.id}: {e}")
        if progress is not None:
            progress(read, len(ids), _dropped(unreadable, unscorable, faulty, faults_seen, skipped_anomalous,
                                              duplicates))
    return {"ids": ids, "u8": u8, **({"versions": versions} if silhouette else {}), "read": read, "selected": selected,
            "every": int(every) if positions is None else None,
            "unreadable": unreadable, "unscorable": unscorable,
            "faulty": faulty, "faults": faults_seen, "skipped_anomalous": skipped_anomalous,
            "duplicates": duplicates, "reasons": reasons}


def _dropped(unreadable: int, unscorable: int, faulty: int, faults: dict, anomalous: int,
             duplicates: int = 0) -> dict:
    """{reason: frames} of the frames read_scene dropped, only the reasons that occurred."""
    out = {"unreadable": unreadable, "could not be scored": unscorable,
           "sensor faults" + (f" ({', '.join(f'{k} {v}' for k, v in faults.items())})" if faults else ""): faulty,
           "labelled anomalous (skipped)": anomalous, "copies of a frame already used": duplicates}
    return {k: v for k, v in out.items() if v}


def stream_gaps(frames, log: Optional[Callable] = None) -> Optional[dict]:
    """The frames a stream that stalled mid-recording cost ``frames`` in the part read (its ``stream_gap``
    events, ``Source.events``, read and left in place: runtime/sources/pairing.py), each said through ``log``
    as edge-ad run says it: {"gaps", "frames"}, or None when none."""
    from ..sources.pairing import gap_text
    gaps = [e for e in list(getattr(frames, "events", None) or []) if isinstance(e, dict)
            and e.get("event") == "stream_gap"]
    if log is not None:
        for ev in gaps:
            log(gap_text(ev))
    return {"gaps": len(gaps), "frames": sum(int(e.get("frames") or 0) for e in gaps)} if gaps else None


def check_enough_frames(scene: dict, plan: FramePlan, cut: Optional[dict], min_frames: int) -> None:
    """CalibrationError when ``scene`` (``read_scene``'s) holds fewer than ``min_frames`` usable frames, naming
    the frames read (or selected by ``plan``), why the others were dropped, the first problem and, for a
    recording cut short (``cut``: ``recording_cut``), that frames after the cut are lost."""
    n = len(scene["ids"])
    if n < min_frames:
        first = f"; first problem: {scene['reasons'][0]}" if scene["reasons"] else ""
        more = _dropped(0, 0, scene["faulty"], scene["faults"], scene["skipped_anomalous"], scene["duplicates"])
        of = selected_text(plan, scene["selected"], scene["read"])
        raise CalibrationError(
            f"only {n} usable frame{'s' if n != 1 else ''} of {of} ({scene['unreadable']} unreadable, "
            f"{scene['unscorable']} could not be scored" + "".join(f", {v} {k}" for k, v in more.items())
            + f"){first}" + (f"; the recording {cut.get('file')} is cut short: frames after its message "
                             f"{cut.get('messages')} are lost" if cut is not None else "")
            + _background_hint(scene)
            + f"; calibration needs at least {min_frames} normal frames of the scene")


def _background_hint(scene: dict) -> str:
    """The cause when frames were dropped as ``background_in_view`` (audit 33 #18: a table or background within
    far_mm, which the model never saw), said in full unless the first problem (which the message quotes) already
    says it; else ""."""
    n = scene["faults"].get("background_in_view", 0)
    if not n:
        return ""
    said = bool(scene["reasons"]) and "background_in_view" in scene["reasons"][0]
    return (f"; {n} of the {scene['selected']} frames show foreground across a frame edge (background_in_view"
            + ("; docs/preprocessing.md)" if said else
               "): is a table or background within far_mm in view? The model scores an object alone: remove it "
               "(depth 0) or place the camera so that it lies beyond far_mm (docs/preprocessing.md)"))


def frames_record(scene: dict, plan: FramePlan, length: Optional[int], max_frames: Optional[int],
                  cut: Optional[dict], gaps: Optional[dict] = None) -> dict:
    """The calibration record's fields on the frames: read / used / selected (by ``plan`` from a source of
    ``length`` frames, None: unknown), "recording_truncated" (``cut``), "stream_gaps" (``gaps``: frames lost to
    a stream that stalled, ``stream_gaps``), the ids used, and the counts of the frames dropped by reason
    (``read_scene``'s ``scene``)."""
    return {"frames_read": scene["read"], "frames_used": len(scene["ids"]),
            "every": plan.every, "source_length": length, "frames_selected": scene["selected"],
            "max_frames": max_frames, "recording_truncated": cut, "stream_gaps": gaps,
            "frame_ids": [v if isinstance(v, (int, str)) else str(v) for v in scene["ids"]],
            "unreadable": scene["unreadable"], "unscorable": scene["unscorable"],
            "sensor_faults": scene["faulty"], "faults": dict(scene["faults"]),
            "skipped_anomalous": scene["skipped_anomalous"], "duplicates": scene["duplicates"]}
