"""The silhouette lever (audit 31 #9; measured offline in session 32, models/kinect-rgbd/silhouette_levers.py):
a frame also scored as its silhouette one pixel narrower and one pixel wider, the score the least of the three.

Opt-in: SearchConfig.silhouette_versions_weight w_e (0 = off, every model before the field). On, a raw frame
(rgb, depth) is scored as three VERSIONS, each made on the RAW frame (before depth_fill / depth_close / align):

  id    the frame as it is
  ero   its silhouette one MODEL pixel narrower: runtime.nuisance.DepthEdgeErode(k)
  dil   its silhouette one model pixel wider: runtime.nuisance.DepthEdgeSpurs(1.0) (every empty pixel touching a
        reading) k times
(k = ``model_pixel``: camera pixels per model pixel, 1 for kinect-rgbd's 64 x 64 frames, 8 for a 512 x 512 frame)

each scored in full (its own shift-min copies, E(x), fg, pixel distance), and
score = min(S_id, w_e * S_ero, S_dil) (``silhouette_min``; the first of id, ero, dil on a tie). A camera whose
edge threshold sits a pixel inside or outside the training camera's gives a frame whose dil or ero version is
the training camera's frame again (kinect frames carry 1-px-wide readings, which erosion deletes: a 1-px eroded
frame dilated is its frame OPENED, ``opened``). So the dil version is also compared with PAIRED rows, visible to
it alone: the latent bank of the opened normal training frames and their mirrors (``silhouette_bank.npy``,
frame-major, 2 rows per frame: latent_bank.bank_inputs(*opened(frame), spec, OPENED_AUGMENT)) at factor 1,
and, for a model with a pixel memory, the opened frames (``silhouette_pixels.npy``, expanded with
OPENED_AUGMENT). The id and ero versions see the model's memories only (paired: an anomaly's versions must not
find the opened rows). Three scorings a frame.

``edge-ad calibrate`` (runtime/calibrate/, docs/calibrate.md "A model with the silhouette lever") keeps each scene
frame's versions and opened frame, made on the raw frame (``versions_uint8``), grows the paired rows with the scene
frames' (silhouette_bank.npy, and silhouette_pixels.npy where present: n_frames = the model's + the scene's) and sets
the threshold on the lever's held-out scores, the dil version held out without its block's paired rows.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .latent_bank import bank_inputs, unaligned_uint8
from .nuisance import DepthEdgeErode, DepthEdgeSpurs
from .nuisance.frame import check_frame
from .preprocess import PreprocessSpec

VERSIONS = ("id", "ero", "dil")
OPENED_AUGMENT = ("mirror",)      # the paired rows per opened training frame: the frame, then its mirror
_ERODE, _GROW = DepthEdgeErode(1), DepthEdgeSpurs(1.0)


def _grow(rgb, depth):
    """DepthEdgeSpurs(1.0): every empty pixel touching a reading takes it (fraction 1: the draws decide nothing)."""
    return _GROW(rgb, depth, np.random.default_rng(0))


def model_pixel(depth, resolution: Optional[int]) -> int:
    """Camera pixels per model pixel of a raw frame whose depth is (H, W): round(min(H, W) / resolution), at least
    1 (the model sees the centre crop of side min(H, W) resized to resolution x resolution); 1 when resolution is
    None (a frame already at the model's resolution)."""
    if resolution is None:
        return 1
    return max(1, int(round(min(np.shape(depth)[:2]) / int(resolution))))


_NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]   # DepthEdgeSpurs' order


def _crop(depth, k: int):
    """The window the k-pixel versions can change: the readings' (depth > 0) bounding box grown by k + 1 pixels,
    clipped to the frame, as (row slice, column slice); None for a frame without a reading (nothing to change).
    Outside it every pixel keeps what it has: growth reaches k pixels beyond the readings, erosion stays inside them,
    and the pixels just beyond the window hold no reading in any pass, as the ops' own zero padding says."""
    rows, cols = np.nonzero(np.asarray(depth).any(1))[0], np.nonzero(np.asarray(depth).any(0))[0]
    if not len(rows):
        return None
    H, W = np.shape(depth)
    m = int(k) + 1
    return (slice(max(rows[0] - m, 0), min(rows[-1] + m + 1, H)),
            slice(max(cols[0] - m, 0), min(cols[-1] + m + 1, W)))


def _eroded(rgb, depth, k: int) -> tuple:
    """The silhouette k pixels narrower: DepthEdgeErode(k), on the readings' window (``_crop``) only, equal to it on
    the whole frame bit for bit (the window's border holds no reading; where the window meets the frame's edge the
    op's edge rule applies as on the whole frame)."""
    op = _ERODE if k == 1 else DepthEdgeErode(k)
    win = _crop(depth, k)
    if win is None:
        return op(rgb, depth)
    r, d = op(np.asarray(rgb)[win], np.asarray(depth)[win])
    out_rgb, out_depth = np.array(rgb, copy=True), np.array(depth, copy=True)
    out_rgb[win], out_depth[win] = r, d
    return out_rgb, out_depth


def _grow_ring(rgb: np.ndarray, depth: np.ndarray) -> None:
    """One pass of ``_grow`` (DepthEdgeSpurs(1.0)) in place, on the pixels it changes only: every pixel without a
    reading with an 8-neighbour that has one takes the depth and RGB of its largest neighbouring reading (ties: the
    first in _NEIGHBOURS' order, as DepthEdgeSpurs' strict '>'), all read from the frame before the pass."""
    H, W = depth.shape
    pad_d = np.pad(depth, 1)
    has = pad_d > 0
    near = np.zeros((H, W), bool)
    for dy, dx in _NEIGHBOURS:
        near |= has[1 + dy:1 + dy + H, 1 + dx:1 + dx + W]
    ys, xs = np.nonzero(near & (depth == 0))                                   # the ring this pass fills
    if not len(ys):
        return
    nb = np.stack([pad_d[ys + 1 + dy, xs + 1 + dx] for dy, dx in _NEIGHBOURS])   # (8, n) its neighbours' depths
    best = np.argmax(nb, axis=0)                                               # the first largest: DepthEdgeSpurs'
    dy, dx = np.array(_NEIGHBOURS)[best].T
    pad_r = np.pad(rgb, ((1, 1), (1, 1), (0, 0)))
    colour = pad_r[ys + 1 + dy, xs + 1 + dx]                                   # (n, 3), from the frame before
    depth[ys, xs] = nb[best, np.arange(len(ys))]
    rgb[ys, xs] = colour


def _grown(rgb, depth, k: int) -> tuple:
    """The silhouette k pixels wider: ``_grow`` (DepthEdgeSpurs(1.0)) k times, one ring per pass, bit for bit, made
    on the readings' window (``_crop``) and, per pass, on the ring it fills (``_grow_ring``): audit 35 #2, k full-frame
    passes of the op took 0.47 s of a 640 x 480 frame (k = 8)."""
    rgb, depth = check_frame(rgb, depth, floats=True)
    out_rgb, out_depth = rgb.copy(), depth.copy()
    win = _crop(depth, k)
    if win is None:
        return out_rgb, out_depth
    r, d = out_rgb[win], out_depth[win]                                        # views: filled in place
    for _ in range(int(k)):
        _grow_ring(r, d)
    return out_rgb, out_depth


def _readings(rgb, depth, depth_range: Optional[tuple] = None) -> tuple:
    """(rgb, depth) the versions are made on: the frame's depth as the model reads it, pre-masked as kinect-rgbd's
    frames are (the lever, its paired rows and its threshold were built on those): every reading the preprocessing
    would not read (float depth NaN / infinite / <= 0; with ``depth_range`` (near_mm, far_mm), uint16 / float
    millimetres outside it, as ``preprocess.depth_to_8bit`` cuts them) set to 0, no reading. Audit 35 #1: float mm (a
    ROS 32FC1 frame) was refused; audit 35 #3: on a live frame (a floor or wall beyond far_mm WITH readings) the
    erosion and the growth found no empty pixel and did nothing. The RGB as given (the preprocessing masks it by the
    depth it reads, for the frame and its versions alike: a pre-masked frame's versions stay bit for bit what they
    were); uint8 depth (8-bit levels: the model's range already) and a frame with nothing to cut as given. ValueError
    for a frame that is not H x W x 3 uint8 + H x W uint8 / uint16 / float (runtime.nuisance.check_frame)."""
    depth = np.asarray(depth)
    if depth.ndim == 3 and depth.shape[2] == 1:      # (H, W, 1), as preprocess.depth_to_8bit takes it (audit 35 #4)
        depth = depth[:, :, 0]
    rgb, depth = check_frame(rgb, depth, floats=True)
    floating = np.issubdtype(depth.dtype, np.floating)
    keep = (np.isfinite(depth) & (depth > 0)) if floating else depth > 0
    if depth_range is not None and depth.dtype != np.uint8:
        near, far = (float(v) for v in depth_range)
        with np.errstate(invalid="ignore"):
            keep &= (depth >= near) & (depth <= far)
    if keep.all() or not (floating or depth_range is not None):
        return rgb, depth
    return rgb, np.where(keep, depth, 0).astype(depth.dtype)


def silhouette_versions(rgb, depth, resolution: Optional[int] = None, depth_range: Optional[tuple] = None) -> dict:
    """{version: (rgb (H, W, 3) uint8, depth (H, W))} of a raw frame, in VERSIONS' order: the frame, its silhouette one
    MODEL pixel narrower (ero), one model pixel wider (dil). ``resolution``: the model's; the erosion and the growth
    take ``model_pixel`` camera pixels (8 for a 512 x 512 frame at 64: audit 33 #19, where 1-camera-pixel versions of
    a camera frame left sphere's eroded normals at 40 % false alarms, 5 % at 64 x 64); None: 1 pixel. ero and dil are
    made on the frame pre-masked (``_readings``: float mm read as the preprocessing reads it; with ``depth_range``, the
    model's (near_mm, far_mm), readings outside it cut), the id version left as given. ValueError for
    a frame that is not H x W x 3 uint8 + H x W uint8 / uint16 / float (runtime.nuisance.check_frame)."""
    k = model_pixel(depth, resolution)
    r, d = _readings(rgb, depth, depth_range)
    return {"id": (rgb, depth), "ero": _eroded(r, d, k), "dil": _grown(r, d, k)}


def spec_range(spec: PreprocessSpec) -> tuple:
    """The model's depth range (near_mm, far_mm): what ``silhouette_versions`` cuts a raw frame to."""
    return float(spec.near_mm), float(spec.far_mm)


def opened(rgb, depth, resolution: Optional[int] = None, depth_range: Optional[tuple] = None) -> tuple:
    """The frame OPENED: dil(ero(frame)), its silhouette without its 1-model-pixel-wide readings (rgb, depth): the
    dil version of its ero version (``silhouette_versions``; ``resolution``, ``depth_range`` as there, None: 1 pixel,
    no range cut)."""
    k = model_pixel(depth, resolution)
    return _grown(*_eroded(*_readings(rgb, depth, depth_range), k), k)


def opened_inputs(rgb, depth, spec: PreprocessSpec) -> np.ndarray:
    """The encoder inputs of one training frame's paired rows: float32 (2, 4, R, R), its opened frame preprocessed,
    then that mirrored (latent_bank.bank_inputs with OPENED_AUGMENT): E of these, frame by frame, is
    silhouette_bank.npy (frame-major, 2 rows per training frame)."""
    return bank_inputs(*opened(rgb, depth, spec.resolution, spec_range(spec)), spec, OPENED_AUGMENT)


def opened_uint8(rgb, depth, spec: PreprocessSpec) -> np.ndarray:
    """One training frame's row of silhouette_pixels.npy: its opened frame as a pixel memory stores a frame,
    (R, R, 4) uint8 (latent_bank.unaligned_uint8), expanded at load with OPENED_AUGMENT."""
    return unaligned_uint8(*opened(rgb, depth, spec.resolution, spec_range(spec)), spec)


def versions_uint8(rgb, depth, spec: PreprocessSpec) -> dict:
    """A raw frame's lever inputs as ``edge-ad calibrate`` keeps a scene frame (runtime/calibrate/scene_frames.py):
    {"ero", "dil" (its versions, ``silhouette_versions`` at spec's resolution and depth range), "opened" (its paired
    row's frame, ``opened_uint8``)}, each (R, R, 4) uint8 before align (latent_bank.unaligned_uint8). Raises ValueError
    (a frame the versions cannot be made of) or preprocess.FrameError."""
    k = model_pixel(depth, spec.resolution)
    rgb, depth = _readings(rgb, depth, spec_range(spec))
    ero = _eroded(rgb, depth, k)
    return {"ero": unaligned_uint8(*ero, spec), "dil": unaligned_uint8(*_grown(rgb, depth, k), spec),
            "opened": unaligned_uint8(*_grown(*ero, k), spec)}


def silhouette_min(scores: dict, weight: float) -> tuple:
    """(score, version) of the lever: min(S_id, weight * S_ero, S_dil) over the versions ``scores`` holds
    ({version: score}; a version that could not be made is absent, "id" never is), the first of VERSIONS on a tie."""
    weighted = [(scores[v] * (weight if v == "ero" else 1.0), v) for v in VERSIONS if v in scores]
    best = min(range(len(weighted)), key=lambda i: weighted[i][0])
    return weighted[best]


def winning_result(results: dict, weight: float, summed: Sequence[str] = (), kept: Sequence[str] = ()):
    """One frame's lever result from its versions' results {version: ScoreResult} ("id" always present): the winner's
    result (``silhouette_min``) with ``score`` its weighted score, ``silhouette_version`` the winner,
    ``silhouette_scores`` every version's own score, and ``timings`` the ``summed`` keys (those the winner has)
    summed over the versions, the ``kept`` keys as the winner has them, and "silhouette_versions" (how many were
    scored). Scorer.score and batch_scoring.score_batch_versions add their own timing keys after."""
    scores = {v: r.score for v, r in results.items()}
    score, won = silhouette_min(scores, weight)
    r = results[won]
    r.score, r.silhouette_version, r.silhouette_scores = score, won, scores
    r.timings = {**{k: sum(q.timings.get(k, 0.0) for q in results.values()) for k in summed if k in r.timings},
                 **{k: r.timings.get(k) for k in kept}, "silhouette_versions": len(results)}
    return r


def check_silhouette_bank(rows, z_dim: int, n_frames: Optional[int] = None) -> np.ndarray:
    """The paired latent rows (2 N, z_dim) float32 as given, checked: finite, z_dim columns, an even number of
    rows (the opened frame and its mirror per training frame: OPENED_AUGMENT), 2 * n_frames rows when
    ``n_frames`` is given. ValueError naming what is wrong."""
    a = np.asarray(rows)
    per = 1 + len(OPENED_AUGMENT)
    if a.dtype != np.float32 or a.ndim != 2 or a.shape[1] != z_dim or len(a) == 0 or len(a) % per:
        raise ValueError(f"the silhouette lever's paired rows must be float32 ({per} N, z_dim={z_dim}) (E of each "
                         f"opened training frame and of its mirror), got {a.dtype} {a.shape}")
    if n_frames is not None and len(a) != per * n_frames:
        raise ValueError(f"the silhouette lever's paired rows hold {len(a)} rows, not {per} for each of the "
                         f"{n_frames} training frames")
    if not np.isfinite(a).all():
        raise ValueError("the silhouette lever's paired rows hold NaN or inf")
    return a


class PairedPixelMemory:
    """The dil version's pixel memory: the model's pixel memory and the opened frames' (both
    runtime.pixel_memory.PixelMemory, frame i of each the same training frame), a distance the nearer of the two.
    ``exclude``: frame indices left out of both (held-out scoring of training frame i: [i])."""

    def __init__(self, pixels, opened):
        self.pixels, self.opened = pixels, opened

    def frame_distance(self, x: np.ndarray, radius: int = 0, exclude=None, gain: Sequence[float] = ()) -> float:
        """min of both memories' ``frame_distance`` of x (C, R, R)."""
        return min(self.pixels.frame_distance(x, radius, exclude, gain=gain),
                   self.opened.frame_distance(x, radius, exclude, gain=gain))

    def frame_distances(self, X: np.ndarray, radius: int = 0, exclude=None, gain: Sequence[float] = ()) -> np.ndarray:
        """(B,) min of both memories' ``frame_distances`` of X (B, C, R, R)."""
        return np.minimum(self.pixels.frame_distances(X, radius, exclude, gain=gain),
                          self.opened.frame_distances(X, radius, exclude, gain=gain))
