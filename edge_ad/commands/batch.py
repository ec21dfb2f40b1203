"""``edge-ad batch``: re-score many recordings with one model, on a local process pool or Ray.

Torch-free. One results file per source (``OUTDIR/<name>.jsonl``, the rows ``edge-ad run --source``
writes) and ``OUTDIR/summary.json``. Exit status as ``edge-ad run``: 0 ok, 1 a source failed (or a
fatal error), 2 bad command line, 3 some frames were bad or lost (a recording cut short), 4 no frame could be scored.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import click

from .options import check_threshold, model_directory


def _ray_address(value: Optional[str], sources: tuple) -> tuple:
    """--ray's optional value: "local", "auto", ray://HOST:PORT or HOST:PORT. Anything else was a
    SOURCE that click took as --ray's value (``--ray DIR ...``): it goes back to the sources."""
    if value is None:
        return None, sources
    if value in ("local", "auto") or value.startswith("ray://") or (":" in value and not os.path.exists(value)):
        return value, sources
    return "local", (value,) + tuple(sources)


@click.command("batch")
@click.option("--model", required=True, type=click.Path(), callback=model_directory,
              help="Exported model directory.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output folder: <source name>.jsonl per source (<name>-<hash> when another source "
                   "has the name; a source keeps its name in OUT across runs) and summary.json.")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[local|ADDRESS]",
              help="Run on Ray: 'local' (default) starts a cluster on this machine; ADDRESS (auto, "
                   "ray://HEAD:10001, HEAD:6379) joins one. Without --ray: a local process pool.")
@click.option("--workers", type=click.IntRange(min=1), help="Worker processes / Ray actors, each with "
              "its own Scorer [local: CPU count (at most one per source); Ray: cluster CPUs / --threads].")
@click.option("--threads", type=click.IntRange(min=1), help="Intra-op threads per worker "
              "[local: CPU count / workers; Ray: 1].")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Run seed, as edge-ad run --seed: frame i of every source uses frame_seed(seed, i).")
@click.option("--threshold", type=float, help="Anomaly threshold, a number > 0 (default: the model's calibrated one).")
@click.option("--max-attempts", type=click.IntRange(min=1), default=3, show_default=True,
              help="Tries per source when its worker dies mid-source.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("--trusted-key", "trusted_keys", multiple=True, type=click.Path(dir_okay=False, exists=True),
              metavar="FILE", help="Ed25519 public key (PEM) the model must be signed by (edge-ad export --sign), "
              "as edge-ad run --trusted-key; repeatable. Checked before anything is written, and again by every "
              "worker (a Ray node gets the model's manifest.sig with it).")
@click.argument("sources", nargs=-1)
def cmd(model, out_dir, ray_address, workers, threads, seed, threshold, max_attempts, quiet, trusted_keys, sources):
    """Score every frame of many recordings: SOURCE is a frame folder, ROS bag, RealSense recording,
    a glob ('archive/2024-*/*.mcap') or @list.txt (one source per line).

    A rerun into the same OUT, with the same sources or others, skips the sources already complete
    there (same model, seed, threshold): each source keeps its results name in OUT. A rerun with
    another model, --seed or --threshold is refused (exit 2): finished results are never replaced.
    Exit status: 0 ok, 1 a source failed, 2 usage, 3 some frames were bad or lost (a recording cut short), 4 no scorable frame.
    """
    from edge_ad.batch.driver import BatchProgress, OutputBusy, ResultsConflict, exit_status, run_batch
    from edge_ad.batch.plan import PlanError, expand_sources, make_jobs, read_previous
    from edge_ad.batch.worker import manifest_sha256
    from edge_ad.runtime.manifest import ManifestError, load_manifest
    from edge_ad.runtime.signing import SigningError

    ray_address, sources = _ray_address(ray_address, sources)
    if not sources:
        raise click.UsageError("give at least one SOURCE (folder, recording, glob or @list.txt)")
    check_threshold(threshold)
    try:
        uris, problems = expand_sources(list(sources))
    except PlanError as e:
        raise click.UsageError(str(e))
    # a source already in OUT's summary.json keeps its name there, whatever the other sources
    jobs = make_jobs(uris, seed=seed, threshold=threshold, previous=read_previous(Path(out_dir)))
    # fault injection for the tests: EDGE_AD_BATCH_FAULT="crash:NAME:N" kills the worker that scores
    # source NAME after N frames, on its first attempt only (the retry must then complete it)
    fault = os.environ.get("EDGE_AD_BATCH_FAULT", "")
    if fault.startswith("crash:"):
        _, name, n = fault.split(":", 2)
        jobs = [j.__class__(**{**j.__dict__, "crash_after": int(n)}) if j.name == name else j for j in jobs]
    model_dir = Path(model)
    keys = [Path(k).read_bytes() for k in trusted_keys] or None     # PEM bytes: every worker checks them too
    try:
        load_manifest(model_dir, verify=True, trusted_keys=keys)   # a bad or untrusted model stops here, first
    except (ManifestError, SigningError) as e:
        raise click.ClickException(f"cannot load model {model_dir}: {e}")
    n_cpu = os.cpu_count() or 1
    if ray_address is None:
        from edge_ad.batch.local import LocalEngine
        n_workers = min(workers or n_cpu, max(1, len(jobs)))
        engine = LocalEngine(model_dir, n_workers, threads or max(1, n_cpu // n_workers), max_attempts,
                             trusted_keys=keys)
    else:
        from edge_ad.batch.ray_engine import RayEngine, import_ray
        try:
            import_ray()
        except ImportError as e:
            raise click.ClickException(str(e))
        engine = RayEngine(model_dir, ray_address, workers, threads or 1, max_attempts,
                           log=lambda m: click.echo(m, err=True), trusted_keys=keys)
    progress = BatchProgress(quiet=quiet)
    try:
        summary = run_batch(jobs, problems, Path(out_dir), engine, model_dir, manifest_sha256(model_dir), progress,
                            log=lambda m: click.echo(m, err=True))
    except ResultsConflict as e:   # another model / seed / threshold than OUT's finished results: refused
        progress.close()
        raise click.UsageError(str(e))
    except OutputBusy as e:        # another batch is writing OUT: refused before anything is read or written
        progress.close()
        raise click.ClickException(str(e))
    t = summary["totals"]
    resumed = sum(bool(e.get("resumed")) for e in summary["sources"])
    click.echo(f"batch ({summary['engine']}): {t['done']}/{t['sources']} sources done"
               + (f" ({resumed} already complete)" if resumed else "")
               + f", {t['failed']} failed, {t['frames']} frames scored, {t['anomalies']} anomalies, "
               f"{t['frame_errors']} bad frames"
               + (f", {t['no_frames']} source(s) gave no frames" if t.get("no_frames") else "")
               + f", {summary['wall_s']:.1f} s")
    if summary.get("interrupted"):
        left = [e for e in summary["sources"] if e["status"] in ("interrupted", "pending")]
        begun = [e for e in left if e["status"] == "interrupted"]
        click.echo(f"interrupted ({summary['interrupted']}): {len(left)} source(s) unfinished ("
                   f"{sum(int(e.get('frames') or 0) for e in begun)} frames scored, kept in *.partial); the same "
                   "command redoes them from their first frame", err=True)
    click.echo(f"results: {Path(out_dir) / 'summary.json'}")
    sys.exit(exit_status(summary))
