"""The alarm-rate watch (runtime/alarm_watch.py): over the last N scored frames, the share flagged
against the threshold's calibrated false-alarm rate (exact one-sided binomial test). Unit tests on
seeded flag streams, checked against scipy's binomial tail frame by frame; the capture loop with a
scripted scorer (events where expected, frame lines as without the watch, error frames not counted);
the real demo model through ``edge-ad run``; the ROS node's ~/alarm_rate."""
from __future__ import annotations

import json
import threading
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats

from edge_ad.runtime import alarm_watch, binomial, calibrate
from edge_ad.runtime.alarm_watch import (HIGH_HINT, MIN_FRAMES, NORMAL_HINT, NORMAL_P, AlarmRateWatch,
                                         check_watch_settings, count_limits, watched_rate, watch_for)
from edge_ad.runtime.capture import run_capture
from edge_ad.runtime.sources import Frame, Source, open_source


def feed(watch: AlarmRateWatch, flags, start: int = 0) -> list:
    """The events of ``watch`` fed ``flags`` (results indices start, start + 1, ...)."""
    return [ev for i, f in enumerate(flags, start) if (ev := watch.add(bool(f), i)) is not None]


def reference_events(flags, rate: float, window: int, alpha: float, indices=None) -> list:
    """The watch's events computed the slow way: scipy's binomial tail of every window (the last
    ``window`` flags, tested from min(window, MIN_FRAMES) frames on), p < alpha fires, p >= NORMAL_P calms.
    [(event, last_index, frames, flagged, p)]."""
    indices = list(range(len(flags))) if indices is None else indices
    out, high = [], False
    for j in range(len(flags)):
        win = flags[max(0, j + 1 - window):j + 1]
        n, k = len(win), int(sum(win))
        if n < min(window, MIN_FRAMES):
            continue
        p = float(stats.binom.sf(k - 1, n, rate))
        if not high and p < alpha:
            high = True
            out.append(("alarm_rate_high", indices[j], n, k, p))
        elif high and p >= NORMAL_P:
            high = False
            out.append(("alarm_rate_normal", indices[j], n, k, p))
    return out


def as_tuples(events) -> list:
    return [(e["event"], e["last_index"], e["frames"], e["flagged"], e["p_value"]) for e in events]


def assert_same_events(got: list, want: list):
    assert [g[:4] for g in got] == [w[:4] for w in want], (got, want)
    for g, w in zip(got, want):
        assert g[4] == pytest.approx(w[4], rel=1e-9, abs=1e-300)


# ---------------------------------------------------------------------------------------------- unit

def test_calibrate_keeps_the_one_binomial_tail():
    """binomial_tail moved to runtime/binomial.py; calibrate's scene test uses that very function."""
    assert calibrate.binomial_tail is binomial.binomial_tail
    k, p = calibrate.scene_exceeds(np.array([0.1] * 45 + [2.0] * 5), 1.0, 0.05)
    assert k == 5 and p == pytest.approx(stats.binom.sf(4, 50, 0.05), rel=1e-9)


def test_count_limits_are_the_binomial_tests_critical_counts():
    """count_limits(n) (cached per window size; one frame more than a cached size moves each limit by 0 or 1): for every window
    size up to 300 it equals the counts read off scipy's binomial tail (fire: least count with tail <
    alpha; calm: largest with tail >= NORMAL_P)."""
    for rate, alpha in ((0.07, 1e-3), (0.05, 1e-4), (0.3, 1e-2)):
        for n in range(301):
            sf = stats.binom.sf(np.arange(-1, n + 1), n, rate)         # P(X >= k), k = 0 .. n + 1
            fire = int(np.argmax(sf < alpha))
            calm = int(np.nonzero(sf >= NORMAL_P)[0].max())
            assert count_limits(n, rate, alpha) == (fire, calm), (rate, alpha, n)


def test_count_limits_grown_frame_by_frame_equal_the_bisection(monkeypatch):
    """A size one frame above a cached one is derived from it (one tail per limit), a cold size by
    binomial.accepted_count's bisection: both give accepted_count's limits (fire = it at alpha + 1, calm =
    it at NORMAL_P) for every n in 1..400 at rate / alpha 0.01 / 1e-2, 0.05 / 1e-4, 0.07 / 1e-3, 0.3 / 1e-3,
    filled frame by frame (all derived but n = 1) and cold (every 7th n, largest first: each a bisection);
    a full cache is emptied, not grown, and its answers stay the same."""
    full = alarm_watch._MAX_LIMITS
    for rate, alpha in ((0.01, 1e-2), (0.05, 1e-4), (0.07, 1e-3), (0.3, 1e-3)):
        want = [(binomial.accepted_count(n, rate, alpha) + 1, binomial.accepted_count(n, rate, NORMAL_P))
                for n in range(1, 401)]
        monkeypatch.setattr(alarm_watch, "_LIMITS", {})
        assert [count_limits(n, rate, alpha) for n in range(1, 401)] == want, (rate, alpha)
        monkeypatch.setattr(alarm_watch, "_LIMITS", {})
        cold = list(range(400, 0, -7))
        assert [count_limits(n, rate, alpha) for n in cold] == [want[n - 1] for n in cold], (rate, alpha)
        assert len(alarm_watch._LIMITS) == len(cold)
        monkeypatch.setattr(alarm_watch, "_LIMITS", {})
        monkeypatch.setattr(alarm_watch, "_MAX_LIMITS", 30)
        assert [count_limits(n, rate, alpha) for n in range(1, 401)] == want, (rate, alpha)
        assert 0 < len(alarm_watch._LIMITS) <= 30
        monkeypatch.setattr(alarm_watch, "_MAX_LIMITS", full)


def test_filling_a_window_costs_at_most_two_tails_per_frame(monkeypatch):
    """Filling a 300-frame window (the watch's add, frame by frame) calls binomial_tail (the watch's own
    and accepted_count's) at most twice per frame after the first tested frame (a cold size: the
    bisection), and not at all once the window is full (session 23: a bisection per frame made filling
    a 1000-frame window 7x slower)."""
    calls = []
    real = binomial.binomial_tail

    def counting(k, n, p):
        calls.append(n)
        return real(k, n, p)

    monkeypatch.setattr(binomial, "binomial_tail", counting)        # accepted_count's
    monkeypatch.setattr(alarm_watch, "binomial_tail", counting)     # count_limits' own
    monkeypatch.setattr(alarm_watch, "_LIMITS", {})
    watch = AlarmRateWatch(0.07, window=300, alpha=1e-3)
    per_frame = []
    for i in range(400):
        before = len(calls)
        assert watch.add(i % 14 == 0, i) is None                    # the calibrated rate: no event
        per_frame.append(len(calls) - before)
    assert per_frame[:MIN_FRAMES - 1] == [0] * (MIN_FRAMES - 1)
    assert per_frame[MIN_FRAMES - 1] > 2                              # the first tested size: cold
    assert max(per_frame[MIN_FRAMES:300]) <= 2 and sum(per_frame[MIN_FRAMES:300]) >= 300 - MIN_FRAMES
    assert per_frame[300:] == [0] * 100                               # full: a cached size


def test_a_stream_at_the_calibrated_rate_rarely_fires():
    """At exactly the calibrated rate (0.07, window 200, alpha 1e-3): one seeded 5000-frame stream gives
    no event; over 40 seeded streams (200 000 frames) the watch fires about as often as the module
    docstring says (0.26 per 10 000 frames simulated: 5.2 expected here), each fire a separate one."""
    rate = 0.07
    rng = np.random.default_rng(1)
    watch = AlarmRateWatch(rate, window=200, alpha=1e-3)
    assert feed(watch, rng.random(5000) < rate) == []
    assert watch.state()["fired"] == 0 and watch.state()["state"] == "normal"
    fires = 0
    for seed in range(40):
        w = AlarmRateWatch(rate, window=200, alpha=1e-3)
        events = feed(w, np.random.default_rng(100 + seed).random(5000) < rate)
        assert [e["event"] for e in events] == ["alarm_rate_high", "alarm_rate_normal"] * (len(events) // 2) + (
            ["alarm_rate_high"] if len(events) % 2 else [])            # high and normal take turns
        fires += w.fired
    assert 1 <= fires <= 15, fires


def test_three_times_the_rate_fires_once_per_excursion():
    """Calibrated rate 0.05, then 3x (45 of 300 frames) for 300 frames, back, 3x again, back: one alarm_rate_high within
    the window of each excursion, one alarm_rate_normal after it, nothing in between; every event
    (frame, count, p) as scipy's binomial tail says, the fields as documented."""
    rate, window, alpha = 0.05, 200, 1e-3
    rng = np.random.default_rng(7)

    def excursion(n):   # exactly 3x the rate, at random frames (no lucky or unlucky draw of the share)
        f = np.zeros(n, bool)
        f[rng.choice(n, round(3 * rate * n), replace=False)] = True
        return f
    flags = np.concatenate([rng.random(1000) < rate, excursion(300), rng.random(1000) < rate, excursion(300),
                            rng.random(600) < rate]).tolist()
    watch = AlarmRateWatch(rate, window=window, alpha=alpha)
    events = feed(watch, flags)
    assert [e["event"] for e in events] == ["alarm_rate_high", "alarm_rate_normal"] * 2, as_tuples(events)
    high1, normal1, high2, normal2 = (e["last_index"] for e in events)
    assert 1000 <= high1 < 1000 + window and normal1 > 1300       # fired within the window of the excursion
    assert normal1 < 2300 <= high2 < 2300 + window and normal2 > 2600
    assert_same_events(as_tuples(events), reference_events(flags, rate, window, alpha))
    for e in events:
        assert e["window"] == window and e["frames"] == window and e["expected_rate"] == rate and e["alpha"] == alpha
        assert e["first_index"] == e["last_index"] - window + 1
        assert e["flagged"] == sum(flags[e["first_index"]:e["last_index"] + 1])
        assert e["hint"] == (HIGH_HINT if e["event"] == "alarm_rate_high" else NORMAL_HINT)
        assert (e["p_value"] < alpha) if e["event"] == "alarm_rate_high" else (e["p_value"] >= NORMAL_P)
    assert "edge-ad calibrate" in HIGH_HINT
    s = watch.state()
    assert (s["fired"], s["state"], s["frames"], s["flagged"]) == (2, "normal", window, sum(flags[-window:]))


def test_the_window_is_tested_from_min_frames_on():
    """Every frame flagged from the start: the first test is at MIN_FRAMES frames (not at 2 or 3: a short
    run of anomalies at start-up is not a rate), and a window smaller than MIN_FRAMES is tested when full."""
    events = feed(AlarmRateWatch(0.05, window=200), [True] * 120)
    assert as_tuples(events)[0][:4] == ("alarm_rate_high", MIN_FRAMES - 1, MIN_FRAMES, MIN_FRAMES)
    events = feed(AlarmRateWatch(0.05, window=10), [True] * 30)
    assert as_tuples(events)[0][:4] == ("alarm_rate_high", 9, 10, 10)


def test_no_watch_without_a_known_rate():
    """A watch needs the threshold to be the model's calibrated one and its rate; window 0 is off."""
    watch, why = watch_for(0.5, 0.5, 0.07, window=200, alpha=1e-3)
    assert isinstance(watch, AlarmRateWatch) and why is None and watch.expected_rate == 0.07
    for args, reason in [((None, 0.5, 0.07), "no threshold"),
                         ((0.6, 0.5, 0.07), "not the model's calibrated one"),
                         ((0.5, None, 0.07), "not the model's calibrated one"),
                         ((0.5, 0.5, None), "target_fpr"), ((0.5, 0.5, 0.0), "target_fpr"),
                         ((0.5, 0.5, 1.0), "target_fpr"), ((0.5, 0.5, float("nan")), "target_fpr"),
                         ((0.5, 0.5, True), "target_fpr")]:
        watch, why = watch_for(*args)
        assert watch is None and reason in why, (args, why)
    watch, why = watch_for(0.5, 0.5, 0.07, window=0)
    assert watch is None and "off" in why
    for window, alpha in [(-1, 1e-3), (1.5, 1e-3), (True, 1e-3), (200, 0.0), (200, NORMAL_P), (200, float("nan"))]:
        with pytest.raises(ValueError, match="alarm (window|alpha)"):
            check_watch_settings(window, alpha)
    with pytest.raises(ValueError, match="expected_rate"):
        AlarmRateWatch(0.0)


def test_the_threshold_is_tested_against_its_rates_upper_bound_given_n_normal():
    """A threshold read from n frames has a true rate Beta(k + 1, n - k): the watch tests against its
    upper 95 % bound (scipy's Beta quantile), not the rate as exact; no n_normal: the rate, said so."""
    for n, rate in ((50, 0.05), (400, 0.05), (400, 0.07), (300, 0.05)):
        scores = np.arange(n, dtype=float)                      # k = the frames above calibrate's quantile
        k = int((scores > calibrate.quantile_threshold(scores, rate)).sum())
        assert binomial.frames_above_quantile(n, rate) == k
        bound, how = watched_rate(rate, n)
        assert bound == pytest.approx(stats.beta.ppf(0.95, k + 1, n - k), rel=1e-9) and str(n) in how
    assert watched_rate(0.05, 50)[0] == pytest.approx(0.1206, abs=1e-4)
    for n in (None, 1, 2.5, True):
        assert watched_rate(0.05, n) == (0.05, "none: the threshold's n_normal is not recorded, its rate is taken as exact")
    watch = watch_for(0.5, 0.5, 0.05, model_n_normal=50)[0]
    assert watch.expected_rate == watched_rate(0.05, 50)[0]
    s = watch.state()
    assert (s["calibrated_rate"], s["n_normal"], s["expected_rate"]) == (0.05, 50, watch.expected_rate)
    assert watch_for(0.5, 0.5, 0.05)[0].state()["rate_bound"].startswith("none")



def test_a_raised_thresholds_recorded_count_sets_the_bound():
    """Review 22 #2: edge-ad calibrate's raised threshold lets up to frames_accepted of its n scene frames
    above it (4 of 50 at 4 %), not a quantile's 1: the watch bounds the rate with the recorded count
    (Beta(k + 1, n - k)), else it would test against a rate below the threshold's own and fire on normal
    frames. An unusable count (bool, >= n, negative, float) falls back to the quantile's."""
    bound, how = watched_rate(0.04, 50, 4)
    assert bound == pytest.approx(stats.beta.ppf(0.95, 5, 46), rel=1e-9) and "4 of its 50" in how
    assert bound > watched_rate(0.04, 50)[0] + 0.05             # 0.174 vs 0.091
    for bad in (True, 50, -1, 4.0, None):
        assert watched_rate(0.04, 50, bad) == watched_rate(0.04, 50)
    watch = watch_for(0.5, 0.5, 0.04, model_n_normal=50, model_frames_above=4)[0]
    assert watch.expected_rate == bound


def test_one_count_check_for_the_manifest_counts_and_the_window():
    """binomial.is_count, the one "whole int >= least, not a bool" check of the alarm window, watched_rate's
    n_normal / frames_above and the scorer's threshold_n_normal / threshold_frames_above: a manifest's True,
    4.0 or -1 is "not recorded" there (None), 0 frames above is a count."""
    assert binomial.is_count(0) and binomial.is_count(2, 2) and not binomial.is_count(1, 2)
    for bad in (True, False, 4.0, -1, None, "4"):
        assert not binomial.is_count(bad), bad
    assert check_watch_settings(0, 1e-3) == (0, 1e-3)
    from edge_ad.runtime import Scorer, demo_model_dir
    sc = Scorer.load(demo_model_dir())
    thr = sc._manifest["threshold"]        # the validated manifest it reads (sc.manifest hands out copies: audit 27 #5)
    for value, n_normal, frames_above in ((300, 300, 300), (1, 1, 1), (0, None, 0), (True, None, None),
                                          (300.0, None, None), (-1, None, None)):
        thr["n_normal"] = thr["frames_above"] = value
        assert (sc.threshold_n_normal, sc.threshold_frames_above) == (n_normal, frames_above), value
    assert watched_rate(0.04, 50, 0)[1].startswith("upper 95% bound of the true rate of a threshold that 0 of its 50")

def test_a_threshold_read_from_50_frames_rarely_fires_on_normal_frames():
    """Thresholds as edge-ad calibrate reads them from a scene's 50 frames at 5 % (the quantile of 50
    seeded uniform scores: true rate 1 - threshold, 0.01-0.15), 40 normal streams of 5000 frames each at
    that true rate: at most 15 false fires in 200 000 frames (7 here; the benchmark: 0.38 per 10 000, 7.6
    expected; tested against the rate as exact: 49 here, 2.73 per 10 000 in the benchmark). The same thresholds with frames
    flagged at 3x the calibrated rate (0.15) fire in nearly every stream."""
    def fires(flag_rate):
        total, streams_fired = 0, 0
        for s in range(40):
            rng = np.random.default_rng([11, s])
            thr = float(np.quantile(rng.random(50), 0.95, method="higher"))
            watch = watch_for(thr, thr, 0.05, window=200, alpha=1e-3, model_n_normal=50)[0]
            feed(watch, rng.random(5000) < (1 - thr if flag_rate is None else flag_rate))
            total, streams_fired = total + watch.fired, streams_fired + bool(watch.fired)
        return total, streams_fired
    assert fires(None)[0] <= 15
    assert fires(0.15)[1] >= 36


# --------------------------------------------------------------------------------------- the run loop

class ScriptedRateScorer:
    """Scores the frames it is asked for in turn (no preprocessing) and carries a calibrated threshold
    and its rate, as runtime.Scorer's ``threshold`` / ``threshold_rate``."""

    def __init__(self, scores, threshold: float = 1.0, threshold_rate=0.05):
        self.scores, self.threshold, self.threshold_rate = list(scores), threshold, threshold_rate

    def score(self, rgb, depth, z0=None, seed=None, **kw):
        return SimpleNamespace(score=self.scores.pop(0), timings={})


class WithBadFrames(Source):
    """synth:// frames with, during the excursion, an unreadable frame and a black colour frame (a
    sensor fault): error lines that must not count as scored frames."""

    uri = "with-bad-frames"

    def __init__(self, frames, bad_after: set):
        self.frames, self.bad_after = frames, bad_after

    def __iter__(self):
        for j, fr in enumerate(self.frames):
            yield fr
            if j in self.bad_after:
                yield Frame(f"unreadable-{j}", None, None, error="unreadable RGB: truncated")
                yield Frame(f"black-{j}", np.zeros_like(fr.rgb), fr.depth.copy())


@pytest.fixture(scope="module")
def synth_frames():
    return list(open_source("synth://?n=400&seed=4"))


def run_flags(tmp_path, name, frames, flags, **kw):
    """run_capture over ``frames`` (with two bad frames after scored frames 121 and 123, before the
    stretch fires) scoring 2.0 for a flagged frame, 0.5 else; returns (records, summary)."""
    out = tmp_path / f"{name}.jsonl"
    scorer = ScriptedRateScorer([2.0 if f else 0.5 for f in flags])
    summary = run_capture(WithBadFrames(frames, {121, 123}), scorer, threshold=kw.pop("threshold", 1.0), out=out,
                          handle_signals=False, **kw)
    return [json.loads(x) for x in out.read_text().splitlines()], summary


def test_run_capture_writes_the_watch_events_and_the_frames_as_without_it(tmp_path, synth_frames):
    """400 scored frames flagged at the calibrated 5 % (every 20th), with 40 in a row flagged from frame
    120 (a stretch of alarms) and 4 error frames in it: exactly one alarm_rate_high (the frame scipy's
    tail says, error frames not counted) and one alarm_rate_normal, each line right after its frame's
    line and given to on_alarm_rate; every frame and error line as in a run with --alarm-window 0; the
    summary records the watch."""
    flags = [j % 20 == 0 or 120 <= j < 160 for j in range(400)]
    heard = []
    recs, summary = run_flags(tmp_path, "watched", synth_frames, flags, alarm_window=100, alarm_alpha=1e-3,
                              on_alarm_rate=heard.append)
    recs_off, summary_off = run_flags(tmp_path, "off", synth_frames, flags, alarm_window=0)

    frames = [r for r in recs if r["type"] == "frame"]
    errors = [r for r in recs if r["type"] == "error"]
    assert len(frames) == 400 and len(errors) == 4 and [r["fault"] for r in errors if "fault" in r] == ["black_rgb"] * 2
    assert [r["anomalous"] for r in frames] == flags
    indices = [r["index"] for r in frames]                     # results indices skip the 4 error lines
    events = [r for r in recs if r.get("event", "").startswith("alarm_rate")]
    want = reference_events(flags, 0.05, 100, 1e-3, indices)
    assert [w[0] for w in want] == ["alarm_rate_high", "alarm_rate_normal"], want
    assert_same_events(as_tuples(events), want)
    for e in events:
        assert e["type"] == "event" and e["window"] == 100 and e["expected_rate"] == 0.05 and e["time"] > 0
        pos = recs.index(e)
        assert recs[pos - 1]["type"] == "frame" and recs[pos - 1]["index"] == e["last_index"]
        first = indices.index(e["last_index"]) - e["frames"] + 1
        assert e["first_index"] == indices[first]           # the window's first scored frame
    assert heard == events

    def same(r):   # a line as it must be with the watch off: latency is the only thing that may differ
        return {k: v for k, v in r.items() if k != "latency_ms"}
    assert [same(r) for r in recs if r["type"] in ("frame", "error")] == \
        [same(r) for r in recs_off if r["type"] in ("frame", "error")]
    assert not [r for r in recs_off if r.get("event", "").startswith("alarm_rate")]
    assert summary["anomalies"] == summary_off["anomalies"] == sum(flags)
    assert summary["frames_scored"] == 400 and summary["frame_errors"] == 4
    w = summary["alarm_watch"]
    assert (w["window"], w["alpha"], w["expected_rate"], w["fired"], w["state"]) == (100, 1e-3, 0.05, 1, "normal")
    assert w["n_normal"] is None and w["rate_bound"].startswith("none")   # the scripted scorer records no n
    assert (w["frames"], w["flagged"]) == (100, sum(flags[-100:])) and w["p_value"] >= NORMAL_P
    assert summary_off["alarm_watch"] == {"window": 0, "state": "off", "reason": "switched off (alarm window 0)"}
    assert recs[-1] == summary


def test_run_capture_without_the_models_rate_has_no_watch_and_says_so_once(tmp_path, synth_frames):
    """A --threshold override (not the model's calibrated threshold) or a model whose threshold carries
    no rate: no watch, one log line, the summary says why."""
    flags = [True] * 120
    for kw, reason in [({"threshold": 1.5}, "not the model's calibrated one"), ({}, None)]:
        logs = []
        out = tmp_path / f"r{len(kw)}.jsonl"
        scorer = ScriptedRateScorer([2.0] * 120, threshold_rate=0.05 if kw else None)
        summary = run_capture(WithBadFrames(synth_frames[:120], set()), scorer, out=out, handle_signals=False,
                              threshold=kw.get("threshold", 1.0), alarm_window=60, log=logs.append)
        recs = [json.loads(x) for x in out.read_text().splitlines()]
        assert sum(r["anomalous"] for r in recs if r["type"] == "frame") == len(flags)
        assert not [r for r in recs if r.get("event", "").startswith("alarm_rate")]
        off = [m for m in logs if m.startswith("alarm-rate watch off")]
        assert len(off) == 1 and (reason or "target_fpr") in off[0], logs
        assert summary["alarm_watch"]["state"] == "off" and (reason or "target_fpr") in summary["alarm_watch"]["reason"]
    with pytest.raises(ValueError, match="alarm alpha"):
        run_capture(WithBadFrames([], set()), ScriptedRateScorer([]), threshold=1.0, alarm_alpha=0.5,
                    out=tmp_path / "never.jsonl", handle_signals=False)
    assert not (tmp_path / "never.jsonl").exists()          # refused before the results file is touched


# ------------------------------------------------------------------------- edge-ad run, the demo model

def test_edge_ad_run_with_the_demo_model_reports_a_run_of_anomalies(tmp_path):
    """The shipped demo model (threshold calibrated at 5 %, Scorer.threshold_rate from its manifest) on
    synth:// with half the frames anomalous: --alarm-window 50 fires alarm_rate_high once, from the
    50th frame on; the summary line says so. --threshold: no watch, said once; --alarm-alpha out of range:
    usage error."""
    from edge_ad.commands import run as run_cmd
    from edge_ad.runtime import Scorer, demo_model_dir
    assert Scorer.load(demo_model_dir()).threshold_rate == 0.05
    src = "synth://?n=80&anomaly_rate=0.5&seed=3"
    out = tmp_path / "r.jsonl"
    r = CliRunner().invoke(run_cmd.cmd, ["--source", src, "--alarm-window", "50", "--out", str(out), "-q"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    events = [x for x in recs if x.get("event", "").startswith("alarm_rate")]
    assert [e["event"] for e in events] == ["alarm_rate_high"] and events[0]["last_index"] >= 49
    flags = [x["anomalous"] for x in recs if x["type"] == "frame"]
    e = events[0]
    bound = stats.beta.ppf(0.95, 15, 286)          # the demo threshold: 5 % of 300 normal frames, 14 above it
    assert Scorer.load(demo_model_dir()).threshold_n_normal == 300
    assert e["flagged"] == sum(flags[e["first_index"]:e["last_index"] + 1]) and e["expected_rate"] == pytest.approx(bound, rel=1e-9)
    assert (recs[-1]["alarm_watch"]["n_normal"], recs[-1]["alarm_watch"]["calibrated_rate"]) == (300, 0.05)
    assert recs[-1]["alarm_watch"]["fired"] == 1 and "alarm rate high 1 time(s)" in r.output
    # the summary line names the rate it tested (the bound), and the threshold's rate and n it came from
    assert f"tested against {bound:.3g}: the threshold's 0.05 read from 300 frames" in r.output

    thr = recs[-1]["threshold"] * 2
    r = CliRunner().invoke(run_cmd.cmd, ["--source", src, "--threshold", str(thr), "--alarm-window", "50",
                                         "--out", str(tmp_path / "o.jsonl")], catch_exceptions=False)
    assert r.exit_code == 0 and r.output.count("alarm-rate watch off") == 1, r.output
    assert "not the model's calibrated one" in r.output
    last = json.loads((tmp_path / "o.jsonl").read_text().splitlines()[-1])
    assert last["alarm_watch"]["state"] == "off" and "alarm rate high" not in r.output
    r = CliRunner().invoke(run_cmd.cmd, ["--source", src, "--alarm-alpha", "0.5"])
    assert r.exit_code == 2 and "--alarm-alpha" in r.output


def test_edge_ad_run_on_a_labelled_source_has_no_watch_unless_asked(tmp_path):
    """README's first command (the demo model on synth://, 20 % anomalies), 100 frames: the frames carry
    their truth, so by default the watch is off (one log line, the summary's reason) and nothing fires;
    --alarm-window 200 switches it on and the same frames fire alarm_rate_high (at frame ~72)."""
    from edge_ad.commands import run as run_cmd
    from edge_ad.runtime.capture import LABELLED_WATCH_OFF
    outs = {}
    for name, extra in (("auto", []), ("forced", ["--alarm-window", "200"])):
        outs[name] = tmp_path / f"{name}.jsonl"
        r = CliRunner().invoke(run_cmd.cmd, ["--max-frames", "100", "--out", str(outs[name]), "-q", *extra],
                               catch_exceptions=False)
        assert r.exit_code == 0, r.output
        recs = [json.loads(x) for x in outs[name].read_text().splitlines()]
        events = [x for x in recs if x.get("event", "").startswith("alarm_rate")]
        if name == "auto":
            assert not events and "alarm rate high" not in r.output
            assert recs[-1]["alarm_watch"] == {"window": 0, "state": "off", "reason": LABELLED_WATCH_OFF}
            assert r.output.count("alarm-rate watch off: the source labels its frames") == 1, r.output
            assert recs[-1]["truth"]["frames"] == 100            # what replaces it: recall, false alarms
        else:
            assert [e["event"] for e in events] == ["alarm_rate_high"], events
            assert "alarm rate high 1 time(s)" in r.output and "watch off" not in r.output


def test_labelled_sources_say_so_and_run_capture_decides_on_it(tmp_path, synth_frames):
    """synth:// and labelled folders set Source.labelled; run_capture's default (None, auto) is off for
    such a source and on (DEFAULT_WINDOW) for another; an explicit window is on for both."""
    from edge_ad.runtime.capture import LABELLED_WATCH_OFF
    from edge_ad.runtime.sources.labelled import LabelledFolderSource
    assert open_source("synth://?n=1").labelled and LabelledFolderSource.labelled and not Source.labelled
    flags = [True] * 60

    class Labelled(WithBadFrames):
        labelled = True
    for cls, window, state in ((Labelled, None, "off"), (WithBadFrames, None, "high"), (Labelled, 50, "high")):
        scorer = ScriptedRateScorer([2.0] * 60, threshold_rate=0.05)
        summary = run_capture(cls(synth_frames[:60], set()), scorer, threshold=1.0, alarm_window=window,
                              out=tmp_path / f"{cls.__name__}{window}.jsonl", handle_signals=False)
        w = summary["alarm_watch"]
        assert w["state"] == state and summary["anomalies"] == sum(flags), (cls, window, w)
        assert (w["reason"] == LABELLED_WATCH_OFF) if state == "off" else (w["window"] == (window or 200))


# --------------------------------------------------------------------------------------------- ROS 2

def test_the_ros_node_publishes_the_watch_events_on_alarm_rate(tmp_path, monkeypatch, synth_frames):
    """ResultPublisher.alarm_rate publishes each event line as JSON on ~/alarm_rate; the node passes
    alarm_window / alarm_alpha to run_capture and its hook (fake rclpy, as test_ros)."""
    import edge_ad.runtime.capture as capture
    from edge_ad.jetson import ros2_node
    from test_ros import fake_ros, publisher, ros_msgs

    published, hook = publisher()
    published["alarm"] = []
    hook.publish_alarm_rate = published["alarm"].append
    src = ros2_node.TopicSource(stale_s=5.0)
    out = tmp_path / "r.jsonl"
    stop, result = threading.Event(), {}
    scorer = ScriptedRateScorer([2.0] * 25)
    t = threading.Thread(target=lambda: result.update(run_capture(
        src, scorer, threshold=1.0, out=out, on_result=hook, on_error=hook.fault, on_alarm_rate=hook.alarm_rate,
        alarm_window=20, stop=stop, handle_signals=False)))
    t.start()
    for n, (c, d) in enumerate(ros_msgs(synth_frames[:25]), start=1):
        src.push(c, d)
        while len(published["flag"]) < n and t.is_alive():
            t.join(0.005)
    stop.set()
    t.join(10)
    assert not t.is_alive() and result["frames_scored"] == 25
    events = [json.loads(x) for x in out.read_text().splitlines() if '"alarm_rate_' in x]
    assert [e["event"] for e in events] == ["alarm_rate_high"] and events[0]["last_index"] == 19
    assert [json.loads(m["data"]) for m in published["alarm"]] == events

    seen_kw = {}
    monkeypatch.setattr(capture, "run_capture", lambda *a, **kw: seen_kw.update(kw) or {"stopped": "end"})
    seen = fake_ros(monkeypatch, {"alarm_window": 30, "alarm_alpha": 0.01}, scorer=scorer)
    assert ros2_node.main([]) == 0
    assert (seen_kw["alarm_window"], seen_kw["alarm_alpha"]) == (30, 0.01)
    seen_kw["on_alarm_rate"](events[0])
    assert [json.loads(m["data"]) for m in seen["~/alarm_rate"]] == events
    for name, value in (("alarm_window", -1), ("alarm_alpha", 0.2)):
        with pytest.raises(ros2_node.ParameterError, match=f"parameter {name}"):
            ros2_node.node_settings({name: value})
