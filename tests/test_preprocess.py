"""The one preprocessing definition, checked against hand-computed values on a real kinect frame."""
from pathlib import Path

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


def test_float_depth_with_nan_holes_is_refused_naming_the_fix():
    """Audit 32 #7: a robot program taking ROS 32FC1 depth through cv_bridge (NaN where there is no reading, x 1000
    to millimetres) had every frame refused with "depth contains NaN or infinite values", naming neither the cause
    nor the fix. Still refused (NaN is no reading to guess), the message counts the pixels and says what to do."""
    rgb = np.full((64, 64, 3), 120, np.uint8)
    depth = np.full((64, 64), 400.0, np.float32)
    depth[:3, :5] = np.nan
    depth[10, 10] = np.inf
    with pytest.raises(FrameError, match=r"^depth contains NaN or infinite values \(16 of 4096 pixels\): set missing "
                                         r"readings to 0 \(no reading\) first; ROS 32FC1 / cv_bridge mark them NaN$"):
        preprocess(rgb, depth)
    depth[~np.isfinite(depth)] = 0                       # the fix the message names: scored as no reading
    assert preprocess(rgb, depth).shape == (4, 64, 64)


@pytest.mark.parametrize("rgb,depth,msg", [
    ("frame.jpg", np.zeros((64, 64), np.uint8),
     r"^RGB must be an H x W x 3 uint8 array, got the str 'frame.jpg': a file path\? read the image first"),
    (np.zeros((64, 64, 3), np.uint8), Path("frame.png"),
     r"^depth must be an H x W array \(uint8, or uint16 / float millimetres\), got the \w*Path 'frame.png': a file "),
    ({"rgb": 1}, np.zeros((64, 64), np.uint8), r"^RGB must be an H x W x 3 uint8 array, got a value of type dict$"),
    (np.zeros((64, 64, 3), np.uint8), [[400, 400], [400]], r"^depth must be an H x W array .*, got a value of type list$"),
    (np.zeros((64, 64, 3), np.uint8), 400, r"^depth must be an H x W array .*, got a value of type int$"),
])
def test_what_is_not_an_image_array_is_named(rgb, depth, msg):
    """A path, a dict, a ragged list or a number given for an image: before, "RGB must be H x W x 3, got shape ()"
    (a path), a ValueError from NumPy (a ragged list); now its type, and for a path how to read it."""
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


def test_depth_in_another_unit_is_refused_naming_it(kinect_root):
    """Audit 2 #5: kinect 8-bit levels in a uint16 PNG were read as millimetres, and float depth in
    metres as millimetres (every reading at level 1), both scored. Now a FrameError names the unit
    expected and what was seen; every real frame in mm (uint16 and float) is still accepted."""
    import json

    from edge_ad.runtime.sensor_faults import frame_faults
    spec = PreprocessSpec()                                   # kinect-rgbd: 0-700 mm
    splits = json.loads((kinect_root / "splits.json").read_text())
    n = 0
    for cls in ("rectangle", "cylinder", "sphere"):
        for fid in splits[cls]["val"]:
            rgb, d8 = _real_frame(kinect_root, cls, fid)
            mm = np.where(d8 > 0, d8.astype(np.float64) * 700 / 255, 0)   # the same frame in millimetres
            want = preprocess(rgb, d8, spec)
            for good in (mm.astype(np.uint16), mm.astype(np.float32)):   # accepted, about the same input
                assert np.abs(preprocess(rgb, good, spec) - want).max() <= 2 / 255 + 1e-6, (cls, fid)
            if n % 25 == 0:
                with pytest.raises(FrameError, match=r"float depth with max 0\.[0-9]+ looks like metres; "
                                                     r"expected millimetres \(this model reads 0-700 mm\)"):
                    preprocess(rgb, (mm / 1000).astype(np.float32), spec)
                # readings all within 1..255 are millimetres (a close-range scene), not refused (review 15 #1)
                as_mm = np.where(d8 > 0, np.clip(np.rint(d8.astype(np.float64) * 255 / 700), 1, 255), 0)
                for small in (d8.astype(np.uint16), d8.astype(np.float32)):
                    assert np.array_equal(depth_to_8bit(small, spec), as_mm), (cls, fid)
            n += 1
    assert n == 300                                          # 100 val frames per class


def test_depth_unit_rule_follows_the_models_range():
    """Readings all within 1..255 mm are millimetres for every model range (review 15 #1: they were
    refused as 8-bit levels when far_mm >= 510, though a close-range camera, a part lifted towards the
    camera or a hand give them); one whose range ends within 20 mm reads small floats; a nearly empty
    depth frame is the no_depth fault, not a unit error."""
    from edge_ad.runtime.sensor_faults import frame_faults
    rgb = (np.full((64, 64, 3), 100) + np.arange(64)[:, None, None]).astype(np.uint8)   # shaded, not flat_rgb
    close = np.zeros((64, 64), np.uint16)
    close[16:48, 16:48] = 200                                 # an object 20 cm away, nothing behind it
    for d in (close, close.astype(np.float32)):
        x = preprocess(rgb, d, PreprocessSpec(far_mm=700))
        assert x.shape == (4, 64, 64)
        assert np.allclose(x[3, 16:48, 16:48], (73 / 255 - 0.5) / 0.5)  # 200 mm of 0-700: level 73
        assert frame_faults(rgb, d, PreprocessSpec(far_mm=700)) == []
    assert preprocess(rgb, close, PreprocessSpec(far_mm=300)).shape == (4, 64, 64)
    assert preprocess(rgb, close.astype(np.float32), PreprocessSpec(far_mm=300)).shape == (4, 64, 64)
    tiny = close.astype(np.float32) / 100                     # 2 "mm"
    with pytest.raises(FrameError, match="max 2 looks like metres"):
        preprocess(rgb, tiny, PreprocessSpec(far_mm=300))
    assert preprocess(rgb, tiny, PreprocessSpec(far_mm=10)).shape == (4, 64, 64)
    few = np.zeros((64, 64), np.uint16)
    few[0, :10] = 200                                          # 0.24% of the pixels: a dead sensor
    assert [f.name for f in frame_faults(rgb, few, PreprocessSpec())] == ["no_depth"]
    far = np.full((64, 64), 600, np.uint16)
    far[:, :32] = 200                                          # some readings past 255 mm: millimetres
    assert preprocess(rgb, far, PreprocessSpec()).shape == (4, 64, 64)


def test_uint16_depth_is_looked_up_as_the_float_path_computes_every_reading():
    """Audit 29 #10: depth_to_8bit ran float64 maths on every pixel of a camera's uint16 frame (twice a frame at
    1080p: 0.16 s). A uint16 frame is now one table lookup per pixel, the table being the float path applied
    to each of the 65536 readings once per depth range: every reading maps exactly as a float frame of the same
    millimetres does (default range, a narrow one, fractional limits), and the caller's result is its own."""
    every = np.arange(1 << 16, dtype=np.uint16).reshape(256, 256)
    for spec in (PreprocessSpec(), PreprocessSpec(near_mm=300, far_mm=900), PreprocessSpec(near_mm=0.5, far_mm=4000.25)):
        looked_up = depth_to_8bit(every, spec)
        computed = depth_to_8bit(every.astype(np.float64), spec)
        assert looked_up.dtype == np.uint8 and np.array_equal(looked_up, computed), spec
        assert looked_up[0, 0] == 0 and looked_up.max() == 255 and looked_up.flags.writeable
    frame = np.array([[0, 1, 350, 700], [701, 65535, 699, 2]], np.uint16)
    assert depth_to_8bit(frame, PreprocessSpec()).tolist() == [[0, 1, 128, 255], [0, 0, 255, 1]]
