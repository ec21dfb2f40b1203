"""First contact (issue 13): truth metrics in the run summary, labelled folders, the contact sheet
(--sheet) and the Rerun view (--rerun). The CLI runs use a stand-in scorer (fast); the .rrd file is
read back with rerun's own API (rerun.chunk.RrdReader)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edge_ad.commands import run as run_cmd
from edge_ad.runtime.capture import EXIT_BAD_FRAMES
from edge_ad.runtime.preprocess import PreprocessSpec, preprocess
from edge_ad.runtime.sheet import ContactSheet
from edge_ad.runtime.sources import SourceError, open_source
from edge_ad.runtime.truth import TruthTally, auroc, truth_metrics, truth_text


class ScriptedScorer:
    """Scores frame i with ``scores[i]`` (cycled); error map and reconstruction from the input."""

    n_seed, z_dim = 1, 100

    def __init__(self, scores, threshold=0.5):
        self.scores, self.threshold = list(scores), threshold
        self.preprocess = PreprocessSpec()
        self.i = 0

    def score(self, rgb, depth, z0=None, seed=None, keep_reconstructions=False, **kw):
        x = preprocess(rgb, depth, self.preprocess)
        s = self.scores[self.i % len(self.scores)]
        self.i += 1
        err = np.full(x.shape[1:], s, np.float32)
        return SimpleNamespace(score=float(s), error_map=err, reconstruction=-x if keep_reconstructions else None,
                               seed_losses=np.array([s], np.float32),
                               timings={"preprocess_ms": 0.1, "search_ms": 1.0})


def use_scorer(monkeypatch, scorer):
    monkeypatch.setattr(run_cmd, "load_scorer", lambda model, backend, **kw: scorer)
    return scorer


def invoke(args):
    return CliRunner().invoke(run_cmd.cmd, args, catch_exceptions=False)


def lines(path):
    return [json.loads(x) for x in Path(path).read_text().splitlines()]


# --------------------------------------------------------------------------- truth metrics

def test_auroc_is_the_pairwise_win_rate_with_ties_half():
    rng = np.random.default_rng(3)
    s = np.round(rng.normal(size=60), 1)          # rounded: many ties
    t = rng.random(60) < 0.3
    pos, neg = s[t], s[~t]
    brute = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg))
    assert auroc(s, t) == pytest.approx(brute, abs=1e-12)
    from sklearn.metrics import roc_auc_score
    assert auroc(s, t) == pytest.approx(roc_auc_score(t, s), abs=1e-12)
    assert auroc([1, 2, 3], [True, True, True]) is None and auroc([1, 2], [False, False]) is None
    assert auroc([0.1, 0.9], [False, True]) == 1.0 and auroc([0.9, 0.1], [False, True]) == 0.0


def test_truth_metrics_recall_and_false_alarms():
    m = truth_metrics([0.9, 0.8, 0.2, 0.7, 0.1, 0.6], [True, True, True, False, False, False],
                      flagged=[True, True, False, True, False, False])
    assert m["frames"] == 6 and m["anomalous"] == 3
    assert m["recall"] == pytest.approx(2 / 3, abs=1e-4) and m["false_alarm_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert m["auroc"] == pytest.approx(auroc([0.9, 0.8, 0.2, 0.7, 0.1, 0.6], [1, 1, 1, 0, 0, 0]), abs=1e-4)
    no_thr = truth_metrics([0.1, 0.2], [False, True])
    assert no_thr["recall"] is None and no_thr["false_alarm_rate"] is None and no_thr["auroc"] == 1.0


def test_truth_tally_exact_under_its_bound():
    rng = np.random.default_rng(5)
    s = np.round(rng.normal(size=500), 2)
    t = rng.random(500) < 0.3
    s[t] += 1.0
    f = s > 0.8
    tally = TruthTally(capacity=500)
    for a, b, c in zip(s, t, f):
        tally.add(a, b, c)
    m = tally.metrics()
    assert m == truth_metrics(s, t, flagged=f)          # every frame kept: the exact numbers
    assert m["auroc_sampled"] is False and m["auroc_frames"] == 500 and "sample" not in truth_text(m)


def test_truth_tally_memory_is_bounded_and_counts_stay_exact():
    """An endless run (synth://) keeps at most ``capacity`` (score, truth) pairs: memory stops
    growing; recall and false-alarm rate stay exact, AUROC is estimated on a uniform sample."""
    import tracemalloc
    rng = np.random.default_rng(6)
    n, cap = 40_000, 2_000
    t = rng.random(n) < 0.2
    s = rng.normal(size=n) + 1.2 * t                     # true AUROC about 0.80
    f = s > 1.0
    tally = TruthTally(capacity=cap)
    tracemalloc.start()
    try:
        for i in range(n):
            tally.add(float(s[i]), bool(t[i]), bool(f[i]))
            if i == 10_000:
                at_10k = tracemalloc.get_traced_memory()[0]
        growth = tracemalloc.get_traced_memory()[0] - at_10k
    finally:
        tracemalloc.stop()
    assert len(tally.scores) == len(tally.truth) == cap and len(tally) == n
    assert growth < 20_000, f"{growth} bytes for 30k frames past the bound"
    m = tally.metrics()
    exact = truth_metrics(s, t, flagged=f)
    assert {k: m[k] for k in ("frames", "anomalous", "recall", "false_alarm_rate")} == \
        {k: exact[k] for k in ("frames", "anomalous", "recall", "false_alarm_rate")}
    assert m["auroc_sampled"] is True and m["auroc_frames"] == cap
    assert abs(m["auroc"] - exact["auroc"]) < 0.03       # sample of 2000: standard error ~0.01
    # uniform over the whole run: the sample's anomaly share matches the run's
    assert abs(np.mean(tally.truth) - t.mean()) < 0.03
    assert "on a sample of 2000 frames" in truth_text(m)
    # audit 26 #2: recall 0.965 was printed '96%' (a whole-number format); one decimal, none when it is .0
    line = truth_text({**m, "recall": 0.965, "false_alarm_rate": 0.07})
    assert "recall 96.5%, false alarms 7%" in line, line
    assert "recall 100%, false alarms 3%" in truth_text({**m, "recall": 1.0, "false_alarm_rate": 0.03})
    with pytest.raises(ValueError, match="capacity"):
        TruthTally(capacity=0)


def test_run_summary_and_console_end_with_truth(tmp_path, monkeypatch):
    use_scorer(monkeypatch, ScriptedScorer([0.9, 0.1, 0.2, 0.7, 0.3, 0.6, 0.05, 0.8], threshold=0.5))
    out = tmp_path / "r.jsonl"
    r = invoke(["--source", "synth://?n=16&anomaly_rate=0.5&seed=4", "--out", str(out), "-q"])
    assert r.exit_code == 0, r.output
    recs = lines(out)
    frames = [x for x in recs if x["type"] == "frame"]
    summary = recs[-1]
    assert summary["type"] == "summary" and list(summary)[-1] == "truth"
    assert {"frames_scored", "anomalies", "latency_ms", "threshold"} <= set(summary)  # existing fields stay
    t = np.array([f["truth"]["anomalous"] for f in frames])
    s = np.array([f["score"] for f in frames])
    assert 0 < t.sum() < len(t)
    expect = truth_metrics(s, t, flagged=s > 0.5)
    assert summary["truth"] == expect
    last = r.output.strip().splitlines()
    assert any(x.startswith("truth: 16 frames") and f"AUROC {expect['auroc']:.3f}" in x
               and "recall" in x and "false alarms" in x for x in last[-3:]), r.output


def test_run_without_truth_has_no_truth_section(tmp_path, monkeypatch, kinect_root):
    use_scorer(monkeypatch, ScriptedScorer([0.2, 0.7]))
    out = tmp_path / "r.jsonl"
    r = invoke(["--source", str(kinect_root / "sphere"), "--max-frames", "3", "--out", str(out), "-q"])
    assert r.exit_code == 0, r.output
    assert "truth" not in lines(out)[-1] and "truth:" not in r.output


def test_labelled_folder_source(kinect_root, tmp_path):
    src = open_source(f"folder://{kinect_root}?normal=rectangle&split=val")
    splits = json.loads((kinect_root / "splits.json").read_text())
    assert len(src) == sum(len(splits[c]["val"]) for c in ("cylinder", "rectangle", "sphere"))
    frames = list(src)
    kinds = {f.meta["kind"] for f in frames}
    assert kinds == {"cylinder", "rectangle", "sphere"}
    assert all(f.meta["anomalous"] == (f.meta["kind"] != "rectangle") for f in frames)
    assert frames[0].id == f"rectangle/{splits['rectangle']['val'][0]}" and frames[0].error is None
    one = open_source(f"folder://{kinect_root / 'sphere'}?normal=rectangle")
    f = next(iter(one))
    assert f.meta == {"kind": "sphere", "anomalous": True} and len(one) == 400
    with pytest.raises(SourceError, match="not one of the class folders"):
        open_source(f"folder://{kinect_root}?normal=cube")
    with pytest.raises(SourceError, match="takes"):
        open_source(f"folder://{kinect_root}?normal=rectangle&bogus=1")
    with pytest.raises(SourceError, match="splits.json"):
        open_source(f"folder://{kinect_root / 'sphere'}?normal=rectangle&split=nosuch")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="neither a frame folder"):
        open_source(f"folder://{tmp_path / 'empty'}?normal=a")


def test_labelled_folder_interleaves_the_classes_normal_first(kinect_root, tmp_path, monkeypatch):
    """Audit 16 #7: the classes came one after the other in name order (cylinder, rectangle, sphere),
    so `edge-ad run --source 'folder://DATA?normal=rectangle&split=val' --max-frames 6` scored six
    cylinders and ended 'AUROC n/a (one class only)'. The classes now take turns, the normal class
    first, each in id order; a class with more frames than the others ends the source alone."""
    splits = json.loads((kinect_root / "splits.json").read_text())
    src = open_source(f"folder://{kinect_root}?normal=rectangle&split=val")
    frames = list(src)
    val = {c: [str(i) for i in splits[c]["val"]] for c in ("rectangle", "cylinder", "sphere")}
    expect = [f"{c}/{val[c][k]}" for k in range(len(val["rectangle"])) for c in ("rectangle", "cylinder", "sphere")]
    assert [f.id for f in frames] == expect
    assert sorted(f.id for f in frames) == sorted(f"{c}/{i}" for c in val for i in val[c])   # every frame once
    use_scorer(monkeypatch, ScriptedScorer([0.2, 0.7, 0.7]))
    out = tmp_path / "r.jsonl"
    r = invoke(["--source", f"folder://{kinect_root}?normal=rectangle&split=val", "--max-frames", "6",
                "--out", str(out), "-q"])
    assert r.exit_code == 0, r.output
    t = lines(out)[-1]["truth"]
    assert (t["frames"], t["anomalous"], t["auroc"]) == (6, 4, 1.0), t
    assert "AUROC 1.000" in r.output and "one class only" not in r.output
    # classes of unequal size: turns until each runs out; the normal class first whatever its name
    from test_sources import kinect_frames
    root = tmp_path / "uneven"
    for cls, n in (("a", 3), ("b", 1), ("z", 2)):
        (root / cls / "rgb").mkdir(parents=True)
        (root / cls / "depth").mkdir()
        for i, rgb, d8 in kinect_frames(kinect_root, n):
            Image.fromarray(rgb).save(root / cls / "rgb" / f"{i}.png")
            Image.fromarray(d8).save(root / cls / "depth" / f"{i}.png")
    got = [(f.meta["kind"], f.meta["anomalous"]) for f in open_source(f"folder://{root}?normal=z")]
    assert got == [("z", False), ("a", True), ("b", True), ("z", False), ("a", True), ("a", True)]


def test_labelled_folder_honours_max_frame_pixels(tmp_path, monkeypatch, kinect_root):
    """--max-frame-pixels reaches a labelled folder: an image whose header claims more pixels is
    refused before decoding (an error line naming the limit) and the run goes on."""
    from test_reliability import png_claiming
    from test_sources import kinect_frames
    root = tmp_path / "labelled"
    for cls, real in (("a", "rectangle"), ("b", "sphere")):
        (root / cls / "rgb").mkdir(parents=True)
        (root / cls / "depth").mkdir()
        for i, rgb, d8 in kinect_frames(kinect_root, 2, real):
            Image.fromarray(rgb).save(root / cls / "rgb" / f"{i}.png")
            Image.fromarray(d8).save(root / cls / "depth" / f"{i}.png")
    big = sorted(p.stem for p in (root / "b" / "rgb").iterdir())[0]
    # 300 x 300 = 90,000 pixels: under the default limit, over the one given on the command line
    (root / "b" / "rgb" / f"{big}.png").write_bytes(png_claiming(300, 300))
    use_scorer(monkeypatch, ScriptedScorer([0.2, 0.7]))
    out = tmp_path / "r.jsonl"
    r = invoke(["--source", f"folder://{root}?normal=a", "--max-frame-pixels", "10000", "--out", str(out), "-q"])
    assert r.exit_code == EXIT_BAD_FRAMES, r.output
    recs = lines(out)
    errs = [x for x in recs if x["type"] == "error"]
    assert [e["frame"] for e in errs] == [f"b/{big}"]
    assert "300x300 = 90,000 pixels exceeds the frame-size limit" in errs[0]["error"], errs[0]
    assert recs[-1]["frames_scored"] == 3 and recs[-1]["frame_errors"] == 1   # the run went on


# --------------------------------------------------------------------------- contact sheet

def _synth_frames(n, seed=1):
    return list(open_source(f"synth://?n={n}&anomaly_rate=0.5&seed={seed}"))


SHEET_SCORES = [0.9, 0.1, 0.6, 0.05, 0.8, 0.3, 0.7, 0.2, 0.95, 0.4]


def _fed_sheet(frames, threshold):
    """A ContactSheet (3 flagged, 2 normal) fed SHEET_SCORES for ``frames``, judged at ``threshold`` (None: not judged)."""
    sheet, scorer = ContactSheet("x.png", max_flagged=3, n_normal=2), ScriptedScorer(SHEET_SCORES)
    for fr, score in zip(frames, SHEET_SCORES):
        res = scorer.score(fr.rgb, fr.depth, keep_reconstructions=True)
        sheet({"frame": fr.id, "score": score, "threshold": threshold,
               "anomalous": None if threshold is None else score > threshold}, fr, res)
    return sheet


def test_contact_sheet_keeps_flagged_by_score_and_lowest_normals():
    frames, scores = _synth_frames(10), SHEET_SCORES
    sheet = _fed_sheet(frames, 0.5)
    rows = sheet.rows()                                                   # no truth: no mistakes to show
    assert [r["score"] for r, _ in rows] == [0.95, 0.9, 0.8, 0.05, 0.1]   # top-3 flagged, 2 lowest normals
    assert sheet.flagged_total == 5
    x = preprocess(frames[8].rgb, frames[8].depth)                        # the 0.95 frame
    assert np.array_equal(rows[0][1].rgb, np.moveaxis(np.rint(np.clip((x[:3] * 0.5 + 0.5) * 255, 0, 255)), 0, -1))
    assert np.all(rows[0][1].error == 0.95)


def test_contact_sheet_without_a_threshold_shows_the_highest_scores_not_judged():
    """Audit 28 #29: with a model without a threshold (anomalous None) the sheet showed only the 3 LOWEST scores,
    labelled "normal" in green: the model judged nothing, and the frames to look at first (the highest scores, to
    choose a threshold) were missing. Now the highest scores come first, then the lowest, each "not judged"."""
    from edge_ad.runtime.sheet import _label
    frames, scores = _synth_frames(10), SHEET_SCORES
    sheet = _fed_sheet(frames, None)
    rows = sheet.rows()
    assert [r["score"] for r, _ in rows] == [0.95, 0.9, 0.8, 0.05, 0.1]      # top 3, then the 2 lowest
    assert all(_label(r)[2:4] == ["no threshold", "not judged"] for r, _ in rows)
    small = ContactSheet("y.png", max_flagged=3, n_normal=2)                  # 2 frames: each shown once
    for i, fr in enumerate(frames[:2]):
        small({"frame": fr.id, "score": scores[i], "threshold": None, "anomalous": None}, fr,
              ScriptedScorer(scores).score(fr.rgb, fr.depth, keep_reconstructions=True))
    assert [r["score"] for r, _ in small.rows()] == [0.9, 0.1]


def test_contact_sheet_shows_the_mistakes_first_when_frames_carry_truth():
    """Audit 27 #10: on a labelled source the sheet kept the highest flagged and lowest normal frames, so it showed
    none of the false alarms and missed anomalies it has labels for. Now they come first (false alarms, then
    missed, each highest score first, at most max_errors each), then the other flagged and the normals."""
    frames = _synth_frames(10)        # truth: normal, normal, anomaly x 5, normal x 3
    scores = [0.9, 0.1, 0.6, 0.05, 0.8, 0.3, 0.7, 0.2, 0.95, 0.4]
    for max_errors, want in ((4, [0.95, 0.9, 0.3, 0.05, 0.8, 0.7, 0.6, 0.1, 0.2]),
                             (1, [0.95, 0.3, 0.8, 0.7, 0.6, 0.1, 0.2])):
        sheet = ContactSheet("x.png", max_flagged=3, n_normal=2, max_errors=max_errors)
        scorer = ScriptedScorer(scores)
        for i, fr in enumerate(frames):
            res = scorer.score(fr.rgb, fr.depth, keep_reconstructions=True)
            sheet({"frame": fr.id, "score": scores[i], "threshold": 0.5, "anomalous": scores[i] > 0.5,
                   "truth": {"anomalous": fr.meta["anomalous"], "kind": fr.meta["kind"]}}, fr, res)
        rows = sheet.rows()
        assert [r["score"] for r, _ in rows] == want, max_errors
        assert [r["truth"]["anomalous"] for r, _ in rows][:2] == ([False, False, True, True][:2] if max_errors > 1
                                                                 else [False, True])
        assert sheet.flagged_total == 5 and sheet.errors_total == 4 and sheet.false_alarms_total == 2


def test_sheet_written_at_run_end(tmp_path, monkeypatch):
    scores = [0.9, 0.1, 0.6, 0.05, 0.8, 0.3, 0.7, 0.2]
    use_scorer(monkeypatch, ScriptedScorer(scores, threshold=0.5))
    png = tmp_path / "sub" / "sheet.png"
    r = invoke(["--source", "synth://?n=8&anomaly_rate=0.5&seed=2", "--sheet", str(png), "-q"])
    assert r.exit_code == 0, r.output
    assert f"contact sheet: {png}" in r.output
    img = np.asarray(Image.open(png).convert("RGB"))
    # truth (synth seed 2): 2 false alarms (0.7, 0.6) + 3 missed (0.2, 0.1, 0.05) first, then the other
    # 2 flagged (0.9, 0.8) and the 1 other normal frame (0.3)
    n_rows = 2 + 3 + 2 + 1
    scale, gap, head = 2, 4, 40
    assert img.shape[0] == head + n_rows * (64 * scale + gap) + gap
    # row 0 is the 0.7 false alarm: its error tile is one flat colour (the scripted error map is constant)
    y, x0 = head + 10, 190 + gap + 4 * (64 * scale + gap) + 10
    assert len({tuple(v) for v in img[y:y + 50, x0:x0 + 50].reshape(-1, 3)}) == 1
    # audit 26 #8: a second run with the same --sheet replaced the first run's sheet; now it takes -2, -3
    first = png.read_bytes()
    for n in (2, 3):
        use_scorer(monkeypatch, ScriptedScorer(scores, threshold=0.5))
        r = invoke(["--source", "synth://?n=8&anomaly_rate=0.5&seed=2", "--sheet", str(png), "-q"])
        assert r.exit_code == 0, r.output
        assert f"contact sheet: {tmp_path / 'sub' / f'sheet-{n}.png'} ({png} exists: never replaced)" in r.output
        assert (tmp_path / "sub" / f"sheet-{n}.png").is_file()
    assert png.read_bytes() == first


def test_sheet_rejects_non_png(tmp_path, monkeypatch):
    use_scorer(monkeypatch, ScriptedScorer([0.1]))
    r = CliRunner().invoke(run_cmd.cmd, ["--sheet", str(tmp_path / "s.jpg"), "--max-frames", "1"])
    assert r.exit_code == 2 and "does not end in .png" in r.output


# --------------------------------------------------------------------------- Rerun

def read_rrd(path):
    """{entity path: sorted frame indices} and {entity path: sorted capture times (ns)} of a .rrd
    file, read back with rerun's own API."""
    from rerun.chunk import RrdReader
    frames, times = {}, {}
    for ch in RrdReader(str(path)).stream().to_chunks():
        rb = ch.to_record_batch()
        if "frame" in rb.schema.names:
            frames.setdefault(ch.entity_path, []).extend(rb.column("frame").to_pylist())
            times.setdefault(ch.entity_path, []).extend(rb.column("capture_time").cast("int64").to_pylist())
        if ch.entity_path == "/events":
            frames.setdefault("events_text", []).extend(rb.column("TextLog:text").to_pylist())
    return ({k: sorted(v) if k != "events_text" else v for k, v in frames.items()},
            {k: sorted(v) for k, v in times.items()})


def test_rerun_recording_holds_every_frame(tmp_path, monkeypatch):
    scores = [0.9, 0.1, 0.6, 0.05, 0.8, 0.3, 0.7]
    use_scorer(monkeypatch, ScriptedScorer(scores, threshold=0.5))
    rrd, out = tmp_path / "run.rrd", tmp_path / "r.jsonl"
    r = invoke(["--source", "synth://?n=7&anomaly_rate=0.5&seed=3", "--rerun", str(rrd), "--out", str(out), "-q"])
    assert r.exit_code == 0, r.output
    frames, times = read_rrd(rrd)
    for entity in ("/camera/rgb", "/camera/depth", "/model/reconstruction/rgb", "/model/reconstruction/depth",
                   "/model/error", "/plots/score", "/plots/threshold"):
        assert frames[entity] == list(range(7)), entity
    recs = [x for x in lines(out) if x["type"] == "frame"]
    stamps = sorted(x["timestamp"] for x in recs)    # capture_time timeline = the frames' timestamps
    for entity in ("/camera/rgb", "/plots/score"):
        assert np.allclose(np.array(times[entity]) / 1e9, stamps, atol=1e-5), entity
    flagged = [x for x in recs if x["anomalous"]]
    assert frames["/events"] == [x["index"] for x in flagged] and len(flagged) == 4
    assert all(f"frame {x['frame']}" in str(t) for x, t in zip(flagged, frames["events_text"]))
    assert f"rerun recording: {rrd}\n" in r.output


def test_rerun_recording_never_replaces_a_file(tmp_path, monkeypatch):
    """Audit 27 #15: a second run with the same --rerun FILE.rrd replaced the first run's recording, nothing
    said; now it records to FILE-2.rrd, FILE-3.rrd, ... as --sheet does, and says the name."""
    rrd = tmp_path / "run.rrd"
    rrd.write_bytes(b"an earlier run's recording")
    for n in (2, 3):
        use_scorer(monkeypatch, ScriptedScorer([0.9, 0.1, 0.6], threshold=0.5))
        r = invoke(["--source", "synth://?n=3&anomaly_rate=0.5&seed=3", "--rerun", str(rrd), "-q"])
        assert r.exit_code == 0, r.output
        new = tmp_path / f"run-{n}.rrd"
        assert f"rerun recording: {new} ({rrd} exists: never replaced)" in r.output
        assert read_rrd(new)[0]["/plots/score"] == [0, 1, 2]
    assert rrd.read_bytes() == b"an earlier run's recording"


def test_rerun_target_checked_and_missing_sdk_explained(tmp_path, monkeypatch):
    use_scorer(monkeypatch, ScriptedScorer([0.1]))
    r = CliRunner().invoke(run_cmd.cmd, ["--rerun", "out.txt", "--max-frames", "1"])
    assert r.exit_code == 2 and "FILE.rrd, 'spawn' or 'serve'" in r.output
    monkeypatch.setitem(sys.modules, "rerun", None)   # import rerun -> ImportError
    r = CliRunner().invoke(run_cmd.cmd, ["--rerun", str(tmp_path / "x.rrd"), "--max-frames", "1",
                                         "--source", "synth://?n=1"])
    assert r.exit_code == 1 and "pip install 'edge-ad[rerun]'" in r.output


def test_rerun_spawn_finds_the_environments_viewer_or_says_so_in_one_line(tmp_path, monkeypatch):
    """Audit 26 #12: `.venv/bin/edge-ad run --rerun spawn` (the venv not activated, as demo.sh and the systemd unit
    call it) died with a 40-line traceback: rerun-sdk looks for its `rerun` launcher on PATH only. Now the one
    beside the interpreter is used when PATH has none, and a viewer that cannot start is one line, exit 1."""
    pytest.importorskip("rerun")
    import rerun as rr

    from edge_ad.runtime import rerun_view
    monkeypatch.setattr(rerun_view.shutil, "which", lambda name: None)              # nothing on PATH
    fake_bin = tmp_path / "venv" / "bin"
    fake_bin.mkdir(parents=True)
    (fake_bin / "rerun").write_text("#!/bin/sh\n")
    monkeypatch.setattr(rerun_view.sys, "executable", str(fake_bin / "python"))
    assert rerun_view.viewer_executable() == str(fake_bin / "rerun")
    calls = []
    monkeypatch.setattr(rr, "spawn", lambda **kw: calls.append(kw))
    rerun_view.RerunView("spawn").close()
    assert calls and calls[0]["executable_path"] == str(fake_bin / "rerun")

    def no_viewer(**kw):
        raise RuntimeError("Failed to find Rerun Viewer executable in PATH.\nInstall it with ...")
    monkeypatch.setattr(rr, "spawn", no_viewer)
    use_scorer(monkeypatch, ScriptedScorer([0.1]))
    r = CliRunner().invoke(run_cmd.cmd, ["--rerun", "spawn", "--max-frames", "1", "--source", "synth://?n=1"])
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert r.output.strip().splitlines()[-1] == (
        "Error: --rerun spawn cannot start the Rerun viewer (Failed to find Rerun Viewer executable in PATH.): "
        "`pip install rerun-sdk` puts `rerun` in the environment's bin folder; put it on PATH, or use --rerun "
        "FILE.rrd / --rerun serve"), r.output


def test_rerun_serve_serves_the_web_viewer_and_the_data_port():
    """``--rerun serve``: the web viewer's page is served and the gRPC data port accepts
    connections; the printed URL points the viewer at that port. (``spawn`` needs a display.)"""
    import socket
    import urllib.request
    from urllib.parse import quote

    from edge_ad.runtime.rerun_view import RerunView

    def free_port():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    grpc_port, web_port = free_port(), free_port()
    said = []
    view = RerunView("serve", grpc_port=grpc_port, web_port=web_port, log=said.append)
    try:
        fr = next(iter(open_source("synth://?n=1&seed=1")))
        res = ScriptedScorer([0.9]).score(fr.rgb, fr.depth, keep_reconstructions=True)
        view({"frame": fr.id, "index": 0, "timestamp": fr.timestamp, "score": 0.9, "threshold": 0.5,
              "anomalous": True}, fr, res)
        assert view.url.endswith(f":{grpc_port}/proxy")
        assert said == [f"rerun: web viewer at http://localhost:{web_port}/?url={quote(view.url, safe='')}"]
        page = urllib.request.urlopen(f"http://127.0.0.1:{web_port}/", timeout=10).read()
        assert b"<html" in page.lower()
        socket.create_connection(("127.0.0.1", grpc_port), timeout=5).close()
    finally:
        view.close()


@pytest.mark.parametrize("command", [["run", "-q"], ["calibrate", "--source", "synth://?n=3", "--out", "OUT"],
                                     ["batch", "--out", "OUT", "synth://?n=3"]])
def test_a_checkpoint_given_as_model_says_to_export_it(tmp_path, command):
    """Audit 27 #8: --model models/kinect-rgbd/rectangle.pt (a checkpoint, the README's first file) said only
    click's "Directory '...rectangle.pt' is a file."; now it says to export it first (exit 2)."""
    from click.testing import CliRunner

    from edge_ad.cli import main
    ckpt = tmp_path / "rectangle.pt"
    ckpt.write_bytes(b"a checkpoint")
    args = [a.replace("OUT", str(tmp_path / "out")) for a in command]
    r = CliRunner().invoke(main, args[:1] + ["--model", str(ckpt)] + args[1:])
    assert r.exit_code == 2 and (f"{ckpt} is a file, not an exported model directory; export a checkpoint first: "
                                 f"edge-ad export {ckpt} --out DIR, then --model DIR") in r.output, r.output
    assert not (tmp_path / "out").exists()


def test_an_exported_model_given_to_eval_says_how_to_measure_it(tmp_path):
    """Audit 29 #17: `edge-ad eval --model EXPORTED_DIR` said only click's "File '...' is a directory."; now it says
    that eval scores a checkpoint and that edge-ad run on a labelled folder measures an exported model (exit 2)."""
    from click.testing import CliRunner

    from edge_ad.cli import main
    from edge_ad.runtime import demo_model_dir
    model = str(demo_model_dir())
    r = CliRunner().invoke(main, ["eval", "--model", model, "--synth", "4", "--out", str(tmp_path / "out")])
    assert r.exit_code == 2 and (f"{model} is an exported model directory; eval scores a checkpoint (.pt) with the "
                                 f"PyTorch reference. To measure an exported or calibrated model on labelled frames: "
                                 f"edge-ad run --model {model} --source 'folder://DATA?normal=CLASS&split=val'") \
        in " ".join(r.output.split()), r.output
    assert not (tmp_path / "out").exists()
