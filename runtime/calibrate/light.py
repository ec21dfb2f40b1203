"""The scene's light: when the model knows its train frames' mean foreground colour (preprocess
colour_reference), the gain that maps the scene's mean foreground brightness to it (preprocess colour_gain,
same for R, G, B), so a scene-wide light change is undone before anything is scored."""
from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from ..preprocess import COLOUR_GAIN_LIMITS


def scene_colour_gain(u8: list, spec) -> Optional[tuple]:
    """The gain (one value for R, G, B) that maps the scene's mean foreground brightness (all frames'
    foreground pixels pooled, mean of the channels) to the model's colour_reference's, on top of the
    model's own colour_gain, clipped to COLOUR_GAIN_LIMITS; None when the model has no
    colour_reference or the scene no foreground."""
    if spec.colour_reference is None:
        return None
    v = np.stack(u8)                                                           # (n, R, R, 4)
    fg = v[..., 3] > 0
    if not fg.any():
        return None
    base = np.asarray(spec.colour_gain, np.float64)
    mean = np.array([np.clip(v[..., c][fg] / 255.0 * base[c], 0, 1).mean() for c in range(3)])
    # one brightness gain: the scene's mean colour also depends on which objects it shows (measured:
    # per-channel gains from 50 frames of coloured balls were off by 30 %), its brightness much less
    g = float(np.mean(spec.colour_reference)) / max(float(mean.mean()), 1e-3)
    gain = np.clip(base * g, *COLOUR_GAIN_LIMITS)
    return tuple(round(float(x), 4) for x in gain)


def in_scene_light(spec, u8: list) -> tuple:
    """(spec, gain): the preprocessing ``spec`` with the scene's colour gain (``scene_colour_gain`` of its
    frames u8, (R, R, 4) uint8 each), or ``spec`` unchanged and None when there is none to apply."""
    gain = scene_colour_gain(u8, spec)
    return (spec, None) if gain is None else (dataclasses.replace(spec, colour_gain=gain), gain)
