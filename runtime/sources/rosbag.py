"""ROS 2 bags (``.mcap``, ``.db3``, or a bag directory; ROS 1 ``.bag`` too) read offline with
``rosbags``: sensor_msgs/Image or CompressedImage colour and depth, paired by header stamp.

URI options: ``rosbag://PATH?rgb=/camera/color/image_raw&depth=/camera/aligned_depth_to_color/image_raw&slop=0.02``.
Without topics, the one colour and the one depth image topic are found by name (a depth topic
names "depth"; an aligned one is preferred).

Depth must be registered to colour (audit 34 #3): a bag whose first pair has its colour and depth in different
optical frames (``header.frame_id``: realsense2_camera records depth/image_rect_raw in camera_depth_optical_frame
unless align_depth.enable:=true) is refused at open (SourceError naming both frames and the aligned topic to record
or name). A depth topic chosen by name that does not say it is aligned ("align" or "regist" in its name) and whose
frames cannot tell (an empty frame_id) is read with a ``source_warning`` saying so. The check reads at most
REGISTRATION_LOOKAHEAD (300) colour and depth messages at open; a bag without a pair among them is opened with a
``source_warning`` and its first pair is checked when iterating reaches it.

A bag cut short (an .mcap without its footer, a .db3 shorter than its header says, a bag directory
without metadata.yaml: what a killed recorder leaves) is read message by message up to its last
intact message (``salvage.py``), and a ``recording_truncated`` event says where it ends.

``RosbagSource.frame_count()``: the frames iterating yields, counted by one pass over the bag's colour
and depth messages (deserialised for their header stamps, paired by the same ``TimePairer``; no image
decoded), so ``edge-ad calibrate --max-frames N`` can spread its N frames over the whole bag.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, Optional

from ..msgconv import msg_to_depth_mm, msg_to_rgb, registration_problem, stamp_seconds
from ..preprocess import DEFAULT_MAX_PIXELS, FrameError
from .base import Frame, Source, SourceError
from .pairing import TimePairer, check_slop, gap_event
from .salvage import needs_salvage, salvage_reader, storage_files

REGISTRATION_LOOKAHEAD = 300   # colour and depth messages read at open for the first pair (5 s of two 30 fps streams)
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
        if not cands:        # e.g. a colour-only recording
            raise SourceError(f"bag has no depth image topic (none named *depth*; its image topics: {sorted(images)}): "
                              "edge-ad scores colour AND depth; if depth was recorded under another name, name it: "
                              "rosbag://PATH?depth=TOPIC&rgb=TOPIC")
        if len(cands) != 1:
            raise SourceError(f"cannot tell which topic is depth among {sorted(cands)}; "
                              "name it: rosbag://PATH?depth=TOPIC&rgb=TOPIC")
        depth = cands[0]
    if rgb is None:
        cands = [t for t in images if t != depth and "depth" not in t.lower()
                 and "infra" not in t.lower() and "error" not in t.lower()]
        preferred = [t for t in cands if "color" in t.lower() or "colour" in t.lower() or "rgb" in t.lower()]
        cands = preferred or cands
        if not cands:        # e.g. a depth-only recording
            raise SourceError(f"bag has no colour image topic besides depth {depth!r} (its image topics: "
                              f"{sorted(images)}): edge-ad scores colour AND depth; if colour was recorded under "
                              "another name, name it: rosbag://PATH?rgb=TOPIC&depth=TOPIC")
        if len(cands) != 1:
            raise SourceError(f"cannot tell which topic is colour among {sorted(cands)}; "
                              "name it: rosbag://PATH?rgb=TOPIC&depth=TOPIC")
        rgb = cands[0]
    return rgb, depth


class RosbagSource(Source):
    """Colour/depth pairs of a ROS bag in time order; undecodable messages become error frames.
    ``stats`` counts unpaired messages once iteration ends; ``frame_count()`` says how many frames
    iterating yields before it does."""

    live = False

    def __init__(self, path, rgb_topic: Optional[str] = None, depth_topic: Optional[str] = None,
                 slop: float = 0.02, max_pixels=DEFAULT_MAX_PIXELS):
        self.slop = check_slop(slop)     # a bad slop is a bad source, refused before anything is read
        self.path = Path(path)
        self.max_pixels = max_pixels
        self.uri = f"rosbag://{self.path}"
        if not self.path.exists():
            raise SourceError(f"bag {self.path} does not exist")
        self.events: list = []      # e.g. recording_truncated, written by the capture loop
        self.warnings: list = []    # for the person running it (a depth topic not known to be registered)
        self.salvage = needs_salvage(self.path)  # cut short: read every intact message ourselves
        if self.salvage and self.path.is_dir() and not (self.path / "metadata.yaml").exists():
            self.events.append({"event": "recording_unclosed", "file": str(self.path),
                                "reason": "metadata.yaml missing (the recorder did not close the bag); "
                                          "its storage files are read directly"})
        topics = self._salvage_topics() if self.salvage else list_topics(self.path)
        self.rgb_topic, self.depth_topic = choose_topics(topics, rgb_topic, depth_topic)
        self.stats: dict = {}
        self._count: Optional[int] = None
        self.count_error: Optional[str] = None
        self._truncated: Optional[dict] = None   # where a bag cut short ends, once salvage read to the cut
        self._registration_pending = False       # the look-ahead found no pair: the first pair iterated is checked
        self._check_registration(chosen=depth_topic is None)

    def _check_registration(self, chosen: bool) -> None:
        """Refuse (SourceError) a bag whose first pair's colour and depth lie in different optical frames
        (``msgconv.registration_problem``); warn (``warnings`` and a ``source_warning`` event) when the depth topic
        was ``chosen`` by name without saying it is aligned and the frames cannot tell. The look-ahead reads at most
        REGISTRATION_LOOKAHEAD colour and depth messages: a bag without a pair among them (streams that never pair
        within slop, or one that starts late) is opened with a ``source_warning`` saying so, and its first pair is
        checked when iterating reaches it (SourceError then), instead of the whole bag being read at open. A bag
        without a readable pair passes (iterating it says what is wrong)."""
        self._chosen = chosen
        first, cut = None, False
        try:
            items = self._items(TimePairer(self.slop), keep=True, record_events=False,
                                limit=REGISTRATION_LOOKAHEAD)
            for it in items:
                if it[0] == "pair":
                    first = it
                    break
                cut = it[0] == "limit"
            items.close()
        except Exception:    # rosbags' own reader errors: iterating reports them
            pass
        if cut:
            self._registration_pending = True
            self._warn(f"no colour/depth pair among the first {REGISTRATION_LOOKAHEAD} messages of {self.rgb_topic} "
                       f"and {self.depth_topic} (slop {self.slop:g} s): whether depth is registered to colour is "
                       "checked at the first pair instead (reading stops there if it is not)")
        if first is not None:
            self._check_pair(first[2], first[4])

    def _check_pair(self, cmsg, dmsg) -> None:
        """``_check_registration``'s verdict on one (colour, depth) message pair: SourceError when they are not
        registered; the ``source_warning`` when depth was chosen by name and nothing says it is registered."""
        self._registration_pending = False
        problem = registration_problem(getattr(cmsg, "header", None), getattr(dmsg, "header", None))
        if problem:
            raise SourceError(f"bag {self.path}: depth topic {self.depth_topic}: {problem}. Record depth aligned to "
                              "colour (realsense2_camera: align_depth.enable:=true, topic "
                              ".../aligned_depth_to_color/image_raw) and read that topic (rosbag://PATH?depth=TOPIC)")
        named = any(w in self.depth_topic.lower() for w in ("align", "regist"))
        c, d = (str(getattr(getattr(m, "header", None), "frame_id", "") or "") for m in (cmsg, dmsg))
        if self._chosen and not named and not (c and d):
            self._warn(f"depth topic {self.depth_topic} was chosen by name; neither its name nor its messages' "
                       "frame_id say it is registered to colour: if it is the depth camera's own image "
                       "(realsense2_camera without align_depth.enable:=true), the scores are not meaningful")

    def _warn(self, warning: str) -> None:
        self.warnings.append(warning)
        self.events.append({"event": "source_warning", "warning": warning})

    def _storage(self) -> list:
        return storage_files(self.path) if self.path.is_dir() else [self.path]

    def _salvage_topics(self) -> dict:
        topics = {}
        for f in self._storage():
            try:
                topics.update(salvage_reader(f).topics())
            except Exception as e:
                raise SourceError(f"cannot salvage bag file {f}: {e}") from None
        if not topics:
            raise SourceError(f"bag {self.path} was cut short before any topic was recorded")
        return topics

    def _salvaged_messages(self, typestore, record_events: bool = True) -> Iterator[tuple]:
        """(topic, bag time ns, message or None, error or None) of every intact message."""
        for f in self._storage():
            reader = salvage_reader(f)
            for topic, msgtype, t, raw in reader.messages():
                if topic not in (self.rgb_topic, self.depth_topic):
                    continue
                try:
                    yield topic, t, typestore.deserialize_cdr(raw, msgtype), None
                except Exception as e:
                    yield topic, t, None, e
            if reader.end.get("reason"):
                if self._truncated is None:
                    self._truncated = dict(reader.end)
                if record_events:
                    self.events.append({"event": "recording_truncated", **reader.end})

    def _rosbags_messages(self, reader) -> Iterator[tuple]:
        conns = [c for c in reader.connections if c.topic in (self.rgb_topic, self.depth_topic)]
        for conn, bag_t, raw in reader.messages(connections=conns):
            try:
                yield conn.topic, bag_t, reader.deserialize(raw, conn.msgtype), None
            except Exception as e:
                yield conn.topic, bag_t, None, e

    def _items(self, pairer: TimePairer, keep: bool = True, record_events: Optional[bool] = None,
               limit: Optional[int] = None) -> Iterator[tuple]:
        """What the bag yields, in order, before any image is decoded: ("error", bag time ns, reason) for an
        undecodable message, ("pair", colour t, colour msg, depth t, depth msg) for each pair ``pairer`` makes.
        ``keep`` False (counting): the pairs carry None for the messages. Salvage records its events when
        ``record_events`` (default: ``keep``). ``limit``: after that many colour and depth messages read, one
        ("limit", limit) and the end (the registration look-ahead)."""
        AnyReader, Stores, get_typestore = _import_rosbags()
        typestore = get_typestore(Stores.ROS2_HUMBLE)
        with contextlib.ExitStack() as stack:
            if self.salvage:
                record = keep if record_events is None else record_events
                msgs = self._salvaged_messages(typestore, record_events=record)
            else:
                reader = stack.enter_context(AnyReader([self.path], default_typestore=typestore))
                msgs = self._rosbags_messages(reader)
            for n, (topic, bag_t, msg, err) in enumerate(msgs, 1):
                if err is not None:
                    yield "error", bag_t, f"undecodable {topic} message at {bag_t}: {err}"
                else:
                    t = stamp_seconds(getattr(msg, "header", None)) or bag_t * 1e-9
                    (pairer.add_colour if topic == self.rgb_topic else pairer.add_depth)(t, msg if keep else None)
                    for pair in pairer.pop_pairs():
                        yield ("pair", *pair)
                if limit is not None and n >= limit:
                    yield "limit", limit
                    return
            pairer.finish()
            for pair in pairer.pop_pairs():
                yield ("pair", *pair)

    def frame_count(self) -> Optional[int]:
        """How many frames iterating the bag yields (its pairs, and an error frame per undecodable message;
        not its unpaired messages), counted by one pass over its colour and depth messages: the reader's own
        pass (deserialised for their stamps, the same ``TimePairer``) without decoding an image; remembered.
        None when that pass fails (a bag rosbags cannot read to its end: iterating it raises SourceError once
        it gets there); ``count_error`` then says why, and is remembered too (no second pass)."""
        if self._count is None and self.count_error is None:
            try:
                self._count = sum(1 for _ in self._items(TimePairer(self.slop), keep=False))
            except Exception as e:   # rosbags' own reader errors, as __iter__ turns into SourceError
                self.count_error = str(e) or type(e).__name__
        return self._count

    def truncation(self) -> Optional[dict]:
        """Where the bag, cut short (read by salvage), ends: its ``recording_truncated`` event's facts, known
        once salvage has read its storage to the cut (iterated to its end or counted: ``frame_count``, which
        is asked here when neither has happened, one pass without decoding an image); None for an intact bag
        (one rosbags reads, or a bag directory without metadata.yaml whose files are whole)."""
        if self.salvage and self._truncated is None:
            self.frame_count()
        return self._truncated

    def __iter__(self) -> Iterator[Frame]:
        pairer = TimePairer(self.slop)
        n = 0
        try:
            for item in self._items(pairer):
                self.events += [gap_event(g, self.uri) for g in pairer.pop_gaps()]   # before the frame after it
                if item[0] == "error":
                    yield Frame(f"msg-{item[1]}", None, None, item[1] * 1e-9, error=item[2])
                    continue
                if self._registration_pending:     # not checked at open: the look-ahead found no pair
                    self._check_pair(item[2], item[4])
                n += 1
                yield self._decode(*item[1:])
        except SourceError:
            raise
        except Exception as e:  # rosbags raises its own reader errors for corrupt files
            raise SourceError(f"error reading bag {self.path}: {e}") from None
        self.events += [gap_event(g, self.uri) for g in pairer.pop_gaps()]
        self.stats.update(pairer.stats, pairs=n)

    def _decode(self, tc, cmsg, td, dmsg) -> Frame:
        fid = f"{tc:.6f}"
        try:
            rgb, depth = msg_to_rgb(cmsg, self.max_pixels), msg_to_depth_mm(dmsg, self.max_pixels)
        except FrameError as e:
            return Frame(fid, None, None, tc, error=str(e))
        return Frame(fid, rgb, depth, tc, meta={"depth_stamp": td})
