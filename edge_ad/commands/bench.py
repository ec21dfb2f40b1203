"""``edge-ad bench CHECKPOINT``: latency of the PyTorch and ONNX search implementations, interleaved."""
from __future__ import annotations

import json
from pathlib import Path

import click

from edge_ad.benchmarks.search_bench import ALL_VARIANTS     # NumPy only at import (torch when run)

from .options import check_out_place


@click.command("bench")
@click.argument("checkpoint", type=click.Path(dir_okay=False, exists=True))
@click.option("--model", "model_dir", type=click.Path(file_okay=False, exists=True),
              help="Exported model directory of CHECKPOINT (default: export to a temporary directory).")
@click.option("--frames", "n_frames", type=click.IntRange(min=1), default=2, show_default=True,
              help="Real kinect-rgbd val frames, alternating classes.")
@click.option("--repeats", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), help="Threads for torch and onnxruntime [all cores].")
@click.option("--variant", "variants", multiple=True,
              type=click.Choice(ALL_VARIANTS),
              help="Variants to run (repeatable; default: benchmarks/search_bench.py DEFAULT_VARIANTS).")
@click.option("--no-rss", is_flag=True, help="Skip the per-variant peak-RSS probes (fresh processes).")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the results as JSON (a new file: an existing "
              "one is refused, never replaced).")
def cmd(checkpoint, model_dir, n_frames, repeats, threads, variants, no_rss, out):
    """Per-frame latency (median), frames/s, GFLOP/s and fraction of the sgemm peak measured in the
    same run, and peak RSS of: the study-style eager search, the batched PyTorch reference, the
    runtime's default here (onnx-auto) and each search variant of runtime/variants.py that the export
    has (step, unrolled, fused-adam (-numpy: the host Adam without the compiled kernel), host-head),
    faithful and z-only (lr_theta = 0)."""
    from edge_ad.benchmarks.search_bench import DEFAULT_VARIANTS, Skipped, format_table, run_bench
    if out and Path(out).exists():      # before the benchmark runs (minutes), not after
        raise click.ClickException(f"--out {out} exists (an earlier benchmark's results?): results are never "
                                   "replaced; give another --out")
    if out:
        check_out_place(out)
    other = _other_checkpoint(checkpoint, model_dir) if model_dir else None
    if other:
        click.echo(f"warning: {other}", err=True)
    try:
        r = run_bench(checkpoint, model_dir, n_frames=n_frames, repeats=repeats, threads=threads,
                      variants=variants or DEFAULT_VARIANTS, rss=not no_rss, log=click.echo)
    except Skipped as e:
        raise click.ClickException(str(e))
    if other:
        r["warning"] = other                # the results say which pairing they measured
    click.echo(format_table(r))
    if out:
        with open(out, "x") as f:           # "x": one written meanwhile is not replaced either
            json.dump(r, f, indent=1)
        click.echo(f"results: {out}")


def _other_checkpoint(checkpoint, model_dir):
    """What to say (None: nothing) when the export ``model_dir`` was made from another file than ``checkpoint``
    (its manifest's source sha256): bench then times the eager baseline of one model against the runtime of
    another, and the speed-up compares two models. Exports that do not record their source are not compared."""
    from edge_ad.runtime.manifest import ManifestError, load_manifest, sha256_file
    try:
        source = load_manifest(model_dir, verify=False).get("source") or {}
    except (ManifestError, ValueError) as e:
        raise click.ClickException(str(e))
    want = source.get("sha256") if isinstance(source, dict) else None
    if not isinstance(want, str):
        return None
    got = sha256_file(checkpoint)
    if got == want:
        return None
    return (f"--model {model_dir} was exported from {source.get('file')} (sha256 {want[:16]}...), not from "
            f"{checkpoint} (sha256 {got[:16]}...): the PyTorch variants run {checkpoint}, the runtime's run the "
            "export, so their ratios compare two models; pass this checkpoint's export, or leave --model out")
