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


# The torch-free commands of the robot's lean install and the batch engine: every import they make,
# at module level or inside a function (a lazy import only runs on the path that needs it, e.g.
# --save-anomalies), must stay out of torch and the workstation packages.
REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
LEAN_COMMANDS = ("run", "batch", "calibrate", "verify", "sign", "keygen", "build_engine")
FORBIDDEN = ("torch", "torchvision", "edge_ad.models", "edge_ad.export", "edge_ad.benchmarks",
             *(f"edge_ad.commands.{c}" for c in ("evaluate", "export", "train", "trace", "bench")))


def lean_files() -> list:
    files = [REPO / "edge_ad" / "cli.py"]
    files += [REPO / "edge_ad" / "commands" / f"{c}.py" for c in LEAN_COMMANDS
              if (REPO / "edge_ad" / "commands" / f"{c}.py").exists()]
    files += sorted((REPO / "edge_ad" / "batch").glob("*.py"))
    return files


def imported_modules(path, package: str = None) -> set:
    """Every module ``path`` imports anywhere (functions included): import / from-import statements
    (relative ones resolved against the edge_ad package they sit in) and importlib.import_module /
    __import__ calls with a literal name. ``package``: the file's package (default: from its path)."""
    import ast
    package = package or ".".join(path.relative_to(REPO).parts[:-1])   # edge_ad, edge_ad.commands, ...
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)       # from edge_ad import models
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", None)
            if name in ("import_module", "__import__"):
                out.add(node.args[0].value)
    return out


def forbidden_imports(files, package: str = None) -> list:
    return sorted((p.name, m) for p in files for m in imported_modules(p, package)
                  if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))


def test_lean_commands_and_batch_never_import_torch_even_lazily():
    files = lean_files()
    assert {p.name for p in files} >= {"cli.py", "run.py", "batch.py", "driver.py", "worker.py", "local.py"}
    assert forbidden_imports(files) == []


def test_the_scan_finds_a_lazy_torch_import(tmp_path):
    """The scan sees an ``import torch`` inside a function (here edge-ad run's load_z0(), the --z0
    path) and a relative import of the workstation packages."""
    src = (REPO / "edge_ad" / "commands" / "run.py").read_text(encoding="utf-8")
    marker = "def load_z0(path: str, n_seed: int, z_dim: int) -> np.ndarray:\n"
    assert marker in src
    planted = tmp_path / "run.py"
    planted.write_text(src.replace(marker, marker + "    import torch  # noqa\n"), encoding="utf-8")
    assert forbidden_imports([planted], "edge_ad.commands") == [("run.py", "torch")]
    planted.write_text("def f():\n    from ..export import exporter\n", encoding="utf-8")
    assert ("run.py", "edge_ad.export") in forbidden_imports([planted], "edge_ad.commands")


def test_run_with_pictures_runs_with_torch_blocked(tmp_path):
    """``edge-ad run --save-anomalies --sheet`` on the shipped demo model, in a process where any
    import of torch fails (and is recorded): every frame scored, pictures and sheet written, and no
    import of torch was even attempted (a hook's ImportError would otherwise be a hook_failed event)."""
    code = textwrap.dedent("""
        import importlib.abc, json, sys
        tried = []
        class BlockTorch(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] in ("torch", "torchvision"):
                    tried.append(name)
                    raise ImportError("torch is blocked in this test: " + name)
        sys.meta_path.insert(0, BlockTorch())
        from edge_ad.cli import main
        try:
            main(["run", "--source", "synth://?n=3&anomaly_rate=0.5&seed=2", "--threshold", "1e-9",
                  "--save-anomalies", "anom", "--sheet", "sheet.png", "--out", "r.jsonl", "-q"])
        except SystemExit as e:
            code = e.code
        print(json.dumps({"exit": code, "tried": tried}))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    import json
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got == {"exit": 0, "tried": []}, r.stdout + r.stderr
    lines = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert sum(x["type"] == "frame" for x in lines) == 3 and not any(x.get("event") == "hook_failed" for x in lines)
    assert len(list((tmp_path / "anom").glob("*.png"))) == 3 * 5 and (tmp_path / "sheet.png").stat().st_size > 0
