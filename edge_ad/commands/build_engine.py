"""``edge-ad build-engine MODEL_DIR``: build the TensorRT engines of an exported model on this device.

Engines are specific to the GPU (compute capability) and the exact TensorRT version, so they are
built on the target (a Jetson) and cached in MODEL_DIR/engines/ under a key of both, the ONNX
graph's sha256 and the precision. A cache hit takes a second, so the systemd unit runs this before
every start; a JetPack upgrade then rebuilds here instead of failing in the scoring loop.
No torch: this runs on the robot.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import click


@click.command("build-engine")
@click.argument("model_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--precision", type=click.Choice(["fp32", "tf32", "fp16"]), default="fp32", show_default=True,
              help="fp32: the reference arithmetic (TF32 disabled). tf32: faster convolutions on Ampere/Orin, "
                   "measure the score drift first. fp16: only for a z-only export (lr_theta = 0); with "
                   "lr_theta = 6e-9 it would silently drop every weight update and is refused. "
                   "`edge-ad run` uses the precision in $EDGE_AD_TRT_PRECISION (default fp32).")
@click.option("--allow-lossy", is_flag=True, help="Build a precision that loses weight updates anyway (warns loudly).")
@click.option("--force", is_flag=True, help="Rebuild even if a valid engine for this GPU and TensorRT exists.")
@click.option("--check", "check_only", is_flag=True,
              help="Do not build: exit 1 unless valid engines for this GPU and TensorRT are cached.")
@click.option("--all-graphs", is_flag=True,
              help="Also build the z-only step graph (to switch lr_theta at run time without a build).")
@click.option("--workspace-mb", type=click.IntRange(64, 65536), default=1024, show_default=True,
              help="TensorRT builder workspace limit.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where engines live (default MODEL_DIR/engines, or $EDGE_AD_ENGINE_CACHE; set that "
                   "variable for `edge-ad run` too when using another place).")
def cmd(model_dir, precision, allow_lossy, force, check_only, all_graphs, workspace_mb, cache_dir):
    """Build (or verify) the TensorRT engines of an exported model for this GPU."""
    import numpy as np

    from edge_ad.runtime.backends.errors import BackendUnavailable
    from edge_ad.runtime.backends.tensorrt import ensure_engines, graphs_for, require_tensorrt_and_gpu
    from edge_ad.runtime.manifest import ManifestError, load_manifest
    from edge_ad.runtime.backends.precision import PrecisionError, PrecisionWarning, check_precision

    try:
        man = load_manifest(model_dir, verify=True)
        trt, _, gpu = require_tensorrt_and_gpu()
        click.echo(f"GPU {gpu[0]} (sm_{gpu[1].replace('.', '')}), TensorRT {trt.__version__}, {precision}")
        search = man["search"]
        with np.load(model_dir / man["layout"]["weights"]) as npz:
            weights = {k: npz[k] for k in npz.files}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", PrecisionWarning)
            check_precision(weights, float(search["lr_theta"]), precision, lr_z=float(search["lr_z"]),
                            allow_lossy=allow_lossy)
        for w in caught:
            click.echo(f"warning: {w.message}", err=True)
        graphs = graphs_for(man)
        if all_graphs:
            graphs = sorted({"step", "final"} | ({"step_z"} if "step_z" in man["graphs"] else set()))
        paths = ensure_engines(model_dir, man, graphs, precision,
                               on_mismatch="fail" if check_only else "rebuild", force=force and not check_only,
                               cache_dir=cache_dir, workspace_bytes=workspace_mb << 20, trt=trt, gpu=gpu,
                               log_fn=click.echo)
    except (BackendUnavailable, ManifestError, PrecisionError, ValueError) as e:   # TensorRT, GPU, engines
        raise click.ClickException(str(e))
    for g, p in paths.items():
        click.echo(f"{g}: {p}")
