"""SearchConfig.bank_trusted_augment (issue 12): the copies of the named augmentations count as ORIGINAL rows of
the latent bank (factor 1, not bank_augment_weight), told apart by the bank's augment list (frame-major: per
frame the frame, then one row per text: latent_memory.trusted_original_rows), through LatentMemory, the Scorer
(manifest latent_bank["augment"]), the PyTorch reference (checkpoint latent_bank_info["augment"]), edge-ad
calibrate, eval and export. The default () is every configuration before the field, bit for bit."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from edge_ad.runtime.config import SearchConfig, search_differences, trusted_override
from edge_ad.runtime.latent_memory import LatentMemory, latent_memory, original_rows, trusted_original_rows

from conftest import edit_manifest

CFG = SearchConfig(name="t-test", n_seed=1, k=0, lr_theta=0.0, z_init="encoder", score_latent_power=1.0,
                   bank_augment_weight=2.0)
AUG = ["mirror", "shift:2,0", "brightness:1.2"]           # 4 rows per frame: frame, mirror, shift, bright
BRIGHT = ("brightness:1.2",)
RTOL_TORCH = 1e-4     # onnxruntime float32 vs the float64 PyTorch reference (the export's tolerance)


def _nearest(e, rows, metric):
    """Plain nearest-row distance, written out (float64, every row alike)."""
    e, rows = np.asarray(e, np.float64), np.asarray(rows, np.float64).reshape(-1, len(e))
    if metric == "cosine":
        e = e / np.linalg.norm(e)
        rows = rows / np.linalg.norm(rows, axis=1, keepdims=True)
        return float(max(((rows - e) ** 2).sum(1).min(), 0.0))
    return float(((rows - e) ** 2).mean(1).min())


def _by_hand(e, bank, A, trusted_cols, w, metric):
    """min over frames' own rows and trusted copies (column 0 and trusted_cols of each frame's A rows), w * min
    over the other copies: the definition, independent of LatentMemory's mask."""
    cols = np.arange(len(bank)) % A
    orig = (cols == 0) | np.isin(cols, list(trusted_cols))
    return min(_nearest(e, bank[orig], metric), w * _nearest(e, bank[~orig], metric) if (~orig).any() else np.inf)


def test_field_json_round_trip_validation_and_name():
    c = CFG.replace(bank_trusted_augment=["mirror", "brightness:1.2"])         # a JSON list, any order
    assert c.bank_trusted_augment == ("brightness:1.2", "mirror")              # a tuple, sorted
    d = json.loads(json.dumps(c.to_dict()))
    assert d["bank_trusted_augment"] == ["brightness:1.2", "mirror"]
    assert SearchConfig.from_dict(d) == c and SearchConfig.from_dict(dataclasses.asdict(c)) == c
    # none: not recorded, so every configuration's record (manifest, checkpoint, threshold) is as before the field
    assert SearchConfig().bank_trusted_augment == () and "bank_trusted_augment" not in SearchConfig().to_dict()
    assert SearchConfig.from_dict(CFG.to_dict()) == CFG
    for bad in ("brightness:1.2", ["mirror", "mirror"], [1], [""], [" mirror"], None, [None]):
        with pytest.raises(ValueError, match="bank_trusted_augment"):
            CFG.replace(bank_trusted_augment=bad) if bad is not None else SearchConfig(bank_trusted_augment=None)
    # a threshold calibrated without the field (an older dict) is this score's only while nothing is trusted
    old = {k: v for k, v in CFG.to_dict().items() if k != "bank_trusted_augment"}
    assert search_differences(old, CFG) == []
    assert search_differences(old, c) == ["bank_trusted_augment"]
    assert search_differences({**old, "bank_trusted_augment": ["mirror", "brightness:1.2"]}, c) == []
    assert search_differences({**old, "bank_trusted_augment": []}, CFG) == []
    # with w = 1 every row weighs 1: allowed, and trusted or not scores alike
    w1 = CFG.replace(bank_augment_weight=1.0)
    assert search_differences(w1.to_dict(), w1.replace(bank_trusted_augment=BRIGHT)) == []
    # a user's override renames the configuration (texts hold commas: [a;b])
    assert CFG.overridden(bank_trusted_augment=BRIGHT).name == "t-test+bank_trusted_augment=[brightness:1.2]"
    assert CFG.overridden(bank_trusted_augment=()).name == "t-test"
    assert trusted_override(()) is None and trusted_override(("none",)) == ()
    assert trusted_override(("wb:1.1,1,0.9", "mirror")) == ("wb:1.1,1,0.9", "mirror")
    with pytest.raises(ValueError, match="none"):
        trusted_override(("none", "mirror"))


def test_mask_marks_the_trusted_copies_of_every_frame_and_errors_name_the_texts():
    np.testing.assert_array_equal(trusted_original_rows(12, AUG, BRIGHT), [1, 0, 0, 1] * 3)
    np.testing.assert_array_equal(trusted_original_rows(8, AUG, ("mirror", "brightness:1.2")), [1, 1, 0, 1] * 2)
    np.testing.assert_array_equal(trusted_original_rows(8, AUG), original_rows(8, 4))
    bank = np.random.default_rng(0).standard_normal((8, 6))
    cfg = CFG.replace(bank_trusted_augment=BRIGHT)
    with pytest.raises(ValueError, match=r"\['brightness:1\.2'\] names augmentations .* \['mirror', 'shift:2,0'\]"):
        trusted_original_rows(6, AUG[:2], BRIGHT)
    with pytest.raises(ValueError, match=r"\['brightness:1\.2'\].*augment: \['mirror', 'shift:2,0', 'wb:1,1,1'\]"):
        latent_memory(bank, cfg, ["mirror", "shift:2,0", "wb:1,1,1"])
    for layout in (4, np.int64(4), None):            # rows per frame only: whose copies are which is unknown
        with pytest.raises(ValueError, match="augment list was not given"):
            latent_memory(bank, cfg, layout)
    with pytest.raises(ValueError, match=r"latent bank of 8 rows cannot hold 3 rows"):
        latent_memory(bank, cfg, AUG[:2])
    # w = 1: allowed, the plain memory bit for bit, its texts still checked
    w1 = cfg.replace(bank_augment_weight=1.0)
    E = np.random.default_rng(1).standard_normal((5, 6))
    np.testing.assert_array_equal(latent_memory(bank, w1, AUG).distances(E), LatentMemory(bank).distances(E))
    with pytest.raises(ValueError, match="names augmentations"):
        latent_memory(bank, w1, AUG[:1] + ["wb:1,1,1", "shift:2,0"])


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_a_trusted_copy_counts_as_original_an_untrusted_one_weighs_w(metric):
    """Two frames x 4 rows (frame, mirror, shift, bright), w = 2: a query equal to a bright copy is at ~0 when
    "brightness:1.2" is trusted; a query near it is at its plain distance when trusted and 2x that when not
    (nothing trusted, or only the mirror); the same for frame 1's copy (every frame's row, not only the
    first's); a query near a mirror copy stays 2x with the bright copies trusted."""
    rng = np.random.default_rng(3)
    bank = 5.0 * np.eye(8, 16) + 0.1 * rng.standard_normal((8, 16))   # 8 well separated rows
    trusted = latent_memory(bank, CFG.replace(latent_metric=metric, bank_trusted_augment=BRIGHT), AUG)
    untrusted = latent_memory(bank, CFG.replace(latent_metric=metric), AUG)
    mirror_only = latent_memory(bank, CFG.replace(latent_metric=metric, bank_trusted_augment=("mirror",)), AUG)
    for row in (3, 7):                                         # frame 0's and frame 1's bright copy
        assert trusted.distance(bank[row]) == pytest.approx(0.0, abs=1e-12)
        near = bank[row] + 0.05 * rng.standard_normal(16)
        d = _nearest(near, bank[row], metric)
        assert d < 0.5 * _nearest(near, np.delete(bank, row, 0), metric)   # that copy is by far the nearest row
        assert trusted.distance(near) == pytest.approx(d, rel=1e-12)
        assert untrusted.distance(near) == pytest.approx(2 * d, rel=1e-12)
        assert mirror_only.distance(near) == pytest.approx(2 * d, rel=1e-12)
        assert trusted.distance(near) == pytest.approx(_by_hand(near, bank, 4, [3], 2.0, metric), rel=1e-12)
    near_mirror = bank[5] + 0.05 * rng.standard_normal(16)                # frame 1's mirror copy
    assert trusted.distance(near_mirror) == pytest.approx(2 * _nearest(near_mirror, bank[5], metric), rel=1e-12)
    assert mirror_only.distance(near_mirror) == pytest.approx(_nearest(near_mirror, bank[5], metric), rel=1e-12)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_batch_distances_equal_distance_with_a_trusted_list(metric):
    """LatentMemory.distances (the GEMM's candidates) equals distance row by row with trusted copies: latents
    beside trusted and untrusted copies, near-duplicates across the kinds, bank rows; and both equal the
    definition written out."""
    rng = np.random.default_rng(7)
    aug = ["mirror", "brightness:0.8", "brightness:1.2", "wb:1.1,1,0.9"]          # A = 5
    A = 1 + len(aug)
    bank = rng.standard_normal((500, 16))
    bank[3] = bank[2] + 1e-9 * rng.standard_normal(16)        # a trusted copy almost on an untrusted one
    E = [rng.standard_normal((20, 16)), bank[:10], bank[3:4] + 1e-10]
    for i in (7, 13, 18, 23, 44):                               # latents just beside copies of every kind
        t = rng.standard_normal(16)
        bank[i] = t + 0.01 * rng.standard_normal(16)
        bank[i - i % A] = t + 0.012 * rng.standard_normal(16)
        E.append(t[None])
    E = np.concatenate(E)
    for trusted in (("brightness:1.2",), ("brightness:1.2", "mirror")):
        cols = [1 + aug.index(t) for t in trusted]
        for w in (1.3, 2.0):
            mem = latent_memory(bank, CFG.replace(latent_metric=metric, bank_augment_weight=w,
                                                  bank_trusted_augment=trusted), aug)
            got = mem.distances(E)
            np.testing.assert_array_equal(got, [mem.distance(e) for e in E])
            np.testing.assert_allclose(got, [_by_hand(e, bank, A, cols, w, metric) for e in E], rtol=1e-9, atol=1e-15)
    plain = latent_memory(bank, CFG.replace(latent_metric=metric, bank_augment_weight=2.0), aug).distances(E)
    assert (got < plain * (1 - 1e-9)).any()                   # trusting acted on some latents


def test_held_out_scores_count_the_trusted_copies_as_original():
    """edge-ad calibrate's held-out scores with the augment list: the trusted copies of the original bank and
    of the other blocks' scene frames weigh 1, the others w; without the list (trusted texts set) refused."""
    from edge_ad.runtime.calibrate import held_out_scores
    rng = np.random.default_rng(11)
    aug = ["mirror", "brightness:1.2"]
    cfg = CFG.replace(latent_metric="l2", bank_augment_weight=3.0, bank_trusted_augment=BRIGHT)
    lat = rng.standard_normal((6, 3, 8))                       # 6 scene frames x (frame, mirror, bright)
    lat[1, 2] = lat[4, 0] + 0.01                               # frame 4 is near frame 1's bright copy
    lat[0, 1] = lat[5, 0] + 0.01                               # frame 5 is near frame 0's mirror copy
    original = rng.standard_normal((9, 8))                     # 3 training frames x 3 rows
    original[5] = lat[2, 0] + 0.02                             # frame 2 near a training frame's bright copy
    got = held_out_scores(np.ones(6), lat, original, cfg, blocks=6, augment=aug)
    want = [_by_hand(lat[i, 0], np.concatenate([original, np.delete(lat, i, 0).reshape(-1, 8)]), 3, [2], 3.0, "l2")
            for i in range(6)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    untrusted = held_out_scores(np.ones(6), lat, original, cfg.replace(bank_trusted_augment=()), blocks=6, augment=aug)
    assert got[4] < untrusted[4] and got[2] < untrusted[2] and got[5] == untrusted[5]
    with pytest.raises(ValueError, match="augment list was not given"):
        held_out_scores(np.ones(6), lat, original, cfg, blocks=6)
    with pytest.raises(ValueError, match="3 rows per frame, but the bank's augment names 1"):
        held_out_scores(np.ones(6), lat, original, cfg, blocks=6, augment=aug[:1])


torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def rectangle():
    from conftest import REPO
    from edge_ad.models.checkpoint import load_generator
    from edge_ad.models.search import checkpoint_bank_augment, checkpoint_encoder, checkpoint_latent_bank
    path = REPO / "models" / "kinect-rgbd" / "rectangle.pt"
    return path, load_generator(path), checkpoint_encoder(path), checkpoint_latent_bank(path), \
        checkpoint_bank_augment(path)


def _bright_frames(val_frame):
    """Real val frames of the three classes, brightened 25 % (raw): their nearest bank rows are often the
    "brightness:1.2" copies, so trusting those changes latent distances."""
    from edge_ad.runtime.nuisance import parse_nuisance
    bright = parse_nuisance("brightness:1.25")
    return [dict(zip(("rgb", "depth"), bright(f["rgb"], f["depth"])))
            for c in ("rectangle", "cylinder", "sphere") for f in (val_frame(c, 0), val_frame(c, 1))]


def test_scorer_with_trusted_copies_equals_the_torch_reference(kinect_export, val_frame, rectangle):
    """The shipped rectangle model exported (62 augmentations, the eighteenth pass), scored by the runtime
    (onnxruntime CPU, single frames and score_batch) with w = 2 and "brightness:1.2" trusted against the float64
    PyTorch reference (search_min_shift) and models' score_batch (float32) given the checkpoint's augment list:
    relative tolerance RTOL_TORCH; trusting lowers some latent distances, never raises one."""
    from edge_ad.models.search import checkpoint_pixel_memory, score_batch

    from conftest import runtime_matches_reference
    path, G, E, bank, augment = rectangle
    pixels = checkpoint_pixel_memory(path)        # the release's pixel memory (None for a file without one)
    man = json.loads((kinect_export / "manifest.json").read_text())
    assert augment == man["latent_bank"]["augment"] and "brightness:1.2" in augment
    shipped = SearchConfig.from_dict(man["search"]).replace(score_shift_radius=0)   # one copy per frame (see below)
    cfg = shipped.replace(bank_augment_weight=2.0, bank_trusted_augment=BRIGHT)
    got, before, X = runtime_matches_reference(kinect_export, cfg, cfg.replace(bank_trusted_augment=()),
                                               _bright_frames(val_frame), G, E, bank, augment, RTOL_TORCH,
                                               pixels=pixels)
    for g, b in zip(got, before):
        assert g.latent_distance <= b.latent_distance * (1 + 1e-12)
    assert any(g.latent_distance < b.latent_distance * 0.99 for g, b in zip(got, before))   # the trust acted
    with pytest.raises(ValueError, match="augment list was not given"):      # rows per frame only: refused
        score_batch(G, X[:1], cfg, encoder=E, latent_bank=bank, bank_rows_per_frame=1 + len(augment),
                    pixel_memory=pixels)


def _trust(man):
    """As if released with w = 2 and "brightness:1.2" trusted (threshold calibrated so)."""
    for d in (man["search"], man["threshold"]["search"]):
        d["bank_augment_weight"], d["bank_trusted_augment"] = 2.0, list(BRIGHT)


def test_manifest_round_trip_and_a_text_the_bank_lacks(kinect_export, tmp_path, val_frame, rectangle,
                                                        untrusted_rectangle):
    """A manifest whose search lists the field loads it as a tuple, keeps its threshold and scores as the same
    configuration given as config=; an export records the checkpoint's search as it is: the field when the
    checkpoint has it, no such key for a checkpoint without it (the shipped one with the field cleared),
    which loads as (); a trusted text that is not in latent_bank["augment"] is refused by Scorer.load and
    the exporter, naming it."""
    from edge_ad.export.errors import ExportError
    from edge_ad.export.exporter import resolve_latent_bank
    from edge_ad.runtime.manifest import ManifestError
    from edge_ad.runtime.scorer import Scorer
    d = edit_manifest(kinect_export, tmp_path / "trusted", _trust)
    man = json.loads((d / "manifest.json").read_text())
    s = Scorer.load(d, threads=1)
    cfg = SearchConfig.from_dict(man["search"])
    assert s.config == cfg and s.config.bank_trusted_augment == BRIGHT and s.threshold == man["threshold"]["value"]
    f = _bright_frames(val_frame)[0]
    same = Scorer.load(kinect_export, threads=1, config=cfg)
    assert s.score(f["rgb"], f["depth"], seed=1).score == same.score(f["rgb"], f["depth"], seed=1).score
    # an export records the checkpoint's search as it is: with the field, or (cleared) without the key
    from edge_ad.export.exporter import export_model
    from edge_ad.models.checkpoint import read_checkpoint
    shipped = json.loads((kinect_export / "manifest.json").read_text())
    assert shipped["search"] == read_checkpoint(rectangle[0])["scoring"]["search"] == shipped["threshold"]["search"]
    export_model(untrusted_rectangle, tmp_path / "untrusted", parity=False, log=lambda *a: None)
    plain = json.loads((tmp_path / "untrusted" / "manifest.json").read_text())
    assert plain["search"] == read_checkpoint(untrusted_rectangle)["scoring"]["search"] == plain["threshold"]["search"]
    assert "bank_trusted_augment" not in plain["search"]
    assert SearchConfig.from_dict(plain["search"]).bank_trusted_augment == ()
    assert Scorer.load(tmp_path / "untrusted", threads=1).config == cfg.replace(bank_trusted_augment=(),
                                                                                  name=plain["search"]["name"])
    assert Scorer.load(d, threads=1, config=cfg.replace(bank_trusted_augment=())).threshold is None   # not its score
    with pytest.raises(ManifestError, match=r"latent_bank\.npy: bank_trusted_augment \['brightness:1\.3'\] names"):
        Scorer.load(d, threads=1, config=cfg.replace(bank_trusted_augment=("brightness:1.3",)))
    bank = np.zeros((8, 4), np.float32) + 1
    with pytest.raises(ExportError, match=r"\['brightness:1\.2'\] names augmentations .*\['mirror'\]"):
        resolve_latent_bank(cfg, bank=bank, scoring={"latent_bank_info": {"augment": ["mirror"]}}, z_dim=4)
    assert resolve_latent_bank(cfg, bank=bank, scoring={"latent_bank_info": {"augment": ["brightness:1.2"]}},
                               z_dim=4) is not None


def test_calibrated_directory_keeps_and_uses_the_trusted_copies(kinect_export_r0, tmp_path, val_frame):
    """edge-ad calibrate on a model released with "brightness:1.2" trusted (w = 2): the new manifest keeps the
    field (search and threshold), the new bank is the original then 63 rows per scene frame, and the calibrated
    directory scores a frame's latent distance as min(nearest original row or bright copy, 2 x nearest other
    copy) over that whole bank (computed here from latent_bank.npy); its held-out threshold used the same
    memory (held_out_scores refuses a trusted configuration without the augment list)."""
    from edge_ad.runtime.calibrate import calibrate_model
    from edge_ad.runtime.preprocess import preprocess
    from edge_ad.runtime.scorer import Scorer
    from edge_ad.runtime.sources import open_source
    from conftest import copy_frames
    d = edit_manifest(kinect_export_r0, tmp_path / "trusted", _trust)
    scene = copy_frames(tmp_path / "scene", "rectangle", 10, start=50, split="val")     # val, not train frames
    with open_source(str(scene)) as src:
        man = calibrate_model(d, src, tmp_path / "cal", fpr=0.1, min_frames=10, threads=1, max_shift=0)
    augment = man["latent_bank"]["augment"]
    A = 1 + len(augment)
    assert man["search"]["bank_trusted_augment"] == list(BRIGHT) == man["threshold"]["search"]["bank_trusted_augment"]
    bank = np.load(tmp_path / "cal" / "latent_bank.npy").astype(np.float64)
    assert A == 63 and bank.shape[0] == 18900 + 10 * A
    s = Scorer.load(tmp_path / "cal", threads=1)
    assert s.config.bank_trusted_augment == BRIGHT and s.threshold == pytest.approx(man["threshold"]["value"])
    unit = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    col = np.arange(len(bank)) % A
    orig = (col == 0) | (col == 1 + augment.index("brightness:1.2"))
    acted = 0
    for f in _bright_frames(val_frame):
        e = s.encode(preprocess(f["rgb"], f["depth"], s.preprocess_spec)).astype(np.float64)
        dist = ((unit - e / np.linalg.norm(e)) ** 2).sum(1)                 # (N,) cosine distances
        want = min(dist[orig].min(), 2.0 * dist[~orig].min())
        assert s.score(f["rgb"], f["depth"], seed=0).latent_distance == pytest.approx(want, rel=1e-9)
        acted += want < min(dist[col == 0].min(), 2.0 * dist[col != 0].min()) * 0.99
    assert acted >= 1                                                    # the trust acted on some frame


def test_cli_eval_and_export_carry_trusted_copies(tmp_path, kinect_root, val_frame, untrusted_rectangle):
    """On a checkpoint that trusts nothing (the shipped rectangle with the field cleared), edge-ad eval
    --bank-trusted-augment brightness:1.2 (w = 2, the checkpoint's) scores each frame at most its untrusted score
    (the shipped rectangle with 'none'), some lower, and records the field; edge-ad export
    --bank-trusted-augment writes it into the manifest (renamed configuration), passes its parity check
    against the trusted float64 reference (on brightened frames, where trusting changes latent distances: a
    reference without it fails) and leaves the checkpoint's threshold (calibrated without it) behind; a text the
    bank lacks is refused by both, naming it."""
    from click.testing import CliRunner

    from conftest import REPO
    from edge_ad.cli import main
    from edge_ad.models.checkpoint import read_checkpoint
    model = str(REPO / "models" / "kinect-rgbd" / "rectangle.pt")
    untrusted = str(untrusted_rectangle)
    reports = {}
    for t, ck in (("brightness:1.2", untrusted), ("none", model)):      # switched on, switched off
        out = tmp_path / f"eval-{t}"
        res = CliRunner().invoke(main, ["eval", "--model", ck, "--data", str(kinect_root), "--class", "rectangle",
                                        "--max-per-class", "4", "--no-baselines", "--out", str(out),
                                        "--nuisance-set", "brightness:1.25",        # frames a bright copy is near
                                        "--bank-augment-weight", "2", "--bank-trusted-augment", t])
        assert res.exit_code == 0, res.output
        reports[t] = json.loads((out / "report.json").read_text())
    assert reports["brightness:1.2"]["search"]["bank_trusted_augment"] == list(BRIGHT)
    assert "bank_trusted_augment" not in reports["none"]["search"]

    def all_scores(rep):         # clean and brightened, every group
        cond = [c["scores"] for c in rep["nuisance"]["conditions"].values()]
        return np.concatenate([s[k] for s in [rep["scores"], *cond] for k in sorted(s)])
    st, sn = all_scores(reports["brightness:1.2"]), all_scores(reports["none"])
    assert len(st) == len(sn) >= 20 and np.all(st <= sn * (1 + 1e-6)) and np.any(st < 0.99 * sn)
    from PIL import Image
    parity = tmp_path / "bright"                     # parity frames where the trust acts (brightened val frames)
    (parity / "rgb").mkdir(parents=True)
    (parity / "depth").mkdir()
    for i, f in enumerate(_bright_frames(val_frame)):
        Image.fromarray(f["rgb"]).save(parity / "rgb" / f"{i}.png")
        Image.fromarray(f["depth"]).save(parity / "depth" / f"{i}.png")
    res = CliRunner().invoke(main, ["export", untrusted, "--out", str(tmp_path / "exp"), "--bank-trusted-augment",
                                    "brightness:1.2", "--target", "cpu", "--parity-frames", str(parity),
                                    "--parity-n", "6"])
    assert res.exit_code == 0, res.output
    man = json.loads((tmp_path / "exp" / "manifest.json").read_text())
    assert man["search"]["bank_trusted_augment"] == list(BRIGHT) and "threshold" not in man
    assert man["search"]["name"] == read_checkpoint(untrusted)["scoring"]["search"]["name"] \
        + "+bank_trusted_augment=[brightness:1.2]"
    assert man["parity"]["passed"] and man["parity"]["search"]["bank_trusted_augment"] == list(BRIGHT)
    assert len(man["parity"]["frames"]) == 6
    assert all(r["latent_distance"]["rel_diff"] <= 1e-4 for r in man["parity"]["frames"])
    for cmd in (["eval", "--model", model, "--data", str(kinect_root), "--class", "rectangle", "--max-per-class", "2",
                 "--no-baselines", "--out", str(tmp_path / "bad")],
                ["export", model, "--out", str(tmp_path / "bad2"), "--no-parity"]):
        bad = CliRunner().invoke(main, cmd + ["--bank-trusted-augment", "brightness:1.3"])
        assert bad.exit_code != 0 and "brightness:1.3" in bad.output and "names augmentations" in bad.output, bad.output
