"""A recording one of whose streams stalled mid-recording (audit 27 #17): the other stream's frames there have
no partner and are never scored. They vanished silently (exit 0; only the summary's source_stats counted them).
Now each gap is a ``stream_gap`` event (which stream, how many frames, their stamps), said on the console, the
summary carries ``stream_gaps`` and the run exits 3 (frames lost), as for a recording cut short; drops at the
recording's start or end (one stream started later or stopped earlier) are only counted, as before. Real files
written here: a ROS 2 bag (rosbags) and a RealSense recording (librealsense's software device + recorder)."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edge_ad.runtime.capture import EXIT_BAD_FRAMES, EXIT_OK, exit_status, run_capture
from edge_ad.runtime.sources import open_source
from edge_ad.runtime.sources.pairing import TimePairer

from test_capture import FakeScorer, read_lines  # noqa: E402
from test_source_count import DT, T0, write_messages  # noqa: E402
from test_sources import d8_to_mm, record_realsense_db3  # noqa: E402

GAP = range(10, 21)         # frames 10-20 of 30: 11 frames


@pytest.fixture(scope="module")
def synth():
    from test_calibrate import _synth_frames
    return [(fr.id, fr.rgb, d8_to_mm(fr.depth)) for fr in _synth_frames(30)]


def test_the_pairer_tells_a_gap_from_a_stream_that_starts_late():
    p = TimePairer(slop=0.01)
    for k in range(12):
        if k not in (0, 1, 5, 6, 7, 11):                 # depth starts late, stalls at 5-7, stops early
            p.add_depth(k, k)
        p.add_colour(k, k)
    p.finish()
    assert len(list(p.pop_pairs())) == 6 and p.unpaired_colour == 6
    assert p.pop_gaps() == [{"unpaired": "colour", "frames": 3, "first_t": 5.0, "last_t": 7.0}]
    assert p.pop_gaps() == []


def test_a_rate_difference_or_one_dropped_frame_is_no_gap():
    """Audit 27 #22 (a regression of #17's fix): colour at 30 fps with depth at 15 fps paired every other colour
    frame, and each unpaired one was reported as a stall (an event and a console line per frame, exit 3). A gap
    is a silence of the other stream of more than STALL_PERIODS of its usual period; a cadence, one dropped or
    one late frame are counted only."""
    p = TimePairer(slop=0.01)                       # depth every 2nd colour frame: a cadence, 20 of 40 unpaired
    for k in range(40):
        if k % 2 == 0:
            p.add_depth(k, k)
        p.add_colour(k, k)
    p.finish()
    assert len(list(p.pop_pairs())) == 20 and p.unpaired_colour == 20 and p.pop_gaps() == []
    p = TimePairer(slop=0.01)                       # 1:1 with one depth dropped (frame 9): 2 periods, counted
    for k in range(20):
        if k != 9:
            p.add_depth(k, k)
        p.add_colour(k, k)
    p.finish()
    assert p.unpaired_colour == 1 and p.pop_gaps() == []
    p = TimePairer(slop=0.01)                       # at 15 fps, a stall of 4 depth frames (8 colour) is a gap
    for k in range(40):
        if k % 2 == 0 and not 10 <= k <= 17:
            p.add_depth(k, k)
        p.add_colour(k, k)
    p.finish()
    assert [(g["unpaired"], g["frames"]) for g in p.pop_gaps()] == [("colour", 9)]


def _run(src, tmp_path, name):
    logs = []
    s = run_capture(src, FakeScorer(), out=tmp_path / name, handle_signals=False, log=logs.append)
    gaps = [r for r in read_lines(tmp_path / name) if r.get("event") == "stream_gap"]
    return s, gaps, logs


def test_a_bags_depth_gap_is_said_counted_and_exits_3(tmp_path, synth):
    bag = tmp_path / "stall"
    plan = [("c", k, 0) for k in range(30)] + [("d", k, 1_000_000) for k in range(30) if k not in GAP]
    write_messages(bag, synth, sorted(plan, key=lambda m: m[1] * DT + m[2]), storage="mcap")
    s, gaps, logs = _run(open_source(str(bag)), tmp_path, "r.jsonl")
    assert s["frames_scored"] == 19 and s["source_stats"]["unpaired_colour"] == 11
    assert [(g["missing"], g["unpaired"], g["frames"]) for g in gaps] == [("depth", "colour", 11)]
    assert gaps[0]["first_stamp"] == pytest.approx((T0 + 10 * DT) * 1e-9)
    assert gaps[0]["last_stamp"] == pytest.approx((T0 + 20 * DT) * 1e-9)
    assert s["stream_gaps"] == {"gaps": 1, "frames": 11} and exit_status(s) == EXIT_BAD_FRAMES
    assert [m for m in logs if "stream gap" in m] == [
        f"rosbag://{bag}: depth stream gap: 11 colour frame(s) without depth (stamps {gaps[0]['first_stamp']:.3f} - "
        f"{gaps[0]['last_stamp']:.3f} s) were not scored"]
    # depth starting 2 frames late and stopping 1 early: counted, not a gap: exit 0 as before
    edges = tmp_path / "edges"
    plan = [("c", k, 0) for k in range(30)] + [("d", k, 1_000_000) for k in range(2, 29)]
    write_messages(edges, synth, sorted(plan, key=lambda m: m[1] * DT + m[2]), storage="mcap")
    s, gaps, _ = _run(open_source(str(edges)), tmp_path, "e.jsonl")
    assert s["source_stats"]["unpaired_colour"] == 3 and gaps == [] and "stream_gaps" not in s
    assert exit_status(s) == EXIT_OK
    # edge-ad run and edge-ad batch say it and exit 3
    from edge_ad.cli import main
    from edge_ad.runtime import demo_model_dir
    r = CliRunner().invoke(main, ["run", "--source", str(bag), "--out", str(tmp_path / "run.jsonl"), "-q"])
    assert r.exit_code == EXIT_BAD_FRAMES and "depth stream gap: 11 colour frame(s)" in r.output, r.output
    assert "warning: 11 frame(s) were lost: one stream stalled mid-recording (1 gap(s)" in r.output, r.output
    r = CliRunner().invoke(main, ["batch", "--model", str(demo_model_dir()), "--out", str(tmp_path / "b"), "-q",
                                  "--workers", "1", str(bag)])
    assert r.exit_code == EXIT_BAD_FRAMES and "11 frame(s) lost in 1 stream gap(s)" in r.output, r.output
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["sources"][0]["stream_gaps"] == {"gaps": 1, "frames": 11}
    assert summary["totals"]["stream_gap_frames"] == 11


def test_calibrate_on_a_recording_with_a_gap_says_it_and_exits_3(tmp_path, synth):
    """edge-ad calibrate reads the same sources: the gap's line, stream_gaps in the calibration record, the model
    written from the frames it has, exit 3 (as for a recording cut short)."""
    from edge_ad.cli import main
    from edge_ad.runtime import demo_model_dir
    bag = tmp_path / "stall"
    plan = [("c", k, 0) for k in range(30)] + [("d", k, 1_000_000) for k in range(30) if k not in GAP]
    write_messages(bag, synth, sorted(plan, key=lambda m: m[1] * DT + m[2]), storage="mcap")
    out = tmp_path / "cal"
    r = CliRunner().invoke(main, ["calibrate", "--model", str(demo_model_dir()), "--source", str(bag), "--out",
                                  str(out), "--max-shift", "0", "--min-frames", "5"])
    assert r.exit_code == EXIT_BAD_FRAMES and "depth stream gap: 11 colour frame(s) without depth" in r.output, r.output
    assert "warning: 11 frame(s) of the source were lost: one stream stalled mid-recording" in r.output
    c = json.loads((out / "manifest.json").read_text())["calibration"]
    assert c["stream_gaps"] == {"gaps": 1, "frames": 11} and c["frames_used"] == 19
    r = CliRunner().invoke(main, ["calibrate", "--model", str(demo_model_dir()), "--source", "synth://?n=25",
                                  "--out", str(tmp_path / "cal2"), "--max-shift", "0"])
    assert r.exit_code == 0 and "stream" not in r.output, r.output
    assert json.loads((tmp_path / "cal2" / "manifest.json").read_text())["calibration"]["stream_gaps"] is None


def test_recordings_at_two_rates_are_no_gap(tmp_path, synth):
    """Audit 27 #22's recordings: a ROS 2 bag with colour every 33 ms and depth every 66 ms, and a RealSense
    recording whose depth has every other frame: no stream_gap event, exit 0 (the rate difference counted in
    source_stats only); edge-ad run says nothing of a stall."""
    from edge_ad.cli import main
    bag = tmp_path / "c30d15"
    plan = [("c", k, 0) for k in range(40)] + [("d", k, 0) for k in range(0, 40, 2)]
    write_messages(bag, synth, sorted(plan, key=lambda m: m[1] * DT + m[2]), storage="mcap")
    s, gaps, logs = _run(open_source(str(bag)), tmp_path, "r.jsonl")
    assert s["frames_scored"] == 20 and s["source_stats"]["unpaired_colour"] == 20
    assert gaps == [] and "stream_gaps" not in s and exit_status(s) == EXIT_OK and not any("gap" in m for m in logs)
    r = CliRunner().invoke(main, ["run", "--source", str(bag), "--out", str(tmp_path / "run.jsonl"), "-q"])
    assert r.exit_code == EXIT_OK and "stream gap" not in r.output and "stalled" not in r.output, r.output
    rec = tmp_path / "halfdepth.db3"
    record_realsense_db3(rec, synth, skip={(k, "depth") for k in range(1, 30, 2)})
    s, gaps, logs = _run(open_source(str(rec)), tmp_path, "rs.jsonl")
    assert s["frames_scored"] == 15 and gaps == [] and exit_status(s) == EXIT_OK, (s, logs)


def test_a_realsense_recordings_colour_gap_is_said(tmp_path, synth):
    rec = tmp_path / "stall.db3"
    record_realsense_db3(rec, synth, skip={(k, "colour") for k in GAP})
    s, gaps, logs = _run(open_source(str(rec)), tmp_path, "r.jsonl")
    assert s["frames_scored"] == 19
    assert [(g["missing"], g["unpaired"], g["frames"]) for g in gaps] == [("colour", "depth", 11)]
    assert 0 < gaps[0]["first_stamp"] < gaps[0]["last_stamp"]               # seconds, from the player's ms
    assert s["stream_gaps"] == {"gaps": 1, "frames": 11} and exit_status(s) == EXIT_BAD_FRAMES
    assert any("colour stream gap: 11 depth frame(s) without colour" in m for m in logs), logs
