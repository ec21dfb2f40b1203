"""Audit 35 #3: on frames as a live camera gives them (the object alone within far_mm, a floor or wall beyond it WITH
readings), the shipped sphere's silhouette lever did nothing: its versions' erosion and growth found no empty pixel
(live ero1 36 % false alarms, clean 84.5 % flagged; pre-masked 3 % / 94.0 %). The versions are made on the frame
pre-masked as kinect-rgbd's frames are (readings outside the model's [near_mm, far_mm] cut: runtime.silhouette.
_readings), so a live frame scores as its pre-masked self (the RGB as captured: the preprocessing masks it by the depth
it reads, for the frame and its versions alike)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edge_ad.runtime import nuisance as nu
from edge_ad.runtime.preprocess import PreprocessSpec
from edge_ad.runtime.silhouette import silhouette_versions, spec_range, versions_uint8
from edge_ad.runtime.sources.folder import read_pair
from test_sources import d8_to_mm


def _pairs(kinect_root, n: int, eroded: bool = False, floor_rgb=None) -> list:
    """n sphere val frames [(pre-masked (rgb, mm uint16), live (rgb, mm))]: live = the background (no reading) given
    1500 mm readings (and RGB ``floor_rgb``, None: as captured), as a floor beyond far_mm; ``eroded``: the frame 1 px
    narrower first."""
    ids = json.loads((kinect_root / "splits.json").read_text())["sphere"]["val"][:n]
    out = []
    for i in ids:
        rgb, d8 = read_pair(kinect_root / "sphere", str(i))
        rgb, mm = nu.DepthEdgeErode(1)(rgb, d8_to_mm(d8)) if eroded else (rgb, d8_to_mm(d8))
        live_rgb, live_mm = rgb.copy(), mm.copy()
        live_mm[mm == 0] = 1500
        if floor_rgb is not None:
            live_rgb[mm == 0] = floor_rgb
        out.append(((rgb, mm), (live_rgb, live_mm)))
    return out


def test_a_live_frames_versions_are_its_pre_masked_versions(kinect_root):
    """ero / dil (silhouette_versions at the model's range) and calibrate's versions_uint8 of a live frame equal the
    pre-masked frame's, uint16 and float mm; the pre-masked frame's versions are what they were without the cut; without
    the range (the call before audit 35 #3) the live frame's ero version changes nothing (the auditor's finding), the
    pre-masked one's > 100 readings. With the floor's own colour (90, 95, 100) the versions' depth is the same."""
    spec = PreprocessSpec()
    for ((rgb, mm), (lrgb, lmm)), (_, (frgb, fmm)) in zip(_pairs(kinect_root, 4), _pairs(kinect_root, 4, False,
                                                                                         (90, 95, 100))):
        for dt in (np.uint16, np.float32):
            a = silhouette_versions(rgb, mm.astype(dt), 64, spec_range(spec))
            b = silhouette_versions(lrgb, lmm.astype(dt), 64, spec_range(spec))
            for v in ("ero", "dil"):
                assert np.array_equal(a[v][0], b[v][0]) and np.array_equal(a[v][1], b[v][1]), (v, dt)
            assert b["id"][1].dtype == dt and np.array_equal(b["id"][1], lmm.astype(dt))   # the frame as given
        u, w = versions_uint8(rgb, mm, spec), versions_uint8(lrgb, lmm, spec)
        assert all(np.array_equal(u[k], w[k]) for k in u)
        plain = silhouette_versions(rgb, mm, 64)                        # pre-masked: the cut changes nothing
        assert all(np.array_equal(plain[v][i], a[v][i].astype(plain[v][i].dtype)) for v in plain for i in (0, 1))
        floor = silhouette_versions(frgb, fmm, 64, spec_range(spec))
        assert all(np.array_equal(floor[v][1], plain[v][1]) for v in ("ero", "dil"))
        before = silhouette_versions(lrgb, lmm, 64)
        assert np.array_equal(before["ero"][1], lmm) and (a["ero"][1] != mm).sum() > 100


@pytest.mark.parametrize("eroded", [False, True])
def test_the_shipped_sphere_scores_a_live_frame_as_its_pre_masked_self(sphere_lever, kinect_root, eroded):
    """Scorer.score and Scorer.score_batch of the shipped sphere (the lever on) on 6 sphere val frames, as they are and
    1 px narrower (audit 31 #9's fault, the lever's reason): the live frame's score, winning version and every
    version's score equal the pre-masked frame's. Failed before for the eroded frames (the live ero / dil versions
    were the frame itself: the lever's rescue gone)."""
    from edge_ad.runtime import Scorer
    _, lever, _ = sphere_lever
    pairs = _pairs(kinect_root, 6, eroded)
    with Scorer.load(lever, threads=1) as s:
        for k, (pre, live) in enumerate(pairs):
            a, b = s.score(*pre, seed=k), s.score(*live, seed=k)
            assert (a.score, a.silhouette_version, a.silhouette_scores) == \
                (b.score, b.silhouette_version, b.silhouette_scores), k
        A = s.score_batch([p for p, _ in pairs], seeds=list(range(6)))
        B = s.score_batch([q for _, q in pairs], seeds=list(range(6)))
        assert [r.score for r in A] == [r.score for r in B]


def test_the_shipped_sphere_takes_an_h_w_1_depth_as_h_w(sphere_lever, kinect_root):
    """Audit 35 #4: an (H, W, 1) depth (np.expand_dims, some image loaders), which the preprocessing squeezes and
    rectangle / cylinder score, was refused by the lever's versions ('too many values to unpack'). It scores as the
    (H, W) depth, uint8 and float32 mm; (H, W, 2) stays refused naming the shape."""
    from edge_ad.runtime import Scorer
    from edge_ad.runtime.preprocess import FrameError
    _, lever, _ = sphere_lever
    ids = json.loads((kinect_root / "splits.json").read_text())["sphere"]["val"][:2]
    with Scorer.load(lever, threads=1) as s:
        for k, i in enumerate(ids):
            rgb, d8 = read_pair(kinect_root / "sphere", str(i))
            for d in (d8, d8_to_mm(d8).astype(np.float32)):
                a, b = s.score(rgb, d, seed=k), s.score(rgb, d[..., None], seed=k)
                assert (a.score, a.silhouette_version, a.silhouette_scores) == \
                    (b.score, b.silhouette_version, b.silhouette_scores)
        with pytest.raises(FrameError, match=r"depth must be H x W, got shape \(64, 64, 2\)"):
            s.score(rgb, np.stack([d8, d8], axis=-1), seed=0)


def test_a_colour_smaller_than_its_depth_fails_only_its_frame_in_a_batch(sphere_lever, kinect_root):
    """Review 35 #5: the lever's versions did not check that RGB and depth are the same size, so in score_batch of the
    shipped sphere one frame whose colour is smaller than its depth escaped as an IndexError (the eroded version indexed
    past it) and the whole batch was lost; rectangle / cylinder give that frame a FrameError. Now that frame alone gets
    the sizes' error (as Scorer.score's), the others are scored as alone (to float32 rounding)."""
    from edge_ad.runtime import Scorer
    from edge_ad.runtime.preprocess import FrameError
    _, lever, _ = sphere_lever
    ids = json.loads((kinect_root / "splits.json").read_text())["sphere"]["val"][:2]
    (rgb, d8), (rgb2, d82) = (read_pair(kinect_root / "sphere", str(i)) for i in ids)
    small = np.ascontiguousarray(rgb[:48, :48])
    with Scorer.load(lever, threads=1) as s:
        with pytest.raises(FrameError, match="sizes differ"):
            s.score(small, d8, seed=0)
        out = s.score_batch([(rgb, d8), (small, d8), (rgb2, d82)], seeds=[0, 1, 2])
        assert isinstance(out[1], FrameError) and "sizes differ" in str(out[1])
        # score_batch equals score to float32 rounding (its docstring)
        assert out[0].score == pytest.approx(s.score(rgb, d8, seed=0).score, rel=1e-5)
        assert out[2].score == pytest.approx(s.score(rgb2, d82, seed=2).score, rel=1e-5)
    with pytest.raises(ValueError, match=r"RGB 48x48 and depth 64x64 \(W x H\) sizes differ"):
        silhouette_versions(small, d8, 64)
