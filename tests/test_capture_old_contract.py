"""run_capture keeps the older documented contract: a scorer whose ``score(rgb, depth, z0=None,
seed=None)`` has no ``check_faults`` keyword, and a plain iterable of Frames as the source (review 17b #1)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np

from edge_ad.runtime.capture import run_capture
from edge_ad.runtime.sources import Frame, Source, open_source


class Frames(Source):
    def __init__(self, frames):
        self.frames = frames

    def __iter__(self):
        return iter(self.frames)


class OldScorer:
    """The older contract: no check_faults, no **kwargs, no score_uint8; scores the mean RGB level."""

    def __init__(self):
        self.calls = 0

    def score(self, rgb, depth, z0=None, seed=None):
        self.calls += 1
        return SimpleNamespace(score=float(np.asarray(rgb).mean()) / 255.0, timings={})


def lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_a_scorer_without_check_faults_scores_and_the_loop_still_reports_faults(tmp_path):
    frames = list(open_source("synth://?n=4&seed=2"))
    black = Frame("black", np.zeros_like(frames[0].rgb), frames[0].depth.copy())
    scorer = OldScorer()
    out = tmp_path / "r.jsonl"
    summary = run_capture(Frames(frames[:2] + [black] + frames[2:]), scorer, threshold=0.5, out=out, handle_signals=False)
    recs = lines(out)
    assert summary["stopped"] == "end" and "fatal_error" not in summary, summary
    assert summary["frames_scored"] == 4 == scorer.calls                    # the black frame never scored
    assert summary["sensor_faults"] == {"black_rgb": 1}
    errors = [r for r in recs if r["type"] == "error"]
    assert [(r["frame"], r["fault"]) for r in errors] == [("black", "black_rgb")]
    assert [r["frame"] for r in recs if r["type"] == "frame"] == [f.id for f in frames]


def test_a_list_of_frames_is_a_source(tmp_path):
    frames = list(open_source("synth://?n=3&seed=1"))
    out = tmp_path / "r.jsonl"
    summary = run_capture(frames, OldScorer(), threshold=0.5, out=out, handle_signals=False)
    assert summary["frames_scored"] == 3 and summary["stopped"] == "end"
    assert [r["frame"] for r in lines(out) if r["type"] == "frame"] == [f.id for f in frames]
    gen = (f for f in frames)                                  # a generator too, closed at the end
    summary = run_capture(gen, OldScorer(), threshold=0.5, out=tmp_path / "g.jsonl", handle_signals=False)
    assert summary["frames_scored"] == 3 and gen.gi_frame is None


def test_the_adapters_decide_once_from_what_the_objects_have():
    from edge_ad.runtime.capture import FrameSource, takes_check_faults
    assert not takes_check_faults(OldScorer().score)
    assert takes_check_faults(lambda rgb, depth, check_faults=True: None)
    assert takes_check_faults(lambda rgb, depth, **kw: None)

    class Old(list):
        uri, live, stream = "old://x", False, False
        events = [{"event": "note"}]
    src = FrameSource(Old())
    assert (src.uri, src.live, src.stream) == ("old://x", False, False) and src.events is Old.events
    plain = FrameSource([])
    assert (plain.uri, plain.live, plain.stream, plain.events) == ("", False, True, [])
