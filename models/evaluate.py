"""Detection quality: AUROC, AP, F1-max and its threshold (scikit-learn), per anomalous class and
overall; threshold calibration on normal frames; ROC and histogram PNGs; a JSON report."""
from __future__ import annotations

import hashlib
import json
import os
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


def few_normals_warning(normal_scores: np.ndarray, fpr: float, threshold: float) -> Optional[str]:
    """What to say when ``threshold`` (calibrate_threshold of ``normal_scores`` at ``fpr``) rests on the top few
    normal scores (runtime/calibrate's few_expected_above rule); None when there are enough."""
    from edge_ad.runtime.calibrate import MIN_EXPECTED_ABOVE, few_expected_above, ordinal
    n = len(normal_scores)
    if not few_expected_above(n, fpr):
        return None
    above = int((np.asarray(normal_scores, float) > threshold).sum())
    return (f"the threshold is the {ordinal(above + 1)} highest of {n} normal scores ({n} x {fpr:g} = "
            f"{n * fpr:.2g} expected above it; a quantile needs {MIN_EXPECTED_ABOVE} or more), as noisy as one "
            "frame: use more normal frames (e.g. without --max-per-class) or a larger --calibrate-fpr")


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


REPORT_FILES = ("report.json", "threshold.json", "roc.png", "histogram.png")   # what write_report writes
PARTIAL_SCORES = "scores.partial.jsonl"    # the scores of an eval not finished yet (ScoreLog)
NUISANCE_KEY = "nuisance:"                 # ScoreLog groups of the nuisance suite's scorings (by frames' sha256)


def _frames_key(X: np.ndarray) -> str:
    """The ScoreLog group of the frames X (N, C, R, R): NUISANCE_KEY + the first 24 hex digits of the sha256 of
    their bytes (the key partial files already hold: an eval stopped by an earlier edge-ad continues)."""
    return NUISANCE_KEY + hashlib.sha256(np.ascontiguousarray(X).data).hexdigest()[:24]


class ScoreLog:
    """OUT/scores.partial.jsonl: the scores of an edge-ad eval as they are made, so that an eval stopped before
    its end (a signal, a lost session) loses at most one chunk and the same command continues where it stopped.
    Line 1: {"settings": what the scores depend on (model file sha256, configuration, preprocessing, seed, each
    group's frame count and content sha256)}; then one line per scored chunk: {"group", "start", "scores": [...]}
    (and, for a model with the silhouette lever, "won": the winning version of each frame; appended, flushed and
    fsync'ed). A file of other settings is refused (ValueError naming what differs); a
    torn last line (a kill mid-write) is ignored. ``done()`` removes it once the report holds the scores."""

    def __init__(self, out_dir: Path, settings: dict):
        self.path = Path(out_dir) / PARTIAL_SCORES
        self.scores: dict = {}
        self.winners: dict = {}     # group -> the silhouette lever's winning version per scored frame (lever only)
        self._known: dict = {}      # frames key -> the scores of an evaluated group of those very frames (``know``)
        settings = json.loads(json.dumps(settings))          # as it reads back (tuples -> lists)
        if self.path.exists():
            lines = self.path.read_text(encoding="utf-8").splitlines()
            try:
                first = json.loads(lines[0])["settings"]
            except (IndexError, ValueError, KeyError, TypeError):
                raise ValueError(f"{self.path} is not an edge-ad eval's partial scores file: remove it or choose "
                                 "another --out") from None
            if first != settings:
                differ = sorted(k for k in set(first) | set(settings) if first.get(k) != settings.get(k))
                raise ValueError(f"{self.path} holds the partial scores of an eval with other settings "
                                 f"({', '.join(differ)}): continuing would mix the two; rerun with the same model "
                                 "and options, or choose another --out")
            for line in lines[1:]:
                try:
                    rec = json.loads(line)
                    got = self.scores.setdefault(rec["group"], [])
                    if rec["start"] == len(got):
                        won = [str(v) for v in rec["won"]] if "won" in rec else None
                        got.extend(float(x) for x in rec["scores"])
                        if won is not None:
                            self.winners.setdefault(rec["group"], []).extend(won)
                except (ValueError, KeyError, TypeError):
                    break                                       # a torn last line: the chunk is scored again
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._append({"settings": settings})

    def scored(self, group: str) -> list:
        """The scores of ``group`` made so far (this run's and an earlier run's)."""
        return self.scores.setdefault(group, [])

    @property
    def n_scored(self) -> int:
        """Frames of the groups scored so far (not the nuisance suite's kept scorings)."""
        return sum(len(v) for k, v in self.scores.items() if not k.startswith(NUISANCE_KEY))

    @property
    def n_nuisance(self) -> int:
        """The nuisance suite's scorings (one perturbed group each) kept so far."""
        return sum(bool(v) for k, v in self.scores.items() if k.startswith(NUISANCE_KEY))

    def won(self, group: str) -> list:
        """The silhouette lever's winning version of each of ``group``'s frames scored so far ([] without the lever)."""
        return self.winners.setdefault(group, [])

    def know(self, X: np.ndarray, scores, won: Optional[list] = None) -> None:
        """``scores`` (N,) are the scores of the frames X (N, C, R, R) (an evaluated group, already kept under its
        name; ``won``: the silhouette lever's winning versions [N]): ``kept_scores`` of the very same frames (the
        nuisance suite's clean row) takes them instead of scoring them a second time."""
        if len(scores) == len(X):
            s = np.asarray(scores, dtype=float)
            self._known[_frames_key(X)] = s if won is None else (s, list(won))

    def kept_scores(self, X: np.ndarray, score):
        """``score(X)`` (X: (N, C, R, R) perturbed frames of the nuisance suite), kept under the sha256 of X: the
        same frames again (the same command after a stop) take the kept scores instead of being scored again,
        and frames of an evaluated group (``know``: the suite's clean row) take that group's scores. ``score`` may
        return (scores (N,), winning versions [N]) (the silhouette lever): then so does this, both kept."""
        key = _frames_key(X)
        if key in self._known:
            k = self._known[key]
            return (k[0].copy(), list(k[1])) if isinstance(k, tuple) else k.copy()
        kept = self.scored(key)
        if len(kept) == len(X):
            won = self.won(key)
            s = np.asarray(kept, dtype=float)
            return (s, list(won)) if len(won) == len(X) else s
        out = score(X)
        s, won = (np.asarray(out[0], dtype=float), list(out[1])) if isinstance(out, tuple) else \
            (np.asarray(out, dtype=float), None)
        if not kept:
            self.add(key, s, won)
        return s if won is None else (s, won)

    def add(self, group: str, scores, won: Optional[list] = None) -> None:
        """Append the next chunk of ``group``'s scores (it follows the ones made so far); ``won``: the silhouette
        lever's winning version of each (a model with the lever)."""
        got = self.scored(group)
        rec = {"group": group, "start": len(got), "scores": [float(x) for x in scores]}
        if won is not None:
            rec["won"] = [str(v) for v in won]
        self._append(rec)
        got.extend(float(x) for x in scores)
        if won is not None:
            self.won(group).extend(str(v) for v in won)

    def _append(self, rec: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def done(self) -> None:
        """The report is written: the partial scores are no longer needed."""
        self.path.unlink(missing_ok=True)


def earlier_report(out_dir: Path) -> list:
    """The files of REPORT_FILES already in ``out_dir`` (an earlier evaluation's; [] for a new directory):
    edge-ad eval refuses such a directory, evaluations are never overwritten."""
    return [f for f in REPORT_FILES if (Path(out_dir) / f).exists()]


def write_report(out_dir: Path, normal_name: str, normal: np.ndarray, anomalies: Mapping[str, np.ndarray],
                 extra: Optional[dict] = None, calibrate_fpr: Optional[float] = None) -> dict:
    """Compute metrics, write report.json, roc.png, histogram.png (and threshold.json) into out_dir.
    Everything is computed (a bad ``calibrate_fpr`` raises ValueError) before the first file is written, so a
    failure leaves no partial report that earlier_report would take for an evaluation."""
    from .plots import save_histogram, save_roc

    out_dir = Path(out_dir)
    metrics = evaluate_scores(normal, anomalies)
    curves = {}
    for name, s in list(anomalies.items()) + [("overall", np.concatenate(list(anomalies.values())))]:
        y = np.r_[np.zeros(len(normal)), np.ones(len(s))]
        fpr, tpr, _ = roc_curve(y, np.r_[normal, s])
        curves[f"{normal_name} vs {name}"] = (fpr, tpr, metrics[name]["auroc"])
    threshold = None
    report = {"normal": normal_name, "metrics": metrics, **(extra or {}),
              "scores": {normal_name: list(map(float, normal)),
                         **{k: list(map(float, v)) for k, v in anomalies.items()}}}
    if calibrate_fpr is not None:
        threshold = calibrate_threshold(normal, calibrate_fpr)
        report["threshold"] = {"value": threshold, "target_fpr": calibrate_fpr, "n_normal": int(len(normal)),
                               "normal": normal_name, "search": (extra or {}).get("search")}
        warning = few_normals_warning(normal, calibrate_fpr, threshold)
        if warning is not None:
            report["threshold"]["warning"] = warning
        if (extra or {}).get("preprocess") is not None:   # the preprocessing the scores were made with
            report["threshold"]["preprocess"] = extra["preprocess"]
        if (extra or {}).get("model_sha256") is not None:  # the checkpoint whose scores it was read on (export checks)
            report["threshold"].update(model=extra.get("model"), model_sha256=extra["model_sha256"])
    out_dir.mkdir(parents=True, exist_ok=True)
    save_roc(curves, out_dir / "roc.png", title=f"normal: {normal_name}")
    if threshold is not None:
        (out_dir / "threshold.json").write_text(json.dumps(report["threshold"], indent=2) + "\n")
    save_histogram({normal_name: normal, **anomalies}, out_dir / "histogram.png", threshold,
                   title=f"scores, normal: {normal_name}",
                   threshold_label=None if threshold is None else
                   f"threshold.json {threshold:.4g} ({calibrate_fpr:g} of {len(normal)} normals)")
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def threshold_rates(normal: np.ndarray, anomalous: np.ndarray, threshold: float) -> dict:
    """At a threshold (score > threshold = anomalous): the share of normal frames flagged (false
    alarms) and of anomalous frames flagged."""
    normal, anomalous = np.asarray(normal, float), np.asarray(anomalous, float)
    return {"false_alarm_rate": float((normal > threshold).mean()),
            "anomalies_flagged": float((anomalous > threshold).mean())}


def nuisance_suite(score_fn, raw_groups: Mapping[str, list], normal_name: str, nuisances: Mapping[str, object],
                   spec, threshold: float, seed: int = 0, baseline_fn=None, progress=None,
                   baseline_spec=None, score_raw: bool = False) -> dict:
    """Detection under everyday nuisances (runtime/nuisance/), each applied to the RAW frames of
    every group before preprocessing.

    score_fn(X) / baseline_fn(X): scores (N,) of preprocessed frames X (N, 4, R, R) float32; raw_groups:
    {group: [(rgb, depth)]}, normal_name the normal group; nuisances: {label: nuisance} (the clean
    condition is added first); baseline_spec: the baseline's preprocessing (default ``spec``). ``score_raw`` (a model
    with the silhouette lever, whose versions are made on the raw frame as the runtime sees it, after the nuisance):
    score_fn(X, frames) takes the perturbed raw frames [(rgb, depth)] too and returns (scores (N,), winning versions
    [N]); each row then also holds "silhouette_winners": {group: {version: frames it won}}. Frame i of
    group g under nuisance number k draws its noise from
    nuisance.frame_rng(seed, 100000 * g + i, k). Returns {"conditions": {label: {auroc, per_class,
    false_alarm_rate, anomalies_flagged, baseline_auroc, scores: {group: [N]}, frames_without_foreground:
    {group: n}}}, "mean": the mean over conditions}. A nuisance that leaves no frame any foreground (depth
    all background after preprocessing: nothing to score) is not scored: its row is {"skipped": why,
    frames_without_foreground}, left out of "mean" and "worst"."""
    from edge_ad.runtime.nuisance import frame_rng
    from edge_ad.runtime.preprocess import frame_to_uint8, normalize_uint8

    conditions = {"clean": None, **dict(nuisances)}
    out = {}
    items = list(conditions.items())
    for k, (label, nuis) in enumerate(progress(items) if progress else items):
        X, XB, empty, perturbed = {}, {}, {}, {}
        for g, (name, frames) in enumerate(raw_groups.items()):
            raw = [f if nuis is None else nuis(*f, frame_rng(seed, 100000 * g + i, k)) for i, f in enumerate(frames)]
            perturbed[name] = raw
            u8 = np.stack([frame_to_uint8(*f, spec) for f in raw])                      # (N, R, R, 4)
            empty[name] = int((u8[..., 3] == 0).all((1, 2)).sum())                      # depth all background
            X[name] = normalize_uint8(u8, spec)                                         # (N, 4, R, R)
            if baseline_fn is not None and baseline_spec is not None and baseline_spec != spec:
                XB[name] = normalize_uint8(np.stack([frame_to_uint8(*f, baseline_spec) for f in raw]), baseline_spec)
            else:
                XB[name] = X[name]
        if nuis is not None and sum(empty.values()) == sum(len(f) for f in raw_groups.values()):
            out[label] = {"skipped": "no foreground left in any frame (depth all background): nothing to score",
                          "frames_without_foreground": empty}
            continue
        winners = None
        if score_raw:
            from .silhouette_reference import winner_counts
            got = {name: score_fn(x, perturbed[name]) for name, x in X.items()}
            s = {name: np.asarray(v[0], float) for name, v in got.items()}
            winners = {name: winner_counts(v[1]) for name, v in got.items()}
        else:
            s = {name: np.asarray(score_fn(x), float) for name, x in X.items()}
        normal = s.pop(normal_name)
        anomalous = np.concatenate(list(s.values()))
        row = {"auroc": detection_metrics(normal, anomalous)["auroc"],
               "per_class": {name: detection_metrics(normal, v)["auroc"] for name, v in s.items()},
               **threshold_rates(normal, anomalous, threshold),
               # per-frame scores {group: [N]}, so rates at any other threshold can be read off later
               "scores": {normal_name: normal.tolist(), **{name: v.tolist() for name, v in s.items()}},
               "frames_without_foreground": empty}
        if winners is not None:
            row["silhouette_winners"] = winners
        if baseline_fn is not None:
            b = {name: np.asarray(baseline_fn(x), float) for name, x in XB.items()}
            bn = b.pop(normal_name)
            row["baseline_auroc"] = detection_metrics(bn, np.concatenate(list(b.values())))["auroc"]
        out[label] = row
    keys = ["auroc", "false_alarm_rate", "anomalies_flagged"] + (["baseline_auroc"] if baseline_fn else [])
    scored = [r for r in out.values() if "skipped" not in r]
    mean = {key: float(np.mean([r[key] for r in scored])) for key in keys}
    worst = {"auroc": float(min(r["auroc"] for r in scored)),
             "false_alarm_rate": float(max(r["false_alarm_rate"] for r in scored))}
    return {"conditions": out, "mean": mean, "worst": worst, "threshold": float(threshold), "seed": seed}


def nuisance_table(suite: dict) -> str:
    """The nuisance suite as a text table (one row per condition, then the mean over conditions)."""
    has_b = "baseline_auroc" in suite["mean"]
    head = f"{'condition':28s} {'AUROC':>6s} {'false alarms':>12s} {'flagged':>8s}" + ("  NN baseline" if has_b else "")
    lines = [head, "-" * len(head)]
    rows = list(suite["conditions"].items()) + [("mean (clean + nuisances)", suite["mean"])]
    for label, r in rows:
        if "skipped" in r:
            lines.append(f"{label:28s} skipped: {r['skipped']}")
            continue
        lines.append(f"{label:28s} {r['auroc']:6.3f} {r['false_alarm_rate']:12.1%} {r['anomalies_flagged']:8.1%}"
                     + (f"  {r['baseline_auroc']:11.3f}" if has_b else ""))
    return "\n".join(lines)


def winners_table(winners: Mapping[str, Mapping[str, Mapping[str, int]]]) -> str:
    """The silhouette lever's winning versions as a text table: one row per condition of ``winners`` ({condition:
    {group: {version: frames it won}}}), per group the counts "id/ero/dil" (runtime.silhouette.VERSIONS' order)."""
    from edge_ad.runtime.silhouette import VERSIONS
    groups = list(next(iter(winners.values()), {}))
    width = max([12] + [len(g) + 2 for g in groups])
    head = f"{'condition':28s} " + " ".join(f"{g:>{width}s}" for g in groups)
    lines = [f"frames won by each silhouette version ({'/'.join(VERSIONS)}), per group:", head, "-" * len(head)]
    for label, per in winners.items():
        lines.append(f"{label:28s} " + " ".join(
            f"{'/'.join(str(per[g].get(v, 0)) for v in VERSIONS):>{width}s}" if g in per else f"{'-':>{width}s}"
            for g in groups))
    return "\n".join(lines)


def folder_group_names(dirs) -> list:
    """The group names of eval's --normal and --anomalous folders ``dirs``, in their order: each folder's own name,
    or, when an earlier folder took it (x/dents and y/dents), the folder as given: named by the last part alone,
    the second group replaced the first without a word (audit 30, ifix-found D). ValueError for a folder given
    twice (it would be a normal and an anomalous group at once, or one group twice)."""
    names, seen = [], {}
    for d in dirs:
        where = Path(d).resolve()
        if where in seen:
            raise ValueError(f"the folder {d} is given twice (as {seen[where]} too): each --normal / --anomalous "
                             "folder is one group")
        seen[where] = d
        name = Path(d).name if Path(d).name not in names else str(Path(d))
        if name in names:
            raise ValueError(f"the folder {d} would be named {name!r} as an earlier group: rename one folder")
        names.append(name)
    return names


def raw_groups(data, cls, split, normal_dir, anomalous_dirs, synth_n, seed, max_per_class) -> dict:
    """{group: [(rgb, depth)]} raw frames of the same groups as the evaluation (normal group first)."""
    import numpy as np

    from edge_ad.models.data import KINECT_CLASSES, kinect_split_ids
    from edge_ad.runtime.sources.folder import list_ids, read_pair
    from edge_ad.runtime.sources.synth import render_set

    def folder(root, ids=None):
        ids = list_ids(root) if ids is None else ids
        return [read_pair(root, str(i)) for i in (ids[:max_per_class] if max_per_class else ids)]

    if data and cls:
        return {c: folder(Path(data) / c, kinect_split_ids(data, c, split))
                for c in [cls] + [c for c in KINECT_CLASSES if c != cls]}
    if normal_dir:
        dirs = (normal_dir, *anomalous_dirs)
        return {name: folder(d) for name, d in zip(folder_group_names(dirs), dirs)}
    rgb, depth, kinds = render_set(synth_n, 10_000 + seed, 0.5, 64)
    kinds = np.array(kinds)
    return {kn: [(rgb[i], depth[i]) for i in np.flatnonzero(kinds == kn)[:max_per_class or None]]
            for kn in ("box", "sphere", "cylinder")}
