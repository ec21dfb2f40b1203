"""``edge-ad calibrate`` of a model with the silhouette lever (runtime/silhouette.py, issue 12 deliverable 3): the
scene's frames scored as the lever scores them (versions made on the RAW frame), the paired rows grown with the
scene frames' opened frames, the threshold set on lever scores held out without the frame's block's rows in the
bank AND in the paired rows; a model without the lever calibrates bit for bit as before."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import REPO, copy_frames, lever_checkpoint
from edge_ad.runtime.manifest import sha256_file


def _digests(d):
    return {p.name: sha256_file(p) for p in sorted(d.iterdir()) if p.is_file()}


def _frames(folder) -> list:
    from edge_ad.runtime.sources.folder import list_ids, read_pair
    return [read_pair(folder, i) for i in list_ids(folder)]


@pytest.fixture(scope="module")
def sphere_scene(tmp_path_factory):
    """20 sphere val frames (the shipped model never saw them) as a frame folder."""
    return copy_frames(tmp_path_factory.mktemp("lever_scene") / "scene", "sphere", 20, split="val")


def test_calibrating_a_lever_model_grows_its_paired_rows_with_the_scene(sphere_lever, sphere_scene, tmp_path):
    """edge-ad calibrate --sign of the sphere lever model on 20 sphere val frames: the paired rows grow by the scene
    frames' opened frames and mirrors (2 x (300 + 20) rows, frame-major: E of silhouette.opened_inputs of each
    frame under the scene's preprocessing), sha256 and counts in the manifest; the new directory loads, passes
    edge-ad verify --trusted-key, the original is untouched; a scene frame eroded by one pixel (its dil version is
    the frame opened, a paired row now) scores ~ the latent floor, and dilated by one pixel below the threshold."""
    from edge_ad.cli import main
    from edge_ad.runtime import Scorer
    from edge_ad.runtime.nuisance import DepthEdgeErode, DepthEdgeSpurs
    from edge_ad.runtime.signing import generate_key_pair
    from edge_ad.runtime.silhouette import opened_inputs
    _, lever, rows = sphere_lever
    generate_key_pair(tmp_path / "k.key", tmp_path / "k.pub")
    before = _digests(lever)
    out = tmp_path / "cal"
    r = CliRunner().invoke(main, ["calibrate", "--model", str(lever), "--source", str(sphere_scene), "--out", str(out),
                                  "--max-shift", "0", "--threads", "1", "--sign", str(tmp_path / "k.key")])
    assert r.exit_code == 0, r.output
    assert "the silhouette lever's paired rows: opened frames of 300 training + 20 scene frames" in r.output
    assert _digests(lever) == before                                                  # the original untouched
    man = json.loads((out / "manifest.json").read_text())
    e, rec = man["silhouette"], man["calibration"]
    assert e["n_frames"] == 320 and e["bank_shape"] == [640, rows.shape[1]] and e["info"]["scene"]["n_frames"] == 20
    assert rec["silhouette"] == {"original_frames": 300, "scene_frames": 20, "paired_rows": 640,
                                 "opened_pixel_frames": None}
    assert "silhouette lever" in rec["scores"] and man["search"]["silhouette_versions_weight"] == 2.0
    assert man["files"]["silhouette_bank.npy"] == sha256_file(out / "silhouette_bank.npy")
    grown = np.load(out / "silhouette_bank.npy")
    np.testing.assert_array_equal(grown[:600], rows)
    r = CliRunner().invoke(main, ["verify", str(out), "--trusted-key", str(tmp_path / "k.pub")])
    assert r.exit_code == 0 and "ok" in r.output, r.output
    frames = _frames(sphere_scene)
    with Scorer.load(out, threads=1) as s:
        assert s.threshold == pytest.approx(man["threshold"]["value"])
        assert s.silhouette_memories[0].shape[0] == man["latent_bank"]["shape"][0] + 640
        spec = s.preprocess_spec                                      # the scene's (its colour gain)
        assert tuple(spec.colour_gain) == tuple(rec["colour_gain"] or (1.0, 1.0, 1.0))   # None: not applied
        mine = np.stack([[s.encode(x) for x in opened_inputs(*f, spec)] for f in frames]).reshape(40, -1)
        np.testing.assert_allclose(grown[600:], mine, rtol=1e-4, atol=1e-5)
        ero = [s.score(*DepthEdgeErode(1)(*f), seed=0) for f in frames[:6]]
        dil = [s.score(*DepthEdgeSpurs(1.0)(*f, np.random.default_rng(0)), seed=0).score for f in frames[:6]]
    assert all(q.silhouette_version == "dil" for q in ero)
    assert max(q.score for q in ero) < 0.01 * s.threshold, [q.score for q in ero]
    assert max(dil) < s.threshold, dil


def test_held_out_lever_scores_leave_each_frames_own_paired_rows_out(sphere_lever, sphere_scene):
    """held_out_lever_scores on the sphere lever model's real scene: each frame's paired rows planted as its own
    dil version's latent (distance 0: the latent floor if it saw them) are left out with its block, in
    leave-one-out and in 5 blocks: every held-out score stays at the other rows' distances, far above the floor;
    planted as the previous frame's, another block's, they are seen (the floor);
    the scene's true opened rows give held-out scores <= the id version's held out alone (the lever's min; on these
    clean frames the id version wins)."""
    from edge_ad.runtime.calibrate import held_out_lever_scores, held_out_scores, read_scene, score_scene
    from edge_ad.runtime.scorer import Scorer
    from edge_ad.runtime.sources import open_source
    _, lever, rows = sphere_lever
    with Scorer.load(lever, threads=1) as s, open_source(str(sphere_scene)) as src:
        spec, cfg, man = s.preprocess_spec, s.config, s.manifest
        augment = man["latent_bank"]["augment"]
        scene = read_scene(src, spec, silhouette=True)
        scene.update(score_scene(s, scene["u8"], spec, augment, scene["versions"]))
    bank = np.load(lever / "latent_bank.npy")
    n = len(scene["ids"])
    assert n == 20 and scene["opened_latents"].shape == (n, 2, rows.shape[1])
    dil = scene["version_scores"]["dil"]
    planted = {**scene, "opened_latents": np.repeat(dil["shifted_latents"], 2, axis=1)}       # (n, 2, z_dim)
    floor = np.asarray(dil["base"]).min(1) * cfg.latent_floor             # (n,) what a frame seeing its own gets
    for blocks in (n, 5):
        held = held_out_lever_scores(planted, bank, rows, cfg, blocks, augment)
        assert held.shape == (n,) and (held > 10 * floor).all(), (held / floor, blocks)
    # frame i's dil latent planted as frame i - 1's paired rows: another block's, which its dil version does see
    rolled = {**scene, "opened_latents": np.roll(planted["opened_latents"], -1, axis=0)}
    assert (held_out_lever_scores(rolled, bank, rows, cfg, n, augment)[1:] <= floor[1:] * (1 + 1e-9)).all()
    held = held_out_lever_scores(scene, bank, rows, cfg, 5, augment)
    alone = held_out_scores(scene["base"], scene["latents"], bank, cfg, 5, scene["shifted_latents"], augment)
    assert (held <= alone).all()


# the shipped rectangle export (no lever) calibrated on 20 rectangle val frames (--max-shift 1, 1 thread) by the
# code before the lever (commit dffd75a): its threshold and grown memories, bit for bit
BEFORE_THRESHOLD = 0.00018949846958643104
BEFORE_SHA256 = {"latent_bank.npy": "7b57dfb84a62aa0ed053a9f218e1ae9ade995e5396bff6b2d8407c92db35775f",
                 "pixel_memory.npy": "ca02d4e8daba67de33eaa9a2a03308ccf5ee0b90a77a078e46810c624907baf8"}


def test_a_model_without_the_lever_calibrates_bit_for_bit_as_before(kinect_export, tmp_path):
    from edge_ad.runtime.calibrate import calibrate_model
    from edge_ad.runtime.sources import open_source
    scene = copy_frames(tmp_path / "scene", "rectangle", 20, split="val")
    with open_source(str(scene)) as src:
        # the scene's colour gain applied unchecked, as when BEFORE_* were read (audit 34 #4's check came after)
        man = calibrate_model(kinect_export, src, tmp_path / "cal", max_shift=1, threads=1, colour_gain="always")
    assert "silhouette" not in man and "silhouette" not in man["calibration"]
    assert man["threshold"]["value"] == BEFORE_THRESHOLD
    assert {f: sha256_file(tmp_path / "cal" / f) for f in BEFORE_SHA256} == BEFORE_SHA256


@pytest.fixture(scope="module")
def rect_lever(tmp_path_factory):
    """(lever, scene): the shipped rectangle (pixel memory of its 300 train frames) with the lever and its 300
    opened frames (silhouette_pixels.npy), exported; 20 rectangle val frames as a frame folder."""
    from edge_ad.export.exporter import export_model
    d = tmp_path_factory.mktemp("rect_lever")
    lever_checkpoint(REPO / "models" / "kinect-rgbd" / "rectangle.pt", d / "rect-lever.pt", "rectangle",
                     with_pixels=True)
    export_model(d / "rect-lever.pt", d / "lever", parity=False, log=lambda *a: None)
    return d / "lever", copy_frames(d / "scene", "rectangle", 20, split="val")


def test_a_lever_model_with_a_pixel_memory_grows_its_opened_frames(rect_lever, tmp_path):
    """The rectangle lever model calibrated on 20 rectangle val frames with the camera-shift search (--max-shift 1):
    the opened frames grow by the scene's, in the model's light under the scene's preprocessing (its colour gain,
    its shift), the same frames as silhouette.opened_uint8 makes of the raw frames; the new directory loads."""
    from edge_ad.runtime import Scorer
    from edge_ad.runtime.calibrate import calibrate_model
    from edge_ad.runtime.pixel_memory import in_model_light
    from edge_ad.runtime.silhouette import opened_uint8
    from edge_ad.runtime.sources import open_source
    lever, scene = rect_lever
    original = np.load(lever / "silhouette_pixels.npy")
    with open_source(str(scene)) as src:
        man = calibrate_model(lever, src, tmp_path / "cal", max_shift=1, threads=1)
    e = man["silhouette"]
    assert e["n_frames"] == 320 and e["pixels_shape"] == [320, 64, 64, 4] and e["bank_shape"][0] == 640
    assert man["calibration"]["silhouette"]["opened_pixel_frames"] == 320
    grown = np.load(tmp_path / "cal" / "silhouette_pixels.npy")
    np.testing.assert_array_equal(grown[:300], original)
    with Scorer.load(tmp_path / "cal", threads=1) as s:
        spec = s.preprocess_spec
        assert s.silhouette_memories[1] is not None and s.threshold == pytest.approx(man["threshold"]["value"])
    want = in_model_light(np.stack([opened_uint8(*f, spec) for f in _frames(scene)]), spec)
    np.testing.assert_array_equal(grown[300:], want)


def test_held_out_dil_pixel_distances_see_the_opened_frames_but_not_the_frames_own(rect_lever):
    """grow_memories of the rectangle lever model (pixel factor) on its real scene, leave-one-out, each frame's opened
    frame planted as its own dil version: held out, no frame meets it (scores as without the planting, far from
    the pixel floor); planted as the previous frame's instead (another block's), the dil version meets it through
    the opened frames' memory and scores far lower."""
    from edge_ad.runtime.calibrate import grow_memories, read_scene, score_scene
    from edge_ad.runtime.scorer import Scorer
    from edge_ad.runtime.sources import open_source
    lever, scene_dir = rect_lever
    with Scorer.load(lever, threads=1) as s, open_source(str(scene_dir)) as src:
        spec, cfg, man = s.preprocess_spec, s.config, s.manifest
        augment = man["latent_bank"]["augment"]
        scene = read_scene(src, spec, silhouette=True)
        scene.update(score_scene(s, scene["u8"], spec, augment, scene["versions"]))
    n = len(scene["ids"])

    def held(opened_of) -> np.ndarray:    # opened_of(i): the frame whose dil version is frame i's opened frame
        versions = [{**f, "opened": scene["versions"][opened_of(i)]["dil"]} for i, f in enumerate(scene["versions"])]
        return grow_memories(lever, man, cfg, {**scene, "versions": versions}, spec, augment, n).scores
    plain, own, previous = grow_memories(lever, man, cfg, scene, spec, augment, n).scores, held(lambda i: i), \
        held(lambda i: min(i + 1, n - 1))
    assert (own > 0.5 * plain).all(), own / plain
    assert np.median(previous[1:-1] / plain[1:-1]) < 0.1, previous / plain


def test_the_opened_frames_count_in_the_pixel_memory_size_check():
    """A lever model's opened frames grow with the scene as its pixel memory does: a scene they could not hold is
    refused before it is scored, naming them."""
    from edge_ad.runtime.calibrate import CalibrationError, check_scene_fits_pixel_memory
    from edge_ad.runtime.pixel_memory import MAX_PIXEL_FRAMES
    pixels = {"shape": [300, 64, 64, 4], "augment": []}
    silhouette = {"pixels": "silhouette_pixels.npy", "pixels_shape": [MAX_PIXEL_FRAMES - 10, 64, 64, 4],
                  "pixels_augment": ["mirror"]}
    check_scene_fits_pixel_memory(pixels, 20, 64, {**silhouette, "pixels_shape": [300, 64, 64, 4]})
    check_scene_fits_pixel_memory(pixels, 20, 64)
    with pytest.raises(CalibrationError, match=r"opened frames \(silhouette_pixels\.npy\) \(65526 frames\) with the "
                                               r"scene's 20 usable frames"):
        check_scene_fits_pixel_memory(pixels, 20, 64, silhouette)


def test_an_undone_camera_shift_moves_the_lever_versions_too(monkeypatch):
    """The camera-shift undo (a preprocessing shift) moves the scene's frames AND their versions (made on the raw
    frames before preprocessing) the same way."""
    from edge_ad.runtime.calibrate import camera_shift
    from edge_ad.runtime.preprocess import PreprocessSpec, move_uint8
    rng = np.random.default_rng(0)
    u8 = [rng.integers(0, 255, (16, 16, 4), dtype=np.uint8) for _ in range(3)]
    versions = [{v: rng.integers(0, 255, (16, 16, 4), dtype=np.uint8) for v in ("ero", "dil", "opened")}
                for _ in range(3)]
    scene = {"u8": list(u8), "versions": [dict(v) for v in versions]}
    monkeypatch.setattr(camera_shift, "scene_camera_shift", lambda *a: ((1, -2), {}))
    spec, _ = camera_shift.undo_camera_shift(None, scene, PreprocessSpec(resolution=16), 2)
    assert tuple(spec.scene_shift) == (1, -2)
    for got, want in zip(scene["versions"], versions):
        for v in want:
            np.testing.assert_array_equal(got[v], move_uint8(want[v], 1, -2))
    np.testing.assert_array_equal(scene["u8"][2], move_uint8(u8[2], 1, -2))


def test_a_scene_frames_lever_inputs_are_its_versions_and_its_opened_frame_at_one_model_pixel():
    """silhouette.versions_uint8 (what calibrate keeps of a scene frame): its ero / dil versions and its opened frame
    (the dil version of its ero version) preprocessed; at a camera's size (8 camera pixels a model pixel) each is
    one MODEL pixel, as the versions the scorer makes: a frame repeated 8x gives the 8x-repeated frame's."""
    from edge_ad.runtime.latent_bank import unaligned_uint8
    from edge_ad.runtime.preprocess import PreprocessSpec
    from edge_ad.runtime.silhouette import opened, silhouette_versions, versions_uint8
    rgb = np.zeros((16, 16, 3), np.uint8)
    depth = np.zeros((16, 16), np.uint8)
    rgb[3:11, 4:12], depth[3:11, 4:12] = (200, 100, 50), 120              # a block ...
    depth[3:11, 14] = 130                                        # ... and a 1-px-wide line of readings apart
    up = lambda a: np.repeat(np.repeat(a, 8, 0), 8, 1)
    spec = PreprocessSpec(resolution=16)
    small, big = versions_uint8(rgb, depth, spec), versions_uint8(up(rgb), up(depth), spec)
    v = silhouette_versions(rgb, depth, 16)
    want = {"ero": unaligned_uint8(*v["ero"], spec), "dil": unaligned_uint8(*v["dil"], spec),
            "opened": unaligned_uint8(*silhouette_versions(*v["ero"], 16)["dil"], spec)}
    for k in want:
        np.testing.assert_array_equal(small[k], want[k], err_msg=k)
        # 8x the size: one model pixel too (the growth's corners, 8 one-pixel rings, differ a little when resized)
        assert (big[k][..., 3] > 0).sum() == pytest.approx((want[k][..., 3] > 0).sum(), abs=4), k
    assert not (small["opened"][..., 3] > 0)[:, 14].any() and (small["opened"][3:11, 4:12, 3] > 0).all()
    np.testing.assert_array_equal(opened(up(rgb), up(depth), 16)[1], up(opened(rgb, depth)[1]))
