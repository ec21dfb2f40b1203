"""``edge-ad sign MODEL_DIR --key KEY``: sign an exported model (writes MODEL_DIR/manifest.sig)."""
from __future__ import annotations

import click


@click.command("sign")
@click.argument("model_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--key", required=True, type=click.Path(dir_okay=False, exists=True),
              help="Ed25519 private key (PEM; `edge-ad keygen`). Encrypted keys: passphrase in $EDGE_AD_KEY_PASSPHRASE.")
def cmd(model_dir, key):
    """Sign an exported model directory after checking every file's sha256 (the signature covers
    manifest.json, which holds them all)."""
    from edge_ad.runtime.signing import SigningError, sign_model
    try:
        rec = sign_model(model_dir, key)
    except (SigningError, ValueError) as e:   # ManifestError is a ValueError
        raise click.ClickException(str(e))
    click.echo(f"signed {model_dir} with key {rec['key_id']}")
