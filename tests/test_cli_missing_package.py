"""In the lean install (no torch), `edge-ad export / eval / train / bench` say in one line which package
is missing and how to install it, exit 1 (audit 17 #5): their modules import fine and import torch while
the command runs, which the import-time guard of ``LazyGroup.get_command`` never saw (a 26-line
ModuleNotFoundError traceback). Simulated in-process: ``sys.modules["torch"] = None`` makes ``import torch``
raise ModuleNotFoundError, and the modules that already hold torch are dropped for the test."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge_ad.cli import main

REPO = Path(__file__).resolve().parents[1]
CKPT = str(REPO / "models" / "kinect-rgbd" / "rectangle.pt")


@pytest.fixture
def no_torch(monkeypatch):
    for name in list(sys.modules):
        if name == "torch" or name.startswith(("torch.", "edge_ad.models", "edge_ad.export")):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "torch", None)


@pytest.mark.parametrize("argv", [
    ["export", CKPT, "--out", "{tmp}/x"],
    ["eval", "--model", CKPT, "--synth", "3", "--out", "{tmp}/y"],
    ["train", "--data", "{tmp}", "--out", "{tmp}/z"],
    ["bench", CKPT],
])
def test_a_missing_training_package_is_one_line(no_torch, tmp_path, argv):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    res = CliRunner().invoke(main, argv)
    assert res.exit_code == 1, (res.output, res.exception)
    assert not isinstance(res.exception, ModuleNotFoundError), res.exception
    lines = res.output.strip().splitlines()
    assert lines == [f"Error: 'edge-ad {argv[0]}' needs the Python package 'torch', which is not installed. "
                     "Install the workstation extra: pip install 'edge-ad[train]'"], res.output


def test_a_missing_module_of_edge_ad_itself_still_raises(monkeypatch):
    """Only the training packages are turned into the install hint: a bug stays a traceback."""
    import click

    @click.command("run")
    def broken():
        import edge_ad.no_such_module  # noqa: F401

    monkeypatch.setattr(type(main), "get_command", lambda self, ctx, name: broken)
    res = CliRunner().invoke(main, ["run"])
    assert isinstance(res.exception, ModuleNotFoundError)


def test_no_onnxruntime_at_all_names_both_extras(monkeypatch, tmp_path):
    """Audit 28 #22: the base install carries no onnxruntime (PyPI's onnxruntime and onnxruntime-gpu share one
    module: extras `cpu` / `gpu`), so an install with neither is possible. Scoring then stops with one line
    naming both extras, for the Python API (ModuleNotFoundError naming onnxruntime, as an import would) and for
    `edge-ad run` (exit 1, nothing written), not "No module named 'onnxruntime'"."""
    from edge_ad.runtime import Scorer, demo_model_dir
    from edge_ad.runtime.backends.onnxruntime_backend import INSTALL_ONNXRUNTIME
    monkeypatch.setitem(sys.modules, "onnxruntime", None)          # `import onnxruntime` fails as when absent
    assert "pip install 'edge-ad[cpu]'" in INSTALL_ONNXRUNTIME and "'edge-ad[gpu]'" in INSTALL_ONNXRUNTIME
    with pytest.raises(ModuleNotFoundError) as e:
        Scorer.load(demo_model_dir())
    assert e.value.name == "onnxruntime"
    assert str(e.value) == f"edge-ad scores with onnxruntime, which is not installed: {INSTALL_ONNXRUNTIME}"
    out = tmp_path / "r.jsonl"
    res = CliRunner().invoke(main, ["run", "--max-frames", "2", "--out", str(out)])
    assert res.exit_code == 1, (res.output, res.exception)
    assert res.output.strip().splitlines()[-1].endswith(f"which is not installed: {INSTALL_ONNXRUNTIME}"), res.output
    assert not out.exists()
    # a command whose module imports onnxruntime itself gets the same advice, not the training extra's
    from edge_ad.cli import missing_package_message
    assert missing_package_message("export", "onnxruntime") == (
        "'edge-ad export' needs the Python package 'onnxruntime', which is not installed. "
        f"Install one: {INSTALL_ONNXRUNTIME}")
