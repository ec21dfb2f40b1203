"""PreprocessSpec.depth_close (issue 12, sensor noise: readings lost ON the object's edge): close_depth_notches
fills the missing readings inside the K x K closing of the valid ones with their window's median; straight
edges, convex corners and background stay; frame_to_uint8 applies it after depth_fill and before the RGB
is masked; the field is validated, carried, reported and left out when off like depth_fill."""
from __future__ import annotations

import numpy as np
import pytest

from edge_ad.runtime.nuisance import frame_rng, parse_nuisance
from edge_ad.runtime.preprocess import (PreprocessSpec, close_depth_notches, frame_to_uint8, levers_text,
                                        plain_spec)

from depth_faults import assert_faults_see_the_depth_as_captured


def _closing_by_hand(d: np.ndarray, k: int) -> np.ndarray:
    """The definition, pixel by pixel: a missing reading whose every k x k neighbour lies in the dilation
    (a valid reading in ITS k x k window, inside the frame) gets the median of its window's valid readings."""
    h, w = d.shape
    r = k // 2
    win = [(a, b) for a in range(-r, r + 1) for b in range(-r, r + 1)]

    def dilated(y, x):
        return any(0 <= y + a < h and 0 <= x + b < w and d[y + a, x + b] > 0 for a, b in win)

    out = d.copy()
    for y in range(h):
        for x in range(w):
            if d[y, x] == 0 and all(dilated(y + a, x + b) for a, b in win):
                vals = [int(d[y + a, x + b]) for a, b in win
                        if 0 <= y + a < h and 0 <= x + b < w and d[y + a, x + b] > 0]
                out[y, x] = np.rint(np.median(vals))
    return out


@pytest.mark.parametrize("chunk", [None, 7])
@pytest.mark.parametrize("k", [3, 5])
def test_close_equals_a_pixel_by_pixel_closing(k, chunk, monkeypatch):
    """The integral-image dilation / erosion and the medians equal the definition on random masks (dense to
    sparse, frame edges included); also when the medians are taken in chunks of 7 pixels."""
    if chunk:
        monkeypatch.setattr("edge_ad.runtime.preprocess._MEDIAN_CHUNK", chunk)
    rng = np.random.default_rng(10 + k)
    filled = 0
    for _ in range(25):
        h, w = rng.integers(3, 16, 2)
        d = rng.integers(1, 256, (h, w)).astype(np.uint8)
        d[rng.random((h, w)) < rng.random()] = 0
        want = _closing_by_hand(d, k)
        filled += int((want != d).sum())
        assert np.array_equal(close_depth_notches(d, k), want)
    assert filled > 50                                               # the masks do exercise the filling


def _object(h=14, w=14, value=100) -> np.ndarray:
    d = np.zeros((h, w), np.uint8)
    d[3:10, 4:11] = value                                            # a 7 x 7 object on background
    return d


@pytest.mark.parametrize("k", [3, 5])
def test_straight_edges_convex_corners_and_background_stay(k):
    rect = _object()
    rect[3:10, 4:11] += np.arange(7, dtype=np.uint8)                  # depth varies along x
    assert np.array_equal(close_depth_notches(rect, k), rect)         # a rectangle: its edges and corners
    full = np.full((6, 7), 40, np.uint8)
    assert np.array_equal(close_depth_notches(full, k), full)         # every pixel valid
    empty = np.zeros((6, 7), np.uint8)
    assert np.array_equal(close_depth_notches(empty, k), empty)
    tri = np.tril(np.full((12, 12), 80, np.uint8))                    # a diagonal edge
    assert np.array_equal(close_depth_notches(tri, k), tri)
    ell = np.zeros((14, 14), np.uint8)
    ell[2:12, 2:6] = 90
    ell[8:12, 2:12] = 90                                              # an L: a 90-degree concave corner
    assert np.array_equal(close_depth_notches(ell, k), ell)
    on_border = np.zeros((8, 8), np.uint8)
    on_border[:, :4] = 70                                             # an object cut by the frame's edge
    assert np.array_equal(close_depth_notches(on_border, k), on_border)


def test_a_notch_on_an_edge_gets_its_neighbours_median():
    d = _object()
    d[3:10, 4:11] = np.arange(100, 107, dtype=np.uint8)[None, :]      # depth 100..106 along x
    notched = d.copy()
    notched[3, 6] = 0                                                 # one reading lost on the top edge
    notched[9, 7:9] = 0                                               # two side by side on the bottom edge
    before = notched.copy()
    out = close_depth_notches(notched, 3)
    assert out[3, 6] == 102                                           # window's valid readings 101 103 101 102 103
    assert list(out[9, 7:9]) == [102, 104]                            # 102 102 103 104 -> 102.5 -> 102 (to even);
    #                                                                   103 104 105 105 -> 104.5 -> 104
    assert np.array_equal(notched, before)                            # the input is not modified
    assert out.dtype == np.uint8
    assert np.array_equal(out > 0, d > 0)                             # exactly the object's silhouette back
    assert np.array_equal(out[notched > 0], notched[notched > 0])     # valid readings untouched
    wide = d.copy()
    wide[3, 5:8] = 0                                                  # a 3-px notch: a 3 x 3 square of lost
    assert np.array_equal(close_depth_notches(wide, 3), wide)         # readings fits: K = 3 keeps it
    assert np.array_equal(close_depth_notches(wide, 5) > 0, d > 0)    # K = 5 closes it


def test_isolated_background_pixels_are_not_filled_and_a_lone_reading_does_not_spread():
    d = np.zeros((11, 11), np.uint8)
    d[5, 5] = 50                                                      # one isolated reading
    assert np.array_equal(close_depth_notches(d, 3), d)
    assert np.array_equal(close_depth_notches(d, 5), d)
    two = np.zeros((9, 12), np.uint8)
    two[:, :4], two[:, 8:] = 60, 80                                   # two objects 4 px apart: the gap stays
    assert np.array_equal(close_depth_notches(two, 3), two)


def test_the_field_is_validated_carried_and_reported():
    assert PreprocessSpec.from_dict({}).depth_close == 0                      # older manifests: off
    spec = PreprocessSpec.from_dict({"depth_fill": 3, "depth_close": 5})
    assert PreprocessSpec.from_dict(spec.to_dict()) == spec
    assert levers_text(spec) == "depth_fill 3 + depth_close 5"
    assert plain_spec(spec).depth_close == 0
    for bad in (1, 2, 4, 7, -3, 3.0, True, "3", None):
        with pytest.raises(ValueError, match=r"depth_close must be one of \(0, 3, 5\)"):
            PreprocessSpec.from_dict({"depth_close": bad})
    for bad_call, msg in ((lambda: close_depth_notches(np.zeros((4, 4), np.uint16), 3), "uint8 depth"),
                          (lambda: close_depth_notches(np.zeros((4, 4), np.uint8), 7), "one of")):
        with pytest.raises(ValueError, match=msg):
            bad_call()


def test_off_it_is_left_out_so_settings_hashes_stay():
    """As depth_fill (review 18 #1): off, the field is not in the dict, so manifests, config_sha256 and the
    pinned default settings hash are what they were before the field existed."""
    from edge_ad.runtime.config import SearchConfig
    from edge_ad.runtime.scorer import scoring_settings_sha256
    assert "depth_close" not in PreprocessSpec().to_dict()
    assert "depth_close" not in PreprocessSpec.from_dict({"depth_fill": 3}).to_dict()
    assert PreprocessSpec.from_dict({"depth_close": 3}).to_dict()["depth_close"] == 3
    assert scoring_settings_sha256(SearchConfig(), PreprocessSpec()) == \
        "3784eaa82ac51e28321368245c028dec4979908528d730a47daa274816592d27"
    assert scoring_settings_sha256(SearchConfig(), PreprocessSpec.from_dict({"depth_close": 3})) != \
        scoring_settings_sha256(SearchConfig(), PreprocessSpec())


def test_frame_to_uint8_closes_before_the_rgb_is_masked():
    """A notch closed at the camera's resolution keeps the colour the camera saw there (the masking follows
    the closed depth); after depth_fill, whose windows at the edge are mostly background."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(20, 255, (64, 64, 3)).astype(np.uint8)
    depth = np.zeros((64, 64), np.uint8)
    depth[20:44, 16:48] = 120
    depth[20, 30:32] = 0                                              # two readings lost on the top edge
    spec_fill = PreprocessSpec.from_dict({"depth_fill": 3})
    spec_close = PreprocessSpec.from_dict({"depth_fill": 3, "depth_close": 3})
    notched, closed = frame_to_uint8(rgb, depth, spec_fill), frame_to_uint8(rgb, depth, spec_close)
    assert list(notched[20, 30:32, 3]) == [0, 0] and not notched[20, 30:32, :3].any()   # the fill leaves them
    assert list(closed[20, 30:32, 3]) == [120, 120]
    assert np.array_equal(closed[20, 30:32, :3], rgb[20, 30:32])      # their RGB, not black
    same = closed.copy()
    same[20, 30:32] = notched[20, 30:32]
    assert np.array_equal(same, notched)                              # nothing else changed


def test_edge_holes_on_real_frames_close(val_frames):
    """Real val frames with 30 % of their edge readings lost (depth-edge-holes:0.3): depth_close 3 after the
    fill brings back readings the fill leaves (not all: a lost reading on a convex bend of the silhouette or
    on a 1-px-wide structure is not in the closing), with the RGB the camera saw."""
    spec = PreprocessSpec()
    spec_fill = PreprocessSpec.from_dict({"depth_fill": 3})
    spec_close = PreprocessSpec.from_dict({"depth_fill": 3, "depth_close": 3})
    edge = parse_nuisance("depth-edge-holes:0.3")
    left_fill = left_close = 0
    for i, (rgb, depth) in enumerate(val_frames(6)):
        clean = frame_to_uint8(rgb, depth, spec).astype(int)
        r, d = edge(rgb, depth, frame_rng(0, i))
        obj = clean[..., 3] > 0
        filled, closed = frame_to_uint8(r, d, spec_fill).astype(int), frame_to_uint8(r, d, spec_close).astype(int)
        left_fill += (obj & (filled[..., 3] == 0)).sum()
        left_close += (obj & (closed[..., 3] == 0)).sum()
        back = obj & (closed[..., 3] > 0)
        assert np.array_equal(closed[..., :3][back], clean[..., :3][back])
    assert left_fill > 60 and left_close < 0.7 * left_fill, (left_fill, left_close)


def test_sensor_fault_checks_see_the_depth_as_captured(val_frames):
    """As for depth_fill: a blinded colour sensor on a frame with dropouts is reported whether or not the
    spec closes them (and with a u8 the caller made under the closing spec)."""
    assert_faults_see_the_depth_as_captured(val_frames, PreprocessSpec.from_dict({"depth_close": 5}), "depth-holes:0.3")


@pytest.mark.parametrize("k", [3, 5, 7])
def test_window_counts_equal_a_brute_force_count(k):
    """preprocess._window_counts (the fill's and close's masks; separable uint8 sums since audit 29 #10) equals
    counting each k x k window's True pixels one by one, on random masks of odd and camera-like shapes."""
    from edge_ad.runtime.preprocess import _window_counts
    rng = np.random.default_rng(k)
    for h, w, p in ((k, k, 1.0), (9, 13, 0.5), (30, 41, 0.9), (48, 64, 0.1)):
        mask = rng.random((h, w)) < p
        want = np.array([[mask[y:y + k, x:x + k].sum() for x in range(w - k + 1)] for y in range(h - k + 1)])
        got = _window_counts(mask, k)
        assert got.dtype == np.int32 and got.shape == want.shape and np.array_equal(got, want), (h, w, p)
