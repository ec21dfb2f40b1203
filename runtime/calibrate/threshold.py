"""The scene's threshold from its frames' scores. A frame in the bank would score itself at distance 0, so
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

(The held-out scores: scene_scores.py; the model's own threshold as its manifest carries it:
manifest_threshold.py.)
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np

from ..binomial import accepted_count, binomial_tail   # the exact one-sided test (shared with the run's alarm-rate watch)
from .errors import CalibrationError
from .selection import ordinal

SCENE_TEST_ALPHA = 0.05      # the model's threshold is replaced when the scene exceeds it at this significance
MIN_EXPECTED_ABOVE = 3       # fewer scene frames x rate than this: a quantile threshold rests on the top scores
# the bounds of a plausible scene (``scene_doubt``): every real scene change measured on kinect-rgbd (light,
# camera moved, mirror, zoom: models/kinect-rgbd/HISTORY.md, sessions 22-26) raised the model's threshold
# 1.06-2.65x with at most 22 % (11 of 50) of the scene's frames above it; frames of another object (audit 27
# #13: rectangle calibrated on cylinder frames) put 53 % above it and raised it 13x, and the new model then
# missed 75 % of the anomalies
DOUBT_SHARE_ABOVE = 0.5      # more than this share of the scene's frames above the model's own threshold
DOUBT_RAISE = 4.0            # or the threshold chosen more than this many times the model's own


def few_expected_above(n: int, fpr: float) -> bool:
    """Whether ``n`` normal scores at a false-alarm rate ``fpr`` expect fewer than MIN_EXPECTED_ABOVE scores above
    their quantile threshold, which then rests on the top few of them (as noisy as one frame): the one rule of
    calibrate's threshold_warning, eval's threshold.json and export's threshold replacing the checkpoint's."""
    return n * fpr < MIN_EXPECTED_ABOVE


def quantile_threshold(scores: np.ndarray, fpr: float) -> float:
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
    """What the threshold rule (``choose_threshold``) reads, built once by ``calibrate_model``
    (``threshold_inputs``) and handed to
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
    module docstring). Refuted by the scene (``scene_exceeds``), the model's threshold is raised
    only as far as the scene's frames ask: to the lowest threshold the same test accepts
    (``lowest_accepted_threshold``), not to the scene's (1 - fpr) quantile (recorded as "scene_quantile").
    The record (the calibration's "threshold_test") holds "frames" and "frames_above_threshold" (how many of
    them score above the threshold chosen) in every branch, and the binomial test's fields where the
    model's threshold was tested (kept or raised)."""
    scores, fpr, model_threshold, what = inputs.held_out, inputs.fpr, inputs.model_threshold, inputs.what
    n = len(scores)
    quantile = quantile_threshold(scores, fpr)

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


def threshold_warning(choice: ThresholdChoice, inputs: ThresholdInputs, n: int) -> Optional[str]:
    """What to say when the threshold chosen was read from the scene's top few scores: it is not the model's
    (``inputs.model_threshold``) and the ``n`` scene frames x the rate expect fewer than MIN_EXPECTED_ABOVE
    frames above it (the calibration's "threshold_warning"); None otherwise."""
    fpr, above = inputs.fpr, choice.test["frames_above_threshold"]     # scene frames above the chosen threshold
    if choice.threshold == inputs.model_threshold or not few_expected_above(n, fpr):
        return None
    return (f"{n} scene frames cannot resolve a {fpr:g} false-alarm rate (n x rate = {n * fpr:.2g} < "
            f"{MIN_EXPECTED_ABOVE}): the threshold is the {ordinal(above + 1)} highest of "
            f"{n} held-out scores, as noisy as one frame; calibrate on more frames or at a higher --fpr")


def scene_vs_model(choice: ThresholdChoice, inputs: ThresholdInputs) -> Optional[dict]:
    """How far the scene's frames are from the model's own normal frames, as its threshold sees them:
    {"share_above_model_threshold": the share of the scene's held-out scores above the model's own threshold,
    "threshold_factor": the threshold chosen / the model's own}; None for a model without one (or ``floor``
    off). The calibration record's "scene_vs_model"; ``scene_doubt`` reads it."""
    model = inputs.model_threshold
    if model is None or not model > 0:
        return None
    return {"share_above_model_threshold": frames_above(inputs.held_out, model) / len(inputs.held_out),
            "threshold_factor": float(choice.threshold) / float(model)}


def scene_doubt(measured: Optional[dict], n: int) -> Optional[str]:
    """Why the ``n`` scene frames are likely not normal frames of the model's objects (``scene_vs_model``
    beyond DOUBT_SHARE_ABOVE or DOUBT_RAISE: more than a light or camera change explains), else None."""
    if measured is None:
        return None
    share, factor = measured["share_above_model_threshold"], measured["threshold_factor"]
    if share <= DOUBT_SHARE_ABOVE and factor <= DOUBT_RAISE:
        return None
    return (f"{round(share * n)} of {n} scene frames ({share:.0%}) score above the model's own threshold and the "
            f"threshold would be {factor:.3g}x the model's own: more than a light or camera change explains (the "
            f"bounds: {DOUBT_SHARE_ABOVE:.0%} of the frames, {DOUBT_RAISE:g}x; real scene changes measured 1.1-2.7x with "
            "at most 22 % above); are these normal frames of the objects this model was trained on?")


def threshold_record(choice: ThresholdChoice, inputs: ThresholdInputs, warning: Optional[str]) -> dict:
    """The calibration record's threshold fields: "threshold_scene" (the scene's quantile), "threshold_floor"
    (the model's threshold the rule read, or None), "threshold_rule", "threshold_test", "threshold_warning"."""
    return {"threshold_scene": choice.scene_quantile, "threshold_floor": inputs.model_threshold,
            "threshold_rule": choice.rule, "threshold_test": choice.test, "threshold_warning": warning,
            "scene_vs_model": scene_vs_model(choice, inputs)}
