"""The one preprocessing definition: raw RGB-D frames -> the model's 4-channel input.

Shared by training (models/), export (the manifest stores the spec) and the runtime/cameras.
NumPy + Pillow only, so it runs in the torch-free runtime.

Contract (all fields live in a ``PreprocessSpec`` and in ``manifest.json["preprocess"]``):
  rgb    H x W x 3 uint8
  depth  H x W uint8 (already 8-bit, as in kinect-rgbd: larger = farther, 0 = background)
         or H x W uint16 millimetres (0 = no reading). Millimetres are mapped to 8 bits as
         255 * (d - near_mm) / (far_mm - near_mm); readings outside [near_mm, far_mm] are background.
  Background pixels (depth 0 after mapping) are black in RGB when ``mask_rgb_background``,
  as the capture of kinect-rgbd did.
  Centre-crop to a square, resize to ``resolution`` (area for downscale), then
  (v / 255 - 0.5) / 0.5 per channel -> float32 array (4, resolution, resolution) in [-1, 1].
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image

CHANNELS = ("R", "G", "B", "D")


class FrameError(ValueError):
    """A frame that cannot be scored (wrong shape/dtype, NaN, missing depth, ...)."""


@dataclass(frozen=True)
class PreprocessSpec:
    """Input contract of a model: stored in checkpoints and manifests, never guessed."""

    resolution: int = 64
    mean: float = 0.5
    std: float = 0.5
    # kinect-rgbd's 8-bit depth is consistent with millimetres * 255 / 700 (0..700 mm).
    near_mm: float = 0.0
    far_mm: float = 700.0
    mask_rgb_background: bool = True
    channels: tuple = field(default=CHANNELS)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessSpec":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        unknown = set(d) - set(known)
        if unknown:
            raise ValueError(f"unknown preprocessing fields {sorted(unknown)}; "
                             f"this edge-ad understands {sorted(cls.__dataclass_fields__)}")
        if "channels" in known:
            known["channels"] = tuple(known["channels"])
        spec = cls(**known)
        if spec.channels != CHANNELS:
            raise ValueError(f"unsupported channel order {spec.channels}, expected {CHANNELS}")
        if not spec.far_mm > spec.near_mm >= 0:
            raise ValueError(f"need 0 <= near_mm < far_mm, got {spec.near_mm}, {spec.far_mm}")
        return spec


def _check_rgb(rgb) -> np.ndarray:
    if rgb is None:
        raise FrameError("missing RGB image")
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise FrameError(f"RGB must be H x W x 3, got shape {rgb.shape}")
    if rgb.dtype != np.uint8:
        raise FrameError(f"RGB must be uint8, got {rgb.dtype}")
    if rgb.shape[0] < 8 or rgb.shape[1] < 8:
        raise FrameError(f"RGB image too small: {rgb.shape[:2]}")
    return rgb


def depth_to_8bit(depth, spec: PreprocessSpec) -> np.ndarray:
    """Depth (H x W uint8, or uint16/float millimetres) -> H x W uint8, 0 = background."""
    if depth is None:
        raise FrameError("missing depth image")
    depth = np.asarray(depth)
    if depth.ndim == 3 and depth.shape[2] == 1:
        depth = depth[:, :, 0]
    if depth.ndim != 2:
        raise FrameError(f"depth must be H x W, got shape {depth.shape}")
    if depth.dtype == np.uint8:
        return depth
    if depth.dtype == np.uint16 or np.issubdtype(depth.dtype, np.floating):
        d = depth.astype(np.float64)
        if np.isnan(d).any() or np.isinf(d).any():
            raise FrameError("depth contains NaN or infinite values")
        valid = (d > 0) & (d >= spec.near_mm) & (d <= spec.far_mm)
        scaled = 255.0 * (d - spec.near_mm) / (spec.far_mm - spec.near_mm)
        # a valid reading never maps to 0, which means background
        out = np.where(valid, np.clip(np.rint(scaled), 1, 255), 0)
        return out.astype(np.uint8)
    raise FrameError(f"depth must be uint8, uint16 (mm) or float (mm), got {depth.dtype}")


def _square_resize(img: np.ndarray, size: int, resample) -> np.ndarray:
    h, w = img.shape[:2]
    if h == size and w == size:
        return img
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    img = img[top:top + s, left:left + s]
    if s == size:
        return np.ascontiguousarray(img)
    return np.asarray(Image.fromarray(img).resize((size, size), resample))


def frame_to_uint8(rgb, depth, spec: PreprocessSpec) -> np.ndarray:
    """Raw frame -> (resolution, resolution, 4) uint8 RGBD, background masked, before scaling."""
    rgb = _check_rgb(rgb)
    d8 = depth_to_8bit(depth, spec)
    if d8.shape != rgb.shape[:2]:
        raise FrameError(f"RGB {rgb.shape[:2]} and depth {d8.shape} sizes differ "
                         "(depth must be aligned to colour)")
    if spec.mask_rgb_background:
        rgb = np.where((d8 > 0)[:, :, None], rgb, 0).astype(np.uint8)
    rgb = _square_resize(rgb, spec.resolution, Image.BOX)
    # nearest for depth: averaging across the object edge would invent depths
    d8 = _square_resize(d8, spec.resolution, Image.NEAREST)
    return np.concatenate([rgb, d8[:, :, None]], axis=2)


def normalize_uint8(rgbd: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """(..., H, W, 4) uint8 -> (..., 4, H, W) float32 in [-1, 1]: (v/255 - mean) / std."""
    x = (rgbd.astype(np.float32) / 255.0 - spec.mean) / spec.std
    return np.ascontiguousarray(np.moveaxis(x, -1, -3))


def preprocess(rgb, depth, spec: PreprocessSpec | None = None) -> np.ndarray:
    """Raw frame -> float32 (4, R, R) model input. Raises FrameError naming the problem."""
    spec = spec or PreprocessSpec()
    return normalize_uint8(frame_to_uint8(rgb, depth, spec), spec)


def to_display(x: np.ndarray, spec: PreprocessSpec | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Model-space (4, H, W) in [-1, 1] -> (RGB H x W x 3 uint8, depth H x W uint8) for pictures."""
    spec = spec or PreprocessSpec()
    v = np.clip((np.asarray(x, dtype=np.float32) * spec.std + spec.mean) * 255.0, 0, 255)
    v = np.rint(v).astype(np.uint8)
    return np.moveaxis(v[:3], 0, -1).copy(), v[3].copy()
