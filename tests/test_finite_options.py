"""Every number option of the CLI is a finite number, checked when the command line is read (audit 27 #6, #7):
click's FloatRange lets nan (and, unbounded, inf) through, which failed minutes later with a traceback (after the
model loaded, after every frame was scored) or, for --rotate-mb, cut no file at all."""
from __future__ import annotations

import importlib

import click
import pytest
from click.testing import CliRunner

from edge_ad.cli import COMMANDS, main
from edge_ad.commands.options import FiniteFloat

# float options checked by their own rule, with their own message (runtime.capture.valid_threshold: > 0, finite)
OWN_CHECK = {("run", "--threshold"), ("batch", "--threshold")}


def command_params():
    """(command name, click parameter) of every edge-ad command; skips when a command's extra is not installed."""
    for name, module in COMMANDS.items():
        try:
            cmd = importlib.import_module(f"edge_ad.commands.{module}").cmd
        except ModuleNotFoundError as e:                  # a command of an extra this install lacks
            pytest.skip(f"edge-ad {name} needs {e.name}")
        for p in cmd.params:
            yield name, p

def test_every_float_option_of_every_command_is_finite():
    """No command declares a float option that takes nan or inf unchecked (type=float or a plain FloatRange)."""
    loose = [f"{name} {p.opts[0]}" for name, p in command_params()
             if isinstance(p.type, (click.types.FloatParamType, click.FloatRange))
             and not isinstance(p.type, FiniteFloat) and (name, p.opts[0]) not in OWN_CHECK]
    assert not loose, loose


@pytest.mark.parametrize("args", [("--alarm-alpha", "nan"), ("--frame-timeout", "nan"), ("--rotate-mb", "nan"),
                                  ("--rotate-mb", "inf"), ("--save-anomalies-min-free-mb", "nan")])
def test_run_refuses_a_non_finite_number_before_it_starts(tmp_path, args):
    """The audit's cases: each was a 26-31-line traceback after the model loaded (exit 1), --frame-timeout nan
    leaving an empty --out behind. Now exit 2 naming the option, no --out file."""
    out = tmp_path / "r.jsonl"
    r = CliRunner().invoke(main, ["run", "--source", "synth://?n=3", "-q", "--out", str(out), *args])
    assert r.exit_code == 2 and f"Invalid value for '{args[0]}'" in r.output and "Traceback" not in r.output, r.output
    assert not out.exists()


def test_frame_timeout_inf_means_no_limit(tmp_path):
    r = CliRunner().invoke(main, ["run", "--source", "synth://?n=2", "-q", "--out", str(tmp_path / "r.jsonl"),
                                  "--frame-timeout", "inf"])
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("command", [["calibrate", "--model", "MODEL", "--source", "synth://?n=3", "--out", "OUT",
                                      "--fpr", "nan"],
                                     ["export", "CKPT", "--out", "OUT", "--tolerance", "nan"],
                                     ["export", "CKPT", "--out", "OUT", "--lr-z", "inf"],
                                     ["train", "--synth", "4", "--out", "OUT", "--lr", "nan"]])
def test_other_commands_refuse_a_non_finite_number(tmp_path, command):
    """export --tolerance nan ran the whole export, then 'parity check FAILED ... (tolerance nan)'."""
    from edge_ad.runtime import demo_model_dir
    (tmp_path / "g.pt").write_bytes(b"")
    args = [{"MODEL": str(demo_model_dir()), "OUT": str(tmp_path / "out"), "CKPT": str(tmp_path / "g.pt")}.get(a, a)
            for a in command]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2 and f"Invalid value for '{command[-2]}'" in r.output, r.output
    assert not (tmp_path / "out").exists()


def test_a_rotation_size_under_one_byte_still_rotates(tmp_path):
    """ifix-found A (session 30): --rotate-mb 1e-9 (> 0, as its range asks) became int(1e-9 * 1e6) = 0 bytes, a
    20-line traceback after the model loaded ("rotate_bytes must be > 0, got 0"), exit 1; the ROS node's
    rotate_mb 1e-9 became no rotation at all (int() or None). One rule now (results.rotate_bytes_of): any size
    > 0 is at least one byte, so the file rotates after each line; 0 / None: no rotation."""
    from edge_ad.jetson.ros2_node import node_settings
    from edge_ad.runtime.results import rotate_bytes_of, rotated_files
    out = tmp_path / "r.jsonl"
    r = CliRunner().invoke(main, ["run", "--source", "synth://?n=3", "-q", "--out", str(out), "--rotate-mb", "1e-9"])
    assert r.exit_code == 0 and "Traceback" not in r.output, (r.output, r.exception)
    assert len(rotated_files(out)) >= 3 and out.is_file()          # one per line at least (start, frames)
    assert node_settings({"rotate_mb": 1e-9, "results_path": str(tmp_path / "n.jsonl")})["rotate_bytes"] == 1
    assert node_settings({"rotate_mb": 0.0})["rotate_bytes"] is None
    assert [rotate_bytes_of(v) for v in (None, 0, 0.0, 1e-9, 0.004, 2.5)] == [None, None, None, 1, 4000, 2500000]


def test_every_int_option_of_every_command_has_a_lower_bound():
    """Audit 30 #1 and its class: a plain type=int option took any negative number, which failed only after the
    model loaded or every clean frame was scored: eval --nuisance-seed -1 (a 50-line numpy traceback once the
    nuisance suite started), eval / train --threads -1 (torch's "set_num_threads expects a positive integer"
    traceback), eval / train --synth -1 ("need at least one array to stack"), train --seed -1 ("expected
    non-negative integer"). Every int option is an IntRange with a lower bound: refused when the command line
    is read."""
    loose = [f"{name} {p.opts[0]}" for name, p in command_params()
             if isinstance(p.type, click.types.IntParamType)
             and not (isinstance(p.type, click.IntRange) and p.type.min is not None)]
    assert not loose, loose


@pytest.mark.parametrize("argv", [
    ["eval", "--model", "CKPT", "--synth", "20", "--nuisance-set", "rgb-noise:8", "--nuisance-seed", "-1", "--out", "OUT"],
    ["eval", "--model", "CKPT", "--synth", "20", "--threads", "-1", "--out", "OUT"],
    ["eval", "--model", "CKPT", "--synth", "-1", "--out", "OUT"],
    ["train", "--synth", "8", "--epochs", "1", "--seed", "-1", "--out", "OUT"],
    ["train", "--synth", "8", "--epochs", "1", "--threads", "-1", "--out", "OUT"],
])
def test_a_negative_count_or_seed_is_a_usage_error(tmp_path, argv):
    """The audit's command (eval --nuisance-seed -1) and its siblings: exit 2 naming the option, nothing written."""
    from pathlib import Path
    ckpt = Path(__file__).resolve().parents[1] / "models" / "demo" / "demo.pt"
    args = [{"CKPT": str(ckpt), "OUT": str(tmp_path / "out")}.get(a, a) for a in argv]
    r = CliRunner().invoke(main, args)
    bad = argv[argv.index("-1") - 1]
    assert r.exit_code == 2 and f"Invalid value for '{bad}'" in r.output and "Traceback" not in r.output, r.output
    assert not (tmp_path / "out").exists()
