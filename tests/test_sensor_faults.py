"""Sensor faults (issue 16, item 3): dead depth, no foreground, black / saturated colour, random
colour noise and stuck frames are reported as errors naming the fault, never scored; the limits
live in the manifest's preprocessing and never fire on the real kinect-rgbd frames."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_ad.runtime.capture import run_capture
from edge_ad.runtime.preprocess import PreprocessSpec, SensorLimits, frame_to_uint8
from edge_ad.runtime.sensor_faults import SensorFaultDetector, frame_faults
from edge_ad.runtime.sources import Frame, Source, open_source

from test_capture import FakeScorer, read_lines  # noqa: E402

SPEC = PreprocessSpec()


def all_kinect_frames(root: Path):
    for cls in ("rectangle", "cylinder", "sphere"):
        for p in sorted((root / cls / "rgb").glob("*.jpg")):
            rgb = np.asarray(Image.open(p).convert("RGB"))
            yield f"{cls}/{p.stem}", rgb, np.asarray(Image.open(root / cls / "depth" / f"{p.stem}.png"))


def test_limits_never_fire_on_real_or_synthetic_normal_frames(kinect_root):
    n = 0
    det = SensorFaultDetector(SPEC)      # consecutive real frames: the stuck check runs too
    for fid, rgb, d8 in all_kinect_frames(kinect_root):
        faults = det.check(rgb, d8)
        assert faults == [], (fid, [str(f) for f in faults])
        n += 1
    assert n == 1200
    for fr in open_source("synth://?n=200&anomaly_rate=0.5&seed=5"):
        assert det.check(fr.rgb, fr.depth) == [], fr.id


def faulty_variants(rgb, d8, rng):
    """(expected fault, rgb, depth) made from one real frame."""
    fg = d8 > 0
    sat = rgb.copy()
    sat[fg] = 255
    noise = rng.integers(0, 256, rgb.shape, dtype=np.uint8)
    far = np.full(d8.shape, 2000, np.uint16)        # readings, all beyond far_mm = 700
    return [("no_depth", rgb, np.zeros_like(d8)),
            ("no_depth", rgb, np.where(rng.random(d8.shape) < 0.002, d8, 0).astype(np.uint8)),
            ("no_foreground", rgb, far),
            ("black_rgb", np.zeros_like(rgb), d8),
            ("saturated_rgb", sat, d8),
            ("colour_noise", noise, d8)]


def test_each_fault_is_named(kinect_root, rng):
    for fid, rgb, d8 in list(all_kinect_frames(kinect_root))[::150]:
        for name, r, d in faulty_variants(rgb, d8, rng):
            got = frame_faults(r, d, SPEC)
            assert got and got[0].name == name, (fid, name, [str(f) for f in got])
            assert name in str(got[0]) and "limit" in got[0].message


def test_stuck_frames():
    fr = list(open_source("synth://?n=2&seed=1"))
    det = SensorFaultDetector(SPEC)
    assert det.check(fr[0].rgb, fr[0].depth) == []
    got = det.check(fr[0].rgb.copy(), fr[0].depth.copy())       # same pixels, new buffers
    assert [f.name for f in got] == ["stuck_frame"]
    assert det.check(fr[1].rgb, fr[1].depth) == []

    def after(a, b) -> list:
        """The stuck faults of frame b (rgb, depth) right after frame a."""
        d = SensorFaultDetector(SPEC)
        d.check(*a)
        return [f.name for f in d.check(*b)]

    one_px = fr[1].rgb.copy()
    one_px[40, 17, 2] ^= 1                  # one bit of one pixel differs: not stuck_frame (the depth alone repeats)
    assert after((fr[1].rgb, fr[1].depth), (one_px, fr[1].depth)) == ["stuck_depth"]
    # the same scene in millimetres: other raw bytes, the same model input (levels -> mm -> levels is
    # exact for 0-700 mm), so a detector that compared preprocessed frames would call it stuck; the
    # same values in another dtype (uint16 readings of 1..255, millimetres) are another depth image too
    d8 = fr[1].depth
    mm = np.where(d8 > 0, np.rint(d8.astype(np.float64) * SPEC.far_mm / 255), 0).astype(np.uint16)
    assert np.array_equal(frame_to_uint8(one_px, mm, SPEC), frame_to_uint8(one_px, d8, SPEC))
    for a, b in ((mm, d8), (d8, d8.astype(np.uint16)), (d8.astype(np.uint16), d8.astype(np.float32))):
        assert after((one_px, a), (one_px, b)) == ["stuck_rgb"], (a.dtype, b.dtype)   # the colour alone repeats
        assert after((fr[1].rgb, a), (one_px, b)) == []                               # both differ: not stuck
    assert after((one_px, d8.astype(np.float32)), (one_px, d8.astype(np.float32))) == ["stuck_frame"]
    lenient = SensorFaultDetector(PreprocessSpec(sensor_faults=SensorLimits(max_identical_frames=2)))
    assert [len(lenient.check(fr[0].rgb, fr[0].depth)) for _ in range(3)] == [0, 0, 1]


def test_faults_are_error_lines_never_scores_and_counted(tmp_path, kinect_root, rng):
    real = list(all_kinect_frames(kinect_root))[:4]
    frames = []
    for k, (fid, rgb, d8) in enumerate(real):
        frames.append(Frame(fid, rgb, d8))
        name, r, d = faulty_variants(rgb, d8, rng)[[0, 3, 5, 4][k]]
        frames.append(Frame(f"{fid}-{name}", r, d))
    again = real[3][2].copy()
    again[again > 0] += 1                                     # a real depth sensor's noise: new depth
    frames.append(Frame("again", real[3][1], again))          # differs from the frame before it: scored
    frames.append(Frame("again2", real[3][1], again.copy()))  # identical to the one before: stuck

    class Src(Source):
        uri = "faults"

        def __iter__(self):
            yield from frames

    out = tmp_path / "r.jsonl"
    sc = FakeScorer()
    s = run_capture(Src(), sc, threshold=0.5, out=out, handle_signals=False)
    lines = read_lines(out)
    errs = {r["frame"]: r for r in lines if r["type"] == "error"}
    scored = [r["frame"] for r in lines if r["type"] == "frame"]
    assert scored == [f[0] for f in real] + ["again"]
    assert {e["fault"] for e in errs.values()} == {"no_depth", "black_rgb", "colour_noise", "saturated_rgb",
                                                    "stuck_frame"}
    for e in errs.values():
        assert e["error"].startswith(f"sensor fault {e['fault']}:")
    assert s["sensor_faults"] == {"no_depth": 1, "black_rgb": 1, "colour_noise": 1, "saturated_rgb": 1,
                                  "stuck_frame": 1}
    assert s["frame_errors"] == 5 and s["frames_scored"] == 5
    assert len(sc.calls) == 5   # faulty frames never reached the scorer
    # disabled in the model's spec: everything is scored (the old behaviour, on request)
    sc2 = FakeScorer()
    sc2.preprocess = PreprocessSpec(sensor_faults=SensorLimits(enabled=False))
    s2 = run_capture(Src(), sc2, handle_signals=False)
    assert s2["frames_scored"] == len(frames) and s2["sensor_faults"] == {}


def test_limits_live_in_the_manifest_preprocessing():
    from edge_ad.runtime import demo_model_dir
    demo = json.loads((demo_model_dir() / "manifest.json").read_text())
    old = dict(demo["preprocess"])
    old.pop("sensor_faults", None)                       # a manifest written before the limits existed
    assert PreprocessSpec.from_dict(old).sensor_faults == SensorLimits()
    spec = PreprocessSpec(sensor_faults=SensorLimits(min_valid_depth=0.02, max_black=0.3))
    d = json.loads(json.dumps(spec.to_dict()))
    assert d["sensor_faults"]["min_valid_depth"] == 0.02
    assert PreprocessSpec.from_dict(d) == spec
    for bad, match in (({"min_valid_depth": 2.0}, "fraction"), ({"black_level": "x"}, "0..255"),
                       ({"max_identical_frames": 0}, ">= 1"), ({"bogus": 1}, "unknown sensor_faults"),
                       ({"enabled": "yes"}, "true or false")):
        with pytest.raises(ValueError, match=match):
            PreprocessSpec.from_dict({**old, "sensor_faults": bad})
    with pytest.raises(ValueError, match="must be an object"):
        PreprocessSpec.from_dict({**old, "sensor_faults": [1]})


def test_run_loop_resizes_each_frame_once_for_checks_and_scorer(tmp_path, kinect_root, export_tiny, monkeypatch):
    """With a real Scorer the sensor checks and the scorer share one frame conversion per frame (at
    1280 x 720 a resize costs ~8 ms, as much as the k = 0 search): one depth_to_8bit per frame, and the
    scores equal Scorer.score's."""
    import edge_ad.runtime.preprocess as prep_mod
    from edge_ad.runtime import Scorer

    scorer = Scorer.load(export_tiny(0, 1))
    real = [(fid, np.asarray(Image.fromarray(rgb).resize((160, 120))),
             np.asarray(Image.fromarray(d8).resize((160, 120), Image.NEAREST)))
            for fid, rgb, d8 in list(all_kinect_frames(kinect_root))[:3]]
    calls = []
    real_depth_to_8bit = prep_mod.depth_to_8bit

    def counting(depth, spec):
        calls.append(np.shape(depth))
        return real_depth_to_8bit(depth, spec)

    monkeypatch.setattr(prep_mod, "depth_to_8bit", counting)

    class Src(Source):
        uri = "three"

        def __iter__(self):
            yield from (Frame(fid, rgb, d) for fid, rgb, d in real)

    out = tmp_path / "r.jsonl"
    s = run_capture(Src(), scorer, out=out, z0=np.zeros((1, scorer.z_dim), np.float32), handle_signals=False)
    assert s["frames_scored"] == 3 and len(calls) == 3
    got = {r["frame"]: r["score"] for r in read_lines(out) if r["type"] == "frame"}
    z0 = np.zeros((1, scorer.z_dim), np.float32)
    assert got == {fid: scorer.score(rgb, d, z0=z0).score for fid, rgb, d in real}
    assert all(r["latency_ms"]["preprocess"] > 0 for r in read_lines(out) if r["type"] == "frame")


def test_score_uint8_equals_score_and_names_a_wrong_frame(kinect_root, export_tiny):
    from edge_ad.runtime import Scorer
    from edge_ad.runtime.preprocess import frame_to_uint8

    scorer = Scorer.load(export_tiny(0, 1))
    _, rgb, d8 = next(iter(all_kinect_frames(kinect_root)))
    a = scorer.score(rgb, d8, seed=3)
    b = scorer.score_uint8(frame_to_uint8(rgb, d8, scorer.preprocess), seed=3)
    assert a.score == b.score and np.array_equal(a.error_map, b.error_map)
    assert {"preprocess_s", "total_s"} <= set(b.timings)
    with pytest.raises(ValueError, match=r"\(64, 64, 4\) uint8"):
        scorer.score_uint8(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="float32"):
        scorer.score_uint8(np.zeros((64, 64, 4), np.float32))


def partly(level: int, fraction: float):
    """A model-resolution frame (no resize: the measured share is exact) whose foreground (depth 400 mm) is the
    whole image but a 4-px background border (an object alone: foreground up to the frame's edges is a table or
    wall in view, background_in_view), smooth colour, with the first ``fraction`` of its foreground pixels set
    to ``level`` (0: black, 255: saturated)."""
    r = SPEC.resolution
    yy, xx = np.mgrid[0:r, 0:r]
    rgb = np.stack([60 + yy, 70 + xx, 80 + (yy + xx) // 2], axis=-1).astype(np.uint8)   # (R, R, 3)
    depth = np.zeros((r, r), np.uint16)
    depth[4:-4, 4:-4] = 400
    fg = np.flatnonzero(depth)                                                            # raster order
    rgb.reshape(-1, 3)[fg[:int(round(fraction * fg.size))]] = level
    return rgb, depth


def test_black_and_saturated_limits_flag_a_covered_or_blinded_sensor_not_a_dark_or_bright_scene(tmp_path):
    """The runtime's own limits (PreprocessSpec() defaults, max_black 0.95, max_saturated 0.99): a
    colour image 97 % black (covered) or 99.5 % saturated (blinded) is a sensor fault; 90 % black or
    97 % saturated is scored (a dark or bright scene: offset -60 makes up to 83 % of a real frame's
    foreground black, brightness x1.5 up to 98.3 % saturated; scripts/sensor_limits_probe.py). Fails
    with the earlier limits 0.5 / 0.5 (which refused brighter rooms) and with limits of 0.999+."""
    cases = {"black97": (0, 0.97), "black90": (0, 0.90), "sat99.5": (255, 0.995), "sat97": (255, 0.97)}
    frames = [Frame(name, rgb, np.where(depth > 0, depth + i, 0))    # depth differing from frame to frame, as a real sensor's
              for i, (name, (rgb, depth)) in enumerate((n, partly(*lf)) for n, lf in cases.items())]
    assert [f.name for f in frame_faults(frames[0].rgb, frames[0].depth, SPEC)] == ["black_rgb"]
    assert "97.0% of the foreground is black" in str(frame_faults(frames[0].rgb, frames[0].depth, SPEC)[0])
    assert [f.name for f in frame_faults(frames[2].rgb, frames[2].depth, SPEC)] == ["saturated_rgb"]
    assert frame_faults(frames[1].rgb, frames[1].depth, SPEC) == []
    assert frame_faults(frames[3].rgb, frames[3].depth, SPEC) == []

    class Src(Source):
        uri = "partly"

        def __iter__(self):
            yield from frames

    out = tmp_path / "r.jsonl"
    s = run_capture(Src(), FakeScorer(), threshold=0.5, out=out, handle_signals=False)   # the run loop's checks
    lines = read_lines(out)
    assert [r["frame"] for r in lines if r["type"] == "frame"] == ["black90", "sat97"]
    assert {r["frame"]: r["fault"] for r in lines if r["type"] == "error"} == {"black97": "black_rgb",
                                                                               "sat99.5": "saturated_rgb"}
    assert s["sensor_faults"] == {"black_rgb": 1, "saturated_rgb": 1}


def test_limits_never_fire_on_real_frames_with_the_shipped_models_specs(kinect_root):
    """Scorer.score checks faults by default: the shipped models' own preprocessing (the sphere's
    centroid alignment moves the frame first) finds none on the 1200 real frames."""
    from edge_ad.models.checkpoint import read_checkpoint
    repo = Path(__file__).resolve().parents[1]
    specs = {c: PreprocessSpec.from_dict(read_checkpoint(repo / "models" / "kinect-rgbd" / f"{c}.pt")["preprocess"])
             for c in ("rectangle", "cylinder", "sphere")}
    assert specs["sphere"].align == "centroid"           # not only the default spec
    n = 0
    for fid, rgb, d8 in all_kinect_frames(kinect_root):
        for cls, spec in specs.items():
            assert frame_faults(rgb, d8, spec) == [], (cls, fid)
        n += 1
    assert n == 1200


def demo_scorer():
    from edge_ad.runtime import Scorer, demo_model_dir
    return Scorer.load(demo_model_dir(), threads=1)


def test_scorer_api_reports_sensor_faults_never_scores_them(kinect_root, rng, tmp_path):
    """Audit 2 #3: Scorer.score scored a dead colour sensor (16 of 20 black sphere frames read as
    normal). Now it raises SensorFaultError (a FrameError) naming the fault; check_faults=False scores."""
    from edge_ad.runtime.preprocess import FrameError
    from edge_ad.runtime.sensor_faults import SensorFaultError
    sc = demo_scorer()
    fid, rgb, d8 = next(iter(all_kinect_frames(kinect_root)))
    assert np.isfinite(sc.score(rgb, d8, seed=0).score)
    for name, r, d in faulty_variants(rgb, d8, rng):
        with pytest.raises(SensorFaultError) as e:
            sc.score(r, d, seed=0)
        assert isinstance(e.value, FrameError)
        assert e.value.fault == name and str(e.value).startswith(f"sensor fault {name}:"), str(e.value)
        assert [f.name for f in e.value.faults][0] == name
    black = np.zeros_like(rgb)
    assert np.isfinite(sc.score(black, d8, seed=0, check_faults=False).score)   # the caller's choice
    # score_batch: per entry, on the batch graphs and frame by frame (the demo model without its batch graphs)
    from conftest import edit_manifest
    from edge_ad.runtime import Scorer, demo_model_dir
    unbatched = edit_manifest(demo_model_dir(), tmp_path / "unbatched", lambda man: man.update(
        graphs={k: v for k, v in man["graphs"].items() if not k.endswith("_batch")}))
    for batched, sc in ((True, sc), (False, Scorer.load(unbatched, threads=1))):
        got = sc.score_batch([(rgb, d8), (black, d8), (rgb, np.zeros_like(d8))], seeds=[0, 0, 0])
        assert np.isfinite(got[0].score), batched
        assert ("batch_size" in got[0].timings) == batched       # which path scored it
        assert isinstance(got[1], SensorFaultError) and got[1].fault == "black_rgb", (batched, got[1])
        assert isinstance(got[2], SensorFaultError) and got[2].fault == "no_depth", (batched, got[2])
        unchecked = sc.score_batch([(rgb, d8), (black, d8)], seeds=[0, 0], check_faults=False)
        assert all(np.isfinite(r.score) for r in unchecked), batched


def test_the_run_loop_checks_each_frame_once(kinect_root, tmp_path, monkeypatch):
    """run_capture checks faults itself (the stuck check needs the stream) and scores with
    check_faults=False, through score_uint8 or score: one frame_faults call per frame, and the same
    lines as before (the fault's error line; the good frames' scores)."""
    from edge_ad.runtime import sensor_faults
    calls = []
    real = sensor_faults.frame_faults
    monkeypatch.setattr(sensor_faults, "frame_faults", lambda *a, **k: calls.append(1) or real(*a, **k))
    frames = [Frame(fid, rgb, d8) for fid, rgb, d8 in list(all_kinect_frames(kinect_root))[:3]]
    frames.insert(1, Frame("black", np.zeros_like(frames[0].rgb), frames[0].depth))

    class Src(Source):
        uri = "four"

        def __iter__(self):
            yield from frames

    sc = demo_scorer()

    class ScoreOnly:          # a scorer without score_uint8: the loop calls score(...)
        preprocess = sc.preprocess

        def score(self, rgb, depth, z0=None, seed=None, check_faults=True):
            return sc.score(rgb, depth, z0=z0, seed=seed, check_faults=check_faults)

    by_path = {}
    for name, scorer in (("score_uint8", sc), ("score", ScoreOnly())):
        calls.clear()
        s = run_capture(Src(), scorer, threshold=1.0, out=tmp_path / f"{name}.jsonl", handle_signals=False)
        assert len(calls) == 4, (name, len(calls))
        assert s["frames_scored"] == 3 and s["sensor_faults"] == {"black_rgb": 1}
        lines = read_lines(tmp_path / f"{name}.jsonl")
        err = next(r for r in lines if r["type"] == "error")
        assert err["frame"] == "black" and err["fault"] == "black_rgb" and err["error"].startswith("sensor fault black_rgb:")
        by_path[name] = [r["score"] for r in lines if r["type"] == "frame"]
    np.testing.assert_allclose(by_path["score"], by_path["score_uint8"], rtol=1e-6)


def test_a_folder_of_copies_is_scored_a_stream_repeat_is_stuck(tmp_path, kinect_root):
    """Audit 16 #5: a folder holding three copies of one frame (a determinism check through edge-ad
    run) scored one frame and refused two as stuck_frame. A folder's files are independent inputs
    (``Source.stream`` False): every copy is scored, with the same score; edge-ad calibrate's
    read_scene agrees (three usable frames). A stream (a camera, a recording) repeating a frame is
    still a stuck sensor."""
    from edge_ad.runtime import Scorer, demo_model_dir
    from edge_ad.runtime.calibrate import read_scene
    from edge_ad.runtime.sources import is_stream
    src_dir = kinect_root / "rectangle"
    d = tmp_path / "copies"
    (d / "rgb").mkdir(parents=True)
    (d / "depth").mkdir()
    for name in ("a", "b", "c"):
        (d / "rgb" / f"{name}.jpg").write_bytes((src_dir / "rgb" / "3.jpg").read_bytes())
        (d / "depth" / f"{name}.png").write_bytes((src_dir / "depth" / "3.png").read_bytes())
    scorer = Scorer.load(demo_model_dir())
    for uri in (str(d), f"folder://{d}", f"folder://{d}?normal=copies"):
        src = open_source(uri)
        assert not is_stream(src), uri
        out = tmp_path / f"{len(list(tmp_path.glob('*.jsonl')))}.jsonl"
        s = run_capture(src, scorer, out=out, handle_signals=False)
        assert (s["frames_scored"], s["frame_errors"], s["sensor_faults"]) == (3, 0, {}), (uri, s)
        scores = [r["score"] for r in read_lines(out) if r["type"] == "frame"]
        assert len(set(scores)) == 1, scores          # the same frame, the same score
    # calibration uses each distinct frame once: the copies are duplicates, not sensor faults
    res = read_scene(open_source(str(d)), scorer.preprocess_spec)
    assert res["ids"] == ["a"] and (res["faults"], res["duplicates"]) == ({}, 2)
    # the same three frames from a stream: one scored, two stuck_frame (the check is still made)
    frames = list(open_source(str(d)))

    class Camera(Source):     # any Source that does not say otherwise is a stream
        uri = "camera"

        def __iter__(self):
            yield from frames

    assert is_stream(Camera()) and is_stream(open_source("synth://?n=1")) and is_stream(frames)
    s = run_capture(Camera(), scorer, out=tmp_path / "cam.jsonl", handle_signals=False)
    assert (s["frames_scored"], s["sensor_faults"]) == (1, {"stuck_frame": 2}), s
    res = read_scene(Camera(), scorer.preprocess_spec)
    assert res["ids"] == ["a"] and (res["faults"], res["duplicates"]) == ({"stuck_frame": 2}, 0)


def test_the_checks_take_only_the_frame_as_captured_and_only_by_keyword():
    """The checks read one ready-made frame: ``captured`` (the frame as captured, frame_to_uint8_pair's second
    array). The old ``u8`` parameter (the model's frame) was never read by a caller, as both passed ``captured``,
    which won; it is gone, and ``captured`` is keyword-only, so a caller's positional model frame (depth-repaired
    under a depth_fill spec) is refused (TypeError) rather than read as the frame as captured."""
    import inspect

    from edge_ad.runtime.sensor_faults import raise_frame_faults
    for f in (frame_faults, raise_frame_faults, SensorFaultDetector.check):
        params = inspect.signature(f).parameters
        assert "u8" not in params, f.__name__
        assert params["captured"].kind is inspect.Parameter.KEYWORD_ONLY, f.__name__
    rgb, depth = partly(0, 0.0)
    u8 = frame_to_uint8(rgb, depth, SPEC)
    assert frame_faults(rgb, depth, SPEC, captured=u8) == frame_faults(rgb, depth, SPEC) == []
    for call in (lambda: frame_faults(rgb, depth, SPEC, u8), lambda: raise_frame_faults(rgb, depth, SPEC, u8),
                 lambda: SensorFaultDetector(SPEC).check(rgb, depth, u8)):
        with pytest.raises(TypeError):
            call()
