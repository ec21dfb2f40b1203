"""The score's divisor (``score_scale``): the foreground fraction of the input, the latent-memory factor
and the pixel-memory factor.

score = mean_j loss_j / score_scale(x, cfg, d, d_pix): 1.0 for the reference configuration.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np

if TYPE_CHECKING:
    from .config import SearchConfig


def foreground_fraction(x: np.ndarray) -> float:
    """Share of pixels of a preprocessed frame x (4, R, R) in [-1, 1] whose depth (channel 3) is
    foreground: > -1 + 1e-3, i.e. raw depth > 0 (background and table are 0 at capture)."""
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[0] != 4:
        raise ValueError(f"x must be (4, R, R), got shape {x.shape}")
    return float((x[3] > -1 + 1e-3).mean())


def score_scale(x: np.ndarray, cfg: SearchConfig, latent_distance: Optional[float] = None,
                pixel_distance: Optional[float] = None) -> float:
    """Divisor applied to the mean seed loss: score = mean_j loss_j / score_scale. It is
    max(fg(x), fg_floor) ** score_fg_power / (latent_factor(latent_distance, cfg) *
    pixel_factor(pixel_distance, cfg)): 1.0 for the reference configuration. Computed on the host from
    the input frame (the encoder's latent distance to the latent bank, the frame's distance to the pixel
    memory); no graph changes needed. Raises ValueError when cfg needs a latent or pixel distance and
    none is given."""
    fg = 1.0 if cfg.score_fg_power == 0 else float(max(foreground_fraction(x), cfg.fg_floor) ** cfg.score_fg_power)
    # pixel_factor is exactly 1.0 when off, and L * 1.0 == L in floating point: the pre-pixel-memory value, bit for bit
    return fg / (latent_factor(latent_distance, cfg) * pixel_factor(pixel_distance, cfg))


def _memory_factor(distance: Optional[float], used: bool, floor: float, power: float, cfg: SearchConfig,
                   memory: str, field: str, holder: str) -> float:
    """max(distance, floor) ** power of one memory (1.0 when the configuration does not use it); ValueError
    naming the memory when it does and no distance was given."""
    if not used:
        return 1.0
    if distance is None:
        raise ValueError(f"the scoring configuration {cfg.name!r} multiplies the score by the {memory}-memory "
                         f"distance ({field} > 0), but no {memory} distance was given (no {holder}?)")
    return float(max(distance, floor) ** power)


def latent_factor(distance: Optional[float], cfg: SearchConfig) -> float:
    """Multiplier of the score from the latent memory: max(distance, latent_floor) ** score_latent_power
    (1.0 when the configuration does not use it). Raises ValueError when it does and distance is None."""
    return _memory_factor(distance, cfg.uses_latent_bank, cfg.latent_floor, cfg.score_latent_power, cfg,
                          "latent", "score_latent_power", "latent bank")


def pixel_factor(distance: Optional[float], cfg: SearchConfig) -> float:
    """Multiplier of the score from the pixel memory: max(distance, pixel_floor) ** score_pixel_power
    (1.0 when the configuration does not use it). Raises ValueError when it does and distance is None."""
    return _memory_factor(distance, cfg.uses_pixel_memory, cfg.pixel_floor, cfg.score_pixel_power, cfg,
                          "pixel", "score_pixel_power", "pixel memory")
