"""A threshold calibrated by edge-ad eval travels into the manifest and out of Scorer.threshold."""
import json

import pytest

from edge_ad.export.errors import ExportError
from edge_ad.export.exporter import export_model
from edge_ad.runtime import Scorer
from edge_ad.runtime.config import SearchConfig


def test_threshold_stored_and_checked_against_the_search_config(tmp_path, tiny_generator):
    cfg = SearchConfig(k=2)
    thr = {"value": 0.0123, "target_fpr": 0.05, "n_normal": 100, "search": cfg.to_dict()}
    export_model(tiny_generator, tmp_path / "m", search=cfg, parity=False, unrolled=False,
                 threshold=thr, log=lambda *_: None)
    man = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert man["threshold"]["value"] == 0.0123 and man["threshold"]["target_fpr"] == 0.05
    assert Scorer.load(tmp_path / "m").threshold == pytest.approx(0.0123)
    with pytest.raises(ExportError, match=r"another search configuration .*'k'"):
        export_model(tiny_generator, tmp_path / "m2", search=SearchConfig(k=3), parity=False,
                     unrolled=False, threshold=thr, log=lambda *_: None)
    with pytest.raises(ExportError, match="finite 'value'"):
        export_model(tiny_generator, tmp_path / "m3", search=cfg, parity=False, unrolled=False,
                     threshold={"value": float("nan")}, log=lambda *_: None)
    for rate in (2.0, 0.0, float("nan"), "0.05"):       # audit 33 #3: a rate outside (0, 1) was exported
        with pytest.raises(ExportError, match=r"threshold target_fpr must be a false-alarm rate in \(0, 1\), got "):
            export_model(tiny_generator, tmp_path / "m5", search=cfg, parity=False, unrolled=False,
                         threshold={**thr, "target_fpr": rate}, log=lambda *_: None)
        assert not (tmp_path / "m5").exists()
    export_model(tiny_generator, tmp_path / "m4", search=cfg, parity=False, unrolled=False, log=lambda *_: None)
    assert Scorer.load(tmp_path / "m4").threshold is None


def test_the_threshold_is_bound_to_the_preprocessing_it_was_read_with(tmp_path, tiny_generator):
    """Audit 33 #8: the manifest's threshold was dropped when the manifest's search differs from the one it was
    calibrated with, but not when the preprocessing does: an edited preprocess section (colour_norm, depth_fill,
    far_mm: scores up to 83x) kept it. The export records the preprocessing with the threshold; a manifest whose
    preprocessing differs from it has no threshold (Scorer.threshold None) and `edge-ad run` says which field.
    A threshold recorded without one (older exports) is kept as before."""
    from click.testing import CliRunner

    from conftest import edit_manifest
    from edge_ad.cli import main
    cfg = SearchConfig(k=0, n_seed=1)
    export_model(tiny_generator, tmp_path / "m", search=cfg, parity=False, threshold={"value": 0.0123},
                 log=lambda *_: None)
    man = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert man["threshold"]["preprocess"] == man["preprocess"] and Scorer.load(tmp_path / "m").threshold == 0.0123
    edited = edit_manifest(tmp_path / "m", tmp_path / "edited", lambda m: m["preprocess"].update(far_mm=1000.0))
    assert Scorer.load(edited).threshold is None
    r = CliRunner().invoke(main, ["run", "--model", str(edited), "--source", "synth://?n=1", "-q",
                                  "--out", str(tmp_path / "r.jsonl")])
    assert r.exit_code == 0, r.output
    assert ("note: no threshold: the model's threshold was calibrated with another preprocess (far_mm) than this "
            "model's manifest says (an edited manifest?): calibrate it again (edge-ad calibrate) or give --threshold; "
            "scores are written, frames are not flagged") in r.output, r.output
    r = CliRunner().invoke(main, ["verify", str(edited)])           # verify says the same (audit 33 #8 follow-up)
    assert r.exit_code == 0 and ("note: no threshold: the model's threshold was calibrated with another preprocess "
                                 "(far_mm) than this model's manifest says") in r.output, r.output
    older = edit_manifest(edited, tmp_path / "older", lambda m: m["threshold"].pop("preprocess"))
    assert Scorer.load(older).threshold == 0.0123
    # the sensor limits gate frames and change no score (iscene33's note): editing them keeps the threshold
    limits = edit_manifest(tmp_path / "m", tmp_path / "limits",
                           lambda m: m["preprocess"]["sensor_faults"].update(max_identical_frames=30))
    assert Scorer.load(limits).threshold == 0.0123


def test_a_threshold_file_naming_a_key_twice_is_refused(tmp_path, tiny_generator):
    """Audit 33 #16 (its other readers): a threshold.json with two "value"s was read last-wins; --threshold-file
    now refuses it in one line naming the key, nothing exported."""
    from click.testing import CliRunner

    from edge_ad.commands.export import cmd as export_cmd
    from edge_ad.models import save_checkpoint
    from edge_ad.runtime.preprocess import PreprocessSpec
    save_checkpoint(tmp_path / "g.pt", tiny_generator, preprocess=PreprocessSpec())
    t = tmp_path / "threshold.json"
    t.write_text('{"value": 0.5, "target_fpr": 0.05, "value": 1e-12}')
    r = CliRunner().invoke(export_cmd, [str(tmp_path / "g.pt"), "--out", str(tmp_path / "m"), "--no-parity",
                                        "--threshold-file", str(t)])
    assert r.exit_code == 1 and not (tmp_path / "m").exists(), r.output
    assert r.output.splitlines()[-1] == (f"Error: --threshold-file {t}: duplicate key 'value' at the top level: a key "
                                         "named twice means two things (json readers keep the last, people and some "
                                         "tools the first)"), r.output


def test_a_threshold_file_of_another_model_is_refused(tmp_path, tiny_generator):
    """Audit 33 #17: threshold.json recorded no model, so `edge-ad export CKPT --threshold-file T` took a threshold
    read on another generator's scores (another class even: the score scales differ) without a word, whenever the
    search configuration matched. edge-ad eval now records the checkpoint it scored (model, model_sha256); export
    refuses a file of another checkpoint naming both, and an older file (no model_sha256) whose normal class is
    another kinect-rgbd class than the checkpoint's."""
    from click.testing import CliRunner

    from edge_ad.commands.evaluate import cmd as eval_cmd
    from edge_ad.commands.export import cmd as export_cmd
    from edge_ad.models import save_checkpoint
    from edge_ad.runtime.manifest import sha256_file
    from edge_ad.runtime.preprocess import PreprocessSpec
    mine, other = tmp_path / "rect.pt", tmp_path / "other.pt"
    save_checkpoint(mine, tiny_generator, preprocess=PreprocessSpec(), train={"class": "rectangle"})
    save_checkpoint(other, tiny_generator, preprocess=PreprocessSpec(), train={"class": "rectangle", "epochs": 2})
    r = CliRunner().invoke(eval_cmd, ["--model", str(mine), "--synth", "12", "--out", str(tmp_path / "e"),
                                      "--no-baselines"])
    assert r.exit_code == 0, r.output
    t = tmp_path / "e" / "threshold.json"
    recorded = json.loads(t.read_text())
    assert (recorded["model"], recorded["model_sha256"]) == (str(mine), sha256_file(mine))

    def export(ck, threshold_file, out):
        return CliRunner().invoke(export_cmd, [str(ck), "--out", str(tmp_path / out), "--no-parity", "--target", "cpu",
                                               "--threshold-file", str(threshold_file)])
    r = export(other, t, "m_other")
    assert r.exit_code == 1 and not (tmp_path / "m_other").exists(), r.output
    assert r.output.splitlines()[-1] == (
        f"Error: the threshold was read on the scores of {mine} (sha256 {sha256_file(mine)[:12]}...), not of this "
        f"checkpoint {other} (sha256 {sha256_file(other)[:12]}...): a threshold only means something for its own "
        "model's scores; run edge-ad eval on this checkpoint"), r.output
    r = export(mine, t, "m_mine")
    assert r.exit_code == 0 and json.loads((tmp_path / "m_mine" / "manifest.json").read_text())["threshold"][
        "value"] == recorded["value"], r.output
    older = tmp_path / "older.json"                  # written before eval recorded the model: its class is checked
    older.write_text(json.dumps({k: v for k, v in recorded.items() if k not in ("model", "model_sha256")}
                                | {"normal": "cylinder"}))
    r = export(mine, older, "m_older")
    assert r.exit_code == 1 and r.output.splitlines()[-1] == (
        "Error: the threshold was read on cylinder frames, but this checkpoint was trained on rectangle: a threshold "
        "only means something for its own model's scores; run edge-ad eval on this checkpoint"), r.output
    older.write_text(json.dumps({k: v for k, v in recorded.items() if k not in ("model", "model_sha256")}))
    assert export(mine, older, "m_older_box").exit_code == 0        # normal "box" (synth): nothing to compare


def test_threshold_from_before_a_setting_existed(tmp_path, tiny_generator):
    """A threshold file written before a SearchConfig field existed (here the latent-memory fields)
    was calibrated with that field's default: accepted for a default configuration, refused when the
    export uses a non-default value of the missing field."""
    cfg = SearchConfig(k=2)
    old = {k: v for k, v in cfg.to_dict().items() if not k.startswith(("latent_", "score_latent"))}
    thr = {"value": 0.5, "search": old}
    export_model(tiny_generator, tmp_path / "m", search=cfg, parity=False, unrolled=False,
                 threshold=thr, log=lambda *_: None)
    assert Scorer.load(tmp_path / "m").threshold == pytest.approx(0.5)
    with pytest.raises(ExportError, match=r"another search configuration .*'latent_metric'"):
        export_model(tiny_generator, tmp_path / "m2", search=cfg.replace(latent_metric="l2"), parity=False,
                     unrolled=False, threshold=thr, log=lambda *_: None)


def test_checkpoint_threshold_is_the_export_default(tmp_path, tiny_generator):
    """A checkpoint that carries its calibrated threshold (scoring["threshold"]) exports it by default;
    an export with other search settings gets none (a threshold belongs to its score); threshold=False
    exports none."""
    from edge_ad.models import save_checkpoint
    from edge_ad.runtime.preprocess import PreprocessSpec
    cfg = SearchConfig(k=2, n_seed=1)
    thr = {"value": 0.042, "target_fpr": 0.05, "n_normal": 100, "normal": "val", "search": cfg.to_dict()}
    save_checkpoint(tmp_path / "g.pt", tiny_generator, preprocess=PreprocessSpec(),
                    scoring={"name": "x", "search": cfg.to_dict(), "threshold": thr})
    said = []
    export_model(tmp_path / "g.pt", tmp_path / "m", parity=False, unrolled=False, log=said.append)
    assert Scorer.load(tmp_path / "m").threshold == pytest.approx(0.042)
    assert json.loads((tmp_path / "m" / "manifest.json").read_text())["threshold"]["source"] == "checkpoint"
    assert any("from the checkpoint" in s for s in said)
    said.clear()
    export_model(tmp_path / "g.pt", tmp_path / "m2", search=cfg.replace(k=3), parity=False, unrolled=False,
                 log=said.append)
    assert Scorer.load(tmp_path / "m2").threshold is None and any("'k'" in s for s in said)
    export_model(tmp_path / "g.pt", tmp_path / "m3", parity=False, unrolled=False, threshold=False,
                 log=lambda *_: None)
    assert Scorer.load(tmp_path / "m3").threshold is None


def test_a_threshold_given_says_it_replaces_the_checkpoints_own(tmp_path, tiny_generator):
    """Audit 28 #4: export --threshold-file put eval's threshold (10 normal frames) in place of the checkpoint's
    (400) without a word. Now the replacement is said with both thresholds' frames and rates, and a threshold
    read from the top few scores, or from fewer frames than the checkpoint's, is warned about."""
    from edge_ad.models import save_checkpoint
    from edge_ad.runtime.preprocess import PreprocessSpec
    cfg = SearchConfig(k=2, n_seed=1)
    own = {"value": 0.042, "target_fpr": 0.04, "n_normal": 400, "normal": "val", "search": cfg.to_dict()}
    save_checkpoint(tmp_path / "g.pt", tiny_generator, preprocess=PreprocessSpec(),
                    scoring={"name": "x", "search": cfg.to_dict(), "threshold": own})
    said = []
    few = {"value": 0.03, "target_fpr": 0.05, "n_normal": 10, "normal": "sphere", "search": cfg.to_dict()}
    export_model(tmp_path / "g.pt", tmp_path / "m", parity=False, unrolled=False, threshold=few, log=said.append)
    assert Scorer.load(tmp_path / "m").threshold == pytest.approx(0.03)
    assert "threshold 0.03 (10 normal frames at 0.05) replaces the checkpoint's own 0.042 (400 normal frames at " \
           "0.04)" in said, said
    assert "warning: the threshold given rests on the top few of 10 normal scores (10 x 0.05 = 0.5 expected above " \
           "it): its false-alarm rate is a guess" in said, said
    said.clear()
    fewer = {**few, "n_normal": 100}
    export_model(tmp_path / "g.pt", tmp_path / "m2", parity=False, unrolled=False, threshold=fewer, log=said.append)
    assert "warning: the threshold given was read from 100 normal frames, the checkpoint's from 400" in said, said
    said.clear()
    export_model(tmp_path / "g.pt", tmp_path / "m3", parity=False, unrolled=False, log=said.append)   # its own
    assert not [s for s in said if "replaces" in s or "warning" in s], said


def test_threshold_ignores_optimiser_settings_only_when_no_step_reads_them(tmp_path, tiny_generator):
    """k = 0 (no search step) in the threshold's configuration and the scorer's: lr_z, lr_theta, beta1,
    beta2, eps change no score, so overriding them keeps the threshold; n_seed or a k > 0 model's
    lr_theta=0.0 (the fast option: another score) still make it None."""
    from edge_ad.runtime.config import search_differences
    k0 = SearchConfig(k=0, n_seed=2)
    export_model(tiny_generator, tmp_path / "k0", search=k0, parity=False, unrolled=False,
                 threshold={"value": 0.25, "search": k0.to_dict()}, log=lambda *_: None)
    for over in ({"lr_z": 0.1}, {"lr_theta": 0.0}, {"beta1": 0.5, "beta2": 0.9, "eps": 1e-6}):
        assert Scorer.load(tmp_path / "k0", config=k0.replace(**over)).threshold == pytest.approx(0.25), over
    assert Scorer.load(tmp_path / "k0", lr_theta=0.0).threshold == pytest.approx(0.25)
    assert search_differences(k0.to_dict(), k0.replace(lr_z=0.1, score_fg_power=1.0)) == ["score_fg_power"]
    assert search_differences(k0.to_dict(), k0.replace(k=1, lr_z=0.1)) == ["k", "lr_z"]
    k2 = SearchConfig(k=2, n_seed=2)
    export_model(tiny_generator, tmp_path / "k2", search=k2, parity=False, unrolled=False,
                 threshold={"value": 0.5, "search": k2.to_dict()}, log=lambda *_: None)
    assert Scorer.load(tmp_path / "k2").threshold == pytest.approx(0.5)
    assert Scorer.load(tmp_path / "k2", lr_theta=0.0).threshold is None          # docs/scoring-configurations.md: the fast option
    assert Scorer.load(tmp_path / "k2", config=k2.replace(lr_z=0.1)).threshold is None


def test_an_export_without_a_threshold_says_how_to_get_one(tmp_path, tiny_generator):
    """Audit 27 #18: a user with normal frames only (no eval threshold) exported a model without a threshold and
    heard nothing until edge-ad run flagged nothing; edge-ad export now names both ways to one (eval with
    anomalous frames, or calibrate on held-out normal frames), and says nothing of it when the model has one."""
    import torch
    from click.testing import CliRunner

    from edge_ad.cli import main
    torch.save(tiny_generator.state_dict(), tmp_path / "g.pt")
    out = tmp_path / "m"
    r = CliRunner().invoke(main, ["export", str(tmp_path / "g.pt"), "--out", str(out), "--no-parity", "--k", "0"])
    assert r.exit_code == 0, r.output
    assert (f"{out} has no threshold (edge-ad run flags no frame until it has one): with anomalous frames too, "
            "edge-ad eval writes threshold.json for --threshold-file; with normal frames only, edge-ad calibrate "
            f"--model {out} --source HELD_OUT_NORMAL_FRAMES --out {out}-cal sets one") in r.output, r.output
    r = CliRunner().invoke(main, ["export", str(tmp_path / "g.pt"), "--out", str(tmp_path / "m2"), "--no-parity",
                                  "--k", "0", "--threshold", "0.5"])
    assert r.exit_code == 0 and "has no threshold" not in r.output, r.output
