"""The threshold entry of a model's manifest, both ways: the exported model's own threshold read from it
(carried through calibrations: ``model_threshold_at``, ``model_threshold_floor``, ``model_fpr``), what the
threshold rule reads of it (``threshold_inputs``), and the entry a calibrated manifest carries
(``threshold_entry``)."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .threshold import ThresholdChoice, ThresholdInputs

DEFAULT_FPR = 0.05           # the scene's target false-alarm rate when the model carries no threshold


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


def threshold_inputs(manifest: dict, scores: Sequence, fpr: float, floor: bool = True) -> ThresholdInputs:
    """The ``ThresholdInputs`` of the scene's held-out ``scores`` (n,) at rate ``fpr``: the model's threshold at
    this very rate (``model_threshold_at``) as the one tested, else ``model_threshold_floor`` as a lower bound,
    none with ``floor`` False."""
    at_rate, what = model_threshold_at(manifest, fpr) if floor else (None, None)
    floor_value = at_rate if at_rate is not None else (model_threshold_floor(manifest, fpr) if floor else None)
    return ThresholdInputs(scores, float(fpr), floor_value, at_rate is not None, what or "the model's own threshold")


def threshold_entry(manifest: dict, inputs: ThresholdInputs, choice: ThresholdChoice, n: int, fpr: float,
                    source: str, search: dict, now: str, preprocess: Optional[dict] = None) -> dict:
    """The calibrated manifest's "threshold": the value chosen (``choice``) at rate ``fpr`` and what it was read
    from: the model's own threshold, kept after checking it against the ``n`` scene frames of ``source``, or
    those frames ("frames_above": how many of them score above it); ``search``: the scoring configuration
    (SearchConfig.to_dict); ``preprocess``: the scene's preprocessing (the new manifest's, PreprocessSpec.to_dict),
    recorded so that an edited preprocess section drops the threshold (runtime/scorer.threshold_mismatch); the
    exported model's own threshold carried as "model_threshold" (so a later calibration floors at it, not at this
    scene's)."""
    threshold, above, what = choice.threshold, choice.test["frames_above_threshold"], inputs.what
    floor_value = inputs.model_threshold
    model_record = _model_threshold(manifest)
    own = model_record or {}
    if floor_value is not None and threshold == floor_value:   # the model's own threshold, kept
        read_from = {"n_normal": own.get("n_normal"),
                     "normal": f"{what}, kept (read from: "
                               f"{own.get('normal') or 'not recorded'}); "
                               f"checked against {n} scene frames of {source}"}
    else:
        read_from = {"n_normal": n, "frames_above": above, "normal": f"scene frames of {source}"}
    return {"value": threshold, "target_fpr": fpr, **read_from, "scene_frames": n,
            "search": search, **({"preprocess": preprocess} if preprocess is not None else {}),
            "source": "edge-ad calibrate", "calibrated": now,
            "model_threshold": model_record, "model_n_normal": own.get("n_normal"),
            "model_normal": own.get("normal")}
