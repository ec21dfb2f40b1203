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
``DEFAULT_SUITE`` is the suite ``edge-ad eval --nuisance`` runs; ``frame_rng(seed, frame, k)`` gives
the per-frame generator so that a suite is reproducible frame by frame.
"""
from __future__ import annotations

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


@dataclass(frozen=True)
class Brightness:
    """Global illumination: RGB * factor (e.g. 1.25 = +25 %), clipped to 0..255."""
    factor: float

    @property
    def name(self) -> str:
        return f"brightness {self.factor - 1:+.0%}"

    def __call__(self, rgb, depth, rng=None):
        rgb, depth = _check(rgb, depth)
        return np.clip(np.rint(rgb * np.float32(self.factor)), 0, 255).astype(np.uint8), depth.copy()


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
        return np.clip(np.rint(rgb * g), 0, 255).astype(np.uint8), depth.copy()


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
        return _shift(rgb, self.dy, self.dx), _shift(depth, self.dy, self.dx)


@dataclass(frozen=True)
class RandomShift:
    """A shift of exactly ``px`` pixels (max(|dy|, |dx|) == px) in a direction drawn per frame."""
    px: int

    @property
    def name(self) -> str:
        return f"shift {self.px} px"

    def __call__(self, rgb, depth, rng):
        moves = [(dy, dx) for dy in range(-self.px, self.px + 1) for dx in range(-self.px, self.px + 1)
                 if max(abs(dy), abs(dx)) == self.px]
        dy, dx = moves[int(rng.integers(len(moves)))]
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
        return np.clip(np.rint(noisy), 0, 255).astype(np.uint8), depth.copy()


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


NUISANCE_SYNTAX = ("brightness:F | wb:R,G,B | shift:DY,DX | shift:PX (random direction) | mirror | "
                   "rgb-noise:SIGMA | depth-noise:SIGMA_MM | depth-offset:MM; join with '+'")


def parse_nuisance(text: str):
    """A nuisance from its short text, e.g. "brightness:1.25", "wb:1.15,1,0.85", "shift:2",
    "shift:1,-2", "mirror", "rgb-noise:8", "depth-noise:10", "depth-offset:30", or several joined
    with "+". Raises ValueError naming the syntax."""
    parts = [p.strip() for p in str(text).split("+") if p.strip()]
    if not parts:
        raise ValueError(f"empty nuisance; syntax: {NUISANCE_SYNTAX}")
    out = []
    for p in parts:
        kind, _, arg = p.partition(":")
        try:
            vals = [float(v) for v in arg.split(",")] if arg else []
            if kind == "brightness" and len(vals) == 1 and vals[0] >= 0:
                out.append(Brightness(vals[0]))
            elif kind == "wb" and len(vals) == 3 and min(vals) >= 0:
                out.append(WhiteBalance(tuple(vals)))
            elif kind == "shift" and len(vals) == 1 and vals[0] == int(vals[0]) and vals[0] >= 1:
                out.append(RandomShift(int(vals[0])))
            elif kind == "shift" and len(vals) == 2 and all(v == int(v) for v in vals):
                out.append(Shift(int(vals[0]), int(vals[1])))
            elif kind == "mirror" and not vals:
                out.append(Mirror())
            elif kind == "rgb-noise" and len(vals) == 1 and vals[0] >= 0:
                out.append(RgbNoise(vals[0]))
            elif kind == "depth-noise" and len(vals) == 1 and vals[0] >= 0:
                out.append(DepthNoise(vals[0]))
            elif kind == "depth-offset" and len(vals) == 1:
                out.append(DepthOffset(vals[0]))
            else:
                raise ValueError
        except ValueError:
            raise ValueError(f"cannot read nuisance {p!r}; syntax: {NUISANCE_SYNTAX}") from None
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
