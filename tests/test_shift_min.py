"""Test-time shift-min (SearchConfig.score_shift_radius, issue 12): a frame's score is the minimum over
its copies shifted by (dy, dx), |dy|, |dx| <= R (runtime.preprocess.shift_frame / shift_offsets), each
scored as a frame. Runtime (Scorer, score_batch) against its own definition and against the PyTorch
reference (models.search.search_min_shift / score_batch) on real kinect-rgbd frames; R = 0 is the
frame as it is; old manifests load as R = 0."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_ad.runtime import Scorer
from edge_ad.runtime.config import SearchConfig, search_differences
from edge_ad.runtime.preprocess import preprocess, shift_frame, shift_offsets

RTOL_BATCH = 1e-5     # float32: the batch graphs sum the same products in another order
RTOL_TORCH = 1e-4     # onnxruntime float32 vs the float64 PyTorch reference (the export's tolerance)


def _interior(x: np.ndarray, border: int = 3) -> np.ndarray:
    """x (4, R, R) with a ``border``-px frame of background: shifts of up to ``border`` px lose nothing."""
    x = x.copy()
    x[:, :border], x[:, -border:], x[:, :, :border], x[:, :, -border:] = -1, -1, -1, -1
    return x


def test_search_config_shift_radius_validated_and_old_dicts_mean_zero():
    assert SearchConfig().score_shift_radius == 0
    for bad in (-1, 5, 1.5, True, "1"):
        with pytest.raises(ValueError, match="score_shift_radius"):
            SearchConfig(score_shift_radius=bad)
    r = SearchConfig(score_shift_radius=np.int64(2))
    assert type(r.score_shift_radius) is int and json.loads(json.dumps(r.to_dict()))["score_shift_radius"] == 2
    old = {k: v for k, v in SearchConfig().to_dict().items() if k != "score_shift_radius"}   # an older manifest
    assert SearchConfig.from_dict(old).score_shift_radius == 0
    assert search_differences(old, SearchConfig()) == []
    assert search_differences(old, SearchConfig(score_shift_radius=1)) == ["score_shift_radius"]


def test_shift_frame_and_offsets():
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)          # (C, H, W)
    got = shift_frame(x, 1, -2)                                         # down 1, left 2
    want = np.full_like(x, -1.0)
    want[:, 1:, :2] = x[:, :2, 2:]
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(shift_frame(x, 0, 0), x)
    assert shift_frame(x, 0, 0) is not x
    np.testing.assert_array_equal(shift_frame(x[None], 1, -2)[0], want)  # a batch (N, C, H, W) alike
    np.testing.assert_array_equal(shift_frame(x, -1, 1, fill=0.0)[:, -1], 0)
    with pytest.raises(ValueError, match="does not fit"):
        shift_frame(x, 3, 0)
    offs = shift_offsets(2)
    assert offs[0] == (0, 0) and len(offs) == 25 and len(set(offs)) == 25
    assert set(offs) == {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)}
    assert shift_offsets(0) == [(0, 0)]


def test_radius_zero_scores_the_frame_as_it_is(kinect_export_r0, val_frames, monkeypatch):
    """R = 0 (the default, and every older manifest) never shifts: no ``shift`` in the result, and the
    same numbers as a frame scored through the shift-min machinery's own (0, 0) copy."""
    from edge_ad.runtime import batch_scoring, scorer as scorer_mod
    s0 = Scorer.load(kinect_export_r0, threads=1)
    assert s0.config.score_shift_radius == 0
    rgb, depth = val_frames(2)[1]

    def no_shift(*a, **k):
        raise AssertionError("R = 0 must not shift")
    monkeypatch.setattr(scorer_mod, "shift_frame", no_shift)
    monkeypatch.setattr(batch_scoring, "shift_frame", no_shift)
    r = s0.score(rgb, depth, seed=3, keep_reconstructions=True)
    b = s0.score_batch([(rgb, depth)], seeds=[3])[0]
    assert r.shift is None and b.shift is None
    monkeypatch.undo()
    x = preprocess(rgb, depth, s0.preprocess_spec)
    again = s0._score_copy(x, None, 3, True, 0.0)                       # the unshifted scoring itself
    assert r.score == again.score
    np.testing.assert_array_equal(r.error_map, again.error_map)
    np.testing.assert_array_equal(r.reconstructions, again.reconstructions)


def _min_over_copies(s0: Scorer, x: np.ndarray, radius: int, seed: int):
    """The shift-min computed from its definition with an R = 0 scorer: (score, shift, copy's result)."""
    d_pix = s0.pixel_distance(x)        # a pixel memory's factor is the FRAME's, the same for every copy (or None)
    rs = {(dy, dx): s0.score_input(shift_frame(x, dy, dx), seed=seed, keep_reconstructions=True, pixel_distance=d_pix)
          for dy, dx in shift_offsets(radius)}
    best = min(rs, key=lambda k: rs[k].score)
    return rs[best].score, best, rs[best], rs[(0, 0)].score


@pytest.mark.parametrize("path", ["batch graphs (k = 0)", "search loop (k = 2)"])
def test_shift_min_is_the_minimum_over_shifted_copies(path, kinect_export_r0, export_tiny, val_frame):
    """Score = min over the 9 copies of each copy's own score (exact on the loop path, float32 rounding on
    the batch path); <= the R = 0 score; error_map and reconstructions shifted back onto the frame."""
    model = kinect_export_r0 if path.startswith("batch") else export_tiny(2, 2)
    s0 = Scorer.load(model, threads=1)
    s1 = Scorer.load(model, threads=1, config=s0.config.replace(score_shift_radius=1))
    rtol = RTOL_BATCH if path.startswith("batch") else 0.0
    shifts = set()
    for cls in ("rectangle", "sphere", "cylinder"):
        f = val_frame(cls, 0)
        x = preprocess(f["rgb"], f["depth"], s0.preprocess_spec)
        want, at, copy, plain = _min_over_copies(s0, x, 1, seed=5)
        r = s1.score(f["rgb"], f["depth"], seed=5, keep_reconstructions=True)
        assert r.score == pytest.approx(want, rel=rtol, abs=0) and r.shift == at
        assert r.score <= plain * (1 + rtol)
        np.testing.assert_allclose(r.error_map, shift_frame(copy.error_map, -at[0], -at[1], fill=0.0),
                                   rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(r.reconstructions, shift_frame(copy.reconstructions, -at[0], -at[1]), atol=1e-5)
        np.testing.assert_array_equal(r.z0, copy.z0)
        assert r.latent_distance == (None if copy.latent_distance is None
                                     else pytest.approx(copy.latent_distance, rel=1e-5))
        assert r.timings["shifts"] == 9
        shifts.add(at)
    if path.startswith("batch"):
        assert shifts != {(0, 0)}     # some real frame is better aligned shifted: the shift-back is exercised
        # the error map overlays the caller's frame: direct computation from the winning reconstruction
        em = ((x - r.reconstructions) ** 2).mean((0, 1))                # mean over seeds and channels
        inside = shift_frame(np.ones_like(em), -r.shift[0], -r.shift[1], fill=0.0) > 0
        np.testing.assert_allclose(r.error_map[inside], em[inside], rtol=1e-4, atol=1e-6)


def test_one_pixel_camera_shift_keeps_the_score(kinect_export_r0, val_frame):
    """A normal frame with its foreground inside the image (3-px background border: shifts lose
    nothing) and the same frame moved 1 px: under R = 0 their scores differ many-fold; under R = 1 they
    are EXACTLY equal when the best of the 12 copies the two windows reach lies in their overlap,
    because the 1-px copy's copies are the frame's own copies, scored alike. The frame: the first
    rectangle val frame where that holds (checked from the 12 copies' own scores)."""
    s0 = Scorer.load(kinect_export_r0, threads=1)
    s1 = Scorer.load(kinect_export_r0, threads=1, config=s0.config.replace(score_shift_radius=1))
    union = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1, 2)]     # x's window and x1's, as shifts of x
    for i in range(6):
        f = val_frame("rectangle", i)
        x = _interior(preprocess(f["rgb"], f["depth"], s0.preprocess_spec))
        scores = [s0.score_input(shift_frame(x, *d), seed=0).score for d in union]
        if union[int(np.argmin(scores))][1] in (0, 1):                   # the best copy is in both windows
            break
    else:
        pytest.fail("no rectangle val frame among the first 6 has its best copy in the overlap")
    x1 = shift_frame(x, 0, 1)
    np.testing.assert_array_equal(shift_frame(x1, 0, -1), x)            # lossless
    a0, b0 = s0.score_input(x, seed=0).score, s0.score_input(x1, seed=0).score
    a1, b1 = s1.score_input(x, seed=0), s1.score_input(x1, seed=0)
    assert max(a0, b0) / min(a0, b0) > 3                                 # R = 0: the shift changes the score
    assert b1.score == a1.score == pytest.approx(min(scores), rel=RTOL_BATCH)   # R = 1: the very same copy wins
    assert (b1.shift[0], b1.shift[1] + 1) == a1.shift                    # ... found 1 px further
    np.testing.assert_array_equal(b1.error_map, shift_frame(a1.error_map, 0, 1, fill=0.0))
    # a real (lossy, border foreground) 1-px shift: close under R = 1, far under R = 0
    xr = preprocess(f["rgb"], f["depth"], s0.preprocess_spec)
    r0 = [s0.score_input(v, seed=0).score for v in (xr, shift_frame(xr, 0, 1))]
    r1 = [s1.score_input(v, seed=0).score for v in (xr, shift_frame(xr, 0, 1))]
    assert abs(r1[0] - r1[1]) / min(r1) < 0.1 < abs(r0[0] - r0[1]) / min(r0)


def test_batch_equals_single_frame_with_shift_min(kinect_export_r0, val_frames):
    from test_batch_scoring import assert_same
    s0 = Scorer.load(kinect_export_r0, threads=1)
    s1 = Scorer.load(kinect_export_r0, threads=1, config=s0.config.replace(score_shift_radius=1))
    frames = val_frames(5)
    frames.insert(2, (np.zeros((10, 10, 3), np.uint8), np.zeros((12, 12), np.uint8)))   # a bad frame
    got = s1.score_batch(frames, seeds=list(range(6)), keep_reconstructions=True)
    assert isinstance(got[2], Exception)
    for i, (rgb, depth) in enumerate(frames):
        if i != 2:
            one = s1.score(rgb, depth, seed=i, keep_reconstructions=True)
            assert_same(one, got[i], keep=True)
            assert got[i].shift == one.shift and got[i].timings["shifts"] == 9
    from test_batch_scoring import assert_results_belong_to_the_caller
    assert_results_belong_to_the_caller(s1, [frames[0], frames[1]], [0, 1])


def test_batch_equals_single_frame_with_shift_min_when_seeds_matter(kinect_export_r0, val_frames):
    """z_init_sigma = 0.5 (z0 = E(x) + 0.5 * noise of the seed): each frame's 9 copies must get that
    frame's seed in the batch, as in score(); distinct seeds per frame catch a batch that mixes them up."""
    from test_batch_scoring import assert_same
    s0 = Scorer.load(kinect_export_r0, threads=1)
    s1 = Scorer.load(kinect_export_r0, threads=1,
                     config=s0.config.replace(score_shift_radius=1, z_init_sigma=0.5))
    frames, seeds = val_frames(3), [11, 22, 33]
    got = s1.score_batch(frames, seeds=seeds)
    for (rgb, depth), seed, r in zip(frames, seeds, got):
        one = s1.score(rgb, depth, seed=seed)
        assert_same(one, r)
        assert r.shift == one.shift
        # the seed matters here: another seed gives another score
        assert abs(s1.score(rgb, depth, seed=seed + 1).score - one.score) > 100 * RTOL_BATCH * one.score


def test_without_seed_the_copies_share_one_drawn_seed(kinect_export_r0, val_frames, monkeypatch):
    """seed = z0 = None with R = 1 and z_init_sigma = 0.5: one random seed per frame, the same z0 noise
    for its 9 copies (not a best-of-9 restarts), in score_shifted and score_batch; another call draws anew."""
    from edge_ad.runtime import batch_scoring
    s0 = Scorer.load(kinect_export_r0, threads=1)
    s1 = Scorer.load(kinect_export_r0, threads=1,
                     config=s0.config.replace(score_shift_radius=1, z_init_sigma=0.5))
    (rgb, depth), frame2 = val_frames(2)
    x = preprocess(rgb, depth, s1.preprocess_spec)
    noises = []
    for _ in range(2):
        offsets, rs = s1.score_shifted(x)
        noise = [r.z0 - s1.encode(shift_frame(x, dy, dx)) for (dy, dx), r in zip(offsets, rs)]   # 0.5 * make_z0
        for n in noise[1:]:
            np.testing.assert_allclose(n, noise[0], atol=1e-5)
        noises.append(noise[0])
    assert np.abs(noises[0] - noises[1]).max() > 0.1                       # a fresh seed per call
    seen = []
    real = batch_scoring.score_inputs
    monkeypatch.setattr(batch_scoring, "score_inputs", lambda sc, X, seeds, *a, **kw: (seen.append(list(seeds)),
                                                                                        real(sc, X, seeds, *a, **kw))[1])
    got = s1.score_batch([(rgb, depth), frame2])
    assert all(isinstance(r.score, float) for r in got)
    (seeds,) = seen
    assert len(seeds) == 18 and None not in seeds
    assert len(set(seeds[:9])) == 1 and len(set(seeds[9:])) == 1 and seeds[0] != seeds[9]


def test_torch_reference_without_seed_shares_one_seed(tiny_generator, monkeypatch):
    """models.search.search_min_shift, seed = z0 = None, R = 1: its 9 searches get one drawn seed."""
    from edge_ad.models import search as S
    seen = []
    real = S.search
    monkeypatch.setattr(S, "search", lambda G, x, cfg, **kw: (seen.append(kw["seed"]), real(G, x, cfg, **kw))[1])
    x = np.tanh(np.random.default_rng(0).standard_normal((4, 64, 64))).astype(np.float32)
    S.search_min_shift(tiny_generator, x, SearchConfig(k=0, n_seed=1, score_shift_radius=1))
    assert len(seen) == 9 and seen[0] is not None and len(set(seen)) == 1


def test_torch_score_batch_shows_one_progress_bar_with_the_shift_min(tiny_generator):
    """models.search.score_batch with R = 1 calls ``progress`` once (over the 9 shifts), not once per copy,
    with the same scores as without a progress callback."""
    from edge_ad.models.search import score_batch
    X = np.tanh(np.random.default_rng(0).standard_normal((2, 4, 64, 64))).astype(np.float32)
    cfg = SearchConfig(k=0, n_seed=1, score_shift_radius=1)
    bars = []
    got = score_batch(tiny_generator, X, cfg, progress=lambda it: (bars.append(len(it)), it)[1])
    assert bars == [9]
    np.testing.assert_array_equal(got, score_batch(tiny_generator, X, cfg))


@pytest.mark.parametrize("radius", [0, 1])
def test_torch_reference_equals_runtime(radius, kinect_export_r0, val_frame):
    """models.search.search_min_shift (float64 torch, encoder in float64) and models.search.score_batch
    (float32 torch) against the exported runtime (onnxruntime CPU) on real frames of the three classes."""
    import torch

    from edge_ad.models.checkpoint import load_generator
    from edge_ad.models.search import (checkpoint_bank_augment, checkpoint_encoder, checkpoint_latent_bank,
                                       checkpoint_pixel_memory, score_batch, search_min_shift)
    from edge_ad.runtime.config import frame_seed
    from conftest import REPO
    path = REPO / "models" / "kinect-rgbd" / "rectangle.pt"
    G, E, bank = load_generator(path), checkpoint_encoder(path), checkpoint_latent_bank(path)
    rows = checkpoint_bank_augment(path)          # the bank's layout: its augment list
    pixels = checkpoint_pixel_memory(path)        # the release's pixel memory (None for a file without one)
    s = Scorer.load(kinect_export_r0, threads=1, providers=["CPUExecutionProvider"])
    cfg = s.config.replace(score_shift_radius=radius)
    s = Scorer.load(kinect_export_r0, threads=1, providers=["CPUExecutionProvider"], config=cfg)
    frames = [val_frame(c, i) for c in ("rectangle", "cylinder", "sphere") for i in (0, 1)]
    X = np.stack([preprocess(f["rgb"], f["depth"], s.preprocess_spec) for f in frames])
    got = [s.score(f["rgb"], f["depth"], seed=frame_seed(0, i), keep_reconstructions=True) for i, f in enumerate(frames)]
    E64 = E.double()
    for i, x in enumerate(X):
        ref = search_min_shift(G, x, cfg, seed=frame_seed(0, i), dtype=torch.float64, encoder=E64, latent_bank=bank,
                               bank_rows_per_frame=rows, pixel_memory=pixels)
        assert got[i].score == pytest.approx(ref.score, rel=RTOL_TORCH)
        assert got[i].shift == (ref.shift if radius else None)
        np.testing.assert_allclose(got[i].error_map, ref.error_map, atol=1e-5)
        np.testing.assert_allclose(got[i].reconstructions, ref.reconstructions, atol=1e-4)
    E.float()
    batch = score_batch(G, X, cfg, seed=0, encoder=E, latent_bank=bank, bank_rows_per_frame=rows, pixel_memory=pixels)
    np.testing.assert_allclose(batch, [r.score for r in got], rtol=RTOL_TORCH)


def test_old_manifest_without_the_field_loads_as_zero(kinect_export_r0, tmp_path, val_frames):
    old = tmp_path / "old"
    shutil.copytree(kinect_export_r0, old)
    man = json.loads((old / "manifest.json").read_text())
    assert man["search"]["score_shift_radius"] == 0                     # exports record the field
    del man["search"]["score_shift_radius"]
    (old / "manifest.json").write_text(json.dumps(man))
    s = Scorer.load(old, threads=1)
    assert s.config.score_shift_radius == 0
    rgb, depth = val_frames(1)[0]
    assert s.score(rgb, depth, seed=1).score == Scorer.load(kinect_export_r0, threads=1).score(rgb, depth, seed=1).score


def test_export_with_shift_radius_checks_it_and_drops_a_threshold_calibrated_without(tmp_path):
    """The shipped rectangle checkpoint (released with R = 1 since the tenth pass, its threshold calibrated
    so): exported as it is, the parity report has the shift-min rows (float64 torch reference vs runtime),
    the manifest carries R = 1 and the checkpoint's threshold; exported with R = 0, that threshold is not
    carried over, and an explicit one calibrated with R = 1 is refused."""
    from edge_ad.export.errors import ExportError
    from edge_ad.export.exporter import export_model
    from edge_ad.models.search import checkpoint_search_config, checkpoint_threshold
    from conftest import REPO
    path = REPO / "models" / "kinect-rgbd" / "rectangle.pt"
    cfg1 = checkpoint_search_config(path)
    assert cfg1.score_shift_radius == 1
    thr = checkpoint_threshold(path, cfg1)
    cfg0 = cfg1.replace(score_shift_radius=0)
    assert thr is not None and checkpoint_threshold(path, cfg0) is None
    man = export_model(path, tmp_path / "r1", log=lambda *a: None)
    assert man["search"]["score_shift_radius"] == 1 and man["threshold"]["value"] == pytest.approx(thr["value"])
    sm = man["parity"]["shift_min"]
    assert sm["passed"] and sm["radius"] == 1 and sm["max_rel_diff"] <= 1e-4 and len(sm["frames"]) >= 2
    assert all(r["reference_shift"] == r["onnx_shift"] for r in sm["frames"])
    assert Scorer.load(tmp_path / "r1").config.score_shift_radius == 1
    assert Scorer.load(tmp_path / "r1", config=cfg0).threshold is None   # not applied under R = 0
    r0 = tmp_path / "r0"
    m0 = export_model(path, r0, search=cfg0, parity=False, log=lambda *a: None)
    assert m0["search"]["score_shift_radius"] == 0 and "threshold" not in m0
    assert Scorer.load(r0).config.score_shift_radius == 0 and Scorer.load(r0).threshold is None
    with pytest.raises(ExportError, match="score_shift_radius"):
        export_model(path, tmp_path / "r0b", search=cfg0, threshold=thr, parity=False, log=lambda *a: None)


def test_shift_min_refused_where_a_zero_pixel_is_not_minus_one(kinect_export_r0, tmp_path, tiny_generator):
    """The shift fill is background -1, a zero pixel under mean = std = 0.5: a model whose preprocessing
    maps a zero pixel elsewhere (mean 0.4, std 0.6: -0.667) is refused R > 0 (check_shift_fill) by
    Scorer.load (ManifestError), the exporter (ExportError); R = 0 still loads."""
    import copy

    from edge_ad.export.errors import ExportError
    from edge_ad.export.exporter import export_model
    from edge_ad.runtime.manifest import ManifestError
    from edge_ad.runtime.preprocess import PreprocessSpec, check_shift_fill
    check_shift_fill(PreprocessSpec(), 2)
    check_shift_fill(PreprocessSpec(mean=0.4, std=0.6), 0)
    with pytest.raises(ValueError, match=r"mean 0\.4, std 0\.6\) maps a zero pixel to -0\.666667"):
        check_shift_fill(PreprocessSpec(mean=0.4, std=0.6), 1)
    d = tmp_path / "m"
    shutil.copytree(kinect_export_r0, d)
    man = json.loads((d / "manifest.json").read_text())
    man["preprocess"].update(mean=0.4, std=0.6)
    (d / "manifest.json").write_text(json.dumps(man))
    cfg = SearchConfig.from_dict(man["search"])
    r0 = cfg.replace(score_shift_radius=0, pixel_shift_radius=0)
    assert Scorer.load(d, threads=1, config=r0).config.score_shift_radius == 0
    with pytest.raises(ManifestError, match=r"score_shift_radius=1 .* maps a zero pixel to -0\.666667"):
        Scorer.load(d, threads=1, config=r0.replace(score_shift_radius=1))
    if cfg.uses_pixel_memory:           # the pixel distance's own shift search fills the same way (session 19)
        with pytest.raises(ManifestError, match=r"pixel_shift_radius=1 .* maps a zero pixel to -0\.666667"):
            Scorer.load(d, threads=1, config=r0.replace(pixel_shift_radius=1))
    G = copy.deepcopy(tiny_generator)
    G.preprocess = PreprocessSpec(mean=0.4, std=0.6)
    with pytest.raises(ExportError, match=r"score_shift_radius=1 .* maps a zero pixel"):
        export_model(G, tmp_path / "e", search=SearchConfig(k=0, n_seed=1, score_shift_radius=1), parity=False,
                     log=lambda *a: None)


def test_held_out_scores_take_the_minimum_over_shifted_copies():
    """calibrate's held-out scores with the shift-min: per frame min_s base_s * factor(d(E(x_s)))."""
    from edge_ad.runtime.calibrate import held_out_scores
    cfg = SearchConfig(lr_theta=0, n_seed=1, k=0, z_init="encoder", score_latent_power=1.0, latent_metric="l2",
                       score_shift_radius=1)
    e = np.eye(4, dtype=np.float32)
    lat = np.stack([e[[0]], e[[1]]])                                     # (2 frames, 1 row, 4)
    original = np.array([[0, 0, 0, 2]], np.float32)                      # mean((e_i - b)^2) = 5/4 for e0..e2
    shifted = np.stack([np.stack([e[0], e[2]]), np.stack([e[1], e[3]])])  # (2 frames, S = 2 copies, 4)
    base = np.array([[1.0, 3.0], [4.0, 1.0]])
    s = held_out_scores(base, lat, original, cfg, blocks=2, shifted_latents=shifted)
    # frame 0 sees frame 1's row e1: copy e0 -> 2/4, copy e2 -> 2/4: min(1 * 0.5, 3 * 0.5)
    # frame 1 sees e0 and the bank: copy e1 -> 2/4, copy e3 -> min(2/4, mean((e3 - b)^2) = 1/4)
    np.testing.assert_allclose(s, [0.5, min(4.0 * 0.5, 1.0 * 0.25)])
    np.testing.assert_allclose(held_out_scores(base[:, :1], lat, original, cfg, blocks=2), [0.5, 2.0])   # no shifts


def test_calibrate_scores_the_scene_with_the_models_radius(kinect_export_r0, tmp_path):
    """edge-ad calibrate on a model with R = 1 scores every scene frame's shifted copies, held out: each
    frame's score is <= its R = 0 score (the (0, 0) copy is one of them) and below it for some; the
    threshold is their quantile; the new manifest keeps R = 1."""
    from conftest import copy_frames
    from edge_ad.runtime.calibrate import calibrate_model, held_out_scores, read_scene, score_scene
    from edge_ad.runtime.model_arrays import load_npy
    from edge_ad.runtime.sources import open_source
    r1 = tmp_path / "r1"
    shutil.copytree(kinect_export_r0, r1)
    man = json.loads((r1 / "manifest.json").read_text())
    man["search"]["score_shift_radius"] = 1
    man.pop("threshold", None)
    (r1 / "manifest.json").write_text(json.dumps(man))
    scene = copy_frames(tmp_path / "scene", "rectangle", 20, start=40)
    held = {}
    for name, model in (("r0", kinect_export_r0), ("r1", r1)):
        s = Scorer.load(model, threads=1)
        with open_source(str(scene)) as src:
            u8 = read_scene(src, s.preprocess_spec)["u8"]
        entry = s.manifest["latent_bank"]
        res = score_scene(s, u8, s.preprocess_spec, entry.get("augment") or [])
        assert res["base"].shape == (20, 9 if name == "r1" else 1) and res["shifted_latents"].shape[1] == res["base"].shape[1]
        if name == "r1":      # copy j's latent is E of the frame shifted by offset j
            from edge_ad.runtime.latent_bank import bank_inputs_uint8
            x = bank_inputs_uint8(u8[3], s.preprocess_spec, (), index=3)[0]
            for j, d in enumerate(shift_offsets(1)):
                np.testing.assert_array_equal(res["shifted_latents"][3, j], s.encode(shift_frame(x, *d)))
        pix = None
        if s.config.uses_pixel_memory:      # a pixel memory (the shipped rectangle's): the scene frames' held-out
            from edge_ad.runtime.calibrate import held_out_pixel_distances      # distances, as calibrate takes them
            from edge_ad.runtime.latent_bank import bank_inputs_uint8
            from edge_ad.runtime.pixel_memory import PixelMemory, in_model_light
            pe, spec = s.manifest["pixel_memory"], s.preprocess_spec
            original = np.load(Path(model) / pe["file"])
            memory = PixelMemory(np.concatenate([original, in_model_light(np.stack(u8), spec)]), spec, pe.get("augment") or [])
            pix = held_out_pixel_distances(memory, lambda i: bank_inputs_uint8(u8[i], spec)[0], len(u8), len(original),
                                           radius=s.config.pixel_shift_radius, gain=s.config.pixel_gain_limits)
        held[name] = held_out_scores(res["base"], res["latents"], load_npy(model, entry["file"], entry["shape"], np.float32),
                                     s.config, shifted_latents=res["shifted_latents"], augment=entry.get("augment"),
                                     pixel_distances=pix)
    assert np.all(held["r1"] <= held["r0"] * (1 + RTOL_BATCH)) and np.any(held["r1"] < 0.9 * held["r0"])
    with open_source(str(scene)) as src:
        new = calibrate_model(r1, src, tmp_path / "cal", fpr=0.1, floor=False, colour_gain=False, max_shift=0)
    assert new["calibration"]["threshold_scene"] == pytest.approx(np.quantile(held["r1"], 0.9, method="higher"), rel=1e-12)
    assert new["search"]["score_shift_radius"] == 1 and new["threshold"]["search"]["score_shift_radius"] == 1
    assert Scorer.load(tmp_path / "cal").config.score_shift_radius == 1
    assert new["calibration"]["scores"].endswith("shift-min: the minimum over the frame's 9 copies shifted by up to 1 px")


def test_run_records_the_winning_shift(kinect_export_r0, tmp_path):
    """edge-ad run's JSON lines carry "shift" (dy, dx) for a model with R = 1, none for R = 0."""
    from click.testing import CliRunner

    from conftest import copy_frames
    from edge_ad.cli import main
    r1 = tmp_path / "r1"
    shutil.copytree(kinect_export_r0, r1)
    man = json.loads((r1 / "manifest.json").read_text())
    man["search"]["score_shift_radius"] = 1
    (r1 / "manifest.json").write_text(json.dumps(man))
    src = copy_frames(tmp_path / "frames", "sphere", 3)
    lines = {}
    for name, model in (("r0", kinect_export_r0), ("r1", r1)):
        out = tmp_path / f"{name}.jsonl"
        res = CliRunner().invoke(main, ["run", "--model", str(model), "--source", str(src), "--out", str(out), "-q"])
        assert res.exit_code == 0, res.output
        lines[name] = [json.loads(x) for x in out.read_text().splitlines() if '"frame"' in x]
        lines[name] = [x for x in lines[name] if x.get("type") == "frame"]
    assert len(lines["r1"]) == 3 and all("shift" not in x for x in lines["r0"])
    for a, b in zip(lines["r0"], lines["r1"]):
        assert len(b["shift"]) == 2 and max(map(abs, b["shift"])) <= 1
        assert b["score"] <= a["score"] * (1 + RTOL_BATCH)
    assert any(b["shift"] != [0, 0] for b in lines["r1"])
    assert lines["r1"][0]["threshold"] is None                          # the R = 0 threshold is not applied


def test_cli_shift_radius_flags(tmp_path, kinect_root):
    """edge-ad eval --shift-radius 1 scores with the shift-min (each frame <= its R = 0 score, some
    lower; the report and threshold.json record R = 1); edge-ad export --shift-radius 0 writes R = 0
    and leaves the checkpoint's R = 1 threshold (the tenth-pass release's) behind."""
    from click.testing import CliRunner

    from conftest import REPO
    from edge_ad.cli import main
    model = str(REPO / "models" / "kinect-rgbd" / "rectangle.pt")
    reports = {}
    for r in (0, 1):
        out = tmp_path / f"eval{r}"
        res = CliRunner().invoke(main, ["eval", "--model", model, "--data", str(kinect_root), "--class", "rectangle",
                                        "--max-per-class", "3", "--no-baselines", "--out", str(out),
                                        "--shift-radius", str(r)])
        assert res.exit_code == 0, res.output
        reports[r] = json.loads((out / "report.json").read_text())
        assert reports[r]["search"]["score_shift_radius"] == r
        assert json.loads((out / "threshold.json").read_text())["search"]["score_shift_radius"] == r
    s0 = np.concatenate([reports[0]["scores"][k] for k in sorted(reports[0]["scores"])])
    s1 = np.concatenate([reports[1]["scores"][k] for k in sorted(reports[1]["scores"])])
    assert np.all(s1 <= s0 * (1 + 1e-6)) and np.any(s1 < 0.9 * s0)
    res = CliRunner().invoke(main, ["export", model, "--out", str(tmp_path / "exp"), "--shift-radius", "0", "--no-parity"])
    assert res.exit_code == 0, res.output
    man = json.loads((tmp_path / "exp" / "manifest.json").read_text())
    assert man["search"]["score_shift_radius"] == 0 and "threshold" not in man
    bad = CliRunner().invoke(main, ["eval", "--model", model, "--synth", "4", "--out", str(tmp_path / "bad"),
                                    "--shift-radius", "9"])
    assert bad.exit_code != 0 and "score_shift_radius" in bad.output


def test_torch_search_refuses_the_shift_min_config(tiny_generator):
    from edge_ad.models.search import search, search_eager
    x = np.zeros((4, 64, 64), np.float32)
    for fn in (search, search_eager):
        with pytest.raises(ValueError, match="search_min_shift"):
            fn(tiny_generator, x, SearchConfig(k=1, score_shift_radius=1), seed=0)


def test_shared_scorer_threads_with_shift_min(kinect_export_r0, val_frames):
    """3 threads share one R = 1 scorer (single frames and batches mixed): every result equals the
    single-thread one bit for bit (the per-scorer lock covers the copies' batch graphs)."""
    from conftest import run_in_threads
    s = Scorer.load(kinect_export_r0, threads=1)
    s = Scorer.load(kinect_export_r0, threads=1, config=s.config.replace(score_shift_radius=1))
    frames = val_frames(6)
    ref = [s.score(rgb, depth, seed=i) for i, (rgb, depth) in enumerate(frames)]
    got = {}

    def work(t):
        for i in range(t, len(frames), 3):
            got[t, i] = s.score(*frames[i], seed=i)
        got[t, "batch"] = s.score_batch(frames[t::3], seeds=list(range(t, len(frames), 3)))
    run_in_threads(work, 3)
    for t in range(3):
        for i, b in zip(range(t, len(frames), 3), got[t, "batch"]):
            assert got[t, i].score == ref[i].score and got[t, i].shift == ref[i].shift
            np.testing.assert_array_equal(got[t, i].error_map, ref[i].error_map)
            assert b.score == pytest.approx(ref[i].score, rel=RTOL_BATCH) and b.shift == ref[i].shift   # other batches
