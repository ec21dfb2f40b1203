"""A ROS 2 bag's and a RealSense recording's frame count (``Source.frame_count``), known before they are read, so
``edge-ad calibrate --max-frames N`` spreads its N frames over them (session 25): the count equals the frames
iterating yields, for real files written here (rosbags; librealsense's software device + recorder) with
unpaired, dropped and undecodable messages, a bag cut short (salvage), a recording cut short."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edge_ad.runtime import msgconv
from edge_ad.runtime.calibrate import source_length
from edge_ad.runtime.sources import SourceError, open_source

from test_salvage import cut, storage_file  # noqa: E402
from test_sources import d8_to_mm, kinect_frames, record_realsense_db3, write_ros2_bag  # noqa: E402

T0 = 1_700_000_000_000_000_000
DT = 33_333_333          # ns between frames (30 fps); the reader pairs within slop 0.02 s


def write_messages(path: Path, frames, plan, storage: str = "sqlite3"):
    """A ROS 2 bag of colour and depth messages as ``plan`` says: [(kind, frame k, stamp offset ns)], kind
    "c" / "d" (a message of frame k's colour / depth, stamped T0 + k DT + offset) or "bad" (a colour message
    cut to 20 bytes: undecodable)."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_HUMBLE)
    Img, Header, Time = ts.types["sensor_msgs/msg/Image"], ts.types["std_msgs/msg/Header"], \
        ts.types["builtin_interfaces/msg/Time"]
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as w:
        cc = w.add_connection("/camera/color/image_raw", "sensor_msgs/msg/Image", typestore=ts)
        dc = w.add_connection("/camera/aligned_depth_to_color/image_raw", "sensor_msgs/msg/Image", typestore=ts)
        for kind, k, off in plan:
            t = T0 + k * DT + off
            hdr = Header(stamp=Time(sec=t // 10**9, nanosec=t % 10**9), frame_id="cam")
            _, rgb, mm = frames[k % len(frames)]
            if kind == "d":
                conn, msg = dc, Img(header=hdr, **msgconv.numpy_to_image_fields(mm, "16UC1"))
            else:
                conn, msg = cc, Img(header=hdr, **msgconv.numpy_to_image_fields(rgb, "rgb8"))
            raw = ts.serialize_cdr(msg, conn.msgtype)
            w.write(conn, t, raw[:20] if kind == "bad" else raw)


def messy_plan(n: int) -> list:
    """n frames' colour and depth, with: frame 3's depth dropped, frame 5's colour dropped, frame 8's depth
    25 ms late (beyond the 20 ms slop: frame 8's colour and depth both unpaired), frame 11's colour
    undecodable, a stretch (frames 14-16) of colour only, two depth messages after the last colour."""
    plan = []
    for k in range(n):
        if k != 5:
            plan.append(("bad" if k == 11 else "c", k, 0))
        if k not in (3, 14, 15, 16):
            plan.append(("d", k, 25_000_000 if k == 8 else (2_000_000 if k % 2 else -2_000_000)))
    plan += [("d", n, 0), ("d", n + 1, 0)]
    return sorted(plan, key=lambda m: m[1] * DT + m[2])


@pytest.fixture(scope="module")
def frames(kinect_root):
    return [(i, rgb, d8_to_mm(d8)) for i, rgb, d8 in kinect_frames(kinect_root, 30)]


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_a_bags_count_is_the_frames_it_yields_with_unpaired_and_undecodable_messages(tmp_path, frames, storage):
    """Unpaired colour and depth, dropped messages, an undecodable one: frame_count() (before reading, no image
    decoded) == the frames iterating yields, which is neither the colour nor the depth messages' number."""
    bag = tmp_path / "bag"
    plan = messy_plan(24)
    write_messages(bag, frames, plan, storage)
    src = open_source(str(bag))
    n = src.frame_count()
    got = list(src)
    assert n == len(got) == source_length(src)
    assert src.stats == {"unpaired_colour": 5, "unpaired_depth": 5, "pairs": 17}     # colour 3, 8, 14-16; depth 5, 8, 11, 24, 25
    assert sum(f.error is not None for f in got) == 1 and "undecodable" in next(f.error for f in got if f.error)
    colour = sum(kind != "d" for kind, _, _ in plan)
    depth = sum(kind == "d" for kind, _, _ in plan)
    assert n not in (colour, depth) and n == src.stats["pairs"] + 1
    # the plain bags the other tests write: every message paired
    write_ros2_bag(tmp_path / "plain", frames[:7], storage=storage)
    src = open_source(str(tmp_path / "plain"))
    assert src.frame_count() == len(list(src)) == 7


def counting_passes(monkeypatch, owner, name, fail_after=None) -> list:
    """Wrap ``owner.name`` (a class's generator method, or a module's function returning an iterable): each call
    counted in the list returned; ``fail_after``: the iterable raises RuntimeError("Truncated record ...") after
    that many items (a bag whose record is corrupt part-way, as rosbags reports it)."""
    orig, calls = getattr(owner, name), []

    def failing(items):
        for i, item in enumerate(items):
            if i == fail_after:
                raise RuntimeError("Truncated record at offset 487050")
            yield item

    def wrapped(*a, **kw):
        calls.append(name)
        out = orig(*a, **kw)
        return out if fail_after is None else failing(out)
    monkeypatch.setattr(owner, name, wrapped)
    return calls


def test_a_count_is_remembered_no_second_pass(tmp_path, frames, monkeypatch):
    """frame_count() twice, then source_length (what calibrate asks): one counting pass over the bag (its
    reader's _items), one playback of the recording (_played_stamps); iterating is one more pass."""
    from edge_ad.runtime.sources import realsense
    from edge_ad.runtime.sources.rosbag import RosbagSource
    write_ros2_bag(tmp_path / "bag", frames[:7])
    passes = counting_passes(monkeypatch, RosbagSource, "_items")
    src = open_source(str(tmp_path / "bag"))
    # passes: the open's read of the first pair (its registration check, audit 34 #3), then one count
    assert src.frame_count() == src.frame_count() == source_length(src) == 7 and len(passes) == 2
    assert len(list(src)) == 7 and len(passes) == 3
    pytest.importorskip("pyrealsense2")
    record_realsense_db3(tmp_path / "rec.db3", frames[:6])
    plays = counting_passes(monkeypatch, realsense, "_played_stamps")
    with open_source(str(tmp_path / "rec.db3")) as rec:
        assert rec.frame_count() == rec.frame_count() == source_length(rec) == 6 and len(plays) == 1
        assert rec.count_error is None


def test_a_bag_that_cannot_be_counted_to_its_end_is_counted_once_and_calibrate_says_why(tmp_path, monkeypatch):
    """A bag whose reader fails part-way (review 25 #2: a corrupt record in its last chunk; here rosbags' message
    stream raises after 40 messages): frame_count() is None with count_error naming the error, after ONE pass
    however often asked (the CLI and calibrate_model both ask); edge-ad calibrate --max-frames 10 logs that it
    could not count the bag, why, and that it uses its first 10 frames (before: silently, after two counting
    passes)."""
    from edge_ad.cli import main
    from edge_ad.runtime.sources.rosbag import RosbagSource
    from test_calibrate import _demo_copy, _synth_frames
    synth = [(fr.id, fr.rgb, d8_to_mm(fr.depth)) for fr in _synth_frames(30)]
    bag = tmp_path / "scene-bag"
    write_ros2_bag(bag, synth)
    with open_source(str(bag)) as src:
        ids = [f.id for f in src]
    passes = counting_passes(monkeypatch, RosbagSource, "_rosbags_messages", fail_after=40)
    src = open_source(str(bag))
    assert src.frame_count() is None and src.frame_count() is None and source_length(src) is None
    # the open's first pair, one count
    assert src.count_error == "Truncated record at offset 487050" and len(passes) == 2
    with pytest.raises(SourceError, match="Truncated record"):
        list(src)
    passes.clear()
    model, out = _demo_copy(tmp_path), tmp_path / "cal"
    r = CliRunner().invoke(main, ["calibrate", "--model", str(model), "--source", str(bag), "--out", str(out),
                                  "--max-shift", "0", "--min-frames", "5", "--max-frames", "10"])
    assert r.exit_code == 0, r.output
    assert len(passes) == 3, passes     # the open's first pair, one count (remembered), one read of the first 10
    assert (f"could not count the frames of rosbag://{bag} (Truncated record at offset 487050): using its first "
            "10 frames, one stretch of it (--every K: every K-th frame instead)") in r.output
    c = json.loads((out / "manifest.json").read_text())["calibration"]
    assert (c["every"], c["source_length"], c["frame_ids"]) == (1, None, ids[:10])


def test_a_damaged_bags_count_is_what_salvage_reads_and_records_no_event(tmp_path, frames):
    """An .mcap cut inside a chunk and a .db3 cut short (a killed recorder): the count is the salvaged frames;
    counting adds no recording_truncated event (iterating adds one, as before)."""
    for storage, frac in (("mcap", 0.6), ("sqlite3", 0.6)):
        bag = tmp_path / storage
        write_ros2_bag(bag, frames, storage=storage)
        data = storage_file(bag)
        killed = cut(data, tmp_path / f"k-{storage}" / data.name, int(data.stat().st_size * frac))
        src = open_source(str(killed))
        assert src.salvage
        n = src.frame_count()
        assert src.events == []
        got = list(src)
        assert n == len(got) and 0.6 * len(frames) - 6 <= n < len(frames)
        assert [e["event"] for e in src.events] == ["recording_truncated"]


def test_a_realsense_recordings_count_is_the_frames_it_yields(tmp_path, frames):
    """A recording whose depth misses frames 2 and 7 and whose colour misses frame 4 (each unpaired), and the
    same recording cut short (played from its salvaged copy): frame_count() == the frames played."""
    path = tmp_path / "rec.db3"
    record_realsense_db3(path, frames[:16], skip={(2, "depth"), (7, "depth"), (4, "colour")})
    with open_source(str(path)) as src:
        assert type(src).__name__ == "RealSenseRecording"
        n = src.frame_count()
        got = list(src)
    assert n == len(got) == 13 and [f.id for f in got] == [str(k) for k in range(16) if k not in (2, 4, 7)]
    assert src.stats == {"unpaired_colour": 2, "unpaired_depth": 1}
    full = tmp_path / "full.db3"
    record_realsense_db3(full, frames)
    killed = cut(full, tmp_path / "killed.db3", int(full.stat().st_size * 0.6))
    with open_source(str(killed)) as src:
        n = src.frame_count()
        got = list(src)
    assert n == len(got) and 0.6 * len(frames) - 6 <= n < len(frames)


def test_calibrate_spreads_its_frames_over_a_bag(tmp_path):
    """edge-ad calibrate --max-frames 10 on a ROS 2 bag of 30 frames (32 colour messages, 2 of them unpaired):
    10 frames spread evenly over the 30 it holds (0, 3, ..., 27), said in the log; the record holds the bag's
    length and the ids of those frames. Before session 25: a bag had no length, so its first 10."""
    from edge_ad.cli import main
    from test_calibrate import _demo_copy, _synth_frames
    synth = [(fr.id, fr.rgb, d8_to_mm(fr.depth)) for fr in _synth_frames(32)]
    plan = [("c", k, 0) for k in range(32)] + [("d", k, 1_000_000) for k in range(32) if k not in (4, 9)]
    bag = tmp_path / "scene-bag"
    write_messages(bag, synth, sorted(plan, key=lambda m: m[1] * DT + m[2]))
    with open_source(str(bag)) as src:
        ids = [f.id for f in src]
    assert len(ids) == 30
    model, out = _demo_copy(tmp_path), tmp_path / "cal"
    r = CliRunner().invoke(main, ["calibrate", "--model", str(model), "--source", str(bag), "--out", str(out),
                                  "--max-shift", "0", "--min-frames", "5", "--max-frames", "10"])
    # the 2 colour messages without depth are single drops, no stall (audit 27 #22): counted only, exit 0
    assert r.exit_code == 0 and "stream gap" not in r.output, r.output
    assert (f"counting the frames of {bag} (one pass over its messages, no image decoded) ...\n"
            "  30 frames, counted in ") in r.output       # before the plan line (review 25 #4)
    assert "using 10 of 30 frames, spread evenly over the source (one every 3" in r.output
    assert "frame 28/28 read" in r.output and "10 of 10 frames used (spread over 28 read" in r.output
    c = json.loads((out / "manifest.json").read_text())["calibration"]
    assert (c["every"], c["source_length"], c["frames_read"], c["frames_selected"]) == (None, 30, 28, 10)
    assert c["frame_ids"] == ids[0:30:3] and c["stream_gaps"] is None


def test_calibrate_every_k_does_not_count_a_bag(tmp_path, monkeypatch):
    """--every K picks the frames without the bag's length: no counting pass (review 25 #4: it cost a pass for
    the log's "of L" only), one read of the 19 frames every 2nd of 10 needs; nothing said about counting."""
    from edge_ad.cli import main
    from edge_ad.runtime.sources.rosbag import RosbagSource
    from test_calibrate import _demo_copy, _synth_frames
    bag = tmp_path / "scene-bag"
    write_ros2_bag(bag, [(fr.id, fr.rgb, d8_to_mm(fr.depth)) for fr in _synth_frames(30)])
    passes = counting_passes(monkeypatch, RosbagSource, "_items")
    model, out = _demo_copy(tmp_path), tmp_path / "cal"
    r = CliRunner().invoke(main, ["calibrate", "--model", str(model), "--source", str(bag), "--out", str(out),
                                  "--max-shift", "0", "--min-frames", "5", "--max-frames", "10", "--every", "2"])
    assert r.exit_code == 0, r.output
    # the open's first pair, one read
    assert len(passes) == 2 and "counting" not in r.output and "could not count" not in r.output
    assert "using every 2nd frame (at most 10: spread over 19 frames of the source)" in r.output
    c = json.loads((out / "manifest.json").read_text())["calibration"]
    assert (c["every"], c["source_length"], c["frames_read"], c["frames_selected"]) == (2, None, 19, 10)


def test_pairs_do_not_depend_on_how_the_two_streams_interleave():
    """What a RealSense recording's count rests on: its player delivers colour and depth from two threads, so
    the count's playback and the reader's may interleave the streams differently; TimePairer makes the same
    pairs (and drops) whatever the interleaving, each stream in its own order (within its 64 pending items)."""
    from edge_ad.runtime.sources.pairing import TimePairer
    rng = np.random.default_rng(3)
    for trial in range(40):
        n = int(rng.integers(5, 60))
        colour = sorted(float(t) for t in np.arange(n) * 33.3 + rng.normal(0, 4, n))
        colour = [t for t in colour if rng.random() > 0.15]                 # dropped colour frames
        depth = sorted(float(t) for t in np.arange(n) * 33.3 + rng.normal(0, 12, n) if rng.random() > 0.15)
        results = set()
        for _ in range(6):
            order = rng.permutation([1] * len(colour) + [0] * len(depth))   # one interleaving of the two streams
            p, ci, di, pairs = TimePairer(16.7), iter(colour), iter(depth), []
            for is_colour in order:
                if is_colour:
                    t = next(ci)
                    p.add_colour(t, t)
                else:
                    t = next(di)
                    p.add_depth(t, t)
                pairs += [(c, d) for c, _, d, _ in p.pop_pairs()]
            p.finish()
            pairs += [(c, d) for c, _, d, _ in p.pop_pairs()]
            results.add((tuple(pairs), p.unpaired_colour, p.unpaired_depth))
        assert len(results) == 1, (trial, results)
