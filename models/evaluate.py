"""Detection quality: AUROC, AP, F1-max and its threshold (scikit-learn), per anomalous class and
overall; threshold calibration on normal frames; ROC and histogram PNGs; a JSON report."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Optional

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve


def detection_metrics(normal: np.ndarray, anomalous: np.ndarray) -> dict:
    """Higher score = more anomalous. Returns auroc, ap, f1_max, f1_threshold, counts."""
    normal, anomalous = np.asarray(normal, float), np.asarray(anomalous, float)
    if len(normal) == 0 or len(anomalous) == 0:
        raise ValueError("need at least one normal and one anomalous score")
    y = np.r_[np.zeros(len(normal)), np.ones(len(anomalous))]
    s = np.r_[normal, anomalous]
    prec, rec, thr = precision_recall_curve(y, s)
    f1 = 2 * prec[:-1] * rec[:-1] / np.maximum(prec[:-1] + rec[:-1], 1e-12)
    best = int(np.argmax(f1))
    return {"auroc": float(roc_auc_score(y, s)), "ap": float(average_precision_score(y, s)),
            "f1_max": float(f1[best]), "f1_threshold": float(thr[best]),
            "n_normal": int(len(normal)), "n_anomalous": int(len(anomalous))}


def calibrate_threshold(normal_scores: np.ndarray, fpr: float = 0.05) -> float:
    """Threshold that flags at most ``fpr`` of the normal (validation) frames."""
    if not 0 < fpr < 1:
        raise ValueError(f"fpr must be in (0, 1), got {fpr}")
    return float(np.quantile(np.asarray(normal_scores, float), 1 - fpr, method="higher"))


def evaluate_scores(normal: np.ndarray, anomalies: Mapping[str, np.ndarray]) -> dict:
    """Metrics per anomalous group and for all anomalies pooled ("overall")."""
    report = {name: detection_metrics(normal, s) for name, s in anomalies.items()}
    report["overall"] = detection_metrics(normal, np.concatenate(list(anomalies.values())))
    return report


def write_report(out_dir: Path, normal_name: str, normal: np.ndarray, anomalies: Mapping[str, np.ndarray],
                 extra: Optional[dict] = None, calibrate_fpr: Optional[float] = None) -> dict:
    """Compute metrics, write report.json, roc.png, histogram.png (and threshold.json) into out_dir."""
    from .plots import save_histogram, save_roc

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = evaluate_scores(normal, anomalies)
    curves = {}
    for name, s in list(anomalies.items()) + [("overall", np.concatenate(list(anomalies.values())))]:
        y = np.r_[np.zeros(len(normal)), np.ones(len(s))]
        fpr, tpr, _ = roc_curve(y, np.r_[normal, s])
        curves[f"{normal_name} vs {name}"] = (fpr, tpr, metrics[name]["auroc"])
    save_roc(curves, out_dir / "roc.png", title=f"normal: {normal_name}")
    threshold = None
    report = {"normal": normal_name, "metrics": metrics, **(extra or {}),
              "scores": {normal_name: list(map(float, normal)),
                         **{k: list(map(float, v)) for k, v in anomalies.items()}}}
    if calibrate_fpr:
        threshold = calibrate_threshold(normal, calibrate_fpr)
        report["threshold"] = {"value": threshold, "target_fpr": calibrate_fpr, "n_normal": int(len(normal)),
                               "normal": normal_name, "search": (extra or {}).get("search")}
        (out_dir / "threshold.json").write_text(json.dumps(report["threshold"], indent=2) + "\n")
    save_histogram({normal_name: normal, **anomalies}, out_dir / "histogram.png", threshold,
                   title=f"scores, normal: {normal_name}")
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
