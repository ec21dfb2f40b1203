"""Recordings whose writer was killed (issue 16, item 6): real recordings written here (rosbags,
librealsense's software device + recorder), then cut as a killed recorder leaves them; every
intact message is read and a ``recording_truncated`` event says where the recording ends."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_ad.runtime.capture import run_capture
from edge_ad.runtime.sources import open_source
from edge_ad.runtime.sources.salvage import MCAP_MAGIC, McapSalvage, _records

from test_capture import FakeScorer, read_lines  # noqa: E402
from test_sources import d8_to_mm, kinect_frames, record_realsense_db3, write_ros2_bag  # noqa: E402


@pytest.fixture(scope="module")
def frames(kinect_root):
    # 60 frames of 20 KB: rosbags closes an MCAP chunk at 1 MiB, so the bag has two chunks
    return [(i, rgb, d8_to_mm(d8)) for i, rgb, d8 in kinect_frames(kinect_root, 60)]


def storage_file(bag: Path) -> Path:
    return next(p for p in bag.iterdir() if p.suffix in (".mcap", ".db3"))


def cut(src: Path, dst: Path, size: int) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst)
    with open(dst, "r+b") as f:
        f.truncate(size)
    return dst


def assert_prefix(got, frames, at_least: int):
    """The salvaged frames are the recording's first frames, pixel for pixel, and at least that many."""
    assert all(f.error is None for f in got)
    assert at_least <= len(got) <= len(frames)
    for f, (_, rgb, mm) in zip(got, frames):
        assert np.array_equal(f.rgb, rgb) and np.array_equal(f.depth, mm)


def test_mcap_without_footer_every_chunk_intact(tmp_path, frames):
    bag = tmp_path / "bag"
    write_ros2_bag(bag, frames, storage="mcap")
    data = storage_file(bag)
    buf = data.read_bytes()
    ops = [(off, op) for off, op, _, _ in _records(buf, len(MCAP_MAGIC))]
    assert sum(op == 0x06 for _, op in ops) >= 2                      # two chunks
    data_end = next(off for off, op in ops if op == 0x0F)            # DataEnd: the summary follows
    killed = cut(data, tmp_path / "killed" / "rec.mcap", data_end)   # no summary, no footer
    src = open_source(str(killed))
    got = list(src)
    assert len(got) == len(frames)
    assert_prefix(got, frames, len(frames))
    ev = src.events[-1]
    assert ev["event"] == "recording_truncated" and "footer missing" in ev["reason"]
    assert ev["messages"] == 2 * len(frames) and ev["intact_bytes"] == data_end
    # the bag directory the recorder left: no metadata.yaml either
    (tmp_path / "killed" / "metadata.yaml").unlink(missing_ok=True)
    src = open_source(str(tmp_path / "killed"))
    assert len(list(src)) == len(frames)
    assert [e["event"] for e in src.events] == ["recording_unclosed", "recording_truncated"]


@pytest.mark.parametrize("frac", [0.3, 0.8])
def test_mcap_cut_inside_a_chunk(tmp_path, frames, frac):
    bag = tmp_path / "bag"
    write_ros2_bag(bag, frames, storage="mcap")
    data = storage_file(bag)
    killed = cut(data, tmp_path / "k.mcap", int(data.stat().st_size * frac))
    src = open_source(str(killed))
    got = list(src)
    assert_prefix(got, frames, int(len(frames) * frac) - 3)
    ev = src.events[-1]
    assert ev["event"] == "recording_truncated" and "cut inside a record" in ev["reason"]
    # review 26 #7 nit: the reason says of what ("at byte 43" alone did not)
    assert f"of {ev['file_bytes']} (a chunk of messages: the writer stopped while writing it" in ev["reason"], ev
    assert ev["messages"] >= 2 * len(got) and ev["last_message_ns"] > 0
    # intact_bytes: the file's first bytes that hold every message read, and no fewer (audit 17 #7: it
    # said 43, the header, for 36 messages read from a chunk cut short)
    assert ev["intact_bytes"] < ev["file_bytes"]
    for size, n in ((ev["intact_bytes"], ev["messages"]), (ev["intact_bytes"] - 1, ev["messages"] - 1)):
        salv = McapSalvage(cut(killed, tmp_path / f"{size}.mcap", size))
        assert sum(1 for _ in salv.messages()) == n, (size, n)


def test_ros2_db3_truncated(tmp_path, frames):
    bag = tmp_path / "bag"
    write_ros2_bag(bag, frames, storage="sqlite3")
    data = storage_file(bag)
    killed = cut(data, tmp_path / "k.db3", int(data.stat().st_size * 0.6))
    out = tmp_path / "r.jsonl"
    s = run_capture(open_source(str(killed)), FakeScorer(), out=out, handle_signals=False)
    lines = read_lines(out)
    ev = [r for r in lines if r["type"] == "event"]
    assert [e["event"] for e in ev] == ["recording_truncated"]
    assert ev[0]["file_bytes"] < ev[0]["expected_bytes"] and ev[0]["messages"] >= 2 * 0.6 * len(frames) - 12
    assert s["frames_scored"] >= 0.6 * len(frames) - 6 and s["frame_errors"] == 0
    got = list(open_source(str(killed)))
    assert_prefix(got, frames, int(0.6 * len(frames)) - 6)


def test_realsense_db3_truncated(tmp_path, frames):
    rec = tmp_path / "rec.db3"
    record_realsense_db3(rec, frames[:40])
    killed = cut(rec, tmp_path / "killed.db3", int(rec.stat().st_size * 0.6))
    src = open_source(str(killed))
    assert type(src).__name__ == "RealSenseRecording" and src.uri == str(killed)
    got = list(src)
    assert 0.6 * 40 - 6 <= len(got) < 40
    assert_prefix(got, frames[:40], len(got))
    ev = src.events[0]
    assert ev["event"] == "recording_truncated" and ev["file"] == str(killed) and ev["messages"] > 0
    tmp = src._cleanup
    src.close()
    assert not tmp.exists()                                          # the salvaged copy is gone


def test_a_cut_recording_is_said_on_the_console_in_the_summary_and_exits_3(tmp_path, frames):
    """Audit 26 #7: a recording cut short ended `edge-ad run` with exit 0 and nothing on the console, and
    `edge-ad batch` with a "done" entry: only the results' recording_truncated event said frames were lost.
    Now the run logs it, its summary (and batch's entry for the source) carries it, and both exit 3."""
    import json

    from click.testing import CliRunner

    from edge_ad.cli import main
    from edge_ad.runtime import demo_model_dir
    from edge_ad.runtime.capture import EXIT_BAD_FRAMES, exit_status
    bag = tmp_path / "bag"
    write_ros2_bag(bag, frames[:12], storage="sqlite3")
    killed = cut(storage_file(bag), tmp_path / "cut" / "k.db3", int(storage_file(bag).stat().st_size * 0.6))
    logs = []
    s = run_capture(open_source(str(killed)), FakeScorer(), out=tmp_path / "r.jsonl", handle_signals=False,
                    log=logs.append)
    ev = [r for r in read_lines(tmp_path / "r.jsonl") if r.get("event") == "recording_truncated"][0]
    assert s["recording_truncated"] == {k: v for k, v in ev.items() if k not in ("type", "time", "event")}
    assert s["frame_errors"] == 0 and 0 < s["frames_scored"] < 12 and exit_status(s) == EXIT_BAD_FRAMES
    assert [m for m in logs if "is cut short" in m] == [
        f"recording {killed} is cut short ({ev['reason']}): read up to its message {ev['messages']}, frames after "
        "it are lost"]
    r = CliRunner().invoke(main, ["run", "--source", str(killed), "--out", str(tmp_path / "run.jsonl"), "-q"])
    assert r.exit_code == EXIT_BAD_FRAMES and f"recording {killed} is cut short" in r.output, r.output
    assert "warning: the recording is cut short" in r.output and "bad frame(s)" not in r.output, r.output
    r = CliRunner().invoke(main, ["batch", "--model", str(demo_model_dir()), "--out", str(tmp_path / "b"), "-q",
                                  "--workers", "1", str(killed)])
    assert r.exit_code == EXIT_BAD_FRAMES and "recording cut short" in r.output, r.output
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    entry = summary["sources"][0]
    assert entry["status"] == "done" and entry["recording_truncated"]["messages"] == ev["messages"]
    assert summary["totals"]["truncated"] == 1


def test_calibrate_on_a_cut_recording_says_so_records_it_and_exits_3(tmp_path):
    """Session 27: `edge-ad calibrate` on a recording cut short (a killed recorder) said nothing: it calibrated on
    the frames before the cut, exit 0, and neither the log nor the manifest's calibration record told the cut.
    Now, for a ROS 2 .db3 and a RealSense .db3 cut at 60 %: one log line names the recording, the reason and the
    frames before the cut (its count: the frames are spread over those only, or, fewer than --max-frames, all
    read), the record's recording_truncated holds the event's facts and that count, the model is written and
    the exit status is 3, as edge-ad run's; with too few frames the error names the count and the cut."""
    import json

    from click.testing import CliRunner

    from edge_ad.cli import main
    from edge_ad.runtime.capture import EXIT_BAD_FRAMES
    from test_calibrate import _demo_copy, _synth_frames
    synth = [(fr.id, fr.rgb, d8_to_mm(fr.depth)) for fr in _synth_frames(60)]
    bag = tmp_path / "bag"
    write_ros2_bag(bag, synth, storage="sqlite3")
    killed = cut(storage_file(bag), tmp_path / "cut" / "k.db3", int(storage_file(bag).stat().st_size * 0.6))
    rec = tmp_path / "rec.db3"
    record_realsense_db3(rec, synth[:40])
    rs_killed = cut(rec, tmp_path / "rs-killed.db3", int(rec.stat().st_size * 0.6))
    facts = {}
    for path in (killed, rs_killed):          # what edge-ad run reads of them: every intact frame, the event
        with open_source(str(path)) as src:
            ids = [f.id for f in src]
            facts[path] = (ids, [e for e in src.events if e["event"] == "recording_truncated"][0])
    model = _demo_copy(tmp_path)

    def calibrate(path, out, *args):
        r = CliRunner().invoke(main, ["calibrate", "--model", str(model), "--source", str(path), "--out",
                                      str(out), "--max-shift", "0", "--min-frames", "5", *args])
        return r, (json.loads((out / "manifest.json").read_text())["calibration"] if out.is_dir() else None)

    def said(path, read, tail):
        ids, ev = facts[path]
        return (f"recording {path} is cut short ({ev['reason']}): {len(ids)} frames before the cut (up to its "
                f"message {ev['messages']}), {read} of them read; frames after the cut are lost" + tail)

    def recorded(c, path):
        ids, ev = facts[path]
        assert c["recording_truncated"] == {**{k: v for k, v in ev.items() if k != "event"}, "frames": len(ids)}

    # the ROS 2 bag: 10 frames spread over the frames before the cut; read up to the last one used, not to the
    # cut, so where it ends is known from the count (the run's event is written only when read to the cut)
    ids, ev = facts[killed]
    assert 0.6 * 60 - 6 <= len(ids) < 60 and ev["messages"] > 0
    r, c = calibrate(killed, tmp_path / "cal-bag", "--max-frames", "10")
    assert r.exit_code == EXIT_BAD_FRAMES, r.output
    last = (9 * len(ids)) // 10
    assert said(killed, last + 1, "; the 10 frames are spread over those before the cut only") in r.output, r.output
    assert "warning: the recording is cut short: " in r.output
    recorded(c, killed)
    assert (c["source_length"], c["frames_read"], c["max_frames"]) == (len(ids), last + 1, 10)
    assert c["frame_ids"] == [ids[i * len(ids) // 10] for i in range(10)]
    # --every 2: not counted to spread; read part-way, the bag is counted once more to say where it ends
    r, c = calibrate(killed, tmp_path / "cal-every", "--max-frames", "5", "--every", "2")
    assert r.exit_code == EXIT_BAD_FRAMES and said(killed, 9, "\n") in r.output, r.output
    recorded(c, killed)
    # the RealSense recording: fewer frames before the cut than --max-frames asks: all of them read
    rs_ids, _ = facts[rs_killed]
    assert 0.6 * 40 - 6 <= len(rs_ids) < 40
    r, c = calibrate(rs_killed, tmp_path / "cal-rs", "--max-frames", "100")
    assert r.exit_code == EXIT_BAD_FRAMES, r.output
    assert said(rs_killed, len(rs_ids), "; fewer than the --max-frames 100 planned: every frame before the cut is "
                "read") in r.output, r.output
    recorded(c, rs_killed)
    assert c["frames_used"] == len(rs_ids) and c["frame_ids"] == rs_ids
    # too few frames before the cut: the error names the count and the cut; nothing written
    r, c = calibrate(killed, tmp_path / "cal-few", "--min-frames", "50")
    assert r.exit_code == 1 and c is None and not (tmp_path / "cal-few").exists(), r.output
    assert (f"only {len(ids)} usable frames of {len(ids)} read" in r.output
            and f"the recording {killed} is cut short: frames after its message {ev['messages']} are lost; "
                "calibration needs at least 50 normal frames" in r.output), r.output
    # the same bag, intact: nothing said, no record, exit 0
    r, c = calibrate(bag, tmp_path / "cal-whole", "--max-frames", "10")
    assert r.exit_code == 0 and "cut short" not in r.output and c["recording_truncated"] is None, r.output
