"""Named scoring configurations (issue 4) through export and the torch-free runtime: an izi encoder
exported as encoder.onnx (z0 = E(x) + z_init_sigma * make_z0), the foreground-normalised score, k = 0,
and the reference configuration left as it was. Tiny generator + tiny untrained encoder, real frames."""
from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from edge_ad.export.errors import ExportError  # noqa: E402
from edge_ad.export.exporter import export_model  # noqa: E402
from edge_ad.runtime.config import SearchConfig, make_z0  # noqa: E402
from edge_ad.runtime.manifest import ManifestError  # noqa: E402
from edge_ad.runtime.preprocess import PreprocessSpec, preprocess  # noqa: E402
from edge_ad.runtime.scorer import Scorer  # noqa: E402
from edge_ad.runtime.score_scale import foreground_fraction  # noqa: E402

QUIET = {"log": lambda *a: None}
REPO = Path(__file__).resolve().parents[1]
# an encoder configuration that exercises everything: weights learn, noise around E(x), fg power 1
CFG = SearchConfig(name="fg-izi-test", n_seed=2, k=3, lr_theta=6e-9, score_fg_power=1.0, fg_floor=0.01,
                   z_init="encoder", z_init_sigma=0.3)


@pytest.fixture(scope="module")
def tiny_encoder():
    """An untrained width-4 izi encoder (constructed directly; E(x) is a fixed non-trivial map)."""
    from edge_ad.models.encoder import Encoder, EncoderConfig
    torch.manual_seed(1)
    return Encoder(EncoderConfig(z_dim=100, width=4, channels=4)).eval()


@pytest.fixture(scope="module")
def frames(val_frame):
    return [dict(val_frame("rectangle"), label="normal"), dict(val_frame("sphere"), label="anomalous")]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_generator, tiny_encoder, frames):
    """A checkpoint in make_release.py's layout (scoring: name, search, encoder), exported with its
    own scoring configuration (no search= argument) and parity on two real frames."""
    from edge_ad.models.checkpoint import save_checkpoint
    from edge_ad.models.encoder import encoder_to_dict
    d = tmp_path_factory.mktemp("scoring")
    ck = d / "g.pt"
    save_checkpoint(ck, tiny_generator, preprocess=PreprocessSpec(),
                    scoring={"name": CFG.name, "search": CFG.to_dict(), "encoder": encoder_to_dict(tiny_encoder),
                             "encoder_train": None, "val": None})
    out = d / "model"
    man = export_model(ck, out, parity_frames=frames, **QUIET)
    return ck, out, man


def test_manifest_carries_the_configuration_and_the_encoder(exported):
    _, out, man = exported
    assert man["search"] == CFG.to_dict()            # the checkpoint's scoring["search"], not the reference
    g = man["graphs"]["encoder"]
    assert g["file"] == "encoder.onnx" and g["file"] in man["files"]
    assert [i["shape"] for i in g["inputs"]] == [[4, 64, 64]] and [o["shape"] for o in g["outputs"]] == [[100]]
    assert man["scoring_in_checkpoint"]["encoder"]["config"]["width"] == 4   # tensors summarised, JSON-safe
    p = man["parity"]
    assert p["passed"] is True and [r["label"] for r in p["frames"]] == ["normal", "anomalous"]
    for r in p["frames"]:
        assert r["z_init"] == "encoder"
        assert r["rel_diff"] <= 1e-4 and set(r["variants"]) == {"host-head", "fused-adam", "step"}, r
        assert max(v["rel_diff"] for v in r["z_only"]["variants"].values()) <= 1e-4, r
        assert r["fp64_graph_rel_diff"] <= 1e-9, r
        assert r["encoder_z0_max_abs_diff"] <= 1e-5 * max(1.0, r["encoder_z0_max_abs"]), r
        assert 0.0 < r["score_scale"] < 1.0          # fg-normalised: divided by the foreground share


def test_ort_score_matches_float64_reference_on_real_frames(exported, tiny_generator, tiny_encoder, frames):
    """Independent of the exporter's report: models.encoder.encoder_z0 for z0, models.search.search
    (batched) in float64, the score scaled by runtime.config.score_scale on the torch side."""
    from edge_ad.models.encoder import encoder_z0
    from edge_ad.models.search import search
    _, out, _ = exported
    from edge_ad.runtime.variants import host_head_runs_here
    scorer = Scorer.load(out, threads=1)                  # auto: host-head / fused-adam on the CPU
    stepper = Scorer.load(out, variant="step", threads=1)
    fused = Scorer.load(out, variant="fused-adam", threads=1)
    assert scorer.mode == ("host-head" if host_head_runs_here() else "fused-adam")
    assert stepper.mode == "step" and fused.mode == "fused-adam" and scorer.search == CFG
    scores = {}
    for fr in frames:
        x = preprocess(fr["rgb"], fr["depth"])
        z0 = encoder_z0(tiny_encoder, x[None], CFG, seeds=[7])[0]            # (n_seed, z_dim)
        ref = search(tiny_generator, x, CFG, z0=z0, dtype=torch.float64)
        got = scorer.score(fr["rgb"], fr["depth"], seed=7)
        np.testing.assert_allclose(got.z0, z0, rtol=1e-5, atol=1e-6)
        assert got.score_scale == pytest.approx(max(foreground_fraction(x), 0.01)) == ref.score_scale
        assert abs(got.score - ref.score) / ref.score <= 1e-4, (fr["id"], got.score, ref.score)
        np.testing.assert_allclose(got.seed_losses, ref.seed_losses, rtol=1e-4)
        # the scaling is applied (not the plain mean), and the other variants agree
        assert got.score == pytest.approx(got.seed_losses.mean() / got.score_scale, rel=1e-12)
        assert got.score > 1.5 * got.seed_losses.mean()
        for other in (stepper, fused):
            o = other.score(fr["rgb"], fr["depth"], seed=7)
            assert abs(o.score - ref.score) / ref.score <= 1e-4, other.mode
        scores[fr["label"]] = got.score
    assert scores["normal"] != pytest.approx(scores["anomalous"], rel=1e-3)
    # noise around E(x) follows the seed; an explicit z0 overrides the encoder
    fr = frames[0]
    a, b = scorer.score(fr["rgb"], fr["depth"], seed=7), scorer.score(fr["rgb"], fr["depth"], seed=8)
    assert not np.allclose(a.z0, b.z0) and a.score != b.score
    np.testing.assert_allclose(b.z0 - 0.3 * make_z0(2, 100, 8), a.z0 - 0.3 * make_z0(2, 100, 7),
                               atol=1e-5)                                             # the same E(x)
    z0 = make_z0(2, 100, 3)
    r = scorer.score(fr["rgb"], fr["depth"], z0=z0)
    np.testing.assert_array_equal(r.z0, z0)
    ref = search(tiny_generator, preprocess(fr["rgb"], fr["depth"]), CFG, z0=z0, dtype=torch.float64)
    assert abs(r.score - ref.score) / ref.score <= 1e-4


def test_tampered_or_missing_encoder_refused(exported, tmp_path, tiny_generator):
    _, out, _ = exported
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    data = bytearray((bad / "encoder.onnx").read_bytes())
    data[-10] ^= 0xFF                                 # flip a byte inside the weights
    (bad / "encoder.onnx").write_bytes(bytes(data))
    with pytest.raises(ManifestError, match=r"encoder\.onnx has been modified"):
        Scorer.load(bad)
    (bad / "encoder.onnx").unlink()
    with pytest.raises(ManifestError, match=r"encoder\.onnx listed in the manifest is missing"):
        Scorer.load(bad)
    # a configuration that needs an encoder, but the checkpoint / export has none
    with pytest.raises(ExportError, match="no encoder"):
        export_model(tiny_generator, tmp_path / "noenc", search=CFG, parity=False, **QUIET)
    plain = tmp_path / "plain"
    export_model(tiny_generator, plain, search=SearchConfig(k=2), parity=False, unrolled=False, **QUIET)
    with pytest.raises(ManifestError, match="no encoder graph"):
        Scorer.load(plain, config=CFG.replace(k=2, n_seed=3))


def test_k0_encoder_only_configuration(tmp_path, tiny_generator, tiny_encoder, frames):
    """k = 0 (the shipped rectangle.pt's kind): only final + encoder are exported and run (variant
    forward), score = final loss at E(x) / fg."""
    cfg = CFG.replace(k=0, n_seed=1, lr_theta=0.0, z_init_sigma=0.0)
    out = tmp_path / "k0"
    man = export_model(tiny_generator, out, search=cfg, encoder=tiny_encoder, parity_frames=frames, **QUIET)
    assert man["parity"]["passed"] is True and list(man["parity"]["variants"]) == ["forward"]
    # what runs: final + encoder for score(), their batch twins for score_batch(); no step graph
    assert set(man["graphs"]) == {"final", "encoder", "final_batch", "encoder_batch"}
    assert list(man["variants"]) == ["forward"]
    assert sorted(p.name for p in out.iterdir()) == ["encoder.onnx", "encoder_batch.onnx", "final.onnx",
                                                     "final_batch.onnx", "manifest.json", "weights.npz"]
    assert max(r["rel_diff"] for r in man["parity"]["frames"]) <= 1e-4
    s = Scorer.load(out, threads=1)
    assert s.mode == "forward" and s.search.k == 0 and set(s._search.sessions) == {"final"}   # no unused session
    fr = frames[1]
    x = preprocess(fr["rgb"], fr["depth"])
    got = s.score(fr["rgb"], fr["depth"], seed=0)
    with torch.no_grad():       # float64 copies (the fixtures are shared)
        e = copy.deepcopy(tiny_encoder).double()(torch.as_tensor(x, dtype=torch.float64)[None])
        recon = copy.deepcopy(tiny_generator).double()(e.reshape(1, -1, 1, 1))[0].numpy()
    ref = float(((recon - x) ** 2).mean()) / max(foreground_fraction(x), 0.01)
    assert abs(got.score - ref) / ref <= 1e-4
    np.testing.assert_array_equal(got.z, got.z0)      # no step ran
    assert got.timings["steps_s"] < 1e-3


def test_reference_configuration_unchanged(tmp_path, tiny_generator, frames):
    """Default search: no encoder graph, z0 = make_z0(seed), score = plain mean of the seed losses."""
    from edge_ad.models.search import search
    out = tmp_path / "ref"
    man = export_model(tiny_generator, out, search=SearchConfig(k=2), parity=False, unrolled=False, **QUIET)
    assert "encoder" not in man["graphs"] and man["search"]["z_init"] == "random"
    assert man["search"]["score_fg_power"] == 0.0
    s = Scorer.load(out, threads=1)
    fr = frames[1]
    r = s.score(fr["rgb"], fr["depth"], seed=5)
    np.testing.assert_array_equal(r.z0, make_z0(3, 100, 5))
    assert r.score_scale == 1.0 and r.score == float(r.seed_losses.mean())
    ref = search(tiny_generator, preprocess(fr["rgb"], fr["depth"]), SearchConfig(k=2), seed=5, dtype=torch.float64)
    assert abs(r.score - ref.score) / ref.score <= 1e-4


def test_export_command_keeps_the_checkpoint_configuration(exported, tmp_path):
    """`edge-ad export --k 0` overrides k only; z_init, sigma and the fg power come from the checkpoint."""
    from click.testing import CliRunner

    from edge_ad.commands.export import cmd
    ck, _, _ = exported
    res = CliRunner().invoke(cmd, [str(ck), "--out", str(tmp_path / "cli"), "--k", "0", "--no-parity"])
    assert res.exit_code == 0, res.output
    man = json.loads((tmp_path / "cli" / "manifest.json").read_text())
    # an override that changes the score renames the configuration (a name stands for one score)
    assert man["search"] == CFG.replace(k=0, name="fg-izi-test+k=0").to_dict()
    assert set(man["graphs"]) == {"final", "encoder", "final_batch", "encoder_batch"}   # k = 0: what runs


# a tuned checkpoint's preprocessing: colour normalisation and centroid alignment (as the shipped sphere)
TUNED_SPEC = PreprocessSpec(colour_norm="rgb", colour_reference=(0.6, 0.55, 0.5), align="centroid",
                            align_centre=(0.45, 0.5))


def tuned_checkpoint(path, tiny_generator, tiny_encoder):
    """A checkpoint with a named configuration (CFG), an encoder, a threshold for CFG and TUNED_SPEC."""
    from edge_ad.models.checkpoint import save_checkpoint
    from edge_ad.models.encoder import encoder_to_dict
    save_checkpoint(path, tiny_generator, preprocess=TUNED_SPEC,
                    scoring={"name": CFG.name, "search": CFG.to_dict(), "encoder": encoder_to_dict(tiny_encoder),
                             "encoder_train": None, "val": None,
                             "threshold": {"value": 0.01, "target_fpr": 0.05, "search": CFG.to_dict()}})
    return path


def test_export_scoring_reference_is_the_algorithm_on_plain_preprocessing(tmp_path, tiny_generator, tiny_encoder):
    """`edge-ad export CKPT --scoring reference` from a tuned checkpoint: the reference SearchConfig
    exactly (n_seed 3, k 19, lr_theta 6e-9, random z0, plain mean), plain preprocessing, no encoder,
    no threshold (it belongs to the checkpoint's configuration), parity checked on the full k = 19
    search (forward and backward graphs, float64 reference)."""
    from click.testing import CliRunner

    from edge_ad.commands.export import cmd
    from edge_ad.runtime.preprocess import plain_spec
    ck = tuned_checkpoint(tmp_path / "g.pt", tiny_generator, tiny_encoder)
    res = CliRunner().invoke(cmd, [str(ck), "--out", str(tmp_path / "ref"), "--scoring", "reference",
                                   "--threads", "1"])
    assert res.exit_code == 0, res.output
    man = json.loads((tmp_path / "ref" / "manifest.json").read_text())
    assert man["search"] == SearchConfig().to_dict() and man["search"]["name"] == "reference"
    assert man["preprocess"] == plain_spec(TUNED_SPEC).to_dict() == PreprocessSpec().to_dict()
    assert "threshold" not in man and "encoder" not in man["graphs"]
    p = man["parity"]
    assert p["passed"] is True and len(p["frames"]) == 2
    for r in p["frames"]:
        assert set(r["variants"]) == {"host-head", "fused-adam", "step"} and r["rel_diff"] <= 1e-4, r
    s = Scorer.load(tmp_path / "ref", threads=1)
    assert s.search == SearchConfig() and s.threshold is None and s.preprocess == PreprocessSpec()
    # overrides on top rename it; the checkpoint's own configuration keeps its name, spec and threshold
    res = CliRunner().invoke(cmd, [str(ck), "--out", str(tmp_path / "ref2"), "--scoring", "reference",
                                   "--k", "2", "--no-parity"])
    assert res.exit_code == 0, res.output
    man = json.loads((tmp_path / "ref2" / "manifest.json").read_text())
    assert man["search"] == SearchConfig(k=2, name="reference+k=2").to_dict()
    own = export_model(ck, tmp_path / "own", parity=False, **QUIET)
    assert own["search"] == CFG.to_dict() and own["preprocess"] == TUNED_SPEC.to_dict()
    assert own["threshold"]["value"] == 0.01


def test_export_drops_the_checkpoint_threshold_with_another_preprocessing(tmp_path, tiny_generator, tiny_encoder):
    """The checkpoint's threshold was calibrated on its own preprocessing: an export with the same
    search configuration but plain preprocessing gets none; a threshold.json recording another
    preprocessing is refused."""
    from edge_ad.runtime.preprocess import plain_spec
    ck = tuned_checkpoint(tmp_path / "g.pt", tiny_generator, tiny_encoder)
    man = export_model(ck, tmp_path / "a", parity=False, preprocess=plain_spec(TUNED_SPEC), **QUIET)
    assert man["search"] == CFG.to_dict() and "threshold" not in man
    thr = {"value": 0.02, "search": CFG.to_dict(), "preprocess": PreprocessSpec().to_dict()}
    with pytest.raises(ExportError, match="another preprocessing"):
        export_model(ck, tmp_path / "b", parity=False, threshold=thr, **QUIET)
    man = export_model(ck, tmp_path / "c", parity=False, threshold=thr, preprocess=PreprocessSpec(), **QUIET)
    assert man["threshold"]["value"] == 0.02


def test_shipped_checkpoint_exports_its_reference_configuration(tmp_path):
    """The shipped sphere.pt (rgb colour norm + centroid alignment, izi encoder, latent memory, fg
    power, bank weight) through the CLI with --scoring reference and the parity check on: every
    setting is the reference's (k lowered to 2 to keep CI fast; the name says so), plain preprocessing
    with the checkpoint's input contract, no threshold."""
    from click.testing import CliRunner

    from edge_ad.commands.export import cmd
    from edge_ad.models.checkpoint import load_generator
    from edge_ad.runtime.preprocess import plain_spec
    ck = REPO / "models" / "kinect-rgbd" / "sphere.pt"
    res = CliRunner().invoke(cmd, [str(ck), "--out", str(tmp_path / "ref"), "--scoring", "reference", "--k", "2",
                                   "--target", "cpu", "--threads", "1"])
    assert res.exit_code == 0, res.output
    man = json.loads((tmp_path / "ref" / "manifest.json").read_text())
    assert man["search"] == SearchConfig(k=2, name="reference+k=2").to_dict()
    shipped = load_generator(ck).preprocess
    assert shipped.colour_norm == "rgb" and shipped.align == "centroid"
    assert man["preprocess"] == plain_spec(shipped).to_dict()
    assert man["preprocess"]["colour_norm"] == "none" and man["preprocess"]["align"] == "none"
    assert "threshold" not in man and "encoder" not in man["graphs"]
    assert not any(f.startswith(("latent_bank", "encoder")) for f in man["files"]), man["files"]
    assert man["parity"]["passed"] is True and max(r["rel_diff"] for r in man["parity"]["frames"]) <= 1e-4


def test_gpu_check_scores_the_parity_frames_as_the_export_did(exported, kinect_root, tmp_path, monkeypatch):
    """jetson/gpu_check compares each backend with the manifest's float64 reference rows, so it must
    score each frame as the export did: an encoder configuration gets its z0 from encoder.onnx with
    the row's noise seed (it passed make_z0 as z0, skipping the encoder: the shipped rectangle export
    read a relative difference of 3.6 on the CPU), and the shift-min is off as in the rows (a
    score_shift_radius 2 copy of the model: the minimum over 25 shifts otherwise)."""
    from edge_ad.jetson.gpu_check import check
    _, out, man = exported
    shifted = tmp_path / "shifted"
    shutil.copytree(out, shifted)
    m = json.loads((shifted / "manifest.json").read_text())
    m["search"]["score_shift_radius"] = 2
    (shifted / "manifest.json").write_text(json.dumps(m))
    calls = []
    score_input = Scorer.score_input
    monkeypatch.setattr(Scorer, "score_input", lambda self, x, **kw: calls.append(kw) or score_input(self, x, **kw))
    for model in (out, shifted):
        calls.clear()
        rep = check(model, kinect_root, repeats=1, warmup=0, only=["onnxruntime-cpu"], log=lambda *a: None)
        cpu = rep["backends"]["onnxruntime-cpu"]
        assert cpu["ok"] and len(cpu["scores"]) == 2, cpu
        assert cpu["max_rel_diff"] <= 1e-4 and cpu.get("parity_ok") is True, (model.name, cpu["scores"])
        assert calls[:2] == [{"seed": r["z0_seed"]} for r in man["parity"]["frames"]], calls   # no z0: the encoder's
        assert "z0" not in calls[-1]                                                            # timed as run
