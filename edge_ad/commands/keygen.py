"""``edge-ad keygen --out PREFIX``: an Ed25519 key pair for signing models (PREFIX.key, PREFIX.pub)."""
from __future__ import annotations

import click


@click.command("keygen")
@click.option("--out", "prefix", required=True, metavar="PREFIX",
              help="Writes PREFIX.key (private, mode 0600: keep it off the robot) and PREFIX.pub (public).")
def cmd(prefix):
    """Create a key pair for signed models: `edge-ad export --sign PREFIX.key` signs an export,
    `edge-ad run --trusted-key PREFIX.pub` accepts only models it signed. Standard PEM files
    (the same as `openssl genpkey -algorithm ed25519`)."""
    from edge_ad.runtime.signing import SigningError, generate_key_pair
    try:
        kid = generate_key_pair(f"{prefix}.key", f"{prefix}.pub")
    except (SigningError, OSError) as e:
        raise click.ClickException(str(e))
    click.echo(f"private key: {prefix}.key (keep it secret)\npublic key:  {prefix}.pub (copy it to the robots)\n"
               f"key id:      {kid}")
