"""PNG pictures: sample grids (RGB over depth), loss curves, ROC curves, score histograms,
search trajectories. Matplotlib with the Agg backend (no display needed)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from edge_ad.runtime.preprocess import PreprocessSpec, to_display


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def rgbd_tile(x: np.ndarray, spec: PreprocessSpec = PreprocessSpec()) -> np.ndarray:
    """(4, H, W) in [-1, 1] -> (2H, W, 3) uint8: RGB on top, depth (grey) below."""
    rgb, d = to_display(x, spec)
    return np.concatenate([rgb, np.repeat(d[:, :, None], 3, 2)], 0)


def save_sample_grid(images: np.ndarray, path: Path, spec: PreprocessSpec = PreprocessSpec(),
                     title: str = "", ncol: int = 8) -> None:
    """images (N, 4, H, W) -> one PNG grid, each cell RGB above depth."""
    plt = _plt()
    tiles = [rgbd_tile(im, spec) for im in images]
    nrow = int(np.ceil(len(tiles) / ncol))
    h, w = tiles[0].shape[:2]
    grid = np.zeros((nrow * (h + 2), ncol * (w + 2), 3), np.uint8) + 40
    for i, t in enumerate(tiles):
        r, c = divmod(i, ncol)
        grid[r * (h + 2):r * (h + 2) + h, c * (w + 2):c * (w + 2) + w] = t
    fig = plt.figure(figsize=(ncol * 1.2, nrow * 2.4 + 0.4))
    plt.imshow(grid), plt.axis("off"), plt.title(title)
    fig.savefig(path, dpi=100, bbox_inches="tight"), plt.close(fig)


def save_loss_curve(history: dict, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(history["epoch"], history["loss_g"], label="generator")
    ax.plot(history["epoch"], history["loss_d"], label="discriminator / critic")
    ax.set_xlabel("epoch"), ax.set_ylabel("loss"), ax.legend(), ax.grid(alpha=0.3)
    fig.tight_layout(), fig.savefig(path, dpi=100), plt.close(fig)


def save_roc(curves: dict, path: Path, title: str = "") -> None:
    """curves: name -> (fpr, tpr, auroc)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for name, (fpr, tpr, auc) in curves.items():
        ax.plot(fpr, tpr, label=f"{name} (AUROC {auc:.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel("false positive rate"), ax.set_ylabel("true positive rate"), ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8), ax.grid(alpha=0.3)
    fig.tight_layout(), fig.savefig(path, dpi=100), plt.close(fig)


def save_histogram(scores: dict, path: Path, threshold: Optional[float] = None, title: str = "",
                   threshold_label: Optional[str] = None) -> None:
    """scores: group name -> 1-D array of anomaly scores; threshold: a dashed line, labelled ``threshold_label``
    (which threshold it is; default "threshold VALUE")."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    allv = np.concatenate([np.asarray(v) for v in scores.values()])
    bins = np.linspace(allv.min(), allv.max(), 40)
    for name, v in scores.items():
        ax.hist(v, bins=bins, alpha=0.5, label=f"{name} (n={len(v)})")
    if threshold is not None:
        ax.axvline(threshold, color="k", ls="--", label=threshold_label or f"threshold {threshold:.4g}")
    ax.set_xlabel("anomaly score"), ax.set_ylabel("frames"), ax.set_title(title), ax.legend(fontsize=8)
    fig.tight_layout(), fig.savefig(path, dpi=100), plt.close(fig)


def save_trajectory_grid(rows: Sequence[tuple[str, np.ndarray, np.ndarray]], path: Path,
                         spec: PreprocessSpec = PreprocessSpec()) -> None:
    """rows: (label, input x (4,H,W), generated frames per step (T, 4, H, W)) -> one PNG grid,
    input in the first column, then the generated frame after each step (RGB above depth)."""
    plt = _plt()
    nrow, ncol = len(rows), 1 + max(len(r[2]) for r in rows)
    fig, axes = plt.subplots(nrow, ncol, figsize=(ncol * 0.9, nrow * 1.9), squeeze=False)
    for r, (label, x, steps) in enumerate(rows):
        for c in range(ncol):
            ax = axes[r][c]
            ax.axis("off")
            if c == 0:
                ax.imshow(rgbd_tile(x, spec)), ax.set_title("input", fontsize=6)
                ax.text(-0.1, 0.5, label, transform=ax.transAxes, ha="right", va="center", fontsize=6)
            elif c - 1 < len(steps):
                ax.imshow(rgbd_tile(steps[c - 1], spec)), ax.set_title(f"t={c - 1}", fontsize=6)
    fig.tight_layout(), fig.savefig(path, dpi=110), plt.close(fig)
