"""Detection metrics against ground truth carried by the source (synth://, a labelled folder).

A run whose frames carry truth (``Frame.meta["anomalous"]``) ends its summary with how well the
scores separated it: AUROC of score vs truth (threshold-free), and at the run's threshold the
recall (share of true anomalies flagged) and the false-alarm rate (share of normal frames flagged).
NumPy only (the runtime has no scikit-learn). Memory is bounded for endless runs: recall and
false-alarm rate come from exact running counts, AUROC from a uniform sample of at most
``AUROC_SAMPLE`` (score, truth) pairs (exact while the run is shorter).
"""
from __future__ import annotations

import random
from array import array
from typing import Optional

import numpy as np


def auroc(scores, truth) -> Optional[float]:
    """Area under the ROC curve of ``scores`` (higher = more anomalous) against boolean ``truth``:
    the probability that a random anomaly outscores a random normal frame, ties counting half
    (Mann-Whitney U). None when either class is absent."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    t = np.asarray(truth, dtype=bool).ravel()
    n_pos, n_neg = int(t.sum()), int((~t).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    # average ranks (1-based) over runs of equal scores
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    u = ranks[t].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def truth_metrics(scores, truth, flagged=None) -> dict:
    """The summary's ``truth`` section: frames with truth, how many were anomalous, AUROC, and (when
    ``flagged`` is given, i.e. the run had a threshold) recall and false-alarm rate.

    ``auroc_frames`` is how many frames the AUROC was computed on (all of them here) and
    ``auroc_sampled`` whether those were a sample (``TruthTally`` past its bound).

    scores: (N,) float; truth: (N,) bool (True = anomaly); flagged: (N,) bool or None."""
    t = np.asarray(truth, dtype=bool).ravel()
    out = {"frames": int(t.size), "anomalous": int(t.sum()), "auroc": None, "auroc_frames": int(t.size),
           "auroc_sampled": False, "recall": None, "false_alarm_rate": None}
    a = auroc(scores, t)
    out["auroc"] = None if a is None else round(a, 4)
    if flagged is not None:
        f = np.asarray(flagged, dtype=bool).ravel()
        if f.shape != t.shape:
            raise ValueError(f"flagged has {f.size} entries for {t.size} frames with truth")
        if t.any():
            out["recall"] = round(float(f[t].mean()), 4)
        if (~t).any():
            out["false_alarm_rate"] = round(float(f[~t].mean()), 4)
    return out


AUROC_SAMPLE = 100_000   # (score, truth) pairs kept for AUROC: 9 bytes each, ~0.9 MB at most


class TruthTally:
    """Collects, for the frames that carry truth, exact counts (frames, anomalies, flagged ones of
    each class) and a uniform reservoir sample of at most ``capacity`` (score, truth) pairs for AUROC
    (Vitter's algorithm R, seeded: the same run keeps the same sample); ``metrics()`` at the end.
    Memory is bounded however long the run: 9 bytes a pair, ``capacity`` pairs at most."""

    def __init__(self, capacity: int = AUROC_SAMPLE, seed: int = 0):
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = int(capacity)
        self.scores = array("d")      # (<= capacity,) sampled scores
        self.truth = array("b")       # (<= capacity,) their truth, 1 = anomaly
        self.frames = self.anomalous = 0
        self.flagged_anomalous = self.flagged_normal = 0
        self.thresholded = True
        self._rng = random.Random(seed)

    def add(self, score: float, anomalous_truth: bool, flagged: Optional[bool]) -> None:
        """One frame: its score, its truth and whether the run flagged it (None: no threshold)."""
        t = bool(anomalous_truth)
        self.frames += 1
        self.anomalous += t
        if flagged is None:
            self.thresholded = False
        elif flagged:
            if t:
                self.flagged_anomalous += 1
            else:
                self.flagged_normal += 1
        if len(self.scores) < self.capacity:
            self.scores.append(float(score))
            self.truth.append(t)
        else:   # frame n (1-based) replaces a kept pair with probability capacity / n
            k = self._rng.randrange(self.frames)
            if k < self.capacity:
                self.scores[k] = float(score)
                self.truth[k] = t

    def __len__(self) -> int:
        """Frames seen with truth (not the sample size)."""
        return self.frames

    @property
    def sampled(self) -> bool:
        """True once more frames were seen than the sample keeps (AUROC is then an estimate)."""
        return self.frames > self.capacity

    def metrics(self) -> Optional[dict]:
        """The ``truth`` section, or None when no frame carried truth."""
        if not self.frames:
            return None
        n_normal = self.frames - self.anomalous
        a = auroc(np.array(self.scores, np.float64), np.array(self.truth, bool))   # copies: the arrays stay growable
        out = {"frames": self.frames, "anomalous": self.anomalous, "auroc": None if a is None else round(a, 4),
               "auroc_frames": len(self.scores), "auroc_sampled": self.sampled,
               "recall": None, "false_alarm_rate": None}
        if self.thresholded:
            if self.anomalous:
                out["recall"] = round(self.flagged_anomalous / self.anomalous, 4)
            if n_normal:
                out["false_alarm_rate"] = round(self.flagged_normal / n_normal, 4)
        return out


def percent(share: float) -> str:
    """A share as the console's percentage, to one decimal without a trailing .0: 0.965 -> '96.5%' (not the
    '96%' a whole-number format rounds it to), 0.07 -> '7%'."""
    text = f"{100 * share:.1f}"
    return (text[:-2] if text.endswith(".0") else text) + "%"


def truth_text(t: Optional[dict]) -> str:
    """One line for the console: 'truth: 80 frames (17 anomalous): AUROC 0.98, recall 94.1%, false alarms 3%'."""
    if not t:
        return ""
    parts = [f"AUROC {t['auroc']:.3f}" if t["auroc"] is not None else "AUROC n/a (one class only)"]
    if t.get("auroc_sampled"):
        parts[0] += f" (on a sample of {t['auroc_frames']} frames)"
    if t["recall"] is not None:
        parts.append(f"recall {percent(t['recall'])}")
    if t["false_alarm_rate"] is not None:
        parts.append(f"false alarms {percent(t['false_alarm_rate'])}")
    return f"truth: {t['frames']} frames ({t['anomalous']} anomalous): " + ", ".join(parts)
