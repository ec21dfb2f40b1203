"""Small picture helpers shared by the contact sheet, the Rerun view and ``edge-ad run``'s
--save-anomalies/--display: the error heat map and the model-space panels of one scored frame."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from .preprocess import PreprocessSpec, preprocess, to_display

_HEAT = np.array([[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66],
                  [245, 125, 21], [250, 193, 39], [252, 255, 164]], dtype=np.float64)


def free_path(path: Path) -> Path:
    """``path``, or, when a file of that name exists (an earlier run's), the first of ``<stem>-2<suffix>``,
    ``<stem>-3<suffix>``, ... that does not: a picture or recording never replaces a file."""
    path = Path(path)
    free, n = path, 1
    while free.exists():
        n += 1
        free = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return free


def heatmap(err: np.ndarray, vmax: Optional[float] = None) -> np.ndarray:
    """Error map (H, W) float -> (H, W, 3) uint8, an inferno-like ramp scaled to ``vmax``."""
    err = np.asarray(err, dtype=np.float64)
    vmax = float(vmax if vmax is not None else (err.max() if err.size else 1.0)) or 1.0
    v = np.clip(np.nan_to_num(err / vmax), 0, 1) * (len(_HEAT) - 1)
    lo = np.floor(v).astype(int)
    hi = np.minimum(lo + 1, len(_HEAT) - 1)
    w = (v - lo)[..., None]
    return np.rint(_HEAT[lo] * (1 - w) + _HEAT[hi] * w).astype(np.uint8)


def grey3(d: np.ndarray) -> np.ndarray:
    """(H, W) uint8 -> (H, W, 3) uint8 grey."""
    return np.repeat(np.asarray(d)[..., None], 3, axis=2)


@dataclass
class Panels:
    """What a picture of one scored frame shows, all in model space (the scorer's 64 x 64 input):
    rgb (H, W, 3) uint8, depth (H, W) uint8, reconstruction rgb/depth (None when the scorer kept
    none) and the error map (H, W) float32 (squared error, mean over channels and seeds)."""

    rgb: np.ndarray
    depth: np.ndarray
    recon_rgb: Optional[np.ndarray]
    recon_depth: Optional[np.ndarray]
    error: np.ndarray


def frame_panels(frame, res, spec: Optional[PreprocessSpec] = None) -> Panels:
    """The panels of a scored frame (``Frame``, ``ScoreResult``): copies, safe to keep."""
    spec = spec or PreprocessSpec()
    x = preprocess(frame.rgb, frame.depth, spec)                     # (4, H, W) in [-1, 1]
    rgb, dep = to_display(x, spec)
    rec = getattr(res, "reconstruction", None)
    rrgb = rdep = None
    if rec is not None:
        rrgb, rdep = to_display(np.asarray(rec, dtype=np.float32), spec)
    err = np.array(res.error_map, dtype=np.float32, copy=True)
    return Panels(rgb, dep, rrgb, rdep, err)


BLANK_GREY = 60   # a panel with nothing to show (no reconstruction kept), as on the contact sheet


def panel_row(p: Panels, scale: int = 4) -> np.ndarray:
    """The panels side by side, (H*scale, 5*W*scale, 3) uint8: input RGB | input depth |
    reconstruction RGB | reconstruction depth | error heat map; a reconstruction the scorer did not
    keep is a blank grey tile, never the input standing in for it."""
    blank = np.full(p.rgb.shape[:2] + (3,), BLANK_GREY, np.uint8)
    row = np.concatenate([p.rgb, grey3(p.depth),
                          blank if p.recon_rgb is None else p.recon_rgb,
                          blank if p.recon_depth is None else grey3(p.recon_depth),
                          heatmap(p.error)], axis=1)
    return np.repeat(np.repeat(row, scale, axis=0), scale, axis=1)
