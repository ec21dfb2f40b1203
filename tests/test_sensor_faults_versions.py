"""Stored sensor limits keep their meaning across edge-ad versions (review 15b).

Limits stored before ``noise_measured_on`` existed (old checkpoints and exports: noise_level 16, noise
measured on the 64 x 64 model frame) are read as "model" and judge noise as they did then; new limits
say "camera". The colour-noise check at camera resolution looks only at the model's foreground
(depth inside [near_mm, far_mm]). The limits gate frames and never change scores, so they stay out
of ``config_sha256``.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image

from edge_ad.runtime.config import SearchConfig
from edge_ad.runtime.nuisance import RgbNoise
from edge_ad.runtime.preprocess import PreprocessSpec, SensorLimits, frame_to_uint8
from edge_ad.runtime.scorer import scoring_settings_sha256
from edge_ad.runtime.sensor_faults import channel_correlation, frame_faults, neighbour_differences

# what every checkpoint and manifest stored before 2d2c8e1 (no noise_measured_on)
OLD_STORED = {"enabled": True, "min_valid_depth": 0.005, "min_foreground": 0.005, "black_level": 16,
              "max_black": 0.5, "saturated_level": 250, "max_saturated": 0.5, "min_channel_correlation": 0.5,
              "noise_level": 16.0, "max_identical_frames": 1}


def camera_frames(val_frames, h=480, w=640):
    """Real val frames upsampled to a 640 x 480 camera with sensor noise sigma 15 (rgb-noise:15)."""
    rng = np.random.default_rng(3)
    for rgb, d8 in val_frames(6):
        big = np.asarray(Image.fromarray(rgb).resize((w, h), Image.BILINEAR))
        depth = np.asarray(Image.fromarray(d8).resize((w, h), Image.NEAREST))
        noisy, _ = RgbNoise(15.0)(big, depth, rng)
        yield noisy, depth


def old_colour_noise(rgb, depth, spec) -> bool:
    """colour_noise as edge-ad judged it before 2d2c8e1: on the model frame's foreground."""
    x = frame_to_uint8(rgb, depth, spec)
    d = neighbour_differences(x[:, :, :3], x[:, :, 3] > 0)
    level = float(np.abs(d).mean())
    corr = channel_correlation(d) if level > spec.sensor_faults.noise_level else None
    return corr is not None and corr < spec.sensor_faults.min_channel_correlation


def test_limits_stored_without_the_marker_judge_noise_as_they_did(val_frames):
    """An old stored dict reads as measured on the model frame: a normally noisy 640 x 480 camera (sigma
    15) is scored, as before 2d2c8e1 (not refused as colour_noise: it reads ~18 > 16 at the camera)."""
    old = SensorLimits.from_dict(OLD_STORED)
    assert old.noise_measured_on == "model"
    spec = PreprocessSpec(sensor_faults=old)
    as_camera = PreprocessSpec(sensor_faults=dataclasses.replace(old, noise_measured_on="camera"))
    n = 0
    for rgb, depth in camera_frames(val_frames):
        assert [f.name for f in frame_faults(rgb, depth, spec)] == [], "old limits refuse a noisy camera"
        assert not old_colour_noise(rgb, depth, spec)
        # the same numbers measured at the camera: what broke (every frame colour_noise)
        n += [f.name for f in frame_faults(rgb, depth, as_camera)] == ["colour_noise"]
    assert n == 6
    # a dict from a spec round-trips its marker; the new defaults say "camera"
    assert SensorLimits().noise_measured_on == "camera"
    assert PreprocessSpec.from_dict(PreprocessSpec().to_dict()).sensor_faults == SensorLimits()
    assert SensorLimits.from_dict(dataclasses.asdict(as_camera.sensor_faults)).noise_measured_on == "camera"


def test_new_limits_judge_noise_at_the_camera(val_frames):
    """The new defaults: sigma-15 camera noise is scored, uniform random colour is colour_noise."""
    rng = np.random.default_rng(4)
    for rgb, depth in camera_frames(val_frames):
        assert frame_faults(rgb, depth, PreprocessSpec()) == []
        noise = rng.integers(0, 256, rgb.shape, dtype=np.uint8)
        assert [f.name for f in frame_faults(noise, depth, PreprocessSpec())] == ["colour_noise"]


def test_an_unknown_noise_measurement_is_refused():
    import pytest
    with pytest.raises(ValueError, match="noise_measured_on"):
        SensorLimits.from_dict({**OLD_STORED, "noise_measured_on": "sensor"})


def scene(rgb_object, rgb_background, h=480, w=640):
    """A uint16-mm frame: a disc (radius 150 px) at 450 mm, the rest at 2500 mm (beyond far_mm 700)."""
    yy, xx = np.mgrid[:h, :w]
    disc = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 <= 150 ** 2
    depth = np.where(disc, 450, 2500).astype(np.uint16)
    return np.where(disc[:, :, None], rgb_object, rgb_background).astype(np.uint8), depth


def test_colour_noise_looks_only_at_the_models_foreground():
    """Background beyond far_mm (masked out of scoring) showing colour static is not a fault when the
    object in range is smooth; the same static on the object is."""
    rng = np.random.default_rng(5)
    h, w = 480, 640
    static = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:h, :w]
    smooth = np.stack([100 + xx / 8, 80 + yy / 8, np.full((h, w), 120.0)], axis=2)   # (H, W, 3) gradient
    rgb, depth = scene(smooth, static)
    assert frame_faults(rgb, depth, PreprocessSpec()) == []
    rgb, depth = scene(static, smooth)
    assert [f.name for f in frame_faults(rgb, depth, PreprocessSpec())] == ["colour_noise"]


def test_config_sha256_leaves_out_the_sensor_limits():
    """The limits gate frames, they do not change scores: another set (e.g. a changed default filled in
    for a manifest without them) keeps config_sha256; a preprocessing change still changes it."""
    cfg = SearchConfig()
    base = scoring_settings_sha256(cfg, PreprocessSpec())
    for lim in (SensorLimits.from_dict(OLD_STORED), SensorLimits(enabled=False), SensorLimits(noise_level=30.0)):
        assert scoring_settings_sha256(cfg, PreprocessSpec(sensor_faults=lim)) == base
    assert scoring_settings_sha256(cfg, PreprocessSpec(far_mm=900.0)) != base
