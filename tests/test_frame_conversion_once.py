"""A camera frame is converted once (audit 29 #10): with depth_fill / depth_close on, the sensor-fault checks
(which see the depth as captured) and the model's frame come from one depth conversion at the camera's
resolution (preprocess.frame_to_uint8_pair), in ``Scorer.score``'s preprocessing (scorer.frame_input) and in
``edge-ad run``'s loop (capture.check_frame); the model input and the faults are bit for bit what the two
separate conversions gave."""
from __future__ import annotations

import numpy as np
import pytest

from edge_ad.runtime import preprocess
from edge_ad.runtime.capture import check_frame
from edge_ad.runtime.nuisance import frame_rng, parse_nuisance
from edge_ad.runtime.preprocess import PreprocessSpec, frame_to_uint8, normalize_uint8
from edge_ad.runtime.scorer import frame_input
from edge_ad.runtime.sensor_faults import SensorFaultDetector, SensorFaultError, frame_faults
from edge_ad.runtime.sources.base import Frame

SPECS = {"fill": {"depth_fill": 3}, "fill+close": {"depth_fill": 3, "depth_close": 3}, "plain": {}}


def _camera_frame(val_frames, blinded: bool = False) -> tuple:
    """A real val frame with 20 % depth dropouts brought to a camera's size (256 x 192 of the 4:3 640 x 480
    kind: nearest upscale) and uint16 millimetres: (rgb (192, 256, 3) uint8, depth (192, 256) uint16).
    ``blinded``: every pixel with a reading saturated (the saturated_rgb fault)."""
    rgb, depth = val_frames(2)[1]
    rgb, d8 = parse_nuisance("depth-holes:0.2")(rgb, depth, frame_rng(0, 0))
    h, w = d8.shape
    ys, xs = np.arange(192) * h // 192, np.arange(256) * w // 256
    rgb, d8 = rgb[np.ix_(ys, xs)], d8[np.ix_(ys, xs)]
    mm = np.where(d8 > 0, np.rint(d8.astype(np.float64) * 700.0 / 255.0), 0).astype(np.uint16)
    if blinded:
        rgb = np.where((mm > 0)[:, :, None], 255, rgb).astype(np.uint8)
    return rgb, mm


@pytest.fixture
def conversions(monkeypatch):
    """The number of depth conversions (preprocess.depth_to_8bit calls) so far: a list of one counter."""
    n = [0]
    real = preprocess.depth_to_8bit

    def counted(depth, spec):
        n[0] += 1
        return real(depth, spec)
    monkeypatch.setattr(preprocess, "depth_to_8bit", counted)
    return n


@pytest.mark.parametrize("levers", list(SPECS), ids=list(SPECS))
def test_score_preprocessing_converts_the_frame_once(val_frames, conversions, levers):
    """frame_input (what Scorer.score runs, fault checks on): one depth conversion, and the model input equals
    normalize_uint8(frame_to_uint8) bit for bit."""
    spec = PreprocessSpec.from_dict(SPECS[levers])
    rgb, depth = _camera_frame(val_frames)
    want = normalize_uint8(frame_to_uint8(rgb, depth, spec), spec)           # (4, R, R) float32
    assert frame_faults(rgb, depth, spec) == []
    conversions[0] = 0
    x = frame_input(rgb, depth, spec, check_faults=True)
    assert conversions[0] == 1, f"{conversions[0]} depth conversions of one frame ({levers})"
    assert x.dtype == want.dtype and np.array_equal(x, want)


@pytest.mark.parametrize("levers", list(SPECS), ids=list(SPECS))
def test_the_run_loops_check_converts_the_frame_once(val_frames, conversions, levers):
    """capture.check_frame (edge-ad run's loop, a detector and a uint8-scoring scorer): one depth conversion;
    its u8 is frame_to_uint8's."""
    spec = PreprocessSpec.from_dict(SPECS[levers])
    rgb, depth = _camera_frame(val_frames)
    want = frame_to_uint8(rgb, depth, spec)
    conversions[0] = 0
    u8, _ = check_frame(Frame("f", rgb, depth), SensorFaultDetector(spec, stuck=True), None, True)
    assert conversions[0] == 1, f"{conversions[0]} depth conversions of one frame ({levers})"
    assert np.array_equal(u8, want)


@pytest.mark.parametrize("levers", ["fill", "fill+close"])
def test_the_shared_conversion_still_checks_the_depth_as_captured(val_frames, levers):
    """A blinded colour sensor on a frame with dropouts: repairing the depth would bring back unsaturated pixels;
    the one-conversion paths report the faults of the frame as captured (frame_faults converting the frame itself), as before."""
    spec = PreprocessSpec.from_dict(SPECS[levers])
    rgb, depth = _camera_frame(val_frames, blinded=True)
    want = [str(f) for f in frame_faults(rgb, depth, spec)]
    assert want and want == [str(f) for f in frame_faults(rgb, depth, PreprocessSpec())]
    with pytest.raises(SensorFaultError) as e:
        frame_input(rgb, depth, spec, check_faults=True)
    assert [str(f) for f in e.value.faults] == want
    with pytest.raises(SensorFaultError) as e:
        check_frame(Frame("f", rgb, depth), SensorFaultDetector(spec, stuck=True), None, True)
    assert [str(f) for f in e.value.faults] == want
