"""depth-edge-spurs:P (runtime/nuisance/depth.py, audit 31 #1): readings just outside the silhouette, each pixel
without a reading touching the object taking its largest neighbouring reading and that neighbour's colour with
probability P (audit 31's "grow": 10 % of that ring took sphere to 50 % false alarms; the suite only removed edge
readings)."""
from pathlib import Path

import numpy as np
import pytest

from edge_ad.runtime import nuisance as nu


def _object(dtype=np.uint8):
    """A 6 x 6 object (rows / columns 5..10) on a 16 x 16 frame: depth 10 * (row + column), RGB (row, column, 7)."""
    depth = np.zeros((16, 16), dtype)
    rgb = np.zeros((16, 16, 3), np.uint8)
    ys, xs = np.mgrid[5:11, 5:11]
    depth[5:11, 5:11] = 10 * (ys + xs)
    rgb[5:11, 5:11] = np.stack([ys, xs, np.full_like(ys, 7)], -1)
    return rgb, depth


def _ring(depth):
    """Pixels without a reading with a reading among their 8 neighbours: (H, W) bool."""
    fg = np.pad(depth > 0, 1)
    H, W = depth.shape
    near = np.zeros((H, W), bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            near |= fg[1 + dy:1 + dy + H, 1 + dx:1 + dx + W]
    return near & (depth == 0)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_every_ring_pixel_takes_its_largest_neighbour_at_p_1(dtype):
    rgb, depth = _object(dtype)
    r, d = nu.parse_nuisance("depth-edge-spurs:1")(rgb, depth, nu.frame_rng(0, 0))
    ring = _ring(depth)
    assert ring.sum() == 8 * 8 - 6 * 6 and np.array_equal(d > 0, (depth > 0) | ring)    # grown by one pixel, no more
    assert np.array_equal(d[depth > 0], depth[depth > 0]) and np.array_equal(r[depth > 0], rgb[depth > 0])
    assert not d[~ring & (depth == 0)].any() and not r[~ring & (depth == 0)].any()
    # the largest neighbouring reading: row 4 touches row 5's pixels (5, x-1..x+1) -> the right-most one
    assert d[4, 7] == 10 * (5 + 8) and tuple(r[4, 7]) == (5, 8, 7)
    assert d[11, 11] == 10 * (10 + 10) and tuple(r[11, 11]) == (10, 10, 7)      # the corner: its one neighbour
    assert d[4, 4] == 10 * (5 + 5) and d[7, 4] == 10 * (8 + 5) and tuple(r[7, 4]) == (8, 5, 7)
    assert d.dtype == depth.dtype and r.dtype == np.uint8


def test_ties_take_the_first_neighbour_in_row_major_order():
    depth = np.zeros((5, 5), np.uint8)
    rgb = np.zeros((5, 5, 3), np.uint8)
    depth[1, 1], depth[1, 3], depth[3, 1] = 90, 90, 90                 # (2, 2) touches all three, equal readings
    rgb[1, 1], rgb[1, 3], rgb[3, 1] = (10, 0, 0), (0, 20, 0), (0, 0, 30)
    r, d = nu.DepthEdgeSpurs(1.0)(rgb, depth, nu.frame_rng(0, 0))
    assert d[2, 2] == 90 and tuple(r[2, 2]) == (10, 0, 0)


def test_a_share_p_of_the_ring_drawn_per_frame_and_nothing_else():
    rng = np.random.default_rng(5)
    depth = np.zeros((120, 160), np.uint8)
    depth[20:100, 30:130] = rng.integers(1, 256, (80, 100))
    depth[rng.random(depth.shape) < 0.2] = 0                            # holes: their rims are ring too
    rgb = np.where(depth[..., None] > 0, rng.integers(0, 256, (120, 160, 3)), 0).astype(np.uint8)
    ring = _ring(depth)
    n = nu.DepthEdgeSpurs(0.3)
    r, d = n(rgb, depth, nu.frame_rng(0, 0))
    spurs = (d > 0) & (depth == 0)
    assert not (spurs & ~ring).any() and np.array_equal(d[depth > 0], depth[depth > 0])
    assert abs(spurs.sum() / ring.sum() - 0.3) < 0.03                  # ~1900 ring pixels: ~3 sigma
    assert np.array_equal(r[~spurs], rgb[~spurs])
    r2, d2 = n(rgb, depth, nu.frame_rng(0, 0))
    assert np.array_equal(d2, d) and np.array_equal(r2, r)              # same frame, same draw
    assert not np.array_equal(n(rgb, depth, nu.frame_rng(0, 1))[1], d)  # another frame, another draw
    assert np.array_equal(nu.DepthEdgeSpurs(0.0)(rgb, depth, nu.frame_rng(0, 0))[1], depth)


def test_parse_and_errors_and_docs():
    assert nu.parse_nuisance("depth-edge-spurs:0.1") == nu.DepthEdgeSpurs(0.1)
    assert nu.parse_nuisance("depth-edge-spurs:0.1").name == "depth edge spurs 10%"
    assert "depth-edge-spurs:P (0..1)" in nu.NUISANCE_SYNTAX
    for bad in ("depth-edge-spurs:1.5", "depth-edge-spurs:-0.1", "depth-edge-spurs"):
        with pytest.raises(ValueError, match="0..1 of the pixels without a reading touching the object"):
            nu.parse_nuisance(bad)
    docs = " ".join((Path(__file__).resolve().parents[1] / "docs" / "evaluate.md").read_text().split())
    assert "- `depth-edge-spurs:P`" in docs and "resample depth NEAREST" in docs
