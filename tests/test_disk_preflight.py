"""scripts/disk_preflight.py (scripts/test.sh's first step) and the suite's low-disk report (conftest's
DiskReport): a disk too small for a full run says so in one line naming the free space, the need and where."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from conftest import REPO, DiskReport, disk_preflight

dp = disk_preflight()
GB = 10 ** 9


def _check(free_gb: dict, devices: dict, venv_ready: bool = False):
    """check() on /work/clone and /tmp with fake disks: ``devices`` path -> device, ``free_gb`` device -> GB."""
    return dp.check(Path("/work/clone"), Path("/tmp"), venv_ready,
                    free=lambda p: int(free_gb[devices[p]] * GB), device=lambda p: devices[p])


def test_one_disk_for_checkout_and_temp_adds_the_needs():
    """A clean clone (no .venv yet, as CI's) and /tmp on one disk: the install and the tests' needs add up."""
    one = {"/work/clone": "vda", "/tmp": "vda"}
    need = (dp.INSTALL_BYTES + dp.TESTS_CHECKOUT_BYTES + dp.TESTS_TMP_BYTES) / GB
    code, (line,) = _check({"vda": 2.0}, one)
    assert code == 2 and line.startswith("error: only 2.0 GB free")
    assert "/work/clone" in line and "/tmp" in line and f"needs {need:.1f} GB" in line
    code, (line,) = _check({"vda": 2.9}, one)                        # the session-17 CI failure's disk
    assert code == 0 and line.startswith("warning: only 2.9 GB free") and "No space left on device" in line
    code, (line,) = _check({"vda": need + dp.MARGIN_BYTES / GB + 0.1}, one)
    assert code == 0 and line.startswith("disk:") and line.endswith(": ok")
    code, (line,) = _check({"vda": 0.5}, one, venv_ready=True)       # installed already: the tests fit
    assert code == 0 and line.startswith("warning:")
    assert _check({"vda": 0.2}, one, venv_ready=True)[0] == 2


def test_separate_disks_are_checked_each_for_its_own_need():
    two = {"/work/clone": "vda", "/tmp": "tmpfs"}
    code, lines = _check({"vda": 40, "tmpfs": 0.1}, two)
    assert code == 2 and lines[0].startswith("disk: 40.0 GB free") and "/tmp" not in lines[0]
    assert lines[1].startswith("error: only 0.1 GB free") and "the temp dir /tmp" in lines[1]
    code, lines = _check({"vda": 1.0, "tmpfs": 40}, two)              # no room for the .venv
    assert code == 2 and lines[0].startswith("error:") and "/work/clone (install + tests" in lines[0]


def test_the_checkout_may_not_exist_yet(tmp_path):
    assert dp.existing(tmp_path / ".venv" / "bin") == tmp_path


def test_the_script_prints_one_line_per_disk_and_test_sh_runs_it_before_installing():
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "disk_preflight.py")], capture_output=True, text=True)
    lines = (r.stdout + r.stderr).splitlines()
    assert r.returncode in (0, 2) and 1 <= len(lines) <= 2, r
    assert all(line.split(":")[0] in ("disk", "warning", "error") for line in lines), lines
    sh = (REPO / "scripts" / "test.sh").read_text()
    assert "scripts/disk_preflight.py" in sh and sh.index("scripts/disk_preflight.py") < sh.index("pip install")


class _Writer:
    def __init__(self):
        self.lines = []

    def write_line(self, line, **markup):
        self.lines.append(line)


def test_the_report_names_tests_that_hit_a_full_disk_and_the_free_space():
    report = DiskReport(lambda: (2, ["error: only 0.1 GB free on the disk of the temp dir /tmp (...)"]))
    for nodeid, failed, text in [("t.py::a", True, "OSError: [Errno 28] No space left on device: '/tmp/x'"),
                                 ("t.py::b", True, "AssertionError: 1 == 2"),
                                 ("t.py::c", False, "")]:
        report.pytest_runtest_logreport(SimpleNamespace(nodeid=nodeid, failed=failed, longrepr=text))
    out = _Writer()
    report.pytest_terminal_summary(out)
    assert out.lines[0].startswith("1 test phase(s) failed with 'No space left on device', the first: t.py::a")
    assert out.lines[1].startswith("error: only 0.1 GB free")
    quiet = _Writer()
    DiskReport(lambda: (0, ["disk: ok"])).pytest_terminal_summary(quiet)
    assert quiet.lines == []


def test_a_low_disk_is_said_before_the_first_test():
    out = _Writer()
    config = SimpleNamespace(pluginmanager=SimpleNamespace(get_plugin=lambda name: out))
    DiskReport(lambda: (0, ["warning: only 3.0 GB free ...", "disk: 40 GB free ...: ok"])).pytest_sessionstart(
        SimpleNamespace(config=config))
    assert out.lines == ["warning: only 3.0 GB free ..."]
