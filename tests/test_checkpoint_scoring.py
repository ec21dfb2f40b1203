"""One reader of a checkpoint's ``scoring`` section (models.checkpoint.CheckpointScoring) and one rule
(``resolve_scoring``) for ``edge-ad eval`` and ``edge-ad export``: an invalid section is the same clear
one-line error everywhere, and a checkpoint resolves to the same configuration in both commands."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from click.testing import CliRunner  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "models" / "demo" / "demo.pt"
INVALID = "the checkpoint's scoring configuration is invalid"


@pytest.fixture(scope="module")
def bad_checkpoint(tmp_path_factory) -> Path:
    """The demo checkpoint with an unknown latent metric in scoring["search"] (review 17 #1's bad.pt)."""
    ck = torch.load(DEMO, map_location="cpu", weights_only=True)
    ck["scoring"]["search"]["latent_metric"] = "manhattan"
    path = tmp_path_factory.mktemp("bad") / "bad.pt"
    torch.save(ck, path)
    return path


def _error_line(res) -> str:
    assert res.exit_code == 1, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception   # no traceback
    lines = [ln for ln in res.output.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1, res.output
    return lines[0]


def test_an_invalid_scoring_section_is_one_clear_error_in_export_and_eval(bad_checkpoint, tmp_path):
    """Before: ``export`` refused it, ``export --n-seed 1`` silently exported the reference configuration
    with n_seed 1, ``eval`` crashed with a ValueError traceback."""
    from edge_ad.commands.evaluate import cmd as eval_cmd
    from edge_ad.commands.export import cmd as export_cmd
    runs = {
        "export": CliRunner().invoke(export_cmd, [str(bad_checkpoint), "--out", str(tmp_path / "o1"), "--no-parity"]),
        "export --n-seed 1": CliRunner().invoke(export_cmd, [str(bad_checkpoint), "--out", str(tmp_path / "o2"),
                                                             "--no-parity", "--n-seed", "1"]),
        "eval": CliRunner().invoke(eval_cmd, ["--model", str(bad_checkpoint), "--synth", "4",
                                              "--out", str(tmp_path / "e")]),
    }
    lines = {name: _error_line(res) for name, res in runs.items()}
    assert len(set(lines.values())) == 1, lines
    line = lines["eval"]
    assert str(bad_checkpoint) in line and INVALID in line and "manhattan" in line, line
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def _top_level_checkpoint(path: Path, tiny_generator) -> Path:
    """An older checkpoint layout: SearchConfig fields at the top level of ``scoring`` (no "search")."""
    from edge_ad.models.checkpoint import save_checkpoint
    from edge_ad.runtime.preprocess import PreprocessSpec
    save_checkpoint(path, tiny_generator, preprocess=PreprocessSpec(),
                    scoring={"name": "old-layout", "n_seed": 2, "k": 1, "lr_theta": 0.0})
    return path


def test_top_level_scoring_fields_resolve_alike_in_eval_and_export(tmp_path, tiny_generator):
    """eval used to read only scoring["search"] (reference configuration here), export also the top level."""
    from edge_ad.commands.evaluate import cmd as eval_cmd
    from edge_ad.commands.export import cmd as export_cmd
    ck = _top_level_checkpoint(tmp_path / "old.pt", tiny_generator)
    res = CliRunner().invoke(eval_cmd, ["--model", str(ck), "--synth", "12", "--out", str(tmp_path / "e"),
                                        "--no-baselines"])
    assert res.exit_code == 0, res.output
    res2 = CliRunner().invoke(export_cmd, [str(ck), "--out", str(tmp_path / "m"), "--no-parity", "--target", "cpu"])
    assert res2.exit_code == 0, res2.output
    evaluated = json.loads((tmp_path / "e" / "report.json").read_text())["search"]
    exported = json.loads((tmp_path / "m" / "manifest.json").read_text())["search"]
    assert evaluated == exported
    assert (exported["name"], exported["n_seed"], exported["k"], exported["lr_theta"]) == ("old-layout", 2, 1, 0.0)
    from edge_ad.models.checkpoint import resolve_scoring
    assert resolve_scoring(ck)[0].to_dict() == exported


def test_eval_reads_the_checkpoint_twice_not_once_per_entry(tmp_path, monkeypatch):
    """The demo checkpoint carries a configuration, an encoder and a latent bank: eval loads the file once
    for the generator and once for its scoring section (it read it 6 times: every entry, and the generator
    twice)."""
    from edge_ad.commands.evaluate import cmd as eval_cmd
    from edge_ad.models import checkpoint
    reads = []
    real = checkpoint._torch_load

    def counting(path):
        reads.append(Path(path).name)
        return real(path)
    monkeypatch.setattr(checkpoint, "_torch_load", counting)
    res = CliRunner().invoke(eval_cmd, ["--model", str(DEMO), "--synth", "12", "--out", str(tmp_path / "e")])
    assert res.exit_code == 0, res.output
    assert reads == ["demo.pt", "demo.pt"], reads


def test_the_reader_checks_each_entry(tmp_path, tiny_generator):
    """Threshold kept only for its own configuration and preprocessing; malformed entries are
    CheckpointError naming the file and the entry."""
    from edge_ad.models.checkpoint import CheckpointScoring, save_checkpoint
    from edge_ad.models.checkpoint_errors import CheckpointError
    from edge_ad.runtime.config import SearchConfig
    from edge_ad.runtime.preprocess import PreprocessSpec, plain_spec
    cfg = SearchConfig(name="t", k=1)
    own = PreprocessSpec(align="centroid")                       # a scoring lever: plain_spec(own) differs
    thr = {"value": 0.5, "target_fpr": 0.05, "search": cfg.to_dict()}
    path = tmp_path / "t.pt"
    save_checkpoint(path, tiny_generator, preprocess=own,
                    scoring={"search": cfg.to_dict(), "threshold": thr,
                             "latent_bank_info": {"augment": ["mirror"]}})
    sc = CheckpointScoring.read(path)
    assert sc.search_config() == cfg and sc.preprocess == own
    assert sc.threshold(cfg, own) == thr and sc.threshold(cfg.replace(k=2), own) is None
    assert sc.threshold(cfg, plain_spec(own)) is None and sc.threshold(cfg) == thr
    assert sc.bank_augment() == ["mirror"] and sc.bank_rows_per_frame() == 2
    assert sc.encoder() is None and sc.latent_bank() is None
    for bad, entry in [({"threshold": {"value": float("nan")}}, "threshold"),
                       ({"latent_bank_info": {"augment": "mirror"}}, "latent_bank_info"),
                       ({"latent_bank": torch.zeros(0, 3)}, "latent_bank"),
                       ({"encoder": {"config": {}}}, "encoder"),
                       ({"search": "fast"}, "scoring configuration is invalid")]:
        save_checkpoint(path, tiny_generator, preprocess=own, scoring=bad)
        sc = CheckpointScoring.read(path)
        with pytest.raises(CheckpointError, match=entry) as e:
            sc.threshold(cfg), sc.bank_augment(), sc.latent_bank(), sc.encoder(), sc.search_config()
        assert str(path) in str(e.value)


def _resealed(path: Path, tiny_generator, edit) -> Path:
    """tiny_generator's checkpoint (a threshold at 5 %) with ``edit`` applied to its dict, then re-sealed with its
    own content digest: a file consistent with itself whose fields lie (audit 33 #3's pt_tamper.py)."""
    from edge_ad.models.checkpoint import read_checkpoint, save_checkpoint, with_integrity
    from edge_ad.runtime.config import SearchConfig
    from edge_ad.runtime.preprocess import PreprocessSpec
    cfg = SearchConfig(name="t", k=1)
    save_checkpoint(path, tiny_generator, preprocess=PreprocessSpec(),
                    scoring={"search": cfg.to_dict(), "threshold": {"value": 0.5, "target_fpr": 0.05,
                                                                    "search": cfg.to_dict()}})
    ck = read_checkpoint(path)
    edit(ck)
    torch.save(with_integrity(ck), path)
    return path


@pytest.mark.parametrize("case, edit, says", [
    ("preprocess_32", lambda c: c["preprocess"].__setitem__("resolution", 32),
     "preprocess.resolution 32 differs from config.resolution 64 (the generator's)"),
    ("config_32", lambda c: c["config"].__setitem__("resolution", 32),
     "config.resolution 32: only 64x64 DCGANs are supported"),
    ("fpr_2", lambda c: c["scoring"]["threshold"].__setitem__("target_fpr", 2.0),
     "scoring['threshold']['target_fpr'] must be a false-alarm rate in (0, 1), got 2.0"),
    ("fpr_0", lambda c: c["scoring"]["threshold"].__setitem__("target_fpr", 0),
     "scoring['threshold']['target_fpr'] must be a false-alarm rate in (0, 1), got 0"),
    ("fpr_nan", lambda c: c["scoring"]["threshold"].__setitem__("target_fpr", float("nan")),
     "scoring['threshold']['target_fpr'] must be a false-alarm rate in (0, 1), got nan"),
    ("fpr_text", lambda c: c["scoring"]["threshold"].__setitem__("target_fpr", "0.05"),
     "scoring['threshold']['target_fpr'] must be a false-alarm rate in (0, 1), got '0.05'")])
def test_a_checkpoint_whose_fields_contradict_it_is_one_line_at_export(tmp_path, tiny_generator, case, edit, says):
    """Audit 33 #3: preprocess.resolution 32 on a 64 px generator exported (exit 0) a model that cannot load
    (with parity: a traceback in the pixel memory naming neither file nor field); config.resolution 32 was a
    ValueError traceback; threshold.target_fpr 2.0 was exported (the alarm-rate watch then said the model
    records no rate). Each is now exit 1, one line naming the checkpoint and the field, nothing written."""
    from edge_ad.commands.export import cmd as export_cmd
    ck = _resealed(tmp_path / f"{case}.pt", tiny_generator, edit)
    out = tmp_path / "out"
    line = _error_line(CliRunner().invoke(export_cmd, [str(ck), "--out", str(out), "--no-parity", "--target", "cpu"]))
    assert line == f"Error: {ck}: {says}" or line.startswith(f"Error: {ck}: {says}"), line
    assert not out.exists() and not list(tmp_path.glob("*out*")), list(tmp_path.iterdir())


def test_an_export_says_when_a_checkpoint_has_no_integrity_record(tmp_path, tiny_generator):
    """Audit 33 #12: the content digest is checked only when the record is there, so a checkpoint edited (here its
    threshold set to 1e-9: every frame flagged) with the record deleted exported without a word, as a file
    written before checkpoints carried one. Such a file still exports (older releases, the demo checkpoint), and
    the export says, in one line naming it, that its content could not be checked; a sealed one says nothing."""
    from edge_ad.commands.export import cmd as export_cmd
    from edge_ad.models.checkpoint import INTEGRITY, CheckpointScoring

    def unsealed(c):
        c["scoring"]["threshold"]["value"] = 1e-9
    edited = _resealed(tmp_path / "edited.pt", tiny_generator, unsealed)
    ck = torch.load(edited, map_location="cpu", weights_only=True)
    del ck[INTEGRITY]
    torch.save(ck, edited)
    sealed = _resealed(tmp_path / "sealed.pt", tiny_generator, lambda c: None)
    for path, out in ((edited, tmp_path / "m1"), (sealed, tmp_path / "m2")):
        res = CliRunner().invoke(export_cmd, [str(path), "--out", str(out), "--no-parity", "--target", "cpu"])
        assert res.exit_code == 0 and (out / "manifest.json").is_file(), res.output
        said = [ln for ln in res.output.splitlines() if "integrity record" in ln]
        assert said == ([f"warning: {edited} has no integrity record (written before checkpoints carried a content "
                         "digest, or the record was removed): its content cannot be checked"] if path == edited
                        else []), res.output
    assert (CheckpointScoring.read(edited).sealed, CheckpointScoring.read(sealed).sealed) == (False, True)


def test_the_exporter_leaves_a_stored_bank_to_the_reader_and_checks_a_given_one_alike():
    """review 17b #8: resolve_latent_bank no longer repeats CheckpointScoring.latent_bank's check of the
    stored bank; a bank given to the exporter goes through the same check (latent_bank_array)."""
    import numpy as np

    from edge_ad.export.errors import ExportError
    from edge_ad.export.exporter import resolve_latent_bank
    from edge_ad.models.checkpoint import CheckpointScoring
    from edge_ad.models.checkpoint_errors import CheckpointError
    from edge_ad.runtime.config import SearchConfig
    cfg = SearchConfig(k=0, n_seed=1, z_init="encoder", score_latent_power=0.5)
    good = np.ones((4, 8), np.float32)
    bad = good.copy()
    bad[2, 3] = np.nan
    stored = CheckpointScoring(section={"latent_bank": torch.from_numpy(bad)}, path="m.pt")
    with pytest.raises(CheckpointError, match=r"^m\.pt: scoring\['latent_bank'\] must be a finite non-empty"):
        resolve_latent_bank(cfg, scoring=stored, z_dim=8)
    for given in (bad, good[:0], good[0]):
        with pytest.raises(ExportError, match=r"^the given latent bank must be a finite non-empty \(N, z_dim\)"):
            resolve_latent_bank(cfg, bank=given, scoring=stored, z_dim=8)
    with pytest.raises(ExportError, match=r"z_dim=7\) array, got shape \(4, 8\)"):
        resolve_latent_bank(cfg, scoring={"latent_bank": torch.from_numpy(good)}, z_dim=7)
    got = resolve_latent_bank(cfg, bank=torch.from_numpy(good), scoring=stored, z_dim=8)   # the given one wins
    assert got.dtype == np.float32 and got.shape == (4, 8)


def test_a_checkpoint_whose_content_changed_is_refused(tmp_path):
    """save_checkpoint records the content digest; a weight byte changed after saving (PyTorch itself loads
    such a file without complaint), or a value edited, gives a CheckpointError naming the file; a file
    without the digest (older releases) loads as before. A pickled program gets our own message, not
    torch's advice to load it with weights_only=False."""
    import pickle
    import torch
    from edge_ad.models.checkpoint import INTEGRITY, content_sha256, read_checkpoint, save_checkpoint
    from edge_ad.models.checkpoint_errors import CheckpointError
    from edge_ad.models.dcgan import GanConfig, Generator
    from edge_ad.runtime.preprocess import PreprocessSpec
    path = tmp_path / "g.pt"
    save_checkpoint(path, Generator(GanConfig(z_dim=8, features_g=4)), preprocess=PreprocessSpec())
    ck = read_checkpoint(path)
    assert ck[INTEGRITY]["sha256"] == content_sha256(ck)
    bad = dict(ck, generator={k: v.clone() for k, v in ck["generator"].items()})
    name = next(iter(bad["generator"]))
    bad["generator"][name].view(-1)[0] += 1.0                    # one weight changed, digest kept
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="bad.pt has been modified or corrupted"):
        read_checkpoint(tmp_path / "bad.pt")
    torch.save(dict(ck, train={"epochs": 99}), tmp_path / "edited.pt")
    with pytest.raises(CheckpointError, match="modified or corrupted"):
        read_checkpoint(tmp_path / "edited.pt")
    old = {k: v for k, v in ck.items() if k != INTEGRITY}
    torch.save(old, tmp_path / "old.pt")
    assert read_checkpoint(tmp_path / "old.pt")["format"] == ck["format"]
    with open(tmp_path / "prog.pt", "wb") as f:
        pickle.dump({"a": {1, 2}}, f)
    with pytest.raises(CheckpointError, match="never runs code") as e:
        read_checkpoint(tmp_path / "prog.pt")
    assert "weights_only" not in str(e.value).replace("weights-only", "")


@pytest.mark.parametrize("cls", ["rectangle", "cylinder", "sphere"])
def test_the_shipped_checkpoints_carry_their_content_digest(cls):
    from edge_ad.models.checkpoint import INTEGRITY, read_checkpoint
    ck = read_checkpoint(REPO / "models" / "kinect-rgbd" / f"{cls}.pt")    # verified on reading
    assert len(ck[INTEGRITY]["sha256"]) == 64
