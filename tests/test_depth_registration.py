"""Depth not registered to colour (audit 34 #3): a ROS 2 bag recorded with realsense2_camera's defaults (align_depth
off) holds depth/image_rect_raw in the depth camera's own optical frame; scored as if registered, sphere's normal
frames drew 52 % false alarms without a word. The bag reader refuses it at open and the ROS 2 node marks each such
pair unscorable, by one check of the messages' header.frame_id (runtime.msgconv.registration_problem)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from edge_ad.runtime import msgconv
from edge_ad.runtime.sources import open_source
from edge_ad.runtime.sources.base import SourceError
from test_sources import d8_to_mm, kinect_frames, write_ros2_bag

COLOUR, DEPTH = "camera_color_optical_frame", "camera_depth_optical_frame"
RS_DEFAULT = ("/camera/camera/color/image_raw", "/camera/camera/depth/image_rect_raw")   # realsense2_camera, no align


def parallax_frames(kinect_root, n: int = 6) -> list:
    """n real sphere frames, depth in mm moved 2 px sideways (the depth camera ~15 mm beside the colour camera:
    audit34's unaligned_bag.py)."""
    out = []
    for i, rgb, d8 in kinect_frames(kinect_root, n, "sphere"):
        mm = np.roll(d8_to_mm(d8), 2, axis=1)
        mm[:, :2] = 0
        out.append((i, rgb, mm))
    return out


def test_registration_problem_by_hand():
    h = lambda fid: SimpleNamespace(frame_id=fid)            # noqa: E731
    text = msgconv.registration_problem(h(COLOUR), h(DEPTH))
    assert COLOUR in text and DEPTH in text and "not registered" in text
    for c, d in ((COLOUR, COLOUR), ("/" + COLOUR, COLOUR), ("", DEPTH), (COLOUR, "")):
        assert msgconv.registration_problem(h(c), h(d)) is None, (c, d)
    assert msgconv.registration_problem(None, h(DEPTH)) is None                  # no header: cannot tell


def test_a_bag_recorded_without_align_depth_is_refused_at_open(tmp_path, kinect_root):
    bag = tmp_path / "unaligned"
    write_ros2_bag(bag, parallax_frames(kinect_root), topics=RS_DEFAULT, frame_ids=(COLOUR, DEPTH))
    for uri in (str(bag), f"rosbag://{bag}?depth={RS_DEFAULT[1]}"):             # chosen by name, or named
        with pytest.raises(SourceError) as e:
            open_source(uri)
        msg = str(e.value)
        assert RS_DEFAULT[1] in msg and COLOUR in msg and DEPTH in msg and "not registered" in msg
        assert "align_depth.enable:=true" in msg and "?depth=" in msg


def test_registered_bags_are_read_and_unknown_ones_said(tmp_path, kinect_root):
    """The tests' aligned bag reads as before (no warning); depth/image_rect_raw in the colour's frame (a driver
    registering on the device) too; with empty frame_ids, a depth topic chosen by a name that does not say
    "aligned" is read with a source_warning, one that does without."""
    frames = [(i, rgb, d8_to_mm(d8)) for i, rgb, d8 in kinect_frames(kinect_root, 4)]
    cases = {"aligned": ({}, False), "same-frame": ({"topics": RS_DEFAULT, "frame_ids": (COLOUR, COLOUR)}, False),
             "unknown": ({"topics": RS_DEFAULT, "frame_ids": ("", "")}, True),
             "unknown-aligned": ({"frame_ids": ("", "")}, False)}
    for name, (kw, warns) in cases.items():
        write_ros2_bag(tmp_path / name, frames, **kw)
        src = open_source(str(tmp_path / name))
        assert bool(src.warnings) == warns, name
        assert src.events == [{"event": "source_warning", "warning": w} for w in src.warnings]
        if warns:
            assert RS_DEFAULT[1] in src.warnings[0] and "registered" in src.warnings[0]
        got = list(src)
        assert len(got) == 4 and all(f.error is None for f in got), name
        assert all(np.array_equal(f.depth, mm) for f, (_, _, mm) in zip(got, frames))


def test_the_ros2_node_marks_an_unregistered_pair_unscorable(kinect_root):
    from edge_ad.jetson import ros2_node
    _, rgb, d8 = kinect_frames(kinect_root, 1, "sphere")[0]
    hdr = lambda fid: SimpleNamespace(frame_id=fid, stamp=SimpleNamespace(sec=100, nanosec=0))   # noqa: E731
    msg = lambda fid, arr, enc: SimpleNamespace(header=hdr(fid),                                      # noqa: E731
                                                **msgconv.numpy_to_image_fields(arr, enc))
    cmsg = msg(COLOUR, np.ascontiguousarray(rgb[:, :, ::-1]), "bgr8")
    bad = ros2_node.frame_from_msgs(cmsg, msg(DEPTH, d8_to_mm(d8), "16UC1"), "1")
    assert bad.rgb is None and bad.timestamp == 100.0
    assert "not registered" in bad.error and DEPTH in bad.error and "align_depth.enable:=true" in bad.error
    good = ros2_node.frame_from_msgs(cmsg, msg(COLOUR, d8_to_mm(d8), "16UC1"), "2")
    assert good.error is None and np.array_equal(good.rgb, rgb) and np.array_equal(good.depth, d8_to_mm(d8))


def test_calibrate_says_the_sources_warning_at_open(tmp_path, kinect_root, kinect_export):
    """edge-ad calibrate echoes what the source said at open (final read of session 34: RosbagSource.warnings were
    printed by edge-ad run only): a depth topic chosen by a name that does not say "aligned", frame_ids empty."""
    from click.testing import CliRunner

    from edge_ad.cli import main
    frames = [(i, rgb, d8_to_mm(d8)) for i, rgb, d8 in kinect_frames(kinect_root, 4)]
    write_ros2_bag(tmp_path / "unknown", frames, topics=RS_DEFAULT, frame_ids=("", ""))
    r = CliRunner().invoke(main, ["calibrate", "--model", str(kinect_export), "--source", str(tmp_path / "unknown"),
                                  "--out", str(tmp_path / "cal")])
    assert r.exit_code == 1, r.output                        # 4 frames: fewer than --min-frames 20, nothing written
    assert f"warning: depth topic {RS_DEFAULT[1]} was chosen by name" in r.output
    assert not (tmp_path / "cal").exists()


def test_calibrate_refuses_both_colour_gain_switches(tmp_path, kinect_export):
    from click.testing import CliRunner

    from edge_ad.cli import main
    r = CliRunner().invoke(main, ["calibrate", "--model", str(kinect_export), "--source", "synth://?n=30",
                                  "--out", str(tmp_path / "cal"), "--no-colour-gain", "--colour-gain-unchecked"])
    assert r.exit_code == 2 and "--colour-gain-unchecked" in r.output and "--no-colour-gain" in r.output, r.output


def _tiny_frames(n: int) -> list:
    rng = np.random.default_rng(0)
    return [(i, rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), np.full((8, 8), 400, np.uint16)) for i in range(n)]


def test_the_registration_look_ahead_is_bounded(tmp_path, monkeypatch):
    """Session 34's final read: the look-ahead for the first pair read a never-pairing bag to its end at open. It
    reads at most REGISTRATION_LOOKAHEAD (300) colour and depth messages, then opens the bag with a source_warning
    saying the check moved to the first pair; iterating checks that pair: a bag whose streams pair only after 320
    messages, unregistered, is refused there (SourceError), registered it is read whole. Failed before: all 400
    messages of the never-pairing bag were read at open, without a word."""
    from edge_ad.runtime.sources import rosbag
    from test_sources import write_ros2_bag
    read = []
    orig = rosbag.RosbagSource._rosbags_messages

    def counted(self, reader):
        for m in orig(self, reader):
            read.append(m[0])
            yield m
    monkeypatch.setattr(rosbag.RosbagSource, "_rosbags_messages", counted)
    assert rosbag.REGISTRATION_LOOKAHEAD == 300
    never = tmp_path / "never"
    write_ros2_bag(never, _tiny_frames(200), frame_ids=(COLOUR, DEPTH))          # depth 3 ms off, slop 1 ms
    src = open_source(f"rosbag://{never}?slop=0.001")
    assert len(read) == 300 and len(src.warnings) == 1
    assert "no colour/depth pair among the first 300 messages" in src.warnings[0] and "slop 0.001 s" in src.warnings[0]
    assert src.events == [{"event": "source_warning", "warning": src.warnings[0]}]
    assert list(src) == [] and src.stats["pairs"] == 0                             # nothing pairs: nothing to refuse
    late = [3_000_000] * 160 + [0] * 40                                              # pairs from message 321 on
    for fids, refused in (((COLOUR, DEPTH), True), (("cam", "cam"), False)):
        bag = tmp_path / f"late-{refused}"
        write_ros2_bag(bag, _tiny_frames(200), jitter_ns=late, frame_ids=fids)
        read.clear()
        src = open_source(f"rosbag://{bag}?slop=0.001")
        assert len(read) == 300 and "first 300 messages" in src.warnings[0]
        if refused:
            with pytest.raises(SourceError, match=f"{DEPTH}.*not registered.*align_depth.enable:=true"):
                list(src)
        else:
            assert len(list(src)) == 40 and len(src.warnings) == 1
    short = tmp_path / "short"                                    # pairs within the look-ahead: checked at open
    write_ros2_bag(short, _tiny_frames(200), jitter_ns=[3_000_000] * 100 + [0] * 100, frame_ids=(COLOUR, DEPTH))
    read.clear()
    with pytest.raises(SourceError, match="not registered"):
        open_source(f"rosbag://{short}?slop=0.001")
    assert len(read) <= 202
