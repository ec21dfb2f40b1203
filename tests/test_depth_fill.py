"""PreprocessSpec.depth_fill (issue 12, sensor noise: depth dropouts): fill_depth_holes closes missing
readings inside the object and leaves background and the silhouette alone; frame_to_uint8 applies it before
the RGB is masked; the field is validated, carried and reported like the other scoring levers."""
from __future__ import annotations

import numpy as np
import pytest

from edge_ad.runtime.nuisance import frame_rng, parse_nuisance
from edge_ad.runtime.preprocess import (PreprocessSpec, fill_depth_holes, frame_to_uint8, levers_text,
                                        plain_spec)

from depth_faults import assert_faults_see_the_depth_as_captured


def _object(h=12, w=12, value=100) -> np.ndarray:
    d = np.zeros((h, w), np.uint8)
    d[3:9, 3:9] = value                                      # a 6 x 6 object on background
    return d


def test_a_hole_inside_the_object_gets_its_windows_median():
    d = _object()
    d[4:7, 4:7] = np.arange(100, 109, dtype=np.uint8).reshape(3, 3)
    d[5, 5] = 0                                              # neighbours 100..108 without 104: median 104
    d[3, 6] = 0                                              # on the object's top row: 6 of 9 valid -> filled
    before = d.copy()
    out = fill_depth_holes(d, 3)
    assert out[5, 5] == 104
    assert out[3, 6] == 100
    assert np.array_equal(d, before)                          # the input is not modified
    assert out.dtype == np.uint8 and out.shape == d.shape
    assert np.array_equal(out[d > 0], d[d > 0])               # valid readings untouched


def test_background_and_the_silhouette_stay():
    d = _object()
    out = fill_depth_holes(d, 3)
    assert np.array_equal(out, d)                            # straight edges: 3 of 9 valid outside -> kept 0
    lone = np.zeros((9, 9), np.uint8)
    lone[4, 4] = 50                                          # one isolated reading does not spread
    assert np.array_equal(fill_depth_holes(lone, 3), lone)
    assert np.array_equal(fill_depth_holes(np.zeros((5, 5), np.uint8), 5), np.zeros((5, 5), np.uint8))


def test_random_dropouts_inside_a_real_frame_close(val_frames):
    """A real val frame with 20 % of its depth readings lost (the nuisance suite's depth-holes): the
    filled frame is much closer to the frame as captured than the holed one, RGB included (masking
    follows the filled depth)."""
    spec = PreprocessSpec()
    spec_fill = PreprocessSpec.from_dict({"depth_fill": 3})
    holes = parse_nuisance("depth-holes:0.2")
    for rgb, depth in val_frames(3):
        clean = frame_to_uint8(rgb, depth, spec).astype(int)
        r, d = holes(rgb, depth, frame_rng(0, 0))
        lost = int(((depth > 0) & (d == 0)).sum())
        assert lost > 0.1 * (depth > 0).sum()
        holed, filled = frame_to_uint8(r, d, spec).astype(int), frame_to_uint8(r, d, spec_fill).astype(int)
        obj = clean[..., 3] > 0
        still_lost = (obj & (filled[..., 3] == 0)).sum()
        assert (obj & (holed[..., 3] == 0)).sum() == lost and still_lost < 0.5 * lost   # most holes closed (on the edge a window is mostly background)
        assert np.array_equal(filled[..., :3][obj & (filled[..., 3] > 0)], clean[..., :3][obj & (filled[..., 3] > 0)])
        assert np.abs(filled - clean).sum() < 0.5 * np.abs(holed - clean).sum()
        # the filled spec on the frame as captured changes (almost) nothing
        same = np.abs(frame_to_uint8(rgb, depth, spec_fill).astype(int) - clean)
        assert (same.any(axis=2)).mean() < 0.01


def test_the_field_is_validated_carried_and_reported():
    assert PreprocessSpec.from_dict({}).depth_fill == 0                       # older manifests: off
    spec = PreprocessSpec.from_dict({"depth_fill": 5})
    assert PreprocessSpec.from_dict(spec.to_dict()) == spec
    assert "depth_fill 5" in levers_text(spec) and plain_spec(spec).depth_fill == 0
    for bad in (1, 2, 4, 9, -3, 3.0, True, "3", None):
        with pytest.raises(ValueError, match="depth_fill must be one of"):
            PreprocessSpec.from_dict({"depth_fill": bad})
    for bad_call in (lambda: fill_depth_holes(np.zeros((4, 4), np.uint16), 3),
                     lambda: fill_depth_holes(np.zeros((4, 4), np.uint8), 4)):
        with pytest.raises(ValueError, match="fill"):
            bad_call()


def test_sensor_fault_checks_see_the_depth_as_captured(val_frames):
    """A blinded colour sensor (every pixel with a depth reading saturated) on a frame with depth dropouts:
    filling the dropouts would bring back unsaturated pixels, but the checks run on the frame as captured,
    with or without a u8 the caller made under the filling spec."""
    assert_faults_see_the_depth_as_captured(val_frames, PreprocessSpec.from_dict({"depth_fill": 3}), "depth-holes:0.2")


def test_off_it_is_left_out_so_results_files_resume_across_the_upgrade():
    """Review 18 #1: the default spec's dict (manifests, config_sha256) is what edge-ads before depth_fill
    wrote, so a results file they wrote resumes: the settings hash of the default configuration and
    preprocessing, pinned as 3f71964 computed it."""
    from edge_ad.runtime.config import SearchConfig
    from edge_ad.runtime.scorer import scoring_settings_sha256
    assert "depth_fill" not in PreprocessSpec().to_dict()
    assert PreprocessSpec.from_dict({"depth_fill": 3}).to_dict()["depth_fill"] == 3
    assert scoring_settings_sha256(SearchConfig(), PreprocessSpec()) == \
        "3784eaa82ac51e28321368245c028dec4979908528d730a47daa274816592d27"


@pytest.mark.parametrize("chunk", [None, 7])
@pytest.mark.parametrize("k", [3, 5, 7])
def test_fill_equals_a_pixel_by_pixel_loop(k, chunk, monkeypatch):
    """The integral-image count and the medians at the candidates equal the definition, pixel by pixel,
    frame edges (zero padding) included; also when the medians are taken in chunks of 7 pixels."""
    if chunk:
        monkeypatch.setattr("edge_ad.runtime.preprocess._MEDIAN_CHUNK", chunk)
    rng = np.random.default_rng(k)
    for _ in range(6):
        h, w = rng.integers(4, 20, 2)
        d = rng.integers(1, 256, (h, w)).astype(np.uint8)
        d[rng.random((h, w)) < rng.random()] = 0
        want = d.copy()
        r = k // 2
        p = np.pad(d, r)
        for y, x in zip(*np.nonzero(d == 0)):
            vals = p[y:y + k, x:x + k]
            vals = vals[vals > 0].astype(float)
            if 2 * len(vals) >= k * k:
                want[y, x] = np.rint(np.median(vals))
        assert np.array_equal(fill_depth_holes(d, k), want)


@pytest.mark.parametrize("n", [2, 9, 25, 49])
def test_the_medians_sorting_network_sorts(n):
    """preprocess._sorting_network(n) (the fill step's column sort): every 0/1 column of n values when there
    are few enough (the 0-1 principle: then it sorts everything), else many random ones with ties."""
    from edge_ad.runtime.preprocess import _sorting_network
    if n <= 9:
        cols = ((np.arange(1 << n)[None, :] >> np.arange(n)[:, None]) & 1).astype(np.uint8)   # (n, 2^n)
    else:
        cols = np.random.default_rng(n).integers(0, 5, (n, 20000)).astype(np.uint8)
    v = cols.copy()
    for i, j in _sorting_network(n):
        assert 0 <= i < j < n
        v[i], v[j] = np.minimum(v[i], v[j]), np.maximum(v[i], v[j])
    assert np.array_equal(v, np.sort(cols, axis=0))


def test_a_fill_pixel_without_a_valid_reading_is_refused_naming_it():
    """Review 20 #16: the medians need >= 1 valid reading per window (the masks of fill_depth_holes and
    close_depth_notches guarantee it); a mask that breaks it is refused naming the pixel, not an IndexError."""
    from edge_ad.runtime.preprocess import _with_window_medians, fill_mask
    d = _object()
    fill = fill_mask(d, 3)
    fill[0, 11] = True                                       # a corner of background: its 3 x 3 window has no reading
    with pytest.raises(ValueError, match=r"depth pixel \(0, 11\) has no valid reading in its 3 x 3 window"):
        _with_window_medians(d, fill, 3)
    assert np.array_equal(_with_window_medians(d, fill_mask(d, 3), 3), fill_depth_holes(d, 3))
