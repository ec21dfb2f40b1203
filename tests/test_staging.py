"""Staging directories left by killed runs (runtime/staging.py): SIGKILL cannot be unwound, so a killed export or
calibrate left its hidden .OUT.export-HEX / .OUT.calibrating-PID (tens of MB) for good. Each now has an owner
record (PID, its start time, boot, host) beside it; the next export or calibrate into the same parent removes
the ones whose process is gone, and only those: never a live process's, never anything it did not make."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from conftest import REPO

from edge_ad.runtime import staging

_HOLD = ("import sys, time; from pathlib import Path; from edge_ad.runtime.staging import make_stage; "
         "s = make_stage(Path(sys.argv[1]), 'calibrating'); (s / 'latent_bank.npy').write_bytes(bytes(300000)); "
         "print(s, flush=True); time.sleep(120)")


def _holder(out: Path) -> tuple:
    """A process that made a calibrate staging directory for ``out`` and holds it: (process, the directory)."""
    p = subprocess.Popen([sys.executable, "-c", _HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    return p, Path(p.stdout.readline().strip())


def test_calibrate_removes_a_killed_calibrates_staging_directory_not_a_live_ones(tmp_path):
    from edge_ad.runtime.calibrate import calibrate_model
    from edge_ad.runtime.sources import open_source
    model = tmp_path / "demo"
    shutil.copytree(REPO / "runtime" / "demo", model)
    killed, killed_stage = _holder(tmp_path / "cal-a")
    live, live_stage = _holder(tmp_path / "cal-b")
    try:
        killed.kill()
        killed.wait(timeout=30)
        assert killed_stage.name == f".cal-a.calibrating-{killed.pid}" and killed_stage.is_dir()
        assert json.loads(staging.owner_path(killed_stage).read_text())["pid"] == killed.pid
        lines = []
        with open_source("synth://?n=25&anomaly_rate=0") as src:
            calibrate_model(model, src, tmp_path / "cal", max_shift=0, log=lines.append)
        assert not killed_stage.exists() and not staging.owner_path(killed_stage).exists()
        assert f"removed {killed_stage} (0.3 MB): the staging directory of a calibrate into {tmp_path / 'cal-a'} " \
               f"by process {killed.pid}" in "\n".join(lines), lines
        assert live_stage.is_dir() and staging.owner_path(live_stage).exists()    # its process still runs
        assert not [line for line in lines if str(live_stage) in line], lines
        assert (tmp_path / "cal" / "manifest.json").exists()
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["demo", "cal", live_stage.name,
                                                                     live_stage.name + ".owner"])
    finally:
        live.kill()
        live.wait(timeout=30)
    assert staging.sweep_stale(tmp_path) == [live_stage]        # once its process is gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cal", "demo"]


def test_a_reused_pid_or_another_boot_counts_as_gone_other_records_and_entries_are_left(tmp_path):
    """The record's PID may belong to another process by now: a start time or boot that differs means the
    writer is gone. A record that is not this module's, a staging name that is a file or a link, and names
    that only resemble a staging name are never touched; one without a record is reported."""
    def stage_with(name, **change):
        d = tmp_path / name
        d.mkdir()
        record = {**staging._owner(), **change}
        staging.owner_path(d).write_text(json.dumps(record))
        return d
    me = staging._owner()
    reused = stage_with(".a.export-0000abcd", start_time=(me["start_time"] or 0) + 1)
    rebooted = stage_with(".b.calibrating-42", pid=os.getpid(), boot_id="another-boot")
    alive = stage_with(".c.export-0000abce")                                  # this process: running
    not_ours = stage_with(".d.export-0000abcf", format="something else", pid=999999999)
    unowned = tmp_path / ".e.export-0000abd0"
    unowned.mkdir()
    (tmp_path / ".f.export-0000abd1").write_text("a file")
    staging.owner_path(tmp_path / ".f.export-0000abd1").write_text(json.dumps({**me, "pid": 999999999}))
    (tmp_path / ".g.export-0000abd2").symlink_to(alive)
    staging.owner_path(tmp_path / ".g.export-0000abd2").write_text(json.dumps({**me, "pid": 999999999}))
    lookalike = stage_with(".h.export-XYZ", pid=999999999)
    lines = []
    removed = staging.sweep_stale(tmp_path, lines.append)
    if me["start_time"] is not None:                            # Linux: /proc tells a reused PID
        assert reused in removed and not reused.exists()
    assert rebooted in removed and not staging.owner_path(rebooted).exists()
    for kept in (alive, not_ours, unowned, tmp_path / ".f.export-0000abd1", lookalike):
        assert kept.exists(), kept
    assert (tmp_path / ".g.export-0000abd2").is_symlink()
    assert [line for line in lines if "no owner record" in line] == [
        f"note: {d} looks like the staging directory of an export that was interrupted but has no owner record (an "
        "older edge-ad?): not removed; delete it yourself if no export or calibrate into that directory is running"
        for d in (not_ours, unowned)]


def test_a_killed_process_is_gone_a_live_one_is_not(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        record = {**staging._owner(), "pid": p.pid, "start_time": staging._start_time(p.pid)}
        assert staging._running(record)
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
    assert not staging._running(record)
