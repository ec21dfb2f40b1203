"""RGB-only nuisances of the light, the colour and the camera's RGB pipeline: brightness, wb, gamma, offset,
contrast, light-ramp, shadow, flicker-band, rgb-noise, jpeg. Depth is never changed."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .frame import check_frame, object_band, rgb_levels


@dataclass(frozen=True)
class Brightness:
    """Global illumination: RGB * factor (e.g. 1.25 = +25 %), clipped to 0..255."""
    factor: float

    @property
    def name(self) -> str:
        return f"brightness {self.factor - 1:+.0%}"

    def __call__(self, rgb, depth, rng=None):
        rgb, depth = check_frame(rgb, depth)
        return rgb_levels(rgb * np.float32(self.factor)), depth.copy()


@dataclass(frozen=True)
class WhiteBalance:
    """A colour cast: per-channel gains (r, g, b), e.g. (1.15, 1, 0.85) = warmer light."""
    gains: tuple

    @property
    def name(self) -> str:
        return "white balance " + "/".join(f"{g:g}" for g in self.gains)

    def __call__(self, rgb, depth, rng=None):
        rgb, depth = check_frame(rgb, depth)
        g = np.asarray(self.gains, np.float32).reshape(1, 1, 3)
        return rgb_levels(rgb * g), depth.copy()


@dataclass(frozen=True)
class Gamma:
    """A camera tone curve: each RGB level v -> 255 * (v / 255) ** g (g < 1 brightens the mid-tones, g > 1
    darkens them; 0 and 255 stay), applied through a 256-entry table."""
    g: float

    @property
    def name(self) -> str:
        return f"gamma {self.g:g}"

    def __call__(self, rgb, depth, rng=None):
        rgb, depth = check_frame(rgb, depth)
        lut = rgb_levels(255.0 * (np.arange(256) / 255.0) ** float(self.g))      # (256,) uint8
        return lut[rgb], depth.copy()


@dataclass(frozen=True)
class Offset:
    """An additive brightness change (black level, ambient light): RGB + ``levels``, clipped to 0..255."""
    levels: float

    @property
    def name(self) -> str:
        return f"offset {self.levels:+g} levels"

    def __call__(self, rgb, depth, rng=None):
        rgb, depth = check_frame(rgb, depth)
        return rgb_levels(rgb.astype(np.float32) + np.float32(self.levels)), depth.copy()


@dataclass(frozen=True)
class Contrast:
    """A contrast change about mid-grey: RGB -> (v - 128) * factor + 128, clipped to 0..255."""
    factor: float

    @property
    def name(self) -> str:
        return f"contrast {self.factor:g}"

    def __call__(self, rgb, depth, rng=None):
        rgb, depth = check_frame(rgb, depth)
        return rgb_levels((rgb.astype(np.float32) - 128) * np.float32(self.factor) + 128), depth.copy()


@dataclass(frozen=True)
class FlickerBand:
    """A flicker band: ``rows`` raw rows across the object's middle at brightness ``factor`` (a rolling-shutter frame
    exposed shorter than the period of a PWM-dimmed LED: the rows read while the LED was off are darker; audit 34 #8,
    8 rows at 0.5): RGB x factor, rounded and clipped, in the rows of ``object_band`` (centred on the foreground's
    centroid row) across the whole width. Depth unchanged (the depth camera's own IR is not dimmed); deterministic
    (``rng`` unused); a frame without foreground is returned unchanged."""
    rows: int
    factor: float

    @property
    def name(self) -> str:
        return f"flicker band {self.rows} rows x{self.factor:g}"

    def __call__(self, rgb, depth, rng=None):
        rgb, depth = check_frame(rgb, depth)
        out = rgb.copy()
        band = object_band(depth, self.rows)
        if band is not None:
            out[band] = rgb_levels(rgb[band] * np.float32(self.factor))
        return out, depth.copy()


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
        rgb, depth = check_frame(rgb, depth)
        H, W = depth.shape
        c, s = _direction(self.degrees)
        y, x = np.mgrid[0:H, 0:W].astype(np.float64)                                   # (H, W) each
        cy, cx = (H - 1) / 2, (W - 1) / 2
        t = ((x - cx) * c - (y - cy) * s) / ((W - 1) / 2 * abs(c) + (H - 1) / 2 * abs(s))   # (H, W) in -1..1
        return rgb_levels(rgb * (1 + self.amplitude * t)[..., None]), depth.copy()


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
        rgb, depth = check_frame(rgb, depth)
        fg = depth > 0
        if not fg.any():
            return rgb.copy(), depth.copy()
        yy, xx = np.nonzero(fg)
        my, mx = yy.mean(), xx.mean()                                                  # float64 centroid
        H, W = depth.shape
        c, s = _direction(self.degrees)
        y, x = np.mgrid[0:H, 0:W].astype(np.float64)                                   # (H, W) each
        w = np.clip(0.5 - ((x - mx) * c - (y - my) * s) / 4, 0, 1)                     # (H, W) shade weight
        return rgb_levels(rgb * (1 - self.amount * w)[..., None]), depth.copy()


@dataclass(frozen=True)
class RgbNoise:
    """RGB sensor noise: i.i.d. Gaussian, ``sigma`` in 8-bit levels, clipped to 0..255."""
    sigma: float

    @property
    def name(self) -> str:
        return f"rgb noise {self.sigma:g}"

    def __call__(self, rgb, depth, rng):
        rgb, depth = check_frame(rgb, depth)
        noisy = rgb + rng.normal(0.0, self.sigma, rgb.shape)
        return rgb_levels(noisy), depth.copy()


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
        rgb, depth = check_frame(rgb, depth)
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(rgb)).save(buf, "JPEG", quality=int(self.quality))
        buf.seek(0)
        with Image.open(buf) as im:
            out = np.array(im.convert("RGB"))
        return out, depth.copy()
