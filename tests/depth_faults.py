"""Shared by test_depth_fill and test_depth_close: the sensor-fault checks of a depth-repairing spec see the
depth as captured."""
from __future__ import annotations

import numpy as np

from edge_ad.runtime.nuisance import frame_rng, parse_nuisance
from edge_ad.runtime.preprocess import PreprocessSpec, frame_to_uint8_pair


def assert_faults_see_the_depth_as_captured(val_frames, spec: PreprocessSpec, holes: str) -> None:
    """A blinded colour sensor (every pixel with a depth reading saturated) on a real val frame with depth
    dropouts (``holes``, e.g. "depth-holes:0.2"): repairing the depth under ``spec`` would bring back
    unsaturated pixels, but frame_faults reports what the plain spec reports (saturated_rgb first), with or
    without the frame as captured that the caller made (``frame_to_uint8_pair``'s second array)."""
    from edge_ad.runtime.sensor_faults import frame_faults
    rgb, depth = val_frames(2)[1]
    _, d = parse_nuisance(holes)(rgb, depth, frame_rng(0, 0))
    blinded = np.where((d > 0)[:, :, None], 255, rgb).astype(np.uint8)
    want = [f.name for f in frame_faults(blinded, d, PreprocessSpec())]
    assert want[:1] == ["saturated_rgb"]
    assert [f.name for f in frame_faults(blinded, d, spec)] == want
    assert [f.name for f in frame_faults(blinded, d, spec, captured=frame_to_uint8_pair(blinded, d, spec)[1])] == want
