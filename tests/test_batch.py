"""``edge-ad batch`` (issue 14): source expansion and names, the local process pool and Ray (a local
2-CPU cluster started here), rows equal to ``edge-ad run``'s, failed sources reported, a dead worker's
source retried, reruns resumed. The shipped rectangle model, exported (k = 0), real kinect frames."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import copy_frames
from edge_ad.batch.plan import PlanError, expand_sources, make_jobs, read_previous, source_name
from edge_ad.batch.worker import score_source
from edge_ad.commands import batch as batch_cmd
from edge_ad.commands import run as run_cmd
from test_capture import FakeScorer
from test_sources import d8_to_mm, kinect_frames, make_broken_folder, write_ros2_bag


def lines(path) -> list:
    return [json.loads(x) for x in Path(path).read_text().splitlines()]


def comparable(rec: dict) -> dict:
    """A results row without what depends on the clock (latencies, the folder's read time, an event's
    time) or on where the model was loaded from (a worker's unpacked copy: the model's manifest sha256
    and configuration are compared, not its path)."""
    out = {k: v for k, v in rec.items() if k not in ("latency_ms", "timestamp", "duration_s", "fps", "time")}
    if isinstance(out.get("model"), dict):
        out["model"] = {k: v for k, v in out["model"].items() if k != "path"}
    return out


def run_rows(model, source, out, seed=0) -> list:
    r = CliRunner().invoke(run_cmd.cmd, ["--model", str(model), "--source", str(source), "--out", str(out),
                                         "--seed", str(seed), "-q"])
    assert r.exit_code in (0, 3), r.output
    return lines(out)


def batch(args, env=None):
    return CliRunner().invoke(batch_cmd.cmd, [str(a) for a in args], env=env)


def summary_of(out) -> dict:
    s = json.loads((Path(out) / "summary.json").read_text())
    s["by_uri"] = {e["uri"]: e for e in s["sources"]}
    return s


# ----------------------------------------------------------------------------- planning

def test_expand_globs_lists_and_refusals(tmp_path):
    for n in ("a", "b"):
        (tmp_path / "arch" / n).mkdir(parents=True)
    (tmp_path / "x.mcap").write_bytes(b"")
    lst = tmp_path / "list.txt"
    lst.write_text(f"# archive\n\n{tmp_path}/x.mcap\n{tmp_path}/arch/*\n{tmp_path}/none-*\n")
    uris, problems = expand_sources([f"@{lst}", str(tmp_path / "x.mcap"), "synth://?n=3"])
    assert uris == [str(tmp_path / "x.mcap"), str(tmp_path / "arch" / "a"), str(tmp_path / "arch" / "b"),
                    "synth://?n=3"]                                   # globs sorted, duplicates once
    assert len(problems) == 1 and "no file or folder matches" in problems[0][1] and "line 5 of" in problems[0][1]
    with pytest.raises(PlanError, match="live camera"):
        expand_sources(["realsense://"])
    with pytest.raises(PlanError, match="never ends"):
        expand_sources(["synth://"])
    with pytest.raises(PlanError, match="cannot read source list"):
        expand_sources([f"@{tmp_path}/missing.txt"])


def test_names_unique_and_independent_of_order():
    uris = ["/d1/run7", "/d2/run7/", "/bags/day1.mcap", "rosbag:///bags/day2.db3?rgb=/c", "synth://?n=4"]
    names = [j.name for j in make_jobs(uris)]
    assert names[2:] == ["day1", "day2", "synth"]
    assert names[0] != names[1] and all(n.startswith("run7-") for n in names[:2])
    assert [j.name for j in make_jobs(uris[::-1])][::-1] == names      # the same names in any order
    assert source_name("/x/we!rd name") == "we_rd_name"


def test_a_source_keeps_its_name_in_out_whatever_the_other_sources(tmp_path, monkeypatch):
    """Names are the source's alone: a source named in OUT's summary.json keeps that name in a run
    with other sources (it was renamed when the set changed: 'cam-<hash>' alone became 'cam', 'cam'
    beside a namesake became 'cam-<hash>'); one source spelt three ways is one source, one name."""
    def summary(jobs, status="done"):
        return {j.name: {"name": j.name, "uri": j.uri, "status": status} for j in jobs}   # no "source": old format

    ab = make_jobs(["/d1/cam", "/d2/cam"])
    assert ab[0].name != ab[1].name and all(j.name.startswith("cam-") for j in ab)
    bc = make_jobs(["/d2/cam", "/d3/drive"], previous=summary(ab))
    assert [j.name for j in bc] == [ab[1].name, "drive"]                 # was "cam": a second copy
    a = make_jobs(["/d1/cam"])
    assert a[0].name == "cam"
    ab2 = make_jobs(["/d1/cam", "/d2/cam"], previous=summary(a))
    assert ab2[0].name == "cam" and ab2[1].name.startswith("cam-")       # was "cam-<hash>": a second copy
    b = make_jobs(["/d2/cam"], previous=summary(a, status="failed"))     # a name taken in OUT stays taken
    assert b[0].name.startswith("cam-")
    # one source however it is spelt (relative, ./x/, absolute): one job, the same name and key
    (tmp_path / "cam").mkdir()
    monkeypatch.chdir(tmp_path)
    uris, _ = expand_sources(["cam", "./cam/", str(tmp_path / "cam")])
    assert uris == ["cam"]
    done = summary(make_jobs(["cam"]))
    again = make_jobs([str(tmp_path / "cam") + "/", "/d2/cam"], previous=done)
    assert again[0].name == "cam" and again[0].key == make_jobs(["./cam"])[0].key
    assert again[1].name.startswith("cam-")
    assert read_previous(tmp_path / "nowhere") == {}
    # audit 33 #16 addendum: a summary.json naming a key twice (last-wins: which seed or model did a source run
    # with?) is not trusted, as an unreadable one: its sources are redone, their finished files kept aside
    out = tmp_path / "out"
    out.mkdir()
    entry = {"name": "cam", "uri": "cam", "status": "done", "seed": 0}
    (out / "summary.json").write_text(json.dumps({"sources": [entry]}))
    assert read_previous(out) == {"cam": entry}
    (out / "summary.json").write_text(json.dumps({"sources": [entry]}).replace('"seed": 0', '"seed": 0, "seed": 5'))
    assert read_previous(out) == {}


def test_progress_total_only_when_every_source_has_a_length():
    """A bag has no length before it is read: the bar's total waits for every source's (it showed
    'frames 13/8' with a folder of 8 frames and a 5-frame source without a length)."""
    from edge_ad.batch.driver import BatchProgress
    p = BatchProgress(quiet=True, n_sources=2)
    p.update("folder", 0, 8)
    p.update("folder", 8, None)
    p.update("bag", 5, None)
    assert p.done == 13 and p.total is None
    p.update("bag", 0, 5)
    assert p.total == 13


# ----------------------------------------------------------------------------- local pool

@pytest.fixture(scope="module")
def sources(tmp_path_factory, kinect_root):
    """Two folders named alike, one with unreadable frames, a ROS 2 bag (mcap), one corrupt bag."""
    d = tmp_path_factory.mktemp("batch_sources")
    a = copy_frames(d / "day1" / "cam", "rectangle", 4)
    b = copy_frames(d / "day2" / "cam", "sphere", 3)
    broken = d / "broken"
    make_broken_folder(broken, kinect_root, n_good=2)
    bad = d / "corrupt.mcap"
    bad.write_bytes(b"not a bag" * 100)
    bag = d / "drive7"
    write_ros2_bag(bag, [(i, rgb, d8_to_mm(d8)) for i, rgb, d8 in kinect_frames(kinect_root, 3)], storage="mcap")
    return {"a": a, "b": b, "broken": broken, "bad": bad, "bag": bag}


def test_local_batch_rows_summary_resume(tmp_path, kinect_export, sources):
    out = tmp_path / "out"
    srcs = [sources["a"], sources["b"], sources["broken"], sources["bad"], sources["bag"]]
    r = batch(["--model", kinect_export, "--out", out, "--workers", 2, "-q", "--seed", 5, *srcs])
    assert r.exit_code == batch_cmd_exit("fatal"), r.output          # a source failed -> 1, as edge-ad run
    s = summary_of(out)
    assert s["engine"] == "local"
    bad = s["by_uri"][str(sources["bad"])]
    assert bad["status"] == "failed" and "cannot read bag" in bad["error"]
    broken = s["by_uri"][str(sources["broken"])]
    assert broken["status"] == "done" and broken["frames"] == 2 and broken["frame_errors"] == 3
    assert {e["frame"] for e in broken["errors"]} and all(e["error"] for e in broken["errors"])
    for key in ("a", "b", "broken", "bag"):
        e = s["by_uri"][str(sources[key])]
        assert e["file"] == f"{e['name']}.jsonl" and e["wall_s"] > 0 and e["attempts"] == 1
        got = lines(out / e["file"])
        want = run_rows(kinect_export, sources[key], tmp_path / f"run-{key}.jsonl", seed=5)
        assert [comparable(x) for x in got[:-1]] == [comparable(x) for x in want[:-1]]   # same rows, same scores
        assert got[-1]["type"] == "summary" and got[-1]["frames_scored"] == e["frames"]
        assert e["anomalies"] == sum(bool(x.get("anomalous")) for x in got[:-1])
    names = [s["by_uri"][str(sources[k])]["name"] for k in ("a", "b")]
    assert names[0] != names[1] and all(n.startswith("cam-") for n in names)
    assert s["by_uri"][str(sources["bag"])]["name"] == "drive7" and s["by_uri"][str(sources["bag"])]["frames"] == 3
    assert s["totals"]["frames"] == 4 + 3 + 2 + 3 and s["totals"]["failed"] == 1
    assert not list(out.glob("*.partial"))

    # rerun: complete sources are skipped (files untouched), the failed one is tried again
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.jsonl")}
    r = batch(["--model", kinect_export, "--out", out, "--workers", 2, "-q", "--seed", 5, *srcs])
    assert r.exit_code == 1, r.output
    s2 = summary_of(out)
    assert [s2["by_uri"][str(sources[k])]["resumed"] for k in ("a", "b", "broken", "bag")] == [True] * 4
    assert s2["by_uri"][str(sources["bad"])]["status"] == "failed"
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.jsonl")} == stamps
    assert "4 already complete" in r.output

    # another seed or threshold would be other results: refused, nothing replaced (audit 4b)
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    r = batch(["--model", kinect_export, "--out", out, "-q", "--seed", 6, sources["bag"]])
    assert r.exit_code == 2 and "drive7.jsonl (seed 5 -> 6)" in r.output, r.output
    r = batch(["--model", kinect_export, "--out", out, "-q", "--seed", 5, "--threshold", 0.5, sources["bag"]])
    assert r.exit_code == 2 and "threshold None -> 0.5" in r.output, r.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files          # every file byte for byte
    # the same settings over one source: resumed, the other sources' entries kept in summary.json
    r = batch(["--model", kinect_export, "--out", out, "-q", "--seed", 5, sources["bag"]])
    assert r.exit_code == 0, r.output
    s3 = json.loads((out / "summary.json").read_text())
    assert [e["uri"] for e in s3["sources"]] == [str(sources["bag"])] and s3["sources"][0]["resumed"] is True
    assert {e["uri"] for e in s3["other_sources"]} == {str(sources[k]) for k in ("a", "b", "broken", "bad")}
    assert s3["totals"]["sources"] == 1 and s3["totals"]["frames"] == 3     # totals: this run's sources
    r = batch(["--model", kinect_export, "--out", out, "-q", "--seed", 5, *srcs])   # and they still resume
    assert "4 already complete" in r.output and len(summary_of(out)["sources"]) == 5


def test_a_rerun_with_other_sources_resumes_each_source_under_its_name(tmp_path, kinect_export, sources):
    """{a}, then {a, b} (b shares a's folder name), then {b, bag}: a and then b are recognised as
    done (resumed, file untouched), never scored again under another name (the old names depended on
    the set of sources: a became cam-<hash> beside b, b became cam without a)."""
    out = tmp_path / "out"
    assert batch(["--model", kinect_export, "--out", out, "-q", sources["a"]]).exit_code == 0
    a_file = out / "cam.jsonl"
    stamp = a_file.stat().st_mtime_ns
    r = batch(["--model", kinect_export, "--out", out, "-q", sources["a"], sources["b"]])
    assert r.exit_code == 0 and "1 already complete" in r.output, r.output
    s = summary_of(out)
    a, b = s["by_uri"][str(sources["a"])], s["by_uri"][str(sources["b"])]
    assert a["resumed"] is True and a["file"] == "cam.jsonl" and a_file.stat().st_mtime_ns == stamp
    assert b["resumed"] is False and b["name"].startswith("cam-") and b["frames"] == 3
    b_stamp = (out / b["file"]).stat().st_mtime_ns
    r = batch(["--model", kinect_export, "--out", out, "-q", sources["b"], sources["bag"]])
    assert r.exit_code == 0 and "1 already complete" in r.output, r.output
    s = summary_of(out)
    assert s["by_uri"][str(sources["b"])]["resumed"] is True and s["by_uri"][str(sources["b"])]["name"] == b["name"]
    assert (out / b["file"]).stat().st_mtime_ns == b_stamp
    assert sorted(p.name for p in out.iterdir()) == sorted([".lock", "cam.jsonl", b["file"], "drive7.jsonl",
                                                            "summary.json"])
    assert [e["uri"] for e in s["other_sources"]] == [str(sources["a"])]


def test_another_model_is_refused_and_redone_files_are_kept(tmp_path, kinect_export, sources):
    """A rerun with another model (another manifest sha256) is refused naming model_sha256, files
    unchanged; a complete results file without a summary.json entry (its settings unknown) that a
    rerun redoes is kept as <name>.jsonl.aside.1, never replaced."""
    import shutil
    out = tmp_path / "out"
    r = batch(["--model", kinect_export, "--out", out, "-q", sources["a"]])
    assert r.exit_code == 0, r.output
    other = tmp_path / "other-model"
    shutil.copytree(kinect_export, other)
    man = json.loads((other / "manifest.json").read_text())
    man["created"] = "2000-01-01T00:00:00+00:00"                 # another manifest: another model sha256
    (other / "manifest.json").write_text(json.dumps(man))
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    r = batch(["--model", other, "--out", out, "-q", sources["a"]])
    assert r.exit_code == 2 and "cam.jsonl (model_sha256 " in r.output, r.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files
    (out / "summary.json").unlink()                              # settings of cam.jsonl now unknown
    r = batch(["--model", other, "--out", out, "-q", sources["a"]])
    assert r.exit_code == 0, r.output
    assert (out / "cam.jsonl.aside.1").read_bytes() == files["cam.jsonl"]
    assert summary_of(out)["sources"][0]["previous_file"] == "cam.jsonl.aside.1"


def test_a_rerun_after_a_kill_redoes_a_source_from_its_first_frame(tmp_path, export_tiny):
    """Audit 33 #10: a killed batch leaves <name>.jsonl.partial; the rerun kept it aside as <name>.jsonl.partial.1,
    which the worker's results writer took for a rotated file of the new .partial: it resumed from its last
    frame index, and with the index every frame's latent seed (frame_seed(seed, i)) moved, so a random-z0 model's
    scores differed from an uninterrupted batch's. The earlier rows are kept under a name no writer reads as its
    own (<name>.jsonl.partial.aside.1): the source is redone from index 0, row for row the fresh batch's."""
    model = export_tiny(0, 1)                        # the reference configuration: random z0 per frame
    uri = "synth://?n=4&anomaly_rate=0.5&seed=3"
    fresh_out, out = tmp_path / "fresh", tmp_path / "out"
    r = batch(["--model", model, "--out", fresh_out, "-q", uri])
    assert r.exit_code == 0, r.output
    (name,) = [p.name for p in fresh_out.glob("*.jsonl")]
    fresh = lines(fresh_out / name)
    out.mkdir()                                      # the killed run: 2 frames scored, no summary line
    killed = "".join(ln + "\n" for ln in (fresh_out / name).read_text().splitlines()[:3])
    (out / (name + ".partial")).write_text(killed)
    r = batch(["--model", model, "--out", out, "-q", uri])
    assert r.exit_code == 0, r.output
    redone = lines(out / name)
    assert redone[0]["event"] == "start" and summary_of(out)["sources"][0]["resumed"] is False, redone[0]
    assert [comparable(x) for x in redone[1:-1]] == [comparable(x) for x in fresh[1:-1]]
    assert (out / (name + ".partial.aside.1")).read_text() == killed          # kept, never read as this run's
    # audit 33 #10 residual: rows a batch before the fix kept aside as <name>.jsonl.partial.1 (a rotated name of the
    # new .partial) are moved out of its way too, before any worker starts
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / (name + ".partial.1")).write_text(killed)
    r = batch(["--model", model, "--out", legacy, "-q", uri])
    assert r.exit_code == 0, r.output
    redone = lines(legacy / name)
    assert redone[0]["event"] == "start" and [comparable(x) for x in redone[1:-1]] == [comparable(x) for x in fresh[1:-1]]
    assert (legacy / (name + ".partial.1.aside.1")).read_text() == killed and not (legacy / (name + ".partial.1")).exists()


def batch_cmd_exit(kind: str) -> int:
    from edge_ad.batch import driver
    return {"ok": driver.EXIT_OK, "fatal": driver.EXIT_FATAL, "bad": driver.EXIT_BAD_FRAMES,
            "none": driver.EXIT_NO_FRAMES}[kind]


def test_a_second_batch_into_a_folder_being_written_is_refused(tmp_path, kinect_export, sources):
    """Audit 26 #14: two batches into one OUT at once ended with a summary.json saying a source "failed" while its
    results were complete (each moved the other's .partial aside). A batch holds OUT/.lock (flock) while it runs:
    another is refused before it reads or writes anything, exit 1; once the lock is free, it runs."""
    import fcntl
    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".lock", "a") as held:                  # another batch, running
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        r = batch(["--model", kinect_export, "--out", out, "-q", sources["a"]])
        assert r.exit_code == 1 and f"{out} is being written by another edge-ad batch" in r.output, r.output
        assert sorted(p.name for p in out.iterdir()) == [".lock"]
    r = batch(["--model", kinect_export, "--out", out, "-q", sources["a"]])
    assert r.exit_code == 0 and summary_of(out)["sources"][0]["frames"] == 4, r.output


def test_partial_and_truncated_results_are_not_complete(tmp_path, kinect_export, sources):
    out = tmp_path / "out"
    r = batch(["--model", kinect_export, "--out", out, "-q", sources["a"]])
    assert r.exit_code == 0, r.output
    f = out / "cam.jsonl"
    full = f.read_text()
    f.write_text("".join(full.splitlines(keepends=True)[:2]))   # a results file cut short (no summary line)
    (out / "cam.jsonl.partial").write_text('{"type": "frame"}\n')
    r = batch(["--model", kinect_export, "--out", out, "-q", sources["a"]])
    assert r.exit_code == 0, r.output
    assert summary_of(out)["sources"][0]["resumed"] is False
    assert [comparable(x) for x in lines(f)[:-1]] == [comparable(json.loads(x)) for x in full.splitlines()[:-1]]
    assert not (out / "cam.jsonl.partial").exists()
    assert (out / "cam.jsonl.aside.1").read_text() == "".join(full.splitlines(keepends=True)[:2])   # kept


def test_dead_local_worker_source_is_retried(tmp_path, kinect_export, sources):
    out = tmp_path / "out"
    r = batch(["--model", kinect_export, "--out", out, "-q", "--workers", 2, sources["a"], sources["b"]],
              env={"EDGE_AD_BATCH_FAULT": f"crash:{make_jobs([str(sources['a']), str(sources['b'])])[0].name}:2"})
    assert r.exit_code == 0, r.output
    s = summary_of(out)
    a, b = s["by_uri"][str(sources["a"])], s["by_uri"][str(sources["b"])]
    assert a["attempts"] == 2 and a["status"] == "done" and a["frames"] == 4    # died after 2 frames, redone
    assert b["attempts"] == 1 and b["frames"] == 3                              # the other worker went on
    want = run_rows(kinect_export, sources["a"], tmp_path / "run-a.jsonl")
    assert [comparable(x) for x in lines(out / a["file"])[:-1]] == [comparable(x) for x in want[:-1]]


class _BackendLost(FakeScorer):
    """Scores two frames, then fails as a lost GPU would (a fatal error of the run, not a bad frame)."""

    def score(self, rgb, depth, z0=None, seed=None, **kw):
        if len(self.calls) == 2:
            raise RuntimeError("CUDA error: device lost")
        return super().score(rgb, depth, z0, seed)


class _InProcessEngine:
    """Runs each job's worker code (score_source) in this process, as a pool worker would."""

    name = "inprocess"

    def __init__(self, scorer):
        self.scorer = scorer

    def run(self, jobs, out_dir, on_progress, on_result, stop=None):
        for job in jobs:
            on_result(job, score_source(self.scorer, job, out_dir / (job.results_file + ".partial")))


def test_fatal_run_reason_reaches_summary_json(tmp_path, kinect_root):
    """A source whose run stops as fatal carries the run's fatal_error into summary.json: the
    entry's error says why (not just 'stopped: fatal') and fatal_error holds the run summary's."""
    from edge_ad.batch.driver import run_batch
    folder = copy_frames(tmp_path / "src", "rectangle", 4)
    jobs = make_jobs([str(folder)])
    out = tmp_path / "out"
    s = run_batch(jobs, [], out, _InProcessEngine(_BackendLost()), tmp_path, "sha")
    e = s["sources"][0]
    assert e["status"] == "failed" and e["stopped"] == "fatal"
    assert e["error"] == "stopped: fatal: RuntimeError: CUDA error: device lost", e["error"]
    assert e["fatal_error"] == "RuntimeError: CUDA error: device lost"
    assert json.loads((out / "summary.json").read_text())["sources"][0] == e
    assert e["frames"] == 2 and e["file"].endswith(".partial")      # rows written before the failure stay


def test_exit_statuses_and_usage(tmp_path, kinect_export, kinect_root):
    allbad = tmp_path / "allbad"
    (allbad / "rgb").mkdir(parents=True)
    (allbad / "depth").mkdir()
    (allbad / "rgb" / "1.jpg").write_bytes(b"garbage")
    (allbad / "depth" / "1.png").write_bytes(b"garbage")
    r = batch(["--model", kinect_export, "--out", tmp_path / "o1", "-q", allbad])
    assert r.exit_code == batch_cmd_exit("none"), r.output
    broken = tmp_path / "broken"
    make_broken_folder(broken, kinect_root, n_good=1)
    r = batch(["--model", kinect_export, "--out", tmp_path / "o2", "-q", broken])
    assert r.exit_code == batch_cmd_exit("bad"), r.output
    assert batch(["--model", kinect_export, "--out", tmp_path / "o3", "realsense://"]).exit_code == 2
    assert batch(["--model", kinect_export, "--out", tmp_path / "o3"]).exit_code == 2
    r = batch(["--model", kinect_export, "--out", tmp_path / "o3", "--seed", -1, broken])
    assert r.exit_code == 2 and "'--seed': -1 is not in the range x>=0" in r.output, r.output
    for bad in ("0", "-1", "nan"):
        r = batch(["--model", kinect_export, "--out", tmp_path / "o3", "--threshold", bad, broken])
        assert r.exit_code == 2 and "--threshold must be a finite number > 0" in r.output, (bad, r.output)
    assert not (tmp_path / "o3").exists()
    r = batch(["--model", tmp_path, "--out", tmp_path / "o4", broken])
    assert r.exit_code == 1 and "cannot load model" in r.output


def test_a_source_that_gives_no_frames_is_said_and_not_exit_0(tmp_path, kinect_export, kinect_root):
    """Audit 28 #5: a source that gave no frame at all (an empty bag: topics declared, no message) was "done",
    exit 0, not a word, beside a source that scored (edge-ad run on it alone: exit 4). Now its summary entry
    carries no_frames, totals count it, one line names it, and the batch exits 3; run again, it stays said."""
    empty = tmp_path / "nomsgs_mcap"
    write_ros2_bag(empty, [], storage="mcap")
    said = []
    for attempt in ("first", "resumed"):
        r = batch(["--model", kinect_export, "--out", tmp_path / "out", "-q", empty, "synth://?n=3"])
        assert r.exit_code == 3, (attempt, r.output)
        s = summary_of(tmp_path / "out")
        (entry,) = [e for e in s["sources"] if e["uri"] == str(empty)]
        assert entry["status"] == "done" and entry["frames"] == 0 and entry["no_frames"] is True, entry
        assert s["totals"]["no_frames"] == 1 and s["totals"]["frames"] == 3, s["totals"]
        assert "1 source(s) gave no frames" in r.output, r.output
        said.append(r.output)
    assert f"source {empty}: the source gave no frames (nothing was scored from it)" in said[0], said[0]
    # audit 29 #3: a bag whose colour and depth never pair within the slop says so, and what to change
    bag = tmp_path / "unpaired_mcap"
    write_ros2_bag(bag, [(i, rgb, d8_to_mm(d8)) for i, rgb, d8 in kinect_frames(kinect_root, 2)], storage="mcap")
    r = batch(["--model", kinect_export, "--out", tmp_path / "out2", "-q", f"rosbag://{bag}?slop=0.001"])
    assert r.exit_code == 4 and (f"source rosbag://{bag}?slop=0.001: the source gave no frames (nothing was scored "
                                 "from it): its 2 colour and 2 depth message(s) never paired within the slop") \
        in r.output, r.output


def test_a_glob_that_matches_nothing_is_said_not_only_written(tmp_path, kinect_export):
    """A SOURCE glob without a match is a failed source: the command says why (it printed only
    '1 failed', the reason was in summary.json alone)."""
    r = batch(["--model", kinect_export, "--out", tmp_path / "out", "-q", f"{tmp_path}/nothing-*"])
    assert r.exit_code == 1, r.output
    assert f"source {tmp_path}/nothing-*: FAILED: no file or folder matches" in r.output, r.output
    assert summary_of(tmp_path / "out")["sources"][0]["status"] == "failed"


def test_batch_is_torch_free():
    import subprocess
    import sys
    code = ("import sys, edge_ad.commands.batch, edge_ad.batch.local, edge_ad.batch.driver, "
            "edge_ad.batch.ray_engine, edge_ad.runtime.batch_scoring; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# ----------------------------------------------------------------------------- Ray

def test_ray_batch_local_cluster(tmp_path, kinect_export, sources, monkeypatch):
    """A 2-CPU Ray cluster started here: actors with the model shipped as bytes, a worker killed
    mid-source (retried on a new actor), a corrupt source reported, rows equal to edge-ad run's; the
    actors that were not killed delete their unpacked model (only the killed one's copy is left)."""
    ray = pytest.importorskip("ray")
    out = tmp_path / "out"
    name_a = make_jobs([str(sources["a"]), str(sources["b"]), str(sources["bad"])])[0].name
    monkeypatch.setenv("RAY_AUTH_MODE", os.environ.get("RAY_AUTH_MODE", "disabled"))   # no token for a local test cluster
    # the actors' temporary files go to actor_tmp; Ray's own session stays where it was (socket paths are short)
    monkeypatch.setenv("RAY_TMPDIR", os.environ.get("RAY_TMPDIR") or tempfile.gettempdir())
    actor_tmp = tmp_path / "actor_tmp"
    actor_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(actor_tmp))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        r = batch(["--model", kinect_export, "--out", out, "-q", "--ray", sources["a"], sources["b"], sources["bad"]],
                  env={"EDGE_AD_BATCH_FAULT": f"crash:{name_a}:2"})
    finally:
        ray.shutdown()
    assert r.exit_code == 1, r.output
    s = summary_of(out)
    assert s["engine"] == "ray"
    a, b, bad = (s["by_uri"][str(sources[k])] for k in ("a", "b", "bad"))
    assert a["status"] == "done" and a["attempts"] == 2 and a["frames"] == 4
    assert b["status"] == "done" and b["attempts"] == 1 and b["frames"] == 3
    assert bad["status"] == "failed" and "cannot read bag" in bad["error"]
    assert len(list(actor_tmp.glob("edge-ad-batch-*"))) == 1      # 3 actors, 1 killed mid-source
    for key, e in (("a", a), ("b", b)):
        want = run_rows(kinect_export, sources[key], tmp_path / f"run-{key}.jsonl")
        assert [comparable(x) for x in lines(out / e["file"])[:-1]] == [comparable(x) for x in want[:-1]]


class _ThresholdedScorer(FakeScorer):
    threshold = 0.4


def test_summary_json_records_the_threshold_used_and_where_it_came_from(tmp_path):
    """audit 16 #8: summary.json said "threshold": null per source while the model's threshold flagged
    its frames (the field was the --threshold override). Now: the threshold used, its source, the
    override apart; an older entry's "threshold" (the override) still resumes."""
    from edge_ad.batch.driver import run_batch
    uri = "synth://?n=3&anomaly_rate=0.5&seed=2"
    for scorer, override, want, source in ((_ThresholdedScorer(), None, 0.4, "the model's manifest"),
                                           (_ThresholdedScorer(), 0.7, 0.7, "--threshold"),
                                           (FakeScorer(), None, None, "none: the model carries no threshold")):
        out = tmp_path / f"out-{override}-{want}"
        e = run_batch(make_jobs([uri], threshold=override), [], out, _InProcessEngine(scorer), tmp_path,
                      "sha")["sources"][0]
        assert e["status"] == "done" and e["threshold"] == want and e["threshold_source"].startswith(source)
        assert e["threshold_override"] == override
        assert {r.get("threshold") for r in lines(out / e["file"]) if r["type"] == "frame"} == {want}
        assert json.loads((out / "summary.json").read_text())["sources"][0] == e
    # an entry written before threshold_override: its "threshold" was the override (null: the model's)
    old = dict(e, threshold=None)
    del old["threshold_override"]
    job = make_jobs([uri])[0]
    from edge_ad.batch.plan import settings_differences
    assert settings_differences(job, old, "sha") == []
    assert settings_differences(job, dict(old, threshold=0.5), "sha") == ["--threshold 0.5 -> None"]


def test_a_resumed_entry_written_before_threshold_override_records_the_threshold_used(tmp_path):
    """review 16 #1: a source resumed from a summary.json written before "threshold_override" kept its
    old "threshold" (the override: null) and no "threshold_source", while its rows were flagged at the
    model's 0.4. Now the entry is migrated: the override from the old "threshold", the threshold used
    from the finished file's rows; and a further rerun still resumes it."""
    from edge_ad.batch.driver import run_batch
    uri = "synth://?n=3&anomaly_rate=0.5&seed=2"
    for override, want, source in ((None, 0.4, "the model's manifest"), (0.7, 0.7, "--threshold")):
        out = tmp_path / f"out-{override}"
        run_batch(make_jobs([uri], threshold=override), [], out, _InProcessEngine(_ThresholdedScorer()),
                  tmp_path, "sha")
        s = json.loads((out / "summary.json").read_text())
        e = s["sources"][0]
        e["threshold"] = override                       # the pre-fix shape: "threshold" was the override
        del e["threshold_source"], e["threshold_override"]
        (out / "summary.json").write_text(json.dumps(s))
        for _ in range(2):                              # migrated, then resumed from the migrated entry
            r = run_batch(make_jobs([uri], threshold=override), [], out,
                          _InProcessEngine(_ThresholdedScorer()), tmp_path, "sha")["sources"][0]
            assert r["resumed"] is True and r["status"] == "done"
            assert r["threshold"] == want and r["threshold_source"].startswith(source)
            assert r["threshold_override"] == override
            assert {x.get("threshold") for x in lines(out / r["file"]) if x["type"] == "frame"} == {want}


class _DyingEngine:
    """Scores each job in this process, then reports it as local.py / ray_engine.py report a worker that
    died on its last attempt (no threshold keys); ``keep_rows``: its .partial keeps the frame rows
    written before the death (the local pool), else none (a Ray actor returns its rows only at the end)."""

    name = "dying"

    def __init__(self, scorer, keep_rows: bool):
        self.scorer, self.keep_rows = scorer, keep_rows

    def run(self, jobs, out_dir, on_progress, on_result, stop=None):
        for job in jobs:
            partial = out_dir / (job.results_file + ".partial")
            score_source(self.scorer, job, partial)
            if self.keep_rows:   # the summary line is never written by a worker that dies mid-source
                partial.write_text("".join(x for x in partial.read_text().splitlines(keepends=True)[:-1]))
            else:
                partial.unlink()
            on_result(job, {"status": "failed", "summary": None, "wall_s": None, "attempts": 2,
                            "error": "the worker died 2 times while scoring this source (last exit status 70)"})


def test_a_source_whose_worker_died_records_the_threshold_its_rows_were_flagged_at(tmp_path):
    """review 16 #1: a dead worker's source had "threshold": null and "threshold_source": null although
    its kept .partial rows were flagged at the model's threshold. Now they come from those rows."""
    from edge_ad.batch.driver import run_batch
    uri = "synth://?n=3&anomaly_rate=0.5&seed=2"
    for scorer, override, want, source in ((_ThresholdedScorer(), None, 0.4, "the model's manifest"),
                                           (_ThresholdedScorer(), 0.7, 0.7, "--threshold"),
                                           (FakeScorer(), None, None, "none: the model carries no threshold")):
        out = tmp_path / f"out-{override}-{want}"
        e = run_batch(make_jobs([uri], threshold=override), [], out, _DyingEngine(scorer, keep_rows=True),
                      tmp_path, "sha")["sources"][0]
        assert e["status"] == "failed" and e["file"].endswith(".partial") and e["frames"] == 3
        assert e["threshold"] == want and e["threshold_source"].startswith(source)
        assert e["threshold_override"] == override
        assert {r.get("threshold") for r in lines(out / e["file"]) if r["type"] == "frame"} == {want}


def test_manifest_threshold_is_the_threshold_the_loaded_scorer_uses(tmp_path, kinect_export):
    """review 16b #3: manifest_threshold (what a dead worker's entry reports when no row was scored)
    reads the manifest as Scorer.threshold does: the value when it was calibrated with the manifest's
    own search, None when calibrated with another search (here another k) or when there is none."""
    from edge_ad.runtime import Scorer
    from edge_ad.runtime.scorer import manifest_threshold
    import shutil
    man = json.loads((kinect_export / "manifest.json").read_text())
    assert isinstance(man["threshold"]["search"], dict) and man["threshold"]["search"]["k"] == 0
    other_search = dict(man, threshold=dict(man["threshold"], search=dict(man["threshold"]["search"], k=3)))
    no_threshold = {k: v for k, v in man.items() if k != "threshold"}
    for name, m, want in (("as-exported", man, float(man["threshold"]["value"])),
                          ("other-search", other_search, None), ("none", no_threshold, None)):
        d = tmp_path / name
        d.mkdir()
        for f in kinect_export.iterdir():   # the exported files (copies: links are refused), this manifest
            if f.name != "manifest.json":
                shutil.copyfile(f, d / f.name)
        (d / "manifest.json").write_text(json.dumps(m))
        assert manifest_threshold(d) == want, name
        assert Scorer.load(d).threshold == want, name


class _DiesWithoutRowsEngine:
    """Reports each job as ray_engine.py does an actor that died on every attempt (or local.py a worker
    that cannot load the model): failed, no threshold keys, nothing written."""

    name = "dies-without-rows"

    def run(self, jobs, out_dir, on_progress, on_result, stop=None):
        for job in jobs:
            on_result(job, {"status": "failed", "summary": None, "wall_s": None, "attempts": 3,
                            "error": "the Ray worker died 3 times"})


def test_a_dead_worker_entry_never_reads_an_earlier_runs_partial_rows(tmp_path):
    """review 16b #2: a worker that fails before writing anything left the earlier run's .partial in
    place, and the entry took its threshold (0.4, "the model's manifest") and 3 frames from it, with
    another model. Now the earlier .partial is kept aside as .partial.aside.1 before the run starts."""
    from edge_ad.batch.driver import run_batch
    uri = "synth://?n=3&anomaly_rate=0.5&seed=2"
    out = tmp_path / "out"
    first = run_batch(make_jobs([uri]), [], out, _DyingEngine(_ThresholdedScorer(), keep_rows=True),
                      tmp_path, "sha-A")["sources"][0]
    assert first["file"] == "synth.jsonl.partial" and first["frames"] == 3 and first["threshold"] == 0.4
    earlier = (out / first["file"]).read_bytes()
    model_b = tmp_path / "model-b"   # no manifest: the threshold the worker would have used is unknown
    model_b.mkdir()
    e = run_batch(make_jobs([uri]), [], out, _DiesWithoutRowsEngine(), model_b, "sha-B")["sources"][0]
    assert e["status"] == "failed" and e["file"] is None
    assert e["frames"] == 0 and e["anomalies"] == 0
    assert e["threshold"] is None and e["threshold_source"].startswith("unknown: ")
    assert (out / "synth.jsonl.partial.aside.1").read_bytes() == earlier     # the earlier rows stay, aside
    assert not (out / "synth.jsonl.partial").exists()


def test_a_source_whose_worker_died_without_rows_records_the_model_threshold(tmp_path, kinect_export):
    """review 16 #1: a Ray actor that dies leaves no rows; the entry takes the threshold the worker
    would have used from the model's manifest (Scorer.threshold, the shipped rectangle's)."""
    from edge_ad.batch.driver import run_batch
    from edge_ad.runtime import Scorer
    want = Scorer.load(kinect_export).threshold
    assert want is not None
    e = run_batch(make_jobs(["synth://?n=2&seed=1"]), [], tmp_path / "out",
                  _DyingEngine(_ThresholdedScorer(), keep_rows=False), kinect_export, "sha")["sources"][0]
    assert e["status"] == "failed" and e["frames"] == 0
    assert e["threshold"] == want and e["threshold_source"].startswith("the model's manifest")
    assert e["threshold_override"] is None


@pytest.mark.parametrize("how", ["SIGTERM to the driver", "Ctrl-C to the process group"])
def test_a_stopped_batch_says_which_sources_are_unfinished(tmp_path, how):
    """Audit 27 #4: a batch stopped by Ctrl-C said 'Aborted!' (exit 1), by SIGTERM 'Terminated' (exit 143) with a
    BrokenPipeError traceback per worker, and summary.json still said 0 frames, all pending. Now, as edge-ad run
    does: the sources being scored end after their frame, summary.json marks them interrupted with the frames
    their .partial files hold, one line says so and that the same command redoes them, exit 0."""
    import signal
    import subprocess
    import sys
    import time
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "edge_ad", "batch", "--model", str(Path(__file__).parents[1] / "runtime" / "demo"),
           "--out", str(out), "synth://?n=100000", "synth://?n=100000&seed=1", "--workers", "2"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         start_new_session=True)
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 60:            # until both workers have scored some frames
            parts = list(out.glob("*.jsonl.partial"))
            if len(parts) == 2 and all(len(f.read_bytes().splitlines()) > 5 for f in parts):
                break
            time.sleep(0.2)
        if how.startswith("SIGTERM"):
            p.send_signal(signal.SIGTERM)
        else:
            os.killpg(p.pid, signal.SIGINT)
        stdout, stderr = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert p.returncode == 0, stderr
    assert "Traceback" not in stderr and "Aborted" not in stderr, stderr
    s = json.loads((out / "summary.json").read_text())
    name = "SIGTERM" if how.startswith("SIGTERM") else "SIGINT"
    assert s["interrupted"] == name and s["totals"]["interrupted"] == 2 and s["totals"]["done"] == 0
    for e in s["sources"]:
        assert e["status"] == "interrupted" and e["frames"] > 5 and e["file"].endswith(".jsonl.partial")
        rows = [json.loads(x) for x in (out / e["file"]).read_text().splitlines()]
        assert sum(r["type"] == "frame" for r in rows) == e["frames"] and rows[-1]["type"] == "summary"
    assert s["totals"]["frames"] == sum(e["frames"] for e in s["sources"])
    assert (f"interrupted ({name}): 2 source(s) unfinished ({s['totals']['frames']} frames scored, kept in "
            "*.partial); the same command redoes them from their first frame") in stderr


def test_batch_requires_a_signed_model_with_trusted_key(tmp_path):
    """Audit 27 #11: edge-ad batch had no --trusted-key (run, calibrate, verify, Scorer.load and the ROS node
    have): the one torch-free scorer that could not require a signed model, and it ships the model to Ray nodes.
    Now --trusted-key (repeatable) is checked by the driver before anything is written (unsigned or another
    key's: exit 1, no OUT), and again by every worker (load_scorer); the Ray archive carries manifest.sig."""
    import shutil
    import tarfile

    from edge_ad.batch.worker import load_scorer, pack_model
    from edge_ad.runtime import demo_model_dir
    from edge_ad.runtime.manifest import ManifestError
    from edge_ad.runtime.signing import generate_key_pair, sign_model
    for name in ("a", "b"):
        generate_key_pair(tmp_path / f"{name}.key", tmp_path / f"{name}.pub")
    model = tmp_path / "demo"
    shutil.copytree(demo_model_dir(), model)
    src = "synth://?n=3&anomaly_rate=0"
    r = batch(["--model", model, "--out", tmp_path / "o1", "-q", "--workers", "1", "--trusted-key",
               tmp_path / "a.pub", src])
    assert r.exit_code == 1 and "not signed" in r.output and not (tmp_path / "o1").exists(), r.output
    sign_model(model, tmp_path / "a.key")
    r = batch(["--model", model, "--out", tmp_path / "o2", "-q", "--workers", "1", "--trusted-key",
               tmp_path / "b.pub", src])
    assert r.exit_code == 1 and "not a trusted key" in r.output and not (tmp_path / "o2").exists(), r.output
    r = batch(["--model", model, "--out", tmp_path / "o3", "-q", "--workers", "1", "--trusted-key",
               tmp_path / "b.pub", "--trusted-key", tmp_path / "a.pub", src])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "o3" / "summary.json").read_text())["totals"]["done"] == 1
    with pytest.raises(ManifestError, match="not a trusted key"):                    # what each worker checks
        load_scorer(model, 1, [(tmp_path / "b.pub").read_bytes()])
    load_scorer(model, 1, [(tmp_path / "a.pub").read_bytes()]).close()
    blob, _ = pack_model(model)                                                  # shipped with its signature
    import io
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        assert "manifest.sig" in tar.getnames()
