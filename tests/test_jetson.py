"""The Jetson kit: install script (dry runs on fake L4T releases), systemd unit, Dockerfile, README
numbers, and the prepared GPU check on this CPU machine."""
from __future__ import annotations

import configparser
import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
JET = REPO / "jetson"


def _install(tmp_path, release: str, *args, cuda="12.6.68"):
    rel = tmp_path / "nv_tegra_release"
    rel.write_text(release)
    (tmp_path / "tmp").mkdir(exist_ok=True)
    env = {"PATH": "/usr/bin:/bin", "L4T_RELEASE_FILE": str(rel), "EDGE_AD_CUDA_VERSION": cuda,
           "TMPDIR": str(tmp_path / "tmp")}
    return subprocess.run(["bash", str(JET / "install.sh"), "--dry-run", *args], capture_output=True,
                          text=True, env=env, timeout=60)


R36 = "# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic, EABI: aarch64, DATE: Fri Sep 13\n"
R35_1 = "# R35 (release), REVISION: 1.0, GCID: 31250864, BOARD: t186ref, EABI: aarch64\n"
R35_4 = "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64\n"


def test_install_script_syntax():
    assert subprocess.run(["bash", "-n", str(JET / "install.sh")]).returncode == 0


def test_install_refuses_non_jetson(tmp_path):
    p = subprocess.run(["bash", str(JET / "install.sh"), "--dry-run"], capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin", "L4T_RELEASE_FILE": str(tmp_path / "missing")})
    assert p.returncode == 1 and "this is not a Jetson with L4T" in p.stderr


def test_install_refuses_jetpack_50_for_tensorrt_84(tmp_path):
    p = _install(tmp_path, R35_1)
    assert p.returncode == 1
    assert "JetPack 5.0.x with TensorRT 8.4" in p.stderr and "TensorRT >= 8.5" in p.stderr


def test_install_jetpack6_plan(tmp_path):
    if sys.version_info < (3, 10):
        pytest.skip("the script checks the system python3 version")
    model = tmp_path / "model"
    model.mkdir()
    (model / "manifest.json").write_text("{}")
    p = _install(tmp_path, R36, "--service", "--model", str(model), "--ort-wheel",
                 "/tmp/onnxruntime_gpu-1.20-cp310-linux_aarch64.whl")
    py_ok = subprocess.run(["python3", "-c", "import sys; sys.exit(sys.version_info < (3, 10))"]).returncode == 0
    if not py_ok:
        assert p.returncode == 1 and "needs Python >= 3.10" in p.stderr
        return
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "Jetson L4T R36.4.0 (JetPack 6.x)" in out
    assert "CUDA 12.6.68 -> cuda-python>=12.6,<12.7" in out
    assert "venv --system-site-packages /opt/edge-ad/venv" in out     # JetPack's tensorrt module
    assert "install --no-deps" in out                                   # onnxruntime-gpu not shadowed
    assert "onnxruntime_gpu-1.20" in out and "onnxruntime>=1.17" not in out
    assert "numpy>=1.23,<2" in out          # audit 28 #12: NVIDIA's JetPack 6 onnxruntime-gpu wheels need numpy 1.x
    assert "systemctl enable --now edge-ad.service" in out
    # the unit is rendered into a private temp file (mktemp, under $TMPDIR), gone after the run
    (unit,) = [ln.split()[4] for ln in out.splitlines() if ln.startswith("+ install -m 0644 ")]
    assert unit.startswith(str(tmp_path / "tmp")) and not list((tmp_path / "tmp").iterdir()), unit
    # without TensorRT here, the dry run shows the JetPack package it would install
    assert "python3-libnvinfer" in out


def test_install_refuses_a_service_without_a_model(tmp_path):
    """Audit 28 #26: --service without --model (and no model in PREFIX/model) enabled a unit that could only fail
    (build-engine on no model, 10 restarts, given up) and the installer said "done". Now refused first."""
    p = _install(tmp_path, R36, "--service", "--prefix", str(tmp_path / "prefix"))
    assert p.returncode == 1 and (f"edge-ad install: --service needs a model: pass --model DIR (an edge-ad export), "
                                  f"or install one in {tmp_path / 'prefix'}/model first") in p.stderr, p.stderr
    assert "systemctl" not in p.stdout


def test_install_refuses_python_39_before_pip(tmp_path):
    """Audit 28 #3b: the kit installs rosbags>=0.10 (Python >= 3.10 only) but install.sh accepted 3.9, which then
    died in pip ("No matching distribution found for rosbags>=0.10"). A python3 that is 3.9 is refused first."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python3").write_text('#!/bin/bash\ncase "$*" in *"version_info[:2]"*) echo 3.9 ;; *"(3, 10)"*) exit 1 ;; '
                                  '*) exec /usr/bin/python3 "$@" ;; esac\n')
    (fake / "python3").chmod(0o755)
    rel = tmp_path / "nv_tegra_release"
    rel.write_text(R36)
    env = {"PATH": f"{fake}:/usr/bin:/bin", "L4T_RELEASE_FILE": str(rel), "EDGE_AD_CUDA_VERSION": "12.6.68",
           "TMPDIR": str(tmp_path)}
    p = subprocess.run(["bash", str(JET / "install.sh"), "--dry-run"], capture_output=True, text=True, env=env,
                       timeout=60)
    assert p.returncode == 1 and ("ships Python 3.9 and its TensorRT bindings are built for it, but the edge-ad kit "
                                  "needs Python >= 3.10 (rosbags >= 0.10 ships for 3.10+)") in p.stderr, p.stderr
    assert "pip" not in p.stdout


def test_install_jetpack5_python_message(tmp_path):
    """JetPack 5.1 passes the TensorRT check; its Python 3.8 is what stops it (real JP5 boxes)."""
    p = _install(tmp_path, R35_4, cuda="11.4.315")
    assert "Jetson L4T R35.4.1 (JetPack 5.x)" in p.stdout
    py38 = subprocess.run(["python3", "-c", "import sys; sys.exit(sys.version_info >= (3, 10))"]).returncode == 0
    if py38:    # below 3.10 (JetPack 5's 3.8; audit 28 #3b: a 3.9 passed the check, then pip found no rosbags>=0.10)
        assert p.returncode == 1 and "needs Python >= 3.10 (rosbags >= 0.10 ships for 3.10+)" in p.stderr
    else:        # audit 28 #12: TensorRT 8.5's bindings use np.bool (gone in numpy 1.24)
        assert p.returncode == 0 and "cuda-python>=11.4,<11.5" in p.stdout and "numpy>=1.23,<1.24" in p.stdout


def test_systemd_unit():
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str
    cp.read(JET / "edge-ad.service")
    svc = cp["Service"]
    assert svc["Restart"] == "on-failure"
    assert "edge-ad run --camera" in svc["ExecStart"] and "--backend tensorrt" in svc["ExecStart"]
    assert "build-engine" in svc["ExecStartPre"]
    # rotated and pruned (audit 27 #19): results never fill the disk and stop the service
    assert "--rotate-mb 100 --rotate-keep 20" in svc["ExecStart"]
    # audit 29 #6: the pictures are bounded too (their own retention): the newest anomalies keep theirs
    assert svc["ExecStart"].endswith("--save-anomalies /var/lib/edge-ad/anomalies --save-anomalies-keep 5000")
    # audit 28 #15: a camera that enumerates late after boot is waited for, not 10 failed starts and a dead unit
    assert "--camera --wait-for-camera" in svc["ExecStart"]
    assert svc["KillSignal"] == "SIGTERM"
    assert cp["Install"]["WantedBy"] == "multi-user.target"
    assert "video" in svc["SupplementaryGroups"]


def test_dockerfile_basics():
    text = (JET / "Dockerfile").read_text()
    assert re.search(r"^FROM nvcr\.io/nvidia/l4t-jetpack:\$\{L4T_TAG\}$", text, re.M)
    assert "ARG L4T_TAG=r36.4.0" in text
    assert "python3-libnvinfer" in text and "--system-site-packages" in text
    assert "-DBUILD_PYTHON_BINDINGS=ON" in text and "FORCE_RSUSB_BACKEND=ON" in text
    # the edge-ad wheel (with the compiled Adam kernel) is built in a stage that has a compiler
    assert re.search(r"^FROM .* AS wheel$", text, re.M) and "build-essential python3-dev" in text
    assert "pip wheel --no-deps . -w /opt/wheels" in text and "pip install --no-deps /opt/wheels/edge_ad-*.whl" in text
    assert "host_adam.kernel_available()" in text
    # every COPY source exists in the repository
    for src in re.findall(r"^COPY (?!--from)(\S+)", text, re.M):
        assert (REPO / src).exists(), src
    last = text.replace("\\\n", "").splitlines()[-1]          # the CMD, its continued lines joined
    assert last.startswith("CMD ") and "edge-ad" in last and "--backend" in last


def wheel_stage_sources(text: str = None) -> list:
    """The build-context paths the Dockerfile's wheel stage COPYs (every source of its COPY lines, not --from)."""
    text = text if text is not None else (JET / "Dockerfile").read_text()
    stage = re.search(r"^FROM .* AS wheel$(.*?)^FROM ", text, re.M | re.S)
    assert stage, "the Dockerfile has no wheel stage followed by another FROM"
    return [src for line in re.findall(r"^COPY (?!--from)(.+)$", stage.group(1), re.M) for src in line.split()[:-1]]


def test_the_wheel_stage_copies_everything_the_wheel_is_built_from():
    """Audit 33 #6: the wheel stage copied edge_ad models export runtime jetson, but pyproject maps
    edge_ad.benchmarks to benchmarks/ (`edge-ad bench` imports it), so `pip wheel .` stopped with "package
    directory 'benchmarks' does not exist" and the image could not be built. Every folder of pyproject's
    package-dir and ext-modules, its readme and pyproject.toml itself are copied (test_packaging builds its wheel
    from exactly these paths)."""
    import tomllib
    tool = tomllib.loads((REPO / "pyproject.toml").read_text())
    setup = tool["tool"]["setuptools"]
    needed = {"pyproject.toml", tool["project"]["readme"]}
    needed |= {folder.split("/")[0] for folder in setup["package-dir"].values()}
    needed |= {src.split("/")[0] for ext in setup.get("ext-modules", []) for src in ext["sources"]}
    assert sorted(needed - set(wheel_stage_sources())) == []
    assert wheel_stage_sources("FROM a AS wheel\nCOPY x y ./\nCOPY z z\nCOPY --from=b /q /q\nFROM c\nCOPY w w\n") \
        == ["x", "y", "z"]


def test_the_kit_installs_every_base_dependency():
    """Audit 28 #3: install.sh and the Dockerfile install edge-ad with --no-deps (onnxruntime-gpu must not be
    shadowed) after an explicit list that lacked cryptography, so signed models could not be checked on the robot
    ("signed models need the 'cryptography' package"). Each kit's list holds every base dependency of pyproject
    but onnxruntime (installed on its own line), and the camera extra's rosbags, with pyproject's bounds."""
    import tomllib
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = [d for d in project["dependencies"] if not d.startswith(("onnxruntime", "numpy"))]   # numpy: pinned
    wanted += [d for d in project["optional-dependencies"]["camera"] if d.startswith("rosbags")]
    for kit in ("install.sh", "Dockerfile"):
        (line,) = [ln for ln in (JET / kit).read_text().splitlines() if '"click>=' in ln and "install" in ln]
        assert [d for d in wanted if f'"{d}"' not in line] == [], (kit, line)
        assert "onnxruntime>=" in (JET / kit).read_text()
        numpy = [d for d in project["dependencies"] if d.startswith("numpy")][0]         # "numpy>=1.23"
        pins = re.findall(r'NUMPY="(numpy[^"]*)"', (JET / kit).read_text())
        assert pins and all(p.startswith(numpy + ",<") for p in pins) and "NUMPY}" in line.replace("$NUMPY", "NUMPY}")


def test_the_image_runs_with_the_units_all_day_options():
    """Audit 28 #31: the Docker image's CMD ran without the unit's --rotate-mb / --rotate-keep (the results file grew
    until the disk was full) and --frame-timeout (a stuck GPU frame hung the container; on-failure never fired).
    The CMD carries the unit's ExecStart options, with the container's paths."""
    import json
    import shlex
    text = (JET / "Dockerfile").read_text()
    cmd = json.loads(re.search(r"^CMD (\[.*?\])$", text.replace("\\\n", ""), re.M | re.S).group(1))
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str
    cp.read(JET / "edge-ad.service")
    unit = shlex.split(cp["Service"]["ExecStart"])
    paths = {"/opt/edge-ad/model": "/model", "/var/lib/edge-ad/results.jsonl": "/data/results.jsonl",
             "/var/lib/edge-ad/anomalies": "/data/anomalies"}
    assert cmd == ["edge-ad"] + [paths.get(a, a) for a in unit[1:]], (cmd, unit)


def test_readme_budget_matches_budget_module():
    """The README's latency table is what budget.py computes (no stale hand-edited numbers)."""
    from edge_ad.jetson.budget import DEVICES, frame_cost, latency_ms
    readme = (JET / "README.md").read_text()
    dev = {(d.name, d.power_mode.split(" (")[0].replace("W", " W")): d for d in DEVICES}
    checked = 0
    for m in re.finditer(r"^\| (16|32|64) \| (Orin Nano 8GB|Orin NX 16GB|AGX Orin 64GB) \| ([^|]+?) \| "
                         r"[\d.]+ \| (\d+) \| (\d+) \| [\d.]+ \| \*?\*?(\d+)\*?\*? \|", readme, re.M):
        width, name, mode, comp, mem, total = m.groups()
        mode = mode.split(" (")[0]
        d = next(v for (n, pm), v in dev.items() if n == name and pm.startswith(mode.split(" ")[0]))
        b = latency_ms(frame_cost(features_g=int(width)), d)
        assert round(b["compute_ms"]) == int(comp) and round(b["memory_ms"]) == int(mem), m.group(0)
        assert round(b["total_ms"]) == int(total), m.group(0)
        checked += 1
    assert checked >= 10


@pytest.fixture(scope="module")
def parity_model(tmp_path_factory, tiny_generator, kinect_root):
    pytest.importorskip("torch")
    from edge_ad.export.exporter import export_model
    from edge_ad.export.parity import default_parity_frames
    from edge_ad.runtime.config import SearchConfig
    from edge_ad.runtime.preprocess import PreprocessSpec
    G = copy.deepcopy(tiny_generator)
    G.preprocess = PreprocessSpec()
    d = tmp_path_factory.mktemp("gpucheck") / "m"
    export_model(G, d, search=SearchConfig(k=2, n_seed=2), parity_frames=default_parity_frames(kinect_root),
                 check_fp64=False, log=lambda *a: None)
    return d


def test_gpu_check_on_cpu(parity_model, kinect_root, tmp_path):
    from edge_ad.jetson.gpu_check import main
    out = tmp_path / "check.json"
    rc = main([str(parity_model), "--data", str(kinect_root), "--repeats", "2", "--warmup", "1", "--out", str(out)])
    rep = json.loads(out.read_text())
    assert rc == 0
    assert len(rep["parity_frames"]) == 2
    cpu = rep["backends"]["onnxruntime-cpu"]
    assert cpu["ok"] and cpu["max_rel_diff"] <= 1e-4 and cpu["median_ms"] > 0
    for name, r in rep["backends"].items():
        if not r["ok"]:       # no GPU here: one line saying why
            assert "\n" not in r["unavailable"] and r["unavailable"]
