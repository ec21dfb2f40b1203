"""The Source and scorer interfaces the run loop reads, declared instead of probed: every Source has
``live``, ``stats``, ``warnings`` and ``events`` (defaults on the base class), a subclass that defines
only ``__iter__`` runs through run_capture and ``edge-ad run``, and the loop calls a scorer's
``score`` with ``check_faults=False`` (``ScorerLike``), ``edge-ad run``'s pictures with
``keep_reconstructions=True``, without looking at its signature first."""
from __future__ import annotations

import importlib
import json
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from edge_ad.runtime.capture import run_capture
from edge_ad.runtime.preprocess import PreprocessSpec, preprocess
from edge_ad.runtime.sources import Source, open_source

MODULES = ["edge_ad.runtime.sources." + m for m in
           ("base", "folder", "labelled", "synth_source", "realsense", "oak", "rosbag")] + ["edge_ad.jetson.ros2_node"]


def _subclasses(cls) -> list:
    out = []
    for sub in cls.__subclasses__():
        out += [sub] + _subclasses(sub)
    return out


def shipped_sources() -> list:
    for m in MODULES:
        importlib.import_module(m)
    return sorted({c for c in _subclasses(Source) if c.__module__ in MODULES}, key=lambda c: c.__name__)


def test_every_shipped_source_is_found():
    assert {c.__name__ for c in shipped_sources()} >= {
        "FolderSource", "LabelledFolderSource", "SynthSource", "RealSenseCamera", "RealSenseRecording",
        "OakSource", "RosbagSource", "TopicSource"}


@pytest.mark.parametrize("cls", shipped_sources(), ids=lambda c: c.__name__)
def test_every_source_has_the_declared_attributes(cls):
    """Before a subclass's own __init__ has run (the base's defaults) and per instance: live a bool,
    stats None or a dict, warnings and events lists that no two instances share."""
    a, b = cls.__new__(cls), cls.__new__(cls)
    assert isinstance(a.live, bool) and isinstance(a.stream, bool) and isinstance(a.uri, str)
    assert a.stats is None or isinstance(a.stats, dict)
    for name in ("warnings", "events"):
        assert getattr(a, name) == [] and getattr(a, name) is not getattr(b, name)
        getattr(a, name).append("x")
        assert getattr(a, name) == ["x"] and getattr(b, name) == []


def test_opened_sources_keep_their_own_values(tmp_path):
    synth = open_source("synth://?n=2")
    assert synth.live is False and synth.stats is None and synth.events == [] and synth.warnings == []
    from edge_ad.jetson.ros2_node import TopicSource
    topic = TopicSource("ros2://a+b", 1.0)
    assert topic.live is True and topic.stats == {"replaced_before_decode": 0}


class OnlyIter(Source):
    """A Source that defines nothing but __iter__."""

    def __iter__(self):
        yield from open_source("synth://?n=3&seed=1")


class ScoreOnly:
    """A scorer with only ``score`` (no score_uint8, spec, threshold, identity): records its keywords."""

    def __init__(self):
        self.kwargs = []

    def score(self, rgb, depth, z0=None, seed=None, check_faults=True, **kw):
        self.kwargs.append({"check_faults": check_faults, **kw})
        x = preprocess(rgb, depth, PreprocessSpec())
        err = (x ** 2).mean(axis=0).astype(np.float32)
        return SimpleNamespace(score=float(err.mean()), error_map=err, reconstruction=-x,
                               timings={"preprocess_s": 0.001, "search_s": 0.002})


def test_a_source_with_only_iter_runs_through_run_capture(tmp_path):
    sc = ScoreOnly()
    out = tmp_path / "r.jsonl"
    summary = run_capture(OnlyIter(), sc, threshold=0.5, out=out, handle_signals=False)
    assert summary["frames_scored"] == 3 and summary["stopped"] == "end" and summary["source"] == ""
    assert "source_stats" not in summary and summary["skipped"] == 0
    assert sc.kwargs == [{"check_faults": False}] * 3     # faults checked once, by the loop
    frames = [r for r in map(json.loads, out.read_text().splitlines()) if r["type"] == "frame"]
    assert len(frames) == 3 and frames[0]["latency_ms"]["search"] == 2.0     # seconds read as seconds


def test_run_capture_reads_an_iterable_and_refuses_what_is_not_one():
    """A plain list of Frames is read through capture.FrameSource (review 17b #1: the older contract);
    something that is not iterable is refused before the run, naming it."""
    summary = run_capture([], ScoreOnly(), handle_signals=False)
    assert (summary["frames_scored"], summary["stopped"], summary["source"]) == (0, "end", "")
    with pytest.raises(TypeError, match="a runtime.sources.Source or an iterable of Frames, got int"):
        run_capture(5, ScoreOnly(), handle_signals=False)


def test_edge_ad_run_with_a_source_with_only_iter(tmp_path, monkeypatch):
    """edge-ad run on OnlyIter (open_source patched): every frame scored, its warnings (none) read as
    plain attributes, and --save-anomalies asks the scorer for its reconstructions."""
    import edge_ad.runtime.sources as sources
    from edge_ad.commands import run as run_cmd
    from edge_ad.runtime.capture import EXIT_OK
    sc = ScoreOnly()
    monkeypatch.setattr(sources, "open_source", lambda uri, **kw: OnlyIter())
    monkeypatch.setattr(run_cmd, "load_scorer", lambda model, backend, **kw: sc)
    out = tmp_path / "r.jsonl"
    r = CliRunner().invoke(run_cmd.cmd, ["--source", "only-iter://", "--threshold", "1e-9", "--out", str(out),
                                         "--save-anomalies", str(tmp_path / "anom"), "-q"])
    assert r.exit_code == EXIT_OK, r.output
    assert sc.kwargs == [{"check_faults": False, "keep_reconstructions": True}] * 3
    assert len(list((tmp_path / "anom").iterdir())) == 3 * 5


def test_is_live_is_still_exported():
    """Review 17b #7: runtime.sources.is_live was in __all__; it stays, a thin reader of Source.live."""
    from edge_ad.runtime import sources
    assert "is_live" in sources.__all__
    assert sources.is_live(open_source("synth://?n=1")) is False
    assert sources.is_live(SimpleNamespace(live=True)) is True and sources.is_live([]) is False
