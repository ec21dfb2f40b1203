"""The suite ``edge-ad eval --nuisance`` runs (``DEFAULT_SUITE``) and the per-frame generators that make a suite
reproducible frame by frame (``frame_rng``, ``apply_to_frames``)."""
from __future__ import annotations

from typing import Sequence

import numpy as np


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
