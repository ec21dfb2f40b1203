"""A model's pixel memory: the normal frames themselves, and the distance of an input to the nearest one.

An optional factor of the score (SearchConfig.score_pixel_power q > 0, default 0 = off):
score *= max(d_pix(x), pixel_floor) ** q, d_pix(x) = min_i mean((x - m_i)^2) over the memory's rows m_i,
x the preprocessed input (4, R, R) as the generator scores it (runtime/score_scale.py).

What is stored (pixel_memory.npy, the checkpoint's scoring["pixel_memory"]): the normal frames at the
model's resolution as ``latent_bank.unaligned_uint8`` gives them, uint8 (N, R, R, 4), in the model's own
light (a scene's colour_gain already applied: ``in_model_light``), with the augmentation texts
(runtime.nuisance, e.g. "mirror", "scale:1.03", "rotate:3", "blur:0.7") the rows are expanded with.
``PixelMemory`` expands them once, frame-major like a latent bank (``latent_bank.bank_inputs_uint8``:
per frame the frame first, then one row per text), into rows (N * A, 4 * R * R) of float32,
A = 1 + len(augment), so frame i owns rows [i * A, (i + 1) * A) and can be left out of a distance
(held-out scoring: ``exclude``). Numpy only; read-only after construction (but for the gain fit's tables,
built once under a lock by the first gain-fitted distance), so threads share one.

How the rows are kept (the row store, session 35; ``PixelMemory(rows=...)``, else $EDGE_AD_PIXEL_ROWS, else uint8):
"uint8", the default, keeps what each row is made of, its uint8 image (the frame or an augmented copy, aligned:
``latent_bank.bank_images_uint8``) and the 3 gains of its colour normalization, and rebuilds a row with
``normalize_uint8``'s own float32 operations when a distance measures it (``_Uint8Rows``): the same rows bit for bit
(every row is checked while the memory is built; one that did not rebuild would turn the store into float32), so
the same distances and scores, in a quarter of the bytes (the shipped cylinder's 7500 rows: 123.0 MB with their
gains instead of 491.5 MB), paid for by rebuilding the rows the bounded search keeps (and every row in a full search). "float32"
keeps the rows expanded (the store before session 35).

A frame's distance with its own shift search (``frame_distances``, the per-frame cost of a model with the pixel
factor: cylinder 81 shifted copies x 7500 rows) takes the bounded search by default (session 34): a true lower
bound of every (copy, row) distance from 8 x 8, then 4 x 4 block features (1/32, then 1/8 of the work on the rows left), then only the rows whose bound
is under a measured distance go through the GEMM and the exact check; it returns what the full search returns,
bit for bit (``bounded=False`` or ``full_search()``: the full one). The gain-fitted distance and ``distances``
(one input's own minimum) take the full search.
"""
from __future__ import annotations

import copy
import dataclasses
import os
import threading
from typing import Iterable, Optional, Sequence

import numpy as np

from .latent_bank import bank_images_uint8
from .nuisance import parse_nuisance
from .preprocess import PreprocessSpec, colour_norm_gains, normalize_uint8, shift_frame, shift_offsets

MAX_PIXEL_FRAMES = 1 << 16      # frames in a pixel memory at most (a manifest asking for more is refused)
MAX_PIXEL_BYTES = 1 << 31       # bytes of its rows (as its row store keeps them) and search tables at most (2 GiB;
                                # the shipped cylinder's 300 frames x 25 rows at R = 64 take 200.0 MB as uint8 images,
                                # 568.5 MB as float32 rows): ``check_pixel_memory_size``
_CHUNK = 64                     # inputs per GEMM in ``distances``
_COPIES = 256                   # shifted copies per ``distances`` call in ``frame_distances`` (memory bound)
BOUND_BLOCKS = (8, 4)           # the lower bounds' levels, coarse to fine: blocks of 8 x 8, then 4 x 4 pixels
_BOUND_SEEDS = 8                # (copy, row) pairs with the least bounds measured exactly first (``_bounded_min``)
ROW_STORES = ("uint8", "float32")   # how a PixelMemory keeps its rows (``PixelMemory(rows=...)``): the default first
ROW_STORE_ENV = "EDGE_AD_PIXEL_ROWS"    # the row store when none is given (``default_row_store``; unset: uint8)
_DECODE_ROWS = 128              # rows decoded at once from a uint8 store (an 8 MB float32 block at R = 64)
_DECODE_KEEP = 512              # rows the bounded search keeps decoded for its last stage (33.6 MB at R = 64)


def pixel_memory_bytes(n_frames: int, resolution: int, n_augment: int, bounded: bool = True,
                       rows: Optional[str] = None, gains: bool = True) -> int:
    """Bytes a PixelMemory of ``n_frames`` frames holds after its load: its n_frames x (1 + n_augment) rows as the
    row store ``rows`` keeps them (None: ``default_row_store``; "uint8": each row's 4 x R x R uint8 image plus,
    ``gains`` (a model with colour_norm), its 3 float32 colour-normalization gains; "float32": 4 x R x R float32,
    R = resolution) and their per-row float64 |r - mu|^2, plus (``bounded``, the default: every runtime load) the
    bounded search's tables, per level of BOUND_BLOCKS that divides R the rows' block features (2 F float32,
    F = 4 (R / block)^2: 1/32 of a float32 row at 8 x 8, 1/8 at 4 x 4) and their float64 squared norms."""
    rows = default_row_store() if rows is None else check_row_store(rows)
    n_rows, R = int(n_frames) * (1 + int(n_augment)), int(resolution)
    per_row = (4 * R * R + (12 if gains else 0) if rows == "uint8" else 4 * R * R * 4) + 8
    if bounded:
        per_row += sum(2 * 4 * (R // b) ** 2 * 4 + 8 for b in BOUND_BLOCKS if R % b == 0)
    return n_rows * per_row


def check_pixel_memory_size(n_frames: int, resolution: int, n_augment: int, bounded: bool = True,
                            rows: Optional[str] = None, gains: bool = True) -> None:
    """ValueError naming the counts when a pixel memory of ``n_frames`` frames (each 1 + ``n_augment``
    rows at ``resolution``) holds more than MAX_PIXEL_FRAMES frames or its rows (as the row store ``rows`` keeps
    them; None: ``default_row_store``) and search tables take more than MAX_PIXEL_BYTES (``pixel_memory_bytes``):
    checked before anything is allocated (a manifest, a checkpoint, ``edge-ad calibrate`` before it scores the
    scene)."""
    if n_frames > MAX_PIXEL_FRAMES:
        raise ValueError(f"a pixel memory of {n_frames} frames is more than MAX_PIXEL_FRAMES = {MAX_PIXEL_FRAMES}")
    rows = default_row_store() if rows is None else check_row_store(rows)
    size = pixel_memory_bytes(n_frames, resolution, n_augment, bounded, rows, gains)
    if size > MAX_PIXEL_BYTES:
        what = "uint8 row images" if rows == "uint8" else "float32 rows"
        raise ValueError(f"a pixel memory of {n_frames} frames x {1 + int(n_augment)} rows (the frame + {int(n_augment)} "
                         f"augmented copies) at {resolution} x {resolution} takes {size / 1e6:.1f} MB of {what} "
                         f"and search tables, more than MAX_PIXEL_BYTES = {MAX_PIXEL_BYTES / 1e6:.1f} MB")


def check_pixel_augment(augment) -> list:
    """``augment`` as a list of valid nuisance texts (runtime.nuisance.parse_nuisance); ValueError naming
    the problem for anything else (a string, a non-text entry, an unknown text)."""
    if augment is None:
        return []
    if isinstance(augment, str) or not isinstance(augment, (list, tuple)) \
            or not all(isinstance(t, str) for t in augment):
        raise ValueError(f"a pixel memory's augment must be a list of nuisance texts (e.g. ['mirror', "
                         f"'blur:0.7']), got {augment!r}")
    for t in augment:
        try:
            parse_nuisance(t)
        except ValueError as e:
            raise ValueError(f"a pixel memory's augment text {t!r} is not a valid augmentation: {e}") from None
    return list(augment)


def memory_spec(spec: PreprocessSpec) -> PreprocessSpec:
    """The preprocessing that turns stored frames into rows: the model's, without a scene's colour_gain
    (stored frames are in the model's own light already: ``in_model_light``)."""
    return dataclasses.replace(spec, colour_gain=(1.0, 1.0, 1.0))


def in_model_light(u8: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Frames (..., R, R, 4) uint8 as a pixel memory stores them: the foreground's (depth > 0) RGB times
    spec.colour_gain (a scene's light undone, the gain ``normalize_uint8`` applies to an input), rounded,
    clipped to [0, 255]. spec without a gain: the frames as they are. Not bit-equal to the input's path:
    ``normalize_uint8`` keeps the gained values in float32 while this rounds them to whole levels, so a
    calibrated scene frame scored against its own stored copy has a d_pix above 0 (at most half a level
    per foreground colour value; ~1e-6 to 1e-5 on kinect frames), which can exceed pixel_floor (1e-6)."""
    u8 = np.asarray(u8, dtype=np.uint8)
    gain = np.asarray(spec.colour_gain, np.float64)
    if tuple(gain) == (1.0, 1.0, 1.0):
        return u8
    fg = u8[..., 3:4] > 0
    rgb = np.clip(np.rint(u8[..., :3] * gain), 0, 255).astype(np.uint8)
    return np.concatenate([np.where(fg, rgb, u8[..., :3]), u8[..., 3:]], axis=-1)


_U32 = np.finfo(np.float32).eps / 2     # float32's unit roundoff


def block_features(X: np.ndarray, resolution: int, block: int) -> np.ndarray:
    """(n, 4 R R) images (channels first; float32 or float64) -> (n, 2 F) float64, F = 4 (R / block)^2 blocks of
    block x block pixels per channel: [block x each block's mean, each block's residual norm |x_b - mean(x_b)|].
    For any two images x, y: |f(x) - f(y)|^2 <= |x - y|^2, since per block |x_b - y_b|^2 =
    block^2 (mean difference)^2 + |residual difference|^2 (orthogonal parts) and the residuals' difference is at
    least the difference of their norms (triangle inequality): the lower bound of ``PixelMemory._bounded_min``."""
    n, B, R = len(X), int(block), int(resolution)
    blocks = (np.asarray(X).reshape(n, 4, R // B, B, R // B, B).transpose(0, 1, 2, 4, 3, 5)
              .astype(np.float64, order="C").reshape(n, -1, B * B))            # (n, F, B^2) float64, one copy
    mean = blocks @ np.full(B * B, 1.0 / (B * B))                              # (n, F)
    blocks -= mean[:, :, None]
    return np.concatenate([B * mean, np.sqrt(np.einsum("nfk,nfk->nf", blocks, blocks))], axis=1)


def default_row_store() -> str:
    """The row store a PixelMemory takes when none is given: $EDGE_AD_PIXEL_ROWS (ROW_STORE_ENV) when set,
    else "uint8"; ValueError naming the variable for a value that is not one of ROW_STORES."""
    value = os.environ.get(ROW_STORE_ENV, "").strip()
    if not value:
        return ROW_STORES[0]
    try:
        return check_row_store(value)
    except ValueError as e:
        raise ValueError(f"${ROW_STORE_ENV}: {e}") from None


def check_row_store(rows) -> str:
    """``rows`` if it names a row store of ROW_STORES, else ValueError naming it."""
    if not isinstance(rows, str) or rows not in ROW_STORES:
        raise ValueError(f"a pixel memory's row store must be one of {', '.join(ROW_STORES)} (uint8: the rows' uint8 "
                         f"images, rebuilt bit for bit when measured; float32: the rows expanded), got {rows!r}")
    return rows


class _Float32Rows:
    """A pixel memory's rows kept expanded: (M, D) float32 (``PixelMemory(rows="float32")``)."""
    kind = "float32"

    def __init__(self, rows: np.ndarray):
        self.array = rows

    def __len__(self) -> int:
        return len(self.array)

    @property
    def nbytes(self) -> int:
        return int(self.array.nbytes)

    def block(self, a: int, b: int) -> np.ndarray:
        """rows [a, b) (M', D) float32 (a view)."""
        return self.array[a:b]

    def take(self, idx: np.ndarray) -> np.ndarray:
        """rows ``idx`` (k,) -> (k, D) float32."""
        return self.array[idx]

    def blocks(self, idx: Optional[np.ndarray] = None):
        """(position, rows) blocks of every row (idx None) or of rows ``idx``, in order: one block here."""
        yield 0, (self.array if idx is None else self.array[idx])


class _Uint8Rows:
    """A pixel memory's rows kept as what they are made of (``PixelMemory(rows="uint8")``, the default): each row's
    uint8 image as ``normalize_uint8`` takes it (the frame or an augmented copy, aligned: ``bank_images_uint8``),
    (M, 4, R, R) channels first, and the gains its colour normalization multiplied the foreground's RGB by
    (``colour_norm_gains``, (M, 3) float32; none without colour_norm). ``decode`` rebuilds rows with
    normalize_uint8's own float32 operations, so bit for bit the rows the float32 store keeps (PixelMemory checks
    every row while it is built): 1/4 of the float32 rows' bytes, paid for by decoding the rows a distance measures."""
    kind = "uint8"

    def __init__(self, n: int, spec: PreprocessSpec):
        R = spec.resolution
        self._u = np.empty((n, 4, R, R), np.uint8)
        self._g = None if spec.colour_norm == "none" else np.empty((n, 3), np.float32)
        self._mean, self._std = spec.mean, spec.std
        # normalize_uint8's (v - mean) / std in place when both are Python floats (float32 arithmetic either way)
        self._in_place = type(spec.mean) is float and type(spec.std) is float
        self._D = 4 * R * R

    def __len__(self) -> int:
        return len(self._u)

    @property
    def nbytes(self) -> int:
        return int(self._u.nbytes + (0 if self._g is None else self._g.nbytes))

    def put(self, a: int, images: np.ndarray, spec: PreprocessSpec) -> None:
        """Store rows [a, a + k) of images (k, R, R, 4) uint8 (``bank_images_uint8``) normalized under ``spec``."""
        self._u[a:a + len(images)] = np.moveaxis(images, -1, -3)
        if self._g is not None:      # the gains normalize_colour computes on normalize_uint8's v, the same batch
            self._g[a:a + len(images)] = colour_norm_gains(images.astype(np.float32) / 255.0, spec).reshape(-1, 3)

    def freeze(self) -> None:
        self._u.setflags(write=False)
        if self._g is not None:
            self._g.setflags(write=False)

    def decode(self, u: np.ndarray, g: Optional[np.ndarray]) -> np.ndarray:
        """images u (k, 4, R, R) uint8 and their gains g (k, 3) (None: no colour normalization) -> rows (k, D)
        float32: normalize_uint8's v = u / 255, the foreground's (depth > 0) RGB times the gain clipped to
        [0, 1] (``normalize_colour``), (v - mean) / std, each operation as there (float32)."""
        v = u.astype(np.float32)
        v /= 255.0
        if g is not None:
            t = v[:, :3] * g[:, :, None, None]                                  # (k, 3, R, R)
            np.clip(t, 0.0, 1.0, out=t)
            np.copyto(v[:, :3], t, where=u[:, 3:4] > 0)                        # the foreground (depth > 0) only
        if self._in_place:
            v -= self._mean
            v /= self._std
        else:
            v = ((v - self._mean) / self._std).astype(np.float32, copy=False)
        return v.reshape(len(u), self._D)

    def block(self, a: int, b: int) -> np.ndarray:
        return self.decode(self._u[a:b], None if self._g is None else self._g[a:b])

    def take(self, idx: np.ndarray) -> np.ndarray:
        return self.decode(self._u[idx], None if self._g is None else self._g[idx])

    def blocks(self, idx: Optional[np.ndarray] = None):
        n = len(self) if idx is None else len(idx)
        for a in range(0, n, _DECODE_ROWS):
            yield a, (self.block(a, a + _DECODE_ROWS) if idx is None else self.take(idx[a:a + _DECODE_ROWS]))


def _bound_tables(rows, resolution: int, block: int) -> dict:
    """One level of the bounded search: per row of rows (a row store: N rows of 4 R R float32) "rows" its block features
    (``block_features`` with ``block``) centred on "mu" and rounded to float32 (N, 2 F), "sq" their squared norms
    in float64 (N,); "norm_max" the largest of those norms, "abs_max" the largest uncentred feature norm (>= |mu|),
    "gamma" gamma of a float32 dot product of 2 F + 2 terms, "block". mu, the mean features of the first 256 rows,
    only keeps the rounding small (any centre gives a valid bound); built 256 rows at a time (no float64 copy of
    the whole table: the load's peak memory grows by the float32 tables only)."""
    n, step = len(rows), 256
    mu = block_features(rows.block(0, step), resolution, block).mean(0)       # (2 F,)
    q = np.empty((n, len(mu)), np.float32)
    sq = np.empty(n)
    abs_max = 0.0
    for a in range(0, n, step):
        f = block_features(rows.block(a, a + step), resolution, block)        # (<= 256, 2 F) float64
        abs_max = max(abs_max, float(np.sqrt((f ** 2).sum(1).max())))
        q[a:a + step] = f - mu                                                 # rounded to float32
        sq[a:a + step] = (q[a:a + step].astype(np.float64) ** 2).sum(1)
    q.setflags(write=False)
    k = q.shape[1] + 2
    return {"rows": q, "mu": mu, "sq": sq, "norm_max": float(np.sqrt(sq.max())), "abs_max": abs_max,
            "gamma": k * _U32 / (1 - k * _U32), "block": block}


class PixelMemory:
    """Normal frames (N, R, R, 4) uint8 and their augmented copies, preprocessed once under ``spec``
    (``memory_spec``: the model's preprocessing without colour_gain) into rows (N * A, 4 * R * R)
    float32, A = 1 + len(augment), frame-major, kept as ``rows`` says (ROW_STORES; None: ``default_row_store``:
    $EDGE_AD_PIXEL_ROWS, else "uint8", their images rebuilt bit for bit when measured; "float32": expanded). ``distance(x)`` / ``distances(X)``: the mean squared
    difference of preprocessed inputs to the nearest row, in float64, optionally without some frames'
    rows (``exclude``: frame indices). ``seed``: the augmentations' random draws (runtime.nuisance.frame_rng
    with the frame's index in the memory)."""

    def __init__(self, frames: np.ndarray, spec: PreprocessSpec, augment: Sequence[str] = (), seed: int = 0,
                 bounded: bool = True, rows: Optional[str] = None):
        rows = default_row_store() if rows is None else check_row_store(rows)
        frames = np.asarray(frames)
        R = spec.resolution
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (R, R, 4) or len(frames) == 0:
            raise ValueError(f"a pixel memory holds normal frames as uint8 (N, {R}, {R}, 4), N >= 1 (the model's "
                             f"resolution {R}), got {frames.dtype} {frames.shape}")
        self.augment = tuple(check_pixel_augment(augment))
        check_pixel_memory_size(len(frames), R, len(self.augment), bounded, rows,   # before the rows are allocated
                                spec.colour_norm != "none")
        self.rows_per_frame = A = 1 + len(self.augment)
        self.n_frames, self.resolution = len(frames), R
        self._mean, self._std = float(spec.mean), float(spec.std)       # [-1, 1] -> [0, 1] colours: v = x std + mean
        self.frames = frames.copy()                                    # (N, R, R, 4) uint8, what is stored
        self.frames.setflags(write=False)
        mspec = memory_spec(spec)
        D = 4 * R * R
        M = len(frames) * A
        # the rows (N * A, 4 * R * R) float32 frame-major, as bank_inputs_uint8 makes them; a uint8 store keeps
        # their images and rebuilds them (``_Uint8Rows``), checked here bit for bit row by row: a row it could not
        # rebuild (none known) turns the store into the float32 one (``row_store`` says which holds them)
        u8 = _Uint8Rows(M, mspec) if rows == "uint8" else None
        f32 = None if u8 is not None else np.empty((M, D), np.float32)
        for i, f in enumerate(frames):
            images = bank_images_uint8(f, mspec, self.augment, seed, i)              # (A, R, R, 4) uint8
            x = normalize_uint8(images, mspec).reshape(A, D)                        # = bank_inputs_uint8
            if u8 is not None:
                u8.put(i * A, images, mspec)
                if not np.array_equal(u8.block(i * A, (i + 1) * A).view(np.uint32), x.view(np.uint32)):
                    check_pixel_memory_size(len(frames), R, len(self.augment), bounded, "float32")
                    f32 = np.empty((M, D), np.float32)
                    for a in range(0, i * A, _DECODE_ROWS):                        # the rows checked already
                        f32[a:min(a + _DECODE_ROWS, i * A)] = u8.block(a, min(a + _DECODE_ROWS, i * A))
                    u8 = None
            if f32 is not None:
                f32[i * A:(i + 1) * A] = x
        if u8 is not None:
            u8.freeze()
            self._store = u8
        else:
            f32.setflags(write=False)
            self._store = _Float32Rows(f32)
        # the GEMM works on centred inputs (x - mu) against the rows: |x - r|^2 = |x_c|^2 - 2 (x_c.r - x_c.mu)
        # + |r - mu|^2, whose float32 rounding is bounded by |x_c| |r| (small: x_c is centred)
        total = np.zeros(D)
        for a, block in self._store.blocks():
            total += block.sum(0, dtype=np.float64)
        mu = (total / M).astype(np.float32)                            # (D,)
        self._mu, self._mu64 = mu, mu.astype(np.float64)
        rc_sq = np.empty(M)                                            # (N * A,) |r - mu|^2 in float64
        r_norm = np.empty(M)                                           # (N * A,) |r|
        for a in range(0, M, 256):
            block = self._store.block(a, a + 256).astype(np.float64)   # (<= 256, D)
            r_norm[a:a + 256] = np.sqrt((block ** 2).sum(1))
            block -= self._mu64
            block *= block                                             # in place: (r - mu)^2
            rc_sq[a:a + 256] = block.sum(1)
        self._rc_sq, self._r_norm_max = rc_sq, float(r_norm.max())
        self._rc_sq_max = float(rc_sq.max())
        self._rc_norm_max = float(np.sqrt(self._rc_sq_max))
        # the gain-fitted distance's per-row tables (``_gain_tables``): built by the first gain-fitted distance
        # asked for (SearchConfig.pixel_gain_limits; None, the default, never asks), once, under a lock (a Scorer
        # is used from several threads); published whole, so the memory reads as read-only otherwise
        self._gain_lock = threading.Lock()
        self._gain: Optional[tuple] = None                             # (tables, max of tables["vv"])
        # gamma_D of a float32 dot product of D + 2 terms (the centring's rounding included): |error| <=
        # gamma * sum |a_i b_i|, whatever order BLAS sums in
        u = np.finfo(np.float32).eps / 2
        self._gamma = (D + 2) * u / (1 - (D + 2) * u)
        # the bounded search of ``frame_distances`` (``_bounded_min``): per level of BOUND_BLOCKS that divides R,
        # every row's block features (N * A, 2 F), F = 4 (R / block)^2, centred and rounded to float32 (1/32 and
        # 1/8 of the rows' bytes); None: the full search (bounded=False, or no block divides R)
        self._bound: Optional[list] = None
        levels = [b for b in BOUND_BLOCKS if R % b == 0]
        if bounded and levels:
            self._bound = [_bound_tables(self._store, R, b) for b in levels]

    def _gain_tables(self) -> tuple:
        """(tables, max of tables["vv"]) of the gain-fitted distance (``_build_gain_tables``), built by the first
        call, once whatever the threads."""
        built = self._gain
        if built is None:
            with self._gain_lock:
                if self._gain is None:
                    self._gain = self._build_gain_tables()
                built = self._gain
        return built

    def __getstate__(self) -> dict:             # picklable as before the lock (a lock is not)
        return {k: v for k, v in self.__dict__.items() if k != "_gain_lock"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._gain_lock = threading.Lock()

    def _build_gain_tables(self) -> tuple:
        """Per row (N * A,) float64: the squared norm of its RGB in [0, 1] colours (v = x std + mean) "vv", the sum
        of its RGB in the model's units "rs", <mu_rgb, r_rgb> "mu_r", |r_d - mu_d|^2 (depth) "rc_d" (RGB: the
        first P = 3 R R entries); and the largest "vv"."""
        rows, P = self._store, 3 * self.resolution ** 2
        t = {k: np.empty(len(rows)) for k in ("vv", "rs", "mu_r", "rc_d")}
        for a in range(0, len(rows), 256):
            block = rows.block(a, a + 256).astype(np.float64)          # (<= 256, D)
            t["mu_r"][a:a + 256] = block[:, :P] @ self._mu64[:P]
            t["rs"][a:a + 256] = block[:, :P].sum(1)
            v = block[:, :P] * self._std
            v += self._mean
            v *= v
            t["vv"][a:a + 256] = v.sum(1)
            t["rc_d"][a:a + 256] = ((block[:, P:] - self._mu64[P:]) ** 2).sum(1)
        return t, float(t["vv"].max())

    @property
    def bounded(self) -> bool:
        """True when ``frame_distances`` takes the bounded search (the default), False for the full one."""
        return self._bound is not None

    def full_search(self) -> "PixelMemory":
        """This memory (its arrays shared, not copied) with the full search (every row through the GEMM), as
        ``bounded=False`` builds it: the baseline the bounded search is measured against (``edge-ad bench``'s
        onnx-auto-full-pixels). The copy holds no bound tables."""
        other = copy.copy(self)
        other._bound = None
        other._gain_lock = threading.Lock()
        return other

    @property
    def row_store(self) -> str:
        """How the rows are kept: "uint8" (their images, rebuilt when measured: the default) or "float32"."""
        return self._store.kind

    def rows(self, idx: Optional[Iterable[int]] = None) -> np.ndarray:
        """The rows (k, 4 R R) float32 (idx: row indices; None: all, N * A): what every distance is measured to,
        whichever the row store."""
        return self._store.take(np.arange(len(self._store)) if idx is None else np.asarray(idx, np.int64))

    def nbytes(self) -> dict:
        """{"rows": bytes of the row store (uint8: the images and gains; float32: the rows), "bound": bytes of
        the bounded search's tables (0 without)}."""
        b = self._bound
        return {"rows": int(self._store.nbytes),
                "bound": 0 if b is None else int(sum(v.nbytes for t in b for v in t.values() if isinstance(v, np.ndarray)))}

    @property
    def shape(self) -> tuple:
        """(rows, 4 * R * R) of the expanded memory."""
        return (len(self._store), 4 * self.resolution ** 2)

    def frame_rows(self, frames: Iterable[int]) -> np.ndarray:
        """Row indices (int array) of the given frame indices' blocks: frame i owns rows [i * A, (i + 1) * A)."""
        idx = np.asarray(sorted(set(int(i) for i in frames)), dtype=np.int64)
        if len(idx) and (idx[0] < 0 or idx[-1] >= self.n_frames):
            raise ValueError(f"frame indices must be in [0, {self.n_frames}), got {idx[0]}..{idx[-1]}")
        A = self.rows_per_frame
        return (idx[:, None] * A + np.arange(A)[None]).reshape(-1)

    def frame_gaps(self, X: np.ndarray) -> np.ndarray:
        """(N,) float64: the mean squared difference of each preprocessed input X[i] (N, 4, R, R), one per
        frame of the memory, to frame i's own first row (the stored frame, preprocessed): ~0 for every i
        when X holds the memory's frames in its order (held-out scoring leaves frame i's rows out)."""
        Xf = self._check(X)                                                    # (N, D)
        if len(Xf) != self.n_frames:
            raise ValueError(f"{len(Xf)} inputs for a pixel memory of {self.n_frames} frames: one input per frame")
        own = self._store.take(np.arange(0, len(self._store), self.rows_per_frame))  # (N, D) each frame's first row
        return np.array([((x.astype(np.float64) - r) ** 2).mean() for x, r in zip(Xf, own)])

    def _kept(self, exclude) -> Optional[np.ndarray]:
        """bool (N * A,) rows kept, or None (all) when nothing is excluded."""
        if exclude is None:
            return None
        gone = self.frame_rows(exclude)
        if not len(gone):
            return None
        keep = np.ones(len(self._store), bool)
        keep[gone] = False
        if not keep.any():
            raise ValueError("every frame of the pixel memory is excluded: no row left to measure a distance to")
        return keep

    def _check(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        R = self.resolution
        if X.ndim != 4 or X.shape[1:] != (4, R, R):
            raise ValueError(f"pixel memory inputs must be preprocessed frames (B, 4, {R}, {R}), got {X.shape}")
        if not np.isfinite(X).all():
            raise ValueError("pixel memory input contains NaN or inf")
        return X.reshape(len(X), -1)

    def distance(self, x: np.ndarray, exclude: Optional[Iterable[int]] = None, gain: Sequence[float] = ()) -> float:
        """d_pix(x): min over the rows of mean((x - row)^2), float64, for one preprocessed frame x (4, R, R);
        ``exclude``: frame indices whose rows are left out (held-out scoring); ``gain`` (lo, hi): the
        gain-fitted distance (``distances``)."""
        return float(self.distances(np.asarray(x)[None], exclude, gain)[0])

    def frame_distance(self, x: np.ndarray, radius: int = 0, exclude: Optional[Iterable[int]] = None,
                       gain: Sequence[float] = ()) -> float:
        """The pixel distance of a FRAME x (4, R, R) with its own shift search (SearchConfig.pixel_shift_radius):
        min over the (2 radius + 1)^2 shifts (dy, dx) of shift_offsets(radius) of d_pix(shift_frame(x, dy, dx))
        (vacated pixels background, as the shift-min's copies); radius 0: ``distance(x)``. ``gain``:
        SearchConfig.pixel_gain_limits (``distances``)."""
        return float(self.frame_distances(np.asarray(x)[None], radius, exclude, gain)[0])

    def frame_distances(self, X: np.ndarray, radius: int = 0, exclude: Optional[Iterable[int]] = None,
                        gain: Sequence[float] = ()) -> np.ndarray:
        """``frame_distance`` of every frame of X (B, 4, R, R) -> (B,) float64: the minimum over each frame's
        S = (2 radius + 1)^2 shifted copies. The bounded search (the default, without ``gain``): per frame
        ``_bounded_min`` of its copies; the full search: the copies measured together in ``distances`` calls
        of at most _COPIES copies (whole frames). Both return the same values, bit for bit."""
        X = np.asarray(X)
        self._check(X)
        offsets = shift_offsets(radius)
        S = len(offsets)
        if self._bound is not None and not len(gain):                              # the bounded search
            keep = self._kept(exclude)
            D = X[0].size
            return np.array([self._bounded_min(np.stack([shift_frame(x, dy, dx) for dy, dx in offsets])
                                               .reshape(S, D), keep) for x in X])
        if S == 1:
            return self.distances(X, exclude, gain)
        out = np.empty(len(X))
        step = max(1, _COPIES // S)                                                 # frames per call
        for a in range(0, len(X), step):
            part = X[a:a + step]
            copies = np.stack([shift_frame(part, dy, dx) for dy, dx in offsets], axis=1)   # (b, S, 4, R, R)
            d = self.distances(copies.reshape((-1,) + X.shape[1:]), exclude, gain)      # (b * S,)
            out[a:a + len(part)] = d.reshape(len(part), S).min(1)
        return out

    def distances(self, X: np.ndarray, exclude: Optional[Iterable[int]] = None,
                  gain: Sequence[float] = ()) -> np.ndarray:
        """``distance`` of every frame of X (B, 4, R, R) -> (B,) float64, each equal to a brute-force loop over
        the rows (the nearest row's mean squared difference computed in float64). A float32 GEMM of the
        centred inputs against the rows (chunks of _CHUNK inputs) finds each input's candidates: every row
        whose expanded squared distance is within the GEMM's proven rounding bound of the smallest
        (gamma_D of the dot products); those are measured again exactly, and the least is returned.
        ``gain`` (lo, hi), SearchConfig.pixel_gain_limits: the gain-fitted distance instead (``gain_distance``:
        per row the input's RGB relit by the best gain in [lo, hi]); () the plain one."""
        Xf = self._check(X)                                                    # (B, D)
        keep = self._kept(exclude)
        if len(gain):
            return self._gain_distances(Xf, keep, *check_gain_limits(gain))
        out = np.empty(len(Xf))
        for a in range(0, len(Xf), _CHUNK):
            Dx, margin = self._gemm_distances(Xf[a:a + _CHUNK])                    # (b, N * A), (b,)
            if keep is not None:
                Dx[:, ~keep] = np.inf
            for b in range(len(Dx)):
                near = np.flatnonzero(Dx[b] <= Dx[b].min() + margin[b])       # (k,) candidate rows, k >= 1
                out[a + b] = max(float(self._exact(Xf[a + b], near).min()), 0.0)
        return out

    def _gemm_distances(self, Xf: np.ndarray, rows: Optional[np.ndarray] = None,
                        decoded: Optional[np.ndarray] = None) -> tuple:
        """(Dx (b, k) float64 ~ |x - r|^2 of each input Xf (b, D) to each row (rows: indices (k,), None: all),
        margin (b,)): a float32 GEMM of the centred inputs; |Dx - |x - r|^2| <= margin / 2 for every row, so the
        nearest row is among those within ``margin`` of the smallest Dx (proven: gamma_D of the dot products).
        ``decoded``: the rows ``rows`` as ``rows()`` gives them, when the caller has them already."""
        Xc = (Xf.astype(np.float64) - self._mu64).astype(np.float32)             # (b, D) centred, rounded
        Xc64 = Xc.astype(np.float64)
        xc_sq = (Xc64 ** 2).sum(1)                                             # (b,)
        xc_mu = Xc64 @ self._mu64                                              # (b,)
        rc_sq = self._rc_sq if rows is None else self._rc_sq[rows]
        dots = np.empty((len(Xc), len(rc_sq)))                                 # (b, k) float32 GEMMs
        for a, R in (self._store.blocks(rows) if decoded is None else [(0, decoded)]):
            dots[:, a:a + len(R)] = Xc @ R.T
        Dx = xc_sq[:, None] - 2.0 * (dots - xc_mu[:, None]) + rc_sq[None, :]  # ~ |x - r|^2
        xc_norm = np.sqrt(xc_sq)
        # the expansion's error for the nearest row and for the smallest (2 x each): the GEMM's 2 gamma
        # |x_c| |r|, the rounding of x_c to float32 (u |x_c| per unit of |x_c| + |r_c|, u < gamma), float64 slack
        margin = (4.0 * self._gamma * xc_norm * (self._r_norm_max + self._rc_norm_max + xc_norm)
                  + 1e-9 * (xc_sq + self._rc_sq_max) + 1e-12)
        return Dx, margin

    def _exact(self, x: np.ndarray, rows: np.ndarray, decoded: Optional[np.ndarray] = None) -> np.ndarray:
        """(k,) float64 mean((x - r)^2) of one input x (D,) to each row of ``rows`` (indices (k,); ``decoded``:
        those rows, when the caller has them): the value every path returns (the full and the bounded search
        measure a winner the same way, bit for bit, whichever the row store)."""
        R = self._store.take(rows) if decoded is None else decoded
        return ((R.astype(np.float64) - x.astype(np.float64)) ** 2).mean(1)

    def _bounded_min(self, C: np.ndarray, keep: Optional[np.ndarray]) -> float:
        """min over the copies C (S, D) (one frame's shifted copies) and the kept rows of mean((c - r)^2), equal
        bit for bit to the minimum of ``distances`` over the copies, found without measuring every row. Per level
        of BOUND_BLOCKS, coarse to fine, on the rows still in:
        1. a true lower bound of every (copy, row) pair's squared distance from the block features
           (``block_features``), a float32 GEMM of S x rows x 2 F (F = 4 (R / block)^2: 1/32 of the full search's
           work at 8 x 8 blocks, 1/8 at 4 x 4), less its proven rounding margin (``_level_bounds``);
        2. the _BOUND_SEEDS pairs with the least bounds measured exactly: U, the least measured distance so far;
        3. only the pairs whose bound is at most U (1 + 1e-9) stay in (every other pair is farther apart than a
           measured pair), and the copies and rows with a pair in.
        The pairs left are measured as ``distances`` measures all: the float32 GEMM of their copies against their
        rows, then exactly (float64, ``_exact``) the pairs within the GEMM's margin of the least; the minimum. At worst
        (no pair left out) the full search's GEMM work plus 5/32 of it for the bounds."""
        D = C.shape[1]
        best = np.inf
        cs, cand, alive = np.arange(len(C)), None, None       # copies, rows (None: all) and pairs (S', k) still in
        for tab in self._bound:
            lb = self._level_bounds(tab, block_features(C[cs], self.resolution, tab["block"]), cand)   # (S', k)
            if alive is not None:
                lb[~alive] = np.inf
            elif keep is not None:
                lb[:, ~keep] = np.inf
            flat = lb.ravel()
            seeds = np.argpartition(flat, min(_BOUND_SEEDS, flat.size) - 1)[:_BOUND_SEEDS]
            seeds = seeds[np.isfinite(flat[seeds])]
            ss, rr = np.unravel_index(seeds, lb.shape)
            rr = rr if cand is None else cand[rr]
            for s in set(ss.tolist()):                                         # U: measured pairs
                best = min(best, float(self._exact(C[cs[s]], rr[ss == s]).min()))
            alive = lb <= best * D * (1.0 + 1e-9)                              # pairs that may hold the min
            rows_in, copies_in = alive.any(0), alive.any(1)
            cand = np.flatnonzero(rows_in) if cand is None else cand[rows_in]
            cs, alive = cs[copies_in], alive[np.ix_(copies_in, rows_in)]
        # the rows left, rebuilt once for the GEMM and the exact check (a uint8 store; at most _DECODE_KEEP at once)
        rows_c = self._store.take(cand) if self._store.kind == "uint8" and len(cand) <= _DECODE_KEEP else None
        Dx, margin = self._gemm_distances(C[cs], cand, rows_c)                 # (S', k), (S',)
        half = margin[:, None] / 2
        Dx[~alive] = np.inf
        lim = min(float((Dx + half).min()), best * D * (1.0 + 1e-9))
        ps, pr = np.nonzero(Dx - half <= lim)                                  # pairs that may be the nearest
        for s in np.unique(ps):
            sel = pr[ps == s]
            best = min(best, float(self._exact(C[cs[s]], cand[sel], None if rows_c is None else rows_c[sel]).min()))
        return max(best, 0.0)

    @staticmethod
    def _level_bounds(tab: dict, V: np.ndarray, rows: Optional[np.ndarray]) -> np.ndarray:
        """(S, k) float64 lower bounds of |c - r|^2 for copies with block features V (S, 2 F) float64 and the
        rows ``rows`` (indices (k,), None: all) of one level's tables ``tab`` (``_bound_tables``): |V - f(r)|^2
        through a float32 GEMM of the centred features, less what rounding can add: the GEMM's 2 gamma |v| |r|,
        the float32 rounding of both centred sides (2 u (|v| + |r|)^2), float64 slack on the features."""
        Vq = (V - tab["mu"]).astype(np.float32)                                # centred, rounded
        v_sq = (Vq.astype(np.float64) ** 2).sum(1)                             # (S,)
        v_norm = np.sqrt(v_sq)
        R = tab["rows"] if rows is None else tab["rows"][rows]
        sq = tab["sq"] if rows is None else tab["sq"][rows]
        lb = v_sq[:, None] - 2.0 * (Vq @ R.T).astype(np.float64) + sq[None]   # (S, k)
        fmax = tab["norm_max"]                                                 # over every row: valid for any k
        lb -= (2.0 * tab["gamma"] * v_norm * fmax + 2.0 * _U32 * (v_norm + fmax) ** 2
               + 1e-12 * (np.sqrt((V ** 2).sum(1)) + tab["abs_max"]) ** 2 + 1e-300)[:, None]
        return lb

    def _gain_distances(self, Xf: np.ndarray, keep: Optional[np.ndarray], lo: float, hi: float) -> np.ndarray:
        """``distances`` with the gain fit (``gain_distance``) on Xf (B, D): the float32 GEMM's RGB and depth
        dot products give every row's fitted distance up to the GEMM's bound (the RGB part's error times 2 hi at
        most: the fit is a minimum over g of a quadratic whose linear term carries the error); the candidates
        within that bound of the smallest are measured again exactly (float64), and the least is returned."""
        t, vv_max = self._gain_tables()
        P = 3 * self.resolution ** 2
        s, m = self._std, self._mean
        out = np.empty(len(Xf))
        for a in range(0, len(Xf), _CHUNK):
            X64 = Xf[a:a + _CHUNK].astype(np.float64)
            Xc = (X64 - self._mu64).astype(np.float32)                        # (b, D) centred, rounded
            Xc64 = Xc.astype(np.float64)
            # RGB: <x_r, r_r> ~ <xc_r, r_r> + <mu_r, r_r>, then in [0, 1]: <v_x, v_r> = s^2 <x, r> + s m (sum x + sum r) + m^2 P
            # two float32 GEMMs on views of the rows (row stride D, no copy; a uint8 store: of blocks of rebuilt
            # rows): RGB and depth dot products
            dd, dot = np.empty((len(Xc), len(t["vv"]))), np.empty((len(Xc), len(t["vv"])))  # (b, N * A)
            for r0, rows in self._store.blocks():
                dd[:, r0:r0 + len(rows)] = Xc[:, P:] @ rows[:, P:].T                        # depth
                dot[:, r0:r0 + len(rows)] = Xc[:, :P] @ rows[:, :P].T                       # RGB
            dot += t["mu_r"][None]
            vx = X64[:, :P] * s + m                                                         # (b, P)
            xx, xs = (vx ** 2).sum(1), (X64[:, :P]).sum(1)
            vdot = s * s * dot + s * m * (xs[:, None] + t["rs"][None]) + m * m * P
            g = np.clip(np.divide(vdot, xx[:, None], out=np.ones_like(vdot), where=xx[:, None] > 0), lo, hi)
            rgb = (g * g * xx[:, None] - 2.0 * g * vdot + t["vv"][None]) / (s * s)        # |g v_x - v_r|^2 / s^2
            xd = Xc64[:, P:]
            depth = (xd ** 2).sum(1)[:, None] - 2.0 * (dd - (xd @ self._mu64[P:])[:, None]) + t["rc_d"][None]
            Dx = rgb + depth
            if keep is not None:
                Dx[:, ~keep] = np.inf
            xc_norm = np.sqrt((Xc64 ** 2).sum(1))
            # per row: the RGB GEMM's error (gamma |x_c| |r| at most) weighed 2 g <= 2 hi in the fit (a minimum over g
            # of a quadratic whose linear term carries the error), and the depth GEMM's error twice: (2 hi + 2) gamma
            # |x_c| |r|; for the nearest and the smallest row both, as the plain distance's margin
            margin = ((4.0 * max(hi, 1.0) + 4.0) * self._gamma * xc_norm * (self._r_norm_max + self._rc_norm_max + xc_norm)
                      + 1e-9 * (hi * hi * xx + vv_max) / (s * s) + 1e-9 * ((Xc64 ** 2).sum(1) + self._rc_sq_max)
                      + 1e-12)
            for b in range(len(Xc)):
                near = np.flatnonzero(Dx[b] <= Dx[b].min() + margin[b])       # (k,) candidate rows, k >= 1
                out[a + b] = float(gain_distances_exact(Xf[a + b], self._store.take(near), lo, hi, m, s).min())
        return out


def check_gain_limits(gain) -> tuple:
    """(lo, hi) floats of a gain fit's limits (SearchConfig.pixel_gain_limits): finite, 0 < lo <= 1 <= hi;
    ValueError naming the problem otherwise."""
    try:
        lo, hi = (float(v) for v in gain)
    except (TypeError, ValueError):
        raise ValueError(f"pixel gain limits must be two numbers (lo, hi), got {gain!r}") from None
    if not (0.0 < lo <= 1.0 <= hi < float("inf")):
        raise ValueError(f"pixel gain limits need 0 < lo <= 1 <= hi (finite; 1: the plain distance is among the "
                         f"fits), got ({lo!r}, {hi!r})")
    return lo, hi


def gain_distance(x: np.ndarray, row: np.ndarray, lo: float, hi: float, mean: float = 0.5, std: float = 0.5) -> float:
    """The gain-fitted pixel distance of one preprocessed input x to one row (both (4, R, R) or flat, channels
    first: RGB then depth), float64: the input's RGB in [0, 1] colours (v = x std + mean; a masked background
    is 0 there, so only the foreground's light moves) scaled by g = clip(<v_x, v_r> / <v_x, v_x>, lo, hi), the
    least-squares gain within [lo, hi] (1 for an input without colour), then mean((x' - row)^2) over the four
    channels in the model's [-1, 1] units, depth untouched. lo = hi = 1: the plain distance."""
    return float(gain_distances_exact(x, np.asarray(row)[None], lo, hi, mean, std)[0])


def gain_distances_exact(x: np.ndarray, rows: np.ndarray, lo: float, hi: float, mean: float = 0.5,
                         std: float = 0.5) -> np.ndarray:
    """``gain_distance`` of x to each of rows (k, ...) -> (k,) float64."""
    x = np.asarray(x, np.float64).ravel()
    rows = np.asarray(rows, np.float64).reshape(len(rows), -1)
    P = 3 * len(x) // 4
    vx, vr = x[:P] * std + mean, rows[:, :P] * std + mean                       # (P,), (k, P)
    xx = float(vx @ vx)
    g = np.clip(vr @ vx / xx, lo, hi) if xx > 0 else np.ones(len(rows))           # (k,)
    rgb = (((g[:, None] * vx[None] - vr) / std) ** 2).sum(1)
    return (rgb + ((x[None, P:] - rows[:, P:]) ** 2).sum(1)) / len(x)
