"""The nuisances of the robustness suite (runtime/nuisance/, torch-free) and ``edge-ad eval --nuisance``."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from edge_ad.runtime import nuisance as nu


def _frame(h=16, w=16, seed=0):
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    depth = rng.integers(1, 256, (h, w), dtype=np.uint8)
    depth[:4] = 0                                  # background rows
    rgb[:4] = 0
    return rgb, depth


ALL = ["brightness:1.25", "brightness:0.75", "wb:1.15,1,0.85", "shift:2", "shift:1,-3", "mirror", "rgb-noise:8",
       "depth-noise:10", "depth-offset:30", "brightness:1.2+shift:2+depth-offset:-20",
       "gamma:0.8", "gamma:1.25", "offset:+30", "offset:-30", "contrast:0.8", "contrast:1.2", "blur:1", "jpeg:40",
       "depth-holes:0.2", "rotate:3", "rotate:-10", "scale:1.2", "scale:0.8", "gamma:0.8+blur:1+rotate:5+depth-holes:0.1",
       "fg-blur:1", "fg-rotate:5", "fg-scale:0.8", "gamma:0.8+fg-blur:1+fg-scale:1.1", "depth-edge-spurs:0.3",
       "light-ramp:0.2,30", "shadow:0.3,0", "sharpen:1", "rgb-shift:0.5,-1", "depth-band:3", "flicker-band:8,0.5", "cable:3,1"]


@pytest.mark.parametrize("text", ALL)
def test_nuisance_returns_new_arrays_same_contract_seeded(text):
    rgb, depth = _frame()
    rgb0, depth0 = rgb.copy(), depth.copy()
    n = nu.parse_nuisance(text)
    r1, d1 = n(rgb, depth, nu.frame_rng(3, 7))
    assert np.array_equal(rgb, rgb0) and np.array_equal(depth, depth0)          # inputs untouched
    assert r1.dtype == np.uint8 and r1.shape == rgb.shape and d1.dtype == depth.dtype and d1.shape == depth.shape
    assert not np.shares_memory(r1, rgb) and not np.shares_memory(d1, depth)
    r2, d2 = n(rgb, depth, nu.frame_rng(3, 7))
    assert np.array_equal(r1, r2) and np.array_equal(d1, d2)                      # same seed, same frame
    assert not (np.array_equal(r1, rgb) and np.array_equal(d1, depth))            # it does something
    assert isinstance(n.name, str) and n.name


def test_photometric_nuisances_exact():
    rgb, depth = _frame()
    r, d = nu.Brightness(1.25)(rgb, depth)
    assert np.array_equal(r, np.clip(np.rint(rgb * 1.25), 0, 255).astype(np.uint8)) and np.array_equal(d, depth)
    r, _ = nu.WhiteBalance((1.0, 0.5, 2.0))(rgb, depth)
    assert np.array_equal(r[..., 0], rgb[..., 0])
    assert np.array_equal(r[..., 1], np.rint(rgb[..., 1] * 0.5).astype(np.uint8))
    assert np.array_equal(r[..., 2], np.clip(np.rint(rgb[..., 2] * 2.0), 0, 255).astype(np.uint8))


def test_geometric_nuisances_exact():
    rgb, depth = _frame()
    r, d = nu.Shift(2, -1)(rgb, depth)
    assert np.array_equal(r[2:, :-1], rgb[:-2, 1:]) and np.array_equal(d[2:, :-1], depth[:-2, 1:])
    assert not r[:2].any() and not d[:, -1].any()                                 # vacated = background
    r, d = nu.Mirror()(rgb, depth)
    assert np.array_equal(r, rgb[:, ::-1]) and np.array_equal(nu.Mirror()(r, d)[1], depth)
    shifts = set()                                           # a one-pixel object moves by exactly 2 px

    for i in range(40):
        _, d = nu.RandomShift(2)(np.zeros((9, 9, 3), np.uint8), np.pad(np.ones((1, 1), np.uint8), 4),
                                 nu.frame_rng(0, i))
        (y, x), = np.argwhere(d)
        shifts.add((y - 4, x - 4))
    assert all(max(abs(a), abs(b)) == 2 for a, b in shifts) and len(shifts) > 4


def test_depth_nuisances_keep_background_and_units():
    rgb, depth = _frame()
    _, d = nu.DepthNoise(50)(rgb, depth, nu.frame_rng(0, 0))
    assert np.array_equal(d == 0, depth == 0) and d.min() == 0 and d[depth > 0].min() >= 1
    _, d = nu.DepthOffset(20 * 700 / 255)(rgb, depth)        # 20 8-bit levels of kinect-rgbd (0..700 mm)
    fg = (depth > 0) & (depth < 200)
    assert np.array_equal(d[fg].astype(int) - depth[fg], np.full(fg.sum(), 20)) and not d[depth == 0].any()
    mm = np.where(depth > 0, depth.astype(np.uint16) * 3, 0).astype(np.uint16)
    _, d = nu.DepthOffset(70)(rgb, mm)
    assert d.dtype == np.uint16 and np.array_equal(d[mm > 0], mm[mm > 0] + 70)


def test_parse_errors_name_the_syntax():
    for bad in ("", "sparkle:3", "brightness", "wb:1,2", "shift:1.5", "brightness:-1"):
        with pytest.raises(ValueError, match="syntax"):
            nu.parse_nuisance(bad)
    with pytest.raises(ValueError, match="uint8"):
        nu.Mirror()(np.zeros((4, 4, 3), np.float32), np.zeros((4, 4), np.uint8))


# ---- the wider set (gamma, offset, contrast, blur, jpeg, depth-holes, rotate, scale) ------------------------

NEW = ["gamma:0.8", "offset:30", "contrast:1.2", "blur:1.5", "jpeg:30", "depth-holes:0.3", "rotate:7", "scale:1.3",
       "scale:0.7"]


def _mm_frame(h=24, w=20, seed=2):
    """A frame with uint16 millimetre depth: readings 400..3000 mm, a background band and a background hole."""
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    depth = rng.integers(400, 3000, (h, w)).astype(np.uint16)
    depth[:5] = 0
    depth[12:15, 8:11] = 0
    return rgb, depth


@pytest.mark.parametrize("text", NEW)
@pytest.mark.parametrize("frame", [_frame, _mm_frame], ids=["depth8", "depth16"])
def test_new_nuisances_keep_depth_readings_and_background(text, frame):
    """Photometric ones leave depth as it is; depth-holes only removes readings; rotate / scale only move
    readings (no new depth value, background 0 where nothing lands). Both depth dtypes."""
    rgb, depth = frame()
    r, d = nu.parse_nuisance(text)(rgb, depth, nu.frame_rng(0, 1))
    assert r.dtype == np.uint8 and r.shape == rgb.shape and d.dtype == depth.dtype and d.shape == depth.shape
    kind = text.split(":")[0]
    if kind in ("gamma", "offset", "contrast", "blur", "jpeg"):
        assert np.array_equal(d, depth)
    elif kind == "depth-holes":
        assert np.array_equal(r, rgb) and not d[depth == 0].any()                 # no reading created
        assert np.array_equal(d[d > 0], depth[d > 0]) and (d == 0).sum() > (depth == 0).sum()
    else:
        assert set(np.unique(d[d > 0])) <= set(np.unique(depth[depth > 0]))       # nearest: values only moved
        assert (d == 0).any()                                                     # vacated / background


def test_tone_nuisances_exact():
    rgb, depth = _frame()
    v = rgb.astype(float)
    for n in (nu.Gamma(1.0), nu.Offset(0), nu.Contrast(1.0), nu.Blur(0)):        # neutral settings: identity
        r, d = n(rgb, depth)
        assert np.array_equal(r, rgb) and np.array_equal(d, depth), n.name
    assert np.array_equal(nu.Gamma(0.5)(rgb, depth)[0], np.rint(255 * np.sqrt(v / 255)).astype(np.uint8))
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, 2)
    dark = nu.Gamma(2.0)(levels, np.ones((16, 16), np.uint8))[0][..., 0].ravel().astype(int)
    assert dark[0] == 0 and dark[255] == 255 and (np.diff(dark) >= 0).all() and (dark <= np.arange(256)).all()
    assert dark[128] == round(255 * (128 / 255) ** 2)
    assert np.array_equal(nu.Offset(30)(rgb, depth)[0], np.clip(v + 30, 0, 255).astype(np.uint8))
    assert np.array_equal(nu.Offset(-30)(rgb, depth)[0], np.clip(v - 30, 0, 255).astype(np.uint8))
    assert np.array_equal(nu.Contrast(1.5)(rgb, depth)[0],
                          np.clip(np.rint((v - 128) * 1.5 + 128), 0, 255).astype(np.uint8))
    assert (nu.Contrast(0.0)(rgb, depth)[0] == 128).all()


def test_blur_keeps_constant_lowers_noise_and_has_the_gaussian_response():
    _, depth = _frame(20, 24)
    flat = np.full((20, 24, 3), 77, np.uint8)
    r, d = nu.Blur(1.5)(flat, depth)
    assert np.array_equal(r, flat) and np.array_equal(d, depth)                     # edges too (border repeated)
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    blurred = nu.Blur(1.0)(noise, np.ones((64, 64), np.uint8))[0]
    assert blurred.astype(float).var() < 0.25 * noise.astype(float).var()
    assert abs(blurred.astype(float).mean() - noise.astype(float).mean()) < 1.0
    impulse = np.zeros((21, 21, 3), np.uint8)
    impulse[10, 10] = 255
    x = np.arange(-3, 4)                                        # sigma 1: radius ceil(3 sigma) = 3
    k = np.exp(-x ** 2 / 2.0) / np.exp(-x ** 2 / 2.0).sum()
    want = np.zeros((21, 21))
    want[7:14, 7:14] = 255 * np.outer(k, k)
    r = nu.Blur(1.0)(impulse, np.ones((21, 21), np.uint8))[0]
    assert np.array_equal(r[..., 0], np.rint(want).astype(np.uint8)) and np.array_equal(r[..., 0], r[..., 2])
    assert len(nu.gaussian_kernel(2.0)) == 13 and nu.gaussian_kernel(2.0).sum() == pytest.approx(1.0)


def test_jpeg_is_lossy_by_quality():
    yy, xx = np.mgrid[0:48, 0:64]
    smooth = np.stack([xx * 3, yy * 4, (xx + yy) * 2], -1).astype(np.uint8)      # gradients: JPEG-friendly
    depth = np.ones((48, 64), np.uint8)
    err = {q: np.abs(nu.Jpeg(q)(smooth, depth)[0].astype(int) - smooth).mean() for q in (10, 95)}
    assert 0 < err[95] < 2.0 and err[10] > 2 * err[95]
    assert np.array_equal(nu.Jpeg(10)(smooth, depth)[1], depth)


def test_depth_holes_drop_about_the_fraction_and_never_create_readings():
    rng = np.random.default_rng(3)
    depth = np.where(rng.random((200, 200)) < 0.75, rng.integers(1, 256, (200, 200)), 0).astype(np.uint8)
    rgb = rng.integers(0, 256, (200, 200, 3), dtype=np.uint8)
    readings = depth > 0
    r, d = nu.DepthHoles(0.3)(rgb, depth, nu.frame_rng(0, 0))
    dropped = readings & (d == 0)
    assert abs(dropped.sum() / readings.sum() - 0.3) < 0.02                        # 30000 readings: ~7 sigma
    assert not d[~readings].any() and np.array_equal(d[d > 0], depth[d > 0]) and np.array_equal(r, rgb)
    other = nu.DepthHoles(0.3)(rgb, depth, nu.frame_rng(0, 1))[1]
    assert not np.array_equal(other, d)                                            # drawn from rng
    assert np.array_equal(nu.DepthHoles(0.0)(rgb, depth, nu.frame_rng(0, 0))[1], depth)
    assert not nu.DepthHoles(1.0)(rgb, depth, nu.frame_rng(0, 0))[1].any()


@pytest.mark.parametrize("size", [8, 9])
def test_rotate_right_angles_equal_rot90(size):
    """Positive angles turn the content counter-clockwise as displayed (np.rot90's direction)."""
    rgb, depth = _frame(size, size, seed=size)
    for deg, k in ((0, 0), (90, 1), (180, 2), (270, 3), (-90, -1), (360, 0)):
        r, d = nu.Rotate(deg)(rgb, depth)
        assert np.array_equal(r, np.rot90(rgb, k)) and np.array_equal(d, np.rot90(depth, k)), deg


def test_rotate_non_square_vacates_to_background_and_small_angles_move_a_point():
    rgb, depth = _frame(6, 10)
    depth = np.maximum(depth, 1)                                   # every pixel a reading
    rgb = np.maximum(rgb, 1)
    r, d = nu.Rotate(90)(rgb, depth)
    assert np.array_equal(d[:, 2:8], np.rot90(depth[:, 2:8])) and np.array_equal(r[:, 2:8], np.rot90(rgb[:, 2:8]))
    assert not d[:, :2].any() and not d[:, 8:].any() and not r[:, :2].any() and not r[:, 8:].any()
    rgb, depth = _frame(6, 9, seed=4)                              # centre (2.5, 4): sources on half pixels
    depth = np.maximum(depth, 1)
    for deg in (90, 90 + 360, -270):                               # the same turn: the same frame
        _, d = nu.Rotate(deg)(rgb, depth)                          # ties resolved alike on every row
        assert np.array_equal(d[:, 1:7], np.rot90(depth[:, 2:8])) and not d[:, [0, 7, 8]].any(), deg
    point = np.zeros((41, 41), np.uint8)
    point[20, 30] = 200                                            # 10 px right of the centre (20, 20)
    _, d = nu.Rotate(30)(np.zeros((41, 41, 3), np.uint8), point)
    ys, xs = np.nonzero(d)                                         # lands near (20 - 10 sin 30, 20 + 10 cos 30)
    assert len(ys) >= 1 and np.abs(ys - 15).max() <= 1 and np.abs(xs - 28.66).max() <= 1.5 and (d[ys, xs] == 200).all()


def test_scale_zooms_about_the_centre():
    rgb, depth = _frame(8, 8, seed=5)
    depth = np.maximum(depth, 1)
    r, d = nu.Scale(1.0)(rgb, depth)
    assert np.array_equal(r, rgb) and np.array_equal(d, depth)
    _, d = nu.Scale(2.0)(rgb, depth)                               # the central 4 x 4, each pixel doubled
    assert np.array_equal(d, np.repeat(np.repeat(depth[2:6, 2:6], 2, 0), 2, 1))
    r, d = nu.Scale(0.5)(np.maximum(rgb, 1), depth)                # every other pixel, padded with background
    assert np.array_equal(d[2:6, 2:6], depth[1::2, 1::2])
    ring = np.ones((8, 8), bool)
    ring[2:6, 2:6] = False
    assert not d[ring].any() and not r[ring].any() and r[~ring].all()
    flat = np.full((30, 30, 3), 90, np.uint8)
    r, d = nu.Scale(1.3)(flat, np.ones((30, 30), np.uint8))
    assert (r == 90).all() and (d == 1).all()                      # zoom in: nothing vacated, bilinear of a constant


def test_rgb_shift_moves_the_colour_against_the_depth_on_real_frames(val_frame):
    """rgb-shift:DY,DX (audit 34 #1: a colour camera registered off the depth): the RGB as captured moved by (DY, DX)
    raw pixels, bilinear between whole-pixel moves, the border pixels entering from beyond the frame; depth unchanged.
    On kinect-rgbd's masked captures the background's black enters the silhouette on the side the colour left."""
    rng = nu.frame_rng(0, 0)
    for cls, i in (("sphere", 0), ("rectangle", 5), ("cylinder", 9)):
        f = val_frame(cls, i)
        rgb, depth = f["rgb"], f["depth"]
        n = nu.parse_nuisance("rgb-shift:1,0")
        assert n == nu.RgbShift(1.0, 0.0) and n.name == "rgb-shift +1,+0 px"
        r, d = n(rgb, depth, rng)
        assert np.array_equal(d, depth) and d is not depth
        assert np.array_equal(r[1:], rgb[:-1]) and np.array_equal(r[0], rgb[0])        # down; the top row repeated
        r, _ = nu.parse_nuisance("rgb-shift:0,-2")(rgb, depth, rng)
        assert np.array_equal(r[:, :-2], rgb[:, 2:]) and np.array_equal(r[:, -2:], rgb[:, -1:].repeat(2, 1))
        r, _ = nu.parse_nuisance("rgb-shift:0.5,0")(rgb, depth, rng)
        half = np.clip(np.rint((rgb[1:].astype(np.float64) + rgb[:-1]) / 2), 0, 255).astype(np.uint8)
        assert np.array_equal(r[1:], half), f["id"]
        # the silhouette's top row (a reading below a pixel without one) now shows the background's black
        fg = depth > 0
        top = fg.copy()
        top[1:] &= ~fg[:-1]
        top[0] = False
        r, _ = nu.parse_nuisance("rgb-shift:1,0")(rgb, depth, rng)
        assert top.sum() >= 10 and r[top].mean() < rgb[top].mean() / 2, (f["id"], r[top].mean(), rgb[top].mean())
    assert nu.too_large_for(nu.RgbShift(0.0, 63.5), 64, 64) and nu.too_large_for(nu.RgbShift(-63.0, 0.0), 64, 64) is None
    with pytest.raises(ValueError, match="takes two shifts"):
        nu.parse_nuisance("rgb-shift:1")


def test_parse_new_kinds_and_their_errors():
    assert nu.parse_nuisance("offset:+30") == nu.Offset(30.0)                   # '+' before a number is its sign
    assert nu.parse_nuisance("gamma:0.8+offset:+30") == nu.Compose((nu.Gamma(0.8), nu.Offset(30.0)))
    assert nu.parse_nuisance("jpeg:40") == nu.Jpeg(40) and nu.parse_nuisance("scale:1.05") == nu.Scale(1.05)
    assert nu.parse_nuisance("depth-holes:0.05") == nu.DepthHoles(0.05)
    assert nu.parse_nuisance("rotate:-3") == nu.Rotate(-3.0) and nu.parse_nuisance("blur:1") == nu.Blur(1.0)
    assert nu.parse_nuisance("contrast:0.8") == nu.Contrast(0.8)
    names = [nu.parse_nuisance(t).name for t in ALL]
    assert len(set(names)) == len(names)                           # the suite is keyed by name
    for bad, why in (("gamma:0", "> 0"), ("gamma:-1", "> 0"), ("gamma:0.8,1", "exponent"), ("scale:-1", "> 0"),
                     ("scale:0", "> 0"), ("blur:abc", "'abc' is not a number"), ("blur:-1", ">= 0"),
                     ("contrast:-0.5", ">= 0"), ("jpeg:0", "1..100"), ("jpeg:101", "1..100"),
                     ("jpeg:50.5", "integer"), ("depth-holes:1.5", "0..1"), ("depth-holes:-0.1", "0..1"),
                     ("rotate:nan", "finite"), ("offset:inf", "finite"), ("rotate", "degrees"),
                     ("gamma:0.8+blur:x", "'x' is not a number")):
        with pytest.raises(ValueError, match="syntax") as e:
            nu.parse_nuisance(bad)
        assert why in str(e.value) and f"cannot read nuisance '{bad.split('+')[-1]}'" in str(e.value), bad


def test_eval_nuisance_set_with_new_kinds(tmp_path, kinect_root, tiny_generator):
    """`edge-ad eval --nuisance-set gamma:0.8 --nuisance-set blur:1` end to end (tiny model, 4 frames a class)."""
    from edge_ad.cli import main
    from edge_ad.models import save_checkpoint
    from edge_ad.runtime.preprocess import PreprocessSpec
    save_checkpoint(tmp_path / "g.pt", tiny_generator, preprocess=PreprocessSpec())
    r = CliRunner().invoke(main, ["eval", "--model", str(tmp_path / "g.pt"), "--data", str(kinect_root),
                                  "--class", "rectangle", "--max-per-class", "4", "--k", "0", "--n-seed", "1",
                                  "--no-baselines", "--nuisance-set", "gamma:0.8", "--nuisance-set", "blur:1",
                                  "--out", str(tmp_path / "ev")])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "ev" / "report.json").read_text())["nuisance"]
    assert list(rep["conditions"]) == ["clean", "gamma 0.8", "blur 1 px"]
    clean = rep["conditions"]["clean"]["scores"]
    for label in ("gamma 0.8", "blur 1 px"):
        row = rep["conditions"][label]
        assert 0.0 <= row["auroc"] <= 1.0 and set(row["scores"]) == {"rectangle", "cylinder", "sphere"}
        assert not np.allclose(row["scores"]["rectangle"], clean["rectangle"])   # the frames were changed
    assert "gamma 0.8" in r.output and "blur 1 px" in r.output


def test_nuisance_suite_metrics_on_a_toy_score():
    """A score that is the mean RGB brightness: brightening every frame moves normal frames over the
    threshold (false alarms) and a mirror changes nothing."""
    from edge_ad.models.evaluate import nuisance_suite
    from edge_ad.runtime.preprocess import PreprocessSpec
    spec = PreprocessSpec(resolution=16)

    def group(level, n=20):
        out = []
        for i in range(n):
            rgb = np.full((16, 16, 3), level + i, np.uint8)
            out.append((rgb, np.full((16, 16), 100, np.uint8)))
        return out
    raw = {"dark": group(60), "bright": group(120)}
    score = lambda X: X[:, :3].mean((1, 2, 3))            # noqa: E731
    res = nuisance_suite(score, raw, "dark", {"bright": nu.Brightness(1.6), "mirror": nu.Mirror()},
                         spec, threshold=77.5 / 127.5 - 1, baseline_fn=score)   # levels 78, 79 flagged
    c = res["conditions"]
    assert list(c) == ["clean", "bright", "mirror"]
    assert c["clean"]["auroc"] == 1.0 and c["clean"]["false_alarm_rate"] == pytest.approx(2 / 20)
    assert c["clean"]["anomalies_flagged"] == 1.0 and c["mirror"] == c["clean"]
    assert c["bright"]["false_alarm_rate"] == 1.0 and c["bright"]["baseline_auroc"] == c["bright"]["auroc"]
    assert res["mean"]["false_alarm_rate"] == pytest.approx((0.1 + 1.0 + 0.1) / 3)
    assert res["worst"]["false_alarm_rate"] == 1.0
    # per-frame scores are kept per group, so rates at any other threshold can be read off later
    assert c["clean"]["scores"]["dark"] == pytest.approx([(60 + i) / 127.5 - 1 for i in range(20)], abs=1e-6)
    assert c["bright"]["scores"]["bright"] == pytest.approx([min(255, round((120 + i) * 1.6)) / 127.5 - 1
                                                             for i in range(20)], abs=1e-6)


def test_eval_nuisance_command(tmp_path, kinect_root, tiny_generator):
    from edge_ad.cli import main
    from edge_ad.models import save_checkpoint
    from edge_ad.runtime.preprocess import PreprocessSpec
    save_checkpoint(tmp_path / "g.pt", tiny_generator, preprocess=PreprocessSpec())
    r = CliRunner().invoke(main, ["eval", "--model", str(tmp_path / "g.pt"), "--data", str(kinect_root),
                                  "--class", "rectangle", "--max-per-class", "4", "--k", "0", "--n-seed", "1",
                                  "--nuisance-set", "mirror", "--nuisance-set", "brightness:1.25+shift:2",
                                  "--out", str(tmp_path / "ev")])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "ev" / "report.json").read_text())["nuisance"]
    assert list(rep["conditions"]) == ["clean", "mirror", "brightness +25% + shift 2 px"]
    clean = rep["conditions"]["clean"]
    assert clean["auroc"] == pytest.approx(json.loads((tmp_path / "ev" / "report.json").read_text())
                                           ["metrics"]["overall"]["auroc"])
    assert "baseline_auroc" in clean and "calibrated now" in rep["threshold_source"]
    plain = json.loads((tmp_path / "ev" / "report.json").read_text())["scores"]
    assert set(clean["scores"]) == set(plain) == {"rectangle", "cylinder", "sphere"}
    for group, values in plain.items():
        assert clean["scores"][group] == pytest.approx(values, rel=1e-5)
    assert "mean (clean + nuisances)" in r.output and "false alarms" in r.output
    r = CliRunner().invoke(main, ["eval", "--model", str(tmp_path / "g.pt"), "--data", str(kinect_root),
                                  "--class", "rectangle", "--nuisance-set", "blur:abc", "--out", str(tmp_path / "x")])
    assert r.exit_code != 0 and "syntax" in r.output and "'abc' is not a number" in r.output


def _object_frame():
    """A 32 x 32 frame with a textured object well inside the border, background 0."""
    rng = np.random.default_rng(1)
    rgb = np.zeros((32, 32, 3), np.uint8)
    depth = np.zeros((32, 32), np.uint8)
    rgb[8:22, 10:24] = rng.integers(40, 180, (14, 14, 3))
    depth[8:22, 10:24] = rng.integers(60, 90, (14, 14))
    return rgb, depth


def test_preprocess_defaults_keep_old_exports_identical():
    from edge_ad.runtime.preprocess import PreprocessSpec, preprocess
    old = {"resolution": 32, "mean": 0.5, "std": 0.5, "near_mm": 0.0, "far_mm": 700.0,
           "mask_rgb_background": True, "channels": ["R", "G", "B", "D"]}          # a manifest before issue 12
    spec = PreprocessSpec.from_dict(old)
    assert spec.colour_norm == "none" and spec.align == "none"
    rgb, depth = _object_frame()
    x = preprocess(rgb, depth, spec)
    want = (np.concatenate([rgb, depth[..., None]], 2).astype(np.float32) / 255 - 0.5) / 0.5
    np.testing.assert_array_equal(x, np.moveaxis(want, -1, 0))
    assert PreprocessSpec.from_dict(spec.to_dict()) == spec
    for bad in ({"colour_norm": "hsv"}, {"align": "bbox"}, {"colour_reference": [0.5, 0.5]},
                {"align_centre": [0.5, 1.5]}):
        with pytest.raises(ValueError):
            PreprocessSpec.from_dict({**old, **bad})


def test_colour_norm_removes_light_and_colour_casts():
    from edge_ad.runtime.preprocess import PreprocessSpec, preprocess
    rgb, depth = _object_frame()
    ref = {"resolution": 32, "colour_reference": (0.4, 0.45, 0.5)}
    rgb_spec, gray_spec = PreprocessSpec(colour_norm="rgb", **ref), PreprocessSpec(colour_norm="gray", **ref)
    x = preprocess(rgb, depth, rgb_spec)
    fg = depth > 0
    np.testing.assert_allclose(((x[:3] + 1) / 2)[:, fg].mean(1), ref["colour_reference"], atol=1e-5)
    plain = PreprocessSpec(resolution=32)
    assert np.array_equal(x[:, ~fg], preprocess(rgb, depth, plain)[:, ~fg])           # background untouched
    for n in (nu.Brightness(1.2), nu.Brightness(0.75), nu.WhiteBalance((1.15, 1.0, 0.85))):
        xn = preprocess(*n(rgb, depth), rgb_spec)
        assert np.abs(xn - x).max() < 0.03                    # equal up to the rounding of the nuisance
        assert np.abs(preprocess(*n(rgb, depth), plain) - preprocess(rgb, depth, plain)).max() > 0.1  # without: not
    xg = preprocess(rgb, depth, gray_spec)
    assert np.abs(preprocess(*nu.Brightness(0.8)(rgb, depth), gray_spec) - xg).max() < 0.03
    assert np.abs(preprocess(*nu.WhiteBalance((1.3, 1.0, 0.7))(rgb, depth), gray_spec) - xg).max() > 0.1


def test_align_centroid_removes_camera_shifts():
    from edge_ad.runtime.preprocess import PreprocessSpec, preprocess
    rgb, depth = _object_frame()
    spec = PreprocessSpec(resolution=32, align="centroid", align_centre=(0.5, 0.4))
    x = preprocess(rgb, depth, spec)
    ys, xs = np.nonzero(x[3] > -1)
    assert abs(ys.mean() - 0.5 * 32) <= 1 and abs(xs.mean() - 0.4 * 32) <= 1     # whole-pixel shifts
    for dy, dx in ((2, -1), (-3, 3), (0, 2)):
        assert np.array_equal(preprocess(*nu.Shift(dy, dx)(rgb, depth), spec), x)
        plain = PreprocessSpec(resolution=32)
        assert not np.array_equal(preprocess(*nu.Shift(dy, dx)(rgb, depth), plain), preprocess(rgb, depth, plain))
    empty = np.zeros_like(depth)
    assert np.array_equal(preprocess(rgb, empty, PreprocessSpec(resolution=32, align="centroid")),
                          preprocess(rgb, empty, PreprocessSpec(resolution=32)))


def test_bank_inputs_augment_before_align():
    from edge_ad.runtime.latent_bank import POSE_AUGMENT, bank_inputs
    from edge_ad.runtime.preprocess import PreprocessSpec, preprocess
    rgb, depth = _object_frame()
    spec = PreprocessSpec(resolution=32)
    X = bank_inputs(rgb, depth, spec, ("mirror", "shift:2,0"))
    assert X.shape == (3, 4, 32, 32) and X.dtype == np.float32
    np.testing.assert_array_equal(X[0], preprocess(rgb, depth, spec))
    np.testing.assert_array_equal(X[1], preprocess(*nu.Mirror()(rgb, depth), spec))
    np.testing.assert_array_equal(X[2], preprocess(*nu.Shift(2, 0)(rgb, depth), spec))
    assert len(POSE_AUGMENT) == 17 and len(set(POSE_AUGMENT)) == 17
    aligned = PreprocessSpec(resolution=32, align="centroid")
    Xa = bank_inputs(rgb, depth, aligned, ("mirror", "shift:2,0"))
    np.testing.assert_array_equal(Xa[2], Xa[0])                    # a shift is aligned away
    np.testing.assert_array_equal(Xa[1], preprocess(*nu.Mirror()(rgb, depth), aligned))


def test_depth_edge_holes_lose_readings_only_near_the_silhouette():
    """depth-edge-holes:P removes readings only within 2 px of a pixel without one (P = 1: all of them), never
    deeper inside the object, never creates one, leaves RGB alone."""
    rgb = np.full((16, 16, 3), 90, np.uint8)
    depth = np.zeros((16, 16), np.uint8)
    depth[3:13, 3:13] = 120                                     # a 10 x 10 object
    r, d = nu.parse_nuisance("depth-edge-holes:1")(rgb, depth, nu.frame_rng(0, 0))
    assert np.array_equal(r, rgb) and not d[depth == 0].any()
    assert not d[3:5, 3:13].any() and not d[3:13, 11:13].any()   # the 2-px rim: gone
    assert np.array_equal(d[5:11, 5:11], depth[5:11, 5:11])      # 3 px and deeper: kept
    r, d = nu.parse_nuisance("depth-edge-holes:0.5")(rgb, depth, nu.frame_rng(0, 0))
    lost = (depth > 0) & (d == 0)
    assert 0.3 < lost.sum() / 64 < 0.7 and not lost[5:11, 5:11].any()   # rim of 100 - 36 = 64 readings
    with pytest.raises(ValueError, match="depth-edge-holes takes"):
        nu.parse_nuisance("depth-edge-holes:1.5")


def test_a_random_rows_draw_depends_on_its_place_in_the_list_as_the_docs_say():
    """Audit 30 #2: a row's noise is drawn from frame_rng(seed, frame, row), row = its place in the --nuisance-set list,
    but docs/evaluate.md said only "noise drawn per frame from --nuisance-seed": `shift:4 --nuisance-seed 27` rerun
    alone (row 1) instead of fifth (session 27's list) moves 6 of its 100 frames as before. The same place redraws
    exactly, another place does not, and the docs (and --nuisance-seed's help) say to rerun the whole list."""
    from pathlib import Path
    frames = [_frame(24, 24, s) for s in range(20)]
    shift = nu.parse_nuisance("shift:4")
    at = {k: nu.apply_to_frames(shift, frames, seed=27, index=k) for k in (1, 5)}
    again = nu.apply_to_frames(shift, frames, seed=27, index=5)
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(at[5], again))
    same = sum(np.array_equal(a[0], b[0]) for a, b in zip(at[1], at[5]))
    assert same < len(frames) // 2, same
    docs = " ".join((Path(__file__).resolve().parents[1] / "docs" / "evaluate.md").read_text().split())
    assert "the row's place in the list" in docs and "rerun its whole list in its order" in docs
    from edge_ad.cli import main
    res = CliRunner().invoke(main, ["eval", "--help"])
    assert "rerun the same list in the same order" in " ".join(res.output.split()), res.output


def test_the_suites_clean_row_takes_the_reports_scores(tmp_path, kinect_root, tiny_generator, monkeypatch):
    """Audit 30 #3: with --nuisance / --nuisance-set every clean frame was scored twice, with identical scores: once
    for the report and once as the suite's "clean" row (cylinder: 4 of its ~40 min, 1/11 of the default suite's
    eval). The suite now takes the report's scores for those very frames (same bytes, ScoreLog.know): each frame
    is scored once clean and once per row, and the clean row equals the report."""
    from edge_ad.cli import main
    from edge_ad.models import save_checkpoint, search
    from edge_ad.runtime.preprocess import PreprocessSpec
    save_checkpoint(tmp_path / "g.pt", tiny_generator, preprocess=PreprocessSpec())
    scored, real = [], search.score_batch

    def counting(G, X, *a, **kw):
        scored.append(len(X))
        return real(G, X, *a, **kw)
    monkeypatch.setattr(search, "score_batch", counting)
    r = CliRunner().invoke(main, ["eval", "--model", str(tmp_path / "g.pt"), "--data", str(kinect_root),
                                  "--class", "rectangle", "--max-per-class", "4", "--k", "0", "--n-seed", "1",
                                  "--no-baselines", "--nuisance-set", "gamma:0.8", "--out", str(tmp_path / "ev")])
    assert r.exit_code == 0, r.output
    assert sum(scored) == 2 * 12, scored                     # 3 groups of 4: clean once, gamma once (was 3 x 12)
    rep = json.loads((tmp_path / "ev" / "report.json").read_text())
    clean = rep["nuisance"]["conditions"]["clean"]
    assert clean["auroc"] == rep["metrics"]["overall"]["auroc"]
    assert clean["scores"] == rep["scores"]                # every group, frame for frame


def test_every_nuisance_set_text_is_a_row(tmp_path, kinect_root, tiny_generator):
    """Audit 30 #5: rows were a dict by label, so a text given again (shift:4 twice: a second draw) or one whose label
    rounds alike (brightness:1.12 and 1.124, both "brightness +12%") was dropped without a word (5 texts, 3 rows,
    exit 0; the "+12%" row was 1.124) and the rows after it drew as the wrong row. Now every text is a row, in its
    place; a label already taken says its row and text."""
    from edge_ad.cli import main
    from edge_ad.commands.evaluate import nuisance_rows
    from edge_ad.models import save_checkpoint
    from edge_ad.runtime.preprocess import PreprocessSpec
    texts = ["shift:4", "shift:4", "brightness:1.12", "brightness:1.124"]
    rows = nuisance_rows(texts, nu.parse_nuisance)
    assert list(rows) == ["shift 4 px", "shift 4 px (row 2: shift:4)", "brightness +12%",
                          "brightness +12% (row 4: brightness:1.124)"]
    assert rows["brightness +12%"] == nu.Brightness(1.12) and list(rows.values())[3] == nu.Brightness(1.124)
    save_checkpoint(tmp_path / "g.pt", tiny_generator, preprocess=PreprocessSpec())
    args = ["eval", "--model", str(tmp_path / "g.pt"), "--data", str(kinect_root), "--class", "rectangle",
            "--max-per-class", "4", "--k", "0", "--n-seed", "1", "--no-baselines", "--out", str(tmp_path / "ev")]
    r = CliRunner().invoke(main, args + [a for t in texts for a in ("--nuisance-set", t)])
    assert r.exit_code == 0, r.output
    c = json.loads((tmp_path / "ev" / "report.json").read_text())["nuisance"]["conditions"]
    assert list(c) == ["clean", *rows]
    assert c["shift 4 px"]["scores"] != c["shift 4 px (row 2: shift:4)"]["scores"]        # two draws
    assert c["brightness +12%"]["scores"] != c["brightness +12% (row 4: brightness:1.124)"]["scores"]


@pytest.mark.parametrize("text", ["blur:1", "scale:1.1", "rotate:5"])
def test_resampling_nuisances_darken_the_edge_of_a_masked_capture_as_the_docs_say(text):
    """Audit 30 #9 (docs only, LEAD 06:14): blur / scale / rotate resample the frame as captured, whose RGB is black
    where depth is 0, so the black surroundings bleed into the object's edge colours while the depth mask stays
    sharp: a uniform object darkens at its edge (a dark rim no camera makes). docs/evaluate.md says so and calls
    their rows a black-surroundings worst case, with the audit's numbers."""
    from pathlib import Path
    rgb = np.zeros((48, 64, 3), np.uint8)
    depth = np.zeros((48, 64), np.uint16)
    rgb[12:36, 16:48], depth[12:36, 16:48] = 200, 600            # a uniform object, background black at capture
    r, d = nu.parse_nuisance(text)(rgb, depth, nu.frame_rng(0, 0))
    fg = d > 0
    assert fg.any() and r[fg].min() < 200 - 20                     # the rim: foreground pixels darkened by the black
    docs = " ".join((Path(__file__).resolve().parents[1] / "docs" / "evaluate.md").read_text().split())
    assert "black-surroundings worst case for the anomalies flagged" in docs and "UNDER-state the false alarms" in docs
    assert "cylinder blur 1.5 px flags 74.0 % of anomalies" in docs and "1.1x 31 % (42 % without the rim)" in docs


def test_a_shift_of_the_frames_size_is_refused_by_the_nuisance_itself_cheaply():
    """``edge-ad eval`` refused a shift of at least the frame's size, but the Python API (RandomShift,
    apply_to_frames) listed all (2 px + 1)^2 moves first: shift:3000 took seconds and returned an empty frame,
    shift:1000000000000 never ended (memory). Now the nuisance itself refuses it before drawing, naming it."""
    import time
    rgb, depth = _frame(48, 64)
    with pytest.raises(ValueError, match=r"shift 3000 px moves the content by 3000 px down/up, at least the frame's "
                                         r"height \(48 px\): nothing of the frame would be left"):
        nu.RandomShift(3000)(rgb, depth, nu.frame_rng(0, 0))
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="shift 1000000000000 px moves"):
        nu.apply_to_frames(nu.parse_nuisance("brightness:1.1+shift:1000000000000"), [(rgb, depth)])
    assert time.perf_counter() - t0 < 0.5
    with pytest.raises(ValueError, match=r"shift -3,\+64 px moves the content by 64 px sideways, at least the frame's width \(64 px\)"):
        nu.Shift(-3, 64)(rgb, depth)
    with pytest.raises(ValueError, match=r"shift \+48,\+0 px moves the content by 48 px down/up"):
        nu.Shift(48, 0)(rgb, depth)
    for n in (nu.RandomShift(47), nu.Shift(-47, 63)):          # the largest that keep a row or a column
        r, d = n(rgb, depth, nu.frame_rng(0, 0))
        assert r.shape == rgb.shape and d.shape == depth.shape


def test_random_shift_draws_the_moves_it_drew_when_it_listed_them():
    """The computed move (``ring_move``) is the one the old listing gave for the same draw, so shift:PX rows
    measured before are reproduced frame by frame."""
    rgb, depth = _frame(40, 40)
    for px in range(1, 14):
        moves = [(dy, dx) for dy in range(-px, px + 1) for dx in range(-px, px + 1) if max(abs(dy), abs(dx)) == px]
        assert [nu.ring_move(px, i) for i in range(8 * px)] == moves, px
        for i in range(6):
            want = nu.Shift(*moves[int(nu.frame_rng(3, i).integers(len(moves)))])(rgb, depth)
            got = nu.RandomShift(px)(rgb, depth, nu.frame_rng(3, i))
            assert all(np.array_equal(a, b) for a, b in zip(got, want)), (px, i)


def test_a_blur_as_wide_as_the_frame_is_refused_by_the_nuisance_itself_cheaply():
    """``edge-ad eval`` refused a blur whose kernel radius (ceil(3 sigma)) is at least the frame's smaller side,
    but Blur itself padded the frame by the radius first: blur:30 on a 48 x 64 frame was blurred across its whole
    size without a word, blur:1e6 asked NumPy for ~860 TB (MemoryError). Now Blur refuses it before any work, with the
    words eval uses (one ``too_large_for``); a radius one less still blurs."""
    import time
    rgb, depth = _frame(48, 64)
    with pytest.raises(ValueError, match=r"^blur 30 px blurs with a kernel of radius 90 px \(3 sigma\), at least the "
                                         r"frame's smaller side \(48 px\): only its mean colour would be left"):
        nu.Blur(30)(rgb, depth)
    t0 = time.perf_counter()
    for text in ("blur:1e6", "fg-blur:1e6", "brightness:1.1+blur:1e6"):
        with pytest.raises(ValueError, match=r"blur 1e\+06 px blurs with a kernel of radius 3000000 px"):
            nu.apply_to_frames(nu.parse_nuisance(text), [(rgb, depth)])
    assert time.perf_counter() - t0 < 0.5
    with pytest.raises(ValueError, match=r"radius 48 px .* smaller side \(48 px\)"):
        nu.Blur(16)(rgb, depth)                           # radius 48 = the height
    r, d = nu.Blur(47 / 3)(rgb, depth)                    # radius ceil(47) = 47 < 48
    assert r.shape == rgb.shape and np.array_equal(d, depth)
    assert nu.too_large_for(nu.parse_nuisance("shift:2+blur:1"), 48, 64) is None


def test_depth_edge_erode_drops_one_ring_per_pass_by_hand():
    """depth-edge-erode:N (audit 31 #9, LEAD 08:55): N times, a reading with an 8-neighbour inside the frame without
    a reading loses its depth and RGB; the frame's outside is no background; one ring per pass; deterministic.
    Checked on a hand example (a 5 x 5 block in a 7 x 9 frame touching the top edge), as the lead's prototype."""
    depth = np.zeros((7, 9), np.uint8)
    depth[0:5, 2:7] = np.arange(1, 26, dtype=np.uint8).reshape(5, 5)     # touches the top edge
    rgb = np.zeros((7, 9, 3), np.uint8)
    rgb[depth > 0] = 200
    r1, d1 = nu.parse_nuisance("depth-edge-erode:1")(rgb, depth, nu.frame_rng(0, 0))
    want = np.zeros_like(depth)
    want[0:4, 3:6] = depth[0:4, 3:6]            # the top row stays: above it is outside the frame, not background
    assert np.array_equal(d1, want) and np.array_equal(r1[..., 0] > 0, want > 0)
    r2, d2 = nu.DepthEdgeErode(2)(rgb, depth)
    want2 = np.zeros_like(depth)
    want2[0:3, 4] = depth[0:3, 4]
    assert np.array_equal(d2, want2) and np.array_equal(r2[..., 0] > 0, want2 > 0)
    assert not nu.DepthEdgeErode(10 ** 12)(rgb, depth)[1].any()           # stops once nothing is left
    assert np.array_equal(nu.DepthEdgeErode(1)(rgb, depth)[1], d1) and depth[0, 2] == 1   # input untouched
    with pytest.raises(ValueError, match=r"depth-edge-erode takes a whole number N >= 1"):
        nu.parse_nuisance("depth-edge-erode:1.5")
