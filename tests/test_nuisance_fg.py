"""fg-blur / fg-rotate / fg-scale (runtime/nuisance/, audit 30 #9's follow-up): the old kinds' kernel and geometry,
with the RGB resampled from pixels with a depth reading only, so a masked capture's black surroundings no longer
bleed into the object's edge (the dark rim of blur / rotate / scale, which keep their meaning: the shipped models'
memory copies were built with them)."""
from pathlib import Path

import numpy as np
import pytest

from edge_ad.runtime import nuisance as nu

PAIRS = [("fg-scale:1.1", "scale:1.1"), ("fg-scale:0.9", "scale:0.9"), ("fg-rotate:5", "rotate:5"),
         ("fg-rotate:-6", "rotate:-6"), ("fg-blur:1", "blur:1"), ("fg-blur:1.5", "blur:1.5")]


def _object(dtype=np.uint16, background_rgb=0):
    """A uniform 200-level object (rows 12..35, columns 16..47) on a 48 x 64 frame; background depth 0 with RGB
    ``background_rgb`` (0: masked at capture, as kinect-rgbd; > 0: a surrounding the mask did not blacken)."""
    rgb = np.full((48, 64, 3), background_rgb, np.uint8)
    depth = np.zeros((48, 64), dtype)
    rgb[12:36, 16:48] = 200
    depth[12:36, 16:48] = 600 if dtype == np.uint16 else 120
    return rgb, depth


@pytest.mark.parametrize("dtype", [np.uint16, np.uint8])
@pytest.mark.parametrize("fg_text, old_text", PAIRS)
def test_fg_kinds_keep_a_uniform_object_uniform_where_the_old_kinds_darken_its_edge(fg_text, old_text, dtype):
    rgb, depth = _object(dtype)
    r, d = nu.parse_nuisance(fg_text)(rgb, depth, nu.frame_rng(0, 0))
    r_old, d_old = nu.parse_nuisance(old_text)(rgb, depth, nu.frame_rng(0, 0))
    fg = d > 0
    assert np.array_equal(d, d_old) and fg.sum() > 300                  # depth exactly as the old kind
    assert (r[fg] == 200).all()                                         # no rim: every foreground pixel 200
    assert r_old[fg].min() < 200 - 20                                   # the old kind's dark rim
    assert not r[~fg].any()                                             # background stays black
    assert np.array_equal(r[fg], np.full_like(r[fg], 200)) and r.dtype == np.uint8 and r.shape == rgb.shape


@pytest.mark.parametrize("fg_text, old_text", PAIRS)
def test_fg_kinds_take_no_colour_from_pixels_without_a_reading(fg_text, old_text):
    """A surrounding whose RGB is not black (depth 0, RGB 50: e.g. JPEG ringing, or a camera frame masked by depth
    only later): it neither lightens nor darkens the object; the warps leave RGB 0 where the output has no reading,
    fg-blur leaves those pixels as they were."""
    rgb, depth = _object(background_rgb=50)
    r, d = nu.parse_nuisance(fg_text)(rgb, depth, nu.frame_rng(0, 0))
    fg = d > 0
    assert (r[fg] == 200).all()
    if fg_text.startswith("fg-blur"):
        assert np.array_equal(r[~fg], rgb[~fg]) and np.array_equal(d, depth)
    else:
        assert not r[~fg].any()


@pytest.mark.parametrize("fg_text, old_text", PAIRS)
def test_fg_kinds_blend_only_the_objects_own_colours(fg_text, old_text):
    """A textured object (random colours 60..220 per pixel, ragged silhouette) on black: each foreground pixel of the
    output is a weighted mean of object pixels, so it stays within the object's range (the old kinds reach below)."""
    rng = np.random.default_rng(7)
    rgb = rng.integers(60, 221, (40, 50, 3), dtype=np.uint8)
    depth = rng.integers(1, 256, (40, 50)).astype(np.uint8)
    depth[rng.random((40, 50)) < 0.25] = 0                              # holes and a ragged edge
    depth[:6], depth[:, :5] = 0, 0
    rgb[depth == 0] = 0
    r, d = nu.parse_nuisance(fg_text)(rgb, depth, nu.frame_rng(0, 0))
    r_old, d_old = nu.parse_nuisance(old_text)(rgb, depth, nu.frame_rng(0, 0))
    fg = d > 0
    assert np.array_equal(d, d_old)
    assert r[fg].min() >= 60 and r[fg].max() <= 220
    assert r_old[fg].min() < 60


@pytest.mark.parametrize("text", ["blur:0.7", "blur:1", "blur:1.5", "blur:3", "blur:0", "scale:1.05", "scale:1.1",
                                  "scale:0.9", "scale:0.5", "scale:2", "rotate:3", "rotate:-6", "rotate:90",
                                  "rotate:30"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_fg_kinds_equal_the_old_kinds_exactly_on_a_frame_with_a_reading_everywhere(text, dtype):
    rng = np.random.default_rng(len(text))
    for h, w in ((17, 23), (32, 32), (48, 64)):
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        depth = rng.integers(1, 256 if dtype == np.uint8 else 4000, (h, w)).astype(dtype)    # no zero
        r, d = nu.parse_nuisance("fg-" + text)(rgb, depth, nu.frame_rng(0, 0))
        r_old, d_old = nu.parse_nuisance(text)(rgb, depth, nu.frame_rng(0, 0))
        assert np.array_equal(r, r_old) and np.array_equal(d, d_old), (text, h, w)


def test_fg_kinds_parse_name_and_count_as_blur_for_the_too_wide_refusal():
    assert nu.parse_nuisance("fg-scale:1.1") == nu.Scale(1.1, foreground_only=True) != nu.Scale(1.1)
    assert nu.parse_nuisance("fg-rotate:-6") == nu.Rotate(-6.0, foreground_only=True) != nu.Rotate(-6.0)
    assert nu.parse_nuisance("fg-blur:1.5") == nu.Blur(1.5, foreground_only=True) != nu.Blur(1.5)
    assert nu.parse_nuisance("scale:1.05") == nu.Scale(1.05) and not nu.parse_nuisance("blur:0.7").foreground_only
    assert nu.parse_nuisance("gamma:0.8+fg-blur:1+fg-rotate:+5") == nu.Compose(
        (nu.Gamma(0.8), nu.Blur(1.0, foreground_only=True), nu.Rotate(5.0, foreground_only=True)))
    assert [nu.parse_nuisance(t).name for t in ("fg-scale:1.1", "fg-rotate:5", "fg-blur:1.5")] == \
        ["fg-scale 1.1x", "fg-rotate +5 deg", "fg-blur 1.5 px"]
    assert [nu.parse_nuisance(t).name for t in ("scale:1.1", "rotate:5", "blur:1.5")] == \
        ["scale 1.1x", "rotate +5 deg", "blur 1.5 px"]                 # the old kinds' rows keep their labels
    assert nu.largest_blur_radius(nu.parse_nuisance("fg-blur:1.5")) == 5
    assert nu.largest_blur_radius(nu.parse_nuisance("fg-blur:21+blur:2")) == 63
    assert nu.largest_blur_radius(nu.parse_nuisance("fg-blur:0")) == 0
    assert "fg-scale:S (> 0)" in nu.NUISANCE_SYNTAX and "fg-blur:SIGMA_PX" in nu.NUISANCE_SYNTAX
    for bad, why in (("fg-scale:0", "> 0"), ("fg-scale:-1", "> 0"), ("fg-blur:-1", ">= 0"), ("fg-blur:x", "'x' is not"),
                     ("fg-rotate", "degrees"), ("fg-rotate:nan", "finite"), ("fg-scale:1,2", "zoom factor"),
                     ("fg-shift:2", "unknown kind 'fg-shift'")):
        with pytest.raises(ValueError, match="syntax") as e:
            nu.parse_nuisance(bad)
        assert why in str(e.value) and f"cannot read nuisance '{bad}'" in str(e.value), bad


def test_every_kind_is_in_the_docs_nuisance_list_and_the_rim_paragraph_names_the_fg_kinds():
    docs = (Path(__file__).resolve().parents[1] / "docs" / "evaluate.md").read_text()
    listed = {line.split("`")[1].split(":")[0] for line in docs.splitlines() if line.startswith("- `")}
    assert set(nu.parse._KINDS) | {"shift"} <= listed, set(nu.parse._KINDS) - listed   # parse.py: the registry
    flat = " ".join(docs.split())
    assert "`fg-blur`, `fg-rotate` and `fg-scale`" in flat and "physically plausible" in flat
