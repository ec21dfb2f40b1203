"""scripts/demo.sh reruns: each run without arguments writes a new results file and sheet under runs/
(runs/demo-<UTC time>.jsonl, .png), so a rerun after an update, whose demo model differs from the one
that wrote an earlier file, never fails on it, and no earlier results are overwritten.

The script runs in a copy of its layout whose .venv-runtime is a stand-in (pip a no-op, edge-ad this
interpreter's edge_ad), so no install is made; edge-ad run itself scores the 30 synth frames."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def demo_layout(root: Path) -> Path:
    (root / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "demo.sh", root / "scripts" / "demo.sh")
    bin_ = root / ".venv-runtime" / "bin"
    bin_.mkdir(parents=True)
    (bin_ / "python").symlink_to(sys.executable)
    (bin_ / "pip").write_text("#!/bin/sh\nexit 0\n")
    (bin_ / "edge-ad").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m edge_ad "$@"\n')
    for f in ("pip", "edge-ad"):
        (bin_ / f).chmod(0o755)
    return root


def run_demo(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(["bash", str(root / "scripts" / "demo.sh")], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_rerun_writes_new_results_and_never_fails_on_an_earlier_file(tmp_path):
    root = demo_layout(tmp_path / "checkout")
    (root / "runs").mkdir()
    # what an earlier demo model left (another model's identity): must neither block nor be touched
    old = root / "runs" / "demo-results.jsonl"
    old.write_text(json.dumps({"frame": 0, "model": {"path": "/old", "manifest_sha256": "0" * 64,
                                                     "configuration": "old", "config_sha256": "1" * 64}}) + "\n")
    before = old.read_text()
    outs = []
    for _ in range(2):
        r = run_demo(root)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        new = sorted(set(root.glob("runs/demo-*.jsonl")) - {old} - set(outs))
        assert len(new) == 1, new
        outs += new
        assert str(new[0].relative_to(root)) in r.stdout               # the script names it
        lines = [json.loads(x) for x in new[0].read_text().splitlines()]
        assert sum("score" in x for x in lines) == 30, lines[-1]
        assert new[0].with_suffix(".png").stat().st_size > 0
    assert outs[0] != outs[1]
    assert old.read_text() == before
