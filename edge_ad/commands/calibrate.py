"""``edge-ad calibrate --model DIR --source URI --out DIR``: adapt an exported model to a new scene
from normal frames of that scene (torch-free: runs on the robot's lean install). Exit status: 0 written,
1 error (nothing written), 2 bad command line, 3 written from a recording cut short or one whose stream stalled
(frames lost: as ``edge-ad run``'s 3)."""
from __future__ import annotations

import sys
import time
from typing import Optional

import click

from .options import FiniteFloat, check_out_place, model_directory
from .stop import unwind_on_sigterm


@click.command("calibrate")
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True), callback=model_directory,
              help="exported model directory (edge-ad export); never modified (--out must lie outside it).")
@click.option("--source", "source_uri", required=True,
              help="normal frames of the new scene: a camera, bag, recording or frame folder (as edge-ad run).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="the NEW model directory to write (must not exist or be empty).")
@click.option("--max-frames", type=click.IntRange(min=1), default=200, show_default=True,
              help="use at most this many frames of the source: N frames spread evenly over a source of known length "
              "(a folder, synth://?n=N, a ROS bag, a RealSense recording: their frames counted first, one pass over "
              "their message stamps; see --every), else (a camera) its first N, so record the "
              "source over the scene's normal variety (the whole run of poses and light): 50 frames of one stretch "
              "of a recording can look like the model's rate while the rest does not (models/kinect-rgbd/HISTORY.md, "
              "session 23).")
@click.option("--every", type=click.IntRange(min=1), default=None, metavar="K",
              help="use every K-th frame of the source until --max-frames are used (the frames between are read, "
                   "checked for sensor faults, not used): 1 = the first N frames; for a camera, N frames spread "
                   "over N x K frames of time; a bag or recording is not counted then. Default: N frames spread "
                   "evenly over a source of known length (a folder, bag or recording; a bag or recording is "
                   "counted first, one pass, then read up to the last frame used: about all of it), else every "
                   "frame.")
@click.option("--fpr", type=FiniteFloat(0, 1, min_open=True, max_open=True), default=None,
              help="target false-alarm rate on normal frames of the scene (sets the threshold). Default: the "
              "rate the model's own threshold was calibrated at (0.05 for a model without one).")
@click.option("--min-frames", type=click.IntRange(min=2), default=20, show_default=True,
              help="refuse to calibrate on fewer usable frames.")
@click.option("--colour-gain/--no-colour-gain", default=True, show_default=True,
              help="undo the scene's light: a gain mapping its mean foreground brightness to the train "
              "frames' (models that record colour_reference), applied only when the scene's frames fit the model "
              "better with it (a scene of one bright or dark object measures the object, not the light).")
@click.option("--colour-gain-unchecked", is_flag=True,
              help="apply the measured scene colour gain without that check (as before session 34).")
@click.option("--floor/--no-floor", default=True, show_default=True,
              help="use the model's own threshold (read from its held-out normal frames) when it was calibrated "
              "at a false-alarm rate >= --fpr: at the same rate (the default --fpr) it is kept unless more scene "
              "frames score above it than --fpr allows (binomial test, p < 0.05), then raised only as far as the "
              "scene asks: to the lowest threshold the same test accepts; at a higher rate it floors the scene's quantile. --no-floor: the scene's quantile alone. "
              "A few dozen frames of one scene give a noisy tail quantile.")
@click.option("--max-shift", type=click.IntRange(0, 8), default=None,
              help="search the scene's camera shift up to N model pixels and undo it for every later frame, when "
                   "the frames can tell (else the model's shift is kept and the log says why); 0: keep the "
                   "model's. Default: 3 for models without search steps (k = 0), 0 (off) for models with k > 0 "
                   "(e.g. export --scoring reference), where it would take hours. How the search scores and "
                   "decides: docs/calibrate.md, 'The camera-shift search'.")
@click.option("--accept-raise", is_flag=True,
              help="calibrate even on frames that look like no normal frames of the model's objects: more than half "
                   "of them above the model's own threshold, or a threshold more than 4x its own (refused without "
                   "it, nothing written: the wrong object in view, or the wrong model; real light and camera "
                   "changes measured 1.1-2.7x with at most 22 % above). Written with threshold_warning saying so.")
@click.option("--threads", type=click.IntRange(min=1), help="onnxruntime intra-op threads.")
@click.option("--trusted-key", "trusted_keys", multiple=True, type=click.Path(dir_okay=False, exists=True),
              metavar="FILE", help="Ed25519 public key (PEM) MODEL must be signed by (as edge-ad run "
              "--trusted-key); repeatable. Checked before MODEL is used. OUT is a new, unsigned model unless --sign.")
@click.option("--sign", "sign_key", metavar="KEY", type=click.Path(dir_okay=False, exists=True),
              help="Sign OUT with this Ed25519 private key (PEM; `edge-ad keygen`; as edge-ad export --sign): "
                   "writes OUT/manifest.sig, checked by `edge-ad run --trusted-key`.")
def cmd(model_dir, source_uri, out_dir, max_frames, every, fpr, min_frames, colour_gain, colour_gain_unchecked, floor,
        max_shift, accept_raise, threads, trusted_keys, sign_key):
    """Adapt MODEL to the scene of SOURCE: rebuild its latent bank with the scene's normal frames and
    calibrate its threshold on them (each frame scored held out: the frames split into 5 contiguous
    blocks, a frame's latent distance taken to the bank without its block's rows), into a new model
    directory OUT. Sensor faults (as edge-ad run reports them, a stuck camera's repeats included) and
    frames the source labels anomalous are not used. A recording cut short (a killed recorder) is
    calibrated on the frames before the cut when they are enough; the log and the manifest's calibration
    record (recording_truncated) say so, and the exit status is 3 (as edge-ad run's: frames lost).
    A model with the silhouette lever is calibrated with it: the scene's frames scored as its three versions,
    its paired rows grown with the scene's opened frames (docs/calibrate.md).
    Exit status: 0 written, 1 error (nothing written), 2 usage, 3 written from a recording cut short."""
    from edge_ad.runtime.calibrate import CalibrationError, calibrate_model
    from edge_ad.runtime.manifest import ManifestError
    from edge_ad.runtime.signing import SigningError, load_private_key
    from edge_ad.runtime.sources import SourceError, open_source

    if colour_gain_unchecked and not colour_gain:
        raise click.UsageError("--colour-gain-unchecked applies the scene's colour gain without its check; "
                               "--no-colour-gain applies none: give one of them")
    if max_frames < min_frames:   # could never succeed: said before the model, the key or the source is touched
        raise click.UsageError(f"--max-frames {max_frames} is below --min-frames {min_frames}: calibration needs at "
                               f"least {min_frames} usable frames; raise --max-frames or lower --min-frames")
    if sign_key:
        try:
            sign_key = load_private_key(sign_key)       # before reading the scene: a bad key fails now
        except SigningError as e:
            raise click.ClickException(str(e))

    check_out_place(out_dir)     # before the scene is read and scored
    unwind_on_sigterm()          # a stopped calibrate removes its .OUT.calibrating-PID directory (audit 27 #9)
    said = _Progress()           # the progress lines on stderr: frames read, the camera-shift search
    click.echo(f"calibrating {model_dir} on normal frames of {source_uri} (at most {max_frames}) ...", err=True)
    try:
        with open_source(source_uri) as src:
            for warning in getattr(src, "warnings", ()):   # said at open, e.g. a depth topic not known registered
                click.echo(f"warning: {warning}", err=True)
            said.length = _frames_to_read(src, source_uri, max_frames, every)
            man = calibrate_model(model_dir, src, out_dir, fpr=fpr, max_frames=max_frames, every=every,
                                  min_frames=min_frames,
                                  source=source_uri, progress=said.frames, threads=threads,
                                  colour_gain="always" if colour_gain and colour_gain_unchecked else colour_gain,
                                  floor=floor, max_shift=max_shift,
                                  shift_progress=said.shifts, light_progress=said.light,
                                  trusted_keys=list(trusted_keys) or None,
                                  sign_key=sign_key or None, log=lambda msg: click.echo(msg, err=True),
                                  accept_raise=accept_raise)
    except (CalibrationError, ManifestError, SourceError, SigningError) as e:
        raise click.ClickException(str(e))
    _echo_written(out_dir, man, sign_key, trusted_keys)
    c = man["calibration"]
    if c.get("recording_truncated") or c.get("stream_gaps"):
        from edge_ad.runtime.capture import EXIT_BAD_FRAMES
        sys.exit(EXIT_BAD_FRAMES)


def _frames_to_read(src, source_uri: str, max_frames: int, every) -> Optional[int]:
    """How many frames calibrate will read from ``src`` (its progress lines' total), when the source knows
    how many it holds (a bag or recording is counted first, said on stderr); None otherwise (no made-up total)."""
    from edge_ad.runtime.calibrate import frame_plan, labelled_normals, source_length
    from edge_ad.runtime.sources import Source
    counts = every is None and type(src).frame_count is not Source.frame_count   # a bag, a recording
    if counts:
        click.echo(f"counting the frames of {source_uri} (one pass over its messages, no image decoded) "
                   "...", err=True)
    t0 = time.monotonic()
    n = source_length(src, count=every is None)
    if counts and n is not None:
        click.echo(f"  {n} frames, counted in {_duration(time.monotonic() - t0)}", err=True)
    normals = labelled_normals(src) if every is None else None          # a labelled folder's normals
    return None if n is None else frame_plan(n, max_frames, every, normals).to_read   # the frames it reads


class _Progress:
    """calibrate_model's progress callbacks, said on stderr: ``frames`` (the scene read: every 10th frame),
    ``shifts`` (the camera-shift search: its per-frame pixel tables, then the candidate shifts, with a time
    estimate after the first), ``light`` (the colour-gain check's two passes, after the shift search)."""

    def __init__(self):
        self.length = None          # frames to read, when the source knows how many it holds
        self.search_start = {}      # stage -> when it started

    def frames(self, read, used, dropped) -> None:
        length = self.length
        if read == 1 or read % 10 == 0 or read == length:
            click.echo(f"  frame {read}{'' if length is None else f'/{length}'} read, {used} usable"
                       + "".join(f", {n} {why}" for why, n in dropped.items()), err=True)

    def light(self, done, total, stage) -> None:
        """The colour-gain check's two passes over the scene (runtime.calibrate.LIGHT_STAGES: without, then with
        the measured gain): a line before each, and every 10th frame and the last."""
        if done == 0:
            click.echo(f"  colour-gain check: scoring {total} frames {stage} ...", err=True)
        elif done % 10 == 0 or done == total:
            click.echo(f"  colour-gain check: {done}/{total} frames scored {stage}", err=True)

    def shifts(self, done, total, stage="shifts") -> None:
        search_start = self.search_start
        tables = stage == "pixel tables"          # the per-frame pixel tables, then the candidate shifts

        def counted(n):
            return f"pixel distances of {n}/{total} frames measured" if tables else f"{n}/{total} shifts scored"
        if done == 0:
            search_start[stage] = time.monotonic()
            if tables:
                click.echo(f"  camera-shift search: measuring the pixel distances of {total} frames at every "
                           "candidate shift ...", err=True)
        elif done == 1 and total > 1 and stage in search_start:
            each = time.monotonic() - search_start[stage]
            hint = "" if tables else f" ({shift_hint(total)})"
            click.echo(f"  camera-shift search: {counted(1)} in {_duration(each)}: about "
                       f"{_duration(each * (total - 1))} left{hint}", err=True)
        elif done % (10 if tables else 7) == 0 or done == total:
            click.echo(f"  camera-shift search: {counted(done)}", err=True)


def _echo_written(out_dir, man: dict, sign_key, trusted_keys) -> None:
    """What was written: the scene's colour gain and camera shift, the frames used and why others were not,
    the threshold and its rule, the bank's rows, whether OUT is signed, and frames the source lost."""
    from edge_ad.runtime.calibrate import how_selected
    c, t = man["calibration"], man["threshold"]
    bank, paired = c.get("bank"), c.get("silhouette")
    if c.get("colour_gain"):
        click.echo(f"scene colour gain (R, G, B): {c['colour_gain']}")
    if c.get("scene_shift"):
        click.echo(shift_line(c["scene_shift"]))
    faults = f" ({', '.join(f'{k} {v}' for k, v in c['faults'].items())})" if c["faults"] else ""
    how = how_selected(c.get("every", 1), c["frames_read"])
    click.echo(f"wrote {out_dir}: {c['frames_used']} of "
               + (f"{c['frames_read']} frames used (" if how is None else f"{c['frames_selected']} frames used ({how}; ")
               + f"{c['unreadable']} unreadable, {c['unscorable']} unscorable, {c['sensor_faults']} sensor "
               f"faults{faults}, {c['skipped_anomalous']} labelled anomalous skipped"
               + (f", {c['duplicates']} copies of a frame already used" if c.get("duplicates") else "")
               + f"); threshold {t['value']:.4g} "
               f"at {c['target_fpr']:g} false alarms ({c['threshold_rule']}; the scene's own quantile "
               f"{c['threshold_scene']:.4g})" + (f"; latent bank {bank['original_rows']} + {bank['scene_rows']} scene rows"
                                                 if bank else "")
               + (f"; the silhouette lever's paired rows: opened frames of {paired['original_frames']} training + "
                  f"{paired['scene_frames']} scene frames (held-out scores: the lever's)" if paired else ""))
    if sign_key:
        click.echo(f"signed {out_dir}: manifest.sig (check it with edge-ad run --trusted-key)")
    else:
        click.echo(f"{out_dir} is unsigned (its manifest is new; "
                   + ("the signature of the input model does not cover it" if trusted_keys else "no --sign")
                   + f"): sign it with `edge-ad sign {out_dir} --key KEY` before `edge-ad run --trusted-key`")
    if c.get("recording_truncated"):                 # written, but frames were lost: exit as edge-ad run does
        click.echo(f"warning: the recording is cut short: {out_dir} is calibrated on the frames before the cut "
                   "(recording_truncated in its manifest's calibration record)", err=True)
    if c.get("stream_gaps"):
        click.echo(f"warning: {c['stream_gaps']['frames']} frame(s) of the source were lost: one stream stalled "
                   "mid-recording (stream_gaps in its manifest's calibration record)", err=True)


def shift_line(shift: dict) -> str:
    """The log line of calibrate's camera-shift record (``scene_camera_shift``'s, with "scene_shift" the total
    stored and "model_scene_shift" the model's before): what the frames said, then the (dy, dx) the new model
    undoes: the total (and, re-calibrating a model that had one, the model's plus this scene's), or the
    model's kept."""
    if not shift.get("said"):
        return "scene camera shift: not searched (the model aligns each frame's foreground centroid)"
    total, model = list(shift["scene_shift"]), list(shift.get("model_scene_shift") or [0, 0])
    if not shift.get("identified"):        # searched, nothing the frames can tell: nothing claimed undone
        return f"scene camera shift: {shift['said']}; kept the model's (dy, dx) {tuple(model)} model px"
    here = tuple(t - m for t, m in zip(total, model))
    return (f"scene camera shift undone: {shift['said']}; total (dy, dx) {tuple(total)} model px"
            + (f" (the model's {tuple(model)} plus this scene's {here})" if any(model) else ""))


def shift_hint(total: int) -> str:
    """How to make a camera-shift search of ``total`` shifts ((2N + 1)^2 for --max-shift N) cheaper:
    --max-shift 0 skips it; --max-shift 1 (9 shifts) only when it is smaller than the one running."""
    return "--max-shift 0 skips the search" + (", --max-shift 1 scores 9 shifts" if total > 9 else "")


def _duration(seconds: float) -> str:
    """'0.4 s', '12 s', '14 min', '2.1 h'."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
