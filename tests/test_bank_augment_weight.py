"""SearchConfig.bank_augment_weight (issue 12): the latent distance is min(nearest ORIGINAL bank row,
w * nearest AUGMENTED row), the rows told apart by the bank's frame-major layout (config.original_rows),
through LatentMemory, the Scorer (manifest latent_bank["augment"]), the PyTorch reference (checkpoint
latent_bank_info["augment"]) and edge-ad calibrate; w = 1.0 is the plain memory, bit for bit."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edge_ad.runtime.config import SearchConfig, search_differences
from edge_ad.runtime.latent_memory import (LatentMemory, latent_memory, original_rows, rows_per_frame_of,
                                           trusted_original_rows)

from conftest import edit_manifest

CFG = SearchConfig(name="w-test", n_seed=1, k=0, lr_theta=0.0, z_init="encoder", score_latent_power=1.0)
RTOL_TORCH = 1e-4     # onnxruntime float32 vs the float64 PyTorch reference (the export's tolerance)


def _plain_nearest(e, bank, metric):
    """The memory before the weight existed, written out: float64, min over every row alike."""
    e, bank = np.asarray(e, np.float64), np.asarray(bank, np.float64)
    if metric == "cosine":
        e = e / np.linalg.norm(e)
        bank = bank / np.linalg.norm(bank, axis=1, keepdims=True)
        return float(max(((bank - e) ** 2).sum(1).min(), 0.0))
    return float(((bank - e) ** 2).mean(1).min())


def test_config_field_validated_and_mask_layout():
    assert SearchConfig().bank_augment_weight == 1.0
    assert CFG.replace(bank_augment_weight=2).bank_augment_weight == 2.0                  # stored as a float
    assert isinstance(CFG.replace(bank_augment_weight=np.float32(1.5)).to_dict()["bank_augment_weight"], float)
    for bad in (0.5, 0.0, -1.0, float("nan"), float("inf"), True, "2"):
        with pytest.raises(ValueError, match="bank_augment_weight"):
            CFG.replace(bank_augment_weight=bad)
    np.testing.assert_array_equal(original_rows(6, 3), [True, False, False, True, False, False])
    assert original_rows(4, 1).all() and rows_per_frame_of(None) == 1 and rows_per_frame_of(["mirror"]) == 2
    with pytest.raises(ValueError, match=r"latent bank of 10 rows cannot hold 3 rows per normal frame.*not a positive multiple"):
        original_rows(10, 3)
    with pytest.raises(ValueError, match="rows_per_frame"):
        original_rows(10, 0)
    with pytest.raises(ValueError, match="list of nuisance texts"):
        rows_per_frame_of("mirror")
    bank = np.eye(10, 4)
    with pytest.raises(ValueError, match="10 rows cannot hold 3"):
        latent_memory(bank, CFG, 3)
    with pytest.raises(ValueError, match="layout"):                 # a weight without the layout is refused
        latent_memory(bank, CFG.replace(bank_augment_weight=2.0))
    with pytest.raises(ValueError, match="'original' mask"):
        LatentMemory(bank, "l2", augment_weight=2.0)
    with pytest.raises(ValueError, match=r"bool mask \(10,\)"):
        LatentMemory(bank, "l2", original=np.ones(9, bool), augment_weight=2.0)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_weight_one_is_the_plain_memory_bit_for_bit(metric):
    rng = np.random.default_rng(0)
    bank = rng.standard_normal((300, 16)).astype(np.float32)                       # 100 frames x 3 rows
    E = np.concatenate([rng.standard_normal((8, 16)), bank[1:3] + 1e-3])
    want = [_plain_nearest(e, bank, metric) for e in E]
    cfg = CFG.replace(latent_metric=metric)
    for mem in (LatentMemory(bank, metric), latent_memory(bank, cfg), latent_memory(bank, cfg, 3)):
        assert [mem.distance(e) for e in E] == want                                 # exactly
        np.testing.assert_array_equal(mem.distances(E), want)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_augmented_row_nearest_is_weighted_original_nearest_unchanged(metric):
    """Two frames, each with one augmented copy (rows_per_frame 2). A latent nearest an augmented row gets
    w times that distance (or the nearest original row's when that is smaller); one nearest an original
    row keeps its distance. distances() (the GEMM path) agrees row by row."""
    bank = np.array([[4.0, 0, 0], [0, 4, 0],        # frame 0 (original), its copy
                     [0, 0, 4], [4, 4, 0]])         # frame 1 (original), its copy
    d = lambda e, rows: _plain_nearest(e, bank[rows], metric)  # noqa: E731
    near_copy, near_orig = np.array([0.3, 4.0, 0.1]), np.array([4.0, 0.2, 0.3])
    assert d(near_copy, [1]) < d(near_copy, [0, 2, 3])                 # an augmented row is the nearest
    assert d(near_orig, [0]) < d(near_orig, [1, 2, 3])                 # an original row is the nearest
    for w in (1.5, 2.0, 400.0):                                       # at 400 the original wins
        mem = latent_memory(bank, CFG.replace(latent_metric=metric, bank_augment_weight=w), 2)
        want = min(w * d(near_copy, [1, 3]), d(near_copy, [0, 2]))
        assert mem.distance(near_copy) == pytest.approx(want, rel=1e-12)
        assert mem.distance(near_orig) == pytest.approx(d(near_orig, [0]), rel=1e-12)
        np.testing.assert_array_equal(mem.distances(np.stack([near_copy, near_orig])),
                                      [mem.distance(near_copy), mem.distance(near_orig)])
    assert latent_memory(bank, CFG.replace(latent_metric=metric, bank_augment_weight=2.0), 2).distance(near_copy) \
        == pytest.approx(2 * d(near_copy, [1]), rel=1e-12)               # w = 2: still the copy, doubled


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_batch_distances_equal_distance_with_the_weight(metric):
    """The GEMM's candidates must be chosen on the WEIGHTED distances: latents just beside an augmented row
    whose original neighbour wins once weighted, near-duplicate rows across the two kinds, bank rows."""
    rng = np.random.default_rng(5)
    A = 4
    bank = rng.standard_normal((400, 16))
    bank[1] = bank[0] + 1e-9 * rng.standard_normal(16)                  # a copy almost on its original
    E = [rng.standard_normal((20, 16)), bank[:6], bank[1:2] + 1e-10]
    for i in (5, 9, 13):                                                 # augmented row i, original 4 beside it
        t = rng.standard_normal(16)
        bank[i] = t + 0.01 * rng.standard_normal(16)
        bank[i - i % A] = t + 0.012 * rng.standard_normal(16)
        E.append(t[None])
    E = np.concatenate(E)
    for w in (1.0, 1.3, 2.0):
        mem = latent_memory(bank, CFG.replace(latent_metric=metric, bank_augment_weight=w), A)
        got = mem.distances(E)
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got, [mem.distance(e) for e in E])
    plain = latent_memory(bank, CFG.replace(latent_metric=metric), A).distances(E[-3:])
    assert (got[-3:] < 2.0 * plain).any()                # the original neighbour won for some: not just 2x


def test_held_out_scores_weigh_the_augmented_rows_of_both_banks():
    """edge-ad calibrate's held-out scores: the original bank and the other blocks' scene rows keep the
    frame-major layout (A rows per frame), so the copies of both are weighed and the originals are not."""
    from edge_ad.runtime.calibrate import held_out_scores
    cfg = CFG.replace(latent_metric="l2", bank_augment_weight=3.0)
    e = np.eye(4)
    lat = np.stack([np.stack([e[0], e[1]]), np.stack([e[2], e[0] + 0.2]), np.stack([e[3], e[3]])])  # (3, 2, 4)
    original = np.stack([e[3] + 0.3, e[1] + 0.4])                       # one training frame + its copy
    s = held_out_scores(np.ones(3), lat, original, cfg, blocks=3)       # leave one out
    # (l2 = mean over the 4 dims; "+ 0.2" adds to every dim)
    # frame 0 (e0): frame 1's COPY e0 + .2 at 0.04 (x3 = 0.12) vs originals e2, e3 at 0.5, the bank's 0.59 -> 0.12
    # frame 1 (e2): originals e0, e3 at 0.5, the bank's original e3 + .3 at 0.59; copies e1 0.5 x3 -> 0.5
    # frame 2 (e3): the bank's ORIGINAL row e3 + .3 at 0.09, not weighed
    np.testing.assert_allclose(s, [3 * 0.04, 0.5, 0.09], rtol=1e-12)
    np.testing.assert_allclose(held_out_scores(np.ones(3), lat, original, cfg.replace(bank_augment_weight=1.0),
                                               blocks=3), [0.04, 0.5, 0.09], rtol=1e-12)


torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def rectangle():
    from conftest import REPO
    from edge_ad.models.checkpoint import load_generator
    from edge_ad.models.search import checkpoint_bank_rows_per_frame, checkpoint_encoder, checkpoint_latent_bank
    path = REPO / "models" / "kinect-rgbd" / "rectangle.pt"
    return (path, load_generator(path), checkpoint_encoder(path), checkpoint_latent_bank(path),
            checkpoint_bank_rows_per_frame(path))


def test_scorer_with_the_weight_equals_the_torch_reference(kinect_export, val_frame, rectangle):
    """The shipped rectangle model (62 augmentations: 63 rows per train frame, the eighteenth pass) exported, scored
    by the runtime with bank_augment_weight 2 (onnxruntime CPU, single frames and score_batch) against the
    float64 PyTorch reference (models.search.search_min_shift) and models' score_batch (float32), on real
    frames of the three classes: relative tolerance RTOL_TORCH; the weight changes some latent distances. The
    configuration trusts no augmentation (whatever the release trusts: test_bank_trusted_augment), so every
    copy is weighed and the bank's rows per frame are its whole layout."""
    from edge_ad.models.search import checkpoint_pixel_memory, score_batch

    from conftest import runtime_matches_reference
    path, G, E, bank, rows = rectangle
    man = json.loads((kinect_export / "manifest.json").read_text())
    assert rows == rows_per_frame_of(man["latent_bank"]["augment"]) == 63 and len(bank) % rows == 0
    # the release's own weight may be either; its trusted copies, if any, cleared: every copy weighs w
    # and its shift-min off: one copy per frame, so the bounds below compare each frame's own encoding
    # (with the shift-min the winning copy may differ between w = 1 and w = 2; its parity: test_shift_min)
    shipped = SearchConfig.from_dict(man["search"]).replace(bank_trusted_augment=(), score_shift_radius=0)
    cfg = shipped.replace(bank_augment_weight=2.0)
    frames = [val_frame(c, i) for c in ("rectangle", "cylinder", "sphere") for i in (0, 1)]
    pixels = checkpoint_pixel_memory(path)        # the release's pixel memory (None for a file without one)
    got, before, X = runtime_matches_reference(kinect_export, cfg, shipped.replace(bank_augment_weight=1.0), frames,
                                               G, E, bank, rows, RTOL_TORCH, pixels=pixels)
    for g, b in zip(got, before):
        assert b.latent_distance <= g.latent_distance <= 2 * b.latent_distance * (1 + 1e-12)
    assert any(g.latent_distance > b.latent_distance * 1.01 for g, b in zip(got, before))   # the weight acted
    with pytest.raises(ValueError, match="layout"):
        score_batch(G, X[:1], cfg, encoder=E, latent_bank=bank, pixel_memory=pixels)


def test_old_manifest_without_the_field_loads_as_one_and_thresholds_follow_the_weight(kinect_export, tmp_path,
                                                                                        val_frames):
    from edge_ad.runtime.manifest import ManifestError
    from edge_ad.runtime.scorer import Scorer

    def drop(man):
        assert "bank_augment_weight" in man["search"]                  # exports record the field
        del man["search"]["bank_augment_weight"]
        man["threshold"]["search"].pop("bank_augment_weight", None)
    old = edit_manifest(kinect_export, tmp_path / "old", drop)
    shipped = SearchConfig.from_dict(json.loads((kinect_export / "manifest.json").read_text())["search"])
    s = Scorer.load(old, threads=1)
    new = Scorer.load(kinect_export, threads=1, config=shipped.replace(bank_augment_weight=1.0))
    thr = json.loads((old / "manifest.json").read_text())["threshold"]["value"]
    assert s.config.bank_augment_weight == 1.0 and s.threshold == thr     # no field: w = 1, its threshold kept
    rgb, depth = val_frames(1)[0]
    assert s.score(rgb, depth, seed=1).score == new.score(rgb, depth, seed=1).score
    # a threshold calibrated at another weight is not this score's (search_differences, as other settings)
    w2 = s.config.replace(bank_augment_weight=2.0)
    assert search_differences(json.loads((old / "manifest.json").read_text())["threshold"]["search"], w2) \
        == ["bank_augment_weight"]
    assert Scorer.load(old, threads=1, config=w2).threshold is None
    # a bank whose rows are not whole frames of its augment recipe is refused, naming the counts
    bad = edit_manifest(kinect_export, tmp_path / "bad", lambda m: m["latent_bank"]["augment"].append("mirror"))
    with pytest.raises(ManifestError, match=r"latent_bank\.augment .*18900 rows cannot hold 64 rows per normal frame"):
        Scorer.load(bad)


def test_calibrated_directory_scores_with_the_weight(kinect_export_r0, tmp_path, val_frame):
    """A model whose configuration weighs the copies (w = 2), calibrated on 20 unseen rectangle frames: the
    new bank is the original then 63 rows per scene frame, and the calibrated directory loads with w = 2,
    its threshold calibrated at w = 2, and scores a new frame's latent distance as min(nearest original
    or trusted row, 2 x nearest other copy) over that whole bank (computed here from latent_bank.npy)."""
    from edge_ad.runtime.calibrate import calibrate_model
    from edge_ad.runtime.preprocess import preprocess
    from edge_ad.runtime.scorer import Scorer
    from edge_ad.runtime.sources import open_source
    from conftest import copy_frames

    def weigh(man):
        man["search"]["bank_augment_weight"] = 2.0
        man["threshold"]["search"]["bank_augment_weight"] = 2.0      # as if released at w = 2
    w2 = edit_manifest(kinect_export_r0, tmp_path / "w2", weigh)
    scene = copy_frames(tmp_path / "scene", "rectangle", 20, start=50, split="val")     # val, not train frames
    with open_source(str(scene)) as src:
        man = calibrate_model(w2, src, tmp_path / "cal", fpr=0.1, min_frames=20, threads=1)
    A = rows_per_frame_of(man["latent_bank"]["augment"])
    bank = np.load(tmp_path / "cal" / "latent_bank.npy").astype(np.float64)
    assert A == 63 and bank.shape[0] == 18900 + 20 * A
    assert man["search"]["bank_augment_weight"] == 2.0 and man["threshold"]["search"]["bank_augment_weight"] == 2.0
    s = Scorer.load(tmp_path / "cal", threads=1)
    assert s.config.bank_augment_weight == 2.0 and s.threshold == pytest.approx(man["threshold"]["value"])
    unit = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    # the release's trusted copies (the brightened ones, since the twelfth pass the 2-px shift grid, since the
    # fifteenth its brightened copies) count as original
    orig = trusted_original_rows(len(bank), man["latent_bank"]["augment"], s.config.bank_trusted_augment)
    weighed = 0
    for c, i in (("rectangle", 0), ("rectangle", 1), ("cylinder", 0), ("sphere", 0)):
        f = val_frame(c, i)
        e = s.encode(preprocess(f["rgb"], f["depth"], s.preprocess_spec)).astype(np.float64)
        d = ((unit - e / np.linalg.norm(e)) ** 2).sum(1)                 # (N,) cosine distances
        want = min(d[orig].min(), 2.0 * d[~orig].min())
        assert s.score(f["rgb"], f["depth"], seed=0).latent_distance == pytest.approx(want, rel=1e-9)
        weighed += want > d.min() * 1.01
    assert weighed >= 1                                                  # the weight acted on some frame


def test_cli_eval_and_export_carry_the_weight(tmp_path, kinect_root):
    """edge-ad eval --bank-augment-weight 2 scores with the weighted memory (each frame >= its w = 1 score,
    at most w ** score_latent_power x, some higher; without the shift-min, so each frame's own encoding is weighed; report.json and threshold.json record w); edge-ad export --bank-augment-weight 3
    (not the checkpoint's own w) writes w into the manifest, passes its parity check against the weighted
    float64 reference and leaves the checkpoint's threshold (calibrated at its own w) behind; w < 1 is refused by both."""
    from click.testing import CliRunner

    from conftest import REPO
    from edge_ad.cli import main
    model = str(REPO / "models" / "kinect-rgbd" / "rectangle.pt")
    reports = {}
    for w in ("1", "2"):
        out = tmp_path / f"eval{w}"
        res = CliRunner().invoke(main, ["eval", "--model", model, "--data", str(kinect_root), "--class", "rectangle",
                                        "--max-per-class", "4", "--no-baselines", "--out", str(out),
                                        "--bank-augment-weight", w, "--shift-radius", "0"])
        assert res.exit_code == 0, res.output
        reports[w] = json.loads((out / "report.json").read_text())
        assert reports[w]["search"]["bank_augment_weight"] == float(w)
        assert json.loads((out / "threshold.json").read_text())["search"]["bank_augment_weight"] == float(w)
    s1, s2 = (np.concatenate([reports[w]["scores"][k] for k in sorted(reports[w]["scores"])]) for w in ("1", "2"))
    top = 2.0 ** reports["2"]["search"]["score_latent_power"]          # the score carries w ** p at most (p = 2 since the tenth pass)
    assert np.all(s2 >= s1 * (1 - 1e-6)) and np.all(s2 <= top * s1 * (1 + 1e-6)) and np.any(s2 > 1.01 * s1)
    # a weight other than the checkpoint's own (the release's threshold belongs to that one)
    res = CliRunner().invoke(main, ["export", model, "--out", str(tmp_path / "exp"), "--bank-augment-weight", "3"])
    assert res.exit_code == 0, res.output
    man = json.loads((tmp_path / "exp" / "manifest.json").read_text())
    assert man["search"]["bank_augment_weight"] == 3.0 and "threshold" not in man and man["parity"]["passed"]
    assert all(r["latent_distance"]["rel_diff"] <= 1e-4 for r in man["parity"]["frames"])
    for cmd in (["eval", "--model", model, "--synth", "4", "--out", str(tmp_path / "bad")],
                ["export", model, "--out", str(tmp_path / "bad2"), "--no-parity"]):
        bad = CliRunner().invoke(main, cmd + ["--bank-augment-weight", "0.5"])
        assert bad.exit_code != 0 and ("bank_augment_weight" in bad.output or "0.5" in bad.output), bad.output


def test_weight_refused_for_a_bank_without_augmented_rows(kinect_export, tmp_path):
    """bank_augment_weight != 1 with 1 row per normal frame (no augment recorded) would do nothing: refused
    with an error naming it, by latent_memory (the reference), Scorer.load and the exporter; w = 1 loads."""
    from edge_ad.export.errors import ExportError
    from edge_ad.export.exporter import resolve_latent_bank
    from edge_ad.runtime.manifest import ManifestError
    from edge_ad.runtime.scorer import Scorer
    bank = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    w2 = SearchConfig(k=0, n_seed=1, z_init="encoder", score_latent_power=0.5, bank_augment_weight=2.0)
    with pytest.raises(ValueError, match=r"bank_augment_weight=2\.0 .* this bank has none"):
        latent_memory(bank, w2, 1)
    latent_memory(bank, w2.replace(bank_augment_weight=1.0), 1)
    latent_memory(bank, w2, 2)
    with pytest.raises(ExportError, match=r"bank_augment_weight=2\.0 .* this bank has none"):
        resolve_latent_bank(w2, bank=bank, z_dim=8)
    assert resolve_latent_bank(w2, bank=bank, scoring={"latent_bank_info": {"augment": ["mirror"]}},
                               z_dim=8) is not None

    def plain_bank(man):          # as if the bank held only the normal frames (18900 rows, 1 per frame)
        man["latent_bank"]["augment"] = []
    d = edit_manifest(kinect_export, tmp_path / "plain", plain_bank)
    # the release's trusted texts, if any, cleared: a bank without copies has none to trust (refused apart:
    # test_bank_trusted_augment), so the weight is what is refused here
    cfg = SearchConfig.from_dict(json.loads((d / "manifest.json").read_text())["search"]).replace(
        bank_trusted_augment=())
    with pytest.raises(ManifestError, match=r"latent_bank\.npy: bank_augment_weight=2\.0 .* this bank has none"):
        Scorer.load(d, threads=1, config=cfg.replace(bank_augment_weight=2.0))
    assert Scorer.load(d, threads=1, config=cfg.replace(bank_augment_weight=1.0)).config.bank_augment_weight == 1.0
