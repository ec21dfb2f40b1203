"""``edge-ad run``'s command line with a stand-in scorer (exit statuses, bad frames, --camera with
no camera, --save-anomalies, argument checks). End-to-end runs with a real exported model are in
test_run_e2e.py."""
from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from edge_ad.commands import run as run_cmd
from edge_ad.runtime import demo_model_dir
from edge_ad.runtime.anomaly_saver import AnomalySaver
from edge_ad.runtime.capture import EXIT_BAD_FRAMES, EXIT_NO_FRAMES, EXIT_OK
from edge_ad.runtime.pictures import heatmap
from edge_ad.runtime.preprocess import PreprocessSpec, preprocess
from edge_ad.runtime.sources import find_cameras

from test_sources import (close_range_folder, d8_to_mm, kinect_frames, make_broken_folder,  # noqa: E402
                          write_ros2_bag)   # (tests/ is on sys.path under pytest)


class StubScorer:
    """Implements the Scorer contract's surface that run uses; score = mean squared input."""

    n_seed, z_dim, threshold = 2, 100, 0.55

    def __init__(self):
        self.preprocess = PreprocessSpec()
        self.seen = []

    def score(self, rgb, depth, z0=None, seed=None, **kw):
        x = preprocess(rgb, depth, self.preprocess)
        self.seen.append(seed if z0 is None else ("z0", float(z0.sum())))
        err = (x ** 2).mean(axis=0).astype(np.float32)
        return SimpleNamespace(score=float(err.mean()), error_map=err, reconstruction=-x,
                               seed_losses=np.zeros(self.n_seed, np.float32),
                               timings={"preprocess_ms": 0.1, "search_ms": 1.0})


@pytest.fixture
def stub(monkeypatch):
    s = StubScorer()
    monkeypatch.setattr(run_cmd, "load_scorer", lambda model, backend, **kw: s)
    return s


def invoke(args):
    return CliRunner().invoke(run_cmd.cmd, args, catch_exceptions=False)


def lines(path):
    return [json.loads(x) for x in Path(path).read_text().splitlines()]


def test_folder_with_broken_frames_exit_status(tmp_path, kinect_root, stub):
    info = make_broken_folder(tmp_path / "f", kinect_root, n_good=5)
    out = tmp_path / "r.jsonl"
    r = invoke(["--source", str(tmp_path / "f"), "--out", str(out), "-q"])
    assert r.exit_code == EXIT_BAD_FRAMES, r.output
    recs = lines(out)
    assert sorted(x["frame"] for x in recs if x["type"] == "frame") == sorted(info["good"])
    errs = {x["frame"]: x["error"] for x in recs if x["type"] == "error"}
    assert set(errs) == {info["truncated"], info["garbage"], info["missing_depth"]}
    assert recs[-1]["frames_scored"] == 5 and recs[-1]["frame_errors"] == 3
    assert "3 bad frame(s)" in r.output and "5 frames scored" in r.output


def test_an_empty_source_is_refused_not_read_as_the_default(tmp_path, stub):
    """`edge-ad run --source "$SRC"` with SRC unset: before, "" was read as no --source, and the model scored the
    endless synth:// stream (here cut at one frame, exit 0). Now a usage error naming the empty --source."""
    for empty in ("", " "):
        r = invoke(["--source", empty, "--max-frames", "1", "--out", str(tmp_path / "r.jsonl"), "-q"])
        assert r.exit_code == 2 and "--source is empty (an unset shell variable?)" in r.output, r.output
    assert not (tmp_path / "r.jsonl").exists()


def test_exit_status_all_good_and_all_bad(tmp_path, kinect_root, stub):
    r = invoke(["--source", "synth://?n=3", "--out", str(tmp_path / "a.jsonl"), "-q"])
    assert r.exit_code == EXIT_OK, r.output
    assert lines(tmp_path / "a.jsonl")[-1]["frames_scored"] == 3
    bad = tmp_path / "bad"
    (bad / "rgb").mkdir(parents=True)
    (bad / "depth").mkdir()
    (bad / "rgb" / "1.jpg").write_bytes(b"nope")
    r = invoke(["--source", str(bad), "-q"])
    assert r.exit_code == EXIT_NO_FRAMES and "no frame could be scored" in r.output


def test_seed_and_z0(tmp_path, stub):
    from edge_ad.runtime.config import frame_seed
    assert invoke(["--source", "synth://?n=3", "--seed", "7", "-q"]).exit_code == 0
    assert stub.seen == [frame_seed(7, i) for i in range(3)]
    z0 = np.ones((stub.n_seed, stub.z_dim), np.float32)
    np.save(tmp_path / "z0.npy", z0)
    stub.seen.clear()
    assert invoke(["--source", "synth://?n=2", "--z0", str(tmp_path / "z0.npy"), "-q"]).exit_code == 0
    assert stub.seen == [("z0", 200.0)] * 2
    np.save(tmp_path / "bad.npy", np.ones((3, 5), np.float32))
    r = invoke(["--source", "synth://?n=2", "--z0", str(tmp_path / "bad.npy"), "-q"])
    assert r.exit_code == 1 and "(2, 100) = (n_seed, z_dim)" in r.output
    # audit 29 #13: an .npz, a string array and a file that is no .npy ended in tracebacks or numpy's advice to
    # unpickle; now one line each naming the problem (exit 1), nothing scored
    np.savez(tmp_path / "z.npz", z=z0)
    np.save(tmp_path / "text.npy", np.full((stub.n_seed, stub.z_dim), "a"))
    np.save(tmp_path / "complex.npy", z0.astype(np.complex64))
    (tmp_path / "x.npy").write_bytes(b"x")
    need = "--z0 needs a float (2, 100) = (n_seed, z_dim) array saved with np.save"
    for name, why in (("z.npz", "an .npz archive, not a .npy file: save one array with np.save"),
                      ("x.npy", "not a NumPy .npy file (no .npy header)"),
                      ("text.npy", "holds <U1 values; " + need), ("complex.npy", "holds complex64 values; " + need)):
        stub.seen.clear()
        r = invoke(["--source", "synth://?n=2", "--z0", str(tmp_path / name), "-q"])
        assert r.exit_code == 1 and why in r.output and "Traceback" not in r.output, (name, r.output)
        assert "pickle" not in r.output and stub.seen == [], (name, r.output)
    r = invoke(["--seed", "1", "--z0", str(tmp_path / "z0.npy")])
    assert r.exit_code == 2 and "--seed or --z0" in r.output
    stub.seen.clear()   # a negative seed is a usage error naming --seed (it was a fatal ValueError at frame 0)
    r = invoke(["--source", "synth://?n=2", "--seed", "-1", "-q"])
    assert r.exit_code == 2 and "'--seed': -1 is not in the range x>=0" in r.output and stub.seen == [], r.output


def test_save_anomalies_writes_pictures(tmp_path, stub):
    out = tmp_path / "r.jsonl"
    r = invoke(["--source", "synth://?n=6&seed=4", "--threshold", "0.86", "--out", str(out),
                "--save-anomalies", str(tmp_path / "anom"), "-q"])
    assert r.exit_code == 0, r.output
    flagged = [(x["index"], x["frame"]) for x in lines(out) if x["type"] == "frame" and x["anomalous"]]
    assert 0 < len(flagged) < 6  # threshold chosen so some frames are flagged and some not
    from PIL import Image
    for index, fid in flagged:
        for part in ("rgb", "depth", "recon", "error", "overlay"):
            p = tmp_path / "anom" / f"{index:08d}_{fid}_{part}.png"
            assert p.is_file(), p
        assert Image.open(tmp_path / "anom" / f"{index:08d}_{fid}_overlay.png").size == (5 * 64 * 4, 64 * 4)
    assert len(list((tmp_path / "anom").iterdir())) == 5 * len(flagged)


def test_save_anomalies_never_overwrites_an_earlier_run(tmp_path, stub):
    """Two runs without --out into the same directory: the same frame ids and indices, and still
    2 x N pictures, the first run's bytes unchanged."""
    anom = tmp_path / "anom"
    args = ["--source", "synth://?n=6&seed=4", "--threshold", "0.86", "--save-anomalies", str(anom), "-q"]
    assert invoke(args).exit_code == 0
    first = {p.name: p.read_bytes() for p in anom.iterdir()}
    assert first and len(first) % 5 == 0
    assert invoke(args).exit_code == 0
    after = {p.name: p.read_bytes() for p in anom.iterdir()}
    assert len(after) == 2 * len(first)
    assert all(after[name] == data for name, data in first.items())        # the first run's files kept
    second = sorted(set(after) - set(first))
    assert all("-2_" in name for name in second), second                     # <index>_<frame>-2_<part>.png


def test_save_anomalies_long_frame_id(tmp_path, stub):
    """A frame id longer than a file name may be is shortened in the picture's name."""
    from edge_ad.runtime.sources import Frame
    long_id = "x" * 245
    rec = {"frame": long_id, "index": 7, "anomalous": True}
    saver = AnomalySaver(str(tmp_path / "anom"), stub.preprocess)
    rgb = np.full((64, 64, 3), 200, np.uint8)
    depth = np.full((64, 64), 100, np.uint8)
    res = stub.score(rgb, depth)
    saver(rec, Frame(long_id, rgb, depth), res)
    names = sorted(p.name for p in (tmp_path / "anom").iterdir())
    assert len(names) == 5 and all(n.startswith("00000007_" + "x" * 80 + "_") for n in names), names


def test_a_failing_picture_hook_does_not_end_the_run(tmp_path, stub, monkeypatch):
    """--save-anomalies on a full disk (OSError on the first picture): every frame is still scored,
    one hook_failed event names the hook and the error, the exit status is a normal run's (0), and
    the hook is tried again (pictures of later frames are written once the disk has room)."""
    import errno
    calls = {"n": 0}
    from edge_ad.runtime import anomaly_saver
    real = anomaly_saver._save_png

    def full_then_free(img, path):
        calls["n"] += 1
        if calls["n"] == 1:          # the first flagged frame's first picture: the disk is full
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(img, path)

    monkeypatch.setattr(anomaly_saver, "_save_png", full_then_free)
    out = tmp_path / "r.jsonl"
    r = invoke(["--source", "synth://?n=6&seed=4", "--threshold", "0.5", "--out", str(out),
                "--save-anomalies", str(tmp_path / "anom"), "-q"])
    assert r.exit_code == EXIT_OK, r.output
    recs = lines(out)
    frames = [x for x in recs if x["type"] == "frame"]
    assert len(frames) == 6 and sum(x["anomalous"] for x in frames) >= 2
    events = [x for x in recs if x.get("event") == "hook_failed"]
    assert len(events) == 1 and events[0]["hook"] == "--save-anomalies"
    assert "No space left on device" in events[0]["error"]
    assert events[0]["frame"] == [x for x in frames if x["anomalous"]][0]["frame"]
    assert recs[-1]["stopped"] == "end" and recs[-1]["hook_failures"] == {"--save-anomalies": 1}
    assert len(list((tmp_path / "anom").iterdir())) == 5 * (sum(x["anomalous"] for x in frames) - 1)
    assert "hook failures --save-anomalies 1" in r.output


def test_pictures_pause_below_the_free_space_reserve_and_the_results_go_on(tmp_path, stub, monkeypatch):
    """Audit 26 #13: on a robot the pictures filled the disk that holds the results, then the results write
    failed (fatal ENOSPC) and every restart failed again. Now a flagged frame's pictures are skipped while the
    filesystem has less free than the reserve (one hook_failed event per streak naming it), every frame is
    scored and recorded, and pictures resume once space is freed. Audit 29 #7: the streak is the paused
    pictures', not the flagged frames': normal frames between flagged ones (the saver does nothing there) do
    not end it, so a paused saver writes one event, not one per flagged frame."""
    from collections import namedtuple

    from edge_ad.runtime import anomaly_saver
    Usage = namedtuple("Usage", "total used free")
    free = {"bytes": 100 << 20}
    monkeypatch.setattr(anomaly_saver.shutil, "disk_usage", lambda p: Usage(1 << 40, 0, free["bytes"]))
    out, anom = tmp_path / "r.jsonl", tmp_path / "anom"
    r = invoke(["--source", "synth://?n=12&seed=4", "--threshold", "0.9", "--out", str(out),
                "--save-anomalies", str(anom), "-q"])
    assert r.exit_code == EXIT_OK, r.output
    recs = lines(out)
    frames = [x for x in recs if x["type"] == "frame"]
    n_flagged = sum(x["anomalous"] for x in frames)
    assert len(frames) == 12 and n_flagged >= 2 and not list(anom.iterdir())
    flags = "".join("F" if x["anomalous"] else "." for x in frames)
    assert "F." in flags.strip("."), flags          # flagged frames with normal ones between them (...FFF...F.F)
    events = [x for x in recs if x.get("event") == "hook_failed"]
    assert len(events) == 1 and "pictures paused: 100 MiB free" in events[0]["error"], events
    assert "less than the 52429 MiB kept free" in events[0]["error"]            # 5 % of 1 TiB
    assert recs[-1]["hook_failures"] == {"--save-anomalies": n_flagged}
    r = invoke(["--source", "synth://?n=12&seed=4", "--threshold", "0.9", "--out", str(tmp_path / "r2.jsonl"),
                "--save-anomalies", str(anom), "--save-anomalies-min-free-mb", "64", "-q"])   # 100 MiB >= 64
    assert r.exit_code == EXIT_OK and len(list(anom.iterdir())) == 5 * n_flagged, r.output
    assert anomaly_saver.min_free_bytes(1 << 30) == 500 << 20 and anomaly_saver.min_free_bytes(1 << 30, 0) == 0
    for bad in ("nan", "inf", "-1"):          # review: nan / inf passed FloatRange(min=0), then every picture failed
        r = invoke(["--source", "synth://?n=1", "--save-anomalies", str(anom), "--save-anomalies-min-free-mb", bad])
        assert r.exit_code == 2 and "--save-anomalies-min-free-mb" in r.output, (bad, r.output)


def test_save_anomalies_keep_keeps_the_newest_flagged_frames_pictures(tmp_path, stub):
    """Audit 29 #6: pictures were only ever added, so the unit's --save-anomalies reached its free-space reserve
    after days and then saved none for good (and on a small disk the results lost every later line). With
    --save-anomalies-keep N the newest N flagged frames' picture sets are kept, the oldest (an earlier run's
    first) deleted after each new set, said once; files not named like pictures are never touched."""
    import os
    anom, out = tmp_path / "anom", tmp_path / "r.jsonl"
    anom.mkdir()
    for k, stem in enumerate(("00000003_cam-3", "00000004_cam-4", "100000001_cam-5")):   # an earlier run's sets
        # (audit 29 #14: an index past 99 999 999 has 9 digits: such a set is found and pruned too)
        for part in AnomalySaver.PARTS:
            (anom / f"{stem}_{part}.png").write_bytes(b"png")
            os.utime(anom / f"{stem}_{part}.png", (1e9 + k, 1e9 + k))
    (anom / "notes.txt").write_text("mine")
    (anom / "00000001_x_rgb.jpg").write_text("mine too")
    r = invoke(["--source", "synth://?n=8&seed=4", "--threshold", "0.5", "--out", str(out),
                "--save-anomalies", str(anom), "--save-anomalies-keep", "2"])
    assert r.exit_code == EXIT_OK, r.output
    flagged = [x for x in lines(out) if x["type"] == "frame" and x["anomalous"]]
    assert len(flagged) >= 3
    kept = {f"{x['index']:08d}_{x['frame']}_{part}.png" for x in flagged[-2:] for part in AnomalySaver.PARTS}
    assert {p.name for p in anom.iterdir()} == kept | {"notes.txt", "00000001_x_rgb.jpg"}
    assert r.output.count("deleting the oldest anomaly pictures") == 1
    assert f"to keep the newest 2 flagged frames' (--save-anomalies-keep): first 00000003_cam-3_*.png" in r.output
    saver = AnomalySaver(str(anom), stub.preprocess, keep=3)      # this run's sets, oldest first
    assert [p.name for p in saver._sets] == [f"{x['index']:08d}_{x['frame']}" for x in flagged[-2:]]
    with pytest.raises(ValueError, match="keep .--save-anomalies-keep. must be a whole number >= 1, got 0"):
        AnomalySaver(str(anom), stub.preprocess, keep=0)
    r = invoke(["--source", "synth://?n=1", "--save-anomalies-keep", "2"])
    assert r.exit_code == 2 and "--save-anomalies-keep keeps the newest N flagged frames' pictures: give " \
                                "--save-anomalies DIR too" in r.output, r.output


def test_a_bag_whose_colour_and_depth_never_pair_says_so_and_a_bad_slop_is_a_bad_source(tmp_path, kinect_root, stub):
    """Audit 29 #3: a bag whose depth stamps lie further from colour than the slop (3 ms here, slop 1 ms) ended
    "error: the source gave no frames" (exit 4) though it held 3 + 3 messages; slop=nan was taken (the same end)
    and slop=-1 failed at iteration (fatal ValueError, exit 1, after the model load). Now the no-frames line says
    that the messages never paired within the slop and to give a larger one; a bad slop is a bad source (exit 1,
    before the model loads); the default slop pairs them."""
    from edge_ad.runtime.sources.pairing import no_pairs_note
    bag = tmp_path / "b3"
    write_ros2_bag(bag, [(i, rgb, d8_to_mm(d8)) for i, rgb, d8 in kinect_frames(kinect_root, 3)], storage="mcap")
    r = invoke(["--source", f"rosbag://{bag}?slop=0.001", "-q"])
    assert r.exit_code == EXIT_NO_FRAMES, r.output
    assert ("error: the source gave no frames: its 3 colour and 3 depth message(s) never paired within slop "
            "0.001 s (their stamps lie further apart: colour and depth not synchronised?): give a larger slop, "
            "e.g. rosbag://PATH?slop=0.05") in r.output, r.output
    r = invoke(["--source", f"rosbag://{bag}", "-q"])
    assert r.exit_code == EXIT_OK and "3 frames scored" in r.output, r.output
    stub.seen.clear()
    for bad, shown in (("-1", "-1.0"), ("nan", "nan"), ("inf", "inf")):
        r = invoke(["--source", f"rosbag://{bag}?slop={bad}", "-q"])
        assert r.exit_code == 1 and (f"bad source 'rosbag://{bag}?slop={bad}': slop (the seconds colour and depth "
                                     f"stamps may lie apart to pair) must be a finite number >= 0, got {shown}") \
            in r.output, r.output
    assert stub.seen == []                               # refused before anything was scored
    assert no_pairs_note({"unpaired_colour": 2, "unpaired_depth": 0, "pairs": 1}) is None    # some paired
    assert no_pairs_note({"unpaired_colour": 0, "unpaired_depth": 0, "pairs": 0}) is None    # an empty bag
    assert no_pairs_note({"unpaired_colour": 2, "unpaired_depth": 2}) is None   # counts no pairs (a RealSense file)
    assert "never paired within the slop" in no_pairs_note({"unpaired_colour": 2, "unpaired_depth": 1, "pairs": 0})


def test_out_dash_is_refused_not_a_file_named_dash(tmp_path, stub, monkeypatch):
    """Audit 29 #18: `--out -` wrote a file named '-' in the working directory (where Unix tools mean stdout):
    a pipeline got no lines and later runs appended to the stray file. Now a usage error (exit 2) that names
    /dev/stdout, before anything is scored; no file is written."""
    monkeypatch.chdir(tmp_path)
    r = invoke(["--source", "synth://?n=2", "--out", "-", "-q"])
    assert r.exit_code == 2 and ("--out - would write a file named '-': give a file name, or --out /dev/stdout to "
                                 "stream the JSON lines (not rotated)") in r.output, r.output
    assert not (tmp_path / "-").exists() and stub.seen == []


def test_an_out_that_is_no_regular_file_is_never_rotated(tmp_path, stub):
    """Audit 29 #19: --out /dev/stdout (or /dev/null) with --rotate-mb renamed the device path and put a regular
    file in its place (as root: /dev/stdout replaced, /dev/stdout.1 .. .11 left). A --out that exists and is not
    a regular file (here a FIFO, never a real device in a test) is refused with --rotate-mb or --rotate-keep
    before anything is opened (run: exit 2; ResultWriter, the ROS node's writer: ResultsFileError), the FIFO
    left a FIFO; a regular file or a new path still rotates."""
    import os
    import stat

    from edge_ad.runtime.results import ResultsFileError, ResultWriter
    fifo = tmp_path / "stream"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)    # so that a writer's open never blocks (were it reached)
    for extra in (["--rotate-mb", "1"], ["--rotate-mb", "1", "--rotate-keep", "2"]):
        r = invoke(["--source", "synth://?n=2", "--out", str(fifo), "-q", *extra])
        assert r.exit_code == 2 and (f"{fifo} is not a regular file (a device, pipe or socket: written as a stream): "
                                     "--rotate-mb / --rotate-keep cannot rotate it") in r.output, r.output
    with pytest.raises(ResultsFileError, match="rotate_bytes / rotate_keep cannot rotate it"):
        ResultWriter(fifo, rotate_bytes=1000)       # refused before the FIFO is opened (that would block)
    os.close(reader)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and sorted(p.name for p in tmp_path.iterdir()) == ["stream"]
    assert stub.seen == []
    w = ResultWriter(tmp_path / "r.jsonl", rotate_bytes=200)
    w.write({"type": "event", "event": "x" * 300})
    w.close()
    assert (tmp_path / "r.jsonl.1").is_file()


def test_the_docs_synopsis_names_every_run_option():
    """Audit 29 #15 (b): docs/sources-and-results.md's `edge-ad run [...]` line, the one a reader copies, lacked
    --wait-for-camera (the shipped unit's), --rotate-keep, --save-anomalies-min-free-mb, --seed, --z0 and -q. It
    names every option of `edge-ad run --help` now, and only those."""
    import re

    from conftest import REPO
    text = (REPO / "docs" / "sources-and-results.md").read_text()
    synopsis = re.search(r"`edge-ad run \[(.*?)`", text, re.S).group(1)
    named = set(re.findall(r"(?<![\w-])(--[a-z0-9-]+|-q)\b", synopsis))
    options = {o for p in run_cmd.cmd.params for o in p.opts if o.startswith("--") or o == "-q"}
    options -= {"--help", "--quiet"}          # -q stands for --quiet
    assert named == options, (sorted(options - named), sorted(named - options))


def test_a_sheet_that_cannot_be_written_does_not_end_the_run(tmp_path, stub):
    """--sheet under a path that is a file (review2 item 5: FileExistsError traceback, exit 1): the
    results are written, the exit status is the run's (0), the message names the sheet and why."""
    blocker = tmp_path / "afile"
    blocker.write_text("not a directory")
    out = tmp_path / "r.jsonl"
    r = CliRunner().invoke(run_cmd.cmd, ["--source", "synth://?n=3&seed=4", "--threshold", "0.5",
                                         "--sheet", str(blocker / "s.png"), "--out", str(out), "-q"])
    assert r.exit_code == EXIT_OK, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)
    assert f"contact sheet not written ({blocker / 's.png'})" in r.output and "FileExistsError" in r.output
    recs = lines(out)
    assert len([x for x in recs if x["type"] == "frame"]) == 3 and recs[-1]["stopped"] == "end"
    assert blocker.read_text() == "not a directory" and sorted(p.name for p in tmp_path.iterdir()) == ["afile", "r.jsonl"]


def test_picture_hooks_are_named_by_their_flags(tmp_path, stub, monkeypatch):
    """hook_failed events and hook_failures name every picture hook by its flag, as docs/running-all-day.md
    lists them (review2 item 6: ContactSheet and RerunView were reported by their class names)."""
    from edge_ad.runtime import sheet as sheet_mod
    from edge_ad.runtime.capture import hook_name
    from edge_ad.runtime.rerun_view import RerunView
    assert hook_name(sheet_mod.ContactSheet(tmp_path / "s.png")) == "--sheet"
    assert hook_name(RerunView.__new__(RerunView)) == "--rerun"   # (no viewer started)

    def broken(*a, **k):
        raise RuntimeError("panel bug")

    monkeypatch.setattr(sheet_mod, "frame_panels", broken)
    out = tmp_path / "r.jsonl"
    r = invoke(["--source", "synth://?n=3&seed=4", "--threshold", "0.5", "--out", str(out),
                "--sheet", str(tmp_path / "s.png"), "-q"])
    assert r.exit_code == EXIT_OK, r.output
    recs = lines(out)
    assert [x["hook"] for x in recs if x.get("event") == "hook_failed"] == ["--sheet"]
    assert recs[-1]["hook_failures"] == {"--sheet": 3}


def test_camera_without_camera_fails_at_once(stub):
    if find_cameras()[0]:
        pytest.skip("a camera is connected to this machine")
    t0 = time.perf_counter()
    r = invoke(["--camera"])
    assert r.exit_code == 1 and "no RGB-D camera found" in r.output
    assert time.perf_counter() - t0 < 3.0


def test_usage_errors(tmp_path, stub):
    r = invoke(["--camera", "--source", "synth://"])
    assert r.exit_code == 2 and "not both" in r.output
    r = invoke(["--source", str(tmp_path / "missing.db3")])
    assert r.exit_code == 1 and "no such file" in r.output
    r = invoke(["--source", "synth://?n=1", "--max-frames", "0"])
    assert r.exit_code == 2
    for bad in ("0", "-0.5", "nan", "inf"):      # a threshold <= 0 flags every frame, NaN none
        r = invoke(["--source", "synth://?n=1", "--threshold", bad])
        assert r.exit_code == 2 and "--threshold must be a finite number > 0" in r.output, (bad, r.output)


def test_missing_demo_model_is_explained(tmp_path, monkeypatch):
    monkeypatch.setattr(run_cmd, "demo_model_dir", lambda: tmp_path / "models" / "demo")
    r = invoke(["--source", "synth://?n=1"])
    assert r.exit_code == 1 and "demo model is missing" in r.output and "--model" in r.output
    r = invoke(["--source", "synth://?n=1", "--model", str(tmp_path / "nope")])
    assert r.exit_code == 1 and "does not exist" in r.output


def test_load_scorer_has_one_call_form(tmp_path, monkeypatch):
    """edge-ad run calls load_scorer(model, backend, trusted_keys=...) the same way with and without
    --trusted-key (there was a second, 2-argument form for the tests' fakes); the demo model's
    directory is the runtime's own demo_model_dir (there was a pass-through wrapper)."""
    assert run_cmd.demo_model_dir is demo_model_dir
    seen = []

    def fake(model, backend, trusted_keys):
        seen.append((model, backend, tuple(trusted_keys)))
        return StubScorer()

    monkeypatch.setattr(run_cmd, "load_scorer", fake)
    key = tmp_path / "k.pem"
    key.write_text("not checked by the fake")
    assert invoke(["--source", "synth://?n=1", "-q"]).exit_code == EXIT_OK
    assert invoke(["--source", "synth://?n=1", "-q", "--trusted-key", str(key)]).exit_code == EXIT_OK
    assert seen == [(None, "onnxruntime", ()), (None, "onnxruntime", (str(key),))]


def test_heatmap_and_overlay_shapes():
    err = np.linspace(0, 2, 64 * 64, dtype=np.float32).reshape(64, 64)
    h = heatmap(err)
    assert h.shape == (64, 64, 3) and h.dtype == np.uint8
    assert tuple(h[0, 0]) == (0, 0, 4) and tuple(h[-1, -1]) == (252, 255, 164)
    assert (np.diff(h.astype(int).sum(axis=2).ravel()) >= -1).all()  # brighter as error grows


def test_run_path_is_torch_free():
    import subprocess
    import sys
    code = ("import sys; import edge_ad.commands.run, edge_ad.runtime.capture, edge_ad.runtime.msgconv, "
            "edge_ad.runtime.sources.realsense, edge_ad.runtime.sources.rosbag, edge_ad.runtime.sources.oak, "
            "edge_ad.jetson.ros2_node; from edge_ad.runtime.sources import open_source; "
            "list(open_source('synth://?n=1')); print('torch' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "False"


def test_a_viewer_that_fails_to_close_is_reported_not_raised(capsys):
    """--display / --rerun closed at the run's end: a failure there is a warning naming the flag, so the
    run's summary and exit status stand (pictures never end a run)."""
    class View:
        name = "--rerun"

        def close(self, linger=False):
            raise ConnectionError("viewer gone")

    run_cmd._close_picture_hook(View().close, linger=True)
    assert "warning: --rerun did not close cleanly: ConnectionError: viewer gone" in capsys.readouterr().err


def small_folder(root: Path, kinect_root: Path, ids=("3", "4", "7")) -> Path:
    import shutil
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    for fid in ids:
        shutil.copy(kinect_root / "rectangle" / "rgb" / f"{fid}.jpg", root / "rgb" / f"{fid}.jpg")
        shutil.copy(kinect_root / "rectangle" / "depth" / f"{fid}.png", root / "depth" / f"{fid}.png")
    return root


def test_the_results_name_the_model_and_another_model_is_refused(tmp_path, kinect_root):
    """Audit 2 #7: without --model a real folder was scored by the synthetic demo model with no word;
    the results never said which model scored; a second model's run appended to the same --out.
    Now: a stderr note, the model's identity in the start / resumed events and the summary, and a
    resume by another model refused with the file unchanged."""
    import shutil

    from edge_ad.runtime import Scorer
    from edge_ad.runtime.manifest import sha256_file
    from edge_ad.runtime.scorer import scoring_settings_sha256
    demo = demo_model_dir()
    frames = small_folder(tmp_path / "cam", kinect_root)
    out = tmp_path / "r.jsonl"
    r = invoke(["--source", str(frames), "--out", str(out), "-q"])
    assert r.exit_code == EXIT_OK, r.output
    assert f"note: no --model: scoring with the shipped demo model ({demo})" in r.output
    sc = Scorer.load(demo)
    ident = {"path": str(demo.resolve()), "manifest_sha256": sha256_file(demo / "manifest.json"),
             "configuration": sc.config.name, "config_sha256": scoring_settings_sha256(sc.config, sc.preprocess)}
    recs = lines(out)
    assert recs[0] == {"type": "event", "event": "start", "time": recs[0]["time"], "model": ident}
    assert recs[-1]["type"] == "summary" and recs[-1]["model"] == ident
    assert [x["index"] for x in recs if x["type"] == "frame"] == [0, 1, 2]
    r = invoke(["--source", "synth://?n=2", "--out", str(tmp_path / "s.jsonl"), "-q"])
    assert r.exit_code == EXIT_OK and "note: no --model" not in r.output   # the demo's own data

    # the same model from another directory resumes (same manifest): the resumed event names it
    same = tmp_path / "copy"
    shutil.copytree(demo, same)
    r = invoke(["--source", str(frames), "--model", str(same), "--out", str(out), "-q"])
    assert r.exit_code == EXIT_OK and "note: no --model" not in r.output, r.output
    resumed = [x for x in lines(out) if x.get("event") == "resumed"]
    assert len(resumed) == 1 and resumed[0]["model"] == {**ident, "path": str(same.resolve())}
    assert [x["index"] for x in lines(out) if x["type"] == "frame"] == [0, 1, 2, 3, 4, 5]

    # another model (its manifest differs: here only its threshold) is refused, the file unchanged
    other = tmp_path / "other"
    shutil.copytree(demo, other)
    man = json.loads((other / "manifest.json").read_text())
    man["threshold"]["value"] = 2 * man["threshold"]["value"]
    (other / "manifest.json").write_text(json.dumps(man))
    before = out.read_bytes()
    r = invoke(["--source", str(frames), "--model", str(other), "--out", str(out), "-q"])
    assert r.exit_code == 1, r.output
    assert f"{out} holds results of another model ({same.resolve()}: manifest_sha256" in r.output, r.output
    assert "never mixed in one file" in r.output
    assert out.read_bytes() == before
    # also when the earlier run was killed before its summary: its start event names the model
    killed = tmp_path / "killed.jsonl"
    killed.write_text("".join(line + "\n" for line in before.decode().splitlines()[:4]))
    assert json.loads(killed.read_text().splitlines()[0])["event"] == "start"
    r = invoke(["--source", str(frames), "--model", str(other), "--out", str(killed), "-q"])
    assert r.exit_code == 1 and "holds results of another model" in r.output, r.output
    # a file of an older edge-ad (no model record) is continued
    old = tmp_path / "old.jsonl"
    old.write_text(json.dumps({"type": "frame", "frame": "1", "index": 0, "score": 0.1}) + "\n")
    r = invoke(["--source", str(frames), "--model", str(other), "--out", str(old), "-q"])
    assert r.exit_code == EXIT_OK, r.output
    assert [x["index"] for x in lines(old) if x["type"] == "frame"] == [0, 1, 2, 3]


def test_a_changed_configuration_under_the_same_name_is_another_model(tmp_path):
    """Review 15 #3: Scorer.identity named the configuration by its name only, so a Scorer.load(...,
    config=cfg.replace(...)) kept the name and its scores were appended to the file of the unchanged
    configuration. Now identity carries config_sha256 (search settings + preprocessing): a changed
    setting is refused, the same settings (from a dict) resume; a file whose model records predate
    config_sha256 (runs earlier today) resumes with the same model and configuration name."""
    from edge_ad.runtime import Scorer
    from edge_ad.runtime.capture import run_capture
    from edge_ad.runtime.config import SearchConfig
    from edge_ad.runtime.results import OtherModelError
    from edge_ad.runtime.sources import open_source
    from edge_ad.runtime.scorer import scoring_settings_sha256

    def capture(scorer, out):
        return run_capture(open_source("synth://?n=2"), scorer, out=out, handle_signals=False)

    demo = demo_model_dir()
    sc = Scorer.load(demo)
    changed = Scorer.load(demo, config=sc.config.replace(score_latent_power=0.0))
    assert changed.config.name == sc.config.name
    out = tmp_path / "r.jsonl"
    capture(sc, out)
    before = out.read_bytes()
    with pytest.raises(OtherModelError, match=r"config_sha256 '[0-9a-f]{64}' -> '[0-9a-f]{64}'"):
        capture(changed, out)
    assert out.read_bytes() == before
    assert scoring_settings_sha256(sc.config, PreprocessSpec(far_mm=900)) != sc.identity["config_sha256"]
    capture(Scorer.load(demo, config=SearchConfig.from_dict(sc.config.to_dict())), out)   # same settings
    assert [x["index"] for x in lines(out) if x["type"] == "frame"] == [0, 1, 2, 3]
    # written before config_sha256 existed: model records {path, manifest_sha256, configuration}
    old = tmp_path / "old.jsonl"
    recs = [json.loads(x) for x in before.decode().splitlines()]
    for x in recs:
        if "model" in x:
            del x["model"]["config_sha256"]
    old.write_text("".join(json.dumps(x) + "\n" for x in recs))
    capture(sc, old)
    assert [x["index"] for x in lines(old) if x["type"] == "frame"] == [0, 1, 2, 3]
    renamed = Scorer.load(demo, config=sc.config.replace(name="other-name"))
    with pytest.raises(OtherModelError, match="configuration 'izi-mem-fg1.0-lat0.5' -> 'other-name'"):
        capture(renamed, old)


def test_close_range_16bit_mm_frames_are_scored_with_one_warning(tmp_path, kinect_root, stub):
    """Review 15 #1: 16-bit PNG millimetres all within 25.5 cm were 'error' lines ('looks like 8-bit
    depth levels', exit 3). Now every frame is scored, and the possible 8-bit levels are said once: on
    stderr and as a source_warning event in the results (written before the frame that triggered it)."""
    root = close_range_folder(tmp_path / "wrist", kinect_root)
    out = tmp_path / "r.jsonl"
    r = invoke(["--source", str(root), "--out", str(out), "-q"])
    assert r.exit_code == EXIT_OK, r.output
    recs = lines(out)
    assert [x["frame"] for x in recs if x["type"] == "frame"] == ["3", "4", "7", "8"]
    assert not [x for x in recs if x["type"] == "error"] and recs[-1]["frames_scored"] == 4
    events = [x for x in recs if x.get("event") == "source_warning"]
    assert len(events) == 1 and "16-bit PNGs whose readings all lie in 1..255" in events[0]["warning"]
    assert r.output.count("warning: depth ") == 1 and events[0]["warning"] in r.output
    order = [x.get("frame") or x.get("event") for x in recs if x["type"] in ("frame", "event")]
    assert order.index("source_warning") == order.index("7") - 1           # LEVELS_RUN = 3 frames


def test_a_labelled_folders_unchecked_normal_class_is_a_warning(tmp_path, kinect_root, stub):
    """Audit 2 #8: folder://CLASSDIR?normal=TYPO labelled every frame anomalous without a word. A typo
    beside class folders of a dataset layout (splits.json) is refused; a folder alone, or beside frame
    folders that are no classes (review 15 #4), is run, with a warning on stderr and a source_warning
    event in the results."""
    lone = small_folder(tmp_path / "lone" / "scratches", kinect_root)
    out = tmp_path / "r.jsonl"
    r = invoke(["--source", f"folder://{lone}?normal=widget", "--out", str(out), "-q"])
    assert r.exit_code == EXIT_OK, r.output
    assert ("warning: normal class 'widget' is not this folder's class 'scratches' and no folder beside "
            f"it has that name: every frame of {lone} is labelled anomalous") in r.output
    events = [x for x in lines(out) if x.get("event") == "source_warning"]
    assert len(events) == 1 and "'widget'" in events[0]["warning"]
    small_folder(tmp_path / "lone" / "widget", kinect_root)
    r = invoke(["--source", f"folder://{lone}?normal=widgte", "-q"])
    assert r.exit_code == EXIT_OK and "no folder beside it has that name (beside it: widget)" in r.output
    (tmp_path / "lone" / "splits.json").write_text("{}")
    r = invoke(["--source", f"folder://{lone}?normal=widgte", "-q"])
    assert r.exit_code == 1 and "normal class 'widgte' is neither this folder's class 'scratches' nor one of " \
                                "its sibling class folders ['widget']" in r.output, r.output


def test_a_file_whose_config_sha256_still_hashed_the_sensor_limits_resumes(tmp_path):
    """Review 15b #2: config_sha256 no longer hashes preprocess.sensor_faults (limits gate frames, they
    do not change scores). A results file written while it did (0ec1a51..21a4c5d: the limits as then
    stored, without noise_measured_on, or the defaults then filled in for a manifest without them)
    resumes with the same model; a config_sha256 of other settings is still another model."""
    import hashlib
    from edge_ad.runtime import Scorer
    from edge_ad.runtime.capture import run_capture
    from edge_ad.runtime.results import OtherModelError
    from edge_ad.runtime.sources import open_source

    def capture(scorer, out):
        return run_capture(open_source("synth://?n=2"), scorer, out=out, handle_signals=False)

    def hashed_with(sc, limits) -> str:   # scoring_settings_sha256 as 0ec1a51 computed it
        pre = {**sc.preprocess.to_dict(), "sensor_faults": limits}
        settings = {"search": {k: v for k, v in sc.config.to_dict().items() if k != "name"}, "preprocess": pre}
        return hashlib.sha256(json.dumps(settings, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    sc = Scorer.load(demo_model_dir())
    out = tmp_path / "r.jsonl"
    capture(sc, out)
    stored = {k: v for k, v in sc.preprocess.sensor_faults.__dict__.items()   # fields added later left out
              if k not in ("noise_measured_on", "min_colour_spread", "noisy_flat_spread",
                            "featureless_spread", "max_edge_foreground")}
    old_defaults = {**stored, "min_valid_depth": 0.005, "min_foreground": 0.005, "max_black": 0.5,
                    "max_saturated": 0.5, "noise_level": 16.0}
    for i, limits in enumerate((stored, old_defaults)):
        earlier = tmp_path / f"earlier{i}.jsonl"
        recs = [json.loads(x) for x in out.read_text().splitlines()]
        for x in recs:
            if "model" in x:
                x["model"]["config_sha256"] = hashed_with(sc, limits)
                assert x["model"]["config_sha256"] != sc.identity["config_sha256"]
        earlier.write_text("".join(json.dumps(x) + "\n" for x in recs))
        capture(sc, earlier)
        assert [x["index"] for x in lines(earlier) if x["type"] == "frame"] == [0, 1, 2, 3]
    other = tmp_path / "other.jsonl"
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    changed = Scorer.load(demo_model_dir(), config=sc.config.replace(score_latent_power=0.0))
    for x in recs:
        if "model" in x:
            x["model"]["config_sha256"] = hashed_with(changed, stored)
    other.write_text("".join(json.dumps(x) + "\n" for x in recs))
    with pytest.raises(OtherModelError, match="config_sha256"):
        capture(sc, other)


def test_wait_for_camera_waits_for_a_camera_that_is_not_there_yet(tmp_path, monkeypatch):
    """Audit 28 #15: `edge-ad run --camera` without a camera exited 1 at once, so the systemd unit's restarts
    (5 s apart, at most 10 in 10 min) gave up for good on a camera that enumerates late after boot. With
    --wait-for-camera (the unit's) no camera at start is an outage, as a camera lost mid-run: one line, a
    source_lost event in --out, retried with backoff until one opens; then its frames are scored. Without the
    flag: exit 1 at once, as before."""
    import edge_ad.runtime.sources as sources
    from edge_ad.runtime.sources import SourceError, open_source
    tries = []

    def camera_after_two_tries():
        tries.append(time.monotonic())
        if len(tries) <= 2:
            raise SourceError("no RGB-D camera found (RealSense: 0 RGB-D device(s))")
        return open_source("synth://?n=20&seed=4")
    monkeypatch.setattr(sources, "open_camera", camera_after_two_tries)
    out = tmp_path / "r.jsonl"
    r = CliRunner().invoke(run_cmd.cmd, ["--camera", "--wait-for-camera", "--model", str(demo_model_dir()),
                                         "--out", str(out), "--max-frames", "3", "-q"])
    assert r.exit_code == 0, r.output
    assert ("waiting for the camera: no RGB-D camera found (RealSense: 0 RGB-D device(s)); retrying every "
            "0.5-10 s (a source_lost event in the results)") in r.output
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    events = [x.get("event") for x in rows if x.get("type") == "event"]
    assert "source_lost" in events and "source_reopened" in events, events
    assert sum(x.get("type") == "frame" for x in rows) == 3 and len(tries) == 3
    tries.clear()
    r = CliRunner().invoke(run_cmd.cmd, ["--camera", "--model", str(demo_model_dir()), "--out",
                                         str(tmp_path / "r2.jsonl"), "-q"])
    assert r.exit_code == 1 and "Error: no RGB-D camera found" in r.output and len(tries) == 1, r.output


def test_quiet_still_says_that_no_frame_will_be_flagged(tmp_path):
    """Audit 28 #19: -q ("No live status line") also hid the one line saying that a model without a threshold
    flags no frame, while lesser lines stayed: a service run (-q) scored all day without flagging, unsaid."""
    import shutil
    model = tmp_path / "nothr"
    shutil.copytree(demo_model_dir(), model)
    man = json.loads((model / "manifest.json").read_text())
    del man["threshold"]
    (model / "manifest.json").write_text(json.dumps(man))
    r = CliRunner().invoke(run_cmd.cmd, ["--model", str(model), "--source", "synth://?n=1", "-q",
                                         "--out", str(tmp_path / "r.jsonl")])
    assert r.exit_code == 0, r.output
    assert ("note: no threshold (the model has none and --threshold was not given): scores are written, frames are "
            "not flagged") in r.output, r.output


def test_rotation_options_that_would_do_nothing_are_refused(tmp_path):
    """Audit 28 #25: the refusal read "--rotate-keep N keeps the newest N files --rotate-mb rotates" (words missing);
    and --rotate-mb without --out rotated nothing, silently. One rule with the ROS node (rotation_problem)."""
    r = CliRunner().invoke(run_cmd.cmd, ["--source", "synth://?n=1", "--out", str(tmp_path / "r.jsonl"),
                                         "--rotate-keep", "3"])
    assert r.exit_code == 2 and ("--rotate-keep keeps the newest N of the files --rotate-mb rotates: give --rotate-mb "
                                 "too") in r.output, r.output
    r = CliRunner().invoke(run_cmd.cmd, ["--source", "synth://?n=1", "--rotate-mb", "5"])
    assert r.exit_code == 2 and "--rotate-mb / --rotate-keep rotate the results file: give --out too" in r.output

