"""The silhouette lever (runtime/silhouette.py, SearchConfig.silhouette_versions_weight; audit 31 #9): a raw frame
scored as itself, its silhouette 1 px narrower and 1 px wider, score = min(S_id, w_e S_ero, S_dil), the dil version
also against paired rows of the opened training frames. Off by default and then recorded and scored as before. The
shipped sphere.pt carries it (session 34: w_e 2, its 300 train frames opened as the paired rows,
make_release.silhouette_rows); on it a 1-px eroded frame scores close to its clean score where the same file with
the lever off (conftest.without_lever: the model as released before) jumps; the paired rows are the dil version's
only; a corrupt or mismatched array is refused naming it."""
from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest

from conftest import REPO, SPHERE, edit_manifest, load_kinect_script
from edge_ad.runtime.config import SearchConfig
from edge_ad.runtime.nuisance import DepthEdgeErode
from edge_ad.runtime.silhouette import VERSIONS, opened, silhouette_min, silhouette_versions

QUIET = {"log": lambda *a: None}
W = 2.0


def test_off_by_default_recorded_as_before_and_checked():
    """0 (the default): absent from the record, so configurations, their config_sha256 and manifests are as before
    the field; on: recorded, compared by thresholds; bad values and a configuration without the latent memory
    refused naming the field."""
    from edge_ad.runtime.config import search_differences
    base = SearchConfig(name="izi", z_init="encoder", score_latent_power=1.0, k=0, lr_theta=0.0)
    assert "silhouette_versions_weight" not in base.to_dict() and not base.uses_silhouette_versions
    on = base.replace(silhouette_versions_weight=2)
    assert on.to_dict()["silhouette_versions_weight"] == 2.0 and on.uses_silhouette_versions
    assert SearchConfig.from_dict(json.loads(json.dumps(on.to_dict()))) == on
    assert search_differences(base.to_dict(), on) == ["silhouette_versions_weight"]
    assert search_differences(on.to_dict(), base) == ["silhouette_versions_weight"]
    assert search_differences(base.to_dict(), base.replace(silhouette_versions_weight=0)) == []
    for bad in (0.5, -1.0, float("nan"), float("inf"), "2", True):
        with pytest.raises(ValueError, match="silhouette_versions_weight"):
            base.replace(silhouette_versions_weight=bad) if not isinstance(bad, str) else \
                SearchConfig.from_dict({**base.to_dict(), "silhouette_versions_weight": bad})
    with pytest.raises(ValueError, match="needs the latent memory"):
        SearchConfig(silhouette_versions_weight=2.0)


def _frame(H: int = 12, W_: int = 14):
    """A pre-masked frame: a 6 x 6 block of readings and a 1-px-wide line of readings beside it."""
    rgb = np.zeros((H, W_, 3), np.uint8)
    depth = np.zeros((H, W_), np.uint8)
    depth[3:9, 3:9], rgb[3:9, 3:9] = 100, 200
    depth[2:10, 11], rgb[2:10, 11] = 120, 50
    return rgb, depth


def test_versions_opened_and_the_weighted_min():
    rgb, depth = _frame()
    v = silhouette_versions(rgb, depth)
    assert list(v) == list(VERSIONS) and v["id"][1] is depth
    assert (v["ero"][1] > 0).sum() == 16 and not v["ero"][1][:, 11].any()          # the block's 4 x 4 core only
    grown = v["dil"][1] > 0
    assert grown[2:10, 2:10].all() and grown[1:11, 10:13].all() and (v["dil"][1][depth > 0] == depth[depth > 0]).all()
    o_rgb, o_depth = opened(rgb, depth)
    assert (o_depth > 0).sum() == 36 and not o_depth[:, 11].any()                   # the line gone, the block back
    assert silhouette_min({"id": 3.0, "ero": 1.0, "dil": 2.5}, 2.0) == (2.0, "ero")
    assert silhouette_min({"id": 3.0, "ero": 1.0, "dil": 2.5}, 3.0) == (2.5, "dil")
    assert silhouette_min({"id": 2.0, "ero": 1.0, "dil": 2.0}, 2.0) == (2.0, "id")   # a tie: the first
    assert silhouette_min({"id": 2.0, "dil": 5.0}, 2.0) == (2.0, "id")              # a version left out


@pytest.fixture(scope="module")
def sphere(sphere_lever):
    """(off, lever, rows): conftest's ``sphere_lever`` (the shipped sphere.pt, the lever on, w_e 2, with the paired
    rows of its 300 train frames opened, exported as ``lever``; the same file with the lever off exported as ``off``;
    the paired rows)."""
    return sphere_lever


def test_the_shipped_sphere_carries_the_lever(kinect_root, tmp_path):
    """models/kinect-rgbd/sphere.pt ships with the silhouette lever (session 34: make_release.py --silhouette-weight 2):
    w_e 2 in its configuration and in its threshold's record, 600 paired rows (2 x its 300 train frames: each
    opened frame and its mirror, E of silhouette.opened_inputs; the first frames' rebuilt here), no opened pixel
    frames (no pixel factor); exported with the parity check, the manifest carries the rows and the threshold and
    its parity has the combined-score row, passed."""
    from edge_ad.export.exporter import export_model
    from edge_ad.export.parity import default_parity_frames
    from edge_ad.models.checkpoint import CheckpointScoring, load_generator, read_checkpoint
    from edge_ad.models.data import kinect_split_ids
    from edge_ad.models.encoder import encoder_latents
    from edge_ad.runtime.silhouette import opened_inputs
    from edge_ad.runtime.sources.folder import read_pair
    ck = read_checkpoint(SPHERE)
    scoring = ck["scoring"]
    train = kinect_split_ids(kinect_root, "sphere", "train")
    assert scoring["search"]["silhouette_versions_weight"] == W and len(train) == 300
    assert scoring["threshold"]["search"] == scoring["search"] and scoring["threshold"]["value"] > 0
    rows = scoring["silhouette_bank"].numpy()
    assert rows.shape == (2 * len(train), 100) and rows.dtype == np.float32 and np.isfinite(rows).all()
    assert scoring["silhouette_info"]["n_frames"] == 300 and scoring.get("silhouette_pixels") is None
    G, E = load_generator(SPHERE), CheckpointScoring.read(SPHERE).encoder()
    X = np.concatenate([opened_inputs(*read_pair(kinect_root / "sphere", str(i)), G.preprocess) for i in train[:4]])
    np.testing.assert_allclose(rows[:8], encoder_latents(E, X), rtol=1e-4, atol=1e-5)
    man = export_model(SPHERE, tmp_path / "m", parity_frames=default_parity_frames(kinect_root, "sphere"), **QUIET)
    assert man["search"]["silhouette_versions_weight"] == W and man["silhouette"]["bank_shape"] == [600, 100]
    np.testing.assert_array_equal(np.load(tmp_path / "m" / "silhouette_bank.npy"), rows)
    assert man["threshold"]["value"] == scoring["threshold"]["value"]
    par = man["parity"]
    assert par["passed"] and par["silhouette"]["passed"] and par["silhouette"]["weight"] == W, par["summary"]
    assert par["silhouette"]["max_rel_diff"] <= par["tolerance"] and len(par["silhouette"]["frames"]) >= 2


def _val(kinect_root, cls: str, n: int) -> list:
    from edge_ad.runtime.sources.folder import read_pair
    ids = json.loads((kinect_root / "splits.json").read_text())[cls]["val"][:n]
    return [read_pair(kinect_root / cls, str(i)) for i in ids]


def test_export_carries_the_paired_rows(sphere):
    base, lever, rows = sphere
    man = json.loads((lever / "manifest.json").read_text())
    e = man["silhouette"]
    assert e["bank"] == "silhouette_bank.npy" and e["bank_shape"] == [600, rows.shape[1]] and e["n_frames"] == 300
    assert "pixels" not in e and man["search"]["silhouette_versions_weight"] == W
    np.testing.assert_array_equal(np.load(lever / "silhouette_bank.npy"), rows)
    assert "silhouette" not in json.loads((base / "manifest.json").read_text())


def test_a_one_pixel_erosion_scores_near_clean_with_the_lever(sphere, kinect_root):
    """Sphere val normals: without the lever (sphere.pt with the lever off, ``base``), a 1-px eroded silhouette
    multiplies the score (the latent distance: x10 in the median, session 32); with the lever (sphere.pt as shipped)
    its score stays near the clean frame's (the dil version of the eroded frame is the frame opened, which the paired
    rows know). Off (weight 0 on the lever's export): bit-identical to the export of the file with the lever off."""
    from edge_ad.runtime.scorer import Scorer
    base, lever, _ = sphere
    frames = _val(kinect_root, "sphere", 8)
    ero = [DepthEdgeErode(1)(*f) for f in frames]
    with Scorer.load(base, threads=1) as s0, Scorer.load(lever, threads=1) as s1:
        plain = [s0.score(*f, seed=0).score for f in frames]
        plain_ero = [s0.score(*f, seed=0).score for f in ero]
        on = [s1.score(*f, seed=0) for f in frames]
        on_ero = [s1.score(*f, seed=0) for f in ero]
        cfg_off = s1.config.replace(silhouette_versions_weight=0.0)
    with Scorer.load(lever, threads=1, config=cfg_off) as off:
        assert [off.score(*f, seed=0).score for f in frames] == plain               # off: bit for bit
        assert off.silhouette_memories == (None, None)
    jump = np.median(np.array(plain_ero) / plain)
    kept = np.median(np.array([r.score for r in on_ero]) / [r.score for r in on])
    assert jump > 4.0 and kept < 1.6, (jump, kept)
    assert sum(r.silhouette_version == "dil" for r in on_ero) >= 6
    for r, p in zip(on, plain):                                                     # never above the frame's own
        assert r.score <= p and r.silhouette_scores["id"] == p and r.timings["silhouette_versions"] == 3


def test_versions_are_one_model_pixel_at_a_cameras_resolution():
    """Audit 33 #19: at 8 camera pixels per model pixel the versions erode / grow 8 camera pixels (one model pixel),
    so a frame repeated 8x gives the 8x-repeated versions of the frame itself; without ``resolution``: 1 pixel."""
    from edge_ad.runtime.silhouette import model_pixel
    rgb, depth = _frame()
    up = lambda a: np.repeat(np.repeat(a, 8, 0), 8, 1)
    small, big = silhouette_versions(rgb, depth), silhouette_versions(up(rgb), up(depth), resolution=depth.shape[0])
    for v in VERSIONS:
        np.testing.assert_array_equal(big[v][1], up(small[v][1]), err_msg=v)
        np.testing.assert_array_equal(big[v][0], up(small[v][0]), err_msg=v)
    assert model_pixel(np.zeros((480, 640)), 64) == 8 and model_pixel(depth, None) == 1
    assert (silhouette_versions(up(rgb), up(depth))["ero"][1] > 0).sum() > (big["ero"][1] > 0).sum()


def test_a_one_pixel_erosion_from_a_cameras_frame_size_scores_as_at_64(sphere, kinect_root):
    """The lever on sphere val normals eroded by one model pixel, each also repeated 8x to 512 x 512 (the same
    64 x 64 model input, as a camera frame resized): the lever's scores at both sizes stay near each other (at 1
    camera pixel they were ~10x apart in the median: 40 % vs 5 % false alarms, audit 33 #19)."""
    from edge_ad.runtime.scorer import Scorer
    _, lever, _ = sphere
    up = lambda a: np.repeat(np.repeat(a, 8, 0), 8, 1)
    ero = [DepthEdgeErode(1)(*f) for f in _val(kinect_root, "sphere", 6)]
    with Scorer.load(lever, threads=1) as s:
        small = np.array([s.score(*f, seed=0).score for f in ero])
        big = np.array([s.score(up(r), up(d), seed=0).score for r, d in ero])
    ratio = np.median(big / small)
    assert 0.5 < ratio < 2.0, (ratio, small, big)


def test_the_paired_rows_are_the_dil_versions_only(sphere, kinect_root):
    """The id and ero versions score exactly as the file with the lever off scores those frames; the dil version is
    never farther than its score of the dil frame, and nearer for an eroded frame (its opened rows)."""
    from edge_ad.runtime.scorer import Scorer
    base, lever, _ = sphere
    frames = _val(kinect_root, "sphere", 3) + _val(kinect_root, "cylinder", 2)
    with Scorer.load(base, threads=1) as s0, Scorer.load(lever, threads=1) as s1:
        ratios = []
        for f in frames + [DepthEdgeErode(1)(*g) for g in frames[:3]]:
            r = s1.score(*f, seed=0)
            v = silhouette_versions(*f)
            assert r.silhouette_scores["id"] == s0.score(*v["id"], seed=0).score
            assert r.silhouette_scores["ero"] == s0.score(*v["ero"], seed=0).score
            d0 = s0.score(*v["dil"], seed=0).score
            assert r.silhouette_scores["dil"] <= d0
            ratios.append(r.silhouette_scores["dil"] / d0)
        assert max(ratios[-3:]) < 1.0 and min(ratios[-3:]) < 0.5, ratios
        # each version's frames batched: as score, to float32 rounding (an eroded frame: the dil version wins)
        some = frames[:2] + [DepthEdgeErode(1)(*frames[0]), (frames[1][0], None)]
        batch = s1.score_batch(some, seeds=[0] * 4)
        assert isinstance(batch[3], ValueError) and "depth" in str(batch[3])
        for b, f in zip(batch[:3], some):
            one = s1.score(*f, seed=0)
            assert b.score == pytest.approx(one.score, rel=1e-5) and b.silhouette_version == one.silhouette_version
            assert b.silhouette_scores == pytest.approx(one.silhouette_scores, rel=1e-5)
        assert batch[2].silhouette_version == "dil" and batch[0].timings["silhouette_versions"] == 3
        with pytest.raises(ValueError, match="score_uint8"):
            s1.score_uint8(np.zeros((s1.resolution, s1.resolution, 4), np.uint8))
        assert s1.needs_raw_frames and not s0.needs_raw_frames


def test_release_held_out_scores_leave_the_frames_own_paired_rows_out(sphere, kinect_root):
    """make_release's threshold rows: a train frame eroded by 1 px has, as its dil version, its own opened frame,
    whose paired rows the full model holds (its score ~ the floor); held out, those rows are left out with its bank
    rows, and it scores as an unseen eroded frame does (far above). The release's own lever scores (the PyTorch
    reference per version) equal the runtime Scorer's."""
    from edge_ad.models.checkpoint import CheckpointScoring, load_generator, read_checkpoint
    from edge_ad.models.data import kinect_split_ids
    from edge_ad.runtime.scorer import Scorer
    from edge_ad.runtime.sources.folder import read_pair
    mr = load_kinect_script("make_release")
    _, lever, _ = sphere
    ck = SPHERE
    G, E, scoring = load_generator(ck), CheckpointScoring.read(ck).encoder(), read_checkpoint(ck)["scoring"]
    cfg = SearchConfig.from_dict(scoring["search"])
    frames = [read_pair(kinect_root / "sphere", str(i)) for i in kinect_split_ids(kinect_root, "sphere", "train")]
    which = [0, 1, 2]
    for i in which:
        frames[i] = DepthEdgeErode(1)(*frames[i])
    held = mr.silhouette_held_out_scores(G, E, cfg, scoring, frames, which=which)
    full = mr.lever_scores(G, E, cfg, [frames[i] for i in which], mr.lever_memories(cfg, scoring))
    with Scorer.load(lever, threads=1) as s:
        runtime = np.array([s.score(*frames[i], seed=0).score for i in which])
        assert s.score(*frames[0], seed=0).silhouette_version == "dil"
    np.testing.assert_allclose(full, runtime, rtol=1e-4)
    assert held.shape == (3,) and (held > 3 * full).all(), (held, full)


def test_run_loop_scores_a_lever_model_from_the_raw_frame(sphere):
    """edge-ad run's loop (runtime/capture.py) scores through score_uint8 when the scorer has it: not for a lever
    model, whose versions need the raw frame (score(rgb, depth), faults already checked by the loop)."""
    import threading

    from edge_ad.runtime.capture import _Scoring
    from edge_ad.runtime.scorer import Scorer
    base, lever, _ = sphere
    with Scorer.load(base, threads=1) as s0, Scorer.load(lever, threads=1) as s1:
        kw = dict(worker=None, stop=threading.Event(), threshold=None, detector=None, max_pixels=None)
        assert _Scoring(scorer=s0, **kw).score_uint8 is not None
        how = _Scoring(scorer=s1, **kw)
        assert how.score_uint8 is None and how.faults_kw == {"check_faults": False}


def test_pixel_memory_pairs_too(kinect_export, kinect_root, tmp_path):
    """A model with the pixel factor (the shipped rectangle.pt, shift-min 1): the export carries the opened frames
    (silhouette_pixels.npy), and only the dil version measures its pixel distance against them too: a train frame
    eroded by 1 px, whose opened frame is a paired row, gets a dil version nearer than the shipped file finds that
    frame; its id and ero versions score exactly as the shipped file. Without the opened frames: refused. edge-ad eval
    of it scores such frames as the runtime does (dil: the pixel memory paired with the opened frames)."""
    import torch

    from edge_ad.export.exporter import export_model
    from edge_ad.models.checkpoint import CheckpointScoring, load_generator, read_checkpoint, with_integrity
    from edge_ad.models.data import kinect_split_ids
    from edge_ad.runtime.manifest import ManifestError
    from edge_ad.runtime.scorer import Scorer, frame_input
    from edge_ad.runtime.sources.folder import read_pair
    path = REPO / "models" / "kinect-rgbd" / "rectangle.pt"
    frames = [read_pair(kinect_root / "rectangle", str(i)) for i in kinect_split_ids(kinect_root, "rectangle", "train")[:4]]
    st, G = CheckpointScoring.read(path), load_generator(path)
    from edge_ad.models.encoder import encoder_latents
    from edge_ad.runtime.silhouette import opened_inputs, opened_uint8
    rows = encoder_latents(st.encoder(), np.concatenate([opened_inputs(*f, G.preprocess) for f in frames]))
    ck = read_checkpoint(path)
    ck["scoring"]["search"]["silhouette_versions_weight"] = W
    ck["scoring"]["threshold"] = None
    ck["scoring"]["silhouette_bank"] = torch.from_numpy(rows.astype(np.float32))
    ck["scoring"]["silhouette_pixels"] = torch.from_numpy(np.stack([opened_uint8(*f, G.preprocess) for f in frames]))
    torch.save(with_integrity(ck), tmp_path / "rect-lever.pt")
    lever = tmp_path / "lever"
    export_model(tmp_path / "rect-lever.pt", lever, parity=False, **QUIET)
    man = json.loads((lever / "manifest.json").read_text())["silhouette"]
    assert (man["pixels"], man["pixels_shape"][0], man["pixels_augment"]) == ("silhouette_pixels.npy", 4, ["mirror"])
    eroded = DepthEdgeErode(1)(*frames[0])
    v = silhouette_versions(*eroded)
    with Scorer.load(kinect_export, threads=1) as s0, Scorer.load(lever, threads=1) as s1:
        r = s1.score(*eroded, seed=0)
        assert r.silhouette_scores["id"] == s0.score(*v["id"], seed=0).score
        assert r.silhouette_scores["ero"] == s0.score(*v["ero"], seed=0).score
        assert r.silhouette_scores["dil"] < s0.score(*v["dil"], seed=0).score
        x = frame_input(*v["dil"], s1.preprocess_spec, check_faults=False)
        cfg = s1.config
        paired = s1.silhouette_memories[1].frame_distance(x, cfg.pixel_shift_radius, gain=cfg.pixel_gain_limits)
        assert paired < 0.5 * s0.pixel_distance(x) and s1.pixel_distance(x) == s0.pixel_distance(x)
        assert r.silhouette_version == "dil" and r.pixel_distance == pytest.approx(paired, rel=1e-9)   # the scorer's
    gone = edit_manifest(lever, tmp_path / "gone", lambda m: m["silhouette"].pop("pixels"))
    with pytest.raises(ManifestError, match="no opened frames"):
        Scorer.load(gone)
    # edge-ad eval of it (folders: two of these train frames eroded, whose dil versions' opened frames are paired
    # rows, and two cylinder frames): the runtime's scores and winners, the pixel memory paired for dil
    from click.testing import CliRunner
    from PIL import Image

    from edge_ad.cli import main
    groups = {}
    for name, frs in (("eroded", [DepthEdgeErode(1)(*f) for f in frames[:2]]),
                      ("cyl", _val(kinect_root, "cylinder", 2))):
        (tmp_path / name / "rgb").mkdir(parents=True)
        (tmp_path / name / "depth").mkdir()
        for i, (rgb, depth) in enumerate(frs):
            Image.fromarray(rgb).save(tmp_path / name / "rgb" / f"{i}.png")
            Image.fromarray(depth).save(tmp_path / name / "depth" / f"{i}.png")
        groups[name] = [read_pair(tmp_path / name, str(i)) for i in range(len(frs))]
    res = CliRunner().invoke(main, ["eval", "--model", str(tmp_path / "rect-lever.pt"), "--normal",
                                    str(tmp_path / "eroded"), "--anomalous", str(tmp_path / "cyl"), "--out",
                                    str(tmp_path / "ev")])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    for g, (scores, won) in _runtime_rows(lever, groups, [("clean", None, 0)])["clean"].items():
        np.testing.assert_allclose(report["scores"][g], scores, rtol=1e-4, err_msg=g)
        assert report["silhouette"]["winners"][g] == {v: won.count(v) for v in VERSIONS}
    assert report["silhouette"]["winners"]["eroded"]["dil"] == 2


def _resave(d, name: str, a: np.ndarray, edit=None):
    """Write ``a`` as d/name and its sha256 into d's manifest (a consistent but different array), ``edit(man)``."""
    np.save(d / name, a)
    man = json.loads((d / "manifest.json").read_text())
    man["files"][name] = hashlib.sha256((d / name).read_bytes()).hexdigest()
    if edit:
        edit(man)
    (d / "manifest.json").write_text(json.dumps(man))


def test_corrupt_or_mismatched_rows_refused(sphere, tmp_path):
    from edge_ad.runtime.manifest import ManifestError
    from edge_ad.runtime.scorer import Scorer
    _, lever, rows = sphere
    bad = tmp_path / "bad"
    shutil.copytree(lever, bad)
    a = rows.copy()
    a[0, 0] += 1.0
    np.save(bad / "silhouette_bank.npy", a)
    with pytest.raises(ManifestError, match=r"silhouette_bank\.npy has been modified"):
        Scorer.load(bad)
    a[0, 0] = np.nan
    _resave(bad, "silhouette_bank.npy", a)
    with pytest.raises(ManifestError, match="NaN"):
        Scorer.load(bad)

    def odd(man):
        man["silhouette"]["bank_shape"] = [599, rows.shape[1]]
    _resave(bad, "silhouette_bank.npy", rows[:599], odd)
    with pytest.raises(ManifestError, match=r"silhouette\.bank_shape"):
        Scorer.load(bad)
    gone = edit_manifest(lever, tmp_path / "gone", lambda man: man.pop("silhouette"))
    with pytest.raises(ManifestError, match="no paired rows"):
        Scorer.load(gone)
    with _off(gone) as s:                                                          # off: the rows are not needed
        assert not s.config.uses_silhouette_versions


def _off(model_dir):
    from edge_ad.runtime.scorer import Scorer
    man = json.loads((model_dir / "manifest.json").read_text())
    return Scorer.load(model_dir, threads=1,
                       config=SearchConfig.from_dict({**man["search"], "silhouette_versions_weight": 0.0}))


def _runtime_rows(model_dir, groups: dict, rows: list) -> dict:
    """{row: {group: (scores (N,), winners [N])}} of ``groups`` ({group: raw frames}) through the runtime
    (Scorer.score_batch, frame i seeded frame_seed(0, i)), each row [(label, nuisance or None, k)] drawn as
    edge-ad eval's nuisance suite draws it (frame i of group g: frame_rng(0, 100000 g + i, k))."""
    from edge_ad.runtime.config import frame_seed
    from edge_ad.runtime.nuisance import frame_rng
    from edge_ad.runtime.scorer import Scorer
    out = {}
    with Scorer.load(model_dir, threads=1) as s:
        for label, nuis, k in rows:
            out[label] = {}
            for g, (name, frames) in enumerate(groups.items()):
                fr = [f if nuis is None else nuis(*f, frame_rng(0, 100000 * g + i, k)) for i, f in enumerate(frames)]
                res = s.score_batch(fr, seeds=[frame_seed(0, i) for i in range(len(fr))], check_faults=False)
                out[label][name] = (np.array([r.score for r in res]), [r.silhouette_version for r in res])
    return out


def _eval(ck, out, kinect_root, *extra):
    from click.testing import CliRunner

    from edge_ad.cli import main
    res = CliRunner().invoke(main, ["eval", "--model", str(ck), "--data", str(kinect_root), "--class", "sphere",
                                    "--max-per-class", "4", "--no-baselines", "--out", str(out), *extra])
    assert res.exit_code == 0, res.output
    return json.loads((out / "report.json").read_text()), res.output


def test_eval_scores_a_lever_model_as_the_runtime_does(sphere, kinect_root, tmp_path):
    """edge-ad eval of a lever checkpoint (audit 33 #15 a): every raw frame's versions (after the nuisance, as the
    runtime sees it) scored by the PyTorch reference with the dil version's paired rows, the least weighted score:
    the report's clean and nuisance-suite scores equal the runtime's (Scorer.score_batch of the exported lever model
    on the same draws) to float32 rounding, frame by frame, and so do the winners it counts per group (a 1-px erosion:
    dil wins; edge spurs: ero, weighted). The table says who won. models.search.score_batch (preprocessed frames)
    still refuses the lever."""
    from edge_ad.models.search import score_batch
    from edge_ad.runtime.nuisance import parse_nuisance
    from edge_ad.runtime.silhouette import VERSIONS
    _, lever, _ = sphere
    ck = SPHERE
    texts = ["depth-edge-erode:1", "depth-edge-spurs:1"]
    report, output = _eval(ck, tmp_path / "ev", kinect_root, *[a for t in texts for a in ("--nuisance-set", t)])
    groups = {c: _val(kinect_root, c, 4) for c in ("sphere", "rectangle", "cylinder")}
    runtime = _runtime_rows(lever, groups, [("clean", None, 0)] + [(t, parse_nuisance(t), k)
                                                                  for k, t in enumerate(texts, start=1)])
    conditions = report["nuisance"]["conditions"]
    labels = dict(zip(["clean"] + texts, conditions))
    won_by = {v: 0 for v in VERSIONS}
    for row, label in labels.items():
        for g, (scores, won) in runtime[row].items():
            np.testing.assert_allclose(conditions[label]["scores"][g], scores, rtol=1e-4, err_msg=f"{row} {g}")
            assert conditions[label]["silhouette_winners"][g] == {v: won.count(v) for v in VERSIONS}, (row, g)
            for v in won:
                won_by[v] += 1
    for g, (scores, won) in runtime["clean"].items():                        # the evaluated groups themselves
        np.testing.assert_allclose(report["scores"][g], scores, rtol=1e-4, err_msg=g)
        assert report["silhouette"]["winners"][g] == {v: won.count(v) for v in VERSIONS}
    assert report["silhouette"]["weight"] == W and report["search"]["silhouette_versions_weight"] == W
    assert conditions[labels["depth-edge-erode:1"]]["silhouette_winners"]["sphere"]["dil"] >= 3
    assert won_by["ero"] >= 3 and won_by["dil"] >= 3, won_by
    assert "frames won by each silhouette version (id/ero/dil)" in output
    cfg = SearchConfig(z_init="encoder", score_latent_power=1.0, k=0, silhouette_versions_weight=2.0)
    with pytest.raises(ValueError, match="silhouette lever"):
        score_batch(None, np.zeros((1, 4, 64, 64), np.float32), cfg)


def test_eval_of_a_model_without_the_lever_is_as_before(sphere, kinect_root, tmp_path):
    """sphere.pt with the lever off (conftest.without_lever: no weight, no paired rows; the model as released before
    session 34): eval's scores are models.search.score_batch's of the preprocessed frames, as before the lever; no
    "silhouette" in the report, no winners in the suite's rows or the table. The shipped (lever) checkpoint with
    --silhouette-weight 0: the same scores."""
    from edge_ad.models.checkpoint import CheckpointScoring, load_generator
    from edge_ad.models.data import load_kinect, to_tensor
    from edge_ad.models.search import score_batch
    unlevered = sphere[0].parent / "sphere-off.pt"
    report, output = _eval(unlevered, tmp_path / "ev", kinect_root, "--nuisance-set", "depth-edge-erode:1")
    assert "silhouette" not in report and "silhouette" not in output
    assert all("silhouette_winners" not in r for r in report["nuisance"]["conditions"].values())
    off, _ = _eval(SPHERE, tmp_path / "off", kinect_root, "--silhouette-weight", "0")
    assert off["scores"] == report["scores"] and "silhouette" not in off          # the lever's checkpoint, lever off
    st, G = CheckpointScoring.read(unlevered), load_generator(unlevered)
    cfg, spec = st.search_config(), G.preprocess
    for c in ("sphere", "rectangle", "cylinder"):
        X = to_tensor(load_kinect(kinect_root, c, "val", spec)[1][:4], spec).numpy()
        want = score_batch(G, X, cfg, seed=0, batch_frames=32, encoder=st.encoder(), latent_bank=st.latent_bank(),
                           bank_rows_per_frame=st.bank_augment())
        assert report["scores"][c] == [float(v) for v in want], c


def test_eval_score_log_keeps_the_winners(tmp_path):
    """A stopped lever eval continues from OUT/scores.partial.jsonl: the winners come back with the scores (an
    eval's kept chunks and the suite's kept rows); a log without them (no lever) reads as before."""
    from edge_ad.models.evaluate import ScoreLog
    X = np.arange(2 * 4 * 2 * 2, dtype=np.float32).reshape(2, 4, 2, 2)
    log = ScoreLog(tmp_path, {"a": 1})
    log.add("sphere", [0.5, 0.25], ["id", "dil"])
    log.add("plain", [1.0])
    assert log.kept_scores(X, lambda _: (np.array([3.0, 4.0]), ["ero", "id"]))[1] == ["ero", "id"]
    again = ScoreLog(tmp_path, {"a": 1})
    assert again.scored("sphere") == [0.5, 0.25] and again.won("sphere") == ["id", "dil"]
    assert again.scored("plain") == [1.0] and again.won("plain") == []
    s, won = again.kept_scores(X, lambda _: pytest.fail("kept: not scored again"))
    assert s.tolist() == [3.0, 4.0] and won == ["ero", "id"]
    again.know(X[:1], [7.0], ["dil"])
    assert again.kept_scores(X[:1], None)[1] == ["dil"]
    assert "won" not in (tmp_path / "scores.partial.jsonl").read_text().splitlines()[2]


def test_export_parity_checks_the_combined_score(sphere, kinect_root, tmp_path):
    """Export's parity with the lever on (audit 33 #15 b): besides the graphs (checked with the lever off), a row of
    the combined score: the parity frames' versions scored by the float64 reference (the dil version with its paired
    rows), the min taken, against Scorer.score, within the parity tolerance, both winners recorded, in the summary;
    a 1-px eroded frame is won by dil on both sides. edge-ad verify says nothing more of it; a lever export whose
    parity lacks the row (exported before it) gets a note."""
    from click.testing import CliRunner

    from edge_ad.cli import main
    from edge_ad.export.exporter import export_model
    from edge_ad.export.parity import default_parity_frames
    _, lever, _ = sphere
    ck = SPHERE
    frames = default_parity_frames(kinect_root, "sphere")
    eroded = DepthEdgeErode(1)(frames[0]["rgb"], frames[0]["depth"])
    frames.append({"id": "sphere/eroded", "label": "normal", "rgb": eroded[0], "depth": eroded[1]})
    man = export_model(ck, tmp_path / "m", parity_frames=frames, **QUIET)
    par = man["parity"]
    row = par["silhouette"]
    assert par["passed"] and row["passed"] and row["tolerance"] == par["tolerance"] and row["weight"] == W
    assert len(row["frames"]) == 3 and row["max_rel_diff"] <= par["tolerance"]
    for r in row["frames"]:
        assert r["reference_version"] == r["onnx_version"] and set(r["onnx_scores"]) == set(VERSIONS)
        assert r["reference_scores"] == pytest.approx(r["onnx_scores"], rel=par["tolerance"])
    assert row["frames"][2]["onnx_version"] == "dil" and "silhouette lever" in par["summary"]
    ok = CliRunner().invoke(main, ["verify", str(tmp_path / "m")])
    assert ok.exit_code == 0 and "lever OFF" not in ok.output and "parity check" not in ok.output, ok.output
    # the reference given other paired rows (the eroded frame's own opened frame, the export's do not hold it): the
    # row fails, and so does the parity check
    from edge_ad.export.parity import check_parity
    from edge_ad.models.checkpoint import CheckpointScoring, load_generator
    from edge_ad.models.encoder import encoder_latents
    from edge_ad.runtime.silhouette import opened_inputs
    st, G = CheckpointScoring.read(ck), load_generator(ck)
    own = encoder_latents(st.encoder(), opened_inputs(frames[0]["rgb"], frames[0]["depth"], G.preprocess))
    bad = check_parity(G, tmp_path / "m", st.search_config(), frames[2:], check_fp64=False, threads=1,
                       encoder=st.encoder(), latent_bank=st.latent_bank(), bank_rows_per_frame=st.bank_augment(),
                       silhouette=(own.astype(np.float32), None), log=lambda *a: None)
    assert not bad["silhouette"]["passed"] and not bad["passed"] and "FAILED" in bad["summary"], bad["summary"]
    old = edit_manifest(tmp_path / "m", tmp_path / "old", lambda m: m["parity"].pop("silhouette"))
    said = CliRunner().invoke(main, ["verify", str(old)])
    assert said.exit_code == 0 and "silhouette lever OFF" in said.output, said.output


def test_export_silhouette_weight_option(sphere, tmp_path):
    """edge-ad export --silhouette-weight W (audit 33 #15 c), as --shift-radius: 0 exports the lever's checkpoint
    without the lever (no paired rows, the weight not recorded), W >= 1 another weight (the configuration renamed);
    a checkpoint without paired rows, or a weight in (0, 1), refused naming the problem."""
    from click.testing import CliRunner

    from edge_ad.cli import main
    ck = SPHERE

    def export(model, out, w):
        return CliRunner().invoke(main, ["export", str(model), "--out", str(tmp_path / out), "--no-parity",
                                         "--silhouette-weight", str(w)])
    off = export(ck, "off", 0)
    assert off.exit_code == 0, off.output
    man = json.loads((tmp_path / "off" / "manifest.json").read_text())
    assert "silhouette" not in man and "silhouette_versions_weight" not in man["search"]
    assert not (tmp_path / "off" / "silhouette_bank.npy").exists()
    three = export(ck, "three", 3)
    man = json.loads((tmp_path / "three" / "manifest.json").read_text())
    assert three.exit_code == 0 and man["search"]["silhouette_versions_weight"] == 3.0 and "silhouette" in man
    assert "silhouette_versions_weight=3" in man["search"]["name"]
    none = export(sphere[0].parent / "sphere-off.pt", "none", 2)
    assert none.exit_code != 0 and "paired rows" in none.output and not (tmp_path / "none").exists(), none.output
    half = export(ck, "half", 0.5)
    assert half.exit_code == 2 and "silhouette_versions_weight" in half.output, half.output


def test_result_lines_record_the_winning_version(sphere, kinect_root, tmp_path):
    """edge-ad run / edge-ad batch / the ROS node write one frame record (runtime.capture.frame_record): a lever
    model's lines name the winning version ("silhouette_version") and hold each version's own score
    ("silhouette_scores"), as Scorer.score gives them, as the shift-min's "shift" is written (audit 33 #15); a
    model without the lever writes its lines as before, byte for byte (no such field)."""
    from edge_ad.runtime.capture import frame_record, run_capture
    from edge_ad.runtime.scorer import Scorer
    from edge_ad.runtime.sources import open_source
    base, lever, _ = sphere
    folder = tmp_path / "frames"
    (folder / "rgb").mkdir(parents=True)
    (folder / "depth").mkdir()
    ids = json.loads((kinect_root / "splits.json").read_text())["sphere"]["val"][:2]
    for i in ids:                                          # two real val frames; the second also eroded (dil wins)
        shutil.copy(kinect_root / "sphere" / "rgb" / f"{i}.jpg", folder / "rgb" / f"{i}.jpg")
        shutil.copy(kinect_root / "sphere" / "depth" / f"{i}.png", folder / "depth" / f"{i}.png")
    lines = {}
    for name, model in (("base", base), ("lever", lever)):
        with Scorer.load(model, threads=1) as s:
            got = []
            run_capture(open_source(str(folder)), s, threshold=s.threshold, out=tmp_path / f"{name}.jsonl",
                        handle_signals=False,
                        on_result=lambda rec, fr, res: got.append((rec, fr, res)))
            lines[name] = got
            for rec, fr, res in got:
                one = s.score(fr.rgb, fr.depth, seed=0)
                if name == "lever":
                    assert rec["silhouette_version"] == res.silhouette_version == one.silhouette_version
                    assert rec["silhouette_scores"] == pytest.approx(one.silhouette_scores, rel=1e-6)
                    assert set(rec["silhouette_scores"]) == set(VERSIONS)
                    assert rec["score"] == pytest.approx(one.score, rel=1e-6)
                else:
                    assert "silhouette_version" not in rec and "silhouette_scores" not in rec
    written = [json.loads(x) for x in (tmp_path / "lever.jsonl").read_text().splitlines()]
    assert [x["silhouette_version"] for x in written if x["type"] == "frame"] == \
        [rec["silhouette_version"] for rec, _, _ in lines["lever"]]
    # the model without the lever: its line has exactly the fields, in the order, written before the lever
    rec, fr, res = lines["base"][0]
    old = {"type": "frame", **{k: rec[k] for k in ("frame", "index", "timestamp")}, "score": rec["score"],
           "threshold": rec["threshold"], "anomalous": rec["anomalous"], "latency_ms": rec["latency_ms"],
           "seed_losses": [float(v) for v in res.seed_losses], "latent_distance": float(res.latent_distance)}
    assert json.dumps(frame_record({k: rec[k] for k in ("frame", "index", "timestamp")}, res, rec["score"],
                                   rec["threshold"], rec["latency_ms"])) == json.dumps(old)
    eroded = DepthEdgeErode(1)(*_val(kinect_root, "sphere", 1)[0])
    with Scorer.load(lever, threads=1) as s:
        r = s.score(*eroded, seed=0)
    rec = frame_record({"frame": "e", "index": 0, "timestamp": 0.0}, r, r.score, None, {})
    assert rec["silhouette_version"] == "dil" and rec["silhouette_scores"]["dil"] < rec["silhouette_scores"]["id"]
    assert list(rec)[-2:] == ["silhouette_version", "silhouette_scores"]
