"""Signed models: an Ed25519 signature of manifest.json, checked against pinned public keys.

What is signed: the exact bytes of ``manifest.json``. The manifest holds the sha256 of every file the
runtime reads (graphs, weights, ONNX external data, ...: runtime/integrity.py), so a valid signature
covers the whole model; a file changed after signing fails its sha256 check, a changed manifest
fails the signature. The detached signature lives beside it in ``manifest.sig`` (JSON):

    {"format": "edge-ad-signature", "version": 1, "algorithm": "ed25519", "signed_file": "manifest.json",
     "manifest_sha256": "<hex>", "key_id": "<hex sha256 of the raw 32-byte public key>",
     "signature": "<base64 of the 64-byte Ed25519 signature of manifest.json's bytes>"}

Keys are standard PEM files, interchangeable with OpenSSL: a PKCS#8 private key (``edge-ad keygen``,
or ``openssl genpkey -algorithm ed25519 -out model-signing.key``) and its SubjectPublicKeyInfo public
key (``openssl pkey -in model-signing.key -pubout -out model-signing.pub``). An encrypted private key
is read with the passphrase in $EDGE_AD_KEY_PASSPHRASE.

Why not OpenSSF model-signing: its 1.1.1 release requires sigstore (with pydantic, tuf, requests,
securesystemslib, rfc3161-client, ...), in-toto-attestation and blake3: too heavy for the lean Jetson
runtime, while verifying here needs only ``cryptography`` (Ed25519, one signature per model).
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Iterable, Union

from .manifest import MANIFEST, ManifestError, loads_unique

SIGNATURE = "manifest.sig"
SIG_FORMAT = "edge-ad-signature"
SIG_VERSION = 1
PASSPHRASE_ENV = "EDGE_AD_KEY_PASSPHRASE"
_MAX_SIG_BYTES = 64 * 1024


class SigningError(ValueError):
    """A key that cannot be read or used (missing file, not Ed25519, wrong passphrase)."""


def _crypto():
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError as e:  # pragma: no cover - a base dependency
        raise SigningError("signed models need the 'cryptography' package (pip install cryptography)") from e
    return serialization, ed25519, InvalidSignature


def key_id(public_key) -> str:
    """Hex sha256 of the raw 32-byte Ed25519 public key: names a key in manifest.sig and messages."""
    serialization, _, _ = _crypto()
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def generate_key_pair(private_path: os.PathLike, public_path: os.PathLike) -> str:
    """Write a new Ed25519 key pair as PEM (private key readable by its owner only); returns its key id.
    Refuses to overwrite an existing file."""
    serialization, ed25519, _ = _crypto()
    private_path, public_path = Path(private_path), Path(public_path)
    for p in (private_path, public_path):
        if p.exists():
            raise SigningError(f"{p} exists; not overwriting a key")
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public_path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))
    return key_id(key.public_key())


def load_private_key(key):
    """An Ed25519 private key from a PEM file path (or an Ed25519PrivateKey, returned as is)."""
    serialization, ed25519, _ = _crypto()
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    try:
        data = Path(key).read_bytes()
    except OSError as e:
        raise SigningError(f"cannot read the signing key {key}: {e.strerror}") from None
    password = os.environ.get(PASSPHRASE_ENV)
    try:
        k = serialization.load_pem_private_key(data, password.encode() if password else None)
    except TypeError:
        raise SigningError(f"{key} is encrypted: put its passphrase in ${PASSPHRASE_ENV}") from None
    except ValueError as e:
        raise SigningError(f"{key} is not a PEM private key (or the passphrase is wrong): {e}") from None
    if not isinstance(k, ed25519.Ed25519PrivateKey):
        raise SigningError(f"{key} is a {type(k).__name__}; edge-ad signs with Ed25519 keys "
                           "(edge-ad keygen, or openssl genpkey -algorithm ed25519)")
    return k


PublicKeyLike = Union[str, os.PathLike, bytes, object]


def load_public_key(key: PublicKeyLike):
    """An Ed25519 public key from a PEM file path, PEM bytes, or an Ed25519PublicKey (returned as is)."""
    serialization, ed25519, _ = _crypto()
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    if isinstance(key, bytes):
        data, name = key, "public key"
    else:
        try:
            data, name = Path(key).read_bytes(), str(key)
        except OSError as e:
            raise SigningError(f"cannot read the trusted key {key}: {e.strerror}") from None
    try:
        k = serialization.load_pem_public_key(data)
    except ValueError as e:
        raise SigningError(f"{name} is not a PEM public key: {e}") from None
    if not isinstance(k, ed25519.Ed25519PublicKey):
        raise SigningError(f"{name} is a {type(k).__name__}; trusted keys are Ed25519 public keys")
    return k


def sign_model(model_dir: os.PathLike, private_key) -> dict:
    """Sign ``model_dir/manifest.json`` (after checking the directory as Scorer.load does: every
    file's sha256) and write ``manifest.sig``; returns the signature record."""
    from . import integrity
    from .manifest import load_manifest
    serialization, _, _ = _crypto()
    key = load_private_key(private_key)
    model_dir = Path(model_dir)
    load_manifest(model_dir, verify=True)
    raw = integrity.read_model_file(model_dir, MANIFEST)
    record = {"format": SIG_FORMAT, "version": SIG_VERSION, "algorithm": "ed25519", "signed_file": MANIFEST,
              "manifest_sha256": hashlib.sha256(raw).hexdigest(), "key_id": key_id(key.public_key()),
              "signature": base64.b64encode(key.sign(raw)).decode("ascii")}
    tmp = model_dir / (SIGNATURE + ".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, model_dir / SIGNATURE)
    return record


def verify_manifest_signature(model_dir: os.PathLike, manifest_bytes: bytes,
                              trusted_keys: Iterable[PublicKeyLike]) -> str:
    """Check that ``manifest_bytes`` (model_dir's manifest.json, as read) carry a valid signature in
    ``manifest.sig`` by one of ``trusted_keys``; returns the signing key's id. Raises ManifestError
    naming the problem: unsigned, signed by an untrusted key, or modified after signing."""
    from . import integrity
    _, _, InvalidSignature = _crypto()
    if isinstance(trusted_keys, (str, bytes, os.PathLike)):
        trusted_keys = [trusted_keys]
    try:
        keys = {key_id(k): k for k in (load_public_key(t) for t in trusted_keys)}
    except SigningError as e:
        raise ManifestError(str(e)) from None
    if not keys:
        raise ManifestError("no trusted key given: pass at least one public key (or None to skip the "
                            "signature check)")
    model_dir = Path(model_dir)
    if not os.path.lexists(model_dir / SIGNATURE):
        raise ManifestError(f"{model_dir}: {MANIFEST} is not signed ({SIGNATURE} missing); sign the model "
                            "with `edge-ad export --sign KEY` or `edge-ad sign DIR --key KEY`")
    raw = integrity.read_model_file(model_dir, SIGNATURE)
    try:
        if len(raw) > _MAX_SIG_BYTES:
            raise ValueError(f"{len(raw)} bytes")
        rec = loads_unique(raw)        # a duplicate key (two signatures, two key ids) is no valid record
        if not isinstance(rec, dict) or rec.get("format") != SIG_FORMAT or rec.get("version") != SIG_VERSION \
                or rec.get("algorithm") != "ed25519" or not isinstance(rec.get("key_id"), str):
            raise ValueError("not an edge-ad Ed25519 signature record")
        signature = base64.b64decode(rec["signature"], validate=True)
    except (ValueError, TypeError, KeyError) as e:
        raise ManifestError(f"{model_dir}: {SIGNATURE} is not a valid signature file ({e})") from None
    key = keys.get(rec["key_id"])
    if key is None:
        raise ManifestError(f"{model_dir}: {SIGNATURE} is signed by key {rec['key_id'][:16]}..., which is not "
                            f"a trusted key (trusted: {', '.join(k[:16] + '...' for k in keys)})")
    try:
        key.verify(signature, manifest_bytes)
    except InvalidSignature:
        raise ManifestError(f"{model_dir}: {MANIFEST} was modified after signing, or {SIGNATURE} was forged: "
                            f"its signature does not verify with trusted key {rec['key_id'][:16]}...") from None
    return rec["key_id"]
