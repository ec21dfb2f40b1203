"""``edge-ad verify MODEL_DIR [--trusted-key PUB]...``: check a model directory as `edge-ad run` would."""
from __future__ import annotations

import click


@click.command("verify")
@click.argument("model_dir", type=click.Path(file_okay=False))
@click.option("--trusted-key", "trusted_keys", multiple=True, type=click.Path(dir_okay=False, exists=True),
              help="Ed25519 public key (PEM); repeatable. With it the model must be signed by one of them.")
def cmd(model_dir, trusted_keys):
    """Check the manifest, every file's sha256 (no symlinks, ONNX external data included) and, with
    --trusted-key, the signature. Exit 0 when the model would load, 1 with the reason otherwise."""
    from edge_ad.runtime.manifest import load_manifest
    try:
        load_manifest(model_dir, verify=True, trusted_keys=list(trusted_keys) or None)
    except ValueError as e:                     # ManifestError
        raise click.ClickException(str(e))
    click.echo(f"{model_dir}: ok" + (" (signed by a trusted key)" if trusted_keys else ""))
