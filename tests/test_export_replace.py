"""``edge-ad export --out DIR`` never destroys a working model (audit 4d): the export is built beside DIR
and moved into place only after its parity check passed; a failed export leaves DIR byte for byte
unchanged (the failure kept in DIR.failed); a DIR holding other files than an export is refused."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")

from edge_ad.export.errors import ExportError  # noqa: E402
from edge_ad.export.exporter import export_model  # noqa: E402
from edge_ad.runtime import Scorer  # noqa: E402
from edge_ad.runtime.config import SearchConfig  # noqa: E402


def snapshot(d: Path) -> dict:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def quiet(*a):
    pass


def test_a_failing_export_leaves_the_previous_model_unchanged(tmp_path, tiny_generator, val_frames):
    d = tmp_path / "model"
    export_model(tiny_generator, d, search=SearchConfig(k=0, n_seed=2), parity=False, log=quiet)
    before = snapshot(d)
    frames = [{"id": "f0", "label": None, "rgb": rgb, "depth": depth} for rgb, depth in val_frames(1)]
    with pytest.raises(ExportError, match=r"parity check FAILED") as e:
        export_model(tiny_generator, d, search=SearchConfig(k=0, n_seed=2), parity_frames=frames,
                     tolerance=1e-30, check_fp64=False, log=quiet)          # an impossible tolerance
    assert snapshot(d) == before                                             # every byte of the old export
    Scorer.load(d)                                                           # and it still loads
    assert f"{d} was not changed" in str(e.value) and "model.failed" in str(e.value)
    failed = json.loads((tmp_path / "model.failed" / "manifest.json").read_text())
    assert failed["parity"]["passed"] is False
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "model.failed"]   # no staging dir left


def test_a_passing_export_replaces_the_previous_one_whole(tmp_path, tiny_generator):
    d = tmp_path / "model"
    export_model(tiny_generator, d, search=SearchConfig(k=2, n_seed=2), parity=False, log=quiet)
    (d / "engines").mkdir()
    (d / "engines" / "step.engine").write_bytes(b"built for the old graphs")
    assert (d / "step.onnx").exists()
    man = export_model(tiny_generator, d, search=SearchConfig(k=0, n_seed=2), parity=False, log=quiet)
    assert {p.name for p in d.iterdir()} == set(man["files"]) | {"manifest.json"}   # no file of the k = 2 export
    assert Scorer.load(d).config.k == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_an_out_dir_with_other_files_is_refused(tmp_path, tiny_generator):
    d = tmp_path / "notes"
    d.mkdir()
    (d / "todo.txt").write_text("mine")
    with pytest.raises(ExportError, match="not empty and holds no export"):
        export_model(tiny_generator, d, search=SearchConfig(k=0, n_seed=2), parity=False, log=quiet)
    m = tmp_path / "model"
    export_model(tiny_generator, m, search=SearchConfig(k=0, n_seed=2), parity=False, log=quiet)
    (m / "README.md").write_text("my notes on this model")
    before = snapshot(m)
    with pytest.raises(ExportError, match="not part of its export: README.md"):
        export_model(tiny_generator, m, search=SearchConfig(k=0, n_seed=2), parity=False, log=quiet)
    assert snapshot(m) == before and snapshot(d) == {"todo.txt": b"mine"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "notes"]


def test_an_export_never_replaces_a_calibrated_model(tmp_path, tiny_generator):
    """Audit 27 #3: `edge-ad export --out DIR` replaced a model edge-ad calibrate had written there (the scene's
    bank, colour gain, camera shift and threshold, which only the scene's frames rebuild) whole, silently, exit 0.
    Now refused naming the calibration (its source and date), DIR byte for byte unchanged, no staging dir left;
    an earlier plain export is still replaced (the test above)."""
    from click.testing import CliRunner

    from edge_ad.cli import main
    from edge_ad.runtime.calibrate import calibrate_model
    from edge_ad.runtime.sources import open_source
    model, scene = tmp_path / "model", tmp_path / "model-scene"
    export_model(tiny_generator, model, search=SearchConfig(k=0, n_seed=2), parity=False, log=quiet)
    with open_source("synth://?n=12&anomaly_rate=0") as src:
        man = calibrate_model(model, src, scene, min_frames=5, max_shift=0, source="synth://?n=12&anomaly_rate=0")
    before = snapshot(scene)
    said = (f"--out {scene} holds a model calibrated by edge-ad calibrate on synth://?n=12&anomaly_rate=0 "
            f"({man['calibration']['date']}); an export never replaces it")
    with pytest.raises(ExportError, match="holds a model calibrated by edge-ad calibrate") as e:
        export_model(tiny_generator, scene, search=SearchConfig(k=0, n_seed=2), parity=False, log=quiet)
    assert said in str(e.value) and "choose another --out" in str(e.value)
    assert snapshot(scene) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "model-scene"]      # no staging dir left
    ckpt = tmp_path / "g.pt"
    import torch
    torch.save(tiny_generator.state_dict(), ckpt)           # a generator state_dict
    r = CliRunner().invoke(main, ["export", str(ckpt), "--out", str(scene), "--no-parity"])
    assert r.exit_code == 1 and said in r.output and "Traceback" not in r.output, r.output
    assert snapshot(scene) == before


def test_export_out_dot_is_the_working_directory_and_dotdot_is_checked(tmp_path, tiny_generator, monkeypatch):
    """--out . (review2 item 2: ValueError "PosixPath('.') has an empty name"): exports into the working
    directory, which stays the directory the caller sits in (a second export replaces the first there);
    --out .. is checked like any other directory (it holds the working directory: refused)."""
    d = tmp_path / "model"
    d.mkdir()
    monkeypatch.chdir(d)
    export_model(tiny_generator, ".", search=SearchConfig(k=2, n_seed=2), parity=False, log=quiet)
    assert Scorer.load(".").config.k == 2 and (d / "manifest.json").exists()
    man = export_model(tiny_generator, ".", search=SearchConfig(k=0, n_seed=2), parity=False, log=quiet)
    assert Scorer.load(".").config.k == 0 and Scorer.load(d).config.k == 0
    assert {p.name for p in Path(".").iterdir()} == set(man["files"]) | {"manifest.json"}  # no k = 2 file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]      # no staging dir left
    with pytest.raises(ExportError, match="not empty and holds no export"):
        export_model(tiny_generator, "..", search=SearchConfig(k=0, n_seed=2), parity=False, log=quiet)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_failed_export_never_deletes_what_the_user_keeps_in_out_failed(tmp_path, tiny_generator, val_frames):
    """review2 item 3: the failure went to <out>.failed after rmtree of whatever was there (the user's
    notes deleted), and with a file there the rename raised and left the staging dir behind. Now only
    an earlier failed export is replaced; otherwise the failure goes to <out>.failed-2, -3, ..."""
    frames = [{"id": "f0", "label": None, "rgb": rgb, "depth": depth} for rgb, depth in val_frames(1)]
    d = tmp_path / "model"

    def fail():
        with pytest.raises(ExportError, match=r"parity check FAILED") as e:
            export_model(tiny_generator, d, search=SearchConfig(k=0, n_seed=2), parity_frames=frames,
                         tolerance=1e-30, check_fp64=False, log=quiet)     # an impossible tolerance
        return str(e.value)

    (tmp_path / "model.failed").mkdir()
    (tmp_path / "model.failed" / "my-notes.txt").write_text("mine")
    (tmp_path / "model.failed-2").write_text("a file of mine")
    msg = fail()
    assert (tmp_path / "model.failed" / "my-notes.txt").read_text() == "mine"
    assert (tmp_path / "model.failed-2").read_text() == "a file of mine"
    assert "model.failed-3" in msg
    assert json.loads((tmp_path / "model.failed-3" / "manifest.json").read_text())["parity"]["passed"] is False
    fail()                                    # an earlier failed export is replaced, not piled up
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.failed", "model.failed-2", "model.failed-3"]
    (tmp_path / "model.failed").rename(tmp_path / "kept")
    (tmp_path / "model.failed").write_text("a file where the failure would go")
    fail()
    assert (tmp_path / "model.failed").read_text() == "a file where the failure would go"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept", "model.failed", "model.failed-2",
                                                          "model.failed-3"]     # no staging dir left


def test_an_export_stopped_by_sigterm_leaves_no_staging_directory(tmp_path, tiny_generator):
    """Audit 27 #9: SIGTERM during edge-ad export (timeout, systemd stop) ended it without unwinding, leaving its
    hidden .OUT.export-HEX (43 MB for the cylinder), which no later export removes. Now SIGTERM unwinds: the
    staging directory is removed, --out left as it was (here: never created), exit 143 as a shell reports it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import torch
    ckpt = tmp_path / "g.pt"
    torch.save(tiny_generator.state_dict(), ckpt)
    out = tmp_path / "model"
    exe = Path(sys.executable).with_name("edge-ad")
    p = subprocess.Popen([str(exe), "export", str(ckpt), "--out", str(out), "--k", "19"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".model.export-*")) and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert p.poll() is None and list(tmp_path.glob(".model.export-*")), "the export ended before its stage appeared"
    time.sleep(0.5)                                      # inside the export (graphs being written / checked)
    p.send_signal(signal.SIGTERM)
    output = p.communicate(timeout=120)[0]
    assert p.returncode == 128 + signal.SIGTERM, output
    assert not list(tmp_path.glob(".model.export-*")) and not out.exists(), sorted(os.listdir(tmp_path))
    assert "Traceback" not in output, output


def test_a_killed_exports_staging_directory_is_removed_by_the_next_export(tmp_path, tiny_generator):
    """SIGKILL (the OOM killer, a power cut) cannot be unwound: the killed export's .OUT.export-HEX stays. Its owner
    record (PID, start time, host) lets the next export into the same parent remove it, saying so, while it
    leaves a live process's staging directory, one without an owner record (reported) and everything that is
    not a staging directory as they were (runtime/staging.py)."""
    import os
    import re
    import signal
    import socket
    import subprocess
    import sys
    import time

    import torch

    from edge_ad.runtime import staging
    ckpt = tmp_path / "g.pt"
    torch.save(tiny_generator.state_dict(), ckpt)
    live = staging.make_stage(tmp_path / "busy", "export")        # this (running) process's: never removed
    (live / "part.onnx").write_bytes(b"x")
    unowned = tmp_path / ".old.export-0123abcd"                   # an older edge-ad's: reported, kept
    unowned.mkdir()
    foreign = staging.make_stage(tmp_path / "far", "export")      # written on another host: reported, kept
    record = json.loads(staging.owner_path(foreign).read_text())
    staging.owner_path(foreign).write_text(json.dumps({**record, "host": socket.gethostname() + "-other"}))
    mine = {tmp_path / n for n in (".m.export-xyz", ".model.exported-0123abcd", "model.export-0123abcd")}
    for d in mine:                                                # names that are not staging names: untouched
        d.mkdir()
    exe = Path(sys.executable).with_name("edge-ad")
    p = subprocess.Popen([str(exe), "export", str(ckpt), "--out", str(tmp_path / "model"), "--k", "19"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not [d for d in tmp_path.glob(".model.export-*") if d.is_dir()] and p.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)                                      # inside the export (graphs being written)
    p.kill()
    p.wait(timeout=60)
    killed = [d for d in tmp_path.glob(".model.export-*") if d.is_dir()]
    assert p.returncode == -signal.SIGKILL and len(killed) == 1, sorted(os.listdir(tmp_path))
    killed = killed[0]
    assert json.loads(staging.owner_path(killed).read_text())["pid"] == p.pid

    lines = []
    export_model(tiny_generator, tmp_path / "next", search=SearchConfig(k=0, n_seed=1), parity=False,
                 log=lines.append)
    assert not killed.exists() and not staging.owner_path(killed).exists()
    removed = [line for line in lines if line.startswith("removed ")]
    assert len(removed) == 1 and re.fullmatch(
        rf"removed {re.escape(str(killed))} \(\d+\.\d MB\): the staging directory of an export into "
        rf"{re.escape(str(tmp_path / 'model'))} by process {p.pid}, made \S+Z; the process ended "
        r"without removing it \(killed\)", removed[0]), lines
    assert live.is_dir() and (live / "part.onnx").exists() and staging.owner_path(live).exists()
    assert unowned.is_dir() and any(f"{unowned} looks like the staging directory of an export that was interrupted "
                                    "but has no owner record" in line for line in lines), lines
    assert foreign.is_dir() and any(f"{foreign} is the staging directory of process {os.getpid()} on host "
                                    in line for line in lines), lines
    assert all(d.is_dir() for d in mine) and (tmp_path / "next" / "manifest.json").exists()
    assert not [line for line in lines if str(live) in line]       # a live one is not even mentioned
    staging.remove_stage(live)
    staging.remove_stage(foreign)


def test_an_export_says_which_earlier_export_it_replaced(tmp_path, tiny_generator):
    """Audit 28 #30: an export into a directory holding another checkpoint's export (another class, a mistyped
    --out) replaced it without a word. Now it says what it replaced, with a note when that came from another
    checkpoint; re-exporting the same checkpoint says only the first part."""
    from edge_ad.models import save_checkpoint
    from edge_ad.runtime.preprocess import PreprocessSpec
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    save_checkpoint(a, tiny_generator, preprocess=PreprocessSpec())
    save_checkpoint(b, tiny_generator, preprocess=PreprocessSpec(near_mm=300))
    d = tmp_path / "model"
    export_model(a, d, search=SearchConfig(k=0, n_seed=1), parity=False, log=quiet)
    first = json.loads((d / "manifest.json").read_text())
    said = []
    export_model(a, d, search=SearchConfig(k=0, n_seed=1), parity=False, log=said.append)
    again = [s for s in said if s.startswith("replaced the earlier export")]
    assert again == [f"replaced the earlier export in {d} (class not recorded, from a.pt (sha256 "
                     f"{first['source']['sha256'][:12]}...), configuration {first['search']['name']!r}, made "
                     f"{first['created']})"], said
    said.clear()
    export_model(b, d, search=SearchConfig(k=0, n_seed=1), parity=False, log=said.append)
    line = [s for s in said if s.startswith("replaced the earlier export")][0]
    assert line.endswith("; note: it was a model of another checkpoint (class not recorded, a.pt); it is now class "
                         "not recorded, b.pt"), line
