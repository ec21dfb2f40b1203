"""Everyday nuisances applied to RAW RGB-D frames, before preprocessing (NumPy only, torch-free).

Used by ``edge-ad eval --nuisance`` (the robustness suite), by the simulated new scene that checks
``edge-ad calibrate``, by the augmented latent bank (release and calibrate) and by runtime tests.

Every nuisance is a callable ``n(rgb, depth, rng) -> (rgb, depth)`` on one raw frame:
  rgb    H x W x 3 uint8
  depth  H x W uint8 (8-bit, 0 = background) or uint16 millimetres (0 = no reading)
returning NEW arrays of the same shapes and dtypes (the inputs are never modified). ``rng`` is a
``numpy.random.Generator``; deterministic nuisances ignore it. Background (depth 0) stays
background, so the masked capture of kinect-rgbd keeps its meaning.

``parse_nuisance("brightness:1.25")`` builds one from a short text (``NUISANCE_SYNTAX``);
``DEFAULT_SUITE`` is the suite ``edge-ad eval --nuisance`` runs (the shipped numbers were measured with
it); the others (gamma, offset, contrast, blur, jpeg, depth-holes, depth-edge-holes, depth-edge-spurs,
rotate, scale, fg-blur, fg-rotate, fg-scale, light-ramp, shadow, sharpen) widen what ``edge-ad eval
--nuisance-set`` can check.
``frame_rng(seed, frame, k)`` gives the per-frame generator so that a suite is reproducible frame by frame.
NumPy only, plus Pillow (a runtime dependency) for jpeg.

blur, rotate and scale resample the frame as captured: on a masked capture (kinect-rgbd's RGB is black
wherever depth is 0) the black surroundings bleed into the object's edge colours while the depth mask stays
sharp, a dark rim no camera re-mount or defocus makes (audit 30 #9). The shipped models' memory copies were
built with them, so they keep that meaning. fg-blur, fg-rotate and fg-scale (``foreground_only=True``) are
the same kernel / geometry with the RGB resampled from FOREGROUND pixels only (normalised convolution: the
weights of pixels without a depth reading are dropped and the rest renormalised); depth as the old kinds,
and on a frame with a reading everywhere each equals its old kind exactly.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

# kinect-rgbd's 8-bit depth: 255 levels over 0..700 mm (runtime.preprocess.PreprocessSpec)
MM_PER_LEVEL_8BIT = 700.0 / 255.0


def _check(rgb, depth) -> tuple[np.ndarray, np.ndarray]:
    rgb, depth = np.asarray(rgb), np.asarray(depth)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be H x W x 3 uint8, got {rgb.dtype} {rgb.shape}")
    if depth.ndim != 2 or depth.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"depth must be H x W uint8 or uint16, got {depth.dtype} {depth.shape}")
    return rgb, depth


def _depth_units(depth: np.ndarray, mm: float) -> float:
    """``mm`` millimetres in the depth array's own units (8-bit levels for uint8, mm for uint16)."""
    return mm / MM_PER_LEVEL_8BIT if depth.dtype == np.uint8 else mm


def _to_depth(d: np.ndarray, like: np.ndarray) -> np.ndarray:
    """float depth -> like's dtype; readings stay readings (>= 1), background stays 0."""
    top = 255 if like.dtype == np.uint8 else 65535
    return np.where(like > 0, np.clip(np.rint(d), 1, top), 0).astype(like.dtype)


def _rgb_levels(values: np.ndarray) -> np.ndarray:
    """float RGB values -> uint8 levels (rounded to the nearest level, clipped to 0..255)."""
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Brightness:
    """Global illumination: RGB * factor (e.g. 1.25 = +25 %), clipped to 0..255."""
    factor: float

    @property
    def name(self) -> str:
        return f"brightness {self.factor - 1:+.0%}"

    def __call__(self, rgb, depth, rng=None):
        rgb, depth = _check(rgb, depth)
        return _rgb_levels(rgb * np.float32(self.factor)), depth.copy()


@dataclass(frozen=True)
class WhiteBalance:
    """A colour cast: per-channel gains (r, g, b), e.g. (1.15, 1, 0.85) = warmer light."""
    gains: tuple

    @property
    def name(self) -> str:
        return "white balance " + "/".join(f"{g:g}" for g in self.gains)

    def __call__(self, rgb, depth, rng=None):
        rgb, depth = _check(rgb, depth)
        g = np.asarray(self.gains, np.float32).reshape(1, 1, 3)
        return _rgb_levels(rgb * g), depth.copy()


def _shift(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """a shifted by (dy, dx) pixels (positive: down / right), vacated pixels 0 (background)."""
    out = np.zeros_like(a)
    H, W = a.shape[:2]
    if abs(dy) >= H or abs(dx) >= W:
        return out
    ys, yd = (slice(0, H - dy), slice(dy, H)) if dy >= 0 else (slice(-dy, H), slice(0, H + dy))
    xs, xd = (slice(0, W - dx), slice(dx, W)) if dx >= 0 else (slice(-dx, W), slice(0, W + dx))
    out[yd, xd] = a[ys, xs]
    return out


@dataclass(frozen=True)
class Shift:
    """The camera moved: the image content shifted by (dy, dx) raw pixels, vacated pixels background."""
    dy: int
    dx: int

    @property
    def name(self) -> str:
        return f"shift {self.dy:+d},{self.dx:+d} px"

    def __call__(self, rgb, depth, rng=None):
        rgb, depth = _check(rgb, depth)
        refuse_too_large(self, depth.shape)
        return _shift(rgb, self.dy, self.dx), _shift(depth, self.dy, self.dx)


def ring_move(px: int, i: int) -> tuple:
    """The i-th (0 <= i < 8 px) of the moves (dy, dx) with max(|dy|, |dx|) == px, in row-major order (dy, then
    dx, each from -px to px): the top row's 2 px + 1, then the two side cells of each of the 2 px - 1 rows
    between, then the bottom row's 2 px + 1. Computed, not listed: a listing costs (2 px + 1)^2 steps."""
    row = 2 * px + 1
    if i < row:
        return -px, -px + i
    j = i - row
    if j < 2 * (row - 2):
        return -px + 1 + j // 2, (px if j % 2 else -px)
    return px, -px + (j - 2 * (row - 2))


@dataclass(frozen=True)
class RandomShift:
    """A shift of exactly ``px`` pixels (max(|dy|, |dx|) == px) in a direction drawn per frame: one of the
    8 px moves (``ring_move``), uniformly. ValueError for a px of at least the frame's height or width."""
    px: int

    @property
    def name(self) -> str:
        return f"shift {self.px} px"

    def __call__(self, rgb, depth, rng):
        rgb, depth = _check(rgb, depth)
        refuse_too_large(self, depth.shape)
        dy, dx = ring_move(self.px, int(rng.integers(8 * self.px)))
        return Shift(dy, dx)(rgb, depth)


@dataclass(frozen=True)
class Mirror:
    """A mirrored pose: the frame flipped left-right."""

    @property
    def name(self) -> str:
        return "mirror"

    def __call__(self, rgb, depth, rng=None):
        rgb, depth = _check(rgb, depth)
        return rgb[:, ::-1].copy(), depth[:, ::-1].copy()


@dataclass(frozen=True)
class RgbNoise:
    """RGB sensor noise: i.i.d. Gaussian, ``sigma`` in 8-bit levels, clipped to 0..255."""
    sigma: float

    @property
    def name(self) -> str:
        return f"rgb noise {self.sigma:g}"

    def __call__(self, rgb, depth, rng):
        rgb, depth = _check(rgb, depth)
        noisy = rgb + rng.normal(0.0, self.sigma, rgb.shape)
        return _rgb_levels(noisy), depth.copy()


@dataclass(frozen=True)
class DepthNoise:
    """Depth sensor noise on the readings (background stays 0): Gaussian, ``sigma_mm`` millimetres."""
    sigma_mm: float

    @property
    def name(self) -> str:
        return f"depth noise {self.sigma_mm:g} mm"

    def __call__(self, rgb, depth, rng):
        rgb, depth = _check(rgb, depth)
        d = depth + rng.normal(0.0, _depth_units(depth, self.sigma_mm), depth.shape)
        return rgb.copy(), _to_depth(d, depth)


@dataclass(frozen=True)
class DepthOffset:
    """The camera moved closer / farther: every reading + ``mm`` millimetres (background stays 0)."""
    mm: float

    @property
    def name(self) -> str:
        return f"depth offset {self.mm:+g} mm"

    def __call__(self, rgb, depth, rng=None):
        rgb, depth = _check(rgb, depth)
        return rgb.copy(), _to_depth(depth + _depth_units(depth, self.mm), depth)


# ---- more everyday nuisances (issue 12's "perturbations you will not see"): not in DEFAULT_SUITE --------------

@dataclass(frozen=True)
class Gamma:
    """A camera tone curve: each RGB level v -> 255 * (v / 255) ** g (g < 1 brightens the mid-tones, g > 1
    darkens them; 0 and 255 stay), applied through a 256-entry table."""
    g: float

    @property
    def name(self) -> str:
        return f"gamma {self.g:g}"

    def __call__(self, rgb, depth, rng=None):
        rgb, depth = _check(rgb, depth)
        lut = _rgb_levels(255.0 * (np.arange(256) / 255.0) ** float(self.g))     # (256,) uint8
        return lut[rgb], depth.copy()


@dataclass(frozen=True)
class Offset:
    """An additive brightness change (black level, ambient light): RGB + ``levels``, clipped to 0..255."""
    levels: float

    @property
    def name(self) -> str:
        return f"offset {self.levels:+g} levels"

    def __call__(self, rgb, depth, rng=None):
        rgb, depth = _check(rgb, depth)
        return _rgb_levels(rgb.astype(np.float32) + np.float32(self.levels)), depth.copy()


@dataclass(frozen=True)
class Contrast:
    """A contrast change about mid-grey: RGB -> (v - 128) * factor + 128, clipped to 0..255."""
    factor: float

    @property
    def name(self) -> str:
        return f"contrast {self.factor:g}"

    def __call__(self, rgb, depth, rng=None):
        rgb, depth = _check(rgb, depth)
        return _rgb_levels((rgb.astype(np.float32) - 128) * np.float32(self.factor) + 128), depth.copy()


def kernel_radius(sigma: float) -> int:
    """r = ceil(3 sigma), at least 1: the half-width in pixels of ``gaussian_kernel(sigma)``."""
    return max(1, int(np.ceil(3.0 * sigma)))


def gaussian_kernel(sigma: float) -> np.ndarray:
    """The 1-D Gaussian of standard deviation ``sigma`` pixels, sampled at the integers -r..r with
    r = kernel_radius(sigma) = ceil(3 sigma) (at least 1), normalised to sum 1: shape (2r + 1,) float64."""
    r = kernel_radius(sigma)
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _separable(a: np.ndarray, k: np.ndarray) -> np.ndarray:
    """a (H, W, C) float64 convolved with the 1-D kernel k (2r + 1,) along rows, then columns, the border
    pixels repeated outwards: (H, W, C) float64."""
    r = len(k) // 2
    H, W = a.shape[:2]
    a = np.pad(a, ((r, r), (r, r), (0, 0)), mode="edge")                           # (H + 2r, W + 2r, C)
    a = sum(w * a[i:i + H] for i, w in enumerate(k))                                # (H, W + 2r, C)
    return sum(w * a[:, i:i + W] for i, w in enumerate(k))                          # (H, W, C)


@dataclass(frozen=True)
class Blur:
    """Defocus / motion-free blur of the RGB: a Gaussian of ``sigma`` raw pixels (separable: rows, then
    columns; the frame's border pixels are repeated outwards, so a constant image stays constant).
    Depth is unchanged; sigma 0 leaves the frame as it is.

    ``foreground_only`` (``fg-blur:SIGMA``): pixels with a depth reading (m = depth > 0, H x W) are blurred
    from such pixels only, sum(w m rgb) / sum(w m) over the same kernel (normalised convolution: no black
    background bleeds in); pixels without a reading keep their RGB. On a frame with a reading everywhere it
    equals the plain blur exactly."""
    sigma: float
    foreground_only: bool = False

    @property
    def name(self) -> str:
        return f"{'fg-' if self.foreground_only else ''}blur {self.sigma:g} px"

    def __call__(self, rgb, depth, rng=None):
        rgb, depth = _check(rgb, depth)
        if self.sigma == 0:
            return rgb.copy(), depth.copy()
        refuse_too_large(self, depth.shape)
        k = gaussian_kernel(self.sigma)
        if not self.foreground_only:
            return _rgb_levels(_separable(rgb.astype(np.float64), k)), depth.copy()
        m = (depth > 0).astype(np.float64)[..., None]                                 # (H, W, 1) foreground
        num = _separable(rgb * m, k)                                                 # (H, W, 3): sum w m rgb
        den = _separable(m, k)                                                       # (H, W, 1): sum w m
        # times the kernel's own sum (1 up to rounding: the same sums on ones), so that an all-foreground
        # neighbourhood gives exactly the plain blur's value
        full = _separable(np.ones((1, 1, 1)), k)[0, 0]                               # (1,)
        fg = m[..., 0] > 0                                                           # den >= centre weight > 0 there
        out = rgb.copy()
        out[fg] = _rgb_levels(num[fg] * (full / den[fg]))
        return out, depth.copy()


SHARPEN_SIGMA = 1.0     # raw pixels: the Gaussian Sharpen subtracts


@dataclass(frozen=True)
class Sharpen:
    """A camera's sharpening (unsharp mask): RGB + ``amount`` (RGB - blurred), the blur Blur's Gaussian of sigma 1 px
    (the same edge-repeat padding, float64), rounded and clipped to 0..255; amount 0 leaves the frame as it is.
    Depth is unchanged. (Audit 31 #4: ISP sharpening differs from camera to camera.)"""
    amount: float

    @property
    def name(self) -> str:
        return f"sharpen {self.amount:g}"

    def __call__(self, rgb, depth, rng=None):
        rgb, depth = _check(rgb, depth)
        refuse_too_large(self, depth.shape)
        blurred = _separable(rgb.astype(np.float64), gaussian_kernel(SHARPEN_SIGMA))    # (H, W, 3)
        return _rgb_levels(rgb + self.amount * (rgb - blurred)), depth.copy()


def _direction(degrees: float) -> tuple[float, float]:
    """(cos, sin) of ``degrees``: the direction DEG in the image, x right and y UP (0: right, 90: up)."""
    t = np.deg2rad(degrees)
    return np.cos(t), np.sin(t)


@dataclass(frozen=True)
class LightRamp:
    """Light from one side (a window, a lamp): RGB * (1 + ``amplitude`` t), rounded and clipped, t going linearly from
    -1 to +1 across the frame along the direction ``degrees`` (0: brighter to the right, 90: brighter upwards):
    t = ((x - cx) cos - (y - cy) sin) / ((W - 1) / 2 |cos| + (H - 1) / 2 |sin|) with x right, y down and the centre
    (cy, cx) = ((H - 1) / 2, (W - 1) / 2), so t = +-1 at the frame's farthest pixels. Depth unchanged. (Audit 31 #2:
    the suite's light was global only.)"""
    amplitude: float
    degrees: float

    @property
    def name(self) -> str:
        return f"light ramp {100 * self.amplitude:g}% {self.degrees:g} deg"

    def __call__(self, rgb, depth, rng=None):
        rgb, depth = _check(rgb, depth)
        H, W = depth.shape
        c, s = _direction(self.degrees)
        y, x = np.mgrid[0:H, 0:W].astype(np.float64)                                   # (H, W) each
        cy, cx = (H - 1) / 2, (W - 1) / 2
        t = ((x - cx) * c - (y - cy) * s) / ((W - 1) / 2 * abs(c) + (H - 1) / 2 * abs(s))   # (H, W) in -1..1
        return _rgb_levels(rgb * (1 + self.amplitude * t)[..., None]), depth.copy()


@dataclass(frozen=True)
class Shadow:
    """A shadow over half the object (an arm between lamp and object): RGB * (1 - ``amount`` w), rounded, where
    w = clip(0.5 - s / 4, 0, 1) and s = (x - mx) cos - (y - my) sin is the signed distance in pixels from the
    foreground's (depth > 0) centroid (my, mx) along the direction ``degrees`` (x right, y up as LightRamp): w = 1
    beyond 2 px on the side AWAY from DEG (DEG 0 shades the left half), 0 beyond 2 px towards it, a 4-px soft edge
    between. A frame without foreground is returned unchanged. Depth unchanged. (Audit 31 #3.)"""
    amount: float
    degrees: float

    @property
    def name(self) -> str:
        return f"shadow {100 * self.amount:g}% {self.degrees:g} deg"

    def __call__(self, rgb, depth, rng=None):
        rgb, depth = _check(rgb, depth)
        fg = depth > 0
        if not fg.any():
            return rgb.copy(), depth.copy()
        yy, xx = np.nonzero(fg)
        my, mx = yy.mean(), xx.mean()                                                  # float64 centroid
        H, W = depth.shape
        c, s = _direction(self.degrees)
        y, x = np.mgrid[0:H, 0:W].astype(np.float64)                                   # (H, W) each
        w = np.clip(0.5 - ((x - mx) * c - (y - my) * s) / 4, 0, 1)                     # (H, W) shade weight
        return _rgb_levels(rgb * (1 - self.amount * w)[..., None]), depth.copy()


@dataclass(frozen=True)
class Jpeg:
    """Compression: the RGB re-encoded as a JPEG of ``quality`` 1..100 (Pillow's encoder, its default
    4:2:0 chroma subsampling) and decoded again. Depth is unchanged."""
    quality: int

    @property
    def name(self) -> str:
        return f"jpeg q{self.quality}"

    def __call__(self, rgb, depth, rng=None):
        import io

        from PIL import Image
        rgb, depth = _check(rgb, depth)
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(rgb)).save(buf, "JPEG", quality=int(self.quality))
        buf.seek(0)
        with Image.open(buf) as im:
            out = np.array(im.convert("RGB"))
        return out, depth.copy()


@dataclass(frozen=True)
class DepthHoles:
    """Depth dropouts: each depth reading independently lost (set to 0 = no reading) with probability
    ``fraction``, drawn from ``rng``. Background stays background; no reading is created; RGB unchanged."""
    fraction: float

    @property
    def name(self) -> str:
        return f"depth holes {100 * self.fraction:g}%"

    def __call__(self, rgb, depth, rng):
        rgb, depth = _check(rgb, depth)
        out = depth.copy()
        out[(depth > 0) & (rng.random(depth.shape) < self.fraction)] = 0
        return rgb.copy(), out


@dataclass(frozen=True)
class DepthEdgeHoles:
    """Depth dropouts at the silhouette: each reading within 2 px (4-neighbour steps) of a pixel without a
    reading lost (set to 0) with probability ``fraction``, drawn from ``rng`` (structured-light and
    time-of-flight sensors lose depth at object edges). RGB unchanged. (Issue 12's sensor noise; first
    measured by an outside check, audit 18.) Assumes a PRE-MASKED depth, as kinect-rgbd's: the background
    reads 0, so the neighbours of ``depth == 0`` are the object's silhouette (and the rims of existing
    dropouts). On a raw camera frame (background readings > 0, or outside the model's near..far range) it
    drops readings only next to existing dropouts, not at the object's edge: mask the depth first."""
    fraction: float

    @property
    def name(self) -> str:
        return f"depth edge holes {100 * self.fraction:g}%"

    def __call__(self, rgb, depth, rng):
        rgb, depth = _check(rgb, depth)
        near = depth == 0
        for _ in range(2):                                   # the background grown by 2 px
            grown = near.copy()
            grown[1:] |= near[:-1]
            grown[:-1] |= near[1:]
            grown[:, 1:] |= near[:, :-1]
            grown[:, :-1] |= near[:, 1:]
            near = grown
        out = depth.copy()
        out[(depth > 0) & near & (rng.random(depth.shape) < self.fraction)] = 0
        return rgb.copy(), out


@dataclass(frozen=True)
class DepthEdgeSpurs:
    """Readings just OUTSIDE the silhouette (a ragged edge; a time-of-flight camera's mixed pixels), the opposite of
    DepthEdgeHoles: each pixel without a reading that touches one with a reading (8-neighbours) takes, with
    probability ``fraction`` drawn from ``rng``, the depth and RGB of that neighbour (of several, the one with the
    largest reading, the farthest on kinect-rgbd's linear 8-bit depth; ties: the first in row-major order). The
    neighbours are the input frame's (one pixel of growth at most); readings are never removed. Audit 31 #1 (its
    "grow": 10 % of that ring took sphere to 50 % false alarms). Assumes a PRE-MASKED depth, as DepthEdgeHoles."""
    fraction: float

    @property
    def name(self) -> str:
        return f"depth edge spurs {100 * self.fraction:g}%"

    def __call__(self, rgb, depth, rng):
        rgb, depth = _check(rgb, depth)
        H, W = depth.shape
        pad_d = np.pad(depth, 1)                                          # (H + 2, W + 2), outside: no reading
        pad_r = np.pad(rgb, ((1, 1), (1, 1), (0, 0)))                     # (H + 2, W + 2, 3)
        best = np.zeros_like(depth)                                       # (H, W) the largest neighbouring reading
        colour = np.zeros_like(rgb)                                       # (H, W, 3) that neighbour's RGB
        for dy, dx in [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]:
            nb = pad_d[1 + dy:1 + dy + H, 1 + dx:1 + dx + W]
            take = nb > best
            best = np.where(take, nb, best)
            colour = np.where(take[..., None], pad_r[1 + dy:1 + dy + H, 1 + dx:1 + dx + W], colour)
        spur = (depth == 0) & (best > 0) & (rng.random(depth.shape) < self.fraction)
        out_rgb, out_depth = rgb.copy(), depth.copy()
        out_depth[spur] = best[spur]
        out_rgb[spur] = colour[spur]
        return out_rgb, out_depth


@dataclass(frozen=True)
class DepthEdgeErode:
    """A silhouette ``px`` pixels narrower (another camera's or mask's edge; audit 31 #9: one pixel less failed all
    three shipped files): ``px`` times, every reading with an 8-neighbour INSIDE the frame that has no reading is
    set to 0 and its RGB to 0 (the capture's masking); pixels outside the frame do not count as background; each
    pass works on the previous pass's frame (one ring per pass); deterministic (``rng`` unused). Stops early once
    no reading is left. Its opposite, one pixel wider, is ``depth-edge-spurs:1``. Assumes a PRE-MASKED depth."""
    px: int

    @property
    def name(self) -> str:
        return f"depth edge erode {self.px} px"

    def __call__(self, rgb, depth, rng=None):
        rgb, depth = _check(rgb, depth)
        out_rgb, out_depth = rgb.copy(), depth.copy()
        H, W = depth.shape
        for _ in range(self.px):
            if not out_depth.any():
                break
            bg = np.pad(out_depth == 0, 1, constant_values=False)         # (H + 2, W + 2), outside: not background
            near = np.zeros((H, W), bool)                                  # (H, W) an 8-neighbour (or itself) empty
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    near |= bg[1 + dy:1 + dy + H, 1 + dx:1 + dx + W]
            drop = (out_depth > 0) & near
            out_depth[drop] = 0
            out_rgb[drop] = 0
        return out_rgb, out_depth


def _warp(rgb: np.ndarray, depth: np.ndarray, inverse: np.ndarray,
          foreground_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Resample a frame (rgb H x W x 3 uint8, depth H x W) about its centre ((H - 1) / 2, (W - 1) / 2):
    output pixel p (offset from the centre, (dy, dx)) takes the frame at the centre + inverse @ p (2 x 2).
    Depth: the nearest pixel; RGB: bilinear between the four pixels around that point (the border pixels
    repeated for points within half a pixel outside); a pixel whose nearest source pixel lies outside the
    frame is vacated: depth 0 (background) and RGB 0.

    ``foreground_only``: the RGB of an output pixel with a reading (nearest depth > 0) is interpolated from the
    source pixels with a reading only, sum(w m rgb) / sum(w m) with the bilinear weights w and m = depth > 0
    (its nearest source pixel has a reading and bilinear weight >= 0.25, so the sum is > 0); output pixels
    without a reading get RGB 0. With a reading everywhere, the same frame as without."""
    H, W = depth.shape
    cy, cx = (H - 1) / 2.0, (W - 1) / 2.0
    dy, dx = np.mgrid[0:H, 0:W].astype(np.float64)
    dy, dx = dy - cy, dx - cx
    # source coordinates (H, W), rounded to 1e-9 px: the float noise of cos / sin (cos 90 deg = 6e-17) must not
    # tip a point lying exactly between two pixels to one side on some rows and the other on others
    sy = np.round(cy + inverse[0, 0] * dy + inverse[0, 1] * dx, 9)
    sx = np.round(cx + inverse[1, 0] * dy + inverse[1, 1] * dx, 9)
    ny, nx = np.floor(sy + 0.5).astype(np.int64), np.floor(sx + 0.5).astype(np.int64)
    inside = (ny >= 0) & (ny < H) & (nx >= 0) & (nx < W)                            # (H, W) bool
    depth_out = np.zeros_like(depth)
    depth_out[inside] = depth[ny[inside], nx[inside]]
    y0, x0 = np.floor(sy), np.floor(sx)
    fy, fx = (sy - y0)[..., None], (sx - x0)[..., None]                            # (H, W, 1) weights
    y0i, x0i = y0.astype(np.int64), x0.astype(np.int64)
    ya, yb = np.clip(y0i, 0, H - 1), np.clip(y0i + 1, 0, H - 1)
    xa, xb = np.clip(x0i, 0, W - 1), np.clip(x0i + 1, 0, W - 1)

    def bilinear(a):                                                               # (H, W, C) -> (H, W, C)
        return ((1 - fy) * ((1 - fx) * a[ya, xa] + fx * a[ya, xb])
                + fy * ((1 - fx) * a[yb, xa] + fx * a[yb, xb]))

    rgb_out = np.zeros_like(rgb)
    if not foreground_only:
        rgb_out[inside] = _rgb_levels(bilinear(rgb.astype(np.float64))[inside])
        return rgb_out, depth_out
    m = (depth > 0).astype(np.float64)[..., None]                                  # (H, W, 1) foreground
    keep = inside & (depth_out > 0)                                                # (H, W) output foreground
    num, den = bilinear(rgb * m)[keep], bilinear(m)[keep]                          # (N, 3): sum w m rgb, (N, 1)
    # times the weights' own sum (1 up to rounding: the same sums on ones), so that an all-foreground
    # neighbourhood gives exactly the plain warp's value
    full = bilinear(np.ones_like(m))[keep]                                         # (N, 1)
    rgb_out[keep] = _rgb_levels(num * (full / den))
    return rgb_out, depth_out


@dataclass(frozen=True)
class Rotate:
    """In-plane camera roll: the image content rotated by ``degrees`` about the frame's centre,
    counter-clockwise as displayed for positive angles (as ``np.rot90`` and Pillow's ``Image.rotate``).
    Depth nearest-neighbour, RGB bilinear; vacated pixels background (depth 0, RGB 0).
    ``foreground_only`` (``fg-rotate:DEG``): the RGB interpolated from pixels with a depth reading only, RGB 0
    where the output has none (``_warp``)."""
    degrees: float
    foreground_only: bool = False

    @property
    def name(self) -> str:
        return f"{'fg-' if self.foreground_only else ''}rotate {self.degrees:+g} deg"

    def __call__(self, rgb, depth, rng=None):
        rgb, depth = _check(rgb, depth)
        t = np.deg2rad(self.degrees)
        c, s = np.cos(t), np.sin(t)
        # (y down, x right): the output offset (dy, dx) shows the frame at (dy cos + dx sin, dx cos - dy sin)
        return _warp(rgb, depth, np.array([[c, s], [-s, c]]), self.foreground_only)


@dataclass(frozen=True)
class Scale:
    """Zoom about the frame's centre by ``factor`` (the camera moved closer / farther, or another focal
    length): > 1 enlarges the content and crops the border, < 1 shrinks it and pads with background
    (depth 0, RGB 0). Depth nearest-neighbour, RGB bilinear; depth values are not changed.
    ``foreground_only`` (``fg-scale:S``): the RGB interpolated from pixels with a depth reading only, RGB 0
    where the output has none (``_warp``)."""
    factor: float
    foreground_only: bool = False

    @property
    def name(self) -> str:
        return f"{'fg-' if self.foreground_only else ''}scale {self.factor:g}x"

    def __call__(self, rgb, depth, rng=None):
        rgb, depth = _check(rgb, depth)
        return _warp(rgb, depth, np.eye(2) / float(self.factor), self.foreground_only)


@dataclass(frozen=True)
class Compose:
    """Several nuisances in order (e.g. a new scene: other light + camera shift + depth offset)."""
    parts: tuple
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or " + ".join(p.name for p in self.parts)

    def __call__(self, rgb, depth, rng=None):
        for p in self.parts:
            rgb, depth = p(rgb, depth, rng)
        return rgb, depth


def largest_shift(nuisance) -> tuple:
    """(dy, dx): the most raw pixels one shift of ``nuisance`` moves the content down/up and sideways
    (Shift: (|dy|, |dx|), RandomShift: (px, px), Compose: the largest of its parts; (0, 0) for the others).
    A shift of at least the frame's height (dy) or width (dx) leaves nothing of the frame (``too_large_for``:
    ``edge-ad eval``, Shift and RandomShift refuse it; parse_nuisance cannot: it does not know the frame size)."""
    if isinstance(nuisance, Shift):
        return abs(nuisance.dy), abs(nuisance.dx)
    if isinstance(nuisance, RandomShift):
        return nuisance.px, nuisance.px
    if isinstance(nuisance, Compose):
        parts = [largest_shift(p) for p in nuisance.parts]
        return max(p[0] for p in parts), max(p[1] for p in parts)
    return 0, 0


def largest_blur_radius(nuisance) -> int:
    """The radius in raw pixels of the widest Gaussian kernel ``nuisance`` blurs with (Blur, fg-blur included:
    ceil(3 sigma), at least 1, as gaussian_kernel; Sharpen: 3, its blur's; Compose: the widest of its parts; 0
    without a blur). A kernel as wide as the frame's smaller side leaves only its mean colour, and Blur pads the
    frame by the radius: blur:1e6 asked for 786 TiB (``too_large_for``: ``edge-ad eval`` refuses it before scoring,
    as it refuses a shift out of the frame, and Blur and Sharpen refuse it themselves)."""
    if isinstance(nuisance, Blur):
        return kernel_radius(nuisance.sigma) if nuisance.sigma > 0 else 0
    if isinstance(nuisance, Sharpen):
        return kernel_radius(SHARPEN_SIGMA)
    if isinstance(nuisance, Compose):
        return max((largest_blur_radius(p) for p in nuisance.parts), default=0)
    return 0


def too_large_for(nuisance, height: int, width: int):
    """Why ``nuisance`` cannot apply to a frame of ``height`` x ``width`` raw pixels, or None when it can: a shift
    of at least the frame's height or width (``largest_shift``: nothing of the frame would be left) or a blur
    kernel as wide as its smaller side (``largest_blur_radius``: only its mean colour would be left, and the pad
    grows with the radius). The text follows the nuisance's name or label: ``edge-ad eval`` refuses such a suite
    row before scoring; ``Shift``, ``RandomShift`` and ``Blur`` refuse themselves (``refuse_too_large``)."""
    dy, dx = largest_shift(nuisance)
    if dy >= height or dx >= width:
        moved, side = (f"{dy} px down/up", f"height ({height} px)") if dy >= height else \
            (f"{dx} px sideways", f"width ({width} px)")
        return f"moves the content by {moved}, at least the frame's {side}: nothing of the frame would be left"
    r = largest_blur_radius(nuisance)
    if r >= min(height, width):
        return (f"blurs with a kernel of radius {r} px (3 sigma), at least the frame's smaller side "
                f"({min(height, width)} px): only its mean colour would be left (a typo for a sigma of a few px?)")
    return None


def refuse_too_large(nuisance, shape: tuple) -> None:
    """ValueError "<name> <too_large_for's reason>" when ``nuisance`` cannot apply to a frame of ``shape`` (H, W, ...):
    checked before any work, so shift:1000000000000 or blur:1e6 through the Python API fail at once."""
    why = too_large_for(nuisance, shape[0], shape[1])
    if why is not None:
        raise ValueError(f"{nuisance.name} {why}")


NUISANCE_SYNTAX = ("brightness:F | wb:R,G,B | shift:DY,DX | shift:PX (random direction) | mirror | "
                   "rgb-noise:SIGMA | depth-noise:SIGMA_MM | depth-offset:MM | gamma:G (> 0) | offset:LEVELS | "
                   "contrast:C (>= 0) | blur:SIGMA_PX | jpeg:Q (1..100) | depth-holes:P (0..1) | depth-edge-holes:P (0..1) | "
                   "depth-edge-spurs:P (0..1) | depth-edge-erode:N (whole >= 1) | rotate:DEG | "
                   "scale:S (> 0) | fg-blur:SIGMA_PX | fg-rotate:DEG | fg-scale:S (> 0) (fg-: RGB resampled from "
                   "pixels with a depth reading only) | light-ramp:A,DEG (0 <= A < 1) | shadow:A,DEG (0..1) | "
                   "sharpen:AMOUNT (>= 0); join with '+'")


def _is_int(v: float) -> bool:
    return v == int(v)


# kind -> (number of values, check of the values, what the check asks for, constructor)
_KINDS = {
    "brightness": (1, lambda v: v[0] >= 0, "a factor >= 0", lambda v: Brightness(v[0])),
    "wb": (3, lambda v: min(v) >= 0, "three gains >= 0", lambda v: WhiteBalance(tuple(v))),
    "mirror": (0, lambda v: True, "no value", lambda v: Mirror()),
    "rgb-noise": (1, lambda v: v[0] >= 0, "a sigma >= 0 (8-bit levels)", lambda v: RgbNoise(v[0])),
    "depth-noise": (1, lambda v: v[0] >= 0, "a sigma >= 0 (mm)", lambda v: DepthNoise(v[0])),
    "depth-offset": (1, lambda v: True, "millimetres", lambda v: DepthOffset(v[0])),
    "gamma": (1, lambda v: v[0] > 0, "an exponent > 0", lambda v: Gamma(v[0])),
    "offset": (1, lambda v: True, "RGB levels (e.g. 30 or -30)", lambda v: Offset(v[0])),
    "contrast": (1, lambda v: v[0] >= 0, "a factor >= 0", lambda v: Contrast(v[0])),
    "blur": (1, lambda v: v[0] >= 0, "a sigma >= 0 (raw pixels)", lambda v: Blur(v[0])),
    "jpeg": (1, lambda v: _is_int(v[0]) and 1 <= v[0] <= 100, "an integer quality 1..100",
             lambda v: Jpeg(int(v[0]))),
    "depth-holes": (1, lambda v: 0 <= v[0] <= 1, "a fraction of the readings 0..1", lambda v: DepthHoles(v[0])),
    "depth-edge-holes": (1, lambda v: 0 <= v[0] <= 1, "a fraction 0..1 of the readings within 2 px of the edge",
                         lambda v: DepthEdgeHoles(v[0])),
    "depth-edge-spurs": (1, lambda v: 0 <= v[0] <= 1, "a fraction 0..1 of the pixels without a reading touching the "
                         "object", lambda v: DepthEdgeSpurs(v[0])),
    "depth-edge-erode": (1, lambda v: _is_int(v[0]) and v[0] >= 1, "a whole number N >= 1 of edge rings (px)",
                         lambda v: DepthEdgeErode(int(v[0]))),
    "rotate": (1, lambda v: True, "degrees (counter-clockwise)", lambda v: Rotate(v[0])),
    "scale": (1, lambda v: v[0] > 0, "a zoom factor > 0", lambda v: Scale(v[0])),
    "fg-blur": (1, lambda v: v[0] >= 0, "a sigma >= 0 (raw pixels)", lambda v: Blur(v[0], foreground_only=True)),
    "fg-rotate": (1, lambda v: True, "degrees (counter-clockwise)", lambda v: Rotate(v[0], foreground_only=True)),
    "fg-scale": (1, lambda v: v[0] > 0, "a zoom factor > 0", lambda v: Scale(v[0], foreground_only=True)),
    "light-ramp": (2, lambda v: 0 <= v[0] < 1, "an amplitude 0 <= A < 1 and a direction in degrees (A,DEG)",
                   lambda v: LightRamp(v[0], v[1])),
    "shadow": (2, lambda v: 0 <= v[0] <= 1, "a darkening 0..1 and a direction in degrees (A,DEG)",
               lambda v: Shadow(v[0], v[1])),
    "sharpen": (1, lambda v: v[0] >= 0, "an amount >= 0", lambda v: Sharpen(v[0])),
}


def _parse_one(kind: str, arg: str):
    """One nuisance from ``kind`` and the text after its ':'; ValueError(what is wrong) otherwise."""
    try:
        vals = [float(v) for v in arg.split(",")] if arg else []
    except ValueError:
        raise ValueError(f"{arg!r} is not a number or a comma-separated list of numbers") from None
    if not all(np.isfinite(vals)):
        raise ValueError(f"{arg!r}: values must be finite")
    if kind == "shift":
        if len(vals) == 1 and _is_int(vals[0]) and vals[0] >= 1:
            return RandomShift(int(vals[0]))
        if len(vals) == 2 and all(_is_int(v) for v in vals):
            return Shift(int(vals[0]), int(vals[1]))
        raise ValueError("shift takes an integer PX >= 1 or two integers DY,DX")
    if kind not in _KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    n, ok, wants, make = _KINDS[kind]
    if len(vals) != n or not ok(vals):
        raise ValueError(f"{kind} takes {wants}")
    return make(vals)


def parse_nuisance(text: str):
    """A nuisance from its short text, e.g. "brightness:1.25", "wb:1.15,1,0.85", "shift:2",
    "shift:1,-2", "mirror", "rgb-noise:8", "depth-noise:10", "depth-offset:30", "gamma:0.8",
    "offset:-30", "contrast:1.2", "blur:1", "jpeg:40", "depth-holes:0.05", "rotate:3", "scale:1.05",
    "fg-blur:1", "fg-rotate:3", "fg-scale:1.05", or several joined with "+" (a '+' before a number is its
    sign: "offset:+30"). Raises ValueError naming what is wrong and the syntax."""
    parts = [p.strip() for p in re.split(r"\+(?=\s*[A-Za-z])", str(text)) if p.strip()]
    if not parts:
        raise ValueError(f"empty nuisance; syntax: {NUISANCE_SYNTAX}")
    out = []
    for p in parts:
        kind, _, arg = p.partition(":")
        try:
            out.append(_parse_one(kind.strip(), arg.strip()))
        except ValueError as e:
            raise ValueError(f"cannot read nuisance {p!r}: {e}; syntax: {NUISANCE_SYNTAX}") from None
    return out[0] if len(out) == 1 else Compose(tuple(out))


# The suite of ``edge-ad eval --nuisance`` (the everyday nuisances: about +-25 % light, colour
# casts, a camera shift of a few pixels, mirrored poses, RGB and depth sensor noise).
DEFAULT_SUITE = ("brightness:1.25", "brightness:0.75", "wb:1.15,1,0.85", "wb:0.85,1,1.15", "shift:2", "shift:3",
                 "mirror", "rgb-noise:8", "depth-noise:10")


def frame_rng(seed: int, frame: int, nuisance: int = 0) -> np.random.Generator:
    """The generator of frame ``frame`` under nuisance number ``nuisance`` of a suite run with ``seed``."""
    return np.random.default_rng([int(seed), int(frame), int(nuisance)])


def apply_to_frames(nuisance, frames: Sequence[tuple], seed: int = 0, index: int = 0) -> list[tuple]:
    """[(rgb, depth)] -> the same frames under ``nuisance`` (frame i uses frame_rng(seed, i, index))."""
    return [nuisance(rgb, depth, frame_rng(seed, i, index)) for i, (rgb, depth) in enumerate(frames)]
