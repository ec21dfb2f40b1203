"""light-ramp:A,DEG / shadow:A,DEG / sharpen:AMOUNT (runtime/nuisance/, audit 31 #2 #3 #4): light from one side, a
shadow over half the object, a camera's unsharp mask (the suite's light was global only, and it had blur but no
sharpening). Hand examples: the lead builds sphere bank copies with these exact semantics."""
from pathlib import Path

import numpy as np
import pytest

from edge_ad.runtime import nuisance as nu


def _flat(h, w, level=100, dtype=np.uint8):
    return np.full((h, w, 3), level, np.uint8), np.full((h, w), 50, dtype)


def test_light_ramp_goes_from_minus_to_plus_a_along_its_direction():
    rgb, depth = _flat(1, 5)
    r, d = nu.parse_nuisance("light-ramp:0.2,0")(rgb, depth)
    assert r[0, :, 0].tolist() == [80, 90, 100, 110, 120] and (r[..., 0] == r[..., 2]).all()   # brighter to the right
    assert np.array_equal(d, depth) and not np.shares_memory(d, depth)
    assert nu.LightRamp(0.2, 180)(rgb, depth)[0][0, :, 0].tolist() == [120, 110, 100, 90, 80]
    rgb, depth = _flat(5, 1)
    assert nu.LightRamp(0.2, 90)(rgb, depth)[0][:, 0, 0].tolist() == [120, 110, 100, 90, 80]   # brighter upwards
    rgb, depth = _flat(3, 7)                          # non-square: +-1 reached at the farthest pixels, here corners
    r = nu.LightRamp(0.5, 45)(rgb, depth)[0][..., 0]
    assert r[0, 6] == 150 and r[2, 0] == 50 and r[1, 3] == 100 and r.max() == 150 and r.min() == 50
    r = nu.LightRamp(0.5, 0)(rgb, depth)[0][..., 0]
    assert (r[:, 0] == 50).all() and (r[:, 6] == 150).all()
    assert np.array_equal(nu.LightRamp(0.0, 30)(rgb, depth)[0], rgb)
    bright = np.full((1, 5, 3), 250, np.uint8)
    assert nu.LightRamp(0.2, 0)(bright, np.ones((1, 5), np.uint8))[0][0, -1, 0] == 255          # clipped


def test_shadow_darkens_the_half_away_from_its_direction_with_a_4_px_edge():
    rgb = np.zeros((3, 11, 3), np.uint8)
    depth = np.zeros((3, 11), np.uint16)
    rgb[:, 2:9], depth[:, 2:9] = 200, 700            # foreground columns 2..8: centroid x = 5
    r, d = nu.parse_nuisance("shadow:0.5,0")(rgb, depth)
    assert r[1, 2:9, 0].tolist() == [100, 100, 125, 150, 175, 200, 200] and np.array_equal(d, depth)
    assert (r[0] == r[2]).all() and (r[..., 0] == r[..., 1]).all()
    assert nu.Shadow(0.5, 180)(rgb, depth)[0][1, 2:9, 0].tolist() == [200, 200, 175, 150, 125, 100, 100]
    col = np.zeros((11, 3, 3), np.uint8)
    dcol = np.zeros((11, 3), np.uint8)
    col[1:10], dcol[1:10] = 200, 9                    # rows 1..9: centroid y = 5
    r = nu.Shadow(1.0, 90)(col, dcol)[0][:, 1, 0]     # DEG 90 (up): the lower half shaded, fully at A = 1
    assert r[1:10].tolist() == [200, 200, 200, 150, 100, 50, 0, 0, 0]
    empty = np.zeros((4, 4), np.uint8)
    r, d = nu.Shadow(0.5, 0)(np.full((4, 4, 3), 90, np.uint8), empty)
    assert (r == 90).all() and not d.any()           # no foreground: unchanged


def test_sharpen_is_the_unsharp_mask_of_the_blur_kernel():
    rgb, depth = _flat(9, 9)
    assert np.array_equal(nu.Sharpen(2.0)(rgb, depth)[0], rgb)                                  # flat stays flat
    rgb[4, 4] = 200
    x = np.arange(-3, 4)
    k = np.exp(-x ** 2 / 2.0) / np.exp(-x ** 2 / 2.0).sum()
    blurred = np.full((9, 9), 100.0)
    blurred[1:8, 1:8] += 100 * np.outer(k, k)
    v = rgb[..., 0].astype(float)
    want = np.clip(np.rint(v + 1.5 * (v - blurred)), 0, 255)
    r, d = nu.parse_nuisance("sharpen:1.5")(rgb, depth)
    assert np.array_equal(r[..., 0], want.astype(np.uint8)) and np.array_equal(d, depth)
    assert r[4, 4, 0] > 200 and r[4, 5, 0] < 100                                               # overshoot both ways
    assert np.array_equal(nu.Sharpen(0.0)(rgb, depth)[0], rgb)
    assert nu.largest_blur_radius(nu.parse_nuisance("sharpen:1")) == 3
    assert nu.largest_blur_radius(nu.parse_nuisance("sharpen:1+blur:2")) == 6


def test_parse_names_errors_and_docs():
    assert nu.parse_nuisance("light-ramp:0.2,-90") == nu.LightRamp(0.2, -90.0)
    assert nu.parse_nuisance("shadow:0.3,0+sharpen:1") == nu.Compose((nu.Shadow(0.3, 0.0), nu.Sharpen(1.0)))
    assert [nu.parse_nuisance(t).name for t in ("light-ramp:0.2,90", "shadow:0.3,0", "sharpen:1.5")] == \
        ["light ramp 20% 90 deg", "shadow 30% 0 deg", "sharpen 1.5"]
    for bad, why in (("light-ramp:1,0", "0 <= A < 1"), ("light-ramp:-0.1,0", "0 <= A < 1"),
                     ("light-ramp:0.2", "(A,DEG)"), ("shadow:1.5,0", "0..1"), ("shadow:0.3", "(A,DEG)"),
                     ("shadow:0.3,inf", "finite"), ("sharpen:-1", ">= 0"), ("sharpen:1,2", ">= 0")):
        with pytest.raises(ValueError, match="syntax") as e:
            nu.parse_nuisance(bad)
        assert why in str(e.value) and f"cannot read nuisance '{bad}'" in str(e.value), bad
    for text in ("light-ramp:A,DEG", "shadow:A,DEG", "sharpen:AMOUNT"):
        assert text in nu.NUISANCE_SYNTAX
    docs = (Path(__file__).resolve().parents[1] / "docs" / "evaluate.md").read_text()
    listed = {line.split("`")[1].split(":")[0] for line in docs.splitlines() if line.startswith("- `")}
    assert {"light-ramp", "shadow", "sharpen"} <= listed


def test_depth_band_and_flicker_band_by_hand():
    """depth-band:ROWS / flicker-band:ROWS,F (audit 34 #5, #8, made reproducible in the repo): a band of ROWS raw rows
    centred on the foreground's centroid row, across the whole width: its depth lost (RGB unchanged), or its RGB x F
    (depth unchanged); deterministic (any rng, or none, gives the same frame); no foreground: unchanged; a band
    beyond the frame's edge is clipped to it."""
    rgb = np.zeros((12, 6, 3), np.uint8)
    depth = np.zeros((12, 6), np.uint16)
    rgb[2:9, 1:5], depth[2:9, 1:5] = 200, 700              # rows 2..8: centroid row 5
    r, d = nu.parse_nuisance("depth-band:3")(rgb, depth)
    assert np.array_equal(r, rgb) and not np.shares_memory(r, rgb)
    lost = (depth > 0) & (d == 0)
    assert np.nonzero(lost.any(1))[0].tolist() == [4, 5, 6] and lost[4:7, 1:5].all()
    assert np.array_equal(d[~lost], depth[~lost])
    r, d = nu.parse_nuisance("flicker-band:2,0.5")(rgb, depth, nu.frame_rng(0, 1))     # rows 5, 6 (floor(5 + 0))
    assert np.array_equal(d, depth)
    assert (r[5:7, 1:5] == 100).all() and (r[:5] == rgb[:5]).all() and (r[7:] == rgb[7:]).all()
    assert np.array_equal(nu.FlickerBand(2, 0.5)(rgb, depth, nu.frame_rng(9, 9))[0], r)          # deterministic
    assert nu.FlickerBand(3, 2.0)(rgb, depth)[0][5, 1, 0] == 255                                # clipped
    assert np.array_equal(nu.DepthBand(8)(rgb, depth)[1][1:9, 1:5], np.zeros((8, 4)))          # rows 1..8
    edge = np.zeros((12, 6), np.uint16)
    edge[0:2, 1:5] = 700                                     # centroid row 0.5: 5 rows start at -1.5 -> clipped 0..2
    assert not nu.DepthBand(5)(rgb, edge)[1].any()
    empty = np.zeros((12, 6), np.uint8)
    for n in (nu.DepthBand(3), nu.FlickerBand(3, 0.5)):
        r, d = n(np.full((12, 6, 3), 90, np.uint8), empty)
        assert (r == 90).all() and not d.any()               # no foreground: unchanged
    assert [nu.parse_nuisance(t).name for t in ("depth-band:3", "flicker-band:8,0.5")] == \
        ["depth band 3 rows", "flicker band 8 rows x0.5"]
    assert nu.parse_nuisance("depth-band:3+flicker-band:8,0.5") == nu.Compose((nu.DepthBand(3), nu.FlickerBand(8, 0.5)))
    for bad, why in (("depth-band:0", "ROWS >= 1"), ("depth-band:2.5", "ROWS >= 1"), ("depth-band:3,1", "ROWS >= 1"),
                     ("flicker-band:8", "(ROWS,F)"), ("flicker-band:8,-1", "F >= 0"), ("flicker-band:1.5,0.5", "(ROWS,F)")):
        with pytest.raises(ValueError, match="syntax") as e:
            nu.parse_nuisance(bad)
        assert why in str(e.value) and f"cannot read nuisance '{bad}'" in str(e.value), bad
    for text in ("depth-band:ROWS", "flicker-band:ROWS,F"):
        assert text in nu.NUISANCE_SYNTAX
    docs = (Path(__file__).resolve().parents[1] / "docs" / "evaluate.md").read_text()
    listed = {line.split("`")[1].split(":")[0] for line in docs.splitlines() if line.startswith("- `")}
    assert {"depth-band", "flicker-band"} <= listed


def test_depth_band_and_flicker_band_on_a_real_frame(val_frame):
    """On a kinect-rgbd val frame (64 x 64, a raw row is a model row): depth-band:3 loses the readings of exactly 3 rows
    through the object's middle (around the centroid row), flicker-band:8,0.5 halves the RGB of 8 rows; both keep the
    rest of the frame bit for bit."""
    fr = val_frame("sphere", 3)
    rgb, depth = fr["rgb"], fr["depth"]
    my = np.nonzero(depth > 0)[0].mean()
    d = nu.DepthBand(3)(rgb, depth)[1]
    rows = np.nonzero(((depth > 0) & (d == 0)).any(1))[0]
    assert len(rows) == 3 and abs(rows.mean() - my) <= 0.5 and not d[rows].any()
    keep = np.ones(len(depth), bool)
    keep[rows] = False
    assert np.array_equal(d[keep], depth[keep])
    r = nu.FlickerBand(8, 0.5)(rgb, depth)[0]
    changed = np.nonzero((r != rgb).any((1, 2)))[0]
    assert len(changed) <= 8 and abs((changed.min() + changed.max()) / 2 - my) <= 1.0
    assert np.array_equal(r[changed], np.rint(rgb[changed] * 0.5).astype(np.uint8))
    assert np.array_equal(np.delete(r, changed, axis=0), np.delete(rgb, changed, axis=0))
