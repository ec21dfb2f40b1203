"""``edge-ad run``: score every frame of a camera, recording, folder or ``synth://`` live.

Torch-free: imports only edge_ad.runtime. Exit status: 0 all frames scored (or stopped by
SIGINT/SIGTERM), 1 fatal error (model/source could not be opened, source failed mid-run, an
exception or per-frame timeout while scoring, a signal that had to abandon a stuck frame),
2 bad command line, 3 finished but some frames were bad (reported in the results) or lost (a recording
cut short: ``recording_truncated``; a stream that stalled mid-recording: ``stream_gaps``; result lines not
written for lack of space: ``results_lost``), 4 the source gave no scorable frame.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import click
import numpy as np

from edge_ad.runtime import demo_model_dir
from edge_ad.runtime.alarm_watch import DEFAULT_ALPHA, DEFAULT_WINDOW, NORMAL_P
from edge_ad.runtime.anomaly_saver import AnomalySaver    # the picture hooks live in runtime/
from edge_ad.runtime.capture import EXIT_BAD_FRAMES, EXIT_FATAL, EXIT_NO_FRAMES, STOP_SOURCE_FAILED, exit_status
from edge_ad.runtime.display import Display
from edge_ad.runtime.sources.pairing import no_pairs_note

from .options import FiniteFloat, check_threshold, model_directory

DEFAULT_SOURCE = "synth://"
CAMERA_SCHEMES = ("realsense://", "oak://")    # live cameras: --wait-for-camera waits for them


def load_scorer(model: Optional[str], backend: str, trusted_keys=()):
    """Load the Scorer for ``model`` (default: the demo model, ``runtime.demo_model_dir()``) or raise
    ClickException; with ``trusted_keys`` (public key files) the model must be signed by one of them."""
    model_dir = Path(model) if model else demo_model_dir()
    if not model and not (model_dir / "manifest.json").exists():
        raise click.ClickException(
            f"the shipped demo model is missing ({model_dir}); pass --model DIR with an exported "
            "model (edge-ad export CHECKPOINT --out DIR)")
    if not model_dir.is_dir():
        raise click.ClickException(f"model directory {model_dir} does not exist")
    from edge_ad.runtime import Scorer
    from edge_ad.runtime.backends.errors import BackendUnavailable
    try:
        return Scorer.load(model_dir, backend=backend, trusted_keys=list(trusted_keys) if trusted_keys else None)
    except ValueError as e:  # ModelError is a ValueError
        raise click.ClickException(f"cannot load model {model_dir}: {e}")
    except ImportError as e:   # TensorRTUnavailable too: the GPU stack is missing
        raise click.ClickException(f"backend {backend!r} is not available: {e}")
    except BackendUnavailable as e:   # no usable TensorRT engine here, a CUDA call that failed
        raise click.ClickException(f"cannot load model {model_dir} with backend {backend}: {e}")


def load_z0(path: str, n_seed: int, z_dim: int) -> np.ndarray:
    """--z0 file (a .npy array, never unpickled) -> float32 (n_seed, z_dim), checked against the model: one line
    naming the problem (not a .npy file, an .npz archive, objects, another dtype or shape, NaN)."""
    from edge_ad.runtime.sources.folder import npy_problem
    need = f"--z0 needs a float ({n_seed}, {z_dim}) = (n_seed, z_dim) array saved with np.save"
    why = npy_problem(Path(path), need)
    if why is not None:
        raise click.ClickException(f"cannot read --z0 {path}: {why}")
    try:
        z0 = np.load(path, allow_pickle=False)
    except Exception as e:   # anything the header check did not foresee
        raise click.ClickException(f"cannot read --z0 {path}: {e}")
    if not (np.issubdtype(z0.dtype, np.floating) or np.issubdtype(z0.dtype, np.integer)):
        raise click.ClickException(f"--z0 {path} holds {z0.dtype} values; {need}")
    if z0.shape != (n_seed, z_dim):
        raise click.ClickException(f"--z0 {path} has shape {z0.shape}; the model needs "
                                   f"({n_seed}, {z_dim}) = (n_seed, z_dim)")
    if not np.isfinite(z0).all():
        raise click.ClickException(f"--z0 {path} contains NaN or infinite values")
    return z0.astype(np.float32)


class Status:
    """Live status on stderr: a rich line on a terminal, a plain line every few seconds otherwise."""

    name = "status"

    def __init__(self, quiet: bool, source_uri: str):
        self.quiet, self.uri = quiet, source_uri
        self.n = self.anoms = self.errors = 0
        self.t0 = time.perf_counter()
        self.last_plain = 0.0
        self.live = None
        self.console = None
        if not quiet and sys.stderr.isatty():
            try:
                from rich.console import Console
                from rich.live import Live
                self.console = Console(stderr=True)
                self.live = Live("", console=self.console, refresh_per_second=4, transient=True)
                self.live.start()
            except ImportError:
                self.live = None

    def log(self, msg: str) -> None:
        if self.console is not None:
            self.console.print(msg, markup=False, highlight=False)
        else:
            click.echo(msg, err=True)

    def __call__(self, rec: dict, frame, res) -> None:
        self.n += 1
        self.anoms += int(bool(rec["anomalous"]))
        if self.quiet:
            return
        fps = self.n / max(time.perf_counter() - self.t0, 1e-9)
        flag = " ANOMALY" if rec["anomalous"] else ""
        thr = f" / {rec['threshold']:.4g}" if rec["threshold"] is not None else ""
        line = (f"frame {rec['frame']}  score {rec['score']:.4g}{thr}{flag}  |  {self.n} scored, "
                f"{self.anoms} anomalies  |  {fps:.2f} fps  |  {rec['latency_ms']['total']:.0f} ms")
        if self.live is not None:
            from rich.text import Text
            self.live.update(Text(line, style="bold red" if rec["anomalous"] else ""))
        else:
            now = time.perf_counter()
            if rec["anomalous"] or now - self.last_plain >= 5.0:
                click.echo(line, err=True)
                self.last_plain = now

    def close(self):
        if self.live is not None:
            self.live.stop()


def _summary_text(s: dict) -> str:
    lat = s["latency_ms"]
    parts = [f"{s['frames_scored']} frames scored", f"{s['anomalies']} anomalies",
             f"{s['frame_errors']} bad frames", f"{s['skipped']} skipped (newest-frame policy)",
             f"{s['fps']} fps"]
    if lat["p50"] is not None:
        parts.append(f"latency p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms")
    if s.get("sensor_faults"):
        parts.append("sensor faults " + ", ".join(f"{k} {v}" for k, v in sorted(s["sensor_faults"].items())))
    if s.get("hook_failures"):  # a picture or viewer hook that raised (hook_failed events in the results)
        parts.append("hook failures " + ", ".join(f"{k} {v}" for k, v in sorted(s["hook_failures"].items())))
    if s["outages"]:
        parts.append(f"{s['outages']} outage(s), {s['outage_s']:.1f} s")
    watch = s.get("alarm_watch") or {}
    if watch.get("fired") or watch.get("state") == "high":   # alarm_rate_high events in the results
        parts.append(f"alarm rate high {watch['fired']} time(s), now {watch['state']} ({watch['flagged']} of the "
                     f"last {watch['frames']} flagged, tested against {watch['expected_rate']:.3g}"
                     + (f": the threshold's {watch['calibrated_rate']:g} read from {watch['n_normal']} frames)"
                        if watch.get("calibrated_rate") is not None and watch.get("n_normal") else ")"))
    text = f"summary ({s['stopped']}): " + ", ".join(parts)
    if s.get("truth"):  # the source carried ground truth: how well the scores separated it
        from edge_ad.runtime.truth import truth_text
        text += "\n" + truth_text(s["truth"])
    return text


def _close_picture_hook(close, **kwargs) -> None:
    """Close --display / --rerun at the run's end; a window or viewer that fails then is reported,
    it does not replace the run's summary and exit status (pictures never end a run)."""
    try:
        close(**kwargs)
    except Exception as e:
        hook = getattr(getattr(close, "__self__", None), "name", "picture hook")
        click.echo(f"warning: {hook} did not close cleanly: {type(e).__name__}: {e}", err=True)


@click.command("run")
@click.option("--camera", is_flag=True, help="Open the first RGB-D camera found (RealSense, OAK).")
@click.option("--source", "source_uri", metavar="URI",
              help="synth://[?n=&anomaly_rate=&seed=], a frame folder, a labelled folder "
                   "(folder://DIR?normal=CLASS[&split=val]: AUROC, recall, false alarms at the end), "
                   "a RealSense .db3/.bag, a ROS bag (.mcap/.db3/dir, rosbag://PATH?rgb=&depth=), "
                   "realsense://[serial], oak://[id]. Default: synth://")
@click.option("--model", type=click.Path(), callback=model_directory, help="Exported model directory "
              "(default: the shipped demo model, trained on synthetic boxes; a note on stderr says so "
              "for any other source). The results name it; --out written by another model is refused.")
@click.option("--backend", type=click.Choice(["onnxruntime", "tensorrt"]), default="onnxruntime",
              show_default=True)
@click.option("--threshold", type=float, help="Anomaly threshold, a number > 0 (default: the model's calibrated one).")
@click.option("--out", type=click.Path(dir_okay=False), help="Append one JSON line per frame + a summary "
              "(never overwritten: a restart continues the frame index).")
@click.option("--max-frames", type=click.IntRange(min=1), help="Stop after N scored frames.")
@click.option("--save-anomalies", type=click.Path(file_okay=False), metavar="DIR",
              help="Save RGB, depth, reconstruction and error heatmap PNGs of each flagged frame as "
                   "DIR/<index>_<frame>_<part>.png (never overwritten: a name in use gets -2, -3, ...).")
@click.option("--save-anomalies-min-free-mb", "anomalies_min_free_mb", type=FiniteFloat(min=0), metavar="MB",
              help="Pause the pictures while DIR's filesystem has less than MB MiB free, so they never take the "
                   "space the results need [default: max(500 MiB, 5 % of the filesystem)].")
@click.option("--save-anomalies-keep", "anomalies_keep", type=click.IntRange(min=1), metavar="N",
              help="With --save-anomalies: keep the pictures of the newest N flagged frames, deleting the oldest "
                   "sets in DIR beyond N (earlier runs' too), so pictures never fill the disk and stop for good "
                   "(the systemd unit: 5000, ~2 GB at 640 x 480). Default: keep all.")
@click.option("--display", is_flag=True, help="Show an OpenCV window with the overlay.")
@click.option("--sheet", type=click.Path(dir_okay=False), metavar="FILE.png",
              help="When the run ends, write a contact sheet: flagged frames and the lowest-scoring "
                   "normal ones as RGB | depth | reconstruction | error rows with score, threshold, truth "
                   "(never overwritten: a name in use gets -2, -3, ...).")
@click.option("--rerun", "rerun_target", metavar="FILE.rrd|spawn|serve",
              help="Log every frame to Rerun (needs rerun-sdk): save FILE.rrd, spawn the viewer, or "
                   "serve the web viewer.")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Run seed: frame i's initial latents come from "
              "frame_seed(seed, i) [default 0].")
@click.option("--z0", "z0_path", type=click.Path(dir_okay=False, exists=True),
              help="Fixed initial latents for every frame: .npy float32 (n_seed, z_dim).")
@click.option("--quiet", "-q", is_flag=True, help="No live status line.")
@click.option("--frame-timeout", type=FiniteFloat(min=0, min_open=True, allow_inf=True), metavar="S",
              help="End the run as fatal (exit 1) when scoring one frame takes longer than S seconds "
                   "(a stuck backend; systemd then restarts it). Default: no limit.")
@click.option("--rotate-mb", type=FiniteFloat(min=0, min_open=True), metavar="MB",
              help="Rotate --out once it exceeds MB megabytes: renamed to OUT.1, OUT.2, ... (never "
                   "overwritten; the highest number is the newest).")
@click.option("--rotate-keep", type=click.IntRange(min=1), metavar="N",
              help="With --rotate-mb: after each rotation delete the rotated files older than the newest N (a "
                   "'pruned' event names them), so a service never fills its disk with results. Default: keep all.")
@click.option("--max-frame-pixels", type=click.IntRange(min=1), default=None, metavar="N",
              help="Refuse frames larger than N pixels (checked from image headers before "
                   "decoding) [default 16777216 = 4096 x 4096].")
@click.option("--alarm-window", type=click.IntRange(min=0), default=None, metavar="N",
              help="Alarm-rate watch over the last N scored frames (0: off): an alarm_rate_high event when "
                   "more are flagged than the model threshold's calibrated false-alarm rate allows (a run of "
                   "anomalies, or the scene changed: edge-ad calibrate), alarm_rate_normal when plausible again. "
                   f"Off with --threshold (its rate is unknown). [default: auto: {DEFAULT_WINDOW}; off for a "
                   "source that labels its frames (synth://, folder://DIR?normal=CLASS), whose recall and "
                   "false-alarm rate the summary measures; give N to switch it on there]")
@click.option("--alarm-alpha", type=FiniteFloat(min=0, max=NORMAL_P, min_open=True, max_open=True),
              default=DEFAULT_ALPHA, show_default=True, metavar="A",
              help=f"Significance of the alarm-rate watch's one-sided binomial test, in (0, {NORMAL_P:g}).")
@click.option("--trusted-key", "trusted_keys", multiple=True, type=click.Path(dir_okay=False, exists=True),
              metavar="FILE", help="Ed25519 public key (PEM) the model must be signed by (edge-ad export "
              "--sign); repeatable. Unsigned or otherwise-signed models are refused.")
@click.option("--wait-for-camera", is_flag=True,
              help="With --camera (or a realsense:// / oak:// source): no camera at start is an outage, as a camera "
              "lost mid-run: a source_lost event in --out, then retried every 0.5-10 s until one opens (the "
              "systemd unit uses it: a camera that enumerates late after boot). Without it: exit 1 at once.")
def cmd(camera, source_uri, model, backend, threshold, out, max_frames, save_anomalies, anomalies_min_free_mb,
        anomalies_keep, display, sheet, rerun_target, seed, z0_path, quiet, frame_timeout, rotate_mb, rotate_keep, max_frame_pixels, alarm_window,
        alarm_alpha, trusted_keys, wait_for_camera):
    """Score RGB-D frames live: anomaly score per frame, alerts, JSON-lines results.

    With no arguments: the shipped demo model on synth://, printing live status.
    --out is appended to (never overwritten); a restart continues its frame index.
    Exit status: 0 ok (also after SIGINT/SIGTERM), 1 fatal error (also a signal that had to abandon
    a frame still scoring), 2 usage, 3 some frames were bad (or sensor faults) or lost (a recording cut short, a stream that stalled), 4 no scorable frame.
    """
    from edge_ad.runtime.capture import run_capture, scorer_spec, scorer_threshold
    from edge_ad.runtime.manifest import parity_note
    from edge_ad.runtime.preprocess import DEFAULT_MAX_PIXELS
    from edge_ad.runtime.results import ResultsFileError, rotate_bytes_of

    _check_options(camera, source_uri, seed, z0_path, threshold, out, rotate_mb, rotate_keep, sheet, rerun_target)
    if anomalies_keep is not None and not save_anomalies:
        raise click.UsageError("--save-anomalies-keep keeps the newest N flagged frames' pictures: give "
                               "--save-anomalies DIR too")
    # open the source first: a missing camera is reported at once, before loading the model
    uri = source_uri or DEFAULT_SOURCE
    max_pixels = max_frame_pixels or DEFAULT_MAX_PIXELS
    source, opener, warned = _open_source(camera, uri, max_pixels, wait_for_camera)
    try:
        scorer = load_scorer(model, backend, trusted_keys=trusted_keys)
        z0 = load_z0(z0_path, scorer.n_seed, scorer.z_dim) if z0_path else None
        thr = threshold if threshold is not None else scorer_threshold(scorer)
        spec = scorer_spec(scorer)
        stop = threading.Event()
        status = Status(quiet, source.uri or uri)
        pictures = _picture_hooks(spec, thr, stop, status, (save_anomalies, anomalies_min_free_mb, anomalies_keep),
                                  display, sheet, rerun_target)
    except BaseException:
        source.close()
        raise
    _notes_before_the_run(model, camera, uri, thr, parity_note(getattr(scorer, "manifest", None) or {}),
                          _threshold_dropped(scorer) if thr is None else None)

    # pictures need the reconstruction, which the scorer keeps only on request
    score_kwargs = {"keep_reconstructions": True} if (save_anomalies or display or sheet or rerun_target) else {}
    try:
        summary = run_capture(source, scorer, threshold=thr, out=out, max_frames=max_frames,
                              seed=0 if seed is None else seed, z0=z0, score_kwargs=score_kwargs,
                              reopen=opener if source.live else None,
                              on_result=[status] + pictures.hooks, log=status.log, stop=stop,
                              frame_timeout=frame_timeout, max_pixels=max_pixels,
                              rotate_bytes=rotate_bytes_of(rotate_mb),
                              rotate_keep=rotate_keep,
                              alarm_window=alarm_window, alarm_alpha=alarm_alpha)
    except OSError as e:  # the results file cannot be opened (the loop itself reports every other error)
        source.close()
        raise click.ClickException(f"cannot write results to {out}: {e}")
    except ResultsFileError as e:  # --out is some other file: refused, left unchanged
        source.close()
        raise click.ClickException(str(e))
    finally:
        status.close()
        pictures.close()
    for warning in source.warnings[len(warned):]:   # said while reading, e.g. 16-bit
        click.echo(f"warning: {warning}", err=True)                          # PNG depth like 8-bit levels
    click.echo(_summary_text(summary))
    pictures.say_written(sheet, rerun_target)
    if out:
        click.echo(f"results: {out}")
    _exit_with_status(summary, out, slop=getattr(source, "slop", None))


def _check_options(camera, source_uri, seed, z0_path, threshold, out, rotate_mb, rotate_keep, sheet,
                   rerun_target) -> None:
    """The option combinations and values checked before anything is opened (click.UsageError: exit 2)."""
    from edge_ad.runtime.results import not_rotatable, rotation_problem
    if camera and source_uri:
        raise click.UsageError("give --camera or --source, not both")
    if source_uri is not None and not source_uri.strip():   # `--source "$SRC"` with SRC unset: not the default
        raise click.UsageError("--source is empty (an unset shell variable?): give a frame folder, a recording or a "
                               "URI; leave --source out for the default synth://")
    if seed is not None and z0_path:
        raise click.UsageError("give --seed or --z0, not both")
    check_threshold(threshold)
    if out == "-":     # Unix tools mean stdout; a file named '-' would be written (and appended to by later runs)
        raise click.UsageError("--out - would write a file named '-': give a file name, or --out /dev/stdout to "
                               "stream the JSON lines (not rotated)")
    why = (rotation_problem(out is not None, rotate_mb is not None, rotate_keep is not None)
           or (not_rotatable(out, rotate_mb is not None, rotate_keep is not None) if out else None))
    if why:
        raise click.UsageError(why)
    if sheet and not sheet.lower().endswith(".png"):
        raise click.UsageError(f"--sheet writes a PNG: {sheet} does not end in .png")
    if rerun_target:
        from edge_ad.runtime.rerun_view import check_target
        try:
            check_target(rerun_target)
        except ValueError as e:
            raise click.UsageError(str(e))


def _open_source(camera: bool, uri: str, max_pixels: int, wait_for_camera: bool = False):
    """(the opened source, how to open it again (a live source that drops is reopened), the warnings it
    gave on opening, said on stderr). A source that cannot be opened is a one-line error, except a camera
    with ``wait_for_camera``: an Unopened source, which run_capture reopens with backoff until one opens."""
    from edge_ad.runtime.sources import SourceError, Unopened, open_camera, open_source
    opener = open_camera if camera else (lambda: open_source(uri, max_pixels=max_pixels))
    try:
        source = opener()
    except SourceError as e:
        if wait_for_camera and (camera or uri.startswith(CAMERA_SCHEMES)):
            click.echo(f"waiting for the camera: {e}; retrying every 0.5-10 s (a source_lost event in the results)",
                       err=True)
            return Unopened("camera" if camera else uri, str(e)), opener, []
        raise click.ClickException(str(e))
    warned = list(source.warnings)
    for warning in warned:   # e.g. a labelled folder's unchecked normal class
        click.echo(f"warning: {warning}", err=True)
    return source, opener, warned


class _Pictures:
    """The picture hooks a run was asked for, in the order they see each result: --save-anomalies
    (AnomalySaver), --display (Display), --sheet (ContactSheet), --rerun (RerunView)."""

    def __init__(self):
        self.hooks, self.display, self.sheet, self.view = [], None, None, None

    def close(self) -> None:
        """Close the --display window and the --rerun viewer (a failure is a warning: _close_picture_hook)."""
        if self.display is not None:
            _close_picture_hook(self.display.close)
        if self.view is not None:
            _close_picture_hook(self.view.close, linger=sys.stdin.isatty())

    def say_written(self, sheet: Optional[str], rerun_target: Optional[str]) -> None:
        """Write the contact sheet and name the files written (a picture never ends a run: a sheet that
        cannot be written is reported)."""
        contact, view = self.sheet, self.view
        if contact is not None:
            try:
                written = contact.write()
            except Exception as e:   # a full disk, a directory that is a file, ...
                click.echo(f"warning: contact sheet not written ({sheet}): {type(e).__name__}: {e}", err=True)
            else:
                click.echo(("contact sheet: no frame to show, none written" if not written else
                            f"contact sheet: {written}" if written == contact.path else
                            f"contact sheet: {written} ({sheet} exists: never replaced)"))
        if view is not None and view.path is not None:
            click.echo(f"rerun recording: {view.path}" + ("" if view.path == Path(rerun_target) else
                                                          f" ({rerun_target} exists: never replaced)"))


def _picture_hooks(spec, thr, stop, status: Status, saving: tuple, display, sheet, rerun_target) -> _Pictures:
    """Open the picture hooks asked for; one that cannot open (no OpenCV, no graphical session, no rerun-sdk
    or viewer) is a one-line error, and --save-anomalies needs a threshold. ``saving``: --save-anomalies'
    (DIR or None, --save-anomalies-min-free-mb, --save-anomalies-keep)."""
    pictures = _Pictures()
    save_anomalies, min_free_mb, keep = saving
    if save_anomalies:
        if thr is None:
            raise click.UsageError("--save-anomalies needs a threshold: the model has none, pass --threshold")
        pictures.hooks.append(AnomalySaver(save_anomalies, spec, min_free_mb=min_free_mb, keep=keep,
                                           log=status.log))
    try:
        pictures.display = Display(spec, stop) if display else None
    except (ImportError, RuntimeError) as e:   # no OpenCV, no graphical session
        raise click.ClickException(str(e))
    if pictures.display is not None:
        pictures.hooks.append(pictures.display)
    if sheet:
        from edge_ad.runtime.sheet import ContactSheet
        pictures.sheet = ContactSheet(sheet, spec)
        pictures.hooks.append(pictures.sheet)
    if rerun_target:
        from edge_ad.runtime.rerun_view import RerunView
        try:
            pictures.view = RerunView(rerun_target, spec, log=status.log)
        except (ImportError, RuntimeError) as e:   # rerun-sdk missing, or no viewer to spawn: one line
            raise click.ClickException(str(e))
        pictures.hooks.append(pictures.view)
    return pictures


def _threshold_dropped(scorer) -> Optional[str]:
    """Why the model's own threshold does not hold for ``scorer`` (runtime.scorer.threshold_dropped: the
    manifest's search or preprocessing differs from the threshold's), or None."""
    from edge_ad.runtime.scorer import threshold_dropped
    return threshold_dropped(getattr(scorer, "manifest", None), getattr(scorer, "config", None))


def _notes_before_the_run(model, camera: bool, uri: str, thr, parity: Optional[str],
                          dropped: Optional[str] = None) -> None:
    """Say on stderr what the run will not do as one might expect: the demo model scoring real frames,
    no threshold to flag frames with (``dropped``: why the model's own does not hold, _threshold_dropped), an
    export whose parity was not checked (``parity``: runtime.manifest.parity_note); also with -q, which removes
    the live status line only."""
    if not model and (camera or not uri.startswith("synth://")):
        click.echo(f"note: no --model: scoring with the shipped demo model ({demo_model_dir()}), trained on "
                   "synthetic boxes, not on your scene; pass --model DIR (edge-ad export) for real frames",
                   err=True)
    if parity is not None:
        click.echo(f"note: {parity}", err=True)
    if thr is None and dropped:
        click.echo(f"note: no threshold: {dropped}; scores are written, frames are not flagged", err=True)
    elif thr is None:
        click.echo("note: no threshold (the model has none and --threshold was not given): "
                   "scores are written, frames are not flagged", err=True)


def _exit_with_status(summary: dict, out, slop: Optional[float] = None) -> None:
    """Say on stderr why the run did not end well, and exit with its status (runtime.capture.exit_status).
    ``slop``: the source's pairing slop (a ROS bag's), named when its messages never paired."""
    status = exit_status(summary)
    if summary.get("abandoned_frame") is not None:
        # a scoring call is still stuck on its (daemon) thread: leave without waiting for it, the
        # results file is closed and flushed already
        click.echo(f"error: {summary.get('fatal_error')}", err=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    if status == EXIT_FATAL and summary["stopped"] != STOP_SOURCE_FAILED:   # source_failed: said in the log
        click.echo(f"error: {summary.get('fatal_error')}", err=True)
    elif status == EXIT_NO_FRAMES:
        why = no_pairs_note(summary.get("source_stats"), slop)
        click.echo(f"error: no frame could be scored ({summary['frame_errors']} bad frames)"
                   if summary["frame_errors"] else "error: the source gave no frames" + (f": {why}" if why else ""),
                   err=True)
    elif status == EXIT_BAD_FRAMES:
        if summary["frame_errors"]:
            click.echo(f"warning: {summary['frame_errors']} bad frame(s) were skipped (see the log/results)",
                       err=True)
        if summary.get("recording_truncated"):
            click.echo("warning: the recording is cut short: frames after its last intact message are lost "
                       "(recording_truncated in the results)", err=True)
        if summary.get("stream_gaps"):
            gaps = summary["stream_gaps"]
            click.echo(f"warning: {gaps['frames']} frame(s) were lost: one stream stalled mid-recording "
                       f"({gaps['gaps']} gap(s); stream_gap events in the results)", err=True)
        if summary.get("results_lost"):
            click.echo(f"warning: {summary['results_lost']} result line(s) were not written: no space on the "
                       f"disk of {out} (results_lost events in the results)", err=True)
    sys.exit(status)
