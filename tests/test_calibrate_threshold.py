"""edge-ad calibrate's threshold rule (runtime/calibrate/threshold.py choose_threshold): the model's own threshold,
read from hundreds of normal frames, is kept at its own rate unless the scene's held-out frames exceed it
significantly (one-sided binomial test), then raised to the lowest threshold the same test accepts; a few
dozen frames' tail quantile alone was as noisy as one frame."""
from __future__ import annotations

import numpy as np
import pytest

from edge_ad.runtime import calibrate as cal

from conftest import copy_frames


def _fake_held_out(monkeypatch, scores):
    """calibrate_model's held-out scores set by the test: ``scores()`` (n,) in place of held_out_scores. The
    pixel distances those would have used (each scene frame's, and its held-out one to the grown pixel
    memory: the shipped rectangle's 2100 rows, R_p 3, ~3/4 of a calibration's time) are not measured:
    nothing reads them (NaN would show in the threshold if something did)."""
    from edge_ad.runtime.calibrate import memories          # where calibrate_model grows the memories
    from edge_ad.runtime.scorer import Scorer
    monkeypatch.setattr(memories, "held_out_scores", lambda base, *a, **k: scores()[:len(base)])
    monkeypatch.setattr(memories, "PixelMemory", lambda *a, **k: None)
    monkeypatch.setattr(memories, "held_out_pixel_distances", lambda memory, inputs, n, *a, **k: np.full(n, np.nan))
    monkeypatch.setattr(Scorer, "pixel_distance", lambda self, x: 1e-3)


@pytest.mark.parametrize("k,n,p", [(0, 10, 0.3), (1, 1, 0.5), (3, 50, 0.04), (6, 50, 0.04), (50, 50, 0.04),
                                   (51, 50, 0.04), (5, 20, 0.0), (3, 24, 0.07)])
def test_binomial_tail_is_the_exact_upper_tail(k, n, p):
    from fractions import Fraction
    from math import comb
    q = Fraction(p)                                          # exact rational arithmetic, then one rounding
    exact = float(sum(comb(n, j) * q ** j * (1 - q) ** (n - j) for j in range(max(k, 0), n + 1))) if k <= n else 0.0
    assert cal.binomial_tail(k, n, p) == pytest.approx(exact, rel=1e-9, abs=1e-300)


@pytest.mark.parametrize("k,n,p", [(120, 1000, 0.1), (400, 4000, 0.08), (300, 4000, 0.08), (2, 5000, 0.001)])
def test_binomial_tail_of_many_frames_matches_scipy(k, n, p):
    stats = pytest.importorskip("scipy.stats")
    assert cal.binomial_tail(k, n, p) == pytest.approx(stats.binom.sf(k - 1, n, p), rel=1e-9)


def _scores_with(n_above: int, n: int = 50, seed: int = 0) -> np.ndarray:
    """n held-out scores, exactly n_above of them above 1: below in (0.2, 0.9), above in (1.3, 1.6)."""
    rng = np.random.default_rng(seed)
    return np.r_[rng.uniform(0.2, 0.9, n - n_above), rng.uniform(1.3, 1.6, n_above)]


def _choose(scores, fpr, model_threshold, same_rate) -> tuple:
    """(threshold, rule, test) of choose_threshold on these inputs; its scene_quantile, in every branch, is
    the scores' (1 - fpr) quantile (the calibration's threshold_scene, not recomputed by calibrate_model)."""
    choice = cal.choose_threshold(cal.ThresholdInputs(scores, fpr, model_threshold, same_rate))
    assert choice.scene_quantile == cal.quantile_threshold(scores, fpr)
    return choice.threshold, choice.rule, choice.test


def test_threshold_inputs_are_checked_and_frozen():
    """The rule's inputs, built once: scores stored as a tuple of floats (from any sequence), no scores or a
    rate outside (0, 1) refused naming the problem, and nothing can be reassigned afterwards."""
    import dataclasses
    inputs = cal.ThresholdInputs(np.array([0.5, 2.0]), 0.05, 1.0, True)
    assert inputs.held_out == (0.5, 2.0) and inputs.what == "the model's own threshold"
    with pytest.raises(dataclasses.FrozenInstanceError):
        inputs.fpr = 0.1
    with pytest.raises(cal.CalibrationError, match=r"needs the scene's held-out scores, got none"):
        cal.ThresholdInputs([], 0.05, 1.0, True)
    with pytest.raises(cal.CalibrationError, match=r"rate must be in \(0, 1\), got 1.5"):
        cal.ThresholdInputs([1.0], 1.5, None, False)


def test_model_threshold_kept_when_the_scene_is_consistent_with_its_rate():
    """3 of 50 frames above a threshold set at 4 %: expected 2, P(>= 3) = 0.32: no evidence against it.
    The quantile rule would have taken the 2nd-highest score (~1.5), 1.5x above every other normal."""
    s = _scores_with(3)
    thr, rule, test = _choose(s, 0.04, 1.0, same_rate=True)
    assert thr == 1.0 and "model's own threshold" in rule
    assert test["frames_above_model_threshold"] == 3 and test["binomial_p"] == pytest.approx(0.3233, abs=1e-3)
    assert cal.quantile_threshold(s, 0.04) > 1.3          # what the old rule returned


@pytest.mark.parametrize("n,fpr,k", [(50, 0.04, 4), (50, 0.07, 7), (50, 0.08, 7), (24, 0.07, 4), (40, 0.05, 4),
                                     (20, 0.04, 2), (3, 0.5, 3)])
def test_frames_accepted_is_the_tests_edge(n, fpr, k):
    """The most frames above a threshold that scene_exceeds does not refute: one more is refuted."""
    assert cal.frames_accepted(n, fpr) == k
    assert cal.binomial_tail(k, n, fpr) >= cal.SCENE_TEST_ALPHA
    assert k == n or cal.binomial_tail(k + 1, n, fpr) < cal.SCENE_TEST_ALPHA


def test_one_accepted_count_for_calibrate_and_the_alarm_watch():
    """calibrate's frames_accepted and the alarm watch's count_limits are one search (binomial.accepted_count,
    a bisection on k): over n 1..60, 100, 200, 300, rates 0.01-0.2 (the shipped models' 4, 7, 8 % among them)
    and the alphas in use (calibrate's SCENE_TEST_ALPHA, the watch's NORMAL_P and DEFAULT_ALPHA) each equals
    the brute-force answer read off scipy's tail at every k: frames_accepted the largest k with P(X >= k) >=
    SCENE_TEST_ALPHA; count_limits' fire the least k with P(X >= k) < alpha, calm the largest with >= NORMAL_P.
    (Before the bisection both were linear scans of binomial_tail; the two agree on all of n 0..300, 22 rates
    0.01-0.5 and alphas 0.05, 1e-2, 1e-3, 1e-4: 33110 cases, session 23, 2.5 min: too slow for the suite;
    test_alarm_watch checks count_limits on every n 0..400 of a window filled frame by frame.)"""
    stats = pytest.importorskip("scipy.stats")
    from edge_ad.runtime.alarm_watch import DEFAULT_ALPHA, NORMAL_P, count_limits
    for fpr in (0.01, 0.02, 0.04, 0.05, 0.07, 0.08, 0.1, 0.2):
        for n in [*range(1, 61), 100, 200, 300]:
            tail = stats.binom.sf(np.arange(-1, n + 1), n, fpr)        # P(X >= k), k = 0 .. n + 1 (0 there)

            def largest_accepted(alpha):
                return int(np.nonzero(tail >= alpha)[0].max())

            assert cal.frames_accepted(n, fpr) == largest_accepted(cal.SCENE_TEST_ALPHA), (n, fpr)
            fire = int(np.argmax(tail < DEFAULT_ALPHA))
            assert count_limits(n, fpr, DEFAULT_ALPHA) == (fire, largest_accepted(NORMAL_P)), (n, fpr)


def test_accepted_count_at_the_edges():
    """No frames: 0. A rate-0 threshold: no frame may be above it; a rate-1 one: all n. alpha 0 refutes
    nothing (n); alpha 1 accepts only a tail of 1 (k = 0 here: P(X >= 1) = 1 - 0.93^50 < 1); alpha > 1
    accepts no k, not even 0's P(X >= 0) = 1: 0 (the docstring's "0 when none")."""
    from edge_ad.runtime.binomial import accepted_count
    assert [accepted_count(0, p, a) for p in (0.0, 0.07, 1.0) for a in (0.0, 0.05, 1.0, 1.5)] == [0] * 12
    assert [accepted_count(50, 0.0, a) for a in (1e-300, 0.05, 1.0, 1.5)] == [0, 0, 0, 0]
    assert accepted_count(50, 0.0, 0.0) == 50                     # P(X >= k) = 0 >= 0: every k
    assert [accepted_count(50, 1.0, a) for a in (0.0, 0.05, 1.0)] == [50, 50, 50]
    assert accepted_count(50, 1.0, 1.5) == 0
    assert [accepted_count(50, 0.07, a) for a in (0.0, 1.0, 1.5)] == [50, 0, 0]
    assert accepted_count(50, 0.07, 0.05) == 7 and accepted_count(1, 0.07, 0.05) == 1


def test_a_refuted_threshold_is_raised_only_as_far_as_the_scene_asks():
    """8 of 50 frames above a threshold set at 4 % (P(>= 8) = 0.00078): raised to the lowest threshold the
    same test accepts, the 5th-highest score (4 above it: P(>= 4) = 0.14), not to the scene's 96 %
    quantile, the 2nd-highest (session 22: sphere's scene M, 6 of 50 above, the quantile 1.60x the model's
    flagged 81.5 %, the lowest accepted 1.11x 92.5 %, both 2 % false alarms on the rest of the scene)."""
    s = _scores_with(8)
    thr, rule, test = _choose(s, 0.04, 1.0, same_rate=True)
    top = np.sort(s)[::-1]
    assert thr == top[4] and (s > thr).sum() == 4 and thr < cal.quantile_threshold(s, 0.04) == top[1]
    assert cal.scene_exceeds(s, thr, 0.04)[1] >= cal.SCENE_TEST_ALPHA          # accepted by the same test
    assert cal.scene_exceeds(s, top[5], 0.04)[1] < cal.SCENE_TEST_ALPHA        # the next lower one is not
    assert rule.startswith("raised: 8 of 50 scene frames above the model's own threshold")
    assert "lowest threshold they accept (4 of 50 above it, p = 0.14)" in rule and "quantile: " in rule
    assert test["binomial_p"] < cal.SCENE_TEST_ALPHA and test["frames_accepted"] == 4
    assert test["frames_above_threshold"] == 4 and test["scene_quantile"] == top[1]
    assert test["binomial_p_at_threshold"] == pytest.approx(0.1391, abs=1e-3)


def test_one_frame_more_moves_the_threshold_by_one_frame():
    """The kept and the raised threshold pass the same test: 4 of 50 above at 4 % keeps the model's
    threshold (p 0.14), 5 above (p 0.049) raises it just past the lowest of them, not to the 2nd-highest
    score (the quantile rule made the threshold jump with the 5th frame)."""
    kept = _scores_with(4)
    assert _choose(kept, 0.04, 1.0, same_rate=True)[0] == 1.0
    five = _scores_with(5)
    thr = _choose(five, 0.04, 1.0, same_rate=True)[0]
    assert thr == np.sort(five)[-5] and (five > thr).sum() == 4 and 1.0 < thr < np.sort(five)[-2]


def test_other_rates_and_no_model_threshold_keep_the_quantile_rules():
    """... and their record holds the count above the threshold (no binomial test ran)."""
    s = _scores_with(3)
    q = cal.quantile_threshold(s, 0.04)
    thr, rule, test = _choose(s, 0.04, None, same_rate=True)
    assert (thr, rule) == (q, "scene quantile") and test == {"frames": 50, "frames_above_threshold": 1}
    low = _scores_with(0)                                   # every frame below the model's threshold
    thr, rule, test = _choose(low, 0.04, 1.0, same_rate=False)   # set at a higher rate: a floor
    assert thr == 1.0 and rule.startswith("max(") and test == {"frames": 50, "frames_above_threshold": 0}
    thr, _, test = _choose(s, 0.04, 1.0, same_rate=False)
    assert thr == q and test["frames_above_threshold"] == 1 == (s > q).sum()


def test_every_branchs_record_counts_the_frames_above_its_threshold():
    """The record's frames_above_threshold is the count above the threshold returned, whichever branch
    (kept: the model's threshold; raised; the quantile; the floored quantile), on scores with ties too."""
    rng = np.random.default_rng(3)
    for n_above in range(0, 12):
        s = np.round(_scores_with(n_above, 40, seed=n_above), 1)          # ties at 0.1 resolution
        for model, same in ((1.0, True), (None, True), (1.0, False), (0.5, False), (rng.uniform(0.3, 1.4), True)):
            thr, _, test = _choose(s, 0.05, model, same_rate=same)
            assert test["frames"] == 40 and test["frames_above_threshold"] == int((s > thr).sum()), (n_above, model)


def _replays(inputs, out) -> None:
    """choose_threshold on what calibrate_model handed its on_threshold_inputs hook (a ThresholdInputs, saved
    as a dict by models/kinect-rgbd/new_scene.py and rebuilt from it) gives the threshold, rule text, test
    record and scene quantile written to ``out``'s manifest (what new_scene.py's offline studies rely on)."""
    import json
    man = json.loads((out / "manifest.json").read_text())
    saved = json.loads(json.dumps(inputs.as_dict()))                  # new_scene.py's per_frame, read back
    assert cal.ThresholdInputs(**saved) == inputs
    choice = cal.choose_threshold(cal.ThresholdInputs(**saved))
    c = man["calibration"]
    assert choice.threshold == man["threshold"]["value"] and c["threshold_floor"] == inputs.model_threshold
    assert choice.rule == c["threshold_rule"] and choice.test == c["threshold_test"]
    assert choice.scene_quantile == c["threshold_scene"]


def test_calibrate_keeps_the_models_threshold_on_a_consistent_scene(tmp_path, kinect_export, monkeypatch):
    """End to end: calibrate_model writes the rule's threshold, its test and its text into the manifest."""
    import json

    from edge_ad.runtime import Scorer
    from edge_ad.runtime.sources import open_source
    own = Scorer.load(kinect_export).threshold
    rate = json.loads((kinect_export / "manifest.json").read_text())["threshold"]["target_fpr"]   # 7 %
    n = 24
    held = {}

    _fake_held_out(monkeypatch, lambda: held["scores"])    # the scene's held-out scores, set by the test
    scene = copy_frames(tmp_path / "scene", "rectangle", n, start=0)
    for name, above in (("kept", 3), ("refuted", 8)):       # of 24 at 7 %: P(>= 3) 0.23, P(>= 8) 0.00015
        held["scores"] = _scores_with(above, n) * own
        handed = []
        with open_source(str(scene)) as src:
            man = cal.calibrate_model(kinect_export, src, tmp_path / name, max_shift=0,
                                      on_threshold_inputs=handed.append)
        c = man["calibration"]
        assert c["target_fpr"] == rate and c["threshold_test"]["frames_above_model_threshold"] == above
        # what the rule read, for offline studies (new_scene.py's per_frame), not written to the manifest
        assert len(handed) == 1 and handed[0].as_dict() == {
            "held_out": list(held["scores"]), "fpr": rate, "model_threshold": own, "same_rate": True,
            "what": "the model's own threshold"}
        _replays(handed[0], tmp_path / name)                # kept, then raised
        assert "held_out" not in json.dumps(man) and "held_out" not in (tmp_path / name / "manifest.json").read_text()
        model_n = json.loads((kinect_export / "manifest.json").read_text())["threshold"]["n_normal"]   # 400
        if name == "kept":
            assert man["threshold"]["value"] == pytest.approx(own) and "model's own threshold" in c["threshold_rule"]
            assert c["threshold_scene"] > own                # the old rule's threshold, recorded, not used
            # the manifest says where the kept threshold was read from, not "the scene's 24 frames"
            assert man["threshold"]["n_normal"] == model_n and man["threshold"]["normal"].startswith("the model's own")
            assert "frames_above" not in man["threshold"] and Scorer.load(tmp_path / name).threshold_frames_above is None
            assert c["threshold_test"]["frames_above_threshold"] == above      # the kept threshold's count
        else:                                               # 24 at 7 %: at most 4 above (P(>= 5) 0.02)
            assert man["threshold"]["value"] == pytest.approx(np.sort(held["scores"])[-5]) and man["threshold"]["value"] > own
            assert c["threshold_scene"] > man["threshold"]["value"] and c["threshold_rule"].startswith("raised: 8 of 24")
            assert c["threshold_test"]["frames_above_threshold"] == 4
            assert man["threshold"]["n_normal"] == n and man["threshold"]["normal"].startswith("scene frames")
            # the alarm-rate watch's count (review 22 #2): 4 of the 24 above the raised threshold, not a quantile's 1
            assert man["threshold"]["frames_above"] == 4 and Scorer.load(tmp_path / name).threshold_frames_above == 4
            assert c["threshold_warning"] and "5th highest of 24" in c["threshold_warning"]   # 24 x 7 % = 1.7 < 3
        assert man["threshold"]["scene_frames"] == n and man["threshold"]["model_n_normal"] == model_n
        assert Scorer.load(tmp_path / name).threshold == pytest.approx(man["threshold"]["value"])


def test_model_threshold_at_reads_the_own_rate_then_the_rate_table():
    """Any rate of the model's table is a threshold read from its own normal frames; other rates have none."""
    own = {"value": 2.0, "target_fpr": 0.07, "n_normal": 400, "rates": {"0.05": 3.0, "0.10": 1.5, "x": 9.0}}
    man = {"threshold": own}
    assert cal.model_threshold_at(man, 0.07) == (2.0, "the model's own threshold")
    value, what = cal.model_threshold_at(man, 0.05)
    assert value == 3.0 and "rate table" in what and "400" in what
    assert cal.model_threshold_at(man, 0.10)[0] == 1.5
    assert cal.model_threshold_at(man, 0.06) == (None, None)                 # not in the table
    assert cal.model_threshold_at({"threshold": {**own, "rates": {"0.05": float("nan")}}}, 0.05) == (None, None)
    assert cal.model_threshold_at({}, 0.05) == (None, None)
    # a calibrated directory carries the exported model's record, table included (never the scene's)
    scene = {"value": 7.0, "target_fpr": 0.05, "source": "edge-ad calibrate", "model_threshold": own}
    assert cal.model_threshold_at({"threshold": scene}, 0.05)[0] == 3.0
    assert cal.model_threshold_at({"threshold": scene}, 0.07)[0] == 2.0


def test_calibrate_at_another_rate_keeps_the_models_table_threshold(tmp_path, kinect_export, monkeypatch):
    """--fpr 0.05 on a model set at 7 %: its 5 % threshold from the rate table (the same normal frames) is
    kept unless the scene refutes it; without a table the scene's quantile, floored, as before (the outside
    check's 74.5 % flagged: a 50-frame quantile 1.7x above the normals' 95th percentile)."""
    from edge_ad.runtime import Scorer
    from edge_ad.runtime.sources import open_source

    from conftest import edit_manifest
    own = Scorer.load(kinect_export).threshold
    table = edit_manifest(kinect_export, tmp_path / "table",
                          lambda m: m["threshold"].update(rates={"0.05": 1.25 * own, "0.10": 0.8 * own}))
    plain = edit_manifest(kinect_export, tmp_path / "plain", lambda m: m["threshold"].pop("rates", None))
    n = 40
    held = {}
    _fake_held_out(monkeypatch, lambda: held["scores"])
    scene = copy_frames(tmp_path / "scene", "rectangle", n, start=0)

    def calibrate(model, out, above):
        held["scores"] = _scores_with(above, n) * 1.25 * own      # `above` frames above the 5 % entry
        handed = []
        with open_source(str(scene)) as src:
            man = cal.calibrate_model(model, src, tmp_path / out, fpr=0.05, max_shift=0,
                                      on_threshold_inputs=handed.append)
        assert len(handed) == 1 and handed[0].same_rate == (model == table)
        _replays(handed[0], tmp_path / out)                 # table kept, raised, floored quantile
        return man

    man = calibrate(table, "kept", 3)                      # 3 of 40 at 5 %: P(>= 3) = 0.32
    c = man["calibration"]
    assert man["threshold"]["value"] == pytest.approx(1.25 * own) and "rate table" in c["threshold_rule"]
    assert c["threshold_test"]["frames_above_model_threshold"] == 3 and c["threshold_scene"] > 1.25 * own
    assert man["threshold"]["normal"].startswith("the model's threshold at 0.05") and c["threshold_warning"] is None
    assert man["threshold"]["model_threshold"]["rates"]["0.05"] == pytest.approx(1.25 * own)   # carried on
    man = calibrate(table, "refuted", 9)                   # 9 of 40 at 5 %: P(>= 9) = 0.00013; at most 4 accepted
    assert man["threshold"]["value"] == pytest.approx(np.sort(held["scores"])[-5])
    assert man["threshold"]["value"] > 1.25 * own and "raised only as far" in man["calibration"]["threshold_rule"]
    assert man["calibration"]["threshold_scene"] > man["threshold"]["value"]
    # 40 x 5 % = 2 expected above: a raise rests on the top scores too, and says so (review 22 #3)
    assert "5th highest of 40" in man["calibration"]["threshold_warning"]
    man = calibrate(plain, "no-table", 3)                  # no table: the floored quantile, as before
    assert man["threshold"]["value"] == pytest.approx(man["calibration"]["threshold_scene"])
    assert man["calibration"]["threshold_rule"].startswith("max(")
    above = man["calibration"]["threshold_test"]["frames_above_threshold"]    # no test ran: the count only
    assert above == (held["scores"] > man["threshold"]["value"]).sum() and man["threshold"]["frames_above"] == above


def test_a_quantile_from_too_few_frames_is_said(tmp_path, kinect_export, monkeypatch):
    """30 frames at 3 % (no table entry, no floor): the threshold is the highest score, and the record says so."""
    from edge_ad.runtime.sources import open_source
    n = 30
    _fake_held_out(monkeypatch, lambda: _scores_with(1, n))
    scene = copy_frames(tmp_path / "scene", "rectangle", n, start=0)
    said, handed = [], []
    with open_source(str(scene)) as src:
        man = cal.calibrate_model(kinect_export, src, tmp_path / "few", fpr=0.03, max_shift=0, floor=False,
                                  log=said.append, on_threshold_inputs=handed.append)
    assert handed[0].model_threshold is None and not handed[0].same_rate
    _replays(handed[0], tmp_path / "few")                   # the scene quantile alone (floor off)
    w = man["calibration"]["threshold_warning"]
    assert w and "30 scene frames cannot resolve a 0.03" in w and "1st highest" in w
    assert any(m.startswith("warning: 30 scene frames") for m in said)
    assert man["threshold"]["value"] == pytest.approx(_scores_with(1, n).max())
