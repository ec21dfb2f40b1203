"""edge_ad.runtime must never import torch, so it installs lean on a Jetson."""
import subprocess
import sys
import textwrap


def test_runtime_and_run_command_do_not_import_torch():
    code = textwrap.dedent("""
        import importlib, pkgutil, sys
        import edge_ad.runtime
        mods = []
        for m in pkgutil.walk_packages(edge_ad.runtime.__path__, "edge_ad.runtime."):
            try:
                importlib.import_module(m.name)
            except ImportError as e:  # optional device libraries (tensorrt, cuda, rclpy) may be absent
                if "torch" in str(e):
                    raise
            mods.append(m.name)
        from edge_ad.cli import main
        cmd = main.get_command(None, "run")
        assert cmd is not None and cmd.name == "run"
        bad = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
        print(len(mods), bad)
        assert not bad, bad
        assert "edge_ad.runtime.preprocess" in mods and "edge_ad.runtime.sources.folder" in mods
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
