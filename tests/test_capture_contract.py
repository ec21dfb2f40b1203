"""The capture loop's small contracts that a one-character change breaks silently: the threshold
comparison (a score equal to the calibrated threshold is normal), every JSON line on disk as soon as it
is written (checked while the run is still going), and the reconnect backoff's cap (many failed reopens
on a recorded clock: the wait never exceeds it)."""
from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from types import SimpleNamespace

from edge_ad.runtime.capture import run_capture
from edge_ad.runtime.sources import Frame, Source, SourceError, open_source


class ScriptedScorer:
    """Returns the given scores in turn (no preprocessing: the loop's own logic is under test)."""

    def __init__(self, scores):
        self.scores = list(scores)

    def score(self, rgb, depth, z0=None, seed=None, **kw):
        return SimpleNamespace(score=self.scores.pop(0), timings={})


def test_score_equal_to_the_threshold_is_normal(tmp_path):
    """The threshold is calibrated as a normal score (a quantile of normal val scores): anomalous means
    strictly above it."""
    thr = 0.5
    scores = [thr, thr + 1e-9, thr - 1e-9, thr]
    out = tmp_path / "r.jsonl"
    summary = run_capture(open_source(f"synth://?n={len(scores)}&seed=1"), ScriptedScorer(scores), threshold=thr,
                          out=out, handle_signals=False)
    frames = [json.loads(x) for x in out.read_text().splitlines() if json.loads(x)["type"] == "frame"]
    assert [r["anomalous"] for r in frames] == [False, True, False, False]
    assert summary["anomalies"] == 1


def test_each_line_is_on_disk_while_the_run_goes_on(tmp_path):
    """Read the results file from the per-result callback: the line of the frame just scored is already
    complete on disk (not in a buffer), with every line before it."""
    out = tmp_path / "r.jsonl"
    seen = []

    def on_result(rec, frame, res):
        text = out.read_text(encoding="utf-8")
        assert text.endswith("\n"), f"frame {rec['index']}: the file ends mid-line or is empty: {text[-80:]!r}"
        lines = [json.loads(x) for x in text.splitlines()]
        assert lines[-1] == rec, f"frame {rec['index']}: its line is not on disk yet ({len(lines)} lines)"
        seen.append(len(lines))

    run_capture(open_source("synth://?n=4&seed=2"), ScriptedScorer([0.1, 0.2, 0.3, 0.4]), threshold=0.25,
                out=out, on_result=on_result, handle_signals=False)
    assert seen == [1, 2, 3, 4]


class _RecordedClock(threading.Event):
    """A stop event whose ``wait(t)`` records t and returns at once (a fake clock for the backoff)."""

    def __init__(self):
        super().__init__()
        self.waits = []

    def wait(self, timeout=None):
        self.waits.append(timeout)
        return self.is_set()


class _Unplugged(Source):
    """A live camera that fails as soon as it is read."""

    live, uri = True, "fake://unplugged"

    def __iter__(self):
        raise SourceError("camera unplugged")
        yield  # pragma: no cover  (a generator)


class _Empty(Source):
    """The camera after it came back: ends at once (the run then stops normally)."""

    live, uri = True, "fake://back"

    def __iter__(self):
        return iter(())


def test_reconnect_backoff_doubles_up_to_its_cap(tmp_path):
    fails = 14
    attempts = []

    def reopen():
        attempts.append(1)
        if len(attempts) <= fails:
            raise SourceError("camera not found")
        return _Empty()

    clock = _RecordedClock()
    summary = run_capture(_Unplugged(), ScriptedScorer([]), out=tmp_path / "r.jsonl", reopen=reopen, stop=clock,
                          backoff=(0.5, 10.0), handle_signals=False)
    assert len(attempts) == fails + 1 and summary["outages"] == 1 and summary["stopped"] == "end"
    waits = clock.waits
    assert len(waits) >= fails + 1
    assert max(waits) <= 10.0, f"a reopen waited {max(waits)} s, beyond the 10 s cap: {waits}"
    assert waits[:6] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0] and waits[fails] == 10.0


def test_a_non_finite_score_is_an_error_line_not_a_result(tmp_path):
    """A NaN or infinite score (a broken model or input) is reported as that frame's error, never written
    as a score (or judged normal), and the run goes on."""
    out = tmp_path / "r.jsonl"
    summary = run_capture(open_source("synth://?n=4&seed=3"), ScriptedScorer([0.1, float("nan"), float("inf"), 0.7]),
                          threshold=0.5, out=out, handle_signals=False)
    lines = [json.loads(x) for x in out.read_text().splitlines()]           # strict JSON: no NaN written
    frames = [r for r in lines if r["type"] == "frame"]
    errors = [r for r in lines if r["type"] == "error"]
    assert [r["index"] for r in frames] == [0, 3] and [r["anomalous"] for r in frames] == [False, True]
    assert [r["index"] for r in errors] == [1, 2]
    assert "score is nan" in errors[0]["error"] and "score is inf" in errors[1]["error"]
    assert summary["frames_scored"] == 2 and summary["frame_errors"] == 2 and summary["anomalies"] == 1


def test_readme_names_the_summary_fields_the_run_writes(tmp_path):
    """The docs' list of the run summary's fields (docs/sources-and-results.md, moved there from README) names
    real keys (it said "frames" for frames_scored)."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "sources-and-results.md").read_text(encoding="utf-8")
    listed = text[text.index("a final `summary` ("):].split("`search`:")[0]     # the field list
    names = re.findall(r"`([a-z_0-9]+)`", listed)[1:]                          # [0] is `summary`
    summary = run_capture(open_source("synth://?n=2&seed=1"), ScriptedScorer([0.1, 0.2]), threshold=0.15,
                          out=tmp_path / "r.jsonl", handle_signals=False)
    assert {"frames_scored", "anomalies", "fps", "latency_ms"} <= set(names), names
    for name in names:
        assert name in summary or name in summary["latency_ms"], f"docs/sources-and-results.md names {name!r}, not a summary key"
