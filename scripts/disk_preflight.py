"""Is there disk space to install the project and run the whole test suite? One line, before the install.

scripts/test.sh runs it first (stdlib only: no virtualenv yet). It checks the disk that holds the checkout
(the .venv goes there) and the one that holds the temp dir (tempfile.gettempdir(): $TMPDIR, else /tmp,
where pytest writes /tmp/pytest-of-$USER); when they are one disk, the needs add up.
Exit status 2 ("error: ...") when the free space is below the measured need itself (the run would
certainly fail), 0 otherwise; "warning: ..." when it is below the need plus MARGIN_BYTES.

Usage: python3 scripts/disk_preflight.py
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable, NamedTuple

GB = 10 ** 9
# Measured in session 18 (a full run, `du` of its basetemp and TMPDIR sampled every 3 s): a fresh .venv is
# 2.4 GB (CPU torch, onnxruntime, ray, ...); the suite's temp files peak at 0.19 GB now that a passing test's
# tmp_path is deleted when it ends (pyproject: tmp_path_retention_policy; 2.2 GB, all kept, before).
INSTALL_BYTES = int(2.4 * GB)          # the .venv, on the checkout's disk
TESTS_TMP_BYTES = int(0.25 * GB)       # the suite's temp files at their peak (0.19 GB + the sampling's gaps)
TESTS_CHECKOUT_BYTES = int(0.1 * GB)   # what the run writes in the checkout (compiled kernels, caches)
MARGIN_BYTES = 2 * GB                  # failing tests keep their files; others share the disk


class Place(NamedTuple):
    """A disk the run writes to: a path on it, what is written there (text) and how many bytes."""
    path: str
    what: list
    need: int


def places(checkout: Path, tmp: Path, venv_ready: bool, device: Callable[[str], int]) -> list:
    """The disks a full run writes to, one Place per device (``device(path)`` -> st_dev)."""
    wants = [(str(checkout), "the checkout", TESTS_CHECKOUT_BYTES + (0 if venv_ready else INSTALL_BYTES),
              "tests" if venv_ready else "install + tests"),
             (str(tmp), "the temp dir", TESTS_TMP_BYTES, "tests' temp files")]
    by_dev: dict = {}
    for path, name, need, why in wants:
        dev = device(path)
        if dev in by_dev:
            p = by_dev[dev]
            by_dev[dev] = Place(p.path, p.what + [f"{name} {path} ({why} {need / GB:.1f} GB)"], p.need + need)
        else:
            by_dev[dev] = Place(path, [f"{name} {path} ({why} {need / GB:.1f} GB)"], need)
    return list(by_dev.values())


def verdict(place: Place, free: int) -> tuple[int, str]:
    """(exit status, the line to print) for ``free`` bytes on ``place``'s disk."""
    where = f"on the disk of {' and '.join(place.what)}"
    need = f"a full test run needs {place.need / GB:.1f} GB there"
    if free < place.need:
        return 2, (f"error: only {free / GB:.1f} GB free {where}; {need}: free some space (old "
                   "/tmp/pytest-of-$USER runs, /tmp/edge-ad-batch-* copies) or set TMPDIR to a roomier disk")
    if free < place.need + MARGIN_BYTES:
        return 0, (f"warning: only {free / GB:.1f} GB free {where}; {need} plus {MARGIN_BYTES / GB:.0f} GB "
                   "of margin: tests may fail with 'No space left on device'")
    return 0, f"disk: {free / GB:.1f} GB free {where}; {need}: ok"


def existing(path: Path) -> Path:
    """``path`` or its nearest existing parent (the checkout's .venv may not exist yet)."""
    path = path.resolve()
    while not path.exists():
        path = path.parent
    return path


def check(checkout: Path, tmp: Path, venv_ready: bool, free: Callable[[str], int] = lambda p: shutil.disk_usage(p).free,
          device: Callable[[str], int] = lambda p: os.stat(p).st_dev) -> tuple[int, list]:
    """(exit status, lines): the worst verdict over the disks the run writes to (both paths must exist)."""
    results = [verdict(p, free(p.path)) for p in places(checkout, tmp, venv_ready, device)]
    return max(code for code, _ in results), [line for _, line in results]


def main() -> int:
    checkout = Path(__file__).resolve().parents[1]
    code, lines = check(checkout, existing(Path(tempfile.gettempdir())),
                        (checkout / ".venv" / "bin" / "python").exists())
    for line in lines:
        print(line, file=sys.stderr if code or line.startswith("warning") else sys.stdout)
    return code


if __name__ == "__main__":
    sys.exit(main())
