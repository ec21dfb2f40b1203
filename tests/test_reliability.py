"""Runs that last all day (issue 16 part B): results appended and rotated, never overwritten, a
restart continuing the frame index; a summary on every path saying how the run ended; a watchdog
so SIGTERM ends a run whose scoring call never returns; bounded latency statistics; the
frame-size limit. Sensor faults: test_sensor_faults.py; truncated recordings: test_salvage.py."""
from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from edge_ad.runtime.capture import EXIT_FATAL, run_capture
from edge_ad.runtime.latency_stats import RollingStats
from edge_ad.runtime.preprocess import FrameError
from edge_ad.runtime.results import ResultWriter, rotated_files
from edge_ad.runtime.sources import Frame, Source, open_source

from test_capture import FakeScorer, read_lines  # noqa: E402  (tests/ is on sys.path under pytest)

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- append, resume, rotate

def test_restart_appends_and_continues_the_frame_index(tmp_path):
    out = tmp_path / "r.jsonl"
    s1 = run_capture(open_source("synth://?n=4&seed=1"), FakeScorer(), out=out, handle_signals=False)
    first = read_lines(out)
    s2 = run_capture(open_source("synth://?n=3&seed=2"), FakeScorer(), out=out, handle_signals=False)
    lines = read_lines(out)
    assert lines[:len(first)] == first                      # the first run's lines are all still there
    assert lines[len(first)]["event"] == "resumed" and lines[len(first)]["next_index"] == 4
    idx = [r["index"] for r in lines if r["type"] == "frame"]
    assert idx == list(range(7))                            # the frame count continues
    assert s1["first_index"] == 0 and s2["first_index"] == 4 and s2["next_index"] == 7
    assert s2["resumed"] is True and s2["frames_scored"] == 3


def test_torn_last_line_is_kept_in_an_event_and_the_file_stays_valid(tmp_path):
    out = tmp_path / "r.jsonl"
    run_capture(open_source("synth://?n=3&seed=1"), FakeScorer(), out=out, handle_signals=False)
    intact = out.read_text()
    torn = '{"type": "frame", "frame": "synth-000009", "index": 9, "sco'   # a kill mid-write
    out.write_text(intact + torn)
    run_capture(open_source("synth://?n=2&seed=2"), FakeScorer(), out=out, handle_signals=False)
    lines = read_lines(out)                                 # every line parses
    assert out.read_text().startswith(intact)
    ev = [r for r in lines if r.get("event") == "resumed"][0]
    assert ev["torn_line"] == torn and ev["torn_bytes"] == len(torn)
    assert ev["next_index"] == 3                            # from the last intact line
    assert [r["index"] for r in lines if r["type"] == "frame"] == [0, 1, 2, 3, 4]


def test_a_power_cuts_long_zero_tail_is_cut_and_counted_not_refused(tmp_path):
    """A power cut can leave any number of NUL bytes at the file's end (here 64 KiB, more than the
    16 KiB torn-line limit): the restarted run resumes (the old code refused the file on every
    start), the old lines stay, and the zeros are counted in the resumed event, not copied into it."""
    from edge_ad.runtime.results import ResultsFileError, TORN_MAX
    out = tmp_path / "r.jsonl"
    lines_ok = b'{"type": "frame", "index": 0}\n{"type": "frame", "index": 1}\n'
    for torn in (b"", b'{"type": "frame", "ind'):
        out.write_bytes(lines_ok + torn + b"\0" * 65536)
        s = run_capture(open_source("synth://?n=1&seed=1"), FakeScorer(), out=out, handle_signals=False)
        data = out.read_bytes()
        assert data.startswith(lines_ok) and b"\0" not in data
        lines = read_lines(out)                              # every line parses
        ev = lines[2]
        assert ev["event"] == "resumed" and ev["next_index"] == 2 and s["first_index"] == 2
        assert ev["torn_bytes"] == len(torn) + 65536 and ev["torn_zero_bytes"] == 65536
        assert ev.get("torn_line", "") == torn.decode()
        assert len(json.dumps(ev)) < 1024
    out.write_bytes(b"\0" * 40000)                          # a file of nothing but a power cut's zeros
    w = ResultWriter(out)
    w.close()
    assert w.next_index == 0 and w.resumed["torn_zero_bytes"] == 40000 and b"\0" not in out.read_bytes()
    # NUL bytes are no licence: a long text before them, or zeros after someone else's line, is refused
    for data in (lines_ok + b'{"type": "' + b"x" * (TORN_MAX + 1) + b"\0" * 100,
                 b"my notes\n" + b"\0" * 100):
        out.write_bytes(data)
        with pytest.raises(ResultsFileError):
            ResultWriter(out)
        assert out.read_bytes() == data


def test_a_results_file_being_written_is_refused_to_a_second_run(tmp_path):
    """Audit 26 #14: two runs appending to one --out interleaved their lines, every frame index twice. A writer
    locks the file (flock) before reading or cutting it: a second is refused naming it, the file unchanged (its
    torn-looking last line, the first run's line in progress, is not cut); after the first closes, it resumes."""
    from click.testing import CliRunner

    from edge_ad.commands import run as run_cmd
    from edge_ad.runtime.results import ResultsFileError, ResultWriter
    out = tmp_path / "r.jsonl"
    first = ResultWriter(out)
    first.write({"type": "frame", "index": 0})
    with open(out, "a") as f:
        f.write('{"type": "frame", "ind')                   # the first run's next line, half written
    data = out.read_bytes()
    with pytest.raises(ResultsFileError, match=r"r\.jsonl is being written by another edge-ad run"):
        ResultWriter(out)
    r = CliRunner().invoke(run_cmd.cmd, ["--source", "synth://?n=1", "--out", str(out), "-q"])
    assert r.exit_code == 1 and "is being written by another edge-ad run" in r.output, r.output
    assert out.read_bytes() == data
    first.close()
    w = ResultWriter(out)                                    # free again: resumed, the torn line kept in the event
    w.close()
    assert w.next_index == 1 and w.resumed["torn_line"] == '{"type": "frame", "ind'
    missing = tmp_path / "never.jsonl"                       # a writer refused for another reason makes no file
    (tmp_path / "never.jsonl.1").write_text(json.dumps({"type": "summary", "model": {
        "path": "x", "manifest_sha256": "a" * 64, "configuration": "c"}}) + "\n")
    with pytest.raises(ResultsFileError):
        ResultWriter(missing, model={"path": "y", "manifest_sha256": "b" * 64, "configuration": "c"})
    assert not missing.exists()
    # review nit: a writer refused by the lock never removes the file, even a new empty one another run just
    # created and holds (that run would write on into an unlinked file)
    import fcntl
    fresh = tmp_path / "fresh.jsonl"
    with open(fresh, "a") as holder:
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        inode = os.stat(fresh).st_ino
        with pytest.raises(ResultsFileError, match="being written by another"):
            ResultWriter(fresh)
        assert fresh.exists() and os.stat(fresh).st_ino == inode


def test_last_index_found_behind_a_long_run_of_events(tmp_path):
    from edge_ad.runtime.results import TAIL_BYTES, last_index
    out = tmp_path / "r.jsonl"
    lines = [json.dumps({"type": "frame", "index": i}) for i in range(5)]
    ev = json.dumps({"type": "event", "event": "source_lost", "error": "x" * 200})
    lines += [ev] * (3 * TAIL_BYTES // len(ev))      # three windows of events after the last frame
    out.write_text("\n".join(lines) + "\n")
    assert last_index(out) == 4
    out.write_text(ev + "\n")
    assert last_index(out) is None


def test_rotation_never_overwrites_and_a_restart_continues_from_the_newest(tmp_path):
    out = tmp_path / "r.jsonl"
    (tmp_path / "r.jsonl.2").write_text("an older rotated file\n")   # must never be replaced
    s = run_capture(open_source("synth://?n=30&seed=1"), FakeScorer(), out=out, rotate_bytes=2000,
                    handle_signals=False)
    rotated = rotated_files(out)
    assert [p.name for p in rotated][:1] == ["r.jsonl.2"] and len(rotated) >= 3
    assert (tmp_path / "r.jsonl.2").read_text() == "an older rotated file\n"
    assert s["rotations"] == len(rotated) - 1
    recs = [json.loads(x) for p in rotated[1:] + [out] for x in p.read_text().splitlines()]
    assert [r["index"] for r in recs if r["type"] == "frame"] == list(range(30))
    assert all(r["event"] == "rotated" for p in rotated[2:] + [out]
               for r in [json.loads(p.read_text().splitlines()[0])])
    # a crash just after a rotation: the current file holds only the "rotated" event, the restart
    # continues from the newest rotated file
    w = ResultWriter(out, rotate_bytes=2000)
    newest = w.rotate()
    w.close()
    assert [json.loads(x)["event"] for x in out.read_text().splitlines()] == ["rotated"]
    s2 = run_capture(open_source("synth://?n=1&seed=3"), FakeScorer(), out=out, handle_signals=False)
    assert s2["first_index"] == 30
    ev = [json.loads(x) for x in out.read_text().splitlines()][1]
    assert ev["event"] == "resumed" and ev["previous_file"] == str(newest)


def test_restart_on_a_finite_source_says_its_frames_are_scored_again(tmp_path):
    """Audit 27 #20: a restart into the same --out continues the frame index, but a recording, folder or
    synth:// is read from its first frame again: its frames appear twice in the file. The log said only
    'continuing ... at frame index 506', as if the run resumed at frame 506; now it says what happens."""
    out, logs = tmp_path / "r.jsonl", []
    run_capture(open_source("synth://?n=3&seed=1"), FakeScorer(), out=out, handle_signals=False, log=logs.append)
    assert not any("continuing" in x for x in logs)
    run_capture(open_source("synth://?n=3&seed=1"), FakeScorer(), out=out, handle_signals=False, log=logs.append)
    said = [x for x in logs if "continuing" in x]
    assert said == [f"{out}: continuing an earlier run's results at frame index 3 (the frame index only: this "
                    "source is read from its first frame again, so frames an earlier run scored appear twice in "
                    f"{out}; edge-ad batch skips the sources it finished)"]
    frames = [r["frame"] for r in read_lines(out) if r["type"] == "frame"]
    assert frames[:3] == frames[3:] and len(frames) == 6          # what the line warns of


def test_every_rotated_file_names_its_model_so_a_pruned_start_still_refuses_another_model(tmp_path):
    """Audit 29 #1: the model was named only in a new file's ``start`` event, ``resumed`` events and the summary.
    With --rotate-keep the file holding ``start`` is pruned; after a crash (no summary) no file named a model and a
    restart by ANOTHER model appended its scores to the first model's file (exit 0). Now the ``rotated`` event
    that begins each file names the model: the other model is refused, the files unchanged; the same resumes."""
    from edge_ad.runtime.results import OtherModelError
    a = {"path": "/m/a", "manifest_sha256": "a" * 64, "configuration": "conf", "config_sha256": "1" * 64}
    b = {**a, "path": "/m/b", "manifest_sha256": "b" * 64}
    out = tmp_path / "r.jsonl"
    w = ResultWriter(out, rotate_bytes=600, rotate_keep=1, model=a)
    w.write({"type": "event", "event": "start", "time": 0.0, "model": a})   # as run_capture writes it
    for i in range(40):
        w.write({"type": "frame", "index": i, "score": 0.5, "threshold": 1.0})
    w.close()                                          # a crash: no summary
    files = rotated_files(out) + [out]
    assert w.rotations >= 4 and len(files) == 2        # the file with the start event is long gone
    texts = [p.read_text() for p in files]
    assert not any('"start"' in t for t in texts)
    firsts = [json.loads(t.splitlines()[0]) for t in texts]
    assert [(f["event"], f["model"]) for f in firsts] == [("rotated", a)] * 2
    with pytest.raises(OtherModelError, match=f"manifest_sha256 '{'a' * 64}' -> '{'b' * 64}'"):
        ResultWriter(out, model=b)
    assert [p.read_text() for p in files] == texts     # refused: nothing cut or written
    w = ResultWriter(out, model=a)                     # the same model continues
    assert w.next_index == 40 and w.resumed["model"] == a
    w.close()


def test_a_rotate_size_below_the_rotated_events_size_rotates_once_per_line(tmp_path):
    """Found with audit 29 #19: a rotate size smaller than the 'rotated' event that opens each new file (with the
    model named, #1: ~300 bytes) rotated again from that event, recursively: `edge-ad run --rotate-mb 0.0002` ended
    in a RecursionError traceback after 491 files. The events a rotation writes never rotate; the next line does:
    one rotation per line, each file its rotated event and one line."""
    model = {"path": "/m", "manifest_sha256": "a" * 64, "configuration": "c" * 100, "config_sha256": "1" * 64}
    out = tmp_path / "r.jsonl"
    w = ResultWriter(out, rotate_bytes=50, rotate_keep=2, model=model)
    for i in range(5):
        w.write({"type": "frame", "index": i, "score": 0.5})
    w.close()
    assert w.rotations == 4 and [p.name for p in rotated_files(out)] == ["r.jsonl.3", "r.jsonl.4"]
    kept = [[json.loads(x) for x in p.read_text().splitlines()] for p in rotated_files(out)]
    assert [[r.get("event") or r["index"] for r in f] for f in kept] == [["rotated", 3], ["rotated", "pruned", 4]]
    assert [json.loads(x)["event"] for x in out.read_text().splitlines()] == ["rotated", "pruned"]


def test_rotate_keep_deletes_the_oldest_rotated_files_only(tmp_path):
    """Audit 27 #19: results were never deleted, so the shipped service (rotated at 100 MB) filled its disk,
    failed to write (ENOSPC, exit 1) and, 10 failed restarts later, systemd gave up: no scoring until a human
    came. --rotate-keep N (the unit: 20) deletes the rotated files older than the newest N after each rotation,
    names them in a 'pruned' event, and touches nothing else; without it every file is kept, as before."""
    from click.testing import CliRunner

    from edge_ad.cli import main
    out = tmp_path / "r.jsonl"
    (tmp_path / "r.jsonl.1").write_text("an older run's rotated file\n")
    (tmp_path / "other.jsonl.1").write_text("another file's\n")
    logs = []
    s = run_capture(open_source("synth://?n=30&seed=1"), FakeScorer(), out=out, rotate_bytes=2000, rotate_keep=2,
                    handle_signals=False, log=logs.append)
    rotated = rotated_files(out)
    nums = [int(p.name.rsplit(".", 1)[1]) for p in rotated]
    assert s["rotations"] >= 3 and len(rotated) == 2 and nums[1] == nums[0] + 1 >= 5    # the newest two only
    assert (tmp_path / "other.jsonl.1").read_text() == "another file's\n"
    events = [json.loads(x) for p in rotated + [out] for x in p.read_text().splitlines()]
    pruned = [f for e in events if e.get("event") == "pruned" for f in e["files"]]
    older = {str(tmp_path / f"r.jsonl.{k}") for k in range(1, nums[0])}      # the earlier run's .1 among them
    assert not any(os.path.exists(f) for f in older)
    assert pruned and set(pruned) <= older        # the events still kept (others went with the files pruned)
    assert all(e["keep"] == 2 for e in events if e.get("event") == "pruned")
    said = [x for x in logs if x.startswith("deleted ")]      # each pruning said on the console too
    assert said and said[0] == f"deleted 1 old results file(s) to keep the newest 2 rotated ones: {tmp_path}/r.jsonl.1"
    assert sum(x.count(", ") + 1 for x in said) == nums[0] - 1    # every file deleted is named once
    w = ResultWriter(tmp_path / "k.jsonl", rotate_bytes=2000)             # no rotate_keep: every file kept
    for _ in range(4):
        w.rotate()
    w.close()
    assert len(rotated_files(tmp_path / "k.jsonl")) == 4
    with pytest.raises(ValueError, match="rotate_keep must be a whole number >= 1"):
        ResultWriter(None, rotate_keep=0)
    r = CliRunner().invoke(main, ["run", "--source", "synth://?n=40", "-q", "--out", str(tmp_path / "c.jsonl"),
                                  "--rotate-mb", "0.004", "--rotate-keep", "1"])
    assert r.exit_code == 0 and len(rotated_files(tmp_path / "c.jsonl")) == 1, r.output
    r = CliRunner().invoke(main, ["run", "--source", "synth://?n=2", "-q", "--out", str(tmp_path / "d.jsonl"),
                                  "--rotate-keep", "1"])
    assert r.exit_code == 2 and "give --rotate-mb too" in r.output and not (tmp_path / "d.jsonl").exists()


def test_results_pause_while_the_disk_is_full_and_scoring_goes_on(tmp_path, monkeypatch):
    """Audit 27 #19 (b): a results line that did not fit (ENOSPC) ended the run (exit 1), and every restart
    failed the same way until systemd gave up. Now the results pause: the short write's bytes are cut off
    again (every line of the file stays whole JSON), later lines are dropped and counted while scoring goes
    on, and the first line that fits again is preceded by a results_lost event; both said on the console."""
    import errno

    import edge_ad.runtime.results as results_mod
    from edge_ad.runtime.capture import EXIT_BAD_FRAMES, exit_status
    real, full = results_mod.write_all, {"on": False}

    def write_all(fd, data):
        if full["on"]:
            os.write(fd, data[:7])                 # a short write, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, data)

    def hook(rec, fr, res):                        # the disk fills after frame 4's line, and frees after frame 9's
        full["on"] = 4 <= rec["index"] < 9
    monkeypatch.setattr(results_mod, "write_all", write_all)
    out, logs = tmp_path / "r.jsonl", []
    s = run_capture(open_source("synth://?n=12&seed=1"), FakeScorer(), out=out, handle_signals=False,
                    on_result=hook, log=logs.append)
    recs = [json.loads(x) for x in out.read_text().splitlines()]          # every line whole
    assert s["frames_scored"] == 12 and s["results_lost"] == 5 and exit_status(s) == EXIT_BAD_FRAMES
    assert [r["index"] for r in recs if r["type"] == "frame"] == [0, 1, 2, 3, 4, 10, 11]
    lost = [r for r in recs if r.get("event") == "results_lost"]
    assert len(lost) == 1 and lost[0]["lines"] == 5 and lost[0]["until"] >= lost[0]["since"]
    assert "No space left on device" in lost[0]["error"] and recs[-1]["results_lost"] == 5
    assert recs.index(lost[0]) == [r.get("index") for r in recs].index(10) - 1     # just before frame 10
    assert any(x.startswith(f"cannot write results to {out}: [Errno 28]") and "scoring goes on" in x for x in logs)
    assert any(x.startswith(f"results written again to {out}: 5 line(s) lost") for x in logs)
    full["on"] = True                               # still full at the end: the summary is lost too, and counted
    w = ResultWriter(tmp_path / "f.jsonl")
    w.write({"type": "frame", "index": 0})
    assert w.lost_lines == 1 and (tmp_path / "f.jsonl").read_bytes() == b"" and w.paused["lines"] == 1
    full["on"] = False

    def broken(fd, data):
        raise OSError(errno.EIO, "Input/output error")
    monkeypatch.setattr(results_mod, "write_all", broken)   # any other error still ends the run, as before
    with pytest.raises(OSError, match="Input/output"):
        w.write({"type": "frame", "index": 1})


def test_cli_appends_and_systemd_unit_rotates(tmp_path):
    from click.testing import CliRunner
    from edge_ad.commands import run as run_cmd
    import configparser
    out = tmp_path / "r.jsonl"
    sc = FakeScorer()
    sc.n_seed, sc.z_dim, sc.threshold = 1, 4, None
    orig = run_cmd.load_scorer
    run_cmd.load_scorer = lambda model, backend, **kw: sc
    try:
        for n in (2, 3):
            r = CliRunner().invoke(run_cmd.cmd, ["--source", f"synth://?n={n}", "--out", str(out), "-q",
                                                 "--rotate-mb", "1"], catch_exceptions=False)
            assert r.exit_code == 0, r.output
    finally:
        run_cmd.load_scorer = orig
    assert [r["index"] for r in read_lines(out) if r["type"] == "frame"] == [0, 1, 2, 3, 4]
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str
    cp.read(REPO / "jetson" / "edge-ad.service")
    start = cp["Service"]["ExecStart"]
    assert "--out /var/lib/edge-ad/results.jsonl" in start and "--rotate-mb" in start and "--frame-timeout" in start


# ----------------------------------------------------------------------------- the summary on every path

class Failing(FakeScorer):
    def __init__(self, exc, at=2):
        super().__init__()
        self.exc, self.at = exc, at

    def score(self, rgb, depth, z0=None, seed=None, **kw):
        if len(self.calls) == self.at:
            raise self.exc
        return super().score(rgb, depth, z0=z0, seed=seed)


def _ort_failure():
    """A real onnxruntime exception: a graph fed the wrong dtype."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    try:
        sess.run(None, {"x": np.zeros(1, np.int64)})
    except Exception as e:
        return e
    raise AssertionError("onnxruntime accepted an int64 input for a float graph")


@pytest.mark.parametrize("kind", ["memory", "onnxruntime"])
def test_summary_says_fatal_with_its_reason(tmp_path, kind):
    out = tmp_path / "r.jsonl"
    if kind == "memory":
        sc = Failing(MemoryError("cannot allocate 6.2 GB"))
    else:
        sc = Failing(_ort_failure())
    s = run_capture(open_source("synth://?n=6&seed=1"), sc, out=out, handle_signals=False)
    lines = read_lines(out)
    assert lines[-1] == s and s["stopped"] == "fatal"
    expect = {"memory": "MemoryError: cannot allocate", "onnxruntime": "INVALID_ARGUMENT"}[kind]
    assert expect in s["fatal_error"], s["fatal_error"]
    assert s["frames_scored"] == 2 == sum(r["type"] == "frame" for r in lines)


def test_a_bug_in_a_callback_is_not_fatal(tmp_path):
    """An exception in an on_result hook (here a KeyError) is a hook_failed event: the run scores
    every frame and ends normally (test_capture.py has the full-disk case)."""
    out = tmp_path / "r.jsonl"

    def hook(rec, fr, res):
        if rec["index"] == 2:
            raise KeyError("callback bug")
    s = run_capture(open_source("synth://?n=6&seed=1"), FakeScorer(), out=out, on_result=hook, handle_signals=False)
    lines = read_lines(out)
    assert lines[-1] == s and s["stopped"] == "end" and s["frames_scored"] == 6
    ev = [r for r in lines if r.get("event") == "hook_failed"]
    assert len(ev) == 1 and ev[0]["error"] == "KeyError: 'callback bug'" and ev[0]["hook"] == "hook"


def test_cli_fatal_exit_status_and_message(tmp_path):
    from click.testing import CliRunner
    from edge_ad.commands import run as run_cmd
    sc = Failing(MemoryError("boom"), at=1)
    sc.n_seed, sc.z_dim, sc.threshold = 1, 4, None
    orig = run_cmd.load_scorer
    run_cmd.load_scorer = lambda model, backend, **kw: sc
    try:
        r = CliRunner().invoke(run_cmd.cmd, ["--source", "synth://?n=4", "--out", str(tmp_path / "r.jsonl"), "-q"],
                               catch_exceptions=False)
    finally:
        run_cmd.load_scorer = orig
    assert r.exit_code == EXIT_FATAL and "MemoryError: boom" in r.output
    assert "summary (fatal)" in r.output
    (tmp_path / "plain").write_text("a file, not a directory")
    run_cmd.load_scorer = lambda model, backend, **kw: sc
    try:
        r = CliRunner().invoke(run_cmd.cmd, ["--source", "synth://?n=1", "--out", str(tmp_path / "plain" / "r.jsonl"),
                                             "-q"])
    finally:
        run_cmd.load_scorer = orig
    assert r.exit_code == EXIT_FATAL and "cannot write results to" in r.output


# ----------------------------------------------------------------------------- watchdog: SIGTERM, timeouts

# A scorer stuck in native code: a second lock of a default pthread mutex never returns, and the
# signal handler cannot run while the calling thread is inside the C call (like an endless ONNX Loop).
STUCK_SCORER = textwrap.dedent("""
    import ctypes, sys, time
    from types import SimpleNamespace
    libc = ctypes.CDLL(None)
    MUTEX = ctypes.create_string_buffer(64)   # zeroed = PTHREAD_MUTEX_INITIALIZER (glibc)

    class Stuck:
        n_seed, z_dim, threshold, preprocess = 1, 4, None, None

        def __init__(self, stuck_at):
            self.stuck_at, self.n = stuck_at, 0

        def score(self, rgb, depth, z0=None, seed=None, **kw):
            self.n += 1
            if self.n > self.stuck_at:
                libc.pthread_mutex_lock(MUTEX)
                libc.pthread_mutex_lock(MUTEX)     # never returns
            time.sleep(0.01)
            return SimpleNamespace(score=float(rgb.mean()), timings={})
""")

RUN_STUCK = STUCK_SCORER + textwrap.dedent("""
    from edge_ad.runtime.capture import EXIT_FATAL, run_capture
    from edge_ad.runtime.sources import open_source
    s = run_capture(open_source("synth://?seed=1"), Stuck(3), out=sys.argv[1], stop_grace=0.5)
    print("stopped", s["stopped"], "abandoned", s.get("abandoned_frame"), flush=True)
    import os
    os._exit(1 if s.get("abandoned_frame") else 0)
""")

CLI_STUCK = STUCK_SCORER + textwrap.dedent("""
    from edge_ad.commands import run as run_cmd
    run_cmd.load_scorer = lambda model, backend, **kw: Stuck(int(sys.argv[2]))
    run_cmd.cmd(sys.argv[3:] + ["--out", sys.argv[1], "-q"])
""")


def _end_within(p, timeout: float, what: str):
    """(stdout, stderr) of ``p`` once it exits; kill it and fail the test naming ``what`` if it does not."""
    try:
        return p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        pytest.fail(what)


def _wait_lines(out: Path, n: int, p, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline and p.poll() is None and (not out.exists() or out.read_text().count("\n") < n):
        time.sleep(0.05)


def test_sigterm_ends_a_run_whose_scoring_never_returns(tmp_path):
    out = tmp_path / "r.jsonl"
    p = subprocess.Popen([sys.executable, "-c", RUN_STUCK, str(out)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    _wait_lines(out, 3, p)
    time.sleep(0.5)  # the 4th call is stuck in C by now
    assert p.poll() is None, p.communicate()[1]
    p.send_signal(signal.SIGTERM)
    stdout, stderr = _end_within(p, 20, "SIGTERM did not end a run whose scoring call never returns")
    assert p.returncode == 1, stderr
    lines = read_lines(out)
    s = lines[-1]
    assert s["type"] == "summary" and s["stopped"] == "signal:SIGTERM" and s["abandoned_frame"] == "synth-000003"
    assert "abandoned" in s["fatal_error"] and s["frames_scored"] == 3
    assert lines[-2]["type"] == "error" and lines[-2]["fatal"] is True and lines[-2]["index"] == 3


def test_second_sigterm_ends_a_stuck_run_at_once(tmp_path):
    out = tmp_path / "r.jsonl"
    script = RUN_STUCK.replace("stop_grace=0.5", "stop_grace=600")
    p = subprocess.Popen([sys.executable, "-c", script, str(out)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    _wait_lines(out, 3, p)
    time.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    p.send_signal(signal.SIGTERM)          # the operator insists: no 600 s grace
    _end_within(p, 20, "a second SIGTERM did not end the run")
    s = read_lines(out)[-1]
    assert p.returncode == 1 and s["stopped"] == "interrupted" and s["abandoned_frame"] == "synth-000003"


def test_cli_sigint_on_a_stuck_frame_exits_nonzero_with_summary(tmp_path):
    out = tmp_path / "r.jsonl"
    p = subprocess.Popen([sys.executable, "-c", CLI_STUCK, str(out), "2", "--source", "synth://?seed=1"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_lines(out, 2, p)
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    stdout, stderr = _end_within(p, 30, "SIGINT did not end the CLI run")
    assert p.returncode == 1, stderr
    s = read_lines(out)[-1]
    assert s["stopped"] == "signal:SIGINT" and s["abandoned_frame"] == "synth-000002"
    assert "summary (signal:SIGINT)" in stdout and "abandoned" in stderr


def test_cli_frame_timeout_is_fatal(tmp_path):
    out = tmp_path / "r.jsonl"
    p = subprocess.run([sys.executable, "-c", CLI_STUCK, str(out), "1", "--source", "synth://?seed=1",
                        "--frame-timeout", "1"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1, p.stderr
    s = read_lines(out)[-1]
    assert s["stopped"] == "frame_timeout" and "per-frame timeout of 1 s" in s["fatal_error"]
    assert s["frames_scored"] == 1 and s["abandoned_frame"] == "synth-000001"


def test_slow_frame_finishes_within_the_grace_period():
    """A stop during a normal (slow) frame lets it finish: scored, no abandoned frame."""
    stop = threading.Event()
    sc = FakeScorer(delay=0.3)
    threading.Timer(0.1, stop.set).start()   # a stop request while frame 0 is scoring
    s = run_capture(open_source("synth://?seed=1"), sc, stop=stop, handle_signals=False, stop_grace=5.0)
    assert s["frames_scored"] == 1 and "abandoned_frame" not in s and s["stopped"] == "stopped"


# ----------------------------------------------------------------------------- bounded memory

def test_rolling_stats_are_bounded_and_accurate():
    rng = np.random.default_rng(1)
    v = rng.lognormal(3.0, 0.5, 100_000)
    rs = RollingStats(size=4096)
    for x in v:
        rs.add(x)
    assert rs._sample.nbytes == 4096 * 8 and rs.count == 100_000
    assert abs(rs.mean - v.mean()) < 1e-9 * v.mean() and rs.max == v.max()
    for q in (50, 95):
        exact = np.percentile(v, q)
        rank = (v < rs.percentile(q)).mean() * 100   # the estimate's rank among all values
        assert abs(rank - q) < 1.5, (q, rs.percentile(q), exact)
    small = RollingStats(size=4096)
    for x in v[:100]:
        small.add(x)
    assert small.percentile(95) == np.percentile(v[:100], 95)   # exact below the reservoir size


class Tiny(Source):
    uri = "tiny"

    def __init__(self, n):
        self.n = n
        self.rgb, self.depth = np.zeros((8, 8, 3), np.uint8), np.ones((8, 8), np.uint8)

    def __iter__(self):
        for i in range(self.n):
            yield Frame(str(i), self.rgb, self.depth, 0.0)


def test_run_memory_does_not_grow_with_frames():
    """Python allocations after 20k frames = after 4k frames (the latency lists grew ~80 bytes/frame)."""
    res = SimpleNamespace(score=0.1, timings={"preprocess_ms": 0.1, "search_ms": 0.2})
    scorer = SimpleNamespace(score=lambda rgb, depth, **kw: res)
    seen = {}

    def hook(rec, fr, r):
        if rec["index"] in (4_000, 19_999):
            seen[rec["index"]] = tracemalloc.get_traced_memory()[0]

    tracemalloc.start()
    try:
        run_capture(Tiny(20_000), scorer, on_result=hook, handle_signals=False, check_sensor=False)
    finally:
        tracemalloc.stop()
    growth = seen[19_999] - seen[4_000]
    assert growth < 100_000, f"{growth} bytes for 16k frames"


# ----------------------------------------------------------------------------- frame-size limit

def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height (its data is a tiny stub: decoding would fail)."""
    import io
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = 8 + 8    # signature, then length + "IHDR"
    data[ihdr:ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[12:12 + 4 + 13])) & 0xFFFFFFFF
    data[29:33] = struct.pack(">I", crc)
    return bytes(data)


def test_frame_size_limit_before_decoding(tmp_path, kinect_root):
    from test_sources import kinect_frames
    root = tmp_path / "f"
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    for i, rgb, d8 in kinect_frames(kinect_root, 3):
        Image.fromarray(rgb).save(root / "rgb" / f"{i}.png")
        Image.fromarray(d8).save(root / "depth" / f"{i}.png")
    big = sorted(p.stem for p in (root / "rgb").iterdir())[1]
    (root / "rgb" / f"{big}.png").write_bytes(png_claiming(13000, 13000))
    out = tmp_path / "r.jsonl"
    s = run_capture(open_source(str(root)), FakeScorer(), out=out, handle_signals=False)
    errs = [r for r in read_lines(out) if r["type"] == "error"]
    assert len(errs) == 1 and errs[0]["frame"] == big
    assert "13000x13000 = 169,000,000 pixels exceeds the frame-size limit" in errs[0]["error"]
    assert s["frames_scored"] == 2                     # the run went on
    # a lower limit from the command line refuses the real 64 x 64 frames too (4096 pixels)
    s = run_capture(open_source(str(root), max_pixels=4000), FakeScorer(), handle_signals=False)
    assert s["frames_scored"] == 0 and s["frame_errors"] == 3
    # arrays handed over by a source that does not decode (a camera) are checked by the loop
    fr = kinect_frames(kinect_root, 1)[0]

    class Cam(Source):
        def __iter__(self):
            yield Frame("huge", np.zeros((3000, 3000, 3), np.uint8), np.ones((3000, 3000), np.uint8))
            yield Frame("ok", fr[1], fr[2])
    s = run_capture(Cam(), FakeScorer(), out=tmp_path / "c.jsonl", max_pixels=1 << 20, handle_signals=False)
    errs = [r for r in read_lines(tmp_path / "c.jsonl") if r["type"] == "error"]
    assert [e["frame"] for e in errs] == ["huge"] and "exceeds the frame-size limit" in errs[0]["error"]
    assert s["frames_scored"] == 1


def test_frame_size_limit_in_ros_messages():
    from edge_ad.runtime import msgconv
    msg = SimpleNamespace(format="png", data=np.frombuffer(png_claiming(20000, 20000), np.uint8))
    with pytest.raises(FrameError, match="exceeds the frame-size limit"):
        msgconv.msg_to_rgb(msg)
    raw = SimpleNamespace(encoding="rgb8", height=20000, width=20000, step=60000, is_bigendian=0, data=b"")
    with pytest.raises(FrameError, match="exceeds the frame-size limit"):
        msgconv.msg_to_rgb(raw)


def test_an_out_file_that_is_not_a_results_file_is_refused_unchanged(tmp_path):
    """--out naming a 200 KB file without a trailing newline (not a torn line of ours): refused with an
    error naming the file and what its end holds, every byte unchanged (the old code cut it to 64 KiB).
    A short tail that is not one of our lines is refused too; a torn line followed by the NUL bytes of
    a power cut is taken as torn."""
    from edge_ad.runtime.results import ResultsFileError, ResultWriter
    out = tmp_path / "notes.jsonl"
    data = bytes(range(32, 127)) * (200_000 // 95)            # 200 KB, no newline
    out.write_bytes(data)
    with pytest.raises(ResultsFileError, match=f"notes.jsonl.*{len(data)} bytes have no newline"):
        run_capture(open_source("synth://?n=2&seed=1"), FakeScorer(), out=out, handle_signals=False)
    assert out.read_bytes() == data
    lines_ok = b'{"type": "frame", "index": 0}\n' * 3
    for tail in (b"hello, not ours", b'{"a": 1}'):
        out.write_bytes(lines_ok + tail)
        with pytest.raises(ResultsFileError, match="do not start like a results line"):
            ResultWriter(out)
        assert out.read_bytes() == lines_ok + tail
    torn = b'{"type": "frame", "ind' + b"\0" * 4096            # torn mid-line, then a power cut's zeros
    out.write_bytes(lines_ok + torn)
    w = ResultWriter(out)
    w.close()
    assert w.next_index == 1 and out.read_bytes().startswith(lines_ok)
    assert w.resumed["torn_bytes"] == len(torn)
    from click.testing import CliRunner
    from edge_ad.commands import run as run_cmd
    out.write_bytes(data)
    r = CliRunner().invoke(run_cmd.cmd, ["--source", "synth://?n=1", "--out", str(out), "-q"])
    assert r.exit_code == 1 and "does not look like an edge-ad results file" in r.output and str(out) in r.output
    assert out.read_bytes() == data


def test_an_out_file_ending_in_a_newline_whose_last_line_is_not_ours_is_refused_unchanged(tmp_path):
    """Audit 26 #3: a CSV or a JSON-lines file of someone else's ending in a newline was appended to and logged as
    "continuing an earlier run's results" (only a tail without a newline was judged). Its last line must start
    like ours; a file of ours ending in a newline, or rotated and started afresh, resumes as before."""
    from click.testing import CliRunner

    from edge_ad.commands import run as run_cmd
    from edge_ad.runtime.results import ResultsFileError, ResultWriter
    out = tmp_path / "x.jsonl"
    for data in (b"a,b\n1,2\n", b'{"x": 1}\n', b'{"type": "frame", "index": 0}\nnotes\n', b"a,b\n\n\n",
                 b'{"type": "frame", "index": 0}\n{"index": 1, "type": "frame"}\n'):
        out.write_bytes(data)
        with pytest.raises(ResultsFileError, match=r"x\.jsonl does not look like an edge-ad results file: its last "
                                                   r"line does not start like a results line"):
            ResultWriter(out)
        assert out.read_bytes() == data
    out.write_bytes(b"a,b\n1,2\n")
    r = CliRunner().invoke(run_cmd.cmd, ["--source", "synth://?n=1", "--out", str(out), "-q"])
    assert r.exit_code == 1 and "does not look like an edge-ad results file" in r.output, r.output
    assert "continuing" not in r.output and out.read_bytes() == b"a,b\n1,2\n"
    ours = b'{"type": "frame", "index": 4}\n{"type": "event", "event": "rotated"}\n'
    for tail in (b"", b"\n", b"\n\n\r\n", b"\n" * 70000):    # review: empty lines after ours (echo >> file) are not
        out.write_bytes(ours + tail)                         # another file's: resumed, as before the check
        w = ResultWriter(out)
        w.close()
        assert w.next_index == 5 and out.read_bytes().startswith(ours + tail)
    for data in (b"\n", b"\n\n"):                            # nothing but empty lines: nobody's results, resumed at 0
        out.write_bytes(data)
        w = ResultWriter(out)
        w.close()
        assert w.next_index == 0 and out.read_bytes().startswith(data)
