"""Audit 35 #1: the silhouette lever (the shipped sphere) refused every frame whose depth is float millimetres (a ROS
32FC1 depth topic or bag, read by msgconv as float32 mm; ``Scorer.score(rgb, float_mm)``), which the input contract
and the other two shipped models accept: its versions' depth ops took uint8 / uint16 only. They take float mm now,
NaN / inf / <= 0 read as no reading (as the preprocessing reads float depth)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edge_ad.runtime.silhouette import opened, silhouette_versions, versions_uint8
from edge_ad.runtime.sources.folder import read_pair
from test_sources import d8_to_mm, write_ros2_bag


def _sphere_val(kinect_root, n: int) -> list:
    """n sphere val frames: (id, rgb, depth uint16 mm)."""
    ids = json.loads((kinect_root / "splits.json").read_text())["sphere"]["val"][:n]
    out = []
    for i in ids:
        rgb, d8 = read_pair(kinect_root / "sphere", str(i))
        out.append((str(i), rgb, d8_to_mm(d8)))
    return out


def test_the_versions_take_float_millimetres(kinect_root):
    """silhouette_versions / opened / versions_uint8 of float32 mm equal those of the same uint16 mm (the depth values
    as floats), at the frame's own size and at the model's; NaN, inf and negative values read as no reading. Failed
    before: ValueError 'depth must be H x W uint8 or uint16, got float32'."""
    from edge_ad.runtime.preprocess import PreprocessSpec
    spec = PreprocessSpec()
    for _, rgb, mm in _sphere_val(kinect_root, 3):
        f = mm.astype(np.float32)
        for res in (None, 64):
            a, b = silhouette_versions(rgb, mm, res), silhouette_versions(rgb, f, res)
            for v in a:
                assert np.array_equal(a[v][0], b[v][0]) and np.array_equal(a[v][1].astype(np.float32), b[v][1]), v
            assert b["id"][1] is f                                        # the frame itself as given
        o16, of = opened(rgb, mm, 64), opened(rgb, f, 64)
        assert np.array_equal(o16[0], of[0]) and np.array_equal(o16[1].astype(np.float32), of[1])
        u16, uf = versions_uint8(rgb, mm, spec), versions_uint8(rgb, f, spec)
        assert all(np.array_equal(u16[k], uf[k]) for k in u16)
        odd = f.copy()
        bg = np.flatnonzero(mm == 0)
        odd.flat[bg[0::3]], odd.flat[bg[1::3]], odd.flat[bg[2::3]] = np.nan, -5.0, np.inf
        c = silhouette_versions(rgb, odd, 64)
        for v in ("ero", "dil"):
            assert np.array_equal(c[v][1], b[v][1]) and np.array_equal(c[v][0], b[v][0]), v


def test_the_shipped_sphere_scores_float_mm_as_uint16_mm(sphere_lever, kinect_root):
    """Scorer.score of the shipped sphere (the lever on) on 6 val frames: float32 mm scores bit for bit as the same
    uint16 mm, the same version winning (before: FrameError 'the silhouette lever ... depth must be H x W uint8 or
    uint16, got float32')."""
    from edge_ad.runtime import Scorer
    _, lever, _ = sphere_lever
    with Scorer.load(lever, threads=1) as s:
        for k, (_, rgb, mm) in enumerate(_sphere_val(kinect_root, 6)):
            a, b = s.score(rgb, mm, seed=k), s.score(rgb, mm.astype(np.float32), seed=k)
            assert a.score == b.score and a.silhouette_version == b.silhouette_version
            assert a.silhouette_scores == b.silhouette_scores


def test_a_32fc1_bag_is_run_and_calibrated_with_the_shipped_sphere(sphere_lever, kinect_root, tmp_path):
    """12 sphere val frames in a ROS 2 bag with 32FC1 depth (metres, no reading NaN) and the same in 16UC1: edge-ad run
    of the shipped sphere scores all 12 of both, the same scores (to float32 metres' rounding: 1e-9 relative); edge-ad
    calibrate on the 32FC1 bag writes a model from its 12 frames. Before: 0 frames scored (exit 4), calibrate
    'only 0 usable frames'."""
    from click.testing import CliRunner

    from edge_ad.cli import main
    _, lever, _ = sphere_lever
    frames = _sphere_val(kinect_root, 12)
    scores = {}
    for enc in ("16UC1", "32FC1"):
        write_ros2_bag(tmp_path / enc, frames, depth_encoding=enc)
        out = tmp_path / f"{enc}.jsonl"
        r = CliRunner().invoke(main, ["run", "-q", "--model", str(lever), "--source", str(tmp_path / enc),
                                      "--out", str(out)])
        assert r.exit_code == 0, r.output                         # no bad frame (3), a scorable one (4)
        lines = [json.loads(x) for x in out.read_text().splitlines()]
        scores[enc] = [x["score"] for x in lines if "score" in x]
        assert len(scores[enc]) == 12, r.output
    np.testing.assert_allclose(scores["32FC1"], scores["16UC1"], rtol=1e-9)
    r = CliRunner().invoke(main, ["calibrate", "--model", str(lever), "--source", str(tmp_path / "32FC1"),
                                  "--out", str(tmp_path / "cal"), "--min-frames", "10", "--threads", "1",
                                  "--accept-raise"])
    assert r.exit_code == 0, r.output
    man = json.loads((tmp_path / "cal" / "manifest.json").read_text())
    assert man["calibration"]["frames_used"] == 12 and man["silhouette"]["n_frames"] == 300 + 12


def _reference_grown(rgb, depth, k):
    """The versions' growth before audit 35 #2: DepthEdgeSpurs(1.0) on the whole frame, k times."""
    from edge_ad.runtime.nuisance import DepthEdgeSpurs
    out = (rgb, depth)
    for _ in range(k):
        out = DepthEdgeSpurs(1.0)(*out, np.random.default_rng(0))
    return out


def _upsampled(a, H, W):
    """a 64 x 64 frame repeated into H x W (H // 64 camera pixels per pixel, the rest padded with background)."""
    s = H // 64
    b = np.repeat(np.repeat(a, s, 0), s, 1)
    return np.pad(b, [(0, H - b.shape[0]), (0, max(W - b.shape[1], 0))] + [(0, 0)] * (a.ndim - 2))[:H, :W]


@pytest.mark.parametrize("H, W", [(64, 64), (480, 640), (720, 1280)])
def test_the_versions_made_on_the_readings_window_equal_the_whole_frames(kinect_root, H, W):
    """Audit 35 #2: the dil version took k full-frame DepthEdgeSpurs passes (0.47 s of CPU at 640 x 480, k = 8; 2 s at
    1280 x 720). Now the growth and the erosion run on the readings' window only and the growth on each pass's ring:
    bit for bit the old versions (kept here as the reference) on sphere val frames upsampled to camera sizes, masked as
    kinect-rgbd's, with readings everywhere (a wall at 2 m with holes: a camera's raw frame) and as float mm."""
    from edge_ad.runtime import silhouette as sil
    from edge_ad.runtime.nuisance import DepthEdgeErode
    for _, rgb, mm in _sphere_val(kinect_root, 2):
        r, d = _upsampled(rgb, H, W), _upsampled(mm, H, W)
        wall = d.copy()
        wall[d == 0] = 2000
        wall[::37, ::29] = 0
        k = sil.model_pixel(d, 64)
        for dd in (d, wall, d.astype(np.float32)):
            a, b = sil._grown(r, dd, k), _reference_grown(r, dd, k)
            assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[1].dtype == b[1].dtype
            e, f = sil._eroded(r, dd, k), DepthEdgeErode(k)(r, dd)
            assert np.array_equal(e[0], f[0]) and np.array_equal(e[1], f[1])
    empty = np.zeros((H, W), np.uint16)
    g = sil._grown(np.zeros((H, W, 3), np.uint8), empty, 2)
    assert not g[1].any() and not np.shares_memory(g[1], empty)
