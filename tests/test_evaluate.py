"""Metrics on known toy cases, threshold calibration, report files, and the eval command end to end."""
import json
import re

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edge_ad.cli import main
from edge_ad.models import save_checkpoint
from edge_ad.models.evaluate import calibrate_threshold, detection_metrics, write_report
from edge_ad.runtime.preprocess import PreprocessSpec


def test_metrics_known_cases():
    m = detection_metrics([0, 1, 2], [3, 4])
    assert m["auroc"] == 1.0 and m["ap"] == 1.0 and m["f1_max"] == 1.0 and m["f1_threshold"] == 3
    m = detection_metrics([1, 3], [2, 4])  # pairs anomalous>normal: (2>1), (4>1), (4>3) of 4
    assert m["auroc"] == pytest.approx(0.75)
    # best F1: threshold 2 -> precision 2/3, recall 1 -> F1 0.8
    assert m["f1_max"] == pytest.approx(0.8) and m["f1_threshold"] == 2
    assert detection_metrics([5, 6], [1, 2])["auroc"] == 0.0
    with pytest.raises(ValueError):
        detection_metrics([], [1.0])


def test_calibrated_threshold_flags_the_target_share():
    normal = np.arange(100, dtype=float)
    t = calibrate_threshold(normal, 0.05)
    assert (normal > t).mean() <= 0.05 and (normal >= t).mean() > 0.0
    with pytest.raises(ValueError):
        calibrate_threshold(normal, 1.5)


def test_report_files(tmp_path):
    rep = write_report(tmp_path, "box", np.array([0.1, 0.2, 0.3]), {"sphere": np.array([0.25, 0.5])},
                       calibrate_fpr=0.3)
    assert rep["metrics"]["overall"]["auroc"] == pytest.approx(5 / 6)
    for f in ("roc.png", "histogram.png"):
        with Image.open(tmp_path / f) as im:
            assert im.size[0] > 200
    assert json.loads((tmp_path / "report.json").read_text())["scores"]["sphere"] == [0.25, 0.5]
    assert "value" in json.loads((tmp_path / "threshold.json").read_text())


def test_a_threshold_from_too_few_normals_is_said(tmp_path):
    """Audit 28 #4: eval --max-per-class 10 wrote threshold.json from 10 normal frames at 5 % (0.5 expected above
    it: the quantile is the top score) without a word, and export took it in place of the checkpoint's 400-frame
    one: 12 % false alarms. Now threshold.json (and report.json) carry a warning saying so, with calibrate's rule
    (n x rate < 3); enough normals carry none."""
    normal = np.linspace(0.1, 0.2, 10)
    rep = write_report(tmp_path / "few", "box", normal, {"sphere": np.array([0.25, 0.5])}, calibrate_fpr=0.05)
    said = json.loads((tmp_path / "few" / "threshold.json").read_text())["warning"]
    assert said == rep["threshold"]["warning"] == (
        "the threshold is the 1st highest of 10 normal scores (10 x 0.05 = 0.5 expected above it; a quantile needs "
        "3 or more), as noisy as one frame: use more normal frames (e.g. without --max-per-class) or a larger "
        "--calibrate-fpr")
    rep = write_report(tmp_path / "many", "box", np.linspace(0.1, 0.2, 60), {"sphere": np.array([0.25, 0.5])},
                       calibrate_fpr=0.05)
    assert "warning" not in rep["threshold"]


@pytest.mark.parametrize("args", [("--calibrate-fpr", "1.5"), ("--calibrate-fpr", "nan"), ("--calibrate-fpr", "0"),
                                  ("--calibrate-fpr", "-0.1"), ("--calibrate-fpr", "1"), ("--lr-z", "nan"),
                                  ("--lr-theta", "inf"), ("--fg-power", "nan"), ("--latent-power", "-inf"),
                                  ("--bank-augment-weight", "nan"), ("--pixel-power", "nan"),
                                  ("--max-per-class", "-3"), ("--batch-frames", "-1")])   # audit 28 #24
def test_eval_refuses_a_bad_number_before_scoring(tmp_path, kinect_root, tiny_generator, monkeypatch, args):
    """Audit 27 #6: --calibrate-fpr 1.5 (a typo for 0.15) scored every frame, then ended in a traceback
    ("fpr must be in (0, 1)") leaving roc.png in --out, so the corrected rerun was refused ("already holds an
    evaluation"); 0 wrote no threshold.json, silently; --lr-z nan ended in torch's traceback. Now each is a
    usage error naming the option (exit 2), before any frame is scored, and --out is not created."""
    import edge_ad.models.search as search
    save_checkpoint(tmp_path / "g.pt", tiny_generator, preprocess=PreprocessSpec())

    def never(*a, **k):
        raise AssertionError("a frame was scored")
    monkeypatch.setattr(search, "score_batch", never)
    r = CliRunner().invoke(main, ["eval", "--model", str(tmp_path / "g.pt"), "--data", str(kinect_root),
                                  "--class", "rectangle", "--max-per-class", "2", "--out", str(tmp_path / "ev"), *args])
    assert r.exit_code == 2 and f"Invalid value for '{args[0]}'" in r.output, r.output
    assert "Traceback" not in r.output and not (tmp_path / "ev").exists()


def test_eval_without_anomalous_frames_is_refused_before_scoring(tmp_path, tiny_generator, monkeypatch):
    """Audit 28 #18: eval --synth 2 (3, 6) rendered no sphere or cylinder, scored every frame and then died in a
    40-line traceback ("need at least one normal and one anomalous score"). Now refused before scoring, naming
    the counts (exit 2: --synth is the option to change)."""
    import edge_ad.models.search as search
    save_checkpoint(tmp_path / "g.pt", tiny_generator, preprocess=PreprocessSpec())

    def never(*a, **k):
        raise AssertionError("a frame was scored")
    monkeypatch.setattr(search, "score_batch", never)
    r = CliRunner().invoke(main, ["eval", "--model", str(tmp_path / "g.pt"), "--synth", "2", "--k", "1",
                                  "--out", str(tmp_path / "ev")])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert "Error: --synth 2 rendered 2 box, 0 sphere, 0 cylinder: no sphere and no cylinder frame, and eval needs " \
           "frames of every group (normal and each anomaly); use --synth 20 or more" in r.output, r.output
    assert not (tmp_path / "ev").exists()
    # audit 28 #18 (rest) and the regression of 9337b4a: some spheres, no cylinder (--synth 6) ended in a traceback
    # (an empty group's hash: "memoryview: cannot cast view with zeros in shape"; before, the group's metrics)
    r = CliRunner().invoke(main, ["eval", "--model", str(tmp_path / "g.pt"), "--synth", "6", "--k", "1",
                                  "--out", str(tmp_path / "ev")])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert re.search(r"Error: --synth 6 rendered \d+ box, \d+ sphere, 0 cylinder: no cylinder frame, and eval needs "
                     r"frames of every group", r.output), r.output
    from edge_ad.commands.evaluate import _score_settings                 # an empty group hashes (no traceback)
    from edge_ad.runtime.config import SearchConfig
    got = _score_settings(tmp_path / "g.pt", SearchConfig(), None, 0, 0, {"box": np.zeros((0, 4, 4, 4), np.uint8)})
    assert got["groups"]["box"][0] == 0


def test_a_report_that_fails_writes_no_file(tmp_path):
    """A threshold that cannot be calibrated fails before any file is written (it wrote roc.png first: an
    'earlier evaluation' that refused the rerun)."""
    from edge_ad.models.evaluate import earlier_report
    with pytest.raises(ValueError, match=r"fpr must be in \(0, 1\), got 1.5"):
        write_report(tmp_path / "ev", "box", np.array([0.1, 0.2, 0.3]), {"sphere": np.array([0.25, 0.5])},
                     calibrate_fpr=1.5)
    assert not (tmp_path / "ev").exists() and earlier_report(tmp_path / "ev") == []


def test_eval_command_on_real_frames(tmp_path, kinect_root, tiny_generator):
    save_checkpoint(tmp_path / "g.pt", tiny_generator, preprocess=PreprocessSpec())
    r = CliRunner().invoke(main, ["eval", "--model", str(tmp_path / "g.pt"), "--data", str(kinect_root),
                                  "--class", "rectangle", "--max-per-class", "3", "--k", "2",
                                  "--out", str(tmp_path / "ev")])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert set(rep["metrics"]) == {"cylinder", "sphere", "overall"}
    assert len(rep["scores"]["rectangle"]) == 3 and rep["search"]["k"] == 2
    assert (tmp_path / "ev" / "roc.png").exists() and (tmp_path / "ev" / "threshold.json").exists()
    # audit 26 #4: a second evaluation into the same --out replaced report.json / threshold.json / plots, no word
    before = {f: (tmp_path / "ev" / f).read_bytes() for f in ("report.json", "threshold.json", "roc.png", "histogram.png")}
    r = CliRunner().invoke(main, ["eval", "--model", str(tmp_path / "g.pt"), "--data", str(kinect_root),
                                  "--class", "rectangle", "--max-per-class", "2", "--out", str(tmp_path / "ev")])
    assert r.exit_code == 1, r.output
    assert (f"--out {tmp_path / 'ev'} already holds an evaluation (report.json, threshold.json, roc.png, "
            "histogram.png); choose a new directory") in r.output
    assert {f: (tmp_path / "ev" / f).read_bytes() for f in before} == before
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "histogram.png").write_bytes(b"x")      # any one of them: refused
    r = CliRunner().invoke(main, ["eval", "--model", str(tmp_path / "g.pt"), "--out", str(tmp_path / "other")])
    assert r.exit_code == 1 and "already holds an evaluation (histogram.png)" in r.output, r.output
    r = CliRunner().invoke(main, ["eval", "--model", str(tmp_path / "g.pt"), "--out", str(tmp_path / "x")])
    assert r.exit_code != 0 and "--data" in r.output


def test_a_stopped_eval_keeps_its_scores_and_the_same_command_continues(tmp_path, tiny_generator, monkeypatch):
    """Audit 28 #7: an eval stopped before its end (Ctrl-C, SIGTERM: a lost session, a timeout) kept nothing, so
    the rerun scored every frame again (20 min for the reference configuration's 300 frames). Now the scores are
    appended to OUT/scores.partial.jsonl as they are made, the stop says how far it got (exit 130 for Ctrl-C),
    and the same command scores only the rest: the same report as an uninterrupted run; other settings are
    refused; the partial file is gone once the report is written."""
    import edge_ad.commands.evaluate as evaluate_cmd
    import edge_ad.models.search as search
    save_checkpoint(tmp_path / "g.pt", tiny_generator, preprocess=PreprocessSpec())
    args = ["eval", "--model", str(tmp_path / "g.pt"), "--synth", "24", "--k", "2", "--no-baselines"]
    monkeypatch.setattr(evaluate_cmd, "SCORE_CHUNK", 1000)           # one chunk per group: as before chunks
    r = CliRunner().invoke(main, args + ["--out", str(tmp_path / "full")])
    assert r.exit_code == 0, r.output
    monkeypatch.setattr(evaluate_cmd, "SCORE_CHUNK", 4)
    real, calls = search.score_batch, []

    def stop_at_the_third(G, X, *a, **k):
        calls.append(len(X))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(G, X, *a, **k)
    monkeypatch.setattr(search, "score_batch", stop_at_the_third)
    out = tmp_path / "ev"
    r = CliRunner().invoke(main, args + ["--out", str(out)])
    partial = out / "scores.partial.jsonl"
    assert r.exit_code == 130, r.output
    assert f"stopped: 8 of 24 frames scored, kept in {partial}; the same command continues from there" in r.output
    assert "Traceback" not in r.output and not (out / "report.json").exists()
    assert len(partial.read_text().splitlines()) == 1 + 2                  # the settings, two chunks of 4
    r = CliRunner().invoke(main, args + ["--out", str(out), "--seed", "1"])
    assert r.exit_code == 1 and "other settings (groups, seed): continuing would mix the two" in r.output, r.output
    calls.clear()
    monkeypatch.setattr(search, "score_batch", lambda G, X, *a, **k: (calls.append(len(X)), real(G, X, *a, **k))[1])
    r = CliRunner().invoke(main, args + ["--out", str(out)])
    assert r.exit_code == 0, r.output
    assert f"continuing an eval stopped earlier: 8 of 24 frames already scored ({partial})" in r.output
    assert sum(calls) == 24 - 8 and not partial.exists()
    got, want = (json.loads((d / "report.json").read_text()) for d in (out, tmp_path / "full"))
    assert got["scores"] == want["scores"] and got["metrics"] == want["metrics"]


def test_a_stopped_evals_nuisance_suite_scorings_are_kept_too(tmp_path, tiny_generator, monkeypatch):
    """Audit 28 #7b: the nuisance suite (10x the clean work) was not kept: a stop during it threw away the
    conditions scored and the rerun redid them all. Each perturbed group's scores are now kept (under the sha256
    of its frames) as they are made: stopped at the suite's last scoring, the same command scores only that one,
    and its nuisance results equal an uninterrupted run's."""
    import edge_ad.models.search as search
    save_checkpoint(tmp_path / "g.pt", tiny_generator, preprocess=PreprocessSpec())
    args = ["eval", "--model", str(tmp_path / "g.pt"), "--synth", "24", "--k", "1", "--no-baselines",
            "--nuisance-set", "brightness:1.3", "--nuisance-set", "shift:2"]
    real, calls = search.score_batch, []

    def counted(G, X, *a, **k):
        calls.append(len(X))
        if len(calls) == stop_at:
            raise KeyboardInterrupt
        return real(G, X, *a, **k)
    monkeypatch.setattr(search, "score_batch", counted)
    stop_at = 0
    r = CliRunner().invoke(main, args + ["--out", str(tmp_path / "full")])
    assert r.exit_code == 0, r.output
    n_full = len(calls)
    calls.clear()
    stop_at = n_full                                         # the suite's last scoring
    r = CliRunner().invoke(main, args + ["--out", str(tmp_path / "ev")])
    assert r.exit_code == 130 and "stopped: 24 of 24 frames scored, and " in r.output, r.output
    assert " nuisance-suite scorings, kept in " in r.output, r.output
    calls.clear()
    stop_at = 0
    r = CliRunner().invoke(main, args + ["--out", str(tmp_path / "ev")])
    assert r.exit_code == 0 and len(calls) == 1, (len(calls), r.output)
    got, want = (json.loads((d / "report.json").read_text()) for d in (tmp_path / "ev", tmp_path / "full"))
    assert got["nuisance"]["conditions"] == want["nuisance"]["conditions"]


def test_a_second_eval_into_the_same_out_is_refused_at_once(tmp_path, tiny_generator, monkeypatch):
    """Audit 28 #32: two evals started into one new --out both passed the earlier-report check, and the last one
    replaced the other's report.json / threshold.json while both said "report: OUT/report.json". The eval holds
    OUT/.lock for its work (as edge-ad batch): a second one is refused in one line before scoring."""
    import edge_ad.models.search as search
    from edge_ad.runtime.results import try_lock
    save_checkpoint(tmp_path / "g.pt", tiny_generator, preprocess=PreprocessSpec())
    out = tmp_path / "ev"
    out.mkdir()

    def never(*a, **k):
        raise AssertionError("a frame was scored")
    monkeypatch.setattr(search, "score_batch", never)
    with open(out / ".lock", "a") as held:                       # the first eval, still running
        assert try_lock(held)
        r = CliRunner().invoke(main, ["eval", "--model", str(tmp_path / "g.pt"), "--synth", "24", "--k", "1",
                                      "--no-baselines", "--out", str(out)])
    assert r.exit_code == 1, r.output
    assert (f"Error: --out {out} is being written by another edge-ad eval (it holds {out / '.lock'}): two evals "
            "never write one folder; choose another --out") in r.output
    assert sorted(p.name for p in out.iterdir()) == [".lock"]


def test_eval_and_export_scoring_reference_agree_on_plain_preprocessing(tmp_path, kinect_root, tiny_generator):
    """`eval --scoring reference` scores on plain preprocessing (the checkpoint's input contract without
    colour_norm / align), as `export --scoring reference` exports: the same generator saved with a
    tuned preprocessing and with the plain one scores identically; the threshold.json it writes records
    that preprocessing, so export --scoring reference keeps it and the checkpoint-scoring export
    (tuned preprocessing) refuses it."""
    from edge_ad.runtime.config import SearchConfig
    tuned = PreprocessSpec(colour_norm="rgb", colour_reference=(0.6, 0.55, 0.5), align="centroid",
                           align_centre=(0.45, 0.5))
    save_checkpoint(tmp_path / "tuned.pt", tiny_generator, preprocess=tuned)
    save_checkpoint(tmp_path / "plain.pt", tiny_generator, preprocess=PreprocessSpec())
    reps = {}
    for name in ("tuned", "plain"):
        r = CliRunner().invoke(main, ["eval", "--model", str(tmp_path / f"{name}.pt"), "--data", str(kinect_root),
                                      "--class", "sphere", "--max-per-class", "2", "--k", "2", "--no-baselines",
                                      "--scoring", "reference", "--out", str(tmp_path / name)])
        assert r.exit_code == 0, r.output
        reps[name] = json.loads((tmp_path / name / "report.json").read_text())
    assert reps["tuned"]["scores"] == reps["plain"]["scores"]
    assert reps["tuned"]["preprocess"] == PreprocessSpec().to_dict()
    assert reps["tuned"]["search"] == SearchConfig(k=2, name="reference+k=2").to_dict()
    thr = tmp_path / "tuned" / "threshold.json"
    assert json.loads(thr.read_text())["preprocess"] == PreprocessSpec().to_dict()
    r = CliRunner().invoke(main, ["export", str(tmp_path / "tuned.pt"), "--out", str(tmp_path / "ref"), "--scoring",
                                  "reference", "--k", "2", "--no-parity", "--threshold-file", str(thr)])
    assert r.exit_code == 0, r.output
    man = json.loads((tmp_path / "ref" / "manifest.json").read_text())
    assert man["threshold"]["value"] == json.loads(thr.read_text())["value"]
    r = CliRunner().invoke(main, ["export", str(tmp_path / "tuned.pt"), "--out", str(tmp_path / "own"), "--k", "2",
                                  "--no-parity", "--threshold-file", str(thr)])
    assert r.exit_code != 0 and "another preprocessing" in r.output, r.output


def test_eval_reference_never_uses_a_threshold_of_other_preprocessing(tmp_path, kinect_root, tiny_generator):
    """A checkpoint threshold calibrated for the same search settings but on the checkpoint's tuned
    preprocessing is not applied by `eval --scoring reference` (plain preprocessing): the nuisance suite
    calibrates its own; with the checkpoint's scoring it is the checkpoint's."""
    from edge_ad.runtime.config import SearchConfig
    k0 = SearchConfig(name="k0", k=0, n_seed=1, lr_theta=0.0)
    tuned = PreprocessSpec(colour_norm="gray", colour_reference=(0.6, 0.6, 0.6))
    save_checkpoint(tmp_path / "g.pt", tiny_generator, preprocess=tuned,
                    scoring={"name": "k0", "search": k0.to_dict(),
                             "threshold": {"value": 123.0, "target_fpr": 0.05, "search": k0.to_dict()}})
    src = {}
    for scoring in ("checkpoint", "reference"):
        r = CliRunner().invoke(main, ["eval", "--model", str(tmp_path / "g.pt"), "--data", str(kinect_root),
                                      "--class", "sphere", "--max-per-class", "2", "--k", "0", "--n-seed", "1",
                                      "--lr-theta", "0", "--no-baselines", "--scoring", scoring,
                                      "--nuisance-set", "brightness:1.25", "--out", str(tmp_path / scoring)])
        assert r.exit_code == 0, r.output
        nu = json.loads((tmp_path / scoring / "report.json").read_text())["nuisance"]
        src[scoring] = (nu["threshold"], nu["threshold_source"])
    assert src["checkpoint"][0] == 123.0 and src["checkpoint"][1].startswith("the checkpoint's")
    assert src["reference"][0] != 123.0 and src["reference"][1].startswith("calibrated now"), src


def test_two_anomalous_folders_of_one_name_are_two_groups(tmp_path, kinect_root, tiny_generator):
    """ifix-found D (session 30): groups were named by the folder's last part, so --anomalous x/dents --anomalous
    y/dents kept only y's frames (12 given, 6 scored, one 'dents' group, exit 0), in the report and in the nuisance
    suite alike. A name already taken is now the folder as given; the same folder twice is a usage error, before
    anything is read or written."""
    import shutil

    from edge_ad.models.evaluate import folder_group_names
    dirs = {"n/good": "rectangle", "x/dents": "sphere", "y/dents": "cylinder"}
    for d, cls in dirs.items():
        for sub in ("rgb", "depth"):
            (tmp_path / d / sub).mkdir(parents=True)
        for f in sorted((kinect_root / cls / "rgb").iterdir())[:3]:
            shutil.copy(f, tmp_path / d / "rgb" / f.name)
            shutil.copy(next((kinect_root / cls / "depth").glob(f.stem + ".*")), tmp_path / d / "depth")
    assert folder_group_names(["n/good", "x/dents", "y/dents"]) == ["good", "dents", "y/dents"]
    save_checkpoint(tmp_path / "g.pt", tiny_generator, preprocess=PreprocessSpec())
    args = ["eval", "--model", str(tmp_path / "g.pt"), "--k", "0", "--n-seed", "1", "--no-baselines",
            "--normal", str(tmp_path / "n/good"), "--anomalous", str(tmp_path / "x/dents")]
    r = CliRunner().invoke(main, args + ["--anomalous", str(tmp_path / "y/dents"), "--nuisance-set", "mirror",
                                         "--out", str(tmp_path / "ev")])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "ev" / "report.json").read_text())
    want = {"good": 3, "dents": 3, str(tmp_path / "y/dents"): 3}
    assert {k: len(v) for k, v in rep["scores"].items()} == want
    assert {k: len(v) for k, v in rep["nuisance"]["conditions"]["mirror"]["scores"].items()} == want
    r = CliRunner().invoke(main, args + ["--anomalous", str(tmp_path / "x/dents") + "/", "--out", str(tmp_path / "e2")])
    assert r.exit_code == 2 and "is given twice" in r.output, r.output
    assert not (tmp_path / "e2").exists()
