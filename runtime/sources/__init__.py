"""Frame sources chosen by URI through one dispatch, ``open_source(uri)``.

  synth://[?n=N&anomaly_rate=R&seed=S]      built-in renderer (the embedded default)
  DIR  or  folder://DIR                     <DIR>/rgb/<id>.(png|jpg|jpeg) + <DIR>/depth/<id>.(png|npy)
  folder://DIR?normal=CLASS[&split=S]       a labelled folder: class folders, truth = class != CLASS
  realsense://[SERIAL][?width=&height=&fps=] a live RealSense camera (pyrealsense2)
  oak://[DEVICE_ID]                         a live OAK-D camera (depthai v3, optional)
  FILE.db3 | FILE.bag                       a RealSense recording (played back, every frame) or,
                                            when it holds sensor_msgs images, a ROS bag
  FILE.mcap | BAG_DIR | rosbag://PATH[?rgb=TOPIC&depth=TOPIC&slop=S]   a ROS 1/2 bag (rosbags)
  camera://                                 the first RGB-D camera found (``edge-ad run --camera``)

Embedding in another program::

    from edge_ad.runtime import Scorer, demo_model_dir
    from edge_ad.runtime.preprocess import FrameError
    from edge_ad.runtime.sources import open_source
    scorer = Scorer.load(demo_model_dir())   # or any exported model directory
    with open_source("realsense://") as src:
        for frame in src:
            if frame.error is not None:              # unreadable: the source says why
                print(frame.id, "not read:", frame.error)
                continue
            try:
                print(frame.id, scorer.score(frame.rgb, frame.depth).score)
            except FrameError as e:                  # a bad frame or a sensor fault (SensorFaultError)
                print(frame.id, "not scored:", e)
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlparse

from ..preprocess import DEFAULT_MAX_PIXELS
from .base import Frame, Source, SourceError, Unopened, is_stream
from .folder import FolderSource

__all__ = ["Frame", "Source", "SourceError", "Unopened", "FolderSource", "open_source", "find_cameras",
           "open_camera", "is_stream", "is_live"]


def _query(uri: str) -> dict:
    q = parse_qs(urlparse(uri).query)
    return {k: v[-1] for k, v in q.items()}


def _number(scheme: str, q: dict, key: str, default=None, kind=int):
    """Query value ``key`` of a ``scheme`` URI as ``kind`` (int: a whole number, float: a number; ``default``
    when absent); ValueError naming the key and the value otherwise (not Python's "invalid literal for int()")."""
    if key not in q:
        return default
    try:
        return kind(q[key])
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise ValueError(f"{scheme} {key} must be {what}, got {q[key]!r}") from None


def _check_keys(scheme: str, q: dict, allowed: set) -> None:
    unknown = set(q) - allowed
    if unknown:
        raise SourceError(f"{scheme} does not take {sorted(unknown)}; it takes {sorted(allowed)}")


def _split(uri: str, scheme: str) -> tuple[str, dict]:
    """'scheme://REST?query' -> (REST, query dict)."""
    rest = uri[len(scheme):]
    rest, _, qs = rest.partition("?")
    return rest, ({k: v[-1] for k, v in parse_qs(qs).items()} if qs else {})


def is_live(source) -> bool:
    """True for a live camera (``Source.live``: frames arrive on their own clock and may be skipped)."""
    return bool(getattr(source, "live", False))


def find_cameras() -> tuple[list, list]:
    """Connected RGB-D cameras and what was checked: ([(kind, uri, name)], [notes])."""
    found, notes = [], []
    try:
        from .realsense import list_devices as rs_list
        devs = rs_list()
        notes.append(f"RealSense: {len(devs)} RGB-D device(s)")
        found += [("realsense", f"realsense://{d['serial']}", d["name"]) for d in devs]
    except SourceError as e:
        notes.append(f"RealSense: not checked ({e})")
    try:
        from .oak import import_dai, list_devices as oak_list
        import_dai()
        devs = oak_list()
        notes.append(f"OAK: {len(devs)} device(s)")
        found += [("oak", f"oak://{d['serial']}", d["name"]) for d in devs]
    except SourceError as e:
        notes.append(f"OAK: not checked ({e})")
    except Exception as e:  # depthai's device query can fail on odd USB states
        notes.append(f"OAK: query failed ({e})")
    return found, notes


def open_camera() -> Source:
    """Open the first RGB-D camera found; SourceError at once when there is none."""
    found, notes = find_cameras()
    if not found:
        raise SourceError("no RGB-D camera found (" + "; ".join(notes) + ")")
    return open_source(found[0][1])


def _is_realsense_recording(path: Path) -> bool:
    """A RealSense recording has '/file_version' and '/device_0/...' topics."""
    from .salvage import SqliteSalvage, sqlite_is_truncated
    if path.suffix == ".db3" and sqlite_is_truncated(path):   # cut short: what SQLite can still read
        topics = SqliteSalvage(path).topics()
        return "/file_version" in topics and any(t.startswith("/device_0/") for t in topics)
    try:
        from .rosbag import list_topics
        topics = list_topics(path)
    except SourceError:
        if path.suffix == ".db3":
            import sqlite3
            try:
                con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
                topics = {r[0]: "" for r in con.execute("SELECT name FROM topics")}
                con.close()
            except sqlite3.Error as e:
                raise SourceError(f"{path} is not a readable .db3 recording: {e}") from None
        else:
            return path.suffix == ".bag"  # without rosbags a .bag can only be played as RealSense
    return "/file_version" in topics and any(t.startswith("/device_0/") for t in topics)


def _open_path(path: Path, uri: str, max_pixels) -> Source:
    if path.is_dir():
        from .salvage import storage_files
        if (path / "metadata.yaml").exists() or storage_files(path):  # a bag (maybe never closed)
            from .rosbag import RosbagSource
            return RosbagSource(path, max_pixels=max_pixels)
        return FolderSource(path, max_pixels=max_pixels)
    if not path.exists():
        raise SourceError(f"cannot open source {uri!r}: no such file or directory")
    if path.suffix in (".db3", ".bag"):
        if _is_realsense_recording(path):
            from .realsense import RealSenseRecording, open_truncated_recording
            from .salvage import sqlite_is_truncated
            if path.suffix == ".db3" and sqlite_is_truncated(path):
                return open_truncated_recording(path)
            return RealSenseRecording(path)
        from .rosbag import RosbagSource
        return RosbagSource(path, max_pixels=max_pixels)
    if path.suffix == ".mcap":
        from .rosbag import RosbagSource
        return RosbagSource(path, max_pixels=max_pixels)
    raise SourceError(f"cannot open source {uri!r}: not a frame folder, recording (.db3/.bag/.mcap) "
                      "or known URI (synth://, realsense://, oak://, rosbag://, camera://)")


def open_source(uri: str, max_pixels=DEFAULT_MAX_PIXELS) -> Source:
    """Open a frame source named by ``uri``. Raises SourceError with the reason when it cannot.
    ``max_pixels``: sources that decode images (folders, ROS bags) refuse larger ones from their
    header, before decoding (an error frame; None: no limit)."""
    uri = str(uri)
    if not uri.strip():    # Path("") is ".": it was read as the working directory ("./rgb/ and ./depth/" expected)
        raise SourceError("empty source: give a frame folder, a recording (.db3, .bag, .mcap) or a URI (synth://, "
                          "realsense://, oak://, rosbag://, camera://, folder://)")
    try:
        return _open(uri, max_pixels)
    except ValueError as e:  # a malformed query value (n=abc) or setting
        raise SourceError(f"bad source {uri!r}: {e}") from None


def _open(uri: str, max_pixels=DEFAULT_MAX_PIXELS) -> Source:
    if uri.startswith("synth://"):
        from .synth_source import SynthSource
        q = _query(uri)
        _check_keys("synth://", q, {"n", "anomaly_rate", "seed", "resolution"})
        return SynthSource(n=_number("synth://", q, "n"),
                           anomaly_rate=_number("synth://", q, "anomaly_rate", 0.2, kind=float),
                           seed=_number("synth://", q, "seed", 0), resolution=_number("synth://", q, "resolution", 64))
    if uri.startswith("realsense://"):
        from .realsense import RealSenseCamera
        serial, q = _split(uri, "realsense://")
        _check_keys("realsense://", q, {"width", "height", "fps"})
        return RealSenseCamera(serial or None, **{k: _number("realsense://", q, k) for k in q})
    if uri.startswith("oak://"):
        from .oak import OakSource
        dev, q = _split(uri, "oak://")
        _check_keys("oak://", q, {"width", "height", "fps"})
        return OakSource(dev or None, **{k: _number("oak://", q, k, kind=float if k == "fps" else int) for k in q})
    if uri.startswith("camera://"):
        return open_camera()
    if uri.startswith("rosbag://"):
        from .rosbag import RosbagSource
        path, q = _split(uri, "rosbag://")
        _check_keys("rosbag://", q, {"rgb", "depth", "slop"})
        return RosbagSource(path, rgb_topic=q.get("rgb"), depth_topic=q.get("depth"),
                            slop=_number("rosbag://", q, "slop", 0.02, kind=float), max_pixels=max_pixels)
    if uri.startswith("folder://"):
        path, q = _split(uri, "folder://")
        if q:
            _check_keys("folder://", q, {"normal", "split"})
            from .labelled import LabelledFolderSource
            return LabelledFolderSource(path, normal=q.get("normal", ""), split=q.get("split"),
                                        max_pixels=max_pixels)
        return FolderSource(path, max_pixels=max_pixels)
    path = uri
    if "://" in path:
        raise SourceError(f"unknown source scheme in {uri!r}; use synth://, realsense://, oak://, "
                          "rosbag://, camera://, folder:// or a path")
    return _open_path(Path(path), uri, max_pixels)
