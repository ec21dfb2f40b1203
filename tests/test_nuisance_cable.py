"""cable:LEN,WIDTH (audit 34 #2, issue 12): a dark cable hanging from the frame's top edge beside the object, with
depth readings at the object's median depth; its placement rule (runtime/nuisance/clutter.py) by hand and on real
sphere frames, where it moves the "centroid" alignment and not the "component" one."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edge_ad.runtime import nuisance as nu
from edge_ad.runtime.preprocess import PreprocessSpec, frame_to_uint8, largest_component


def _disc(h=24, w=24, cy=14, cx=10, r=4, value=100, dtype=np.uint8):
    yy, xx = np.mgrid[0:h, 0:w]
    fg = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    depth = np.where(fg, value + (xx % 3), 0).astype(dtype)                  # readings value .. value + 2
    rgb = np.where(fg[..., None], np.array([200, 120, 60], np.uint8), 0).astype(np.uint8)
    return rgb, depth


def test_parse_and_errors():
    n = nu.parse_nuisance("cable:14,1")
    assert n == nu.Cable(14, 1) and n.name == "cable 14x1 px"
    assert nu.parse_nuisance("brightness:1.1+cable:6,2") == nu.Compose((nu.Brightness(1.1), nu.Cable(6, 2)))
    for bad in ("cable:14", "cable:0,1", "cable:14,0", "cable:1.5,1", "cable:14,1,2", "cable"):
        with pytest.raises(ValueError, match="cable takes two whole numbers LEN,WIDTH >= 1"):
            nu.parse_nuisance(bad)
    assert "cable:LEN,WIDTH" in nu.NUISANCE_SYNTAX


def test_placement_right_of_the_object_by_hand():
    rgb, depth = _disc()                                                # columns 6..14, rows 10..18
    rgb0, depth0 = rgb.copy(), depth.copy()
    r, d = nu.Cable(5, 2)(rgb, depth, nu.frame_rng(0, 0))
    assert np.array_equal(rgb, rgb0) and np.array_equal(depth, depth0)           # inputs untouched
    assert not np.shares_memory(r, rgb) and not np.shares_memory(d, depth)
    assert r.dtype == np.uint8 and d.dtype == np.uint8 and r.shape == rgb.shape and d.shape == depth.shape
    first = 14 + 1 + nu.CABLE_GAP                                       # 3 empty columns, then the cable
    assert nu.Cable(5, 2).columns(depth) == (first, first + 2)
    cable = np.zeros(depth.shape, bool)
    cable[0:5, first:first + 2] = True
    median = int(np.rint(np.median(depth[depth > 0])))
    assert (d[cable] == median).all() and (r[cable] == nu.CABLE_RGB).all()
    assert np.array_equal(d[~cable], depth[~cable]) and np.array_equal(r[~cable], rgb[~cable])
    # the cable is its own component: the object stays the largest one, untouched
    assert np.array_equal(largest_component(d > 0), depth > 0)
    # deterministic: another rng, the same frame
    r2, d2 = nu.Cable(5, 2)(rgb, depth, nu.frame_rng(9, 9))
    assert np.array_equal(r, r2) and np.array_equal(d, d2)
    # longer than the frame: clipped to its height
    _, d3 = nu.Cable(100, 1)(rgb, depth, None)
    assert (d3[:, first] > 0).all() and (d3 > 0).sum() == (depth > 0).sum() + 24 - (depth[:, first] > 0).sum()


def test_placement_left_and_against_the_edge():
    rgb, depth = _disc(cx=19)                                           # columns 15..23: no room on the right
    assert nu.Cable(5, 2).columns(depth) == (15 - nu.CABLE_GAP - 2, 15 - nu.CABLE_GAP)
    rgb, depth = _disc(w=12, cx=5, r=4)                                 # columns 1..9 of 12: room on neither side
    assert nu.Cable(5, 2).columns(depth) == (10, 12)                    # the right (2 columns) over the left (1)
    rgb, depth = _disc(w=12, cx=6, r=4)                                 # columns 2..10: the left has more room
    assert nu.Cable(5, 2).columns(depth) == (0, 2)
    # a leftover reading far right does not count as the object: the cable still goes right of the disc
    rgb, depth = _disc(w=40)
    depth[20, 38] = 50
    assert nu.Cable(5, 1).columns(depth) == (14 + 1 + nu.CABLE_GAP, 15 + nu.CABLE_GAP + 1)


def test_no_reading_unchanged_and_millimetres():
    rgb = np.full((8, 8, 3), 7, np.uint8)
    depth = np.zeros((8, 8), np.uint8)
    r, d = nu.Cable(4, 1)(rgb, depth, None)
    assert np.array_equal(r, rgb) and np.array_equal(d, depth) and r is not rgb and d is not depth
    assert nu.Cable(4, 1).columns(depth) is None
    rgb, depth = _disc(value=400, dtype=np.uint16)                       # millimetres: the median reading in mm
    _, d = nu.Cable(3, 1)(rgb, depth, None)
    assert d.dtype == np.uint16 and (d[0:3, 18] == int(np.rint(np.median(depth[depth > 0])))).all()
    with pytest.raises(ValueError, match="rgb must be"):
        nu.Cable(3, 1)(rgb[..., :2], depth, None)


def test_on_real_sphere_frames_it_moves_centroid_alignment_not_component(val_frame):
    """cable:14,1 on 30 real sphere val frames through the shipped sphere's preprocessing (depth_fill 3, depth_close
    3): 14 new readings each (3 empty columns from the ball survive the depth repair), the ball aligned by "component"
    exactly as without the cable (only the cable's pixels differ), while "centroid" (every reading) moves the ball in
    (nearly) every frame: audit 34 #2's false alarms of the shipped sphere."""
    spec = PreprocessSpec(colour_norm="rgb", colour_reference=(0.6607, 0.6525, 0.6401), align="centroid",
                          align_centre=(0.5998, 0.5546), depth_fill=3, depth_close=3)
    comp = dataclasses.replace(spec, align="component", align_centre=(0.587, 0.5408))
    moved = 0
    for i in range(30):
        f = val_frame("sphere", i)
        rc, dc = nu.parse_nuisance("cable:14,1")(f["rgb"], f["depth"], None)
        assert int(((dc > 0) & (f["depth"] == 0)).sum()) == 14, f["id"]
        clean, cabled = frame_to_uint8(f["rgb"], f["depth"], comp), frame_to_uint8(rc, dc, comp)
        ball = largest_component(clean[..., 3] > 0)
        assert np.array_equal(largest_component(cabled[..., 3] > 0), ball), f["id"]
        assert 0 < (cabled != clean).any(-1).sum() <= 14, f["id"]
        old_clean, old_cabled = frame_to_uint8(f["rgb"], f["depth"], spec), frame_to_uint8(rc, dc, spec)
        moved += not np.array_equal(old_cabled[ball], old_clean[ball])
    assert moved >= 25, moved                       # measured: 30 of 30
