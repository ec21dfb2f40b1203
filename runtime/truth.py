"""Detection metrics against ground truth carried by the source (synth://, a labelled folder).

A run whose frames carry truth (``Frame.meta["anomalous"]``) ends its summary with how well the
scores separated it: AUROC of score vs truth (threshold-free), and at the run's threshold the
recall (share of true anomalies flagged) and the false-alarm rate (share of normal frames flagged).
NumPy only (the runtime has no scikit-learn).
"""
from __future__ import annotations

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

    scores: (N,) float; truth: (N,) bool (True = anomaly); flagged: (N,) bool or None."""
    t = np.asarray(truth, dtype=bool).ravel()
    out = {"frames": int(t.size), "anomalous": int(t.sum()), "auroc": None, "recall": None,
           "false_alarm_rate": None}
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


class TruthTally:
    """Collects (score, flagged, truth) of the frames that carry truth; ``metrics()`` at the end.
    Three numbers per frame: bounded by the run's length, 24 bytes a frame."""

    def __init__(self):
        self.scores: list = []
        self.flagged: list = []
        self.truth: list = []
        self.thresholded = True

    def add(self, score: float, anomalous_truth: bool, flagged: Optional[bool]) -> None:
        self.scores.append(float(score))
        self.truth.append(bool(anomalous_truth))
        if flagged is None:
            self.thresholded = False
        self.flagged.append(bool(flagged))

    def __len__(self) -> int:
        return len(self.scores)

    def metrics(self) -> Optional[dict]:
        """The ``truth`` section, or None when no frame carried truth."""
        if not self.scores:
            return None
        return truth_metrics(self.scores, self.truth, self.flagged if self.thresholded else None)


def truth_text(t: Optional[dict]) -> str:
    """One line for the console: 'truth: 80 frames (17 anomalous): AUROC 0.98, recall 94%, false alarms 3%'."""
    if not t:
        return ""
    parts = [f"AUROC {t['auroc']:.3f}" if t["auroc"] is not None else "AUROC n/a (one class only)"]
    if t["recall"] is not None:
        parts.append(f"recall {100 * t['recall']:.0f}%")
    if t["false_alarm_rate"] is not None:
        parts.append(f"false alarms {100 * t['false_alarm_rate']:.0f}%")
    return f"truth: {t['frames']} frames ({t['anomalous']} anomalous): " + ", ".join(parts)
