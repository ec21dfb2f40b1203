"""``edge-ad train``: train a one-class RGB-D generator on kinect-rgbd, a frame folder, or synthetic boxes."""
from __future__ import annotations

from pathlib import Path

import click

from .options import FiniteFloat


@click.command("train")
@click.option("--data", "data", type=click.Path(exists=True, file_okay=False),
              help="kinect-rgbd root (with --class) or a frame folder (<dir>/rgb, <dir>/depth).")
@click.option("--class", "cls", help="kinect-rgbd class to train on (its 'train' split).")
@click.option("--split", default="train", show_default=True, help="split of splits.json to train on.")
@click.option("--synth", "synth_n", type=click.IntRange(min=0), default=0, help="train on N rendered boxes instead of --data.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="run folder.")
@click.option("--objective", type=click.Choice(["bce", "wgan-gp"]), default="bce", show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True, help="the study: 128.")
@click.option("--lr", type=FiniteFloat(), help="Adam lr [default: bce 2e-4, wgan-gp 1e-4; the study: 1e-4].")
@click.option("--beta1", type=FiniteFloat(), help="Adam beta1 [default: bce 0.5, wgan-gp 0.0; the study: 0.0].")
@click.option("--beta2", type=FiniteFloat(), help="Adam beta2 [default: bce 0.999, wgan-gp 0.9; the study: 0.9].")
@click.option("--critic-norm", type=click.Choice(["batch", "instance"]), default="batch", show_default=True,
              help="discriminator normalisation (batch: the study; instance: valid WGAN-GP penalty).")
@click.option("--width", "width", type=click.IntRange(min=1), default=64, show_default=True,
              help="features_g = features_d.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--hflip/--no-hflip", default=True, show_default=True)
@click.option("--max-shift", type=click.IntRange(min=0), default=0, show_default=True,
              help="random shifts up to N pixels.")
@click.option("--brightness", type=FiniteFloat(0, 1, max_open=True), default=0.0, show_default=True,
              help="RGB brightness jitter (fraction).")
@click.option("--white-balance", type=FiniteFloat(0, 1, max_open=True), default=0.0, show_default=True,
              help="colour-cast jitter: R and B gains 1 +- this (fraction).")
@click.option("--sample-every", type=click.IntRange(min=0), default=10, show_default=True,
              help="sample grid + checkpoint every N epochs (0: the checkpoint at the last epoch only).")
@click.option("--snapshot-every", type=click.IntRange(min=0), default=0,
              help="also keep epoch_XXXX.pt every N epochs (0: never).")
@click.option("--preprocess", "preprocess_json",
              help='preprocessing fields to train under, as JSON (runtime/preprocess.py), e.g. '
              '\'{"colour_norm": "gray", "colour_reference": "auto"}\'; "auto" = measured on the training frames.')
@click.option("--resume/--no-resume", default=True, show_default=True,
              help="continue OUT/last.pt if present (--no-resume: refuse an OUT that holds one; a checkpoint is "
                   "never replaced).")
@click.option("--threads", type=click.IntRange(min=0), default=0, help="torch CPU threads (0: torch's default).")
def cmd(data, cls, split, synth_n, out_dir, objective, epochs, batch_size, lr, beta1, beta2, critic_norm, width, seed, hflip,
        max_shift, brightness, white_balance, sample_every, snapshot_every, preprocess_json, resume, threads):
    """Train a DCGAN generator on normal frames only; writes OUT/last.pt, sample grids and a loss curve.

    Data-parallel on several processes or machines: torchrun --nproc_per_node=N -m edge_ad train ...
    (DistributedDataParallel; --batch-size is the global batch; rank 0 writes the outputs)."""
    import torch

    from edge_ad.models.data import DataError, load_folder, load_kinect, load_synth, split_class_note, summarize
    from edge_ad.models.distributed import Dist
    from edge_ad.models.train import TrainConfig, train
    from edge_ad.runtime.preprocess import PreprocessSpec

    if threads:
        torch.set_num_threads(threads)
    # Per-objective optimiser defaults. The study's (1e-4, betas (0, 0.9), batch 128) let the BCE
    # discriminator win at once on kinect cylinder and sphere (loss_d 0.002 by epoch 30, noise
    # samples); the DCGAN settings train all three classes (models/kinect-rgbd/HISTORY.md).
    bce = objective == "bce"
    lr = lr if lr is not None else (2e-4 if bce else 1e-4)
    beta1 = beta1 if beta1 is not None else (0.5 if bce else 0.0)
    beta2 = beta2 if beta2 is not None else (0.999 if bce else 0.9)
    try:
        if synth_n:
            ids, arr, _ = load_synth(synth_n, seed=seed, anomaly_rate=0.0)
            summary = summarize(ids, arr, "synth://", kind="box")
        elif data and cls:
            ids, arr = load_kinect(data, cls, split)
            summary = summarize(ids, arr, str(Path(data).resolve()), dataset="kinect-rgbd", cls=cls, split=split)
        elif data:
            note = split_class_note(data)     # a class folder of a split dataset: its val ids would be trained on
            if note:
                click.echo(f"warning: {note}", err=True)
            ids, arr = load_folder(data, on_warning=lambda m: click.echo(f"warning: {m}", err=True))
            summary = summarize(ids, arr, str(Path(data).resolve()))
        else:
            raise click.UsageError("give --data (with --class for kinect-rgbd) or --synth N")
        spec = PreprocessSpec()
        if preprocess_json:
            import json

            from edge_ad.models.data import spec_with
            try:
                fields = json.loads(preprocess_json)
            except json.JSONDecodeError as e:
                raise click.UsageError(f"--preprocess is not JSON: {e}")
            if not isinstance(fields, dict):
                raise click.UsageError("--preprocess must be a JSON object of preprocessing fields")
            read_once = {k: getattr(PreprocessSpec(), k) for k in ("resolution", "near_mm", "far_mm", "mask_rgb_background",
                                                                  "align", "align_centre", "scene_shift", "depth_fill",
                                                                  "depth_close")}
            read_once.update({k: list(v) for k, v in read_once.items() if isinstance(v, tuple)})
            fixed = sorted(k for k in read_once if k in fields and fields[k] != read_once[k]
                           and not (k == "resolution" and fields[k] == arr.shape[1]))
            if fixed:
                raise click.UsageError(f"--preprocess: {', '.join(fixed)} cannot be set in training (the frames are "
                                       "read once with the default resize, depth range, masking, no alignment, no scene shift and no depth "
                                       "fill or closing); "
                                       "only the colour fields (colour_norm, colour_reference, colour_gain) apply")
            spec = spec_with(spec, fields, arr)
            click.echo(f"preprocess: {spec.to_dict()}")
        from edge_ad.runtime.sensor_faults import limits_for_training_frames
        spec, note = limits_for_training_frames(arr, spec)      # frames with a table / wall in view: fault off
        if note:
            click.echo(f"note: {note}")
        cfg = TrainConfig(objective=objective, epochs=epochs, batch_size=batch_size, lr=lr, beta1=beta1, beta2=beta2, critic_norm=critic_norm,
                          features_g=width, features_d=width, seed=seed, hflip=hflip,
                          max_shift=max_shift, brightness=brightness,
                          white_balance=white_balance, sample_every=sample_every,
                          snapshot_every=snapshot_every)
    except (DataError, ValueError) as e:
        raise click.ClickException(str(e))
    dist = Dist.from_env()     # under torchrun: this rank's process group (gloo on CPU, nccl on GPU)
    echo = click.echo if dist.is_main else (lambda *a, **k: None)
    echo(f"training on {len(ids)} frames from {summary['source']} -> {out_dir}")
    try:
        path = train(arr, out_dir, cfg, data_summary=summary, spec=spec, resume=resume, dist=dist)
        # every rank done (rank 0 has written the checkpoint) before the process group is torn down: a gloo
        # rank whose peer tears down first can abort ("terminate called without an active exception", seen
        # once in CI on a loaded machine). Only on success: after an error a barrier could wait forever.
        dist.barrier()
    except (ValueError, FloatingPointError) as e:
        raise click.ClickException(str(e))
    finally:
        dist.close()
    echo(f"checkpoint: {path}")
