"""Nuisance texts -> nuisances: the syntax (``NUISANCE_SYNTAX``), the registry of kinds (``_KINDS``: kind ->
values, check, constructor) and ``parse_nuisance`` (several texts joined with '+' -> Compose)."""
from __future__ import annotations

import re

import numpy as np

from .blur import Blur, Sharpen
from .clutter import Cable
from .compose import Compose
from .depth import DepthBand, DepthEdgeErode, DepthEdgeHoles, DepthEdgeSpurs, DepthHoles, DepthNoise, DepthOffset
from .geometric import Mirror, RandomShift, RgbShift, Rotate, Scale, Shift
from .photometric import (Brightness, Contrast, FlickerBand, Gamma, Jpeg, LightRamp, Offset, RgbNoise, Shadow,
                          WhiteBalance)


NUISANCE_SYNTAX = ("brightness:F | wb:R,G,B | shift:DY,DX | shift:PX (random direction) | mirror | "
                   "rgb-noise:SIGMA | depth-noise:SIGMA_MM | depth-offset:MM | gamma:G (> 0) | offset:LEVELS | "
                   "contrast:C (>= 0) | blur:SIGMA_PX | jpeg:Q (1..100) | depth-holes:P (0..1) | depth-edge-holes:P (0..1) | "
                   "depth-edge-spurs:P (0..1) | depth-edge-erode:N (whole >= 1) | rotate:DEG | "
                   "scale:S (> 0) | fg-blur:SIGMA_PX | fg-rotate:DEG | fg-scale:S (> 0) (fg-: RGB resampled from "
                   "pixels with a depth reading only) | light-ramp:A,DEG (0 <= A < 1) | shadow:A,DEG (0..1) | "
                   "sharpen:AMOUNT (>= 0) | rgb-shift:DY,DX (the colour moved against the depth, raw px, sub-pixel) | "
                   "cable:LEN,WIDTH (whole raw px >= 1: a dark cable from the top edge beside the object) | "
                   "depth-band:ROWS (whole >= 1: depth lost across the object's middle) | flicker-band:ROWS,F (whole "
                   "ROWS >= 1 across the object at brightness F >= 0); join with '+'")


def _is_int(v: float) -> bool:
    return v == int(v)


# kind -> (number of values, check of the values, what the check asks for, constructor)
_KINDS = {
    "brightness": (1, lambda v: v[0] >= 0, "a factor >= 0", lambda v: Brightness(v[0])),
    "wb": (3, lambda v: min(v) >= 0, "three gains >= 0", lambda v: WhiteBalance(tuple(v))),
    "mirror": (0, lambda v: True, "no value", lambda v: Mirror()),
    "rgb-noise": (1, lambda v: v[0] >= 0, "a sigma >= 0 (8-bit levels)", lambda v: RgbNoise(v[0])),
    "depth-noise": (1, lambda v: v[0] >= 0, "a sigma >= 0 (mm)", lambda v: DepthNoise(v[0])),
    "depth-offset": (1, lambda v: True, "millimetres", lambda v: DepthOffset(v[0])),
    "gamma": (1, lambda v: v[0] > 0, "an exponent > 0", lambda v: Gamma(v[0])),
    "offset": (1, lambda v: True, "RGB levels (e.g. 30 or -30)", lambda v: Offset(v[0])),
    "contrast": (1, lambda v: v[0] >= 0, "a factor >= 0", lambda v: Contrast(v[0])),
    "blur": (1, lambda v: v[0] >= 0, "a sigma >= 0 (raw pixels)", lambda v: Blur(v[0])),
    "jpeg": (1, lambda v: _is_int(v[0]) and 1 <= v[0] <= 100, "an integer quality 1..100",
             lambda v: Jpeg(int(v[0]))),
    "depth-holes": (1, lambda v: 0 <= v[0] <= 1, "a fraction of the readings 0..1", lambda v: DepthHoles(v[0])),
    "depth-edge-holes": (1, lambda v: 0 <= v[0] <= 1, "a fraction 0..1 of the readings within 2 px of the edge",
                         lambda v: DepthEdgeHoles(v[0])),
    "depth-edge-spurs": (1, lambda v: 0 <= v[0] <= 1, "a fraction 0..1 of the pixels without a reading touching the "
                         "object", lambda v: DepthEdgeSpurs(v[0])),
    "depth-edge-erode": (1, lambda v: _is_int(v[0]) and v[0] >= 1, "a whole number N >= 1 of edge rings (px)",
                         lambda v: DepthEdgeErode(int(v[0]))),
    "rotate": (1, lambda v: True, "degrees (counter-clockwise)", lambda v: Rotate(v[0])),
    "scale": (1, lambda v: v[0] > 0, "a zoom factor > 0", lambda v: Scale(v[0])),
    "fg-blur": (1, lambda v: v[0] >= 0, "a sigma >= 0 (raw pixels)", lambda v: Blur(v[0], foreground_only=True)),
    "fg-rotate": (1, lambda v: True, "degrees (counter-clockwise)", lambda v: Rotate(v[0], foreground_only=True)),
    "fg-scale": (1, lambda v: v[0] > 0, "a zoom factor > 0", lambda v: Scale(v[0], foreground_only=True)),
    "light-ramp": (2, lambda v: 0 <= v[0] < 1, "an amplitude 0 <= A < 1 and a direction in degrees (A,DEG)",
                   lambda v: LightRamp(v[0], v[1])),
    "shadow": (2, lambda v: 0 <= v[0] <= 1, "a darkening 0..1 and a direction in degrees (A,DEG)",
               lambda v: Shadow(v[0], v[1])),
    "sharpen": (1, lambda v: v[0] >= 0, "an amount >= 0", lambda v: Sharpen(v[0])),
    "depth-band": (1, lambda v: _is_int(v[0]) and v[0] >= 1, "a whole number ROWS >= 1 of raw rows",
                   lambda v: DepthBand(int(v[0]))),
    "flicker-band": (2, lambda v: _is_int(v[0]) and v[0] >= 1 and v[1] >= 0,
                     "a whole number ROWS >= 1 of raw rows and a brightness factor F >= 0 (ROWS,F)",
                     lambda v: FlickerBand(int(v[0]), v[1])),
    "rgb-shift": (2, lambda v: True, "two shifts DY,DX in raw pixels (sub-pixel allowed) of the colour against the "
                  "depth", lambda v: RgbShift(v[0], v[1])),
    "cable": (2, lambda v: all(_is_int(x) and x >= 1 for x in v), "two whole numbers LEN,WIDTH >= 1 (raw pixels: "
              "how far into the frame from its top edge, how wide)", lambda v: Cable(int(v[0]), int(v[1]))),
}


def _parse_one(kind: str, arg: str):
    """One nuisance from ``kind`` and the text after its ':'; ValueError(what is wrong) otherwise."""
    try:
        vals = [float(v) for v in arg.split(",")] if arg else []
    except ValueError:
        raise ValueError(f"{arg!r} is not a number or a comma-separated list of numbers") from None
    if not all(np.isfinite(vals)):
        raise ValueError(f"{arg!r}: values must be finite")
    if kind == "shift":
        if len(vals) == 1 and _is_int(vals[0]) and vals[0] >= 1:
            return RandomShift(int(vals[0]))
        if len(vals) == 2 and all(_is_int(v) for v in vals):
            return Shift(int(vals[0]), int(vals[1]))
        raise ValueError("shift takes an integer PX >= 1 or two integers DY,DX")
    if kind not in _KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    n, ok, wants, make = _KINDS[kind]
    if len(vals) != n or not ok(vals):
        raise ValueError(f"{kind} takes {wants}")
    return make(vals)


def parse_nuisance(text: str):
    """A nuisance from its short text, e.g. "brightness:1.25", "wb:1.15,1,0.85", "shift:2",
    "shift:1,-2", "mirror", "rgb-noise:8", "depth-noise:10", "depth-offset:30", "gamma:0.8",
    "offset:-30", "contrast:1.2", "blur:1", "jpeg:40", "depth-holes:0.05", "rotate:3", "scale:1.05",
    "fg-blur:1", "fg-rotate:3", "fg-scale:1.05", or several joined with "+" (a '+' before a number is its
    sign: "offset:+30"). Raises ValueError naming what is wrong and the syntax."""
    parts = [p.strip() for p in re.split(r"\+(?=\s*[A-Za-z])", str(text)) if p.strip()]
    if not parts:
        raise ValueError(f"empty nuisance; syntax: {NUISANCE_SYNTAX}")
    out = []
    for p in parts:
        kind, _, arg = p.partition(":")
        try:
            out.append(_parse_one(kind.strip(), arg.strip()))
        except ValueError as e:
            raise ValueError(f"cannot read nuisance {p!r}: {e}; syntax: {NUISANCE_SYNTAX}") from None
    return out[0] if len(out) == 1 else Compose(tuple(out))
