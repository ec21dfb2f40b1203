"""The nuisances of the robustness suite (runtime/nuisance.py, torch-free) and ``edge-ad eval --nuisance``."""
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
       "depth-noise:10", "depth-offset:30", "brightness:1.2+shift:2+depth-offset:-20"]


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
    for bad in ("", "blur:3", "brightness", "wb:1,2", "shift:1.5", "brightness:-1"):
        with pytest.raises(ValueError, match="syntax"):
            nu.parse_nuisance(bad)
    with pytest.raises(ValueError, match="uint8"):
        nu.Mirror()(np.zeros((4, 4, 3), np.float32), np.zeros((4, 4), np.uint8))


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
                                  "--class", "rectangle", "--nuisance-set", "blur:2", "--out", str(tmp_path / "x")])
    assert r.exit_code != 0 and "syntax" in r.output


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
