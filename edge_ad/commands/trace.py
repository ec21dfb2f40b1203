"""``edge-ad trace``: the search trajectory as one PNG grid (the study's Figure 1): the generated frame
after each of the k steps, for a normal and an anomalous input, with a low and a high generator
learning rate (lr_theta). RGB above depth in every cell."""
from __future__ import annotations

import json
import os
from pathlib import Path

import click

from .options import FiniteFloat, check_out_place


@click.command("trace")
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False), required=True,
              help="generator checkpoint (edge-ad, study state_dict or TorchScript).")
@click.option("--data", type=click.Path(exists=True, file_okay=False), required=True, help="kinect-rgbd root.")
@click.option("--class", "cls", required=True, help="normal class (the model's training class).")
@click.option("--anomalous-class", "anomalous_cls", help="class of the anomalous input (default: another class).")
@click.option("--split", default="val", show_default=True)
@click.option("--index", type=click.IntRange(min=0), default=0, show_default=True, help="which frame of each class's split.")
@click.option("--lr-theta-low", type=FiniteFloat(), default=6e-9, show_default=True, help="the reference lr_theta.")
@click.option("--lr-theta-high", type=FiniteFloat(), default=1e-4, show_default=True,
              help="high lr_theta (1e-2 collapses a w32 generator to background in one step).")
@click.option("--lr-z", type=FiniteFloat(), help="override lr_z.")
@click.option("--k", "k", type=click.IntRange(min=0), help="override the number of steps k.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="seed of the initial latent.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), required=True, help="PNG to write.")
def cmd(model_path, data, cls, anomalous_cls, split, index, lr_theta_low, lr_theta_high, lr_z, k, seed,
        out_path):
    """Draw the generated frame after each search step (one seed) for a normal and an anomalous input,
    with a low and a high lr_theta: four rows, input first."""
    import numpy as np

    from edge_ad.models.checkpoint import load_generator
    from edge_ad.models.checkpoint_errors import CheckpointError
    from edge_ad.models.data import KINECT_CLASSES, DataError, load_kinect, to_tensor
    from edge_ad.models.plots import save_trajectory_grid
    from edge_ad.models.search import search
    from edge_ad.runtime.config import SearchConfig

    if cls not in KINECT_CLASSES:
        raise click.BadParameter(f"must be one of {KINECT_CLASSES}", param_hint="--class")
    anomalous_cls = anomalous_cls or next(c for c in KINECT_CLASSES if c != cls)
    if anomalous_cls not in KINECT_CLASSES or anomalous_cls == cls:
        raise click.BadParameter(f"must be one of {KINECT_CLASSES} other than {cls!r}",
                                 param_hint="--anomalous-class")
    if lr_theta_low < 0 or lr_theta_high < 0:
        raise click.BadParameter("learning rates must be >= 0", param_hint="--lr-theta-low/--lr-theta-high")
    out_path = Path(out_path)
    for p in (out_path, out_path.with_suffix(".json")):     # before the searches run, not after
        if p.exists():
            raise click.ClickException(f"{p} exists (an earlier trace's?): --out {out_path} writes FILE.png and "
                                       "FILE.json, a file is never replaced; give another --out")
    check_out_place(out_path)
    try:
        G = load_generator(model_path)
    except CheckpointError as e:
        raise click.ClickException(str(e))
    inputs = {}
    try:
        for c in (cls, anomalous_cls):
            ids, arr = load_kinect(data, c, split, G.preprocess)
            if not 0 <= index < len(ids):
                raise click.BadParameter(f"{c}/{split} has {len(ids)} frames, got index {index}",
                                         param_hint="--index")
            inputs[c] = (ids[index], to_tensor(arr[index:index + 1], G.preprocess).numpy()[0])
    except DataError as e:
        raise click.ClickException(str(e))
    base = SearchConfig().replace(lr_z=lr_z, k=k, n_seed=1)
    rows, summary = [], []
    for c, kind in ((cls, "normal"), (anomalous_cls, "anomalous")):
        fid, x = inputs[c]
        for lr_name, lr in (("low", lr_theta_low), ("high", lr_theta_high)):
            cfg = base.replace(lr_theta=lr)
            r = search(G, x, cfg, seed=seed, keep_trajectory=True)
            steps = np.stack([t[0] for t in r.trajectory])             # (k+1, 4, R, R): after t steps
            rows.append((f"{kind} {c} #{fid}\nlr_theta {lr:g}\nloss {r.seed_losses[0]:.4f}", x, steps))
            summary.append({"input": f"{c}/{fid}", "kind": kind, "lr_theta": lr,
                            "loss_per_step": [float(((t[0] - x) ** 2).mean()) for t in r.trajectory]})
    out_path.parent.mkdir(parents=True, exist_ok=True)
    try:   # "x" and a link (never replaces): a file written there meanwhile is not replaced either
        with open(out_path.with_suffix(".json"), "x") as f:
            f.write(json.dumps({"model": str(model_path), "search": base.to_dict(), "rows": summary}, indent=2) + "\n")
        tmp = out_path.with_name(f".{out_path.stem}.{os.getpid()}.tmp.png")
        try:
            save_trajectory_grid(rows, tmp, G.preprocess)
            os.link(tmp, out_path)
        finally:
            tmp.unlink(missing_ok=True)
    except FileExistsError as e:
        raise click.ClickException(f"{e.filename} was written by something else while the trace ran: never "
                                   "replaced; give another --out")
    for s in summary:
        click.echo(f"{s['kind']:9s} {s['input']:16s} lr_theta {s['lr_theta']:<8g} loss "
                   f"{s['loss_per_step'][0]:.4f} -> {s['loss_per_step'][-1]:.4f}")
    click.echo(f"wrote {out_path}")
