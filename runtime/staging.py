"""The hidden staging directories that export and calibrate build a new model in (``.OUT.export-HEX``,
``.OUT.calibrating-PID``, beside ``OUT``), each with an owner record beside it (``<staging name>.owner``:
the process id, its start time and boot, the host), so that the next export or calibrate into the same
parent can tell a staging directory left by a process that died without unwinding (SIGKILL, the OOM
killer, a power cut: SIGTERM and Ctrl-C unwind, edge_ad/commands/stop.py) from one that a running
process is still writing, and remove only the former.

What a sweep removes: an entry whose name is a staging name (``.NAME.export-HEX`` / ``.NAME.calibrating-PID``)
AND whose owner record is this module's, written on this host, by a process that is no longer running
(no such PID, or the PID now belongs to a process started at another time or in another boot). Anything
else is left as it is: a staging name without an owner record (an older edge-ad, or the short moment
between a staging directory's install and its record's removal) and a record from another host are
reported, never removed; a live process's staging directory is not mentioned. Pure Python, no torch.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import time
import uuid
from pathlib import Path
from typing import Callable, Optional

OWNER_SUFFIX = ".owner"
_FORMAT = "edge-ad staging directory"          # the record's "format": only these records are trusted
KINDS = ("export", "calibrating")
_WHAT = {"export": "an export", "calibrating": "a calibrate"}
_NAME = re.compile(r"^\.(?P<out>.+)\.(?P<kind>export|calibrating)-(?P<tag>[0-9a-f]{8}|[0-9]+)$")


def _boot_id() -> Optional[str]:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def _start_time(pid: int) -> Optional[int]:
    """When process ``pid`` started (clock ticks since boot, /proc/PID/stat field 22); None where /proc
    cannot tell (no such process, another OS)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat[stat.rindex(")") + 2:].split()[19])      # fields after "(comm)" start at field 3
    except (OSError, ValueError, IndexError):
        return None


def _owner() -> dict:
    pid = os.getpid()
    return {"format": _FORMAT, "pid": pid, "start_time": _start_time(pid), "boot_id": _boot_id(),
            "host": socket.gethostname(), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def owner_path(stage: Path) -> Path:
    """The owner record of staging directory ``stage``: ``<stage>.owner`` beside it (never inside: the
    directory becomes the model)."""
    return stage.with_name(stage.name + OWNER_SUFFIX)


def _running(owner: dict) -> bool:
    """Whether the process that wrote ``owner`` may still be running on this host (True when unsure)."""
    pid = owner["pid"]
    if owner.get("boot_id") and _boot_id() and owner["boot_id"] != _boot_id():
        return False                                  # written before a reboot
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass                                          # exists (another user's process)
    except OSError:
        return True
    then, now = owner.get("start_time"), _start_time(pid)
    return then is None or now is None or then == now      # another start time: the PID was reused


def _read_owner(path: Path) -> Optional[dict]:
    try:
        owner = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = (isinstance(owner, dict) and owner.get("format") == _FORMAT and isinstance(owner.get("pid"), int)
          and not isinstance(owner.get("pid"), bool) and 0 < owner["pid"] < 2 ** 31)
    return owner if ok else None


def _size_mb(path: Path) -> float:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total / 1e6


def sweep_stale(parent: Path, log: Optional[Callable[[str], None]] = None) -> list:
    """Remove the staging directories in ``parent`` whose process died without removing them (see the module
    docstring for what counts), with their owner records; ``log`` (one line each) says what was removed and
    which staging-named entries were left (no owner record, another host). Returns the removed paths."""
    say = log or (lambda line: None)
    removed = []
    try:
        names = sorted(os.listdir(parent))
    except OSError:
        return removed
    for name in names:
        stage_name = name[:-len(OWNER_SUFFIX)] if name.endswith(OWNER_SUFFIX) else name
        m = _NAME.match(stage_name)
        if m is None or (name != stage_name and stage_name in names):    # a stage with its record: once
            continue
        stage = parent / stage_name
        owner = _read_owner(owner_path(stage))
        if owner is None:
            if name == stage_name and stage.is_dir() and not stage.is_symlink():
                say(f"note: {stage} looks like the staging directory of {_WHAT[m['kind']]} that was interrupted but "
                    "has no owner record (an older edge-ad?): not removed; delete it yourself if no export or "
                    "calibrate into that directory is running")
            continue
        if owner.get("host") != socket.gethostname():
            say(f"note: {stage} is the staging directory of process {owner['pid']} on host {owner.get('host')}, "
                "which cannot be checked from here: not removed")
            continue
        if _running(owner) or stage.is_symlink() or (os.path.lexists(stage) and not stage.is_dir()):
            continue                                  # alive, or not a directory this module made
        if not stage.is_dir():                        # a record alone (died before its mkdir or after the rmtree)
            owner_path(stage).unlink(missing_ok=True)
            continue
        size = _size_mb(stage)
        shutil.rmtree(stage, ignore_errors=True)
        if stage.exists():
            say(f"note: could not remove the stale staging directory {stage}")
            continue
        owner_path(stage).unlink(missing_ok=True)
        removed.append(stage)
        say(f"removed {stage} ({size:.1f} MB): the staging directory of {_WHAT[m['kind']]} into "
            f"{parent / m['out']} by process {owner['pid']}, made {owner.get('created')}; the process ended without "
            "removing it (killed)")
    return removed


def make_stage(out_dir: Path, kind: str, log: Optional[Callable[[str], None]] = None) -> Path:
    """A new, empty staging directory beside ``out_dir`` for ``kind`` ("export": ``.OUT.export-HEX``;
    "calibrating": ``.OUT.calibrating-PID``) with its owner record, after sweeping the stale ones of the
    parent (``sweep_stale``, lines to ``log``). Remove it with ``remove_stage``."""
    if kind not in KINDS:
        raise ValueError(f"staging kind must be one of {KINDS}, got {kind!r}")
    sweep_stale(out_dir.parent, log)
    tag = uuid.uuid4().hex[:8] if kind == "export" else str(os.getpid())
    stage = out_dir.with_name(f".{out_dir.name}.{kind}-{tag}")
    record = owner_path(stage)
    if kind == "calibrating" and (os.path.lexists(stage) or os.path.lexists(record)):
        remove_stage(stage)                            # this process's own (sweep_stale removed other PIDs')
    with open(record, "x", encoding="utf-8") as f:     # the record first: a stage never exists without it
        json.dump(_owner(), f)
    try:
        stage.mkdir()                                  # (the umask's permissions, as out_dir.mkdir gave them)
    except BaseException:
        record.unlink(missing_ok=True)
        raise
    return stage


def remove_stage(stage: Path) -> None:
    """Remove staging directory ``stage`` (if still there) and then its owner record."""
    shutil.rmtree(stage, ignore_errors=True)
    owner_path(stage).unlink(missing_ok=True)
