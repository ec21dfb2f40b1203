"""The pixel-memory factor (SearchConfig.score_pixel_power q > 0): score *= max(d_pix(x), pixel_floor) ** q,
d_pix(x) = min over the memory's rows (normal frames and their augmented copies, preprocessed) of
mean((x - row)^2): runtime/pixel_memory.py, the score's divisor, the Scorer's paths against the PyTorch
reference, the export's pixel_memory.npy and its manifest checks. Tiny generator, real kinect frames."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edge_ad.runtime.config import SearchConfig
from edge_ad.runtime.pixel_memory import PixelMemory, in_model_light
from edge_ad.runtime.preprocess import PreprocessSpec
from edge_ad.runtime.score_scale import latent_factor, pixel_factor, score_scale

AUGMENT = ["mirror", "blur:0.7", "scale:1.03"]
CFG = SearchConfig(name="pixel-test", n_seed=1, k=0, lr_theta=0.0, score_fg_power=0.5, score_pixel_power=1.0)
QUIET = {"log": lambda *a: None}


def test_off_by_default_and_recorded_as_before():
    """q = 0 (the default): no key in the record (configurations, their hashes and manifests as before the
    field), the divisor's old expression; old records load; bad values refused."""
    from edge_ad.runtime.scorer import scoring_settings_sha256
    old = SearchConfig(name="izi", z_init="encoder", score_latent_power=1.0, k=0, lr_theta=0.0)
    d = old.to_dict()
    assert "score_pixel_power" not in d and "pixel_floor" not in d and not old.uses_pixel_memory
    assert SearchConfig.from_dict(d) == old
    # the settings hash of a configuration without the pixel memory: the same canonical JSON as before the fields
    settings = {"search": {k: v for k, v in d.items() if k != "name"}, "preprocess":
                {k: v for k, v in PreprocessSpec().to_dict().items() if k != "sensor_faults"}}
    import hashlib
    want = hashlib.sha256(json.dumps(settings, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert scoring_settings_sha256(old, PreprocessSpec()) == want
    assert CFG.to_dict()["score_pixel_power"] == 1.0 and CFG.uses_pixel_memory
    x = -np.ones((4, 8, 8), np.float32)
    x[3, :4] = 0.5
    assert score_scale(x, old, 0.2) == 0.5 ** 0.0 / latent_factor(0.2, old)        # bit for bit the old expression
    assert pixel_factor(None, old) == 1.0
    assert score_scale(x, CFG, None, 0.04) == pytest.approx(0.5 ** 0.5 / 0.04)
    assert pixel_factor(0.0, CFG) == CFG.pixel_floor
    with pytest.raises(ValueError, match="no pixel distance was given"):
        score_scale(x, CFG)
    for bad in ({"score_pixel_power": -1.0}, {"pixel_floor": 0.0}, {"score_pixel_power": float("inf")},
                {"score_pixel_power": "1"}):
        with pytest.raises(ValueError, match="score_pixel_power"):
            SearchConfig(**bad)
    # a threshold calibrated without the factor does not serve one with it
    from edge_ad.runtime.config import search_differences
    assert search_differences(old.to_dict(), old.replace(score_pixel_power=0.5)) == ["score_pixel_power"]
    assert search_differences(old.to_dict(), old.replace(pixel_floor=1e-3)) == []    # off: its floor changes nothing


def test_pixel_shift_radius_recorded_only_when_set_and_validated():
    """pixel_shift_radius: 0 by default and then absent from the record (older records, hashes and exports
    as before); set, it round-trips and a threshold calibrated without it does not serve it (and with q = 0
    it changes no score, so it is not compared); bad values refused naming the field."""
    d = CFG.to_dict()
    assert CFG.pixel_shift_radius == 0 and "pixel_shift_radius" not in d
    on = CFG.replace(pixel_shift_radius=3)
    assert on.to_dict()["pixel_shift_radius"] == 3 and SearchConfig.from_dict(on.to_dict()) == on
    assert SearchConfig.from_dict(json.loads(json.dumps(on.to_dict()))) == on
    assert type(SearchConfig(pixel_shift_radius=np.int64(2)).pixel_shift_radius) is int
    for bad in (-1, 5, 1.5, True, "1"):
        with pytest.raises(ValueError, match="pixel_shift_radius"):
            SearchConfig(pixel_shift_radius=bad)
    from edge_ad.runtime.config import search_differences
    assert search_differences(CFG.to_dict(), on) == ["pixel_shift_radius"]
    off = CFG.replace(score_pixel_power=0.0)
    assert search_differences(off.to_dict(), off.replace(pixel_shift_radius=2)) == []


def _frames(n: int, R: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    f = rng.integers(0, 256, (n, R, R, 4), dtype=np.uint8)
    f[:, :, :4, 3] = 0                                      # some background
    return f


def test_distances_equal_a_brute_force_loop():
    """PixelMemory against an independent loop: rows = per frame the frame, then each augmentation in order
    (runtime.nuisance texts applied to the uint8 frame, then the model's preprocessing), the nearest row's
    mean squared difference in float64; batched = one by one; excluded frames' rows left out; inputs on a
    row (distance 0) and 1e-4 off one (the GEMM's rounding must not hide them); a gained scene's frames
    stored in the model's light."""
    from edge_ad.runtime.nuisance import frame_rng, parse_nuisance
    from edge_ad.runtime.preprocess import normalize_uint8
    spec = PreprocessSpec(resolution=16)
    F = _frames(7)
    m = PixelMemory(F, spec, AUGMENT)
    state = dict(vars(m))
    rows = []
    for i, f in enumerate(F):
        rows.append(f)
        for j, t in enumerate(AUGMENT):
            r, d = parse_nuisance(t)(f[..., :3], f[..., 3], frame_rng(0, i, j))
            rows.append(np.concatenate([r, d[..., None]], 2))
    rows = normalize_uint8(np.stack(rows), spec).reshape(len(rows), -1).astype(np.float64)    # (7 * 4, D)
    assert m.shape == rows.shape and m.rows_per_frame == 4

    def brute(x, exclude=()):
        keep = [k for k in range(len(rows)) if k // 4 not in exclude]
        return ((rows[keep] - x.reshape(-1).astype(np.float64)) ** 2).mean(1).min()

    rng = np.random.default_rng(1)
    X = np.concatenate([rows[[0, 6, 13]].reshape(3, 4, 16, 16),                      # on rows: 0
                        rows[[1, 9]].reshape(2, 4, 16, 16) + 1e-4 * rng.standard_normal((2, 4, 16, 16)),
                        rng.uniform(-1, 1, (3, 4, 16, 16))]).astype(np.float32)
    want = [brute(x) for x in X]
    np.testing.assert_allclose(m.distances(X), want, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose([m.distance(x) for x in X], want, rtol=1e-12, atol=1e-15)
    assert m.distance(X[0]) == 0.0 and m.distance(X[3]) > 0
    for ex in ([0], [1, 3], range(0, 6)):
        np.testing.assert_allclose(m.distances(X, exclude=ex), [brute(x, set(ex)) for x in X], rtol=1e-12, atol=1e-15)
    assert m.distance(X[0], exclude=[0]) > 1e-3                                        # its own block left out
    assert vars(m).keys() == state.keys() and all(vars(m)[k] is v for k, v in state.items())   # read-only
    with pytest.raises(ValueError, match="every frame"):
        m.distances(X, exclude=range(7))
    with pytest.raises(ValueError, match="NaN"):
        m.distance(np.full((4, 16, 16), np.nan, np.float32))
    with pytest.raises(ValueError, match=r"uint8 \(N, 16, 16, 4\)"):
        PixelMemory(F.astype(np.float32), spec)
    with pytest.raises(ValueError, match="not a valid augmentation"):
        PixelMemory(F, spec, ["zoom:2"])
    # a scene's colour gain: frames stored with it applied equal the scene's inputs (up to uint8 rounding)
    gained = PreprocessSpec(resolution=16, colour_gain=(1.2, 1.2, 1.2))
    x = normalize_uint8(F[2], gained)
    assert PixelMemory(in_model_light(F[2:3], gained), gained).distance(x) < 1e-5


def test_distances_pick_the_nearer_of_two_rows_one_level_apart():
    """Review 18 #5, the GEMM's candidate margin: two memory frames differ by one level in one pixel and
    every input lies nearly midway between them (1e-4 of that level off the midpoint, to either side, noise
    elsewhere), so the two exact distances differ by ~1e-11 while the float32 GEMM's rounding is far larger.
    ``distances`` must still return the exact nearer one (the brute-force loop's) for every input: with a
    zero margin the GEMM alone picks the row, the wrong one for about half the inputs (35 of 64 here)."""
    from edge_ad.runtime.preprocess import normalize_uint8
    spec = PreprocessSpec(resolution=16)
    rng = np.random.default_rng(0)
    F = rng.integers(1, 255, (4, 16, 16, 4), dtype=np.uint8)     # depth > 0: every pixel foreground
    F[1] = F[0]
    F[1, 5, 7, 0] += 1                                            # frame 1: frame 0, one level brighter in one pixel
    m = PixelMemory(F, spec)
    rows = normalize_uint8(F, spec).reshape(4, -1).astype(np.float64)         # (4, D), A = 1
    j = np.flatnonzero(rows[0] != rows[1])
    assert len(j) == 1
    j = j[0]
    level = rows[1, j] - rows[0, j]
    X = rows[0] + 0.3 * rng.standard_normal((64, rows.shape[1]))              # the same offset from both rows
    X[:, j] = rows[0, j] + level * (0.5 + 1e-4 * rng.choice([-1.0, 1.0], 64))  # nearly midway, either side
    X = X.astype(np.float32)
    brute = ((X.astype(np.float64)[:, None] - rows[None]) ** 2).mean(2)       # (64, 4) exact
    assert set(brute.argmin(1)) == {0, 1}                                     # each row is the nearer for some
    gap = np.abs(brute[:, 0] - brute[:, 1])
    assert (gap > 1e-10 * brute.min(1)).all() and (gap < 1e-9).all()          # a near-tie, 100x the tolerance below
    np.testing.assert_allclose(m.distances(X.reshape(64, 4, 16, 16)), brute.min(1), rtol=1e-12, atol=0)


def test_frame_distances_equal_the_minimum_over_each_frames_shifted_copies():
    """PixelMemory.frame_distances with radius 2 (25 copies per frame) on 12 frames, measured in several
    calls of whole frames (_COPIES): each equals the minimum of ``distance`` over that frame's own shifted
    copies (vacated pixels background), with and without excluded frames; radius 0 is ``distances``."""
    from edge_ad.runtime.preprocess import normalize_uint8, shift_frame, shift_offsets
    spec = PreprocessSpec(resolution=16)
    m = PixelMemory(_frames(5, seed=3), spec, ["mirror"])
    X = normalize_uint8(_frames(12, seed=4), spec)                               # (12, 4, 16, 16)
    X[3] = shift_frame(normalize_uint8(m.frames[1], spec), 2, -1)                # a memory frame, moved 2 px
    for exclude in (None, [0, 2]):
        got = m.frame_distances(X, 2, exclude)
        want = [min(m.distance(shift_frame(x, dy, dx), exclude) for dy, dx in shift_offsets(2)) for x in X]
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(m.frame_distances(X, 0, exclude), m.distances(X, exclude))
    assert m.frame_distances(X[3:4], 2)[0] < 0.5 * m.distance(X[3])           # the moved frame found again (its lost edge aside)


def test_bounded_search_equals_the_full_search_bit_for_bit_on_real_frames(kinect_root):
    """The bounded search (PixelMemory's default: block-feature lower bounds, then only the rows that may hold
    the minimum measured) returns what the full search (bounded=False: every row through the GEMM) returns, bit
    for bit: a memory of 24 real cylinder train frames (+ 3 copies each) under the shipped cylinder's
    preprocessing, 6 val frames of each class with the shipped 4 px pixel shift search (81 copies), with and
    without excluded frames, a memory frame moved 2 px (one copy lies on a row but for its vacated edge); the
    gain-fitted distance takes the full search either way. The block features are a true lower bound."""
    from edge_ad.runtime.latent_bank import unaligned_uint8
    from edge_ad.runtime.pixel_memory import block_features
    from edge_ad.runtime.preprocess import normalize_uint8, shift_frame
    from edge_ad.runtime.scorer import frame_input
    from edge_ad.runtime.sources.folder import read_pair
    spec = PreprocessSpec(colour_norm="gray", colour_reference=(0.6095, 0.6164, 0.6243), depth_fill=3, depth_close=3)
    splits = json.loads((kinect_root / "splits.json").read_text())
    F = np.stack([unaligned_uint8(*read_pair(kinect_root / "cylinder", str(i)), spec)
                  for i in splits["cylinder"]["train"][:24]])
    bounded, full = PixelMemory(F, spec, AUGMENT), PixelMemory(F, spec, AUGMENT, bounded=False)
    assert [t["block"] for t in bounded._bound] == [8, 4] and full._bound is None and not full.bounded
    full32 = PixelMemory(F, spec, AUGMENT, bounded=False, rows="float32")     # the rows expanded (before session 35)
    assert bounded.row_store == full.row_store == "uint8" and full32.row_store == "float32"
    X = np.stack([frame_input(*read_pair(kinect_root / c, str(i)), spec, False)
                  for c in ("cylinder", "rectangle", "sphere") for i in splits[c]["val"][:6]]
                 + [shift_frame(normalize_uint8(F[5], spec), 2, -2)])                  # (19, 4, 64, 64)
    for exclude in (None, [0, 3, 5]):
        got = bounded.frame_distances(X, 4, exclude)
        np.testing.assert_array_equal(got, full.frame_distances(X, 4, exclude))
        np.testing.assert_array_equal(got, full32.frame_distances(X, 4, exclude))
        assert (got > 0).all()
    assert bounded.frame_distance(X[-1], 4) < 0.1 * bounded.frame_distance(X[-1], 4, exclude=[5])   # found again
    from concurrent.futures import ThreadPoolExecutor                                  # one memory, four threads
    with ThreadPoolExecutor(4) as pool:
        parts = list(pool.map(lambda i: bounded.frame_distances(X[i::4], 4, [0, 3, 5]), range(4)))
    want = full.frame_distances(X, 4, [0, 3, 5])
    for i, got in enumerate(parts):
        np.testing.assert_array_equal(got, want[i::4])
    np.testing.assert_array_equal(bounded.frame_distances(X[:4], 1, gain=(0.8, 1.25)),
                                  full.frame_distances(X[:4], 1, gain=(0.8, 1.25)))
    np.testing.assert_array_equal(bounded.frame_distances(X[:4], 1, gain=(0.8, 1.25)),
                                  full32.frame_distances(X[:4], 1, gain=(0.8, 1.25)))
    # the bound: |f(x) - f(r)|^2 <= |x - r|^2 for real inputs against every row (and for random images)
    rows = full.rows().astype(np.float64)                                               # (96, D)
    rng = np.random.default_rng(0)
    for A in (X.reshape(len(X), -1).astype(np.float64), rng.uniform(-1, 1, (8, rows.shape[1]))):
        exact = ((A[:, None] - rows[None]) ** 2).sum(2)
        for block in (8, 4):
            fa, fr = block_features(A, 64, block), block_features(rows, 64, block)
            lb = ((fa[:, None] - fr[None]) ** 2).sum(2)
            assert (lb <= exact * (1 + 1e-12)).all() and (lb > 0.5 * exact).mean() > 0.5   # a bound, and a tight one


@pytest.mark.parametrize("colour_norm,align,cls", [("gray", "none", "cylinder"), ("rgb", "centroid", "sphere"),
                                                    ("none", "none", "rectangle")])
def test_uint8_row_store_rebuilds_the_float32_rows_bit_for_bit(kinect_root, colour_norm, align, cls):
    """The default row store (uint8: each row's image + its colour-normalization gains, rebuilt when measured)
    holds the rows the float32 store expands, bit for bit, for each colour normalization (real train frames, the
    frames' augmented copies), at a quarter of the bytes (+ 12 bytes of gains a row); every distance (the bounded
    and the full search, held out, the gain fit, frame_gaps) equals the float32 store's. Fails for a decoder that
    rebuilds any row differently (the store then falls back to float32: row_store says so)."""
    from edge_ad.runtime.latent_bank import unaligned_uint8
    from edge_ad.runtime.scorer import frame_input
    from edge_ad.runtime.sources.folder import read_pair
    spec = PreprocessSpec(colour_norm=colour_norm, colour_reference=(0.6095, 0.6164, 0.6243), align=align,
                          depth_fill=3, depth_close=3)
    splits = json.loads((kinect_root / "splits.json").read_text())
    F = np.stack([unaligned_uint8(*read_pair(kinect_root / cls, str(i)), spec) for i in splits[cls]["train"][:8]])
    augment = AUGMENT + ["rotate:3", "mirror+scale:0.95"]
    m8, m32 = PixelMemory(F, spec, augment, rows="uint8"), PixelMemory(F, spec, augment, rows="float32")
    assert m8.row_store == "uint8" and m32.row_store == "float32" and m8.shape == m32.shape == (48, 4 * 64 * 64)
    np.testing.assert_array_equal(m8.rows().view(np.uint32), m32.rows().view(np.uint32))
    np.testing.assert_array_equal(m8.rows([47, 3, 3]).view(np.uint32), m32.rows()[[47, 3, 3]].view(np.uint32))
    gains = 0 if colour_norm == "none" else 12
    assert m8.nbytes()["rows"] == 48 * (4 * 64 * 64 + gains) and m32.nbytes()["rows"] == 48 * 4 * 64 * 64 * 4
    assert m8.nbytes()["bound"] == m32.nbytes()["bound"] > 0
    X = np.stack([frame_input(*read_pair(kinect_root / c, str(i)), spec, False)
                  for c in ("cylinder", "rectangle", "sphere") for i in splits[c]["val"][:2]])
    for exclude in (None, [1, 2]):
        want = m32.frame_distances(X, 2, exclude)
        np.testing.assert_array_equal(m8.frame_distances(X, 2, exclude), want)
        np.testing.assert_array_equal(m8.full_search().frame_distances(X, 2, exclude), want)
        np.testing.assert_array_equal(m8.distances(X, exclude), m32.distances(X, exclude))
    np.testing.assert_array_equal(m8.distances(X, gain=(0.8, 1.25)), m32.distances(X, gain=(0.8, 1.25)))
    own = np.stack([frame_input(*read_pair(kinect_root / cls, str(i)), spec, False) for i in splits[cls]["train"][:8]])
    np.testing.assert_array_equal(m8.frame_gaps(own), m32.frame_gaps(own))


def test_a_row_the_uint8_store_cannot_rebuild_leaves_the_memory_in_float32(monkeypatch):
    """A decoder that rebuilds a row differently from normalize_uint8 (here: one value of frame 1's rows moved) is
    caught while the memory is built: the memory keeps its rows in float32 (row_store "float32"), the rows and the
    distances those of rows="float32"; a bad row store or $EDGE_AD_PIXEL_ROWS is named."""
    from edge_ad.runtime import pixel_memory as pm
    spec = PreprocessSpec(resolution=16, colour_norm="gray", colour_reference=(0.6, 0.6, 0.6))
    F = _frames(4)
    want = PixelMemory(F, spec, AUGMENT, rows="float32")
    decode = pm._Uint8Rows.decode
    calls = []

    def broken(self, u, g):
        out = decode(self, u, g)
        calls.append(len(u))
        if len(calls) == 2:                                   # frame 1's check
            out[0, 5] += 1e-3
        return out
    monkeypatch.setattr(pm._Uint8Rows, "decode", broken)
    m = PixelMemory(F, spec, AUGMENT, rows="uint8")
    assert len(calls) >= 2 and m.row_store == "float32" and m.nbytes()["rows"] == 16 * 4 * 16 * 16 * 4
    np.testing.assert_array_equal(m.rows(), want.rows())
    X = np.random.default_rng(1).uniform(-1, 1, (3, 4, 16, 16)).astype(np.float32)
    np.testing.assert_array_equal(m.frame_distances(X, 1), want.frame_distances(X, 1))
    monkeypatch.setattr(pm._Uint8Rows, "decode", decode)
    with pytest.raises(ValueError, match="row store must be one of uint8, float32.*'float16'"):
        PixelMemory(F, spec, AUGMENT, rows="float16")
    monkeypatch.setenv("EDGE_AD_PIXEL_ROWS", "float32")
    assert PixelMemory(F, spec, AUGMENT).row_store == "float32"
    monkeypatch.setenv("EDGE_AD_PIXEL_ROWS", "fp16")
    with pytest.raises(ValueError, match=r"\$EDGE_AD_PIXEL_ROWS: .*'fp16'"):
        PixelMemory(F, spec, AUGMENT)
    monkeypatch.delenv("EDGE_AD_PIXEL_ROWS")
    assert PixelMemory(F, spec, AUGMENT).row_store == "uint8"


torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def pixel_export(tmp_path_factory, tiny_generator, kinect_root, val_frame):
    """tiny_generator in a checkpoint with a pixel memory of 6 real rectangle train frames (+ 3 augmented
    copies each) scoring with CFG, exported with its parity check on a normal and an anomalous val frame."""
    return _pixel_export(tmp_path_factory, tiny_generator, kinect_root, val_frame, CFG)


@pytest.fixture(scope="module")
def pixel_export_rp1(tmp_path_factory, tiny_generator, kinect_root, val_frame):
    """``pixel_export`` scoring with CFG and pixel_shift_radius 1."""
    return _pixel_export(tmp_path_factory, tiny_generator, kinect_root, val_frame, CFG.replace(pixel_shift_radius=1))


def _pixel_export(tmp_path_factory, tiny_generator, kinect_root, val_frame, cfg):
    from edge_ad.export.exporter import export_model
    from edge_ad.models.checkpoint import save_checkpoint
    from edge_ad.runtime.latent_bank import unaligned_uint8
    from edge_ad.runtime.sources.folder import read_pair
    spec = PreprocessSpec()
    ids = json.loads((kinect_root / "splits.json").read_text())["rectangle"]["train"][:6]
    F = np.stack([unaligned_uint8(*read_pair(kinect_root / "rectangle", str(i)), spec) for i in ids])
    d = tmp_path_factory.mktemp("pixel")
    ck = d / "g.pt"
    save_checkpoint(ck, tiny_generator, preprocess=spec,
                    scoring={"name": cfg.name, "search": cfg.to_dict(), "pixel_memory": torch.from_numpy(F),
                             "pixel_memory_info": {"frames": "6 rectangle train frames", "n_frames": 6,
                                                   "augment": AUGMENT}})
    frames = [dict(val_frame("rectangle"), label="normal"), dict(val_frame("sphere"), label="anomalous")]
    man = export_model(ck, d / "model", parity_frames=frames, check_fp64=False, **QUIET)
    return d / "model", man, F, frames


def test_export_writes_the_memory_and_its_parity_passes(pixel_export):
    out, man, F, _ = pixel_export
    pm = man["pixel_memory"]
    assert pm["file"] == "pixel_memory.npy" and pm["file"] in man["files"] and pm["shape"] == [6, 64, 64, 4]
    assert pm["augment"] == AUGMENT and pm["dtype"] == "uint8"
    np.testing.assert_array_equal(np.load(out / "pixel_memory.npy"), F)
    assert man["parity"]["passed"] is True
    for r in man["parity"]["frames"]:
        assert r["pixel_distance"]["rel_diff"] <= 1e-6 and r["rel_diff"] <= 1e-4, r


def test_parity_with_the_shift_min_and_the_pixel_shift_search(pixel_export, tiny_generator):
    """export.parity.check_parity with score_shift_radius 1 and pixel_shift_radius 1 on the export: both
    sides measure the frame's own pixel distance with its 1-px search (the reference's, computed here), and
    the shift-min's scores agree with the float64 reference (search_min_shift)."""
    from edge_ad.export.parity import check_parity
    from edge_ad.runtime.preprocess import preprocess
    out, _, F, frames = pixel_export
    memory = PixelMemory(F, PreprocessSpec(), AUGMENT)
    cfg = CFG.replace(score_shift_radius=1, pixel_shift_radius=1)
    rep = check_parity(tiny_generator, out, cfg, frames, check_fp64=False, pixel_memory=memory, threads=1, **QUIET)
    assert rep["passed"] is True and rep["shift_min"]["passed"] is True and rep["shift_min"]["max_rel_diff"] <= 1e-4
    for r, fr in zip(rep["frames"], frames):
        want = memory.frame_distance(preprocess(fr["rgb"], fr["depth"]), 1)
        assert r["pixel_distance"]["reference"] == want and r["pixel_distance"]["rel_diff"] <= 1e-6, r
    assert want < memory.distance(preprocess(fr["rgb"], fr["depth"]))        # the search found a nearer shift


def test_a_frame_moved_3_px_keeps_its_pixel_distance_with_its_own_3_px_search(pixel_export, kinect_root):
    """Real rectangle val frames against the 6-train-frame memory: the frame moved by (3, 3) px (a camera
    shift, the u8 frame moved, vacated pixels background) is several times farther than the frame itself
    with pixel_shift_radius 0 (pixel MSE does not forgive a misalignment), nearly as near with 3
    (PixelMemory.frame_distance: the minimum over the frame moved by every shift up to 3 px)."""
    from edge_ad.runtime.preprocess import move_uint8, normalize_uint8
    from edge_ad.runtime.latent_bank import unaligned_uint8
    from edge_ad.runtime.sources.folder import read_pair
    memory = PixelMemory(pixel_export[2], PreprocessSpec(), AUGMENT)
    ids = json.loads((kinect_root / "splits.json").read_text())["rectangle"]["val"][:2]
    for fid in ids:
        u8 = unaligned_uint8(*read_pair(kinect_root / "rectangle", str(fid)), PreprocessSpec())
        x, moved = normalize_uint8(np.stack([u8, move_uint8(u8, 3, 3)]), PreprocessSpec())
        d = memory.frame_distance(x)                                            # radius 0: the frame as given
        assert d == memory.distance(x) and memory.frame_distance(x, 3) <= d
        assert memory.frame_distance(moved) > 4 * d                             # no search: the shift breaks it
        assert memory.frame_distance(moved, 3) < 1.5 * d                        # its own search: nearly unmoved
        np.testing.assert_array_equal(memory.frame_distances(np.stack([x, moved]), 3),
                                      [memory.frame_distance(x, 3), memory.frame_distance(moved, 3)])


@pytest.mark.parametrize("radius,pixel_radius", [(0, 0), (2, 1)])
def test_runtime_equals_the_torch_reference(pixel_export, tiny_generator, radius, pixel_radius):
    """Scorer.score, score_input (shift-min) and score_batch against models.search (search_min_shift,
    score_batch: float64 / float32 torch) with q = 1: scores within 1e-4 (as the export's parity); ONE pixel
    distance per frame (the frame as given, its own shift search up to pixel_shift_radius, computed here by
    brute force), the same factor for every shift-min copy (each copy's score = its q = 0 score x d_pix of
    the frame), and the factor really applied (q = 0 scores differ by it)."""
    from edge_ad.models.search import score_batch, search_min_shift
    from edge_ad.runtime.config import frame_seed
    from edge_ad.runtime.preprocess import preprocess, shift_frame, shift_offsets
    from edge_ad.runtime.scorer import Scorer
    out, _, F, frames = pixel_export
    cfg = CFG.replace(score_shift_radius=radius, pixel_shift_radius=pixel_radius)
    s = Scorer.load(out, threads=1, providers=["CPUExecutionProvider"], config=cfg)
    off = Scorer.load(out, threads=1, providers=["CPUExecutionProvider"], config=cfg.replace(score_pixel_power=0.0))
    memory = PixelMemory(F, PreprocessSpec(), AUGMENT)
    X = np.stack([preprocess(f["rgb"], f["depth"]) for f in frames])
    got = [s.score(f["rgb"], f["depth"], seed=frame_seed(0, i)) for i, f in enumerate(frames)]
    plain = [off.score(f["rgb"], f["depth"], seed=frame_seed(0, i)) for i, f in enumerate(frames)]
    for i, x in enumerate(X):
        # the frame's own d_pix: the minimum over the frame moved by every shift up to pixel_radius
        want = min(memory.distance(shift_frame(x, dy, dx)) for dy, dx in shift_offsets(pixel_radius))
        assert memory.frame_distance(x, pixel_radius) == want
        ref = search_min_shift(tiny_generator, x, cfg, seed=frame_seed(0, i), dtype=torch.float64, pixel_memory=memory)
        assert got[i].score == pytest.approx(ref.score, rel=1e-4)
        assert (got[i].shift or (0, 0)) == ref.shift
        assert got[i].pixel_distance == want == ref.pixel_distance            # the frame's, whichever copy won
        # every copy: the same factor (score_shifted's copies against the q = 0 scorer's)
        offsets, rs = s.score_shifted(x, seed=frame_seed(0, i))
        _, rs0 = off.score_shifted(x, seed=frame_seed(0, i))
        assert len(rs) == (2 * radius + 1) ** 2 and {r.pixel_distance for r in rs} == {want}
        for r, r0 in zip(rs, rs0):
            assert r.score == pytest.approx(r0.score * want, rel=1e-12)
        assert got[i].score == pytest.approx(plain[i].score * want, rel=1e-12)
    np.testing.assert_allclose(score_batch(tiny_generator, X, cfg, seed=0, pixel_memory=memory),
                               [r.score for r in got], rtol=1e-4)
    batch = s.score_batch([(f["rgb"], f["depth"]) for f in frames], seeds=[frame_seed(0, i) for i in range(2)])
    np.testing.assert_allclose([r.score for r in batch], [r.score for r in got], rtol=1e-5)
    assert [r.pixel_distance for r in batch] == [r.pixel_distance for r in got]
    with pytest.raises(ValueError, match="pixel memory"):
        score_batch(tiny_generator, X, cfg)
    if radius:      # without batch graphs (TensorRT, k > 0): the copies one by one (Scorer._score_copy)
        one = Scorer.load(out, threads=1, providers=["CPUExecutionProvider"], config=cfg)
        one._batch = None
        for i, x in enumerate(X):
            r = one.score_input(x, seed=frame_seed(0, i))
            assert r.score == pytest.approx(got[i].score, rel=1e-5) and r.shift == got[i].shift
            ref = search_min_shift(tiny_generator, x, cfg, seed=frame_seed(0, i), dtype=torch.float64,
                                   pixel_memory=memory)
            assert r.pixel_distance == memory.frame_distance(x, pixel_radius) == ref.pixel_distance
            _, rs = one.score_shifted(x, seed=frame_seed(0, i))
            assert {c.pixel_distance for c in rs} == {r.pixel_distance}


def test_manifest_refuses_a_missing_tampered_or_misshapen_memory(pixel_export, tmp_path):
    from conftest import edit_manifest
    from edge_ad.runtime.manifest import ManifestError, sha256_file
    from edge_ad.runtime.scorer import Scorer
    out = pixel_export[0]
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    f = np.load(bad / "pixel_memory.npy")
    f[0, 0, 0, 0] ^= 1
    np.save(bad / "pixel_memory.npy", f)
    with pytest.raises(ManifestError, match=r"pixel_memory\.npy has been modified"):
        Scorer.load(bad)
    (bad / "pixel_memory.npy").unlink()
    with pytest.raises(ManifestError, match=r"pixel_memory\.npy listed in the manifest is missing"):
        Scorer.load(bad)
    # a file of another shape whose sha256 was recomputed: its header is refused before it is read
    wrong = tmp_path / "wrong"
    shutil.copytree(out, wrong)
    np.save(wrong / "pixel_memory.npy", np.zeros((6, 32, 32, 4), np.uint8))
    man = json.loads((wrong / "manifest.json").read_text())
    man["files"]["pixel_memory.npy"] = sha256_file(wrong / "pixel_memory.npy")
    (wrong / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ManifestError, match=r"pixel_memory\.npy holds uint8 \(6, 32, 32, 4\), expected uint8 \(6, 64, 64, 4\)"):
        Scorer.load(wrong)
    for i, (edit, msg) in enumerate([
            (lambda m: m["pixel_memory"].update(shape=[6, 32, 32, 4]), r"pixel_memory\.shape must be \[N, R, R, 4\]"),
            (lambda m: m["pixel_memory"].update(dtype="float32"), r"pixel_memory\.dtype must be 'uint8'"),
            (lambda m: m["pixel_memory"].update(augment="mirror"), r"pixel_memory\.augment .*list of nuisance texts"),
            (lambda m: m["pixel_memory"].update(augment=["mirror", "twirl:3"]), r"pixel_memory\.augment .*'twirl:3'"),
            (lambda m: m.pop("pixel_memory"), "this export has no pixel memory")]):
        with pytest.raises(ManifestError, match=msg):
            Scorer.load(edit_manifest(out, tmp_path / f"e{i}", edit))
    assert Scorer.load(edit_manifest(out, tmp_path / "off", lambda m: m.pop("pixel_memory")),
                       config=CFG.replace(score_pixel_power=0.0)) is not None    # q = 0 needs no memory


def test_an_export_scores_alike_with_either_row_store(pixel_export, val_frame, monkeypatch):
    """A model directory round trip: Scorer.load keeps the pixel memory's rows as uint8 images by default and as
    float32 rows under $EDGE_AD_PIXEL_ROWS=float32; the scores (and pixel distances) are equal bit for bit, the
    rows take a quarter of the bytes; a bad value of the variable is named before anything loads."""
    from edge_ad.runtime.scorer import Scorer
    out, _, F, _ = pixel_export
    fr = val_frame("rectangle")
    got = {}
    for store in ("uint8", "float32"):
        monkeypatch.setenv("EDGE_AD_PIXEL_ROWS", store)
        s = Scorer.load(out, threads=1)
        assert s.pixel_memory.row_store == store
        r = s.score(fr["rgb"], fr["depth"], seed=3)
        got[store] = (r.score, r.pixel_distance, s.pixel_memory.nbytes()["rows"])
    assert got["uint8"][:2] == got["float32"][:2] and got["uint8"][1] > 0
    assert got["uint8"][2] * 4 == got["float32"][2] == len(F) * (1 + len(AUGMENT)) * 4 * 64 * 64 * 4
    monkeypatch.setenv("EDGE_AD_PIXEL_ROWS", "float64")
    with pytest.raises(ValueError, match="EDGE_AD_PIXEL_ROWS"):
        Scorer.load(out, threads=1)


def test_old_exports_score_as_before(export_tiny, val_frame):
    """An export without the fields (the tiny export) loads; its manifest's search record has no pixel key
    and its score is the mean seed loss / the fg/latent divisor exactly."""
    from edge_ad.runtime.scorer import Scorer
    d = export_tiny(0, 2)
    man = json.loads((d / "manifest.json").read_text())
    assert not any("pixel" in k for k in man["search"]) and "pixel_memory" not in man
    s = Scorer.load(d, threads=1)
    fr = val_frame("rectangle")
    r = s.score(fr["rgb"], fr["depth"], seed=3)
    assert r.pixel_distance is None and r.score == float(r.seed_losses.mean()) / 1.0


def test_eval_pixel_power_override(pixel_export, tmp_path, kinect_root, tiny_generator):
    """edge-ad eval --pixel-power q: the checkpoint's pixel memory scores (each score = the q = 0 score x
    d_pix ** q, the reference's d_pix of the frame); a checkpoint without one is refused with a clear error."""
    from click.testing import CliRunner

    from edge_ad.cli import main
    from edge_ad.models.checkpoint import save_checkpoint
    ck = pixel_export[0].parent / "g.pt"
    common = ["--data", str(kinect_root), "--class", "rectangle", "--max-per-class", "2", "--no-baselines"]
    reps = {}
    for q in ("0", "0.5"):
        r = CliRunner().invoke(main, ["eval", "--model", str(ck), *common, "--pixel-power", q,
                                      "--out", str(tmp_path / q)])
        assert r.exit_code == 0, r.output
        reps[q] = json.loads((tmp_path / q / "report.json").read_text())
    assert reps["0.5"]["search"]["score_pixel_power"] == 0.5 and "score_pixel_power" not in reps["0"]["search"]
    from edge_ad.models.data import load_kinect, to_tensor
    X = to_tensor(load_kinect(kinect_root, "sphere", "val", PreprocessSpec())[1][:2], PreprocessSpec()).numpy()
    d = PixelMemory(pixel_export[2], PreprocessSpec(), AUGMENT).distances(X)            # the frames eval scored
    ratio = np.array(reps["0.5"]["scores"]["sphere"]) / np.array(reps["0"]["scores"]["sphere"])
    np.testing.assert_allclose(ratio, d ** 0.5, rtol=1e-6)
    assert np.ptp(ratio) > 0                                      # a per-frame factor, not a constant
    r = CliRunner().invoke(main, ["eval", "--model", str(ck), *common, "--pixel-power", "0.5",
                                  "--pixel-shift-radius", "2", "--out", str(tmp_path / "rp2")])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "rp2" / "report.json").read_text())
    assert rep["search"]["pixel_shift_radius"] == 2
    d2 = PixelMemory(pixel_export[2], PreprocessSpec(), AUGMENT).frame_distances(X, 2)   # each frame's own 2-px search
    assert (d2 < d).all()
    np.testing.assert_allclose(np.array(rep["scores"]["sphere"]) / np.array(reps["0"]["scores"]["sphere"]),
                               d2 ** 0.5, rtol=1e-6)
    save_checkpoint(tmp_path / "plain.pt", tiny_generator, preprocess=PreprocessSpec(),
                    scoring={"name": "k0", "search": CFG.replace(score_pixel_power=0.0).to_dict()})
    r = CliRunner().invoke(main, ["eval", "--model", str(tmp_path / "plain.pt"), *common, "--pixel-power", "1",
                                  "--out", str(tmp_path / "x")])
    assert r.exit_code != 0 and "carries no pixel memory" in r.output, r.output


@pytest.mark.parametrize("pixel_radius", [0, 1])
def test_calibrate_adds_the_scene_frames_and_scores_them_held_out(request, tmp_path, pixel_radius):
    """edge-ad calibrate on a model with the pixel memory: the new pixel_memory.npy is the original frames
    then the scene's usable frames (read_scene's u8, no colour gain here), sha256 and manifest updated;
    the threshold is the quantile of the scene's HELD-OUT scores: each frame's q = 0 score x its pixel
    distance (its own shift search up to pixel_shift_radius) to the memory without its block's scene
    frames (4 contiguous blocks), computed here independently; in the new model a scene frame is in the
    memory (distance 0 -> the floor)."""
    from conftest import copy_frames
    from edge_ad.runtime.calibrate import calibrate_model, read_scene
    from edge_ad.runtime.manifest import sha256_file
    from edge_ad.runtime.preprocess import normalize_uint8, shift_frame, shift_offsets
    from edge_ad.runtime.scorer import Scorer
    from edge_ad.runtime.sources import open_source
    out, _, F, _ = request.getfixturevalue("pixel_export_rp1" if pixel_radius else "pixel_export")
    cfg = CFG.replace(pixel_shift_radius=pixel_radius)
    scene = copy_frames(tmp_path / "scene", "rectangle", 12, start=200)
    with open_source(str(scene)) as src:
        man = calibrate_model(out, src, tmp_path / "cal", max_shift=0, blocks=4, min_frames=10, fpr=0.2)
    with open_source(str(scene)) as src:
        u8 = np.stack(read_scene(src, PreprocessSpec())["u8"])                  # (n, 64, 64, 4)
    n = len(u8)
    stored = np.load(tmp_path / "cal" / "pixel_memory.npy")
    np.testing.assert_array_equal(stored, np.concatenate([F, u8]))
    assert man["pixel_memory"]["shape"] == [6 + n, 64, 64, 4] and man["pixel_memory"]["augment"] == AUGMENT
    assert man["files"]["pixel_memory.npy"] == sha256_file(tmp_path / "cal" / "pixel_memory.npy")
    assert man["calibration"]["pixel_memory"] == {"original_frames": 6, "scene_frames": n}
    memory = PixelMemory(stored, PreprocessSpec(), AUGMENT)
    off = Scorer.load(out, threads=1, config=cfg.replace(score_pixel_power=0.0))
    X = normalize_uint8(u8, PreprocessSpec())                                   # (n, 4, 64, 64)
    edges = [round(k * n / 4) for k in range(5)]
    held = []
    for a, b in zip(edges[:-1], edges[1:]):
        for i in range(a, b):
            d = min(memory.distance(shift_frame(X[i], dy, dx), exclude=range(6 + a, 6 + b))   # not its block's
                    for dy, dx in shift_offsets(pixel_radius))
            held.append(off.score_input(X[i], seed=0).score * max(d, CFG.pixel_floor))
    assert man["threshold"]["value"] == pytest.approx(np.quantile(held, 0.8, method="higher"), rel=1e-9)
    in_memory = [off.score_input(X[i], seed=0).score * max(memory.distance(X[i]), CFG.pixel_floor) for i in range(n)]
    assert man["threshold"]["value"] > 10 * max(in_memory)                    # a frame in the memory scores at the floor
    cal = Scorer.load(tmp_path / "cal", threads=1)
    assert cal.score_input(X[0], seed=0).pixel_distance == 0.0                  # the scene frame is in the memory


def test_calibrate_uses_the_verified_pixel_memory_not_one_swapped_while_it_reads(tmp_path, pixel_export):
    """Audit 27 #1: pixel_memory.npy swapped (same shape) while calibrate reads the scene is refused naming it,
    nothing written (it was read again without its sha256 and went into OUT with a fresh hash)."""
    import shutil

    from conftest import copy_frames
    from edge_ad.runtime.calibrate import calibrate_model
    from edge_ad.runtime.manifest import ManifestError
    from edge_ad.runtime.sources import open_source
    model = tmp_path / "model"
    shutil.copytree(pixel_export[0], model)
    frames = np.load(model / "pixel_memory.npy")
    scene = copy_frames(tmp_path / "scene", "rectangle", 12, start=200)

    def swap(read, used, dropped):
        if read == 1:
            np.save(model / "pixel_memory.npy", 255 - frames)
    with open_source(str(scene)) as src, \
            pytest.raises(ManifestError, match="pixel_memory.npy has been modified since the model was verified"):
        calibrate_model(model, src, tmp_path / "cal", max_shift=0, blocks=4, min_frames=10, fpr=0.2, progress=swap)
    assert not (tmp_path / "cal").exists()


def test_calibrate_stores_a_darker_scenes_frames_in_the_models_light(tmp_path, tiny_generator, pixel_export):
    """Review 18 #7, calibrate's colour-gain path for the pixel memory end to end: a model with a
    colour_reference (its 6 train frames' mean foreground colour) and a pixel memory, calibrated on 12
    real rectangle frames darkened to 70 % (RGB x 0.7): the scene's gain (> 1.2) undoes the light; the
    held-out threshold equals an independent computation (each frame's q = 0 score x its pixel distance,
    the frame scored under the gain, to the memory of the original frames + in_model_light of the other
    blocks' scene frames); pixel_memory.npy holds the original frames then in_model_light(u8, spec with the
    gain), not the raw darker frames; in the new model a scene frame is in the memory up to uint8
    rounding (in_model_light rounds, the input does not)."""
    import dataclasses

    from PIL import Image

    from conftest import copy_frames
    from edge_ad.export.exporter import export_model
    from edge_ad.models.checkpoint import save_checkpoint
    from edge_ad.runtime.calibrate import calibrate_model, read_scene
    from edge_ad.runtime.preprocess import normalize_uint8
    from edge_ad.runtime.scorer import Scorer
    from edge_ad.runtime.sources import open_source
    F = pixel_export[2]                                                        # (6, 64, 64, 4) train frames
    fg = F[..., 3] > 0
    spec = PreprocessSpec(colour_reference=tuple(round(float(v), 4) for v in F[..., :3][fg].mean(0) / 255))
    save_checkpoint(tmp_path / "g.pt", tiny_generator, preprocess=spec,
                    scoring={"name": CFG.name, "search": CFG.to_dict(), "pixel_memory": torch.from_numpy(F),
                             "pixel_memory_info": {"frames": "6 rectangle train frames", "augment": AUGMENT}})
    out = tmp_path / "model"
    export_model(tmp_path / "g.pt", out, parity=False, **QUIET)
    scene = copy_frames(tmp_path / "scene", "rectangle", 12, start=200)
    for f in sorted((scene / "rgb").iterdir()):                               # the scene's light at 70 %
        dark = (np.asarray(Image.open(f).convert("RGB")).astype(np.float64) * 0.7).round().astype(np.uint8)
        f.unlink()
        Image.fromarray(dark).save(f.with_suffix(".png"))
    with open_source(str(scene)) as src:
        # the gain applied unchecked: the tiny random generator cannot tell the scene's light (audit 34 #4's check)
        man = calibrate_model(out, src, tmp_path / "cal", max_shift=0, blocks=4, min_frames=10, fpr=0.2,
                              colour_gain="always")
    gain = tuple(man["calibration"]["colour_gain"])
    assert min(gain) > 1.2 and man["preprocess"]["colour_gain"] == list(gain)
    gained = dataclasses.replace(spec, colour_gain=gain)
    with open_source(str(scene)) as src:
        u8 = np.stack(read_scene(src, spec)["u8"])                            # (n, 64, 64, 4) as captured
    n = len(u8)
    lit = in_model_light(u8, gained)                                          # the scene frames in the model's light
    assert np.abs(lit.astype(int) - u8).max() > 20                            # the gain changes them
    X = normalize_uint8(u8, gained)                                           # (n, 4, 64, 64) as the scene is scored
    memory = PixelMemory(np.concatenate([F, lit]), PreprocessSpec(), AUGMENT)   # rows as the model's plain light
    off = Scorer.load(out, threads=1, config=CFG.replace(score_pixel_power=0.0))
    edges = [round(k * n / 4) for k in range(5)]
    held = [off.score_input(X[i], seed=0).score * max(memory.distance(X[i], exclude=range(6 + a, 6 + b)),
                                                      CFG.pixel_floor)
            for a, b in zip(edges[:-1], edges[1:]) for i in range(a, b)]
    assert man["threshold"]["value"] == pytest.approx(np.quantile(held, 0.8, method="higher"), rel=1e-9)
    stored = np.load(tmp_path / "cal" / "pixel_memory.npy")
    np.testing.assert_array_equal(stored, np.concatenate([F, lit]))
    assert man["pixel_memory"]["info"]["scene"]["colour_gain"] == list(gain)
    cal = Scorer.load(tmp_path / "cal", threads=1)
    d = cal.score_input(X[0], seed=0).pixel_distance
    assert 0 < d < 1e-5                                                       # its own stored copy, up to rounding


def test_a_pixel_memory_over_its_byte_cap_is_refused_before_calibrate_scores(pixel_export, tmp_path, monkeypatch):
    """Review 18 #9: MAX_PIXEL_FRAMES alone let a memory take > 4 GB x (1 + A) at load. The rows' bytes are
    capped too (MAX_PIXEL_BYTES, the bytes of the rows as the row store keeps them and the search tables; the
    shipped cylinder, 300 frames x 25 rows at 64 x 64, is 200.0 MB as uint8 images, 568.5 MB as float32 rows):
    PixelMemory, the manifest's check (Scorer.load) and edge-ad calibrate refuse a memory over it naming
    the counts; calibrate does so before it scores the scene (it used to score everything and fail only at
    its final load_manifest). The cap is lowered here to 10 frames of 4 rows at 64 x 64."""
    from conftest import copy_frames
    from edge_ad.runtime import calibrate as cal
    from edge_ad.runtime import pixel_memory as pm
    from edge_ad.runtime.manifest import ManifestError
    from edge_ad.runtime.scorer import Scorer
    from edge_ad.runtime.sources import open_source
    out, _, F, _ = pixel_export
    assert pm.pixel_memory_bytes(300, 64, 6, bounded=False, rows="float32") == 300 * 7 * ((4 * 64 * 64) * 4 + 8) \
        == 137_642_400
    assert pm.pixel_memory_bytes(300, 64, 6, bounded=False) == 300 * 7 * (4 * 64 * 64 + 12 + 8) == 34_448_400
    pm.check_pixel_memory_size(300, 64, 24, rows="float32")                    # the shipped cylinder fits
    assert pm.pixel_memory_bytes(300, 64, 24) == 199_950_000 and pm.pixel_memory_bytes(300, 64, 24, rows="float32") \
        == 568_500_000
    monkeypatch.setattr(pm, "MAX_PIXEL_BYTES", pm.pixel_memory_bytes(10, 64, 3))
    pm.check_pixel_memory_size(10, 64, 3)
    with pytest.raises(ValueError, match=r"11 frames x 4 rows \(the frame \+ 3 augmented copies\) at 64 x 64 takes "
                                         r"1\.2 MB of uint8 row images and search tables, more than MAX_PIXEL_BYTES = "
                                         r"1\.1 MB"):
        pm.check_pixel_memory_size(11, 64, 3)
    with pytest.raises(ValueError, match=r"10 frames x 4 rows .* takes 3\.0 MB of float32 rows and search tables, "
                                         r"more than MAX_PIXEL_BYTES = 1\.1 MB"):
        pm.check_pixel_memory_size(10, 64, 3, rows="float32")                  # the same memory, expanded
    with pytest.raises(ValueError, match="MAX_PIXEL_BYTES"):
        PixelMemory(F[:4], PreprocessSpec(), AUGMENT, rows="float32")
    with pytest.raises(ValueError, match="MAX_PIXEL_BYTES"):
        PixelMemory(np.concatenate([F, F]), PreprocessSpec(), AUGMENT)        # 12 frames
    scored = []
    monkeypatch.setattr(cal.pipeline, "score_scene", lambda *a, **k: scored.append(1) or {})   # must not be reached
    scene = copy_frames(tmp_path / "scene", "rectangle", 12, start=200)
    with open_source(str(scene)) as src, pytest.raises(
            cal.CalibrationError, match=r"pixel memory \(6 frames\) with the scene's 12 usable frames .* a pixel "
                                        r"memory of 18 frames x 4 rows .*\(--max-frames\)"):
        cal.calibrate_model(out, src, tmp_path / "cal", max_shift=0, blocks=4, min_frames=10, fpr=0.2)
    assert not scored and not (tmp_path / "cal").exists()
    monkeypatch.setattr(pm, "MAX_PIXEL_BYTES", pm.pixel_memory_bytes(5, 64, 3))   # the export's 6 frames: over
    with pytest.raises(ManifestError, match=r"pixel_memory\.shape.*6 frames x 4 rows.*MAX_PIXEL_BYTES"):
        Scorer.load(out, threads=1)


@pytest.mark.parametrize("R, bounded, store, colour_norm", [(64, True, "uint8", "gray"), (64, True, "float32", "none"),
                                                         (64, False, "uint8", "none"), (12, True, "float32", "none"),
                                                         (10, True, "uint8", "rgb")])
def test_pixel_memory_bytes_counts_the_bounded_search_tables(R, bounded, store, colour_norm):
    """Session 34's final read: the bounded search's block-feature tables (+5/32 of the rows at R = 64) were not
    counted in pixel_memory_bytes, so MAX_PIXEL_BYTES capped less than a load allocates. Now the count equals the
    bytes a PixelMemory holds: its rows, their |r - mu|^2 and, bounded, each level's tables (R = 12: the 4 x 4
    level only, R = 10: none). Failed before: the count was the float32 rows alone. Session 35: the rows as the row
    store keeps them (uint8: each row's image and, with colour_norm, its 3 float32 gains; float32: the rows)."""
    from edge_ad.runtime import pixel_memory as pm
    frames = np.random.default_rng(0).integers(0, 256, (3, R, R, 4), dtype=np.uint8)
    spec = PreprocessSpec(resolution=R, colour_norm=colour_norm, colour_reference=(0.6, 0.6, 0.6))
    mem = PixelMemory(frames, spec, ["mirror"], bounded=bounded, rows=store)
    assert mem.row_store == store
    held = mem.nbytes()["rows"] + mem._rc_sq.nbytes + sum(t["rows"].nbytes + t["sq"].nbytes for t in mem._bound or [])
    assert pm.pixel_memory_bytes(3, R, 1, bounded, store, colour_norm != "none") == held
    if R == 64 and bounded:
        row = 4 * 64 * 64 * 4 if store == "float32" else 4 * 64 * 64 + 12
        assert held == 6 * (row + 8) + 6 * (2048 + 8) + 6 * (8192 + 8)                  # rows + 1/32 + 1/8
        assert pm.pixel_memory_bytes(300, 64, 24, rows=store) == (568_500_000 if store == "float32" else 199_950_000)


def test_held_out_scores_combine_both_factors_one_pixel_factor_per_frame():
    """runtime.calibrate.held_out_scores with the latent memory AND the pixel memory (and a shift-min of 2
    copies): each copy's base x its held-out latent factor x the FRAME's pixel factor (one per frame, as the
    Scorer: pixel_shift_radius), then the minimum; held_out_pixel_distances leaves out the frame's block of
    scene frames, not the original frames, and searches the frame's own shifts up to its radius. (Before
    pixel_shift_radius each copy had its own pixel distance: this test pinned that.)"""
    from edge_ad.runtime.calibrate import held_out_pixel_distances, held_out_scores
    cfg = SearchConfig(lr_theta=0, n_seed=1, k=0, z_init="encoder", score_latent_power=1.0, latent_metric="l2",
                       score_pixel_power=0.5)
    rng = np.random.default_rng(4)
    lat = rng.standard_normal((3, 1, 4)).astype(np.float32)                   # 3 scene frames, A = 1
    shifted = rng.standard_normal((3, 2, 4)).astype(np.float32)               # E of their 2 copies each
    original = rng.standard_normal((2, 4)).astype(np.float32)
    base = np.array([[1.0, 2.0], [3.0, 1.5], [0.5, 4.0]])
    pix = np.array([0.04, 0.09, 0.16])
    got = held_out_scores(base, lat, original, cfg, blocks=3, shifted_latents=shifted, pixel_distances=pix)
    for i in range(3):
        rows = np.concatenate([original, np.delete(lat[:, 0], i, axis=0)])    # leave-one-out rows
        want = min(base[i, s] * ((rows - shifted[i, s]) ** 2).mean(1).min() * pix[i] ** 0.5 for s in range(2))
        assert got[i] == pytest.approx(want, rel=1e-6)
    only_pixels = held_out_scores(base, None, None, cfg.replace(score_latent_power=0.0), pixel_distances=pix)
    np.testing.assert_allclose(only_pixels, base.min(1) * pix ** 0.5, rtol=1e-12)
    with pytest.raises(ValueError, match="one distance per frame"):
        held_out_scores(base, None, None, cfg, pixel_distances=pix[:, None].repeat(2, 1))
    # a pixel-memory configuration without pixel distances: refused, not scored without the factor (session 19:
    # threshold_rate.py's leave-one-out passed none and got scores ~10x the model's, silently)
    with pytest.raises(ValueError, match="held-out pixel distance"):
        held_out_scores(base, lat, original, cfg, blocks=3, shifted_latents=shifted)
    # the pixel side: 2 original frames then 4 scene frames in 2 blocks
    spec = PreprocessSpec(resolution=16)
    F = _frames(6, seed=2)
    memory = PixelMemory(F, spec, ["mirror"])
    from edge_ad.runtime.preprocess import normalize_uint8
    X = normalize_uint8(F, spec)
    from edge_ad.runtime.preprocess import shift_frame, shift_offsets
    d = held_out_pixel_distances(memory, lambda i: X[2 + i], 4, 2, blocks=2)             # (4,)
    d1 = held_out_pixel_distances(memory, lambda i: X[2 + i], 4, 2, blocks=2, radius=1)  # its own 1-px search
    for i, (a, b) in enumerate([(0, 2), (0, 2), (2, 4), (2, 4)]):
        assert d[i] == memory.distance(X[2 + i], exclude=range(2 + a, 2 + b)) > 0
        assert d1[i] == min(memory.distance(shift_frame(X[2 + i], dy, dx), exclude=range(2 + a, 2 + b))
                            for dy, dx in shift_offsets(1)) > 0


def test_make_release_stores_the_memory_and_its_threshold_leaves_each_train_frame_out(tmp_path, kinect_root,
                                                                                      tiny_generator):
    """models/kinect-rgbd/make_release.py --pixel-memory-augment on a 4-train / 3-val copy of kinect-rgbd:
    scoring["pixel_memory"] holds the train frames (unaligned_uint8), its info the texts; the threshold read
    from val + train leave-one-out equals the quantile of independently computed scores: each train frame
    against the latent bank AND a pixel memory built from the OTHER train frames."""
    from conftest import copy_kinect_layout, load_kinect_script
    from edge_ad.models.checkpoint import read_checkpoint, save_checkpoint
    from edge_ad.models.data import load_kinect, to_tensor
    from edge_ad.models.encoder import Encoder, EncoderConfig, encoder_to_dict
    from edge_ad.models.evaluate import calibrate_threshold
    from edge_ad.models.search import score_batch
    from edge_ad.runtime.latent_bank import unaligned_uint8
    from edge_ad.runtime.sources.folder import read_pair
    data = copy_kinect_layout(kinect_root, tmp_path / "data", {"train": (4, "train"), "val": (3, "val")})
    save_checkpoint(tmp_path / "g.pt", tiny_generator, preprocess=PreprocessSpec())
    torch.manual_seed(1)
    E = Encoder(EncoderConfig(z_dim=100, width=4, channels=4)).eval()
    torch.save({"encoder": encoder_to_dict(E), "info": {}}, tmp_path / "enc.pt")
    cfg = SearchConfig(name="pix", n_seed=1, k=0, lr_theta=0.0, z_init="encoder", score_latent_power=1.0,
                       latent_metric="l2", score_pixel_power=0.5, pixel_shift_radius=1)
    load_kinect_script("make_release").main([
        "--generator", str(tmp_path / "g.pt"), "--class", "rectangle", "--search", json.dumps(cfg.to_dict()),
        "--encoder", str(tmp_path / "enc.pt"), "--data", str(data), "--ci-per-class", "2", "--bank-augment", "mirror",
        "--pixel-memory-augment", "mirror;blur:0.7", "--threshold-normals", "val+train-loo", "--threshold-fpr", "0.25",
        "--out", str(tmp_path / "out.pt")])
    sc = read_checkpoint(tmp_path / "out.pt")["scoring"]
    ids = json.loads((data / "splits.json").read_text())["rectangle"]["train"]
    F = np.stack([unaligned_uint8(*read_pair(data / "rectangle", str(i)), PreprocessSpec()) for i in ids])
    np.testing.assert_array_equal(sc["pixel_memory"].numpy(), F)
    assert sc["pixel_memory_info"]["augment"] == ["mirror", "blur:0.7"] and sc["pixel_memory_info"]["n_frames"] == 4
    bank = sc["latent_bank"].numpy()                                             # (4 * 2, z_dim): frame, mirror
    X = to_tensor(load_kinect(data, "rectangle", "train", PreprocessSpec())[1], PreprocessSpec()).numpy()
    V = to_tensor(load_kinect(data, "rectangle", "val", PreprocessSpec())[1], PreprocessSpec()).numpy()
    full = PixelMemory(F, PreprocessSpec(), ["mirror", "blur:0.7"])
    val = score_batch(tiny_generator, V, cfg, encoder=E, latent_bank=bank, bank_rows_per_frame=["mirror"],
                      pixel_memory=full)
    loo = [score_batch(tiny_generator, X[i:i + 1], cfg, encoder=E, latent_bank=np.delete(bank, [2 * i, 2 * i + 1], 0),
                       bank_rows_per_frame=["mirror"],
                       pixel_memory=PixelMemory(np.delete(F, i, 0), PreprocessSpec(), ["mirror", "blur:0.7"]))[0]
           for i in range(4)]
    thr = sc["threshold"]
    assert thr["n_normal"] == 7 and "pixel memory without its own rows" in thr["normal"]
    assert thr["value"] == pytest.approx(calibrate_threshold(np.concatenate([val, loo]), 0.25), rel=1e-6)
    assert thr["samples"]["train_leave_one_out"]["percentiles"]["50"] == pytest.approx(np.percentile(loo, 50), rel=1e-6)


def test_held_out_bank_scores_check_every_frame_of_the_pixel_memory(tiny_generator):
    """Review 18 #6: models.search.held_out_bank_scores needs the pixel memory to hold the scored frames in
    their order (frame i is scored without its own rows). A memory whose frame 1 differs, or whose frames
    1 and 2 are swapped, is refused naming frame 1 (the check used to look at frame 0 only, so frame 1
    was scored against a memory holding itself: d_pix at the floor); the right memory scores."""
    from edge_ad.models.encoder import Encoder, EncoderConfig, encoder_latents
    from edge_ad.models.search import held_out_bank_scores, score_batch
    from edge_ad.runtime.preprocess import normalize_uint8
    spec = PreprocessSpec()
    cfg = SearchConfig(name="pix", n_seed=1, k=0, lr_theta=0.0, z_init="encoder", score_latent_power=1.0,
                       latent_metric="l2", score_pixel_power=0.5)
    torch.manual_seed(1)
    E = Encoder(EncoderConfig(z_dim=100, width=4, channels=4)).eval()
    F = _frames(4, R=64, seed=5)                                               # (4, 64, 64, 4) uint8
    X = normalize_uint8(F, spec)                                               # (4, 4, 64, 64) the scored frames
    bank = encoder_latents(E, X)                                               # (4, z_dim), A = 1
    got = held_out_bank_scores(tiny_generator, X, cfg, E, bank, 1, pixel_memory=PixelMemory(F, spec))
    want = [score_batch(tiny_generator, X[i:i + 1], cfg, encoder=E, latent_bank=np.delete(bank, i, 0),
                        pixel_memory=PixelMemory(np.delete(F, i, 0), spec))[0] for i in range(4)]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    other = F.copy()
    other[1] = _frames(1, R=64, seed=6)[0]
    for memory in (other, F[[0, 2, 1, 3]]):
        with pytest.raises(ValueError, match=r"not these frames in order: \d of 4 differ \(first: frame 1,"):
            held_out_bank_scores(tiny_generator, X, cfg, E, bank, 1, pixel_memory=PixelMemory(memory, spec))
    with pytest.raises(ValueError, match="holds 3 frames, not the 4"):
        held_out_bank_scores(tiny_generator, X, cfg, E, bank, 1, pixel_memory=PixelMemory(F[:3], spec))


def test_timings_book_the_pixel_distance_as_pixel_s_not_encoder_s(pixel_export, tiny_generator, tmp_path, monkeypatch,
                                                                   val_frame, export_tiny):
    """Review 18 #8: the pixel distance's time is timings["pixel_s"] (part of search_s), not encoder_s nor
    preprocess_s, in every path: Scorer.score (R = 0), the shift-min (R = 1: measured once per frame),
    score_batch through the batch graphs, and edge-ad run's latency_ms ("pixel", inside "search"). A model
    with an encoder, and the pixel memory's distance slowed by 0.3 s per call: pixel_s grows by that, the
    other keys do not. A model without a pixel memory has no pixel_s (nor latency_ms "pixel")."""
    import time

    from edge_ad.export.exporter import export_model
    from edge_ad.models.checkpoint import save_checkpoint
    from edge_ad.models.encoder import Encoder, EncoderConfig, encoder_to_dict
    from edge_ad.runtime.capture import run_capture
    from edge_ad.runtime.scorer import Scorer
    from edge_ad.runtime.sources.base import Frame
    F = pixel_export[2]
    cfg = CFG.replace(z_init="encoder")
    torch.manual_seed(2)
    E = Encoder(EncoderConfig(z_dim=100, width=4, channels=4)).eval()
    ck = tmp_path / "g.pt"
    save_checkpoint(ck, tiny_generator, preprocess=PreprocessSpec(),
                    scoring={"name": cfg.name, "search": cfg.to_dict(), "encoder": encoder_to_dict(E),
                             "pixel_memory": torch.from_numpy(F),
                             "pixel_memory_info": {"frames": "6 rectangle train frames", "augment": AUGMENT}})
    model = tmp_path / "model"
    export_model(ck, model, parity=False, **QUIET)
    f = val_frame("rectangle")
    plain = Scorer.load(model, threads=1)
    r = plain.score(f["rgb"], f["depth"], seed=0)
    assert r.timings["pixel_s"] > 0 and r.timings["search_s"] >= r.timings["pixel_s"] + r.timings["encoder_s"]
    SLOW = 1.0                      # upper bounds below: the real work must stay under SLOW on a loaded CI machine
    real = PixelMemory.frame_distances                                         # frame_distance calls it too

    def slow(self, *a, **k):
        time.sleep(SLOW)
        return real(self, *a, **k)
    monkeypatch.setattr(PixelMemory, "frame_distances", slow)
    for radius in (0, 1):
        s = Scorer.load(model, threads=1, config=cfg.replace(score_shift_radius=radius))
        t = s.score(f["rgb"], f["depth"], seed=0).timings
        assert SLOW <= t["pixel_s"] < 2 * SLOW, (radius, t)                  # once per frame, also with 9 copies
        assert t["encoder_s"] < SLOW and t["preprocess_s"] < SLOW, (radius, t)
        assert t["search_s"] >= t["pixel_s"] + t["encoder_s"] and t["total_s"] >= t["search_s"] + t["preprocess_s"]
        both = s.score_batch([(f["rgb"], f["depth"])] * 2, seeds=[0, 0])      # the batch graphs: one call, 2 frames
        for b in both:
            assert "batch_size" in b.timings and SLOW / 2 <= b.timings["pixel_s"] < SLOW, (radius, b.timings)
            assert b.timings["preprocess_s"] < SLOW / 2 and b.timings["search_s"] >= b.timings["pixel_s"]
    lines = []
    run_capture([Frame("a", f["rgb"], f["depth"])], plain, on_result=lambda rec, fr, res: lines.append(rec),
                handle_signals=False)
    lat = lines[0]["latency_ms"]
    assert lat["pixel"] >= 1000 * SLOW and lat["search"] >= lat["pixel"]
    tiny = Scorer.load(export_tiny(0, 1), threads=1)
    assert "pixel_s" not in tiny.score(f["rgb"], f["depth"], seed=0).timings


def test_results_line_carries_the_pixel_distance():
    """edge-ad run's JSON line (capture.frame_record) names the pixel distance when the result has one and
    leaves the key out otherwise (results of models without the memory are as before)."""
    from types import SimpleNamespace

    from edge_ad.runtime.capture import frame_record
    base = {"frame": "f", "index": 0, "timestamp": 0.0}
    rec = frame_record(base, SimpleNamespace(pixel_distance=np.float64(0.25)), 1.0, 0.5, {})
    assert rec["pixel_distance"] == 0.25 and type(rec["pixel_distance"]) is float
    assert "pixel_distance" not in frame_record(base, SimpleNamespace(pixel_distance=None), 1.0, 0.5, {})


def test_bench_torch_variants_score_a_pixel_memory_export(pixel_export, val_frame):
    """Review 18 #2: edge-ad bench's PyTorch baseline variants load the export's pixel memory (they raised
    'no pixel distance was given') and score as the runtime does."""
    from edge_ad.benchmarks.search_bench import _make_runner, torch_scoring
    from edge_ad.models.checkpoint import load_generator
    from edge_ad.runtime import Scorer
    from edge_ad.runtime.preprocess import preprocess
    model_dir, man, _, _ = pixel_export
    ck = model_dir.parent / "g.pt"
    sc = Scorer.load(model_dir, threads=1)
    parts = torch_scoring(ck, model_dir, man, sc.config)
    assert parts["pixel_memory"] is not None
    f = val_frame("sphere")
    x = preprocess(f["rgb"], f["depth"], sc.preprocess)
    run = _make_runner("eager", load_generator(ck), model_dir, sc.config, 1, parts)
    assert run(x, None, 0) == pytest.approx(sc.score_input(x, seed=0).score, rel=1e-4)


def test_bench_times_the_bounded_pixel_search_against_the_full_one(pixel_export_rp1, tiny_generator, tmp_path):
    """edge-ad bench's onnx-auto-full-pixels: the same export with the pixel memory's full search, interleaved with
    onnx-auto (the bounded search): both score every frame alike bit for bit, the ratio and the memories' MB are in
    the results and the table; an export without a pixel memory skips it, saying why."""
    from click.testing import CliRunner

    from edge_ad.cli import main
    model_dir = pixel_export_rp1[0]
    out = tmp_path / "bench.json"
    r = CliRunner().invoke(main, ["bench", str(model_dir.parent / "g.pt"), "--model", str(model_dir), "--frames", "3",
                                  "--repeats", "1", "--threads", "1", "--variant", "onnx-auto",
                                  "--variant", "onnx-auto-full-pixels", "--no-rss", "--out", str(out)])
    assert r.exit_code == 0, r.output
    v = json.loads(out.read_text())["variants"]
    assert v["onnx-auto"]["scores"] == v["onnx-auto-full-pixels"]["scores"]
    assert v["onnx-auto"]["max_rel_score_diff_vs_onnx-auto-full-pixels"] == 0.0
    assert v["onnx-auto"]["speedup_vs_onnx-auto-full-pixels"] > 0
    mb = {k: v[k]["pixel_memory_mb"] for k in ("onnx-auto", "onnx-auto-full-pixels")}
    assert mb["onnx-auto"]["rows"] == mb["onnx-auto-full-pixels"]["rows"] > 0
    assert mb["onnx-auto"]["bound"] > 0 and mb["onnx-auto-full-pixels"]["bound"] == 0
    assert "onnx-auto (the pixel memory's bounded search) vs onnx-auto-full-pixels" in r.output
    from edge_ad.models.checkpoint import save_checkpoint
    ck = tmp_path / "plain.pt"                                    # no pixel memory: nothing to compare
    save_checkpoint(ck, tiny_generator, preprocess=PreprocessSpec())
    r = CliRunner().invoke(main, ["bench", str(ck), "--frames", "1", "--repeats", "1", "--threads", "1",
                                  "--variant", "onnx-auto-full-pixels", "--no-rss"])
    assert r.exit_code == 1 and "skipping onnx-auto-full-pixels: no pixel memory in this configuration" in r.output


def test_camera_shift_search_takes_each_frames_pixel_table_and_equals_the_full_search(pixel_export_rp1, val_frame):
    """edge-ad calibrate's camera-shift search on a pixel-memory model (R_p = 1) scores every moved frame where it
    is (Scorer.score_as_is): its pixel distance is measured once per frame at every candidate offset
    (Scorer.shifted_pixel_distances) and taken AS IT IS, without the R_p search the model's own score makes (that
    search would let a frame a pixel off fit as well): on real frames whose outer radius px are background (here 2)
    every candidate's pixel distance equals the moved frame's own distance with no search, not its searched
    one, and the mean log scores equal scoring every moved frame in full with score_as_is."""
    from edge_ad.runtime import Scorer
    from edge_ad.runtime.calibrate import scene_camera_shift
    from edge_ad.runtime.latent_bank import unaligned_uint8
    from edge_ad.runtime.preprocess import aligned_uint8, move_uint8, normalize_uint8, shift_offsets
    out = pixel_export_rp1[0]
    s = Scorer.load(out, threads=1, providers=["CPUExecutionProvider"])
    spec = s.preprocess_spec
    border = np.ones((64, 64), bool)
    border[2:-2, 2:-2] = False
    u8 = []                  # val frames moved by (1, -1) whose outer 2 px are background (most frames of the capture
    for i in range(60):      # have a few foreground px there: then the search is this one up to those pixels)
        a = move_uint8(unaligned_uint8(val_frame("rectangle", i)["rgb"], val_frame("rectangle", i)["depth"], spec), 1, -1)
        if not a[border].any():
            u8.append(a)
        if len(u8) == 3:
            break
    assert len(u8) == 3
    given = []                          # every (moved frame, pixel distance) the search scores with
    real = Scorer.score_as_is

    def spy(self, x, *a, **k):
        given.append((np.array(x), k.get("pixel_distance")))
        return real(self, x, *a, **k)
    calls = []                          # progress: the pixel tables frame by frame, then the candidate shifts
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Scorer, "score_as_is", spy)
        best, info = scene_camera_shift(s, u8, spec, 1, progress=lambda *a: calls.append((a, len(given))))
    assert [a for a, _ in calls] == ([(i, 3, "pixel tables") for i in range(4)]
                                     + [(k, 9, "shifts") for k in range(10)])
    assert [n for (_, _, stage), n in calls if stage == "pixel tables"] == [0] * 4      # before any frame is scored
    assert [n for (_, _, stage), n in calls if stage == "shifts"] == [3 * k for k in range(10)]
    # each candidate's table value is the moved frame's own pixel distance as it is (no R_p search): all 9 shifts
    assert len(given) == 9 * len(u8)
    searched_lower = 0
    for x, d in given:
        as_is = float(s.shifted_pixel_distances(x, [(0, 0)])[0])
        assert d == pytest.approx(as_is, rel=1e-12)
        searched_lower += s.pixel_distance(x) < as_is * (1 - 1e-9)      # the model's own R_p search finds less
    assert searched_lower > 0
    full = {off: float(np.mean([np.log(s.score_as_is(normalize_uint8(aligned_uint8(move_uint8(a, *off), spec), spec),
                                                     seed=0).score) for a in u8]))
            for off in shift_offsets(1)}
    assert info["mean_log_score_unshifted"] == pytest.approx(full[(0, 0)], rel=1e-9, abs=1e-9)
    assert info["mean_log_score_best"] == pytest.approx(full[best], rel=1e-9, abs=1e-9)
    x0 = normalize_uint8(aligned_uint8(u8[0], spec), spec)
    with pytest.raises(ValueError, match="finite distance"):
        s.score_input(x0, seed=0, pixel_distance=float("nan"))
    with pytest.raises(ValueError, match="finite distance"):
        s.score_as_is(x0, seed=0, pixel_distance=-1.0)


def test_shifted_pixel_distances_measure_in_chunks_with_the_same_results(pixel_export_rp1, val_frame, monkeypatch):
    """Scorer.shifted_pixel_distances measures its shifted copies in PixelMemory.distances calls of at most
    pixel_memory._COPIES copies: the same values as one call over every copy and as each copy on its own,
    whether a chunk boundary falls inside the offsets list (chunks of 7 and 1 over 81 offsets) or not."""
    from edge_ad.runtime import Scorer
    from edge_ad.runtime import pixel_memory as pm
    from edge_ad.runtime.preprocess import preprocess, shift_frame, shift_offsets
    s = Scorer.load(pixel_export_rp1[0], threads=1, providers=["CPUExecutionProvider"])
    f = val_frame("rectangle", 3)
    x = preprocess(f["rgb"], f["depth"], s.preprocess_spec)
    offsets = shift_offsets(4)                                                  # 81 copies
    sizes = []
    real = pm.PixelMemory.distances

    def spy(self, X, *a, **k):
        sizes.append(len(X))
        return real(self, X, *a, **k)
    monkeypatch.setattr(pm.PixelMemory, "distances", spy)
    got = {}
    for copies in (1000, 81, 7, 1):
        monkeypatch.setattr(pm, "_COPIES", copies)
        sizes.clear()
        got[copies] = s.shifted_pixel_distances(x, offsets)
        assert sizes == [min(copies, 81)] * (81 // min(copies, 81)) + ([81 % copies] if 81 % copies and copies < 81 else [])
    one_shot = real(s._pixels, np.stack([shift_frame(x, dy, dx) for dy, dx in offsets]))
    each = np.array([real(s._pixels, shift_frame(x, dy, dx)[None])[0] for dy, dx in offsets])
    for copies, d in got.items():
        np.testing.assert_array_equal(d, one_shot, err_msg=f"chunks of {copies}")
    np.testing.assert_array_equal(one_shot, each)
    assert len(set(one_shot.tolist())) > 10                       # the copies differ: a misplaced chunk would show


def test_score_input_with_a_given_pixel_distance(pixel_export, export_tiny, val_frame):
    """Scorer.score_input(x, pixel_distance=d) scores with d as the frame's pixel distance (the factor
    d ** q, nothing else changes); a model without the pixel factor refuses one."""
    from edge_ad.runtime import Scorer
    from edge_ad.runtime.preprocess import preprocess
    s = Scorer.load(pixel_export[0], threads=1, providers=["CPUExecutionProvider"])
    f = val_frame("rectangle")
    x = preprocess(f["rgb"], f["depth"], s.preprocess_spec)
    for radius in (0, 1):                       # without and with the shift-min (every copy gets the given one)
        sr = s if radius == 0 else Scorer.load(pixel_export[0], threads=1, providers=["CPUExecutionProvider"],
                                               config=s.config.replace(score_shift_radius=1))
        r = sr.score_input(x, seed=0)
        r2 = sr.score_input(x, seed=0, pixel_distance=4 * r.pixel_distance)
        assert r2.pixel_distance == 4 * r.pixel_distance and r2.shift == r.shift
        assert r2.score == pytest.approx(r.score * 4 ** CFG.score_pixel_power, rel=1e-9)
        assert "pixel_s" in r.timings and "pixel_s" not in r2.timings      # given, not measured
    plain = Scorer.load(export_tiny(0, 1), threads=1, providers=["CPUExecutionProvider"])
    with pytest.raises(ValueError, match="no pixel factor"):
        plain.score_input(preprocess(f["rgb"], f["depth"], plain.preprocess_spec), seed=0, pixel_distance=0.1)


def _gain_brute(rows: np.ndarray, x: np.ndarray, lo: float, hi: float) -> float:
    """The gain-fitted distance by an independent loop: per row the least-squares gain of the input's [0, 1]
    RGB onto the row's, clipped to [lo, hi], then the mean squared difference in [-1, 1] units."""
    best = np.inf
    x = x.reshape(-1).astype(np.float64)
    P = 3 * len(x) // 4
    for r in rows:
        vx, vr = (x[:P] + 1) / 2, (r[:P] + 1) / 2
        g = min(max(float(vx @ vr) / float(vx @ vx), lo), hi)
        rgb = 2 * g * vx - 1                                  # the relit input's RGB, back in [-1, 1]
        best = min(best, (((rgb - r[:P]) ** 2).sum() + ((x[P:] - r[P:]) ** 2).sum()) / len(x))
    return best


def test_gain_fitted_distance_undoes_a_light_change_inside_its_limits_only():
    """pixel_gain_limits (lo, hi): PixelMemory.distances equals an independent loop (per row the least-squares
    gain of the input's RGB, clipped), excluded frames left out; limits (1, 1) give the plain distance; an
    input that is a memory row with its foreground RGB darkened by 1 / 1.2 (depth untouched) is at distance
    ~0 with limits (0.8, 1.25), at the plain distance's ~1/4 but > 0 with (0.9, 1.1) (g clipped at 1.1), far
    without the fit; bad limits refused."""
    from edge_ad.runtime.pixel_memory import gain_distance
    spec = PreprocessSpec(resolution=16)
    F = _frames(7)
    F[..., :3] = np.minimum(F[..., :3], 200)                  # room to relight without clipping at 255
    m = PixelMemory(F, spec, AUGMENT)
    rows = m.rows().astype(np.float64)
    rng = np.random.default_rng(2)
    X = np.concatenate([rows[[0, 9]].reshape(2, 4, 16, 16), rng.uniform(-1, 1, (3, 4, 16, 16))]).astype(np.float32)
    np.testing.assert_allclose(m.distances(X, gain=(1, 1)), m.distances(X), rtol=1e-12, atol=1e-15)
    for lo, hi in ((0.8, 1.25), (0.5, 2.0)):
        np.testing.assert_allclose(m.distances(X, gain=(lo, hi)), [_gain_brute(rows, x, lo, hi) for x in X],
                                   rtol=1e-12, atol=1e-15)
        keep = [k for k in range(len(rows)) if k // 4 not in (0, 2)]
        np.testing.assert_allclose(m.distances(X, exclude=[0, 2], gain=(lo, hi)),
                                   [_gain_brute(rows[keep], x, lo, hi) for x in X], rtol=1e-12, atol=1e-15)
    # a memory row (frame 3's own) relit: foreground RGB x 1 / 1.2 in [0, 1] colours, background and depth kept
    r = rows[12].reshape(4, 16, 16)
    x = r.copy()
    x[:3] = (r[:3] + 1) / 2 / 1.2 * 2 - 1
    x = x.astype(np.float32)
    plain, inside, outside = m.distance(x), m.distance(x, gain=(0.8, 1.25)), m.distance(x, gain=(0.9, 1.1))
    assert inside < 1e-12 < plain and plain > 1e-3
    assert 1e-12 < outside < plain / 3
    assert outside == pytest.approx(gain_distance(x, r, 0.9, 1.1), rel=1e-9)     # the row itself, g = 1.1
    assert gain_distance(x, r, 1, 1) == pytest.approx(((x.astype(np.float64) - r) ** 2).mean(), rel=1e-12)
    for bad in ((1.1, 1.2), (0.8, 0.9), (0.0, 1.0), (0.8, float("inf")), (0.8,), "x"):
        with pytest.raises(ValueError, match="gain limits"):
            m.distances(X, gain=bad)


def test_gain_tables_are_built_by_the_first_gain_fitted_distance_once_across_threads(monkeypatch):
    """The gain fit's per-row tables cost load time (rectangle's 2100 rows) that the default (pixel_gain_limits
    None) never uses: not built by the memory's construction nor by plain distances; the first gain-fitted
    distance builds them, once, also when 8 threads ask at the same moment (a Scorer is shared by threads),
    and every thread gets the single-threaded distances; a pickled memory builds its own."""
    import pickle
    import threading
    import time
    spec = PreprocessSpec(resolution=16)
    m = PixelMemory(_frames(7), spec, AUGMENT)
    rng = np.random.default_rng(4)
    X = rng.uniform(-1, 1, (3, 4, 16, 16)).astype(np.float32)
    plain = m.distances(X)
    assert m._gain is None
    want = PixelMemory(_frames(7), spec, AUGMENT).distances(X, gain=(0.8, 1.25))
    builds = []
    build = m._build_gain_tables

    def slow_build():
        builds.append(1)
        time.sleep(0.05)                            # every thread reaches the tables while the first builds them
        return build()
    monkeypatch.setattr(m, "_build_gain_tables", slow_build)
    start, got = threading.Barrier(8), [None] * 8

    def work(i):
        start.wait()
        got[i] = m.distances(X, gain=(0.8, 1.25))
    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1 and m._gain is not None
    for g in got:
        np.testing.assert_array_equal(g, want)
    np.testing.assert_array_equal(m.distances(X), plain)
    copy = pickle.loads(pickle.dumps(PixelMemory(_frames(7), spec, AUGMENT)))
    np.testing.assert_array_equal(copy.distances(X, gain=(0.8, 1.25)), want)


def test_gain_distances_pick_the_nearer_of_two_rows_one_depth_level_apart():
    """Review 24 #8, the gain path's candidate margin (as the plain path's test above): two memory frames
    differ by one DEPTH level in one pixel (same RGB, so the fitted gain is the same for both and cannot
    separate them) and every input lies nearly midway between them in that pixel (1e-4 of the level off,
    either side; noise elsewhere). With limits (0.8, 1.25) the gain-fitted distance must equal an independent
    float64 loop's nearest (``_gain_brute``) for every input and seed: with a zero margin the float32 GEMMs
    alone pick the row, the wrong one for about half the inputs (130 of 256 here)."""
    from edge_ad.runtime.preprocess import normalize_uint8
    spec = PreprocessSpec(resolution=16)
    lo, hi = 0.8, 1.25
    for seed in range(4):
        rng = np.random.default_rng(seed)
        F = rng.integers(1, 200, (4, 16, 16, 4), dtype=np.uint8)     # depth > 0: every pixel foreground
        F[1] = F[0]
        F[1, 5, 7, 3] += 1                                            # frame 1: frame 0, one depth level further
        m = PixelMemory(F, spec)
        rows = normalize_uint8(F, spec).reshape(4, -1).astype(np.float64)     # (4, D), A = 1
        j = np.flatnonzero(rows[0] != rows[1])
        assert len(j) == 1 and j[0] >= 3 * 16 * 16                            # the one difference is in depth
        j = j[0]
        level = rows[1, j] - rows[0, j]
        X = rows[0] + 0.3 * rng.standard_normal((64, rows.shape[1]))          # the same offset from both rows
        X[:, :768] = np.clip(X[:, :768], -1, 1)                               # colours in range
        X[:, j] = rows[0, j] + level * (0.5 + 1e-4 * rng.choice([-1.0, 1.0], 64))   # nearly midway, either side
        X = X.astype(np.float32)
        brute = np.array([[_gain_brute(rows[k:k + 1], x, lo, hi) for k in range(4)] for x in X])   # (64, 4)
        assert set(brute.argmin(1)) == {0, 1}                                 # each row is the nearer for some
        gap = np.abs(brute[:, 0] - brute[:, 1])
        assert (gap > 1e-10 * brute.min(1)).all() and (gap < 1e-9).all()      # a near-tie, 100x the tolerance below
        np.testing.assert_allclose(m.distances(X.reshape(64, 4, 16, 16), gain=(lo, hi)), brute.min(1),
                                   rtol=1e-12, atol=0)


def test_pixel_gain_limits_recorded_only_when_set_and_validated():
    """pixel_gain_limits: () by default and then absent from the record (older records, hashes and exports as
    before); set, it round-trips through JSON as a list and a threshold calibrated without it does not serve
    it (q = 0: not compared); bad values refused naming the field."""
    from edge_ad.runtime.config import search_differences
    assert CFG.pixel_gain_limits == () and "pixel_gain_limits" not in CFG.to_dict()
    on = CFG.replace(pixel_gain_limits=[0.8, 1.25])
    assert on.pixel_gain_limits == (0.8, 1.25) and on.to_dict()["pixel_gain_limits"] == [0.8, 1.25]
    assert SearchConfig.from_dict(json.loads(json.dumps(on.to_dict()))) == on
    assert search_differences(CFG.to_dict(), on) == ["pixel_gain_limits"] and search_differences(on.to_dict(), on) == []
    off = CFG.replace(score_pixel_power=0.0)
    assert search_differences(off.to_dict(), off.replace(pixel_gain_limits=(0.9, 1.1))) == []
    for bad in ((1.1, 1.2), (0, 1), (0.8,), (True, 1.2), "x", 1.0):
        with pytest.raises(ValueError, match="gain"):
            SearchConfig(pixel_gain_limits=bad)


def test_gain_fitted_scores_runtime_and_reference_alike(pixel_export, tiny_generator):
    """A configuration with pixel_gain_limits scores every path with the gain-fitted distance: Scorer.score
    (shift-min + the pixel shift search), score_batch and the PyTorch reference (models.search, which imports
    the runtime's definition) agree; each score is the plain-distance scorer's x (d_gain / d_plain) ** q; a
    normal frame brightened 15 % has a smaller gain-fitted distance than plain one."""
    from edge_ad.models.search import score_batch, search_min_shift
    from edge_ad.runtime.config import frame_seed
    from edge_ad.runtime.nuisance import parse_nuisance
    from edge_ad.runtime.preprocess import preprocess
    from edge_ad.runtime.scorer import Scorer
    out, _, F, frames = pixel_export
    base = CFG.replace(score_shift_radius=1, pixel_shift_radius=1)
    cfg = base.replace(pixel_gain_limits=(0.8, 1.25))
    s = Scorer.load(out, threads=1, providers=["CPUExecutionProvider"], config=cfg)
    plain = Scorer.load(out, threads=1, providers=["CPUExecutionProvider"], config=base)
    memory = PixelMemory(F, PreprocessSpec(), AUGMENT)
    bright = dict(frames[0])
    bright["rgb"], bright["depth"] = parse_nuisance("brightness:1.15")(frames[0]["rgb"], frames[0]["depth"], None)
    frames = frames + [bright]
    X = np.stack([preprocess(f["rgb"], f["depth"]) for f in frames])
    got = [s.score(f["rgb"], f["depth"], seed=frame_seed(0, i)) for i, f in enumerate(frames)]
    for i, x in enumerate(X):
        d, d0 = memory.frame_distance(x, 1, gain=(0.8, 1.25)), memory.frame_distance(x, 1)
        assert got[i].pixel_distance == d <= d0
        assert got[i].score == pytest.approx(plain.score(frames[i]["rgb"], frames[i]["depth"],
                                                         seed=frame_seed(0, i)).score * d / d0, rel=1e-9)
        ref = search_min_shift(tiny_generator, x, cfg, seed=frame_seed(0, i), dtype=torch.float64, pixel_memory=memory)
        assert ref.pixel_distance == d and got[i].score == pytest.approx(ref.score, rel=1e-4)
    assert got[2].pixel_distance < 0.9 * memory.frame_distance(X[2], 1)            # the relit normal
    np.testing.assert_allclose(score_batch(tiny_generator, X, cfg, seed=0, pixel_memory=memory),
                               [r.score for r in got], rtol=1e-4)
    batch = s.score_batch([(f["rgb"], f["depth"]) for f in frames], seeds=[frame_seed(0, i) for i in range(3)])
    assert [r.pixel_distance for r in batch] == [r.pixel_distance for r in got]
