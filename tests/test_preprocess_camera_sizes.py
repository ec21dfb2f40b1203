"""Preprocessing of camera-size frames (RealSense 640x480, 1280x720): the only frames that are resized.

The kinect-rgbd frames are 64x64, so scoring them never runs the resize. Here real kinect frames are
blown up to camera sizes (nearest, so every pixel keeps a real value, and padded with background to
the camera's aspect ratio); preprocessing must centre-crop them and resize depth with NEAREST: every
depth value after the resize is one that was measured (averaging across an object edge invents depths),
and the depth channel, the foreground share and the score equal a NEAREST reference computed here
independently of Pillow's resampling."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from edge_ad.runtime.config import make_z0
from edge_ad.runtime.preprocess import PreprocessSpec, depth_to_8bit, normalize_uint8, preprocess
from edge_ad.runtime.score_scale import foreground_fraction


def camera_frame(rgb64, depth64, width: int, height: int, mm: bool = False):
    """A 64x64 kinect frame as a width x height camera frame: scaled up (nearest) to a square of 5/6 of the
    height (a scale that does not line up with the resize back to 64x64), placed off-centre on background.
    mm: depth as uint16 millimetres (RealSense), 0 = no reading."""
    n = height * 5 // 6
    idx = (np.arange(n) * 64) // n                                 # nearest source row/column
    rgb = np.zeros((height, width, 3), np.uint8)
    d8 = np.zeros((height, width), np.uint8)
    top, left = height // 12, (width - n) // 2 + 7
    rgb[top:top + n, left:left + n] = rgb64[np.ix_(idx, idx)]
    d8[top:top + n, left:left + n] = depth64[np.ix_(idx, idx)]
    if not mm:
        return rgb, d8
    # uint16 mm that depth_to_8bit maps back to exactly d8: 8-bit value v <-> v * 700 / 255 mm
    return rgb, np.where(d8 > 0, np.rint(d8.astype(np.float64) * 700.0 / 255.0), 0).astype(np.uint16)


def nearest_reference(rgb, depth, spec: PreprocessSpec) -> np.ndarray:
    """The model input by hand: 8-bit depth, background-masked RGB, centre crop, RGB box-filtered (Pillow,
    as specified), depth by nearest-neighbour indexing (pixel centres, no Pillow), scaled to [-1, 1]."""
    d8 = depth_to_8bit(depth, spec)
    rgb = np.where((d8 > 0)[:, :, None], rgb, 0).astype(np.uint8)
    h, w = d8.shape
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    rgb, d8 = rgb[top:top + s, left:left + s], d8[top:top + s, left:left + s]
    R = spec.resolution
    idx = ((np.arange(R) + 0.5) * s / R).astype(int)             # the source pixel under each output centre
    rgb_r = np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).resize((R, R), Image.BOX))
    d_r = d8[np.ix_(idx, idx)]
    return normalize_uint8(np.concatenate([rgb_r, d_r[:, :, None]], axis=2), spec)


SIZES = [(640, 480, False), (1280, 720, True)]                    # RealSense colour sizes; 720p in millimetres


@pytest.mark.parametrize("width,height,mm", SIZES)
def test_camera_frames_resize_depth_by_nearest(val_frames, width, height, mm):
    spec = PreprocessSpec()
    for rgb64, depth64 in val_frames(3):                          # cylinder, rectangle, sphere
        rgb, depth = camera_frame(rgb64, depth64, width, height, mm)
        x = preprocess(rgb, depth, spec)
        measured = set(np.unique(depth_to_8bit(depth, spec)).tolist())
        got = np.rint((x[3] * spec.std + spec.mean) * 255.0).astype(int)
        invented = set(np.unique(got).tolist()) - measured
        assert not invented, f"{width}x{height}: depth values {sorted(invented)[:10]} were never measured"
        ref = nearest_reference(rgb, depth, spec)
        np.testing.assert_array_equal(x, ref)
        assert foreground_fraction(x) == foreground_fraction(ref)
        # the object edge is inside the crop: resizing had something to average (the check is not vacuous)
        assert 0.02 < foreground_fraction(x) < 0.9


def test_camera_frame_scores_like_the_nearest_reference(export_tiny, val_frames):
    """The score of a 640x480 frame is the score of the reference input (same x, so bit-identical)."""
    from edge_ad.runtime.scorer import Scorer
    scorer = Scorer.load(export_tiny(3, 2), variant="step", threads=1)
    (rgb64, depth64), = val_frames(1)
    rgb, depth = camera_frame(rgb64, depth64, 640, 480)
    z0 = make_z0(2, 100, 7)
    got = scorer.score(rgb, depth, z0=z0)
    want = scorer.score_input(nearest_reference(rgb, depth, scorer.preprocess), z0=z0)
    assert got.score == want.score
    np.testing.assert_array_equal(got.error_map, want.error_map)


def test_frames_below_8_pixels_are_refused_by_name():
    """The smallest frame: 8 x 8 is resized up; a 7-pixel side is a FrameError naming the size."""
    from edge_ad.runtime.preprocess import FrameError
    x = preprocess(np.full((8, 8, 3), 200, np.uint8), np.full((8, 8), 90, np.uint8))
    assert x.shape == (4, 64, 64)
    np.testing.assert_allclose(x[3], (90 / 255 - 0.5) / 0.5, rtol=1e-6)           # nearest keeps the one depth
    for h, w in ((7, 640), (480, 7)):
        with pytest.raises(FrameError, match=rf"RGB image too small: \({h}, {w}\)"):
            preprocess(np.zeros((h, w, 3), np.uint8), np.zeros((h, w), np.uint8))
