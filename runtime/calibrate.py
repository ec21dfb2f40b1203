"""Adapt an exported model to a new scene from normal frames of that scene, torch-free.

    new_manifest = calibrate_model("model_dir", frames, "model_dir-scene", fpr=0.05, source="recording.bag")

What the scoring needs per scene is rebuilt with the exported graphs (encoder.onnx and the search's
graphs through ``Scorer``), and a NEW model directory is written (never inside the original, which is
never touched). Only frames ``edge-ad run`` would score as normal scene frames are used (``read_scene``):
sensor faults (a black colour sensor, a stuck camera's repeats, ...: ``SensorFaultDetector``),
frames the source labels anomalous and bit-identical copies of a frame already used are dropped and counted.
Of a source that knows its length (a folder, synth://?n=N, a ROS bag, a RealSense recording: ``source_length``)
and holds more than ``max_frames``, exactly
``max_frames`` frames spread evenly over it are used (``spread_positions``), so they cover the whole recording
(measured on kinect-rgbd: 50 frames of one stretch of a recording can look like the model's rate while the
rest does not, models/kinect-rgbd/HISTORY.md, session 23); ``every`` K uses every K-th frame instead (1: the
first ``max_frames``; a camera: ``max_frames`` frames over max_frames x K frames of time; a bag or recording is
then not counted).

  colour gain   when the model knows its train frames' mean foreground colour (preprocess
                colour_reference): the gain that maps the scene's mean foreground brightness to it
                (preprocess colour_gain, same for R, G, B), so a scene-wide light change is undone first.
  camera shift  the (dy, dx), up to ``max_shift`` (3; off by default for models with search steps, k > 0:
                ``default_max_shift``) model pixels, under which the model as exported fits
                the scene's frames best (lowest mean log score: ``scene_camera_shift``; its latent factor measured
                against the bank without its shifted copies, ``shift_search_memory``: copies made so that the
                score tolerates a moved camera would let a shift pay for itself), stored as preprocess
                scene_shift so every later frame is moved back the same way (measured on kinect-rgbd:
                a (2, -2) or (-1, 3) camera shift of 50 rectangle frames is found exactly by the rectangle
                model without a shift-min (the ninth pass), unshifted frames keep (0, 0)); taken only when the frames can tell (``choose_camera_shift``: it lowers
                the geometric-mean score > 1.2x, in units of the score's latent power, and the frames one by one prefer it to no shift), else
                (0, 0) and the record says none was identified; the shifts the frames cannot tell from it are
                recorded. Each candidate is scored where it is (``camera_shift_fits``, ``Scorer.score_as_is``:
                without the shift-min's copies and without the pixel distance's own shift search), so a
                shift-tolerant model tells shifts apart as one without those tolerances. Until session 26 the
                search scored with them, and the shipped cylinder (shift-min R = 2, pixel search R_p = 3) scored
                most frames alike under neighbouring shifts: scene C of models/kinect-rgbd/new_scene.py (moved by
                (2, -2)), 50 random frames, best fit (-2, 1) at 1.14x, none taken, 14 % false alarms on the rest;
                scored where they are: (-2, 2) exactly (120x), 8 % (models/kinect-rgbd/HISTORY.md, "Fourteenth pass
                (issue 12): cylinder"). (Rectangle without a shift-min, 50 frames: (2, -2) and (-1, 3) found
                exactly, no other shift as good.)
                Models with centroid alignment keep (0, 0).
  latent bank   the original bank (E of the training frames) plus E of every usable scene frame and
                of its augmented copies (the recipe the bank was built with: manifest
                latent_bank["augment"], runtime/latent_bank.py), appended frame by frame in the bank's
                own layout (the frame, then its copies: latent_memory.original_rows), so the configuration's
                bank_augment_weight weighs the scene's copies as the training frames' (and its
                bank_trusted_augment counts the same augmentations' copies as original); models without
                a latent memory keep their files as they are.
  pixel memory  (models scoring with one: score_pixel_power > 0) the original frames (pixel_memory.npy) plus
                every usable scene frame as the scene shows it, in the model's own light
                (pixel_memory.in_model_light: the scene's colour_gain applied, as to the frames scored), expanded
                with the memory's own augment; models without it keep their files as they are. A scene that
                would grow it past its caps (pixel_memory.MAX_PIXEL_FRAMES, MAX_PIXEL_BYTES of expanded rows)
                is refused before it is scored (``check_scene_fits_pixel_memory``).
  threshold     from the scene frames' scores. A frame in the bank would score itself at distance 0, so
                each frame is scored HELD OUT: the frames are split into 5 contiguous blocks and a frame's
                latent distance is to the bank without its block's rows (its neighbours in a recording are
                near-duplicates of it), as an unseen frame would be, and so is its pixel distance to the
                pixel memory (the original frames and the other blocks' scene frames); with the shift-min
                (score_shift_radius > 0) for each shifted copy, then the minimum. ``threshold_rule``:
                - the model carries a threshold for this very rate fpr, read from its own normal frames:
                  its threshold (set at the default --fpr) or, at another rate, the entry of its rate table
                  (threshold "rates", 1-20 % in steps of 1 %, the shipped models: ``model_threshold_at``):
                  that threshold is KEPT unless the scene's frames show it is too low for the scene: more of
                  them score above it than fpr allows, significantly (one-sided binomial test, p <
                  SCENE_TEST_ALPHA = 0.05: ``scene_exceeds``); then it is RAISED only as far as the scene's
                  frames ask: to the lowest threshold the same test accepts (the (k + 1)-th highest held-out
                  score, k = ``frames_accepted``: 4 of 50 frames at 4 %, 7 at 7-8 %), so a threshold is
                  accepted or raised to by one criterion (``lowest_accepted_threshold``). Why: the model's
                  threshold was read from hundreds of normal frames (400 for the shipped ones), the scene's
                  quantile from a few dozen: at 4 % of 50 frames it is the second-highest score, as noisy as
                  one frame. Measured on kinect-rgbd (models/kinect-rgbd/new_scene.py, 50 calibration frames
                  drawn at random): the quantile rule put sphere's and rectangle's thresholds 1.4-1.5x above
                  every held-out normal of the scene in 3 of 8 draws each (anomalies flagged 85-87 %), the
                  kept threshold in none; where the scene refuted it, taking the quantile (until session 22)
                  cost sphere's scene M (mirror + brightness +20 %, draw 0) 1.60x and 81.5 % flagged (2 %
                  false alarms), the lowest accepted threshold 1.11x and 92.5 % (2 %) (models/kinect-rgbd
                  HISTORY.md, "Session 22: calibrate's threshold rule", every scene measured before / after). The cost:
                  a raised threshold lets up to k of the n frames above it, so on fresh frames of the scene
                  expect up to about (k + 1) / (n + 1) false alarms (9.8 % at 4 % of 50, 15.7 % at 8 %),
                  where the quantile expects about the rate (measured where the twelfth-pass cylinder's 8 %
                  was refuted, mirror + zoom 1.05x, 2 draws: 10 % and 8 %, 9 of 100: below, but not
                  conclusively; its held-out scores ran high); the raised threshold's count is written to the
                  manifest (threshold "frames_above") and the alarm-rate watch bounds the rate with it;
                - else, the model's threshold was set at a higher rate than fpr: the scene's (1 - fpr)
                  quantile, floored at the model's threshold (a lower bound of a threshold at the lower rate);
                - no usable model threshold (none, a lower rate than fpr, or ``floor`` False): the
                  scene's (1 - fpr) quantile.
                A threshold read from the scene (a quantile or a raise) with fewer than MIN_EXPECTED_ABOVE
                expected frames above it (frames x fpr) is one of the top few scores: said
                (``threshold_warning``). Measured on kinect-rgbd (an outside
                check, 50 random scene frames, --fpr 0.05 below rectangle's 7 %): the floored quantile put
                the threshold 1.7x above the held-out normals' 95th percentile (2 % false alarms, 74.5 %
                of anomalies flagged).

The manifest is copied with the bank entry, the threshold and a "calibration" record (source,
frames read / used / unreadable / unscorable / sensor faults by fault / skipped as labelled anomalous /
duplicates, the selection (spread over the source's length or every K-th: the frames selected and the ids used),
date, target rate, the original model, its manifest's sha256 and the key that signed it when checked)
updated, and the sha256 of every file recomputed. The directory is written under a temporary name,
verified as ``Scorer.load`` would, and renamed when complete. A signature of the original does not
cover the new manifest: the new directory is unsigned unless signed with ``sign_key``.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import shutil
from pathlib import Path
from typing import Callable, Iterable, NamedTuple, Optional, Sequence

import numpy as np

from .binomial import accepted_count, binomial_tail   # the exact one-sided test (shared with the run's alarm-rate watch)
from .latent_bank import bank_inputs_uint8, unaligned_uint8
from .latent_memory import LatentMemory, latent_memory, unshifted_rows
from .manifest import MANIFEST, load_manifest, sha256_file
from .model_arrays import load_npy
from .pixel_memory import PixelMemory, check_pixel_memory_size, in_model_light
from .preprocess import (COLOUR_GAIN_LIMITS, MAX_SCENE_SHIFT, FrameError, aligned_uint8, move_uint8,
                         normalize_uint8, shift_frame, shift_offsets)
from .score_scale import latent_factor, pixel_factor
from .sensor_faults import SensorFaultDetector, frame_digest
from .sources.base import is_stream

MIN_FRAMES = 20
DEFAULT_FPR = 0.05           # the scene's target false-alarm rate when the model carries no threshold
DEFAULT_MAX_SHIFT = 3        # model pixels searched for the scene's camera shift (0: keep the model's);
                             # models with search steps (k > 0) default to 0 (``default_max_shift``)
MIN_SHIFT_GAIN = np.log(1.2)  # a camera shift is taken when it lowers the scene's geometric-mean score > 1.2x,
                             # in units of the score's latent power (``shift_score_power``)
SHIFT_TIE_ALPHA = 0.05       # the frames' one-sided sign test at this level says a shift fits worse than the best
SIGN_TEST_MIN_FRAMES = int(np.floor(np.log(SHIFT_TIE_ALPHA) / np.log(0.5))) + 1   # 5: 0.5^5 < 0.05 <= 0.5^4, so it
                             # cannot say so with fewer frames that differ
SCENE_TEST_ALPHA = 0.05      # the model's threshold is replaced when the scene exceeds it at this significance
MIN_EXPECTED_ABOVE = 3       # fewer scene frames x rate than this: a quantile threshold rests on the top scores


class CalibrationError(ValueError):
    """Calibration impossible: too few usable frames, a bad output directory, a model it cannot adapt."""


def _quantile_threshold(scores: np.ndarray, fpr: float) -> float:
    """The threshold that flags at most ``fpr`` of ``scores`` (as models.evaluate.calibrate_threshold)."""
    return float(np.quantile(np.asarray(scores, float), 1 - fpr, method="higher"))


def frames_above(scores: Sequence, threshold: float) -> int:
    """How many of ``scores`` are above ``threshold`` (the frames it flags)."""
    return int((np.asarray(scores, float) > threshold).sum())


def scene_exceeds(scores: np.ndarray, threshold: float, fpr: float) -> tuple:
    """(k, p): how many of the scene's held-out ``scores`` are above ``threshold``, and the chance of at
    least that many if the threshold flagged a share ``fpr`` of the scene's normal frames (one-sided
    binomial). p < SCENE_TEST_ALPHA: the threshold is too low for this scene."""
    k = frames_above(scores, threshold)
    return k, binomial_tail(k, len(scores), fpr)


def frames_accepted(n: int, fpr: float) -> int:
    """The most of ``n`` scene frames that may score above a threshold set at rate ``fpr`` before
    ``scene_exceeds`` refutes it: the largest k with P(X >= k) >= SCENE_TEST_ALPHA, X ~ Binomial(n, fpr)
    (50 frames: 4 at 4 %, 7 at 7-8 %; ``binomial.accepted_count``, as the alarm-rate watch's limits)."""
    return accepted_count(n, fpr, SCENE_TEST_ALPHA)


def lowest_accepted_threshold(scores: np.ndarray, fpr: float) -> tuple:
    """(threshold, k): the lowest of the scene's held-out ``scores`` that ``scene_exceeds`` does not
    refute at rate ``fpr``: the (k + 1)-th highest, k = ``frames_accepted`` (at most k frames above it)."""
    scores = np.sort(np.asarray(scores, float))[::-1]
    k = frames_accepted(len(scores), fpr)
    return float(scores[min(k, len(scores) - 1)]), k


@dataclasses.dataclass(frozen=True)
class ThresholdInputs:
    """What the threshold rule (``choose_threshold``) reads, built once by ``calibrate_model`` and handed to
    its ``on_threshold_inputs`` hook (models/kinect-rgbd/new_scene.py saves ``as_dict()`` to study the rule
    offline without rescoring; ``choose_threshold(ThresholdInputs(**saved))`` replays it):
    ``held_out`` the scene frames' held-out scores (n floats; not written to the manifest), ``fpr`` the
    scene's target rate, ``model_threshold`` the model's own threshold usable as a floor (its threshold at
    ``fpr``, else ``model_threshold_floor``; None without one or with ``floor`` off: the calibration's
    "threshold_floor"), ``same_rate`` True when it was read at this very rate (its own threshold, or the entry
    of its rate table: ``model_threshold_at``), ``what`` its name in the rule's text."""
    held_out: tuple
    fpr: float
    model_threshold: Optional[float]
    same_rate: bool
    what: str = "the model's own threshold"

    def __post_init__(self):
        object.__setattr__(self, "held_out", tuple(float(v) for v in self.held_out))
        if not self.held_out:
            raise CalibrationError("the threshold rule needs the scene's held-out scores, got none")
        if not 0 < self.fpr < 1:
            raise CalibrationError(f"the target false-alarm rate must be in (0, 1), got {self.fpr}")

    def as_dict(self) -> dict:
        """{"held_out": [n floats], "fpr", "model_threshold", "same_rate", "what"} (JSON-ready)."""
        return {"held_out": list(self.held_out), "fpr": self.fpr, "model_threshold": self.model_threshold,
                "same_rate": self.same_rate, "what": self.what}


@dataclasses.dataclass(frozen=True)
class ThresholdChoice:
    """``choose_threshold``'s result: the ``threshold``, the ``rule``'s text (the calibration's
    "threshold_rule"), its record ``test`` ("threshold_test") and the scene's (1 - fpr) quantile of the
    held-out scores (``scene_quantile``: "threshold_scene", recorded in every branch)."""
    threshold: float
    rule: str
    test: dict
    scene_quantile: float


def choose_threshold(inputs: ThresholdInputs) -> ThresholdChoice:
    """The scene's threshold from its held-out scores and the model's own threshold (``ThresholdInputs``;
    module docstring, "threshold"). Refuted by the scene (``scene_exceeds``), the model's threshold is raised
    only as far as the scene's frames ask: to the lowest threshold the same test accepts
    (``lowest_accepted_threshold``), not to the scene's (1 - fpr) quantile (recorded as "scene_quantile").
    The record (the calibration's "threshold_test") holds "frames" and "frames_above_threshold" (how many of
    them score above the threshold chosen) in every branch, and the binomial test's fields where the
    model's threshold was tested (kept or raised)."""
    scores, fpr, model_threshold, what = inputs.held_out, inputs.fpr, inputs.model_threshold, inputs.what
    n = len(scores)
    quantile = _quantile_threshold(scores, fpr)

    def chosen(threshold: float, rule: str, test: Optional[dict] = None) -> ThresholdChoice:
        if test is None:                 # no test ran: the count of the threshold chosen only
            test = {"frames": int(n), "frames_above_threshold": frames_above(scores, threshold)}
        return ThresholdChoice(threshold, rule, test, quantile)
    if model_threshold is None:
        return chosen(quantile, "scene quantile")
    if not inputs.same_rate:            # the model's threshold, set at a higher rate: a lower bound only
        threshold = max(quantile, model_threshold)
        return chosen(threshold, "max(scene quantile, the model's own threshold)")
    k, p = scene_exceeds(scores, model_threshold, fpr)   # kept unless the scene refutes it
    test = {"frames_above_model_threshold": k, "frames": int(n), "binomial_p": p, "alpha": SCENE_TEST_ALPHA}
    if p < SCENE_TEST_ALPHA:
        raised, allowed = lowest_accepted_threshold(scores, fpr)
        # refuted: more than `allowed` frames score above the model's threshold, so the (allowed + 1)-th highest is above it
        above = frames_above(scores, raised)
        test.update(raised_to="lowest accepted", frames_accepted=allowed, frames_above_threshold=above,
                    binomial_p_at_threshold=binomial_tail(above, n, fpr), scene_quantile=quantile)
        return chosen(raised, f"raised: {k} of {n} scene frames above {what}, more than {fpr:g} allows (binomial "
                      f"p = {p:.2g} < {SCENE_TEST_ALPHA:g}); raised only as far as the scene's frames ask, to the "
                      f"lowest threshold they accept ({above} of {n} above it, p = "
                      f"{test['binomial_p_at_threshold']:.2g}), {raised / model_threshold:.2f}x {what} (the "
                      f"scene's {1 - fpr:g} quantile: {quantile / model_threshold:.2f}x)", test)
    test["frames_above_threshold"] = k                    # the threshold kept is the model's
    return chosen(model_threshold, f"{what}: {k} of {n} scene frames above it, as {fpr:g} allows "
                  f"(binomial p = {p:.2g} >= {SCENE_TEST_ALPHA:g})", test)


def _check_out(model_dir: Path, out_dir: Path) -> None:
    model, out = model_dir.resolve(), out_dir.resolve()
    if out == model:
        raise CalibrationError(f"--out {out_dir} is the model directory itself; calibration writes a NEW directory "
                               "and never changes the original")
    if model in out.parents:
        raise CalibrationError(f"--out {out_dir} is inside the model directory {model_dir}; calibration never "
                               "changes the original: choose a directory outside it")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise CalibrationError(f"--out {out_dir} already exists and is not empty; choose a new directory "
                               "(calibrated models are never overwritten)")


def source_length(frames, count: bool = True) -> Optional[int]:
    """How many frames ``frames`` holds when it knows: a ROS bag's or RealSense recording's ``frame_count()``
    (Source.frame_count: one pass over its message stamps, no image decoded; not asked when ``count`` is
    False: --every K picks the frames without it), a folder's or a list's len(), synth://?n=N's N; else None
    (a camera, an endless synth)."""
    from .sources.synth_source import SynthSource
    counter = getattr(frames, "frame_count", None) if count else None
    n = counter() if callable(counter) else None
    if n is not None:
        return n
    try:
        return len(frames)
    except TypeError:
        return frames.n if isinstance(frames, SynthSource) else None


def spread_positions(length: Optional[int], max_frames: Optional[int]) -> Optional[tuple]:
    """The 0-based positions of the frames ``read_scene`` uses by default from a source of known ``length``
    that holds more than ``max_frames``: exactly ``max_frames`` positions spread evenly over it,
    floor(i x length / max_frames) for i = 0 .. max_frames - 1 (the first frame, then one every
    length / max_frames frames: 10 of 30 -> 0, 3, ..., 27; 10 of 31 -> 0, 3, 6, 9, 12, 15, 18, 21, 24, 27;
    10 of 17 -> 0, 1, 3, 5, 6, 8, 10, 11, 13, 15). None (every frame: the first ``max_frames``) when the
    length is unknown (a camera, an endless synth), there is no limit, or the source holds no more
    frames than the limit."""
    if length is None or max_frames is None or length <= max_frames:
        return None
    return tuple(i * int(length) // int(max_frames) for i in range(int(max_frames)))


class FramePlan(NamedTuple):
    """Which frames of a source ``read_scene`` selects (``frame_plan``): the ``positions`` (0-based,
    increasing) spread over a source of known length, else every ``every``-th frame (1: every frame) until
    ``max_frames`` are selected; ``to_read``: the frames it reads at most (None: unbounded)."""
    every: Optional[int]                # K of "every K-th frame"; None when spread by positions
    positions: Optional[tuple]          # (max_frames,) positions, or None
    to_read: Optional[int]


def check_every(every) -> None:
    """CalibrationError naming ``every`` unless it is a whole number >= 1 (the K of "every K-th frame")."""
    if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
        raise CalibrationError(f"every (use every K-th frame of the source) must be a whole number >= 1, got {every!r}")


def labelled_normals(frames) -> Optional[list]:
    """The 0-based positions of the frames a labelled source knows as normal before it is read (a labelled
    folder's ``normal_positions()``); None for any other source."""
    known = getattr(frames, "normal_positions", None)
    return list(known()) if callable(known) else None


def frame_plan(length: Optional[int], max_frames: Optional[int], every: Optional[int] = None,
               normals: Optional[Sequence[int]] = None) -> FramePlan:
    """The ``FramePlan`` of ``read_scene`` on a source of ``length`` frames (None: unknown): every K-th frame
    (``every`` = K) until ``max_frames`` are selected, so it reads at most (max_frames - 1) K + 1 frames; with
    ``every`` None, ``max_frames`` positions spread evenly over a source of known length (``spread_positions``),
    else every frame (the first ``max_frames``). ``normals``: the positions of the frames a labelled source
    labels normal (``labelled_normals``): with ``every`` None the positions are spread over them only (all of
    them when they are no more than ``max_frames``), as its anomalies are never used."""
    if every is not None:
        check_every(every)
    if every is None and normals:
        normals = [int(p) for p in normals]
        spread = spread_positions(len(normals), max_frames)            # indices into normals
        chosen = tuple(normals) if spread is None else tuple(normals[i] for i in spread)
        return FramePlan(None, chosen, chosen[-1] + 1)
    positions = spread_positions(length, max_frames) if every is None else None
    if positions is not None:
        return FramePlan(None, positions, positions[-1] + 1)
    k = 1 if every is None else int(every)
    bounds = [v for v in (length, None if max_frames is None else (max_frames - 1) * k + 1) if v is not None]
    return FramePlan(k, None, min(bounds) if bounds else None)


def selection_text(plan: FramePlan, length: Optional[int], max_frames: Optional[int],
                   normals: Optional[Sequence[int]] = None) -> Optional[str]:
    """The log line that says which frames ``plan`` uses (None when it uses every frame up to the limit of a
    source no longer than it, or of unknown length: nothing to say). ``normals``: as ``frame_plan``."""
    if plan.positions is not None and plan.every is None and normals:
        n = len(normals)
        return (f"using {len(plan.positions)} of the {n} frames the source labels normal ({length} frames in all: "
                "its anomalies are never used)" + (f", spread evenly over them (one every {n / len(plan.positions):.3g})"
                                                  if len(plan.positions) < n else ""))
    if plan.positions is not None:
        return (f"using {len(plan.positions)} of {length} frames, spread evenly over the source (one every "
                f"{length / len(plan.positions):.3g}; --every 1: its first {max_frames})")
    if plan.every > 1:
        return (f"using every {ordinal(plan.every)} of {length} frames (at most {max_frames})" if length is not None
                else f"using every {ordinal(plan.every)} frame (at most {max_frames}: spread over "
                     f"{plan.to_read} frames of the source)")
    if max_frames is not None and (length or 0) > max_frames:
        return f"using the first {max_frames} of {length} frames (every 1)"
    return None


def uncounted_text(frames, plan: FramePlan, max_frames: Optional[int]) -> Optional[str]:
    """The log line of a source that counts its frames but could not (its ``count_error``: a bag that cannot be
    read to its end): why, and, unless --every picks the frames, that it uses the first ``max_frames``; None
    for any other source."""
    why = getattr(frames, "count_error", None)
    if not why:
        return None
    line = f"could not count the frames of {getattr(frames, 'uri', '') or 'the source'} ({why})"
    if plan.every == 1 and max_frames is not None:
        line += f": using its first {max_frames} frames, one stretch of it (--every K: every K-th frame instead)"
    return line


def recording_cut(frames) -> Optional[dict]:
    """Where ``frames``, a recording cut short (a killed recorder: a salvaged bag or RealSense recording),
    ends: its ``truncation()`` facts (``Source.truncation``: file, reason, messages, ..., as its
    ``recording_truncated`` event) plus "frames", the frames it holds before the cut (``frame_count()``:
    counted already when the frames are spread, else one pass now; None when it cannot count); None for any
    other source."""
    ask = getattr(frames, "truncation", None)
    facts = ask() if callable(ask) else None
    if not facts:
        return None
    count = getattr(frames, "frame_count", None)
    return {**facts, "frames": count() if callable(count) else None}


def cut_text(cut: dict, read: int, max_frames: Optional[int], every: Optional[int]) -> str:
    """The log line of a recording cut short (``recording_cut``): which, why, how many frames it holds before
    the cut and how many were read; with the frames spread (``every`` None) over its count, that the count is
    of the frames before the cut: fewer than ``max_frames`` (all read), else spread over those only."""
    n = cut.get("frames")
    line = (f"recording {cut.get('file')} is cut short ({cut.get('reason')}): "
            + (f"{n} frames before the cut (up to its message {cut.get('messages')}), {read} of them read"
               if n is not None else f"{read} frames read before the cut (up to its message {cut.get('messages')})")
            + "; frames after the cut are lost")
    if n is not None and every is None and max_frames is not None:
        line += (f"; fewer than the --max-frames {max_frames} planned: every frame before the cut is read"
                 if n < max_frames else f"; the {max_frames} frames are spread over those before the cut only")
    return line


def how_selected(every: Optional[int], read: int) -> Optional[str]:
    """How the frames used were picked from the ``read`` frames, for messages (the calibration record's
    "every": None = spread by positions): "spread over 28 read", "every 3rd of 28 read"; None for every frame."""
    if every is None:
        return f"spread over {read} read"
    return None if every == 1 else f"every {ordinal(every)} of {read} read"


def selected_text(plan: FramePlan, selected: int, read: int) -> str:
    """The frames counted by a message: "28 read" (every frame), "10 selected (every 3rd of 28 read)" or
    "10 selected (spread over 28 read)"."""
    how = how_selected(plan.every, read)
    return f"{read} read" if how is None else f"{selected} selected ({how})"


def ordinal(k: int) -> str:
    """'2nd', '3rd', '11th', '21st': the K of "every K-th frame"."""
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def read_scene(frames: Iterable, spec, max_frames: Optional[int] = None, progress: Optional[Callable] = None,
               every: int = 1, positions: Optional[Sequence[int]] = None) -> dict:
    """The scene's usable frames at the model's resolution: {"ids", "u8" [(R, R, 4) uint8 before align],
    "read", "selected", "every", "unreadable", "unscorable", "faulty", "faults" {fault name: frames},
    "skipped_anomalous", "duplicates", "reasons"}. ``frames`` yields runtime.sources Frames.

    Frames are SELECTED first: every ``every``-th frame read (the 1st, the (K + 1)-th, ...; 1: every frame),
    or, given ``positions`` (0-based, increasing), the frames at those positions, until ``max_frames`` are
    selected (``frame_plan``: calibrate_model spreads them over a source of known length); the frames between are read ("read" counts them) and fed to the sensor-fault detector, as a
    run checks every frame in order, but neither used nor counted as faults, duplicates or anything else.
    A selected frame is usable only when ``edge-ad run`` would score it as a normal scene frame: frames that
    cannot be read or preprocessed are dropped, so are sensor faults (``SensorFaultDetector`` with the
    model's limits, fed every readable frame in order as a run does: a black or blinded colour
    sensor, no depth, colour noise, and in a stream (``is_stream``: not a folder of files) a stuck
    camera's repeats, of which only the first counts) and
    frames the source labels anomalous (``meta["anomalous"]``: synth://, a labelled folder such as
    ``folder://DATA?normal=CLASS``). Each distinct frame is used once: a bit-identical copy of a frame
    already used (``duplicates``: a folder's copied files, which a run scores; a folder exported from a
    stuck camera) adds no scene information and, in another block, would score itself held out at
    distance 0. ``progress(read, usable, dropped)`` after each frame read, ``dropped`` {reason: frames} of
    the reasons seen so far (of the selected frames)."""
    check_every(every)
    if positions is None:
        def selects(i: int) -> bool:        # 0-based position i of the frame read
            return i % every == 0
    else:
        chosen = frozenset(int(p) for p in positions)

        def selects(i: int) -> bool:
            return i in chosen
    ids, u8 = [], []
    read = selected = unreadable = unscorable = faulty = skipped_anomalous = duplicates = 0
    used: dict = {}      # frame_digest -> id of the frame used
    faults_seen: dict = {}
    reasons = []
    detector = SensorFaultDetector(spec, stuck=is_stream(frames))   # stuck_frame: as edge-ad run, streams only
    for fr in frames:
        if max_frames is not None and selected >= max_frames:
            break
        read += 1
        readable = getattr(fr, "error", None) is None and fr.rgb is not None and fr.depth is not None
        if not selects(read - 1):           # between two selected frames: only the detector sees it
            if readable:
                try:
                    detector.check(fr.rgb, fr.depth)
                except (FrameError, ValueError):
                    pass
        elif not readable:
            selected += 1
            unreadable += 1
            reasons.append(f"{fr.id}: {fr.error or 'no image'}")
        else:
            selected += 1
            anomalous = bool((getattr(fr, "meta", None) or {}).get("anomalous"))    # the source's truth
            try:
                faults = detector.check(fr.rgb, fr.depth)     # every readable frame, in order, as a run does
                if anomalous:
                    skipped_anomalous += 1
                elif faults:
                    faulty += 1
                    faults_seen[faults[0].name] = faults_seen.get(faults[0].name, 0) + 1
                    reasons.append(f"{fr.id}: " + "; ".join(str(f) for f in faults))
                else:
                    digest = frame_digest(fr.rgb, fr.depth)
                    if digest in used:
                        duplicates += 1
                        reasons.append(f"{fr.id}: a bit-identical copy of frame {used[digest]}")
                    else:
                        u8.append(unaligned_uint8(fr.rgb, fr.depth, spec))
                        ids.append(fr.id)
                        used[digest] = fr.id
            except (FrameError, ValueError) as e:
                if anomalous:
                    skipped_anomalous += 1
                else:
                    unscorable += 1
                    reasons.append(f"{fr.id}: {e}")
        if progress is not None:
            progress(read, len(ids), _dropped(unreadable, unscorable, faulty, faults_seen, skipped_anomalous,
                                              duplicates))
    return {"ids": ids, "u8": u8, "read": read, "selected": selected,
            "every": int(every) if positions is None else None,
            "unreadable": unreadable, "unscorable": unscorable,
            "faulty": faulty, "faults": faults_seen, "skipped_anomalous": skipped_anomalous,
            "duplicates": duplicates, "reasons": reasons}


def _dropped(unreadable: int, unscorable: int, faulty: int, faults: dict, anomalous: int,
             duplicates: int = 0) -> dict:
    """{reason: frames} of the frames read_scene dropped, only the reasons that occurred."""
    out = {"unreadable": unreadable, "could not be scored": unscorable,
           "sensor faults" + (f" ({', '.join(f'{k} {v}' for k, v in faults.items())})" if faults else ""): faulty,
           "labelled anomalous (skipped)": anomalous, "copies of a frame already used": duplicates}
    return {k: v for k, v in out.items() if v}


def check_scene_fits_pixel_memory(entry: dict, n: int, resolution: int) -> None:
    """CalibrationError naming the counts when the model's pixel memory (manifest entry ``entry``: shape
    [N0, R, R, 4], augment) plus the scene's n usable frames would exceed the pixel memory's caps
    (pixel_memory.check_pixel_memory_size: MAX_PIXEL_FRAMES, MAX_PIXEL_BYTES), which the new model's load
    would refuse: checked before the scene is scored."""
    n0, n_augment = int(entry["shape"][0]), len(entry.get("augment") or [])
    try:
        check_pixel_memory_size(n0 + n, resolution, n_augment)
    except ValueError as e:
        raise CalibrationError(f"the model's pixel memory ({n0} frames) with the scene's {n} usable frames would be "
                               f"too large for a model to load: {e}; calibrate on fewer frames (--max-frames)") from None


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


def scene_camera_shift(scorer, u8: list, spec, radius: int, progress: Optional[Callable] = None) -> tuple:
    """The scene's camera shift to undo: the (dy, dx), |dy|, |dx| <= radius, that moves the scene's frames
    (``read_scene``'s u8, (R, R, 4) before align) to where the model, as exported, fits them best: the
    lowest mean log score over the frames (seed 0, ``camera_shift_fits``), taken only when the frames can
    tell (``choose_camera_shift``): it beats (0, 0) by more than MIN_SHIFT_GAIN, mean log score / the score's
    latent power (``shift_score_power``) (measured on kinect-rgbd, 20-50 frames, models of powers 1: a real
    2-3 px camera shift gains 0.25-1.1, unmoved frames 0 for a model without shift-min and 0.10-0.12 for one
    with R = 1, whose window the search could move until it scored frames where they are (session 26:
    ``camera_shift_fits``); the shipped rectangle, powers 2, R = 1, as searched now, on val frames
    (tests/test_calibrate.py): unmoved 0 (20 frames), moved by (2, -2) 2.98 (20 frames; 2.77 on 24 without its
    shift-min), the exact undo alone as good) and (0, 0) is not as good frame by frame. A model with centroid
    alignment undoes shifts itself: (0, 0), nothing scored.
    The latent factor is measured against the bank without its shifted copies (``shift_search_memory``).
    Returns ((dy, dx), record): record {"radius", "mean_log_score_unshifted", "mean_log_score_best"} (None
    scores when nothing was searched) and, after a search, ``choose_camera_shift``'s fields ("identified",
    "best_fit", "as_good", "said", ...) and "latent_memory" (the bank rows searched: ``shift_search_memory``).
    ``progress(done, total, stage)``: with a pixel memory first stage
    "pixel tables" (each frame's pixel distances at every offset, ``Scorer.shifted_pixel_distances``),
    done = 0 before the first frame and after each of the total frames; then stage "shifts", done = 0
    before the first candidate shift and after each of the total candidates."""
    if spec.align == "centroid" or radius == 0:
        return (0, 0), {"radius": radius, "mean_log_score_unshifted": None, "mean_log_score_best": None}
    memory, memory_record = shift_search_memory(scorer)
    best, record = choose_camera_shift(camera_shift_fits(scorer, u8, spec, radius, progress, memory),
                                       shift_score_power(scorer.config))
    return best, {"radius": radius, **record, "latent_memory": memory_record}


def shift_search_memory(scorer) -> tuple:
    """(memory, record): the latent memory the camera-shift search measures d_lat against, the model's bank
    without its shifted copies (``latent_memory.unshifted_rows``: the frames and their copies under texts
    without a shift, each row weighed as the model weighs it, ``LatentMemory.subset``), and what it used.
    The shifted copies are there so that the score tolerates a moved camera, which is what the search must
    not tolerate: with them, a shift can pay for itself by reaching a copy that also fits the scene's light
    (measured: rectangle candidate A2's brightness:1.15+shift copies, the only copies at that light level,
    drew unmoved frames brightened by the scene's colour gain 1.12-1.17 to shifts of 1-2 px, 7.6-17.5x).
    memory None (score with the model's own): no latent factor, or no shifted copies to leave out. record:
    {"rows", "of", "left_out" [the texts whose copies were left out]}; None without a latent factor."""
    base = scorer.latent_memory
    if base is None:
        return None, None
    augment = list((scorer.manifest.get("latent_bank") or {}).get("augment") or [])
    keep = unshifted_rows(base.shape[0], augment)                                      # (N,) bool
    left_out = [t for t, k in zip(augment, keep[1:1 + len(augment)]) if not k]
    record = {"rows": int(keep.sum()), "of": int(base.shape[0]), "left_out": left_out}
    return (base.subset(keep) if left_out else None), record


def shift_score_power(cfg) -> float:
    """The unit of the camera-shift gain: the score's latent power (score_latent_power; 0, no latent memory: 1).
    log score grows with the powers (the shipped rectangle's latent and pixel powers went 1 -> 2 in the tenth
    pass, doubling a shift's gain), so ``choose_camera_shift`` divides mean log-score differences by it and
    MIN_SHIFT_GAIN keeps its power-1 meaning."""
    power = float(getattr(cfg, "score_latent_power", 0) or 0)
    return power if power > 0 else 1.0


def choose_camera_shift(logs: dict, power: float = 1.0) -> tuple:
    """((dy, dx), record) from ``camera_shift_fits``' {(dy, dx): (n,) log scores of the n frames moved so}.
    ``power`` (``shift_score_power``): mean log-score differences (the gain, the as_good rule) are divided
    by it, so MIN_SHIFT_GAIN is per unit of the score's latent power (the shipped rectangle, power 2: 1.2x per
    unit = 1.44x of its score); the log gives the score's own ratio and, for power != 1, the per-unit one.
    The best fit b: the lowest mean log score ((0, 0) first among equal means). Frame by frame, a one-sided
    sign test over the frames where a candidate c and b differ (c better in k, worse in w): P(X <= k | k + w,
    1/2) < SHIFT_TIE_ALPHA says c fits worse. With a shift-tolerant model (the shipped cylinder: shift-min
    R = 2, pixel search R_p = 3) most frames score exactly the same under neighbouring shifts, and a mean
    driven by a few frames tells nothing. b is taken only when it lowers the mean log score by more than
    MIN_SHIFT_GAIN AND the sign test says (0, 0) fits worse; else (0, 0), nothing undone ("identified"
    False: the frames cannot tell a camera shift, the model tolerates it). "as_good": b and every c the
    frames cannot tell from it: within MIN_SHIFT_GAIN of its mean and not worse by the sign test.
    record: {"mean_log_score_unshifted", "mean_log_score_best" (of the shift returned), "best_fit" [dy, dx],
    "gain" (mean log score of (0, 0) minus b's, / power), "gain_raw" (the same, not divided), "score_power", "frames", "unshifted_vs_best"
    {"better", "worse", "sign_p"}, "as_good" [[dy, dx], ...] (the candidates that fit as well as b, b first), "identified",
    "said" (what the log says: "none ..." with why, or the shift and the others as good)}."""
    if not power > 0:
        raise ValueError(f"the score power must be > 0, got {power}")
    offsets = list(logs)
    L = np.stack([np.asarray(logs[o], float) for o in offsets])              # (S, n)
    n = L.shape[1]
    bad = np.argwhere(~np.isfinite(L))
    if len(bad):                        # a NaN mean would pick (0, 0) by position and say "fits best unmoved"
        s, i = bad[0]
        raise CalibrationError(f"the camera-shift search scored frame {i} (of the scene's {n} usable frames, 0 first) "
                               f"moved by {tuple(int(v) for v in offsets[s])} as {L[s, i]} (log score; "
                               f"{len(bad)} such scores): not a finite score, the shift cannot be chosen")
    mean = L.mean(1)
    unit = mean / power                                                      # (S,) in power-1 units
    b = min(range(len(offsets)), key=lambda i: (mean[i], offsets[i] != (0, 0)))

    def versus_best(i) -> tuple:            # (frames where i is better than b, worse, one-sided sign p)
        better, worse = int((L[i] < L[b]).sum()), int((L[i] > L[b]).sum())
        return better, worse, binomial_tail(worse, better + worse, 0.5) if better + worse else 1.0
    as_good = [offsets[b]] + [o for i, o in enumerate(offsets) if i != b and unit[i] - unit[b] <= MIN_SHIFT_GAIN
                              and versus_best(i)[2] >= SHIFT_TIE_ALPHA]
    z = offsets.index((0, 0))
    gain, gain_raw = float(unit[z] - unit[b]), float(mean[z] - mean[b])
    # the score's own ratio (0, 0) / b, and per unit of latent power if != 1
    ratio = f"{np.exp(gain_raw):.2f}x" + (f" ({np.exp(gain):.2f}x per unit of latent power {power:g})" if power != 1 else "")
    better, worse, p = versus_best(z)
    best = tuple(int(v) for v in offsets[b])
    others = [list(map(int, o)) for o in as_good[1:]]
    if best == (0, 0):
        identified, said = False, "none: the frames fit best unmoved"
    elif gain <= MIN_SHIFT_GAIN:
        identified, said = False, (
                f"none identified: the best fit {best} lowers the scene's geometric-mean score only "
                f"{ratio} (a shift is taken above {np.exp(MIN_SHIFT_GAIN):.2f}x"
                f"{' per unit' if power != 1 else ''}): the model tolerates the scene's camera position, the frames "
                "cannot tell a shift")
    elif p >= SHIFT_TIE_ALPHA:
        few = (f", and it needs >= {SIGN_TEST_MIN_FRAMES} frames that differ to tell, here {better + worse}"
               if better + worse < SIGN_TEST_MIN_FRAMES else "")
        identified, said = False, (
                f"none identified: unmoved, the frames fit as well as under the best fit {best} (better "
                f"in {better}, worse in {worse}, the same in {n - better - worse} of {n} frames; sign test p = "
                f"{p:.2g} >= {SHIFT_TIE_ALPHA:g}{few}): the model tolerates the scene's camera position")
    else:
        identified, said = True, (
                f"the frames fit best moved by {best} ({ratio} lower geometric-mean score than unmoved, "
                f"which is worse in {worse} of {n} frames)")
        if others:
            many = len(others) > 1
            said += (f"; {len(others)} other shift{'s' if many else ''} fit{'' if many else 's'} as well (the frames "
                     "cannot tell them apart, the model tolerates the difference): "
                     + ", ".join(str(tuple(o)) for o in others))
    chosen = best if identified else (0, 0)
    return chosen, {"mean_log_score_unshifted": float(mean[z]),
                    "mean_log_score_best": float(mean[offsets.index(chosen)]), "best_fit": list(best), "gain": gain,
                    "gain_raw": gain_raw, "score_power": float(power), "frames": int(n),
                    "unshifted_vs_best": {"better": better, "worse": worse, "sign_p": p},
                    "as_good": [list(best)] + others, "identified": identified, "said": said}


def camera_shift_fits(scorer, u8: list, spec, radius: int, progress: Optional[Callable] = None,
                      memory: Optional[LatentMemory] = None) -> dict:
    """{(dy, dx): (n,) the log score (seed 0) of each of the scene's n frames u8 moved by (dy, dx)} for every
    candidate of shift_offsets(radius), (0, 0) first: what ``scene_camera_shift`` chooses from (its ``progress``).
    Each moved frame is scored where it is (``Scorer.score_as_is``): without the shift-min's copies and with
    the pixel distance of the moved frame as it is, without its own shift search. Both tolerances let a frame
    a pixel or two off fit as well as where it belongs, so with them every candidate near the scene's shift
    scores alike (measured, the shipped cylinder, R = 2, R_p = 3, on scene C of models/kinect-rgbd/new_scene.py,
    moved by (2, -2), 50 random frames: the best fit (-2, 1) at 1.14x, not taken, 14 % false alarms on the rest;
    scored where they are: (-2, 2) exactly at 120x, 8 %; unmoved scenes keep (0, 0)); the model's own score
    keeps both for the frames it scores after calibration. One copy per candidate: (2 radius + 1)^2 scorings
    per frame whatever the shift-min's R (the shipped cylinder's 50-frame calibration 150 s instead of ~11 min).
    ``memory``: the latent memory d_lat is measured against (``shift_search_memory``; None: the model's)."""
    offsets, fits = shift_offsets(radius), {}
    cfg = scorer.config
    tables = None
    if cfg.uses_pixel_memory:
        # the pixel factor: each frame's d_pix at every candidate offset, measured once per frame in one batch
        # (Scorer.shifted_pixel_distances; the same copies as the moved frames where the frame's outer radius px
        # are background, as in kinect-rgbd: moving twice equals moving once)
        tables = []
        if progress is not None:
            progress(0, len(u8), "pixel tables")
        for a in u8:
            x = normalize_uint8(aligned_uint8(a, spec), spec)                                 # (4, R, R)
            tables.append(dict(zip(offsets, scorer.shifted_pixel_distances(x, offsets))))
            if progress is not None:
                progress(len(tables), len(u8), "pixel tables")

    def pixel_at(i, dy, dx):
        return None if tables is None else tables[i][(dy, dx)]

    def logs(dy, dx) -> np.ndarray:
        X = [normalize_uint8(aligned_uint8(move_uint8(a, dy, dx), spec), spec) for a in u8]      # (4, R, R) each
        return np.array([np.log(max(scorer.score_as_is(x, seed=0, pixel_distance=pixel_at(i, dy, dx),
                                                       memory=memory).score, 1e-30)) for i, x in enumerate(X)])   # (n,)
    if progress is not None:
        progress(0, len(offsets), "shifts")                                           # the search starts
    for k, off in enumerate(offsets):                                                 # (0, 0) first
        fits[off] = logs(*off)
        if progress is not None:
            progress(k + 1, len(offsets), "shifts")
    return fits


def default_max_shift(cfg) -> int:
    """The camera-shift search radius when none is given: DEFAULT_MAX_SHIFT for a model without search
    steps (k = 0: each candidate shift of a frame is one encoder and one generator pass, the shift-min's
    copies left out (``camera_shift_fits``); with them, until session 26, the shipped cylinder (R = 2) scored
    25 per candidate: ~11-14 min per 50-frame scene at load 6-9, now 150 s at load ~9 with the scene's
    scoring), 0 (no
    search) for one with k > 0, where scoring (2r + 1)^2 shifted copies of every frame with k steps each
    dominates (an export --scoring reference, k = 19: ~15 s per shift for 20 frames on one CPU core, ~2 h
    for 200 frames). Either way the CLI prints the time left, measured on the first shift."""
    return 0 if cfg.k > 0 else DEFAULT_MAX_SHIFT


def score_scene(scorer, u8: list, spec, augment=()) -> dict:
    """Score the scene's frames (``read_scene``'s u8) with ``scorer`` under preprocessing ``spec`` and,
    when it uses a latent memory, encode each frame and its augmented copies.
    Returns {"scores" (n,), "base" (n, S) the score of each of the frame's S shifted copies
    (SearchConfig.score_shift_radius; S = 1 without the shift-min) without the latent and pixel factors,
    "latents" (n, 1 + len(augment), z_dim) and "shifted_latents" (n, S, z_dim): E of each shifted
    copy (with S = 1 the frame's own, latents[:, 0]); None without a latent memory}."""
    cfg = scorer.config
    scores, base, latents, shifted = [], [], [], []
    for n, a in enumerate(u8):
        X = bank_inputs_uint8(a, spec, augment if cfg.uses_latent_bank else (), index=n)   # (1 + A, 4, R, R)
        if cfg.score_shift_radius:
            offsets, rs = scorer.score_shifted(X[0], seed=0)
            score = min(r.score for r in rs)                                            # score_input's minimum
        else:
            offsets, rs = [(0, 0)], [scorer.score_input(X[0], seed=0)]
            score = rs[0].score
        if cfg.uses_latent_bank:
            latents.append(np.stack([scorer.encode(x) for x in X]))                    # (1 + A, z_dim)
            shifted.append(latents[-1][:1] if len(offsets) == 1 else
                           np.stack([scorer.encode(shift_frame(X[0], dy, dx)) for dy, dx in offsets]))   # (S, z_dim)
        if cfg.uses_latent_bank or cfg.uses_pixel_memory:        # the factors are re-measured held out
            base.append([r.score / (latent_factor(r.latent_distance, cfg) * pixel_factor(r.pixel_distance, cfg))
                         for r in rs])
        else:
            base.append([score])
        scores.append(score)
    return {"scores": np.array(scores), "base": np.array(base), "latents": np.stack(latents) if latents else None,
            "shifted_latents": np.stack(shifted) if shifted else None}


def scene_blocks(n: int, blocks: int) -> list:
    """The ``blocks`` contiguous blocks [(a, b), ...] of n scene frames in source order that held-out
    scoring leaves out one at a time (at least 2 blocks; blocks >= n: one frame each, leave-one-out)."""
    edges = np.linspace(0, n, min(max(int(blocks), 2), n) + 1).round().astype(int)
    return list(zip(edges[:-1].tolist(), edges[1:].tolist()))


def held_out_pixel_distances(memory: PixelMemory, inputs: Callable, n: int, n_original: int,
                             blocks: int = 5, radius: int = 0, gain=()) -> np.ndarray:
    """Pixel distances (n,) of the n scene frames as unseen frames would have them: ``memory`` holds the
    model's n_original frames, then the n scene frames in source order (their rows frame-major); scene
    frame i ``inputs(i)`` (4, R, R), as scored, is measured (``PixelMemory.frame_distance`` with its own
    shift search up to ``radius``, SearchConfig.pixel_shift_radius; ``gain``: pixel_gain_limits) without the rows of every scene frame
    of its block (``scene_blocks``). One distance per frame: the factor of each of its shift-min copies."""
    if memory.n_frames != n_original + n:
        raise ValueError(f"the pixel memory holds {memory.n_frames} frames, not the {n_original} original + {n} scene frames")
    out = np.empty(n)
    for a, b in scene_blocks(n, blocks):
        for i in range(a, b):
            out[i] = memory.frame_distance(inputs(i), radius, exclude=range(n_original + a, n_original + b), gain=gain)
    return out


def held_out_scores(base: np.ndarray, latents: Optional[np.ndarray], original_bank: Optional[np.ndarray], cfg,
                    blocks: int = 5, shifted_latents: Optional[np.ndarray] = None,
                    augment: Optional[Sequence[str]] = None,
                    pixel_distances: Optional[np.ndarray] = None) -> np.ndarray:
    """Scores of the scene frames as unseen frames would score: the frames (in source order) split
    into ``blocks`` contiguous blocks, each frame's latent distance taken to the original bank plus
    the rows of the OTHER blocks (consecutive frames of a recording are near-duplicates, so leaving
    out only the frame itself would score it against its neighbours). base_i * latent_factor(d_i);
    latents (n, A, z_dim): each frame and its A - 1 augmented copies, the layout of ``original_bank``
    (A rows per frame; the copies weighed by cfg.bank_augment_weight); returns (n,). blocks >= n:
    leave-one-out. ``augment``: the A - 1 augmentation texts of that layout (the manifest's
    latent_bank["augment"]), needed when cfg.bank_trusted_augment counts some copies as original rows.
    With the shift-min (``score_scene``): base (n, S) and shifted_latents (n, S, z_dim), E of each
    shifted copy; the score is min_s base_is * latent_factor(d_is). Default: base (n,) or (n, 1) and
    the frame's own latent latents[:, 0]. original_bank None: only the other blocks' rows (the frames
    ARE the model's bank: scoring its own frames leave-one-out, models/kinect-rgbd/threshold_rate.py).
    ``pixel_distances`` (n,): each frame's held-out pixel distance (``held_out_pixel_distances``) when cfg
    scores with the pixel memory; the score is then min_s base_is * latent_factor(d_is) * pixel_factor(p_i)
    (one pixel factor for every copy of a frame).
    latents None: a configuration without the latent memory (only the pixel factor)."""
    if cfg.uses_pixel_memory and pixel_distances is None:       # else the pixel factor would be left out silently
        raise ValueError(f"the scoring configuration {cfg.name!r} multiplies the score by the pixel-memory distance "
                         "(score_pixel_power > 0): held-out scores need each frame's held-out pixel distance "
                         "(pixel_distances, from held_out_pixel_distances)")
    pix = None if pixel_distances is None else np.asarray(pixel_distances, float)   # (n,)
    if pix is not None and pix.ndim != 1:
        raise ValueError(f"pixel_distances must hold one distance per frame (n,), got shape {pix.shape}")
    if latents is None:
        base = np.asarray(base, float).reshape(len(pix), -1)                         # (n, S)
        return np.array([base[i].min() * pixel_factor(float(pix[i]), cfg) for i in range(len(base))])
    n, A, z_dim = latents.shape
    if augment is not None and len(augment) != A - 1:
        raise ValueError(f"latents hold {A} rows per frame, but the bank's augment names {len(augment)} copies "
                         f"(1 + {len(augment)} rows): {list(augment)}")
    layout = A if augment is None else list(augment)      # the texts tell the trusted copies' rows
    base = np.asarray(base, float).reshape(n, -1)                                    # (n, S)
    shifted = latents[:, :1] if shifted_latents is None else shifted_latents         # (n, S, z_dim)
    orig = None if original_bank is None else latent_memory(original_bank, cfg, layout)
    out = np.empty(n)
    S = shifted.shape[1]
    for a, b in scene_blocks(n, blocks):
        others = np.concatenate([latents[:a], latents[b:]]).reshape(-1, z_dim)     # whole frames: A rows each
        other_mem = latent_memory(others, cfg, layout) if len(others) else None
        block = shifted[a:b].reshape(-1, z_dim)                                     # ((b - a) * S, z_dim)
        # the block's latents at once (LatentMemory.distances: equal to distance per latent)
        d = np.full((b - a, S), np.inf) if orig is None else orig.distances(block).reshape(b - a, S)
        if other_mem is not None:
            d = np.minimum(d, other_mem.distances(block).reshape(b - a, S))
        for i in range(a, b):
            out[i] = min(base[i, s_] * latent_factor(float(d[i - a, s_]), cfg)
                         * (1.0 if pix is None else pixel_factor(float(pix[i]), cfg)) for s_ in range(S))
    return out


def model_threshold_floor(manifest: dict, fpr: float) -> Optional[float]:
    """The model's own threshold when it was calibrated at a false-alarm rate >= ``fpr`` (so a lower bound
    of a threshold at ``fpr``) and is finite; else None. For a directory written by ``edge-ad calibrate``
    that is the one carried in ``threshold["model_threshold"]`` (the exported model's), not the previous
    scene's: re-calibrating for another scene must not ratchet the floor up."""
    own = _model_threshold(manifest) or {}
    value, rate = own.get("value"), own.get("target_fpr")
    return float(value) if _positive(value) and _number(rate) and rate >= fpr else None


def model_threshold_at(manifest: dict, fpr: float) -> tuple:
    """(threshold, where) of the exported model at the false-alarm rate ``fpr``, read from its own normal
    frames (carried through calibrations): its threshold when it was set at ``fpr``, else the entry for
    ``fpr`` of its rate table (threshold "rates": {"0.05": value, ...}, the (1 - rate) quantiles of the
    same normal frames, written by models/kinect-rgbd/make_release.py); (None, None) when neither.
    Either is read from hundreds of frames (400 for the shipped models), so calibrate keeps it unless the
    scene refutes it, at any rate the table holds, not only the model's own."""
    own = _model_threshold(manifest) or {}
    if _is_rate(own.get("target_fpr"), fpr) and _positive(own.get("value")):
        return float(own["value"]), "the model's own threshold"
    rates = own.get("rates")
    for key, value in (rates.items() if isinstance(rates, dict) else ()):
        try:
            rate = float(key)
        except (TypeError, ValueError):
            continue
        if _is_rate(rate, fpr) and _positive(value):
            return float(value), f"the model's threshold at {fpr:g} (its rate table, {own.get('n_normal') or '?'} normal frames)"
    return None, None


def _number(x) -> bool:
    """A real number read from a manifest (not a bool, not a string)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _is_rate(rate, fpr: float) -> bool:
    return _number(rate) and abs(float(rate) - fpr) < 1e-9


def _positive(value) -> bool:
    return _number(value) and bool(np.isfinite(value)) and value > 0


def model_fpr(manifest: dict) -> float:
    """The false-alarm rate the model's own threshold was calibrated at (carried through calibrations),
    a valid rate in (0, 1); DEFAULT_FPR when the model has none. The default target of a calibration."""
    rate = (_model_threshold(manifest) or {}).get("target_fpr")
    return float(rate) if _number(rate) and 0 < rate < 1 else DEFAULT_FPR


def _model_threshold(manifest: dict) -> Optional[dict]:
    """{"value", "target_fpr", "n_normal", "normal", "rates"} of the exported model's own threshold (carried
    through calibrations; n_normal / normal / rates None where not recorded)."""
    t = manifest.get("threshold")
    if not isinstance(t, dict):
        return None
    if t.get("source") == "edge-ad calibrate":
        own = t.get("model_threshold")
        return None if own is None else {"n_normal": t.get("model_n_normal"), "normal": t.get("model_normal"), **own}
    return {"value": t.get("value"), "target_fpr": t.get("target_fpr"), "n_normal": t.get("n_normal"),
            "normal": t.get("normal"), "rates": t.get("rates")}


def calibrate_model(model_dir: os.PathLike, frames: Iterable, out_dir: os.PathLike, *, fpr: Optional[float] = None,
                    max_frames: Optional[int] = None, min_frames: int = MIN_FRAMES, source: str = "",
                    progress: Optional[Callable] = None, threads: Optional[int] = None,
                    colour_gain: bool = True, blocks: int = 5, floor: bool = True,
                    max_shift: Optional[int] = None, shift_progress: Optional[Callable] = None,
                    trusted_keys: Optional[list] = None, sign_key=None, log: Optional[Callable] = None,
                    on_threshold_inputs: Optional[Callable] = None, every: Optional[int] = None) -> dict:
    """Write ``out_dir``: ``model_dir`` adapted to the scene of ``frames`` (module docstring).
    ``trusted_keys`` (public keys, as Scorer.load): ``model_dir`` must be signed by one of them
    (checked before anything is read from it). The new directory's manifest differs from the signed
    one, so it is unsigned unless ``sign_key`` (an Ed25519 private key: PEM path or key object,
    runtime/signing.py) signs it (manifest.sig written before the directory takes its name).
    ``fpr``: the scene threshold's target false-alarm rate; None: the rate the model's own threshold was
    calibrated at (``model_fpr``; DEFAULT_FPR for a model without one), so that the floor applies.
    ``max_shift``: the camera-shift search radius; None: ``default_max_shift`` (off for k > 0, said
    through ``log(message)``).
    ``max_frames``: use at most this many frames; ``every``: use every K-th frame of ``frames`` until
    ``max_frames`` are used (read_scene; 1: the first ``max_frames``; for a camera, N frames spread over N K
    frames of time); None: ``max_frames`` frames spread evenly over a source of known length
    (``source_length``: a folder, a list, synth://?n=N, a ROS bag, a RealSense recording; ``spread_positions``),
    else every frame. Said through
    ``log``; the calibration record holds "every" (None when spread), "source_length", "frames_selected" and
    the "frame_ids" used.
    A recording cut short (a killed recorder: ``recording_cut``) is calibrated on the frames before the cut
    (its count, ``source_length``, is theirs) when they are enough (``min_frames``); ``log`` says so
    (``cut_text``) and the record's "recording_truncated" holds where it ends (None for an intact source);
    with too few the CalibrationError says it is cut short.
    ``on_threshold_inputs(ThresholdInputs)``: called once the new directory is written, with what the
    threshold rule read (``choose_threshold`` of it replays the rule; models/kinect-rgbd/new_scene.py saves it).
    Returns the new manifest. Raises CalibrationError (too few usable frames: the message names the
    counts and the sensor faults; bad --out), ManifestError (a tampered, unsigned or untrusted model
    directory) and SigningError (an unreadable signing key)."""
    from .scorer import Scorer
    from .signing import SIGNATURE, load_private_key, sign_model
    if fpr is not None and not 0 < fpr < 1:
        raise CalibrationError(f"the target false-alarm rate must be in (0, 1), got {fpr}")
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    _check_out(model_dir, out_dir)
    length = source_length(frames, count=every is None)      # --every K: no counting pass (only the spread needs it)
    normals = labelled_normals(frames) if every is None else None    # a labelled folder: spread over its normals
    plan = frame_plan(length, max_frames, every, normals)
    if sign_key is not None:
        sign_key = load_private_key(sign_key)       # a bad key or passphrase fails now, not after the scene
    scorer = Scorer.load(model_dir, threads=threads, trusted_keys=list(trusted_keys) if trusted_keys else None)
    with scorer:                                     # its buffers and threads released once the scene is scored
        signed_by = None
        if trusted_keys:                                 # verified by Scorer.load: the key that signed the input
            signed_by = json.loads((model_dir / SIGNATURE).read_text()).get("key_id")
        man = scorer.manifest
        if fpr is None:
            fpr = model_fpr(man)
        cfg = scorer.config
        bank_entry = man.get("latent_bank") or {}
        augment = list(bank_entry.get("augment") or [])
        if max_shift is None:       # said before the scene is read
            max_shift = default_max_shift(cfg)
            if max_shift == 0 and log is not None:
                log(f"camera-shift search off: the model searches k = {cfg.k} steps per frame, which would make the "
                    f"search score every frame {(2 * DEFAULT_MAX_SHIFT + 1) ** 2} times; --max-shift N asks for it")
        if not 0 <= max_shift <= MAX_SCENE_SHIFT:
            raise CalibrationError(f"the camera-shift search radius must be in [0, {MAX_SCENE_SHIFT}] px, got {max_shift}")
        spec = scorer.preprocess_spec
        for said in (uncounted_text(frames, plan, max_frames), selection_text(plan, length, max_frames, normals)):
            if log is not None and said:
                log(said)
        res = read_scene(frames, spec, max_frames, progress, every=plan.every or 1, positions=plan.positions)
        n = len(res["ids"])
        cut = recording_cut(frames)               # a recording cut short: said, recorded, and the CLI exits 3
        if cut is not None and log is not None:
            log(cut_text(cut, res["read"], max_frames, every))
        if n < min_frames:
            first = f"; first problem: {res['reasons'][0]}" if res["reasons"] else ""
            more = _dropped(0, 0, res["faulty"], res["faults"], res["skipped_anomalous"], res["duplicates"])
            of = selected_text(plan, res["selected"], res["read"])
            raise CalibrationError(
                f"only {n} usable frame{'s' if n != 1 else ''} of {of} ({res['unreadable']} unreadable, "
                f"{res['unscorable']} could not be scored" + "".join(f", {v} {k}" for k, v in more.items())
                + f"){first}" + (f"; the recording {cut.get('file')} is cut short: frames after its message "
                                 f"{cut.get('messages')} are lost" if cut is not None else "")
                + f"; calibration needs at least {min_frames} normal frames of the scene")
        if cfg.uses_pixel_memory:     # the grown pixel memory must fit before the scene is scored
            check_scene_fits_pixel_memory(man.get("pixel_memory") or {}, n, spec.resolution)
        gain = scene_colour_gain(res["u8"], spec) if colour_gain else None
        if gain is not None:
            spec = dataclasses.replace(spec, colour_gain=gain)
        shift_fit = None
        if max_shift:
            (dy, dx), shift_fit = scene_camera_shift(scorer, res["u8"], spec, max_shift, shift_progress)
            total = (int(spec.scene_shift[0]) + dy, int(spec.scene_shift[1]) + dx)
            if max(abs(v) for v in total) > MAX_SCENE_SHIFT:
                raise CalibrationError(f"the scene's camera shift {total} px is beyond +-{MAX_SCENE_SHIFT} px: "
                                       "not a camera that moved a little; re-export or retrain for this view")
            shift_fit["model_scene_shift"] = [int(v) for v in spec.scene_shift]   # the model's, kept when none found
            shift_fit["scene_shift"] = list(total)                                  # the model's + this scene's
            spec = dataclasses.replace(spec, scene_shift=total)
            res["u8"] = [move_uint8(a, dy, dx) for a in res["u8"]]
        res.update(score_scene(scorer, res["u8"], spec, augment))
    new_bank = new_pixels = pixel_distances = None
    pixel_entry = man.get("pixel_memory") or {}
    if cfg.uses_pixel_memory:
        original_frames = load_npy(model_dir, pixel_entry["file"], pixel_entry["shape"], np.uint8,   # (N0, R, R, 4)
                                   sha256=man["files"][pixel_entry["file"]])     # the verified bytes, or refused
        # the scene's frames as scored (its colour gain applied), the memory's stored form
        new_pixels = np.concatenate([original_frames, in_model_light(np.stack(res["u8"]), spec)])   # (N0 + n, R, R, 4)
        memory = PixelMemory(new_pixels, spec, pixel_entry.get("augment") or [])
        def frame(i):           # scene frame i (4, R, R) as score_scene scored it (before the shift-min's copies)
            return bank_inputs_uint8(res["u8"][i], spec)[0]
        pixel_distances = held_out_pixel_distances(memory, frame, n, len(original_frames), blocks,
                                                   cfg.pixel_shift_radius, cfg.pixel_gain_limits)
    if cfg.uses_latent_bank:
        original = load_npy(model_dir, bank_entry["file"], bank_entry["shape"], np.float32,   # header checked, no symlinks,
                            sha256=man["files"][bank_entry["file"]])            # the verified bytes, or refused
        scores = held_out_scores(res["base"], res["latents"], original, cfg, blocks=blocks,
                                 shifted_latents=res["shifted_latents"], augment=augment,
                                 pixel_distances=pixel_distances)
        scene_rows = res["latents"].reshape(-1, res["latents"].shape[-1])
        new_bank = np.concatenate([original, scene_rows]).astype(np.float32)
    elif cfg.uses_pixel_memory:
        scores = held_out_scores(res["base"], None, None, cfg, blocks=blocks, pixel_distances=pixel_distances)
    else:
        scores = res["scores"]
    at_rate, what = model_threshold_at(man, fpr) if floor else (None, None)
    floor_value = at_rate if at_rate is not None else (model_threshold_floor(man, fpr) if floor else None)
    inputs = ThresholdInputs(scores, float(fpr), floor_value, at_rate is not None, what or "the model's own threshold")
    choice = choose_threshold(inputs)
    threshold, test, what = choice.threshold, choice.test, inputs.what
    warning = None
    above = test["frames_above_threshold"]     # scene frames above the chosen threshold
    if threshold != floor_value and n * fpr < MIN_EXPECTED_ABOVE:     # read from the scene's top scores
        warning = (f"{n} scene frames cannot resolve a {fpr:g} false-alarm rate (n x rate = {n * fpr:.2g} < "
                   f"{MIN_EXPECTED_ABOVE}): the threshold is the {above + 1}-th highest of "
                   f"{n} held-out scores, as noisy as one frame; calibrate on more frames or at a higher --fpr")
        if log is not None:
            log("warning: " + warning)
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    record = {"source": str(source), "frames_read": res["read"], "frames_used": n,
              "every": plan.every, "source_length": length, "frames_selected": res["selected"],
              "max_frames": max_frames, "recording_truncated": cut,
              "frame_ids": [v if isinstance(v, (int, str)) else str(v) for v in res["ids"]],
              "unreadable": res["unreadable"], "unscorable": res["unscorable"],
              "sensor_faults": res["faulty"], "faults": dict(res["faults"]),
              "skipped_anomalous": res["skipped_anomalous"], "duplicates": res["duplicates"], "date": now,
              "target_fpr": fpr, "from_model": str(model_dir),
              "from_manifest_sha256": sha256_file(model_dir / MANIFEST), "from_signed_by": signed_by,
              "scores": ("held out: " + " and ".join(
                  (["latent distances to the bank"] if new_bank is not None else [])
                  + (["pixel distances to the pixel memory"] if new_pixels is not None else []))
                  + f" without the frame's block ({blocks} contiguous blocks)"
                  if new_bank is not None or new_pixels is not None else "as scored")
                        + (f"; shift-min: the minimum over the frame's {(2 * cfg.score_shift_radius + 1) ** 2} "
                           f"copies shifted by up to {cfg.score_shift_radius} px" if cfg.score_shift_radius else ""),
              "colour_gain": list(gain) if gain is not None else None,
              "scene_shift": shift_fit,
              "threshold_scene": choice.scene_quantile, "threshold_floor": floor_value,
              "threshold_rule": choice.rule, "threshold_test": test, "threshold_warning": warning}
    new = json.loads(json.dumps(man))   # manifest.sig (signing.py), not in "files", is not copied: the new
                                        # directory is unsigned or re-signed
    new["preprocess"] = spec.to_dict()
    model_record = _model_threshold(man)
    own = model_record or {}
    if floor_value is not None and threshold == floor_value:   # the model's own threshold, kept
        read_from = {"n_normal": own.get("n_normal"),
                     "normal": f"{what}, kept (read from: "
                               f"{own.get('normal') or 'not recorded'}); "
                               f"checked against {n} scene frames of {source}"}
    else:
        read_from = {"n_normal": n, "frames_above": above, "normal": f"scene frames of {source}"}
    new["threshold"] = {"value": threshold, "target_fpr": fpr, **read_from, "scene_frames": n,
                        "search": cfg.to_dict(), "source": "edge-ad calibrate", "calibrated": now,
                        "model_threshold": model_record, "model_n_normal": own.get("n_normal"),
                        "model_normal": own.get("normal")}
    if new_bank is not None:
        new["latent_bank"] = {**bank_entry, "shape": list(new_bank.shape),
                              "info": {"original": {"n": int(len(new_bank) - len(scene_rows)),
                                                    "info": bank_entry.get("info")},
                                       "scene": {"n": int(len(scene_rows)), "frames": n, "source": str(source),
                                                 "augment": augment, "date": now}}}
        record["bank"] = {"original_rows": int(len(new_bank) - len(scene_rows)), "scene_rows": int(len(scene_rows))}
    if new_pixels is not None:
        n0 = int(len(new_pixels) - n)
        new["pixel_memory"] = {**pixel_entry, "shape": list(new_pixels.shape),
                               "info": {"original": {"n_frames": n0, "info": pixel_entry.get("info")},
                                        "scene": {"n_frames": n, "source": str(source), "date": now,
                                                  "colour_gain": list(gain) if gain is not None else None,
                                                  "stored": "in the model's light (pixel_memory.in_model_light)"}}}
        record["pixel_memory"] = {"original_frames": n0, "scene_frames": n}
    new["calibration"] = record
    tmp = out_dir.parent / f".{out_dir.name}.calibrating-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        for name in man["files"]:
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(model_dir / name, tmp / name)
        if new_bank is not None:
            np.save(tmp / bank_entry["file"], new_bank)
        if new_pixels is not None:
            np.save(tmp / pixel_entry["file"], new_pixels)
        new["files"] = dict(man["files"])          # copies of verified files; only the memories changed
        if new_bank is not None:
            new["files"][bank_entry["file"]] = sha256_file(tmp / bank_entry["file"])
        if new_pixels is not None:
            new["files"][pixel_entry["file"]] = sha256_file(tmp / pixel_entry["file"])
        (tmp / MANIFEST).write_text(json.dumps(new, indent=1) + "\n")
        load_manifest(tmp, verify=True)
        if sign_key is not None:
            sign_model(tmp, sign_key)                 # manifest.sig of the new manifest
        if out_dir.exists():
            out_dir.rmdir()                   # empty (checked above)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if on_threshold_inputs is not None:        # what the threshold rule read, for offline studies of the rule
        on_threshold_inputs(inputs)
    return new
