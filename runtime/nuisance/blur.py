"""The RGB's sharpness: blur / fg-blur (a separable Gaussian; fg-: from pixels with a depth reading only) and
sharpen (an unsharp mask with the same Gaussian). Depth is never changed."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .frame import check_frame, rgb_levels
from .limits import largest_blur_radius, refuse_too_large


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
        rgb, depth = check_frame(rgb, depth)
        if self.sigma == 0:
            return rgb.copy(), depth.copy()
        refuse_too_large(self, depth.shape)
        k = gaussian_kernel(self.sigma)
        if not self.foreground_only:
            return rgb_levels(_separable(rgb.astype(np.float64), k)), depth.copy()
        m = (depth > 0).astype(np.float64)[..., None]                                 # (H, W, 1) foreground
        num = _separable(rgb * m, k)                                                 # (H, W, 3): sum w m rgb
        den = _separable(m, k)                                                       # (H, W, 1): sum w m
        # times the kernel's own sum (1 up to rounding: the same sums on ones), so that an all-foreground
        # neighbourhood gives exactly the plain blur's value
        full = _separable(np.ones((1, 1, 1)), k)[0, 0]                               # (1,)
        fg = m[..., 0] > 0                                                           # den >= centre weight > 0 there
        out = rgb.copy()
        out[fg] = rgb_levels(num[fg] * (full / den[fg]))
        return out, depth.copy()


@largest_blur_radius.register(Blur)
def _blur_radius(nuisance) -> int:
    return kernel_radius(nuisance.sigma) if nuisance.sigma > 0 else 0


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
        rgb, depth = check_frame(rgb, depth)
        refuse_too_large(self, depth.shape)
        blurred = _separable(rgb.astype(np.float64), gaussian_kernel(SHARPEN_SIGMA))    # (H, W, 3)
        return rgb_levels(rgb + self.amount * (rgb - blurred)), depth.copy()


@largest_blur_radius.register(Sharpen)
def _sharpen_radius(nuisance) -> int:
    return kernel_radius(SHARPEN_SIGMA)
