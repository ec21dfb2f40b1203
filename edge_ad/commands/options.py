"""Option types shared by the commands (click, torch-free)."""
from __future__ import annotations

import math

import click


class FiniteFloat(click.FloatRange):
    """A float option that must be a finite number (and in the range, when ``min`` / ``max`` are given, as
    click.FloatRange): click's FloatRange lets nan through (every comparison with nan is false) and, without
    a bound on that side, inf; both would otherwise fail later, after the model loaded or every frame was
    scored, with a traceback. ``allow_inf``: inf is accepted (e.g. "no limit")."""

    name = "float"      # the metavar: FLOAT, as type=float

    def __init__(self, *args, allow_inf: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.allow_inf = allow_inf

    def _describe_range(self) -> str:        # the help's "[0<x<1]"; nothing without a bound (not "x<=None")
        return "" if self.min is None and self.max is None else super()._describe_range()

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if math.isnan(number) or (math.isinf(number) and not self.allow_inf):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number
