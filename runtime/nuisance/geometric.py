"""Where the camera looks from: shift (fixed or random direction), mirror, rotate / fg-rotate, scale / fg-scale,
the frame moved or resampled as a whole (depth and RGB together); rgb-shift, the colour image alone moved against
the depth (a colour camera registered off its depth camera)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .frame import check_frame, rgb_levels
from .limits import largest_shift, refuse_too_large


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
        rgb, depth = check_frame(rgb, depth)
        refuse_too_large(self, depth.shape)
        return _shift(rgb, self.dy, self.dx), _shift(depth, self.dy, self.dx)


@largest_shift.register(Shift)
def _shift_reach(nuisance) -> tuple:
    return abs(nuisance.dy), abs(nuisance.dx)


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
        rgb, depth = check_frame(rgb, depth)
        refuse_too_large(self, depth.shape)
        dy, dx = ring_move(self.px, int(rng.integers(8 * self.px)))
        return Shift(dy, dx)(rgb, depth)


@largest_shift.register(RandomShift)
def _random_shift_reach(nuisance) -> tuple:
    return nuisance.px, nuisance.px


@dataclass(frozen=True)
class Mirror:
    """A mirrored pose: the frame flipped left-right."""

    @property
    def name(self) -> str:
        return "mirror"

    def __call__(self, rgb, depth, rng=None):
        rgb, depth = check_frame(rgb, depth)
        return rgb[:, ::-1].copy(), depth[:, ::-1].copy()


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
    bilinear = _bilinear_at(sy, sx)
    rgb_out = np.zeros_like(rgb)
    if not foreground_only:
        rgb_out[inside] = rgb_levels(bilinear(rgb.astype(np.float64))[inside])
        return rgb_out, depth_out
    m = (depth > 0).astype(np.float64)[..., None]                                  # (H, W, 1) foreground
    keep = inside & (depth_out > 0)                                                # (H, W) output foreground
    num, den = bilinear(rgb * m)[keep], bilinear(m)[keep]                          # (N, 3): sum w m rgb, (N, 1)
    # times the weights' own sum (1 up to rounding: the same sums on ones), so that an all-foreground
    # neighbourhood gives exactly the plain warp's value
    full = bilinear(np.ones_like(m))[keep]                                         # (N, 1)
    rgb_out[keep] = rgb_levels(num * (full / den))
    return rgb_out, depth_out


def _bilinear_at(sy: np.ndarray, sx: np.ndarray):
    """The bilinear sampler at source points (sy, sx), each (H, W) float, of (H, W, C) arrays of an H x W frame:
    bilinear(a) -> (H, W, C) float, a point outside the frame taking the nearest border pixels (clipped indices)."""
    H, W = sy.shape
    y0, x0 = np.floor(sy), np.floor(sx)
    fy, fx = (sy - y0)[..., None], (sx - x0)[..., None]                            # (H, W, 1) weights
    y0i, x0i = y0.astype(np.int64), x0.astype(np.int64)
    ya, yb = np.clip(y0i, 0, H - 1), np.clip(y0i + 1, 0, H - 1)
    xa, xb = np.clip(x0i, 0, W - 1), np.clip(x0i + 1, 0, W - 1)

    def bilinear(a):                                                               # (H, W, C) -> (H, W, C)
        return ((1 - fy) * ((1 - fx) * a[ya, xa] + fx * a[ya, xb])
                + fy * ((1 - fx) * a[yb, xa] + fx * a[yb, xb]))
    return bilinear


@dataclass(frozen=True)
class RgbShift:
    """The colour image registered off the depth image (a bumped colour camera, drifted extrinsics, a colour/depth
    timing offset on a moving robot; audit 34 #1): the RGB content moved by (dy, dx) raw pixels, sub-pixel
    (bilinear; dy > 0 down, dx > 0 right), the depth unchanged. The RGB is resampled as captured, so what enters
    the object's silhouette on one side is the capture's colour outside the object (its background: black on a
    masked capture as kinect-rgbd's, the table on a live camera), points beyond the frame taking its border pixels;
    on the other side the object's colour leaves the silhouette (masked away by preprocessing)."""
    dy: float
    dx: float

    @property
    def name(self) -> str:
        return f"rgb-shift {self.dy:+g},{self.dx:+g} px"

    def __call__(self, rgb, depth, rng=None):
        rgb, depth = check_frame(rgb, depth)
        refuse_too_large(self, depth.shape)
        yy, xx = np.mgrid[0:depth.shape[0], 0:depth.shape[1]].astype(np.float64)
        return rgb_levels(_bilinear_at(yy - self.dy, xx - self.dx)(rgb.astype(np.float64))), depth.copy()


@largest_shift.register(RgbShift)
def _rgb_shift_reach(nuisance) -> tuple:
    return int(np.ceil(abs(nuisance.dy))), int(np.ceil(abs(nuisance.dx)))


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
        rgb, depth = check_frame(rgb, depth)
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
        rgb, depth = check_frame(rgb, depth)
        return _warp(rgb, depth, np.eye(2) / float(self.factor), self.foreground_only)
