"""The frame every nuisance takes and returns (``check_frame``) and the value conversions the kinds share: RGB
levels, depth units (8-bit levels or millimetres) and depth readings kept readings."""
from __future__ import annotations

import numpy as np


# kinect-rgbd's 8-bit depth: 255 levels over 0..700 mm (runtime.preprocess.PreprocessSpec)
MM_PER_LEVEL_8BIT = 700.0 / 255.0


def check_frame(rgb, depth, floats: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(rgb, depth) as arrays; ValueError unless rgb is H x W x 3 uint8 and depth the same H x W, uint8 or uint16 (``floats``:
    or float millimetres, for the kinds whose depth work is dtype-free: depth-edge-erode and depth-edge-spurs, which
    the silhouette lever's versions of a 32FC1 frame take; 0 = no reading)."""
    rgb, depth = np.asarray(rgb), np.asarray(depth)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be H x W x 3 uint8, got {rgb.dtype} {rgb.shape}")
    if depth.ndim != 2 or not (depth.dtype in (np.uint8, np.uint16)
                               or (floats and np.issubdtype(depth.dtype, np.floating))):
        raise ValueError(f"depth must be H x W uint8 or uint16{' or float' if floats else ''}, got {depth.dtype} "
                         f"{depth.shape}")
    # the sizes, said as preprocess._camera_rgbd says them (review 35 #5: the lever's versions indexed past a
    # smaller colour image, an IndexError that lost a whole score_batch)
    if depth.shape != rgb.shape[:2]:
        raise ValueError(f"RGB {rgb.shape[1]}x{rgb.shape[0]} and depth {depth.shape[1]}x{depth.shape[0]} (W x H) "
                         "sizes differ: depth must be aligned to colour (the same size)")
    return rgb, depth


def depth_units(depth: np.ndarray, mm: float) -> float:
    """``mm`` millimetres in the depth array's own units (8-bit levels for uint8, mm for uint16)."""
    return mm / MM_PER_LEVEL_8BIT if depth.dtype == np.uint8 else mm


def to_depth(d: np.ndarray, like: np.ndarray) -> np.ndarray:
    """float depth -> like's dtype; readings stay readings (>= 1), background stays 0."""
    top = 255 if like.dtype == np.uint8 else 65535
    return np.where(like > 0, np.clip(np.rint(d), 1, top), 0).astype(like.dtype)


def rgb_levels(values: np.ndarray) -> np.ndarray:
    """float RGB values -> uint8 levels (rounded to the nearest level, clipped to 0..255)."""
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def object_band(depth: np.ndarray, rows: int):
    """The rows of a horizontal band ``rows`` high across the object's middle: a slice [start, start + rows), start =
    floor(my - (rows - 1) / 2 + 0.5) with my the foreground's (depth > 0) centroid row (the band centred on it), clipped
    to the frame; None for a frame without foreground. Shared by depth-band and flicker-band (audit 34 #5, #8)."""
    ys = np.nonzero(np.asarray(depth) > 0)[0]
    if not len(ys):
        return None
    start = int(np.floor(ys.mean() - (rows - 1) / 2 + 0.5))
    return slice(max(start, 0), max(min(start + int(rows), depth.shape[0]), 0))
