"""Option types shared by the commands (click, torch-free)."""
from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import click


def check_threshold(threshold) -> None:
    """--threshold of run / batch: None (the model's own), or a value runtime.capture.valid_threshold accepts;
    click.UsageError (exit 2) naming the problem otherwise."""
    if threshold is None:
        return
    from edge_ad.runtime.capture import valid_threshold
    try:
        valid_threshold(threshold, "--threshold")
    except ValueError as e:
        raise click.UsageError(str(e))


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


def check_out_place(out, flag: str = "--out") -> None:
    """One line (ClickException, exit 1) before any work when ``out`` (a file or directory still to be written)
    cannot be created: its nearest existing ancestor is not a directory, or a probe file cannot be made in it
    (no such place, a read-only mount, no permission, no space); so a command does not fail only after minutes
    of scoring, with a traceback. The probe is removed at once."""
    path = Path(out).absolute()
    place = path if path.is_dir() else path.parent     # an existing (empty) --out folder: written inside
    while not place.exists():
        place = place.parent
    if not place.is_dir():
        raise click.ClickException(f"cannot create {flag} {out}: {place} is not a directory")
    try:
        fd, probe = tempfile.mkstemp(dir=place, prefix=f".{path.name}.probe-")
    except OSError as e:
        raise click.ClickException(f"cannot create {flag} {out}: {e.strerror} (in {place})") from None
    os.close(fd)
    os.unlink(probe)


def model_file(ctx, param, value):
    """The check of a --model option that takes a generator checkpoint (edge-ad eval): an exported model directory
    there is a usage error that says how such a model is measured (click's own line was "File '...' is a
    directory.")."""
    if value is not None and os.path.isdir(value):
        raise click.BadParameter(
            f"{value} is an exported model directory; eval scores a checkpoint (.pt) with the PyTorch reference. To "
            f"measure an exported or calibrated model on labelled frames: edge-ad run --model {value} --source "
            "'folder://DATA?normal=CLASS&split=val' (its summary's truth line: AUROC, recall, false alarms)", ctx, param)
    return value


def model_directory(ctx, param, value):
    """The check of a --model option that takes an exported model directory: a file there is a usage error
    saying what it is (``runtime.manifest.not_a_model_dir``: a checkpoint such as models/kinect-rgbd/rectangle.pt:
    export it first; the manifest: its folder; click's own line was "Directory '...' is a file.")."""
    if value is not None and os.path.isfile(value):
        from edge_ad.runtime.manifest import not_a_model_dir
        raise click.BadParameter(not_a_model_dir(Path(value)), ctx, param)
    return value
