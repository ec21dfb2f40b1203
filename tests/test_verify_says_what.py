"""`edge-ad verify` says what it checked (audit 17 #6): an unsigned model whose manifest.json was edited
(its threshold) verified as a bare "ok", which read as if the manifest itself were checked. The sha256
list protects the files; only a signature covers manifest.json's content. Exit codes unchanged."""
from __future__ import annotations

import json
import shutil

from click.testing import CliRunner

from edge_ad.cli import main
from edge_ad.runtime.signing import generate_key_pair, sign_model


def test_verify_names_what_it_checked(tmp_path, export_tiny):
    model = tmp_path / "m"
    shutil.copytree(export_tiny(0, 2), model)
    man = json.loads((model / "manifest.json").read_text())
    man["threshold"] = {**(man.get("threshold") or {}), "value": 1e9}      # edited, unsigned: still loads
    (model / "manifest.json").write_text(json.dumps(man))
    r = CliRunner()
    res = r.invoke(main, ["verify", str(model)])
    assert res.exit_code == 0, res.output
    assert "every file matches manifest.json's sha256 list" in res.output
    assert "unsigned" in res.output and "range-checked but NOT authenticated" in res.output and "edge-ad sign" in res.output
    generate_key_pair(tmp_path / "k.key", tmp_path / "k.pub")
    sign_model(model, tmp_path / "k.key")
    res = r.invoke(main, ["verify", str(model)])                           # signed, no key given
    assert res.exit_code == 0 and "NOT authenticated" in res.output and "--trusted-key" in res.output, res.output
    res = r.invoke(main, ["verify", str(model), "--trusted-key", str(tmp_path / "k.pub")])
    first = res.output.splitlines()[0]                  # the notes below it (audit 28 #13) may say NOT checked
    assert res.exit_code == 0 and "signed by a trusted key" in first and "NOT" not in first, res.output
    man["threshold"]["value"] = 2e9                                        # edited after signing: refused
    (model / "manifest.json").write_text(json.dumps(man))
    res = r.invoke(main, ["verify", str(model), "--trusted-key", str(tmp_path / "k.pub")])
    assert res.exit_code == 1, res.output
