"""``manifest.json`` of an exported model directory: reading it and refusing anything tampered.

NumPy-free and torch-free. The exporter (``edge_ad.export.exporter``) writes it; ``Scorer.load``
reads it through ``load_manifest``, which checks the format version and the sha256 of every file.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

FORMAT = "edge-ad-model"
VERSION = 1
MANIFEST = "manifest.json"


class ManifestError(ValueError):
    """A model directory that is missing, tampered with, or of an unsupported format."""


def sha256_file(path: os.PathLike, bufsize: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(bufsize)
            if not chunk:
                break
            h.update(chunk)
    return h.hexdigest()


def load_manifest(model_dir: os.PathLike, verify: bool = True) -> dict:
    """Read ``model_dir/manifest.json``; with ``verify``, check version and every file's sha256.

    Raises ManifestError naming the problem (missing directory/manifest/file, hash mismatch,
    unsupported version, failed export parity).
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ManifestError(f"model directory not found: {model_dir}")
    mpath = model_dir / MANIFEST
    if not mpath.is_file():
        raise ManifestError(f"{model_dir} is not an exported edge-ad model: {MANIFEST} missing "
                            "(create one with `edge-ad export CHECKPOINT --out DIR`)")
    try:
        man = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ManifestError(f"{mpath}: not valid JSON ({e})") from None
    if not isinstance(man, dict) or man.get("format") != FORMAT:
        raise ManifestError(f"{mpath}: not an edge-ad model manifest (format {man.get('format') if isinstance(man, dict) else None!r})")
    if man.get("version") != VERSION:
        raise ManifestError(f"{mpath}: manifest version {man.get('version')!r} is not supported "
                            f"(this edge-ad reads version {VERSION}); re-export the model")
    for key in ("files", "graphs", "model", "search", "preprocess", "layout"):
        if key not in man:
            raise ManifestError(f"{mpath}: required entry {key!r} missing")
    if not verify:
        return man
    files = man["files"]
    for g in man["graphs"].values():
        if g["file"] not in files:
            raise ManifestError(f"{mpath}: graph file {g['file']} has no sha256 entry")
    if man["layout"].get("weights") not in files:
        raise ManifestError(f"{mpath}: weights file has no sha256 entry")
    for name, digest in files.items():
        p = model_dir / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise ManifestError(f"{mpath}: file entry {name!r} points outside the model directory")
        if not p.is_file():
            raise ManifestError(f"{model_dir}: file {name} listed in the manifest is missing")
        actual = sha256_file(p)
        if actual != digest:
            raise ManifestError(f"{model_dir}: {name} has been modified or corrupted "
                                f"(sha256 {actual[:16]}..., manifest says {digest[:16]}...)")
    parity = man.get("parity") or {}
    if parity.get("passed") is False:
        raise ManifestError(f"{model_dir}: this export failed its parity check against the PyTorch "
                            f"reference ({parity.get('summary', 'see manifest parity report')}); "
                            "it must not be used for scoring")
    return man
