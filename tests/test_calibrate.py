"""``edge-ad calibrate``: a new model directory adapted to a scene, torch-free, original untouched."""
import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

from edge_ad.runtime.calibrate import CalibrationError, calibrate_model, held_out_scores
from edge_ad.runtime.config import SearchConfig
from edge_ad.runtime.manifest import sha256_file

from conftest import copy_frames


def _digests(d):
    return {p.name: sha256_file(p) for p in sorted(d.iterdir()) if p.is_file()}


def test_held_out_scores_exclude_each_blocks_rows():
    cfg = SearchConfig(lr_theta=0, n_seed=1, k=0, z_init="encoder", score_latent_power=1.0, latent_metric="l2")
    e = np.eye(4, dtype=np.float32)
    lat = np.stack([np.stack([e[0], e[0] + 0.1]), np.stack([e[0], e[1]]), np.stack([e[2], e[2]])])  # (3, 2, 4)
    original = np.array([[0, 0, 0, 5], [0, 0, 0, 6]], np.float32)       # one training frame and its copy (A = 2)
    s = held_out_scores(np.array([1.0, 2.0, 3.0]), lat, original, cfg, blocks=3)     # leave one out
    # frame 0: nearest other row is frame 1's e0 (distance 0 -> floor); frame 2: nearest is e0/e1/e0+.1
    assert s[0] == pytest.approx(1.0 * cfg.latent_floor) and s[1] == pytest.approx(2.0 * cfg.latent_floor)
    assert s[2] == pytest.approx(3.0 * 2 / 4)      # mean((e2 - e0)^2) = 2/4, not 0 (its own rows excluded)
    s = held_out_scores(np.array([1.0, 2.0, 3.0]), lat, original, cfg, blocks=2)     # blocks [0, 1], [2]
    # frames 0 and 1 no longer see each other: nearest other row is e2 (mean((e0 - e2)^2) = 2/4)
    np.testing.assert_allclose(s, [1.0 * 0.5, 2.0 * 0.5, 3.0 * 0.5])


def test_calibrate_command_torch_free(tmp_path, kinect_export):
    scene = copy_frames(tmp_path / "scene", "rectangle", 24, start=0)
    before = _digests(kinect_export)
    out = tmp_path / "calibrated"
    code = textwrap.dedent(f"""
        import sys
        from click.testing import CliRunner
        from edge_ad.cli import main
        r = CliRunner().invoke(main, ["calibrate", "--model", {str(kinect_export)!r}, "--source", {str(scene)!r},
                                      "--out", {str(out)!r}, "--fpr", "0.1"])
        print(r.output)
        assert r.exit_code == 0, r.output
        bad = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
        assert not bad, bad
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "24 of 24 frames used" in r.stdout and "frame 10/200 read" in r.stdout
    assert "camera-shift search: 49/49 shifts scored" in r.stdout and "scene camera shift undone" in r.stdout
    assert _digests(kinect_export) == before                                      # original untouched
    man = json.loads((out / "manifest.json").read_text())
    orig = json.loads((kinect_export / "manifest.json").read_text())
    assert set(man["files"]) == set(orig["files"])
    assert all(sha256_file(out / f) == h for f, h in man["files"].items())
    c = man["calibration"]
    assert c["source"] == str(scene) and c["frames_used"] == 24 and c["target_fpr"] == 0.1 and c["date"]
    A = 1 + len(orig["latent_bank"].get("augment") or [])
    bank = np.load(out / "latent_bank.npy")
    assert bank.shape[0] == orig["latent_bank"]["shape"][0] + 24 * A and man["latent_bank"]["shape"] == list(bank.shape)
    assert np.array_equal(bank[:orig["latent_bank"]["shape"][0]], np.load(kinect_export / "latent_bank.npy"))
    from edge_ad.runtime import Scorer
    from edge_ad.runtime.sources.folder import list_ids, read_pair
    sc = Scorer.load(out)
    assert sc.threshold == pytest.approx(man["threshold"]["value"]) and man["threshold"]["target_fpr"] == 0.1
    # held out: the threshold sits above what the frames score once they are in the bank
    in_bank = [sc.score(*read_pair(scene, i)).score for i in list_ids(scene)]
    assert sc.threshold > np.quantile(in_bank, 0.9)
    assert sc.threshold > 0


def test_calibrated_threshold_never_below_the_models_own(tmp_path, kinect_export):
    """Scene frames already in the bank score low: the scene's quantile falls below the model's threshold
    (set at 5 % on its val normals), which then stays the threshold at --fpr <= 5 %, not at 10 %."""
    from edge_ad.runtime import Scorer
    from edge_ad.runtime.sources import open_source
    scene = copy_frames(tmp_path / "scene", "rectangle", 24, start=0)     # train frames: in the bank
    own = Scorer.load(kinect_export).threshold
    man = {}
    for name, fpr, floor in (("floor", 0.05, True), ("nofloor", 0.05, False), ("fpr10", 0.1, True)):
        with open_source(str(scene)) as src:
            man[name] = calibrate_model(kinect_export, src, tmp_path / name, fpr=fpr, floor=floor)
    c = man["floor"]["calibration"]
    assert c["threshold_scene"] < own and c["threshold_floor"] == pytest.approx(own)
    assert man["floor"]["threshold"]["value"] == pytest.approx(own)
    assert Scorer.load(tmp_path / "floor").threshold == pytest.approx(own)
    assert man["nofloor"]["threshold"]["value"] == pytest.approx(c["threshold_scene"])
    assert man["nofloor"]["calibration"]["threshold_floor"] is None
    assert man["fpr10"]["calibration"]["threshold_floor"] is None          # 5 % is no bound for a 10 % threshold
    assert man["fpr10"]["threshold"]["value"] < own
    # a calibrated directory carries the model's own threshold, and re-calibrating it floors at that one
    assert man["nofloor"]["threshold"]["model_threshold"]["value"] == pytest.approx(own)
    with open_source(str(scene)) as src:
        again = calibrate_model(tmp_path / "nofloor", src, tmp_path / "again", fpr=0.05)
    assert again["calibration"]["threshold_floor"] == pytest.approx(own)
    assert again["threshold"]["model_threshold"]["value"] == pytest.approx(own)


def test_floor_of_a_calibrated_manifest_is_the_models_threshold_not_the_last_scenes():
    """Re-calibrating for another scene must not ratchet the floor up to the previous scene's threshold."""
    from edge_ad.runtime.calibrate import model_threshold_floor
    own = {"value": 1.0, "target_fpr": 0.05}
    scene = {"value": 9.0, "target_fpr": 0.05, "source": "edge-ad calibrate", "model_threshold": own}
    assert model_threshold_floor({"threshold": own}, 0.05) == 1.0
    assert model_threshold_floor({"threshold": scene}, 0.05) == 1.0
    assert model_threshold_floor({"threshold": scene}, 0.01) == 1.0
    assert model_threshold_floor({"threshold": scene}, 0.10) is None        # 5 % is no bound at 10 %
    old = {k: v for k, v in scene.items() if k != "model_threshold"}        # calibrated before it was carried
    assert model_threshold_floor({"threshold": old}, 0.05) is None


def test_calibrate_refuses_few_frames_bad_out(tmp_path, kinect_export):
    from edge_ad.cli import main
    scene = copy_frames(tmp_path / "scene", "rectangle", 4)
    (scene / "rgb" / "broken.png").write_bytes(b"not a png")
    (scene / "depth" / "broken.png").write_bytes(b"not a png")
    r = CliRunner().invoke(main, ["calibrate", "--model", str(kinect_export), "--source", str(scene),
                                  "--out", str(tmp_path / "o")])
    assert r.exit_code != 0 and "only 4 usable frames of 5 read (1 unreadable, 0 could not be scored)" in r.output
    assert not (tmp_path / "o").exists()
    for out in (kinect_export, scene):
        with pytest.raises(CalibrationError, match="NEW directory|not empty"):
            calibrate_model(kinect_export, [], out)


def test_shipped_model_flags_anomalies_out_of_the_box(tmp_path, kinect_export):
    """export (no threshold flag) -> manifest threshold = the checkpoint's calibrated one ->
    edge-ad run --model flags frames with no extra step."""
    from edge_ad.commands import run as run_cmd
    from edge_ad.models.checkpoint import read_checkpoint
    from edge_ad.runtime import Scorer
    from conftest import REPO
    thr = read_checkpoint(REPO / "models" / "kinect-rgbd" / "rectangle.pt")["scoring"]["threshold"]
    assert Scorer.load(kinect_export).threshold == pytest.approx(thr["value"])
    frames = copy_frames(tmp_path / "f", "sphere", 4)
    r = CliRunner().invoke(run_cmd.cmd, ["--source", str(frames), "--model", str(kinect_export),
                                         "--out", str(tmp_path / "r.jsonl")])
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    rows = [x for x in rows if x.get("type") == "frame"]
    assert len(rows) == 4 and all(x["threshold"] == pytest.approx(thr["value"]) for x in rows)
    assert all(x["anomalous"] is (x["score"] > thr["value"]) for x in rows) and any(x["anomalous"] for x in rows)


def test_scene_colour_gain_maps_the_scenes_brightness_to_the_train_frames():
    from edge_ad.runtime.calibrate import scene_colour_gain
    from edge_ad.runtime.preprocess import PreprocessSpec, normalize_uint8
    u8 = np.zeros((3, 8, 8, 4), np.uint8)
    u8[:, 2:6, 2:6] = (80, 100, 120, 50)                     # foreground; background stays 0 (ignored)
    spec = PreprocessSpec(resolution=8, colour_reference=(0.4, 0.5, 0.6))
    gain = scene_colour_gain(list(u8), spec)
    np.testing.assert_allclose(gain, (0.5 * 255 / 100,) * 3, rtol=1e-3)    # mean brightness 100 -> 0.5 * 255
    x = normalize_uint8(u8[0], PreprocessSpec(resolution=8, colour_reference=(0.4, 0.5, 0.6), colour_gain=gain))
    np.testing.assert_allclose(((x[:3, 3, 3] + 1) / 2).mean(), 0.5, atol=2e-3)     # as bright as the train frames
    assert (x[:, 0, 0] == -1).all()                                                  # background untouched
    assert scene_colour_gain(list(u8), PreprocessSpec(resolution=8)) is None          # no reference: no gain


def _shifted_scene(dst, src, dy: int, dx: int):
    """A frame folder ``dst`` with ``src``'s frames as the camera saw them moved by (dy, dx) raw pixels
    (runtime.nuisance.Shift; kinect-rgbd frames are at the model's resolution, 64 x 64)."""
    from PIL import Image
    from edge_ad.runtime.nuisance import Shift
    from edge_ad.runtime.sources.folder import list_ids, read_pair
    (dst / "rgb").mkdir(parents=True)
    (dst / "depth").mkdir()
    for i in list_ids(src):
        rgb, depth = Shift(dy, dx)(*read_pair(src, i))
        Image.fromarray(rgb).save(dst / "rgb" / f"{i}.png")
        Image.fromarray(depth).save(dst / "depth" / f"{i}.png")
    return dst


def test_calibrate_finds_and_undoes_the_scenes_camera_shift(tmp_path, kinect_export):
    """24 unseen rectangle frames seen by a camera moved by (2, -2) px: calibrate finds the shift under
    which the model fits them best, (-2, 2), stores it as preprocess scene_shift (manifest and record),
    and the calibrated model preprocesses a moved frame as the original model does the unmoved one;
    the same frames unmoved keep (0, 0); --max-shift 0 searches nothing."""
    from edge_ad.runtime import Scorer
    from edge_ad.runtime.calibrate import calibrate_model
    from edge_ad.runtime.preprocess import frame_to_uint8
    from edge_ad.runtime.sources import open_source
    from edge_ad.runtime.sources.folder import list_ids, read_pair
    plain = copy_frames(tmp_path / "plain", "rectangle", 24, start=300)          # not train frames
    moved = _shifted_scene(tmp_path / "moved", plain, 2, -2)
    r1 = tmp_path / "r1"              # the same model with a shift-min (R = 1), whose window the search could move
    shutil.copytree(kinect_export, r1)
    man = json.loads((r1 / "manifest.json").read_text())
    man["search"]["score_shift_radius"] = 1
    man.pop("threshold", None)
    (r1 / "manifest.json").write_text(json.dumps(man))
    outs = {}
    for name, model, scene, radius in (("moved", kinect_export, moved, 3), ("plain", kinect_export, plain, 3),
                                       ("off", kinect_export, moved, 0), ("plain-r1", r1, plain, 3)):
        with open_source(str(scene)) as src:
            outs[name] = calibrate_model(model, src, tmp_path / f"cal-{name}", fpr=0.1, max_shift=radius)
    assert outs["moved"]["preprocess"]["scene_shift"] == [-2, 2]
    assert outs["moved"]["calibration"]["scene_shift"]["scene_shift"] == [-2, 2]
    c = outs["moved"]["calibration"]["scene_shift"]
    assert c["radius"] == 3 and c["mean_log_score_best"] < c["mean_log_score_unshifted"]
    assert outs["plain"]["preprocess"]["scene_shift"] == [0, 0]
    c = outs["plain-r1"]["calibration"]["scene_shift"]      # a small gain from moving R = 1's window: not taken
    assert outs["plain-r1"]["preprocess"]["scene_shift"] == [0, 0] and c["mean_log_score_best"] == c["mean_log_score_unshifted"]
    assert outs["off"]["preprocess"]["scene_shift"] == [0, 0] and outs["off"]["calibration"]["scene_shift"] is None
    cal, orig = Scorer.load(tmp_path / "cal-moved"), Scorer.load(kinect_export)
    i = list_ids(plain)[0]
    u_moved = frame_to_uint8(*read_pair(moved, i), cal.preprocess_spec)
    u_plain = frame_to_uint8(*read_pair(plain, i), orig.preprocess_spec)
    inner = (slice(2, -2), slice(2, -2))                 # away from the borders both shifts vacated
    assert np.array_equal(u_moved[inner], u_plain[inner])


def test_scene_shift_field_moves_the_frame_and_is_checked():
    """preprocess scene_shift moves the resized frame by (dy, dx) (vacated pixels background); older
    manifests without it mean (0, 0); a fractional or large shift is refused naming the field."""
    from edge_ad.runtime.preprocess import PreprocessSpec, frame_to_uint8
    base = PreprocessSpec().to_dict()
    assert PreprocessSpec.from_dict({k: v for k, v in base.items() if k != "scene_shift"}).scene_shift == (0, 0)
    spec = PreprocessSpec.from_dict({**base, "scene_shift": [2, -1]})
    assert PreprocessSpec.from_dict(spec.to_dict()) == spec and spec.to_dict()["scene_shift"] == [2, -1]
    rgb, depth = np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64), np.uint8)
    rgb[10, 10], depth[10, 10] = 200, 100
    u8 = frame_to_uint8(rgb, depth, spec)
    assert np.argwhere(u8[..., 3] > 0).tolist() == [[12, 9]] and (u8[12, 9, :3] == 200).all()
    for bad in ([2.5, 0], [9, 0], [1]):
        with pytest.raises(ValueError, match="scene_shift"):
            PreprocessSpec.from_dict({**base, "scene_shift": bad})


def test_camera_shift_search_skipped_for_centroid_aligned_models():
    """A model that aligns the foreground's centroid undoes shifts itself: nothing is scored, (0, 0)."""
    from edge_ad.runtime.calibrate import scene_camera_shift
    from edge_ad.runtime.preprocess import PreprocessSpec

    class NeverScores:
        def score_input(self, *a, **k):
            raise AssertionError("scored")
    spec = PreprocessSpec(align="centroid")
    assert scene_camera_shift(NeverScores(), [np.zeros((64, 64, 4), np.uint8)], spec, 3)[0] == (0, 0)
