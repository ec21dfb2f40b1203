"""Audit 27 #21: an --out that cannot be written (no such place, a file where a folder should be, a read-only
mount, a full disk) ended calibrate, eval, export, batch, bench, train and trace in a 33-83-line traceback,
eval, bench, trace and calibrate only after all their scoring. Now: one line, exit 1, and those commands
check --out before the work starts."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from edge_ad.cli import main
from edge_ad.models.checkpoint import save_checkpoint
from edge_ad.runtime.preprocess import PreprocessSpec

from conftest import REPO  # noqa: E402  (tests/ is on sys.path under pytest)


def _never(*a, **k):
    raise AssertionError("the work started before --out was checked")


@pytest.fixture
def tiny_ckpt(tmp_path, tiny_generator):
    p = tmp_path / "g.pt"
    save_checkpoint(p, tiny_generator, preprocess=PreprocessSpec())
    return p


def test_an_unwritable_out_is_one_line_before_the_work(tmp_path, tiny_ckpt, kinect_root, monkeypatch):
    import edge_ad.benchmarks.search_bench as bench_mod
    import edge_ad.export.exporter as exporter_mod
    import edge_ad.models.search as search_mod
    import edge_ad.runtime.calibrate as calibrate_mod
    for mod, name in ((search_mod, "score_batch"), (search_mod, "search"), (calibrate_mod, "calibrate_model"),
                      (exporter_mod, "export_model"), (bench_mod, "run_bench")):
        monkeypatch.setattr(mod, name, _never)
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    bad = afile / "out"
    demo = str(REPO / "runtime" / "demo")
    data = ["--data", str(kinect_root), "--class", "rectangle"]
    for argv in (["calibrate", "--model", demo, "--source", "synth://?n=30", "--out", str(bad)],
                 ["eval", "--model", str(tiny_ckpt), *data, "--out", str(bad), "--max-per-class", "2",
                  "--no-baselines"],
                 ["export", str(tiny_ckpt), "--out", str(bad)],
                 ["bench", str(tiny_ckpt), "--model", str(tmp_path), "--out", str(afile / "b.json")],
                 ["trace", "--model", str(tiny_ckpt), *data, "--out", str(afile / "t.png"), "--k", "1"]):
        r = CliRunner().invoke(main, argv)
        assert r.exit_code == 1 and isinstance(r.exception, SystemExit), (argv[0], r.output, r.exception)
        assert r.output.strip().splitlines()[-1].startswith(f"Error: cannot create --out {afile}/") and \
            r.output.strip().endswith(f"{afile} is not a directory"), (argv[0], r.output)
    assert afile.read_text() == "not a folder"


def test_an_oserror_naming_a_file_is_one_line(tmp_path):
    """Any command: an OSError that names a file (here batch's --out under a file; a full disk in calibrate's
    last step alike) is 'Error: FILE: reason', exit 1, not a traceback."""
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    r = CliRunner().invoke(main, ["batch", "--model", str(REPO / "runtime" / "demo"), "--out", str(afile / "b"),
                                  "synth://?n=2"])
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), (r.output, r.exception)
    assert r.output.strip().splitlines()[-1] == f"Error: {afile / 'b'}: Not a directory", r.output
    assert "Traceback" not in r.output


def test_a_full_disk_during_an_export_is_one_line_naming_out(tmp_path, tiny_ckpt, monkeypatch):
    """Audit 28 #17: a full disk while export wrote weights.npz (numpy's savez through zipfile: an OSError naming
    no file) was a 66-line traceback. Now one line naming --out, the free space and that --out was not changed;
    the staging directory is removed."""
    import errno

    import numpy as np

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(np, "savez", full)
    out = tmp_path / "ex"
    r = CliRunner().invoke(main, ["export", str(tiny_ckpt), "--out", str(out), "--no-parity"])
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), (r.output, r.exception)
    last = r.output.strip().splitlines()[-1]
    assert last.startswith(f"Error: {out}: No space left on device while the export was written beside it (") and \
        last.endswith(f" MB free in {tmp_path}); {out} was not changed"), r.output
    assert "Traceback" not in r.output and not out.exists() and not list(tmp_path.glob(".ex.export-*"))

