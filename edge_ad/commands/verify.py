"""``edge-ad verify MODEL_DIR [--trusted-key PUB]...``: check a model directory as `edge-ad run` would."""
from __future__ import annotations

from pathlib import Path

import click


@click.command("verify")
@click.argument("model_dir", type=click.Path(file_okay=False))
@click.option("--trusted-key", "trusted_keys", multiple=True, type=click.Path(dir_okay=False, exists=True),
              help="Ed25519 public key (PEM); repeatable. With it the model must be signed by one of them.")
def cmd(model_dir, trusted_keys):
    """Load the model as `edge-ad run` does (onnxruntime, default providers): the manifest's entries, every
    file against the manifest's sha256 list (no symlinks, ONNX external data included), the arrays' shapes,
    dtypes and values, the graphs, the settings' ranges and, with --trusted-key, the signature, which alone
    authenticates manifest.json's own content (threshold, settings). Exit 0 when the model loads, 1 with
    Scorer.load's one-line reason otherwise; the ok line says what was checked."""
    from edge_ad.runtime import Scorer
    from edge_ad.runtime.manifest import parity_note
    from edge_ad.runtime.scorer import threshold_dropped
    from edge_ad.runtime.signing import SIGNATURE
    try:
        with Scorer.load(model_dir, threads=1, trusted_keys=list(trusted_keys) or None) as scorer:
            notes = [parity_note(scorer.manifest)]
            dropped = threshold_dropped(scorer.manifest, scorer.config)    # it has one, for other settings
            if scorer.threshold is None and dropped:
                notes.append(f"no threshold: {dropped}; edge-ad run scores but flags no frame")
            elif scorer.threshold is None:
                notes.append("no threshold: edge-ad run scores but flags no frame (set one with edge-ad eval "
                             "--calibrate-fpr and export --threshold-file, or edge-ad calibrate)")
    except ValueError as e:                     # ManifestError
        raise click.ClickException(str(e))
    except ImportError as e:                    # onnxruntime missing or broken
        raise click.ClickException(f"cannot load {model_dir} with onnxruntime: {e}")
    files = ("ok: loads as `edge-ad run` loads it (every file matches manifest.json's sha256 list; arrays, "
             "graphs and settings checked)")
    if trusted_keys:
        click.echo(f"{model_dir}: {files}; manifest.json signed by a trusted key (its content authenticated too)")
    elif (Path(model_dir) / SIGNATURE).exists():
        click.echo(f"{model_dir}: {files}; manifest.json's own content (threshold, settings) is range-checked but "
                   f"NOT authenticated: {SIGNATURE} is there, check it with --trusted-key KEY.pub")
    else:
        click.echo(f"{model_dir}: {files}; manifest.json is unsigned, so its own content (threshold, settings) "
                   "is range-checked but NOT authenticated: sign it with `edge-ad sign DIR --key KEY` and verify "
                   "with --trusted-key KEY.pub")
    for note in filter(None, notes):            # what an ok model still does not do as one may expect
        click.echo(f"note: {note}")
