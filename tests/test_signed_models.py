"""Signed models (issue 16): `edge-ad export --sign`, `Scorer.load(trusted_keys=...)`, `edge-ad run
--trusted-key`. A model signed by another key, unsigned, or modified after signing (any file,
manifest.json included) is refused naming the file."""
from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from edge_ad.runtime import Scorer
from edge_ad.runtime.manifest import ManifestError, sha256_file
from edge_ad.runtime.signing import SIGNATURE, generate_key_pair, sign_model


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """Two key pairs: {"a": (private, public), "b": (...)}."""
    d = tmp_path_factory.mktemp("keys")
    out = {}
    for name in ("a", "b"):
        generate_key_pair(d / f"{name}.key", d / f"{name}.pub")
        out[name] = (d / f"{name}.key", d / f"{name}.pub")
    return out


@pytest.fixture
def signed(export_tiny, keys, tmp_path):
    """A copy of the tiny export signed with key a."""
    d = tmp_path / "signed"
    shutil.copytree(export_tiny(1, 2), d)
    sign_model(d, keys["a"][0])
    return d


def _refused(d, needle, **kw):
    with pytest.raises(ManifestError, match=needle) as e:
        Scorer.load(d, variant="step", **kw)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_signed_model_loads_with_its_key_only(signed, keys):
    a_pub, b_pub = keys["a"][1], keys["b"][1]
    assert Scorer.load(signed, variant="step", trusted_keys=[a_pub]).n_seed == 2
    assert Scorer.load(signed, variant="step", trusted_keys=[b_pub, a_pub.read_bytes()]).n_seed == 2
    assert Scorer.load(signed, variant="step").n_seed == 2             # no keys given: no signature check
    _refused(signed, r"manifest.sig is signed by key [0-9a-f]{16}\.\.\., which is not a trusted key",
             trusted_keys=[b_pub])
    with pytest.raises(ValueError, match="no trusted key given"):
        Scorer.load(signed, variant="step", trusted_keys=[])


def test_unsigned_model_refused_when_keys_are_pinned(export_tiny, keys):
    _refused(export_tiny(1, 2), r"manifest.json is not signed \(manifest.sig missing\)", trusted_keys=[keys["a"][1]])


def test_modified_after_signing_refused_naming_the_file(signed, keys, tmp_path):
    trusted = {"trusted_keys": [keys["a"][1]]}
    # manifest.json edited (valid JSON, e.g. a lower threshold): the signature no longer verifies
    d = tmp_path / "m1"
    shutil.copytree(signed, d)
    man = json.loads((d / "manifest.json").read_text())
    man["threshold"] = {"value": 1e-6}
    (d / "manifest.json").write_text(json.dumps(man))
    _refused(d, r"manifest.json was modified after signing", **trusted)
    # a model file swapped and its sha256 updated in the manifest: the same
    d = tmp_path / "m2"
    shutil.copytree(signed, d)
    shutil.copy(d / "step_z.onnx", d / "step.onnx")
    man = json.loads((d / "manifest.json").read_text())
    man["files"]["step.onnx"] = sha256_file(d / "step.onnx")
    (d / "manifest.json").write_text(json.dumps(man))
    _refused(d, r"manifest.json was modified after signing", **trusted)
    # a model file changed, manifest untouched: its sha256 check names it
    d = tmp_path / "m3"
    shutil.copytree(signed, d)
    with open(d / "weights.npz", "r+b") as f:
        f.seek(200)
        f.write(b"\x00\x01\x02\x03")
    _refused(d, r"weights.npz has been modified or corrupted", **trusted)
    # the signature file itself re-signed by another (untrusted) key, or garbled
    d = tmp_path / "m4"
    shutil.copytree(signed, d)
    sign_model(d, keys["b"][0])
    _refused(d, r"which is not a trusted key", **trusted)
    (d / SIGNATURE).write_text("{not json")
    _refused(d, r"manifest.sig is not a valid signature file", **trusted)


def test_openssl_keys_interoperate(export_tiny, tmp_path):
    """Keys made with openssl (genpkey -algorithm ed25519 / pkey -pubout) sign and verify."""
    import subprocess
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl binary here")
    key, pub = tmp_path / "o.key", tmp_path / "o.pub"
    subprocess.run([openssl, "genpkey", "-algorithm", "ed25519", "-out", str(key)], check=True)
    subprocess.run([openssl, "pkey", "-in", str(key), "-pubout", "-out", str(pub)], check=True)
    d = tmp_path / "m"
    shutil.copytree(export_tiny(1, 2), d)
    sign_model(d, key)
    assert Scorer.load(d, variant="step", trusted_keys=[pub]).n_seed == 2


def test_cli_keygen_export_sign_run_trusted_key(tiny_generator, tmp_path):
    """edge-ad keygen -> edge-ad export --sign -> edge-ad verify / sign / run --trusted-key (right key:
    runs; another key: exit 1 naming the problem)."""
    from edge_ad.cli import main
    from edge_ad.models.checkpoint import save_checkpoint
    from edge_ad.runtime.preprocess import PreprocessSpec
    r = CliRunner()
    for name in ("k", "other"):
        res = r.invoke(main, ["keygen", "--out", str(tmp_path / name)])
        assert res.exit_code == 0, res.output
    assert (tmp_path / "k.key").stat().st_mode & 0o077 == 0               # private key: owner only
    res = r.invoke(main, ["keygen", "--out", str(tmp_path / "k")])
    assert res.exit_code == 1 and "not overwriting" in res.output
    ck = tmp_path / "g.pt"
    save_checkpoint(ck, tiny_generator, preprocess=PreprocessSpec())
    model = tmp_path / "model"
    res = r.invoke(main, ["export", str(ck), "--out", str(model), "--k", "1", "--n-seed", "2", "--no-parity",
                          "--sign", str(tmp_path / "k.key")])
    assert res.exit_code == 0, res.output
    assert (model / SIGNATURE).is_file()
    res = r.invoke(main, ["verify", str(model), "--trusted-key", str(tmp_path / "k.pub")])
    assert res.exit_code == 0 and "ok" in res.output, res.output
    res = r.invoke(main, ["verify", str(model), "--trusted-key", str(tmp_path / "other.pub")])
    assert res.exit_code == 1 and "not a trusted key" in res.output
    res = r.invoke(main, ["sign", str(model), "--key", str(tmp_path / "other.key")])     # re-signed by "other"
    assert res.exit_code == 0, res.output
    res = r.invoke(main, ["verify", str(model), "--trusted-key", str(tmp_path / "other.pub")])
    assert res.exit_code == 0, res.output
    res = r.invoke(main, ["sign", str(model), "--key", str(tmp_path / "k.key")])
    assert res.exit_code == 0, res.output
    run = ["run", "--model", str(model), "--source", "synth://?n=1", "--quiet"]
    res = r.invoke(main, run + ["--trusted-key", str(tmp_path / "k.pub")])
    assert res.exit_code == 0, res.output
    res = r.invoke(main, run + ["--trusted-key", str(tmp_path / "other.pub")])
    assert res.exit_code == 1 and "which is not a trusted key" in res.output, res.output
    # re-exporting unsigned into the same directory leaves no stale signature behind
    res = r.invoke(main, ["export", str(ck), "--out", str(model), "--k", "1", "--n-seed", "2", "--no-parity"])
    assert res.exit_code == 0 and not (model / SIGNATURE).exists()
    res = r.invoke(main, ["export", str(ck), "--out", str(tmp_path / "m2"), "--no-parity", "--sign", str(ck)])
    assert res.exit_code == 1 and "is not a PEM private key" in res.output
    assert not (tmp_path / "m2").exists()                                 # refused before exporting
