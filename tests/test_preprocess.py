"""The one preprocessing definition, checked against hand-computed values on a real kinect frame."""
import numpy as np
import pytest
from PIL import Image

from edge_ad.runtime.preprocess import FrameError, PreprocessSpec, depth_to_8bit, preprocess, to_display


def _real_frame(kinect_root, cls="rectangle", fid=0):
    rgb = np.asarray(Image.open(kinect_root / cls / "rgb" / f"{fid}.jpg").convert("RGB"))
    depth = np.asarray(Image.open(kinect_root / cls / "depth" / f"{fid}.png"))
    return rgb, depth


def test_real_frame_matches_hand_computed_values(kinect_root):
    rgb, depth = _real_frame(kinect_root)
    x = preprocess(rgb, depth)
    assert x.shape == (4, 64, 64) and x.dtype == np.float32
    ys, xs = np.nonzero(depth)
    y, x_ = ys[len(ys) // 2], xs[len(xs) // 2]  # a foreground pixel
    for c in range(3):
        assert x[c, y, x_] == pytest.approx((rgb[y, x_, c] / 255.0 - 0.5) / 0.5, abs=1e-6)
    assert x[3, y, x_] == pytest.approx((depth[y, x_] / 255.0 - 0.5) / 0.5, abs=1e-6)
    # background (depth 0): all four channels at -1, RGB masked black as in the capture
    by, bx = np.argwhere(depth == 0)[0]
    assert np.allclose(x[:, by, bx], -1.0)
    assert x.min() >= -1 and x.max() <= 1


def test_16bit_millimetres_map_to_the_8bit_scale():
    spec = PreprocessSpec(near_mm=0, far_mm=700)
    d = np.array([[0, 350, 700, 701], [1, 2000, 100, 699]], np.uint16)
    out = depth_to_8bit(d, spec)
    assert out.dtype == np.uint8
    assert out.tolist() == [[0, 128, 255, 0], [1, 0, 36, 255]]  # 255*350/700=127.5->128, beyond far -> 0
    spec2 = PreprocessSpec(near_mm=300, far_mm=500)
    assert depth_to_8bit(np.array([[299, 300, 400, 500]], np.uint16), spec2).tolist() == [[0, 1, 128, 255]]


def test_larger_frames_are_centre_cropped_and_resized():
    rgb = np.zeros((120, 160, 3), np.uint8)
    rgb[:, 20:140] = 200  # the centre square
    depth = np.full((120, 160), 400, np.uint16)
    x = preprocess(rgb, depth)
    assert x.shape == (4, 64, 64)
    assert np.allclose(x[:3], (200 / 255 - 0.5) / 0.5, atol=1e-6)  # the crop kept only the centre


@pytest.mark.parametrize("rgb,depth,msg", [
    (np.zeros((64, 64), np.uint8), np.zeros((64, 64), np.uint8), "H x W x 3"),
    (np.zeros((64, 64, 3), np.float32), np.zeros((64, 64), np.uint8), "uint8"),
    (np.zeros((64, 64, 3), np.uint8), None, "missing depth"),
    (None, np.zeros((64, 64), np.uint8), "missing RGB"),
    (np.zeros((64, 64, 3), np.uint8), np.zeros((32, 64), np.uint8), "sizes differ"),
    (np.zeros((64, 64, 3), np.uint8), np.full((64, 64), np.nan, np.float32), "NaN"),
    (np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64), np.int64), "depth must be"),
])
def test_bad_frames_name_the_problem(rgb, depth, msg):
    with pytest.raises(FrameError, match=msg):
        preprocess(rgb, depth)


def test_display_round_trip(kinect_root):
    rgb, depth = _real_frame(kinect_root, "sphere", 0)
    r2, d2 = to_display(preprocess(rgb, depth))
    assert np.array_equal(d2, depth)
    assert np.array_equal(r2[depth > 0], rgb[depth > 0])


def test_spec_round_trip_and_validation():
    spec = PreprocessSpec(far_mm=1000)
    assert PreprocessSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="unknown preprocessing fields"):
        PreprocessSpec.from_dict({"resolution": 64, "gamma": 2})
    with pytest.raises(ValueError, match="near_mm"):
        PreprocessSpec.from_dict({"near_mm": 800, "far_mm": 700})
