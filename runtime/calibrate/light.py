"""The scene's light: when the model knows its train frames' mean foreground colour (preprocess
colour_reference), the gain that maps the scene's mean foreground brightness to it (preprocess colour_gain,
same for R, G, B), so a scene-wide light change is undone before anything is scored; taken only when the scene's
frames fit the model better with it (``chosen_scene_light``, audit 34 #4: a scene of one bright or dark object under
unchanged light measures the object's brightness, not the light's)."""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import numpy as np

from ..preprocess import COLOUR_GAIN_LIMITS, aligned_uint8, normalize_uint8


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


def scene_fit_logs(scorer, u8: list, spec, progress: Optional[Callable] = None, stage: str = "") -> np.ndarray:
    """(n,) the log score (seed 0) of each of the scene's frames u8 ((R, R, 4) uint8 each) scored where it is under
    ``spec`` against the model's memories as an unseen frame (``Scorer.score_as_is``: what ``camera_shift_fits``
    measures at radius 0, the same values). ``progress(done, total, stage)``: done = 0 before the first frame and
    after each of the total frames."""
    out = np.empty(len(u8))
    if progress is not None:
        progress(0, len(u8), stage)
    for i, a in enumerate(u8):
        x = normalize_uint8(aligned_uint8(a, spec), spec)                                 # (4, R, R)
        out[i] = np.log(max(scorer.score_as_is(x, seed=0).score, 1e-30))
        if progress is not None:
            progress(i + 1, len(u8), stage)
    return out


LIGHT_STAGES = ("without the gain", "with the gain")     # the check's two passes over the scene (``progress``)


def chosen_scene_light(scorer, spec, u8: list, check: bool = True, progress: Optional[Callable] = None,
                       gain: Optional[tuple] = None) -> tuple:
    """(spec, gain, record): ``in_scene_light``'s gain kept only when the scene's frames u8 ((R, R, 4) uint8 each)
    fit the model better with it: their geometric-mean score, each frame scored where it is against the model's
    memories as an unseen frame (``scene_fit_logs``: ``Scorer.score_as_is``, seed 0), is lower with the gain than
    without; else ``spec`` and gain None. Measured (audit 34 #4): 50 frames of one bright box under unchanged light
    measured a gain of 0.774, which took the shipped rectangle's anomalies flagged from 93.5 to 79 %. The pipeline
    checks it after the scene's camera shift is undone (``spec``'s scene_shift and u8 moved: a shifted scene's
    misplaced frames would inflate both scores). ``gain``: the gain already measured (``in_scene_light`` of the
    frames before they were moved), else measured here. ``progress(done, total, stage)``: each pass over the frames,
    stage LIGHT_STAGES[0] then [1] (``scene_fit_logs``).
    record: {"measured" [R, G, B], "applied", "geomean_score_without", "geomean_score_with", "said"}; None (and
    gain None) when the model has no colour_reference or the scene no foreground. ``check`` False (calibrate
    --colour-gain-unchecked, colour_gain="always" in the pipeline): the gain applied unchecked, as before session 34 (no scores: None)."""
    if gain is None:
        gained, gain = in_scene_light(spec, u8)
    else:
        gained = dataclasses.replace(spec, colour_gain=tuple(gain))
    if gain is None:
        return spec, None, None
    g = ", ".join(f"{v:g}" for v in gain)
    if not check:
        return gained, gain, {"measured": list(gain), "applied": True, "geomean_score_without": None,
                              "geomean_score_with": None,
                              "said": f"scene colour gain ({g}) applied unchecked (--colour-gain-unchecked)"}
    without, with_gain = (float(np.exp(np.mean(scene_fit_logs(scorer, u8, s, progress, stage))))
                          for s, stage in zip((spec, gained), LIGHT_STAGES))
    applied = with_gain < without
    said = (f"scene colour gain ({g}) applied: the scene's frames score {without / with_gain:.3g}x lower with it"
            if applied else
            f"scene colour gain ({g}) not applied: the scene's frames score {with_gain / max(without, 1e-30):.3g}x "
            "higher with it; its brightness is the object's, not the light's")
    record = {"measured": list(gain), "applied": bool(applied), "geomean_score_without": without,
              "geomean_score_with": with_gain, "said": said}
    return (gained, gain, record) if applied else (spec, None, record)
