"""Simple baselines that a detector must beat (issue 4): nearest-neighbour MSE to the training
frames, and foreground area alone. Both take preprocessed float32 frames (N, 4, R, R) in [-1, 1]
(``data.to_tensor(...).numpy()``); higher score = more anomalous."""
from __future__ import annotations

import numpy as np


def _flat(X: np.ndarray, name: str) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 4 or X.shape[1] != 4 or len(X) == 0:
        raise ValueError(f"{name} must be a non-empty (N, 4, R, R) array, got shape {X.shape}")
    return X.reshape(len(X), -1)


def foreground_fractions(X: np.ndarray) -> np.ndarray:
    """Share of foreground pixels (depth channel > -1, i.e. raw depth > 0) per frame: (N,)."""
    X = np.asarray(X)
    if X.ndim != 4 or X.shape[1] != 4:
        raise ValueError(f"X must be (N, 4, R, R), got shape {X.shape}")
    return (X[:, 3] > -1 + 1e-3).mean((1, 2))


ISSUE_FG_FLOOR = 0.01   # the issues' NN MSE per foreground pixel: / max(fg, 0.01)


def baseline_fg_floor(fg_power: float, model_fg_floor: float) -> float:
    """The fg_floor of the nearest-neighbour baseline divided by fg ** ``fg_power`` (``edge-ad eval``
    and models/kinect-rgbd/nn_baselines.py): the issues' 0.01 for their definitions (fg^0, unused;
    fg^1, MSE per foreground pixel), the model's own ``model_fg_floor`` (SearchConfig.fg_floor) for any
    other power, the model's normalisation."""
    return ISSUE_FG_FLOOR if fg_power in (0.0, 1.0) else float(model_fg_floor)


def nearest_neighbour_scores(train: np.ndarray, X: np.ndarray, fg_power: float = 0.0,
                             fg_floor: float = ISSUE_FG_FLOOR, chunk: int = 256) -> np.ndarray:
    """min_j mean((x - train_j)^2) per frame x: (N,). With ``fg_power`` > 0 the distance is divided by
    max(fg(x), fg_floor) ** fg_power, the same normalisation as SearchConfig.score_fg_power, so the
    baseline can be compared with a normalised search score."""
    T, V = _flat(train, "train"), _flat(X, "X")
    if T.shape[1] != V.shape[1]:
        raise ValueError(f"train frames {train.shape[1:]} and X frames {X.shape[1:]} differ in shape")
    tn = (T ** 2).sum(1)                                               # (M,)
    out = np.empty(len(V))
    for a in range(0, len(V), chunk):
        v = V[a:a + chunk]                                             # (c, D)
        d = (v ** 2).sum(1)[:, None] + tn[None] - 2 * v @ T.T          # (c, M) squared distances
        out[a:a + chunk] = np.maximum(d.min(1), 0) / V.shape[1]
    if fg_power:
        out = out / np.maximum(foreground_fractions(X), fg_floor) ** fg_power
    return out


def area_scores(train: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Foreground area alone: |fg(x) - median fg(train)| / std fg(train) per frame: (N,)."""
    t = foreground_fractions(train)
    return np.abs(foreground_fractions(X) - np.median(t)) / max(float(t.std()), 1e-6)
