"""``edge-ad verify MODEL_DIR [--trusted-key PUB]...``: check a model directory as `edge-ad run` would."""
from __future__ import annotations

from pathlib import Path

import click


@click.command("verify")
@click.argument("model_dir", type=click.Path(file_okay=False))
@click.option("--trusted-key", "trusted_keys", multiple=True, type=click.Path(dir_okay=False, exists=True),
              help="Ed25519 public key (PEM); repeatable. With it the model must be signed by one of them.")
def cmd(model_dir, trusted_keys):
    """Check the manifest's entries, every file against the manifest's sha256 list (no symlinks, ONNX
    external data included) and, with --trusted-key, the signature, which alone covers manifest.json's
    own content (threshold, settings). Exit 0 when the model would load, 1 with the reason otherwise;
    the line says what was checked."""
    from edge_ad.runtime.manifest import load_manifest
    from edge_ad.runtime.signing import SIGNATURE
    try:
        load_manifest(model_dir, verify=True, trusted_keys=list(trusted_keys) or None)
    except ValueError as e:                     # ManifestError
        raise click.ClickException(str(e))
    files = "ok: every file matches manifest.json's sha256 list"
    if trusted_keys:
        click.echo(f"{model_dir}: {files}; manifest.json signed by a trusted key (its content checked too)")
    elif (Path(model_dir) / SIGNATURE).exists():
        click.echo(f"{model_dir}: {files}; manifest.json's own content (threshold, settings) NOT checked: "
                   f"{SIGNATURE} is there, check it with --trusted-key KEY.pub")
    else:
        click.echo(f"{model_dir}: {files}; manifest.json is unsigned, so its own content (threshold, settings) "
                   "is NOT checked: sign it with `edge-ad sign DIR --key KEY` and verify with --trusted-key KEY.pub")
