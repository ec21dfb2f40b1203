"""ROS 2 bags (``.mcap``, ``.db3``, or a bag directory; ROS 1 ``.bag`` too) read offline with
``rosbags``: sensor_msgs/Image or CompressedImage colour and depth, paired by header stamp.

URI options: ``rosbag://PATH?rgb=/camera/color/image_raw&depth=/camera/aligned_depth_to_color/image_raw&slop=0.02``.
Without topics, the one colour and the one depth image topic are found by name (a depth topic
names "depth"; an aligned one is preferred).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional

from ..msgconv import msg_to_depth_mm, msg_to_rgb, stamp_seconds
from ..preprocess import DEFAULT_MAX_PIXELS, FrameError
from .base import Frame, Source, SourceError
from .pairing import TimePairer

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage",
               "sensor_msgs/Image", "sensor_msgs/CompressedImage")


def _import_rosbags():
    try:
        from rosbags.highlevel import AnyReader
        from rosbags.typesys import Stores, get_typestore
    except ImportError as e:
        raise SourceError(f"reading ROS bags needs the rosbags package: pip install 'edge-ad[camera]' "
                          f"({e})") from None
    return AnyReader, Stores, get_typestore


def list_topics(path) -> dict:
    """{topic: msgtype} of a bag (any format rosbags reads)."""
    AnyReader, Stores, get_typestore = _import_rosbags()
    try:
        with AnyReader([Path(path)], default_typestore=get_typestore(Stores.ROS2_HUMBLE)) as r:
            return {c.topic: c.msgtype for c in r.connections}
    except Exception as e:
        raise SourceError(f"cannot read bag {path}: {e}") from None


def choose_topics(topics: dict, rgb: Optional[str] = None, depth: Optional[str] = None) -> tuple:
    """Pick (colour topic, depth topic) among image topics; explicit names are checked."""
    images = {t: m for t, m in topics.items() if m in IMAGE_TYPES}
    for name, given in (("rgb", rgb), ("depth", depth)):
        if given is not None and given not in images:
            raise SourceError(f"bag has no image topic {given!r} for {name}; image topics: {sorted(images)}")
    if depth is None:
        cands = [t for t in images if "depth" in t.lower() and t != rgb]
        aligned = [t for t in cands if "align" in t.lower()]
        cands = aligned or cands
        if len(cands) != 1:
            raise SourceError(f"cannot tell which topic is depth among {sorted(images)}; "
                              "name it: rosbag://PATH?depth=TOPIC&rgb=TOPIC")
        depth = cands[0]
    if rgb is None:
        cands = [t for t in images if t != depth and "depth" not in t.lower()
                 and "infra" not in t.lower() and "error" not in t.lower()]
        preferred = [t for t in cands if "color" in t.lower() or "colour" in t.lower() or "rgb" in t.lower()]
        cands = preferred or cands
        if len(cands) != 1:
            raise SourceError(f"cannot tell which topic is colour among {sorted(images)}; "
                              "name it: rosbag://PATH?rgb=TOPIC&depth=TOPIC")
        rgb = cands[0]
    return rgb, depth


class RosbagSource(Source):
    """Colour/depth pairs of a ROS bag in time order; undecodable messages become error frames.
    ``stats`` counts unpaired messages once iteration ends."""

    live = False

    def __init__(self, path, rgb_topic: Optional[str] = None, depth_topic: Optional[str] = None,
                 slop: float = 0.02, max_pixels=DEFAULT_MAX_PIXELS):
        self.path = Path(path)
        self.max_pixels = max_pixels
        self.uri = f"rosbag://{self.path}"
        if not self.path.exists():
            raise SourceError(f"bag {self.path} does not exist")
        self.rgb_topic, self.depth_topic = choose_topics(list_topics(self.path), rgb_topic, depth_topic)
        self.slop = float(slop)
        self.stats: dict = {}

    def __iter__(self) -> Iterator[Frame]:
        AnyReader, Stores, get_typestore = _import_rosbags()
        pairer = TimePairer(self.slop)
        n = 0
        try:
            with AnyReader([self.path], default_typestore=get_typestore(Stores.ROS2_HUMBLE)) as reader:
                conns = [c for c in reader.connections if c.topic in (self.rgb_topic, self.depth_topic)]
                for conn, bag_t, raw in reader.messages(connections=conns):
                    try:
                        msg = reader.deserialize(raw, conn.msgtype)
                        t = stamp_seconds(getattr(msg, "header", None)) or bag_t * 1e-9
                    except Exception as e:
                        yield Frame(f"msg-{bag_t}", None, None, bag_t * 1e-9,
                                    error=f"undecodable {conn.topic} message at {bag_t}: {e}")
                        continue
                    (pairer.add_colour if conn.topic == self.rgb_topic else pairer.add_depth)(t, msg)
                    for fr in self._decode(pairer):
                        n += 1
                        yield fr
                pairer.finish()
                for fr in self._decode(pairer):
                    n += 1
                    yield fr
        except SourceError:
            raise
        except Exception as e:  # rosbags raises its own reader errors for corrupt files
            raise SourceError(f"error reading bag {self.path}: {e}") from None
        self.stats.update(pairer.stats, pairs=n)

    def _decode(self, pairer):
        for tc, cmsg, td, dmsg in pairer.pop_pairs():
            fid = f"{tc:.6f}"
            try:
                rgb, depth = msg_to_rgb(cmsg, self.max_pixels), msg_to_depth_mm(dmsg, self.max_pixels)
            except FrameError as e:
                yield Frame(fid, None, None, tc, error=str(e))
                continue
            yield Frame(fid, rgb, depth, tc, meta={"depth_stamp": td})
