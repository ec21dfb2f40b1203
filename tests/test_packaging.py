"""Packaging and layering: the runtime wheel ships the demo export but no training checkpoint, and the
packages import in one direction (runtime/ is the base; models/ and export/ build on it; jetson/ on top)."""
from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAX_WHEEL_BYTES = 10 * 1024 * 1024


def _checkout_files() -> list:
    """The checkout's files (tracked and untracked, not ignored), relative paths; outside git (the copy
    scripts/mutants.py tests, which holds only those): every file but bytecode caches."""
    r = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True)
    if r.returncode == 0:
        return [f for f in r.stdout.decode().split("\0") if f]
    return [str((Path(root) / f).relative_to(REPO)) for root, dirs, files in os.walk(REPO)
            for f in files if "__pycache__" not in Path(root).parts]


def _source_tree(dst: Path, only=None) -> Path:
    """The checkout's files (tracked and untracked, not ignored) copied to ``dst``: a clean build with no
    stale build/ or egg-info of an editable install; with ``only`` (top-level paths), just those."""
    for f in _checkout_files():
        src = REPO / f
        if only is not None and Path(f).parts[0] not in only:
            continue
        if src.is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / f)
    return dst


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from what jetson/Dockerfile's wheel stage copies (audit 33 #6: the image's build failed on
    a package folder it did not copy), i.e. the wheel the image installs."""
    from test_jetson import wheel_stage_sources
    src = _source_tree(tmp_path_factory.mktemp("src"), only=set(wheel_stage_sources()))
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "--disable-pip-version-check", "-w", str(out), str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    shutil.rmtree(src)    # 80 MB (the checkpoints too): the tests read only the wheel
    (whl,) = out.glob("edge_ad-*.whl")
    return whl


def test_the_checkpoints_stay_in_the_checkout(wheel):
    # the checkpoints training, eval and export read are in the checkout, and not in the wheel
    assert sorted(p.name for p in (REPO / "models" / "kinect-rgbd").glob("*.pt")) == \
        ["cylinder.pt", "rectangle.pt", "sphere.pt"]
    assert (REPO / "models" / "demo" / "demo.pt").is_file()
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.endswith((".pt", ".pth", ".ckpt"))]
    assert wheel.stat().st_size <= MAX_WHEEL_BYTES, f"{wheel.name}: {wheel.stat().st_size / 2**20:.1f} MiB"


def test_the_demo_export_ships_inside_the_runtime_package(wheel):
    from edge_ad.runtime import demo_model_dir
    assert demo_model_dir() == REPO / "runtime" / "demo"
    z = zipfile.ZipFile(wheel)
    man = json.loads(z.read("edge_ad/runtime/demo/manifest.json"))
    for name in man["files"]:                                  # every file the manifest checksums
        assert f"edge_ad/runtime/demo/{name}" in z.namelist(), name
    shipped = {n.split("/", 3)[3] for n in z.namelist() if n.startswith("edge_ad/runtime/demo/")}
    assert shipped == set(man["files"]) | {"manifest.json"}    # and nothing else


def _package_modules() -> list:
    """(checkout path, path in the wheel) of every tracked module of an edge_ad package: the .py files of each
    folder of edge_ad/, runtime/, export/, models/, jetson/, benchmarks/ that is a package (an __init__.py
    there and in each folder above it), runtime/... shipped as edge_ad/runtime/... (pyproject's package-dir)."""
    out = []
    for f in _checkout_files():
        parts = Path(f).parts
        if parts[0] not in ("edge_ad", "runtime", "export", "models", "jetson", "benchmarks") or \
                not f.endswith(".py") or not (REPO / f).is_file():
            continue
        if all((REPO / Path(*parts[:i]) / "__init__.py").is_file() for i in range(1, len(parts))):
            out.append((f, f if parts[0] == "edge_ad" else f"edge_ad/{f}"))
    return out


def test_the_wheel_ships_every_module_and_its_commands_run(wheel, tmp_path):
    """Audit 28 #2: pyproject's package list lacked edge_ad.commands, so a non-editable install (the wheel:
    jetson/install.sh, the Dockerfile, pip install .) had no command at all ("No such command 'run'") while
    `edge-ad --help` exited 0. Every package module is in the wheel, and the wheel's own edge-ad (unpacked,
    first on the path) lists and runs its commands."""
    from edge_ad.cli import COMMANDS
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = _package_modules()
    assert {f"edge_ad/commands/{m}.py" for m in COMMANDS.values()} <= {w for _, w in modules}
    assert [f for f, w in modules if w not in names] == []
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"), PYTHONDONTWRITEBYTECODE="1")
    probe = subprocess.run([sys.executable, "-c", "import edge_ad.cli as c; print(c.__file__)"], cwd=tmp_path,
                           env=env, capture_output=True, text=True)
    assert probe.stdout.startswith(str(tmp_path / "site")), probe.stdout + probe.stderr   # the wheel's code
    r = subprocess.run([sys.executable, "-m", "edge_ad", "--help"], cwd=tmp_path, env=env, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    listed = r.stdout.split("Commands:")[1].split()
    assert set(COMMANDS) <= set(listed), r.stdout
    r = subprocess.run([sys.executable, "-m", "edge_ad", "run", "--help"], cwd=tmp_path, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0 and "--source" in r.stdout, r.stdout + r.stderr


def test_a_command_module_missing_from_the_install_is_named_not_no_such_command(monkeypatch):
    """A broken install (a command's module absent) said "No such command 'run'": now one line naming the
    missing module and the fix, exit 1, also for `edge-ad --help` (the Dockerfile's build check)."""
    from click.testing import CliRunner

    from edge_ad import cli
    monkeypatch.setitem(cli.COMMANDS, "run", "no_such_module")
    for args in (["run", "--help"], ["--help"]):
        res = CliRunner().invoke(cli.main, args)
        assert res.exit_code == 1, res.output
        assert res.output.strip() == ("Error: 'edge-ad run': this install of edge-ad lacks its command module "
                                      "edge_ad.commands.no_such_module; reinstall edge-ad (pip install "
                                      "--force-reinstall --no-deps edge-ad, or the wheel / checkout)"), res.output


ONNXRUNTIMES = {"onnxruntime", "onnxruntime-gpu"}      # PyPI's two distributions of the one module `onnxruntime`


def _dist_names(extras: tuple) -> set:
    """The distributions (normalised names) that `pip install 'edge-ad[EXTRAS]'` asks for: pyproject's base
    dependencies plus each extra's, an `edge-ad[...]` entry (dev's) expanded to its extras."""
    import tomllib
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names, todo, seen = set(), list(extras), set()
    for req in project["dependencies"]:
        names.add(re.match(r"[A-Za-z0-9._-]+", req).group(0).lower().replace("_", "-"))
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for req in project["optional-dependencies"][extra]:
            m = re.match(r"([A-Za-z0-9._-]+)\s*(?:\[([^\]]*)\])?", req)
            name = m.group(1).lower().replace("_", "-")
            if name == "edge-ad":
                todo += [e.strip() for e in (m.group(2) or "").split(",") if e.strip()]
            else:
                names.add(name)
    return names


def test_every_install_gets_one_onnxruntime():
    """Audit 28 #22: the base dependencies carried PyPI's onnxruntime and the `gpu` extra onnxruntime-gpu, so
    `pip install 'edge-ad[gpu]'` (what jetson/install.sh told PC users) installed both: one module, whichever
    installed last owns its files, and the CUDA provider goes missing (onnxruntime#26996; resolved against PyPI:
    onnxruntime 1.32.0 + onnxruntime-gpu 1.31.1). Now the base carries neither and `cpu` / `gpu` one each; no
    extra gives both; the documented installs (the demo's lean runtime, the tests' dev) get exactly one, the
    demo's without torch."""
    import tomllib
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert _dist_names(()) & ONNXRUNTIMES == set()
    assert _dist_names(("cpu",)) & ONNXRUNTIMES == {"onnxruntime"}
    assert _dist_names(("gpu",)) & ONNXRUNTIMES == {"onnxruntime-gpu"}
    assert [e for e in extras if len(_dist_names((e,)) & ONNXRUNTIMES) > 1] == []
    for script, lean in (("scripts/demo.sh", True), ("scripts/test.sh", False)):
        (line,) = [ln for ln in (REPO / script).read_text().splitlines() if "pip install" in ln]
        m = re.search(r' -e "?\.(?:\[([^\]]*)\])?"?', line)
        assert m, (script, line)
        asked = tuple(e.strip() for e in (m.group(1) or "").split(",") if e.strip())
        names = _dist_names(asked)
        assert len(names & ONNXRUNTIMES) == 1, (script, line, sorted(names & ONNXRUNTIMES))
        assert ("torch" not in names) is lean, (script, line)


def _imports(path: Path) -> set:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:                                     # relative: resolve against the package
                pkg = ["edge_ad", {"runtime": "runtime", "export": "export", "models": "models",
                                   "jetson": "jetson"}.get(path.relative_to(REPO).parts[0], "")]
                parts = list(path.relative_to(REPO).parts[1:-1])
                base = pkg + parts[:len(parts) - (node.level - 1)] if node.level > 1 else pkg + parts
                mod = ".".join(base + ([mod] if mod else []))
            out.add(mod)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


@pytest.mark.parametrize("package, forbidden", [
    ("runtime", ("edge_ad.models", "edge_ad.export", "edge_ad.jetson", "edge_ad.commands", "edge_ad.cli",
                 "edge_ad.batch", "edge_ad.benchmarks", "torch")),
    ("export", ("edge_ad.jetson", "edge_ad.commands", "edge_ad.cli")),
    ("models", ("edge_ad.export", "edge_ad.jetson", "edge_ad.commands", "edge_ad.cli")),
    ("jetson", ("edge_ad.commands", "edge_ad.cli", "torch")),
])
def test_layering(package, forbidden):
    bad = [(str(p.relative_to(REPO)), m) for p in (REPO / package).rglob("*.py")
           for m in _imports(p) if any(m == f or m.startswith(f + ".") for f in forbidden)]
    assert not bad, bad


def test_the_demo_manifest_checksums_the_tracked_files():
    """runtime/demo/manifest.json names the sha256 of each file it lists and of the checkpoint it was
    exported from (models/demo/demo.pt): each equals the tracked file's, so a re-released demo.pt or a
    re-exported graph without its manifest updated is caught."""
    import hashlib
    man = json.loads((REPO / "runtime" / "demo" / "manifest.json").read_text())

    def sha(p: Path) -> str:
        return hashlib.sha256(p.read_bytes()).hexdigest()
    assert man["files"], "the demo manifest lists no files"
    for name, want in man["files"].items():
        assert sha(REPO / "runtime" / "demo" / name) == want, name
    assert man["source"]["file"] == "demo.pt"
    assert sha(REPO / "models" / "demo" / "demo.pt") == man["source"]["sha256"]


def test_the_export_install_step_is_pure_python():
    """export/install.py (output-directory safety, atomic install) imports neither torch nor onnx, so
    torch-free callers (calibrate) can use it: checked in a fresh interpreter, with everything it imports."""
    code = ("import sys, edge_ad.export.install as m; "
            "bad = sorted(n for n in sys.modules if n.split('.')[0] in ('torch', 'onnx')); "
            "assert not bad, bad; assert callable(m.build_and_install)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("package", ["models", "export"])
def test_every_module_has_an_importer(package):
    """No dead module on the workstation side (models/functional.py had no importer, test or script since
    the skeleton commit): each module of models/ and export/ is imported by some other file of the checkout
    (product code, commands, scripts, benchmarks or tests)."""
    files = [p for d in ("edge_ad", "runtime", "models", "export", "jetson", "benchmarks", "scripts", "tests")
             for p in (REPO / d).rglob("*.py")]
    imported = {(p, m) for p in files for m in _imports(p)}
    dead = [mod.name for mod in sorted((REPO / package).glob("*.py")) if mod.name != "__init__.py"
            and not any(m == f"edge_ad.{package}.{mod.stem}" and p != mod for p, m in imported)]
    assert not dead, dead


def test_modules_import_only_what_they_use():
    """Audit 27 #14: names were imported with ``# noqa: F401`` into modules that did not use them
    (export/exporter.py, runtime/config.py, edge_ad/commands/run.py, edge_ad/batch/ray_engine.py) so that
    tests could import them from there, private ones included (``exporter._run_graphs``): a reader could
    not tell where a name lives. Outside package ``__init__`` files (a package's public names), an import
    no code of its module uses is refused, and no module imports another's ``_private`` name through such
    a re-export."""
    unused = []
    for d in ("runtime", "export", "models", "jetson", "benchmarks", "edge_ad"):
        for path in sorted((REPO / d).rglob("*.py")):
            if path.name == "__init__.py":
                continue
            rel = str(path.relative_to(REPO))
            tree = ast.parse(path.read_text())
            used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
            used |= {n.value.id for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)}
            for node in tree.body:                       # module-level imports: what the module offers
                if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                    for a in node.names:
                        name = a.asname or a.name
                        if name not in used:
                            unused.append(f"{rel}:{node.lineno} {name}")
    assert not unused, f"imported but not used (import it from the module that defines it): {unused}"


def test_no_module_imports_another_modules_private_name():
    """A name another module needs is part of its defining module's job, so it is public: no product module
    imports a ``_private`` name from another module (audit 27 #14: the exporter imported ``_write_graphs``,
    ``_io_spec``, ``_state_entries``; batch_graphs ``_version``). Compiled kernels (``_adam_kernel``) are
    modules, not names, and stay as they are."""
    found = []
    for d in ("runtime", "export", "models", "jetson", "benchmarks", "edge_ad"):
        for path in sorted((REPO / d).rglob("*.py")):
            rel = str(path.relative_to(REPO))
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("edge_ad")):
                    for a in node.names:
                        private = a.name.startswith("_") and not a.name.startswith("__")
                        kernel = a.name.endswith("_kernel") and node.module in (None, "")   # from .. import _adam_kernel
                        if private and not kernel:
                            found.append(f"{rel}:{node.lineno} {a.name}")
    assert not found, f"private names imported from another module (make them public there): {found}"

