"""The ROS 2 node's offline parts: messages -> frames -> run_capture -> published score, flag and
error map, with sensor_msgs types from rosbags' typestore (the same definitions rclpy uses)."""
from __future__ import annotations

import ast
import math
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest
import yaml

from edge_ad.jetson import ros2_node
from edge_ad.runtime import msgconv
from edge_ad.runtime.capture import run_capture
from edge_ad.runtime.preprocess import PreprocessSpec, preprocess
from edge_ad.runtime.sources import open_source

REPO = Path(__file__).resolve().parents[1]


class MapScorer:
    """Stand-in scorer returning an error map like runtime.Scorer's ScoreResult."""

    def score(self, rgb, depth, z0=None, seed=None, **kw):
        x = preprocess(rgb, depth, PreprocessSpec())
        err = (x ** 2).mean(axis=0).astype(np.float32)  # (R, R)
        return SimpleNamespace(score=float(err.mean()), error_map=err,
                               timings={"preprocess_ms": 0.0, "search_ms": 0.0})


def loop_stops_before_its_first_frame(monkeypatch) -> None:
    """The node's run_capture replaced by the real loop asked to stop before its first frame (the node's start, its
    results file and its shutdown run as they do; no frame is waited for)."""
    import edge_ad.runtime.capture as capture

    def run_until_stopped(*args, **kw):
        stop = threading.Event()
        stop.set()
        return run_capture(*args, **{**kw, "stop": stop, "handle_signals": False})

    monkeypatch.setattr(capture, "run_capture", run_until_stopped)


def ros_msgs(frames):
    from rosbags.typesys import Stores, get_typestore
    ts = get_typestore(Stores.ROS2_HUMBLE)
    Img, CImg = ts.types["sensor_msgs/msg/Image"], ts.types["sensor_msgs/msg/CompressedImage"]
    Header, Time = ts.types["std_msgs/msg/Header"], ts.types["builtin_interfaces/msg/Time"]
    out = []
    for k, f in enumerate(frames):
        h = Header(stamp=Time(sec=100 + k, nanosec=0), frame_id="camera_color_optical_frame")
        mm = np.rint(f.depth.astype(np.float64) * 700 / 255).astype(np.uint16)
        out.append((Img(header=h, **msgconv.numpy_to_image_fields(f.rgb[:, :, ::-1].copy(), "bgr8")),
                    CImg(header=h, **msgconv.numpy_to_compressed_fields(mm, "16UC1; compressedDepth png"))))
    return out


def publisher():
    """A ResultPublisher whose messages are dicts collected per topic."""
    published = {"score": [], "flag": [], "err": [], "fault": []}
    hook = ros2_node.ResultPublisher(
        lambda v: {"data": v}, lambda v: {"data": v}, lambda h, f: {"header": h, **f},
        published["score"].append, published["flag"].append, published["err"].append,
        lambda v: {"data": v}, published["fault"].append)
    return published, hook


def run_topics(src, msgs, published, **kw):
    """Push each message pair into the TopicSource once the previous one was published (a subscriber
    slower than scoring, so none is replaced), then stop; returns the run summary."""
    stop = threading.Event()
    result = {}
    t = threading.Thread(target=lambda: result.update(run_capture(src, MapScorer(), stop=stop,
                                                                  handle_signals=False, **kw)))
    t.start()
    for n, (c, d) in enumerate(msgs, start=1):
        src.push(c, d)
        deadline = time.time() + 10
        while len(published["score"]) < n and time.time() < deadline:   # one ~/score per frame
            time.sleep(0.005)
    stop.set()
    t.join(timeout=10)
    assert not t.is_alive()
    return result


def test_topic_source_to_published_messages(tmp_path):
    frames = list(open_source("synth://?n=4&seed=5&anomaly_rate=0.5"))
    msgs = ros_msgs(frames)
    published, hook = publisher()
    expect = [MapScorer().score(f.rgb, f.depth) for f in frames]
    thr = float(np.median([e.score for e in expect]))  # some frames flagged, some not
    src = ros2_node.TopicSource(stale_s=5.0)
    result = run_topics(src, msgs, published, threshold=thr, on_result=hook, on_error=hook.fault,
                        out=tmp_path / "r.jsonl")
    assert result["frames_scored"] == 4 and result["skipped"] == 0 and published["fault"] == []
    assert [p["data"] for p in published["score"]] == [e.score for e in expect]
    assert [p["data"] for p in published["flag"]] == [e.score > thr for e in expect]
    assert 0 < sum(p["data"] for p in published["flag"]) < 4
    for p, e, (c, _) in zip(published["err"], expect, msgs):
        assert p["encoding"] == "32FC1" and p["header"] is c.header
        back = msgconv.image_to_numpy(SimpleNamespace(**{k: v for k, v in p.items() if k != "header"}))
        assert np.array_equal(back, e.error_map)


def test_sensor_faults_and_unscorable_frames_are_published_never_normal(tmp_path):
    """1 good, 1 black colour, 1 dead depth, 1 undecodable pair: the good frame publishes its score
    and flag False; each of the others ~/score NaN, ~/anomaly True and ~/fault naming the fault
    (audit 6a: they published nothing, so ~/anomaly kept saying False; then ~/score skipped them, so a
    plot of ~/score kept showing the good frame's score for a dead camera)."""
    good, black, nodepth = list(open_source("synth://?n=3&seed=2&anomaly_rate=0"))
    black.rgb[:] = 0
    nodepth.depth[:] = 0
    msgs = ros_msgs([good, black, nodepth, good])
    msgs[3] = (msgs[3][0], SimpleNamespace(format="png", data=b"junk"))   # undecodable depth
    published, hook = publisher()
    src = ros2_node.TopicSource(stale_s=5.0)
    thr = 2 * MapScorer().score(good.rgb, good.depth).score    # the good frame is normal
    result = run_topics(src, msgs, published, threshold=thr, on_result=hook, on_error=hook.fault,
                        out=tmp_path / "r.jsonl")
    assert result["frames_scored"] == 1 and result["frame_errors"] == 3
    assert result["sensor_faults"] == {"black_rgb": 1, "no_depth": 1}
    scores = [p["data"] for p in published["score"]]
    assert len(scores) == 4 and scores[0] == MapScorer().score(good.rgb, good.depth).score
    assert all(math.isnan(x) for x in scores[1:]), scores                 # not scored: NaN, never a number
    assert len(published["err"]) == 1
    assert [p["data"] for p in published["flag"]] == [False, True, True, True]
    faults = [p["data"] for p in published["fault"]]
    assert [f.split(":")[0] for f in faults] == ["black_rgb", "no_depth", "unscorable"], faults
    assert faults[0].startswith("black_rgb: 100.0% of the foreground is black (limit 95.0%)"), faults[0]
    assert "of the pixels have a depth reading" in faults[1]
    assert "undecodable" in faults[2]
    # review 15 #7: score > t is False for NaN (a consumer thresholding ~/score alone sees no fault);
    # jetson/README's subscriber checks NaN first and stops on each fault, not on the good frame
    assert not any(x > thr for x in scores)
    readme = (REPO / "jetson" / "README.md").read_text()
    snippet = readme[readme.index("**Consumers: act on `~/anomaly`, or test `~/score` for NaN.**"):]
    code = snippet[snippet.index("```python\n") + 10:snippet.index("```", snippet.index("```python\n") + 10)]
    stops = []
    env = {"THRESHOLD": thr, "stop_robot": stops.append}
    exec(compile(code, "jetson/README.md (consumer)", "exec"), env)
    for p in published["score"]:
        env["on_score"](SimpleNamespace(data=p["data"]))
    assert stops == ["camera fault"] * 3
    env["on_score"](SimpleNamespace(data=2 * thr))
    assert stops[-1] == "anomaly"


def test_a_camera_that_stops_is_published_as_a_fault(tmp_path):
    """No synchronized pair for stale_s: ~/anomaly True and ~/fault "source_lost: ..." (the last
    frame's flag False must not stand for a camera that stopped); the node waits again (reopen)."""
    good = next(iter(open_source("synth://?n=1&seed=2&anomaly_rate=0")))
    published, hook = publisher()
    holder = {"source": ros2_node.TopicSource(stale_s=0.3)}

    def reopen():                                        # as the node's new_source
        holder["source"] = ros2_node.reopened(holder["source"])
        return holder["source"]

    stop = threading.Event()
    result = {}
    thr = 2 * MapScorer().score(good.rgb, good.depth).score
    t = threading.Thread(target=lambda: result.update(run_capture(
        holder["source"], MapScorer(), threshold=thr, on_result=hook, on_error=hook.fault, on_outage=hook.outage,
        reopen=reopen, backoff=(0.05, 0.1), stop=stop, handle_signals=False, out=tmp_path / "r.jsonl")))
    t.start()
    holder["source"].push(*ros_msgs([good])[0])
    deadline = time.time() + 10
    while not published["fault"] and time.time() < deadline:
        time.sleep(0.01)
    stop.set()
    t.join(timeout=10)
    assert not t.is_alive() and result["frames_scored"] == 1 and result["outages"] >= 1
    assert [p["data"] for p in published["flag"]][:2] == [False, True]
    scores = [p["data"] for p in published["score"]]
    assert scores[0] == MapScorer().score(good.rgb, good.depth).score and math.isnan(scores[1]), scores
    assert published["fault"][0]["data"].startswith("source_lost: no synchronized colour/depth pair")


def test_pairs_that_arrive_while_the_node_reopens_are_scored_or_counted(tmp_path):
    """Audit 33 #1: after an outage run_capture closes the TopicSource, waits backoff[0] and only then calls the
    node's new_source; pairs the subscription pushed in that wait went into the closed source and vanished (not
    scored, not skipped, not replaced_before_decode). The reopened source is the same mailbox now: the newest of
    them is scored, the others counted, so every pair pushed is accounted for."""
    frames = list(open_source("synth://?n=4&seed=5&anomaly_rate=0"))
    msgs = ros_msgs(frames)
    published, hook = publisher()
    holder = {"source": ros2_node.TopicSource(stale_s=0.2)}

    def reopen():                                        # as the node's new_source
        holder["source"] = ros2_node.reopened(holder["source"])
        return holder["source"]

    def push(c, d):                                      # as the node's subscription callback
        holder["source"].push(c, d)

    stop = threading.Event()
    result = {}
    t = threading.Thread(target=lambda: result.update(run_capture(
        holder["source"], MapScorer(), on_result=hook, on_error=hook.fault, on_outage=hook.outage, reopen=reopen,
        backoff=(1.0, 2.0), stop=stop, handle_signals=False, out=tmp_path / "r.jsonl")))
    t.start()
    push(*msgs[0])
    deadline = time.time() + 10
    while not published["fault"] and time.time() < deadline:      # the outage: stale_s without a pair
        time.sleep(0.005)
    time.sleep(0.1)                                      # inside the 1 s backoff, the old source closed
    for c, d in msgs[1:]:                                # the camera is back: 3 pairs before the reopen
        push(c, d)
    while len(published["score"]) < 3 and time.time() < deadline:  # 1 scored, the outage's NaN, 1 more
        time.sleep(0.005)
    stop.set()
    t.join(timeout=10)
    assert not t.is_alive() and published["fault"][0]["data"].startswith("source_lost"), published["fault"]
    scores = [p["data"] for p in published["score"]][:3]      # (a later outage may add a NaN before the stop)
    assert len(scores) == 3 and math.isnan(scores[1]), scores
    assert scores[2] == MapScorer().score(frames[3].rgb, frames[3].depth).score     # the newest pair
    replaced = result.get("source_stats", {}).get("replaced_before_decode", 0)
    assert (result["frames_scored"], result["skipped"], replaced) == (2, 0, 2), result
    assert result["frames_scored"] + result["skipped"] + replaced == len(msgs)


def test_frame_ids_go_on_across_an_outage(tmp_path):
    """Audit 28 #8 (b): after each outage the node made a new TopicSource whose ids started at "1" again, so
    one results_path held many frames "1", "2", ...; the reopened source's ids go on from the last one."""
    frames = list(open_source("synth://?n=2&seed=3&anomaly_rate=0"))
    first = ros2_node.TopicSource(stale_s=0.2)
    first.push(*ros_msgs(frames)[0])
    ids = [next(iter(first)).id]
    again = ros2_node.reopened(first)
    again.push(*ros_msgs(frames)[1])
    ids.append(next(iter(again)).id)
    assert ids == ["1", "2"] and (again.uri, again.stale_s) == (first.uri, first.stale_s)


def test_topic_source_keeps_newest_and_reports_staleness():
    frames = list(open_source("synth://?n=3&seed=1"))
    msgs = ros_msgs(frames)
    src = ros2_node.TopicSource(stale_s=0.2)
    for c, d in msgs:
        src.push(c, d)
    it = iter(src)
    f = next(it)
    assert np.array_equal(f.rgb, frames[-1].rgb) and src.stats["replaced_before_decode"] == 2
    t0 = time.perf_counter()
    try:
        next(it)
        raise AssertionError("expected SourceError")
    except Exception as e:
        assert "no synchronized colour/depth pair" in str(e)
    assert time.perf_counter() - t0 >= 0.19
    bad = ros2_node.frame_from_msgs(msgs[0][0], SimpleNamespace(format="png", data=b"junk"), "x")
    assert bad.error and "undecodable" in bad.error


def test_node_settings_name_each_bad_parameter(tmp_path):
    """node_settings checks every parameter (before the model loads) and names the bad one."""
    s = ros2_node.node_settings({})
    assert Path(s["model_dir"]).is_dir() and s["threshold"] is None and s["results_path"] is None
    assert s["trusted_keys"] is None and s["frame_timeout"] is None and s["rotate_bytes"] is None
    key = tmp_path / "k.pub"
    key.write_text("key")
    s = ros2_node.node_settings({"threshold": 0.05, "trusted_keys": f" {key} ", "rotate_mb": 2.5, "seed": 3,
                                 "results_path": str(tmp_path / "r.jsonl"), "frame_timeout_s": 20.0})
    assert (s["threshold"], s["trusted_keys"], s["rotate_bytes"], s["seed"], s["frame_timeout"]) == (
        0.05, [str(key)], 2_500_000, 3, 20.0)
    bad = [("threshold", -1.0, "parameter threshold must be a finite number > 0"),
           ("threshold", 0.0, "parameter threshold"), ("threshold", float("inf"), "parameter threshold"),
           ("model_dir", str(tmp_path / "missing"), "parameter model_dir: no directory"),
           ("model_dir", str(tmp_path), "parameter model_dir: " + repr(str(tmp_path)) + " has no manifest.json"),
           ("backend", "onnx", "parameter backend must be one of onnxruntime, tensorrt"),
           ("slop", 0.0, "parameter slop must be a finite number > 0"),
           ("slop", float("nan"), "parameter slop"), ("stale_s", -1.0, "parameter stale_s"),
           ("queue_size", 0, "parameter queue_size must be an integer >= 1"),
           ("seed", -1, "parameter seed must be an integer >= 0"),
           ("frame_timeout_s", -1.0, "parameter frame_timeout_s must be a finite number >= 0"),
           ("rotate_mb", float("inf"), "parameter rotate_mb"),
           ("rgb_topic", "", "parameter rgb_topic must be a topic name"),
           ("depth_compressed", "yes", "parameter depth_compressed must be true or false"),
           ("results_path", str(tmp_path), "parameter results_path: "),
           ("trusted_keys", f"{key},{tmp_path}/nokey.pub", "parameter trusted_keys: no key file")]
    for name, value, message in bad:
        with pytest.raises(ros2_node.ParameterError) as e:
            ros2_node.node_settings({name: value})
        assert message in str(e.value), (name, value, str(e.value))


class _ModelLoaded(Exception):
    """Raised by the fake Scorer.load: the node got as far as loading the model."""


def fake_ros(monkeypatch, overrides: dict, load_error: Exception = None, scorer=None) -> dict:
    """rclpy, message_filters and the message packages as modules of fakes (rclpy is not on PyPI):
    a Node whose parameters are ``overrides`` over the declared defaults and whose logger records; like rclpy,
    its declare_parameter refuses an override whose type is not the default's (InvalidParameterTypeException,
    a ParameterException) unless the descriptor says dynamic_typing;
    Scorer.load returns ``scorer`` when given, else raises ``load_error`` or _ModelLoaded (records
    its arguments)."""
    seen = {"log": [], "load": [], "destroyed": False}

    class Node:
        def __init__(self, name):
            self.name = name

        def declare_parameter(self, name, default, descriptor=None):
            value = overrides.get(name, default)
            if type(value) is not type(default) and not getattr(descriptor, "dynamic_typing", False):
                raise InvalidParameterTypeException(f"Trying to set parameter '{name}' to '{value}' of type "
                                                    f"'{type(value).__name__}', expecting '{type(default).__name__}'")
            return SimpleNamespace(value=value)

        def get_logger(self):
            return SimpleNamespace(**{lvl: (lambda m, lvl=lvl: seen["log"].append((lvl, m)))
                                      for lvl in ("info", "warning", "error")})

        def destroy_node(self):
            seen["destroyed"] = True

        def create_publisher(self, msg_type, topic, depth):
            return SimpleNamespace(publish=lambda msg: seen.setdefault(topic, []).append(msg))

    class Synchronizer:
        def __init__(self, subscribers, queue_size, slop):
            pass

        def registerCallback(self, callback):
            pass

    class ParameterException(Exception):
        pass

    class InvalidParameterTypeException(ParameterException):
        pass

    mods = {"rclpy": dict(init=lambda args=None: None, ok=lambda: True, shutdown=lambda: None,
                          spin=lambda node: None),
            "rclpy.exceptions": dict(ParameterException=ParameterException,
                                     InvalidParameterTypeException=InvalidParameterTypeException),
            "rcl_interfaces": {}, "rcl_interfaces.msg": dict(ParameterDescriptor=lambda **kw: SimpleNamespace(**kw)),
            "rclpy.node": dict(Node=Node), "rclpy.qos": dict(qos_profile_sensor_data=None),
            "message_filters": dict(Subscriber=lambda *a, **kw: None, ApproximateTimeSynchronizer=Synchronizer),
            "sensor_msgs": {}, "sensor_msgs.msg": dict(Image=dict, CompressedImage=dict),
            "std_msgs": {}, "std_msgs.msg": dict(Bool=dict, Float32=dict, String=dict)}
    for name, attrs in mods.items():
        m = ModuleType(name)
        m.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, m)

    from edge_ad.runtime.scorer import Scorer

    def load(cls, model_dir, backend="onnxruntime", **kw):
        seen["load"].append((model_dir, backend, kw))
        if scorer is not None:
            return scorer
        raise load_error or _ModelLoaded(model_dir)

    monkeypatch.setattr(Scorer, "load", classmethod(load))
    return seen


def test_a_bad_parameter_stops_the_node_before_the_model_loads(monkeypatch):
    """threshold -1 (or any bad parameter): exit 2 and one error line naming it, the model never
    loaded (it was checked only after Scorer.load: seconds, minutes for a TensorRT engine, then a
    traceback); good parameters go on to load the model."""
    for name, value in (("threshold", -1.0), ("slop", 0.0)):
        seen = fake_ros(monkeypatch, {name: value})
        assert ros2_node.main([]) == 2
        assert seen["load"] == [] and seen["destroyed"]
        assert [lvl for lvl, _ in seen["log"]] == ["error"] and f"parameter {name}" in seen["log"][0][1], seen
    seen = fake_ros(monkeypatch, {"threshold": float("nan"), "backend": "onnxruntime"})
    with pytest.raises(_ModelLoaded):
        ros2_node.main([])
    assert len(seen["load"]) == 1 and seen["load"][0][1] == "onnxruntime" and seen["log"] == []


def test_a_whole_number_for_a_float_parameter_is_taken(monkeypatch, tmp_path):
    """Audit 29 #5: rclpy fixes a parameter's type from its default unless declared dynamically typed, so
    `-p stale_s:=5` (an integer for 10.0, the commonest slip) ended in InvalidParameterTypeException's traceback
    (exit 1, the launch file restarting it every 5 s), not the documented exit 2 with one line. The node now
    declares every parameter dynamically typed and node_settings checks types and ranges: ints for floats are
    taken; a wrong type is still one line naming the parameter, exit 2."""
    ints = {"stale_s": 5, "rotate_mb": 100, "frame_timeout_s": 2, "slop": 1, "threshold": 1,
            "results_path": str(tmp_path / "r.jsonl")}
    seen = fake_ros(monkeypatch, ints)
    with pytest.raises(_ModelLoaded):
        ros2_node.main([])
    assert len(seen["load"]) == 1 and seen["log"] == [], seen
    assert ros2_node.node_settings(ints)["stale_s"] == 5.0
    seen = fake_ros(monkeypatch, {"stale_s": "soon"})
    assert ros2_node.main([]) == 2 and seen["load"] == [] and seen["destroyed"]
    assert seen["log"] == [("error", "edge-ad ROS 2 node: parameter stale_s must be a finite number > 0, got 'soon'")]


def test_a_model_that_cannot_load_ends_the_node_with_one_line(monkeypatch):
    """A corrupt or unsigned model (ModelError) or a missing backend: exit 1 and one error line naming
    model_dir and the reason, the node shut down (it was a traceback)."""
    from edge_ad.runtime.manifest import ManifestError
    seen = fake_ros(monkeypatch, {}, load_error=ManifestError("final.onnx: sha256 mismatch"))
    assert ros2_node.main([]) == 1 and seen["destroyed"] and len(seen["load"]) == 1
    assert [lvl for lvl, _ in seen["log"]] == ["error"], seen["log"]
    assert "cannot load model_dir" in seen["log"][0][1] and "final.onnx: sha256 mismatch" in seen["log"][0][1]


def test_a_backend_that_cannot_run_here_ends_the_node_with_one_line(monkeypatch):
    """Audit 33 #2: no usable TensorRT engine (EngineCacheError, e.g. EDGE_AD_TRT_ON_MISMATCH=fail before
    build-engine ran) or a CUDA call that failed (CudaError) were RuntimeErrors the node did not catch: a
    traceback, every 5 s under the launch file's respawn. Now exit 1 and one error line, as for a bad model."""
    from edge_ad.runtime.backends.cuda_buffers import CudaError
    from edge_ad.runtime.backends.engine_cache import EngineCacheError
    for error in (EngineCacheError("no TensorRT engine in /m/engines for final graph 8b7f15688f11; run "
                                   "`edge-ad build-engine MODEL_DIR` on this device first"),
                  CudaError("TensorRT could not create an execution context (out of GPU memory?)")):
        seen = fake_ros(monkeypatch, {"backend": "tensorrt"}, load_error=error)
        assert ros2_node.main([]) == 1 and seen["destroyed"] and len(seen["load"]) == 1
        assert [lvl for lvl, _ in seen["log"]] == ["error"], seen["log"]
        assert seen["log"][0][1] == (f"edge-ad ROS 2 node: cannot load model_dir {seen['load'][0][0]} (backend "
                                     f"tensorrt): {error}")


class NamedScorer(MapScorer):
    """MapScorer with a Scorer.identity (which model scores) and a calibrated threshold."""

    threshold = 1.0

    def __init__(self, path: str, manifest_sha256: str):
        self.identity = {"path": path, "manifest_sha256": manifest_sha256, "configuration": "paper"}


def test_a_results_path_of_another_model_ends_the_node_with_one_line(monkeypatch, tmp_path):
    """A node restarted with another model onto the same results_path: exit 1 and one error line
    naming results_path and both models, the file unchanged, the node shut down (it was a
    ResultsFileError traceback out of run_capture); the same model restarted resumes the file."""
    loop_stops_before_its_first_frame(monkeypatch)
    results = tmp_path / "results.jsonl"
    first, other = NamedScorer("/models/first", "a" * 64), NamedScorer("/models/other", "b" * 64)
    seen = fake_ros(monkeypatch, {"results_path": str(results)}, scorer=first)
    assert ros2_node.main([]) == 0 and seen["destroyed"]
    before = results.read_bytes()
    assert b'"start"' in before and b"/models/first" in before

    seen = fake_ros(monkeypatch, {"results_path": str(results)}, scorer=other)
    assert ros2_node.main([]) == 1 and seen["destroyed"]
    errors = [m for lvl, m in seen["log"] if lvl == "error"]
    assert len(errors) == 1 and "\n" not in errors[0], seen["log"]
    assert f"results_path {results} holds results of the model /models/first" in errors[0], errors[0]
    assert "not of this node's model /models/other" in errors[0] and "give another results_path" in errors[0]
    assert results.read_bytes() == before

    seen = fake_ros(monkeypatch, {"results_path": str(results)}, scorer=first)   # the same model again
    assert ros2_node.main([]) == 0 and not [m for lvl, m in seen["log"] if lvl == "error"], seen["log"]
    after = results.read_bytes()
    assert after.startswith(before) and b'"resumed"' in after[len(before):]

    notes = tmp_path / "notes.txt"    # not a results file: refused, unchanged, results_path named
    notes.write_bytes(b"someone's notes, no newline")
    seen = fake_ros(monkeypatch, {"results_path": str(notes)}, scorer=first)
    assert ros2_node.main([]) == 1 and seen["destroyed"]
    errors = [m for lvl, m in seen["log"] if lvl == "error"]
    assert len(errors) == 1 and f"results_path {notes} does not look like an edge-ad results file" in errors[0]
    assert "--out" not in errors[0] and notes.read_bytes() == b"someone's notes, no newline"


def test_a_results_path_the_node_cannot_write_ends_it_with_one_line(monkeypatch, tmp_path):
    """Audit 33 #14: node_settings checked results_path only for "is a directory", and main caught only
    ResultsFileError around run_capture, so a results_path it cannot create ended in the OSError's traceback after
    the model load (seconds; minutes for a TensorRT engine), respawned every 5 s. Under a file (or a folder it may
    not write) it is now a bad parameter, before the model loads (exit 2); anything else the open refuses (here a
    folder /proc cannot hold) is one error line naming results_path, exit 1, the node shut down."""
    loop_stops_before_its_first_frame(monkeypatch)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("a file, not a folder")
    seen = fake_ros(monkeypatch, {"results_path": str(a_file / "results.jsonl")})
    assert ros2_node.main([]) == 2 and seen["load"] == [] and seen["destroyed"]
    assert seen["log"] == [("error", f"edge-ad ROS 2 node: parameter results_path: cannot write {a_file}/results.jsonl: "
                                     f"{a_file} is not a directory")], seen["log"]
    with pytest.raises(ros2_node.ParameterError, match=r"^parameter results_path: cannot write .*: \S+ is not a dir"):
        ros2_node.node_settings({"results_path": str(a_file / "sub" / "results.jsonl")})
    path = "/proc/edge-ad-nope/results.jsonl"
    seen = fake_ros(monkeypatch, {"results_path": path}, scorer=NamedScorer("/models/first", "a" * 64))
    assert ros2_node.main([]) == 1 and seen["destroyed"], seen["log"]
    errors = [m for lvl, m in seen["log"] if lvl == "error"]
    assert errors == [f"edge-ad ROS 2 node: cannot write results_path {path}: [Errno 2] No such file or directory: "
                      "'/proc/edge-ad-nope'"], seen["log"]


def test_the_node_says_why_the_models_threshold_does_not_hold(monkeypatch):
    """Audit 33 #8 follow-up: a manifest whose preprocessing differs from its threshold's has no threshold; the
    node's start line said only "(threshold None)", now why, as edge-ad run and verify do."""
    from edge_ad.runtime.config import SearchConfig

    class Edited(NamedScorer):
        threshold, config = None, SearchConfig()
        manifest = {"preprocess": {**PreprocessSpec().to_dict(), "far_mm": 1000.0},
                    "threshold": {"value": 1.0, "preprocess": PreprocessSpec().to_dict()}}

    loop_stops_before_its_first_frame(monkeypatch)
    seen = fake_ros(monkeypatch, {}, scorer=Edited("/models/edited", "c" * 64))
    assert ros2_node.main([]) == 0
    (line,) = [m for lvl, m in seen["log"] if lvl == "info" and m.startswith("scoring ")]
    assert line.endswith("(threshold None: the model's threshold was calibrated with another preprocess (far_mm) "
                         "than this model's manifest says (an edited manifest?): calibrate it again (edge-ad "
                         "calibrate) or give --threshold)"), line


def test_node_without_ros_says_why():
    p = subprocess.run([sys.executable, "-m", "edge_ad.jetson.ros2_node"], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 1
    assert "ROS 2 install" in p.stderr and "rclpy" in p.stderr


def test_the_launch_file_restarts_the_node_it_lets_end_on_a_fatal_stop():
    """Audit 28 #11: the node ends itself on a fatal stop "so the launcher restarts it", but the launch file's
    ExecuteProcess had no respawn: after the first stuck frame the robot's monitor stayed dead, silent. The
    node's process respawns (launch argument respawn, default true) after RESPAWN_DELAY_S (launch is not
    installed here: the launch file is read as source)."""
    tree = ast.parse((REPO / "jetson" / "edge_ad.launch.py").read_text())
    (call,) = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "ExecuteProcess"]
    kw = {k.arg: k.value for k in call.keywords}
    assert ast.unparse(kw["respawn"]) == "LaunchConfiguration('respawn')", ast.unparse(kw.get("respawn", call))
    assert ast.unparse(kw["respawn_delay"]) == "RESPAWN_DELAY_S"
    delay = next(n for n in tree.body if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") ==
                 "RESPAWN_DELAY_S")
    assert ast.literal_eval(delay.value) == 5.0
    declared = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") ==
                "DeclareLaunchArgument" and n.args and isinstance(n.args[0], ast.Constant) and n.args[0].value == "respawn"]
    assert len(declared) == 1 and ast.literal_eval(
        {k.arg: k.value for k in declared[0].keywords}["default_value"]) == "true"


def test_rotation_settings_that_would_do_nothing_are_refused():
    """Audit 28 #25: the node took rotate_keep without rotate_mb (nothing ever rotates, so nothing is pruned: the
    file grows without bound) and rotate_mb / rotate_keep without results_path, which edge-ad run refuses. One
    rule (runtime.results.rotation_problem) for both."""
    from edge_ad.jetson.ros2_node import ParameterError, node_settings
    with pytest.raises(ParameterError, match=r"^parameter rotate_keep keeps the newest N of the files rotate_mb > 0 "
                                             r"rotates: give rotate_mb > 0 too$"):
        node_settings({"rotate_keep": 5, "results_path": "/tmp/r.jsonl"})
    with pytest.raises(ParameterError, match=r"^parameter rotate_mb > 0 / rotate_keep rotate the results file: give "
                                             r"results_path too$"):
        node_settings({"rotate_mb": 5.0})
    s = node_settings({"rotate_mb": 5.0, "rotate_keep": 3, "results_path": "/tmp/r.jsonl"})
    assert (s["rotate_bytes"], s["rotate_keep"]) == (5_000_000, 3)


def _launch_file(monkeypatch):
    """jetson/edge_ad.launch.py imported with fake launch modules (ROS's launch is not installed here): each
    DeclareLaunchArgument / ExecuteProcess records its arguments."""
    import importlib.util

    class Recorded:
        def __init__(self, *args, **kw):
            self.args, self.kw = args, kw
    mods = {"launch": dict(LaunchDescription=Recorded), "launch.actions": dict(DeclareLaunchArgument=Recorded,
                                                                               ExecuteProcess=Recorded),
            "launch.substitutions": dict(LaunchConfiguration=Recorded)}
    for name, attrs in mods.items():
        m = ModuleType(name)
        m.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, m)
    spec = importlib.util.spec_from_file_location("edge_ad_launch", REPO / "jetson" / "edge_ad.launch.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_launch_file_runs_the_node_with_the_interpreter_install_sh_made(monkeypatch, tmp_path):
    """Audit 33 #9: jetson/install.sh installs edge-ad only into PREFIX/venv, but the launch file's python argument
    defaulted to python3 (the system's, without edge_ad) and the documented launch line gave no python:=, so the node
    exited at once with "No module named edge_ad", respawned every 5 s. The default is install.sh's venv
    interpreter when it is there (else python3), and the docs and install.sh's last words give python:=."""
    launch = _launch_file(monkeypatch)
    assert launch.VENV_PYTHON == "/opt/edge-ad/venv/bin/python"       # install.sh's PREFIX default + /venv/bin/python

    def python_default():
        (arg,) = [a for a in launch.generate_launch_description().args[0] if a.args == ("python",)]
        return arg.kw["default_value"]
    venv = tmp_path / "venv" / "bin" / "python"
    venv.parent.mkdir(parents=True)
    venv.write_text("#!/bin/sh\n")
    venv.chmod(0o755)
    monkeypatch.setattr(launch, "VENV_PYTHON", str(venv))
    assert python_default() == str(venv)
    monkeypatch.setattr(launch, "VENV_PYTHON", str(tmp_path / "none" / "python"))
    assert python_default() == "python3"                              # edge-ad pip-installed into the system's
    for doc in ("jetson/README.md", "docs/ros2-node.md"):
        text = (REPO / doc).read_text()
        assert "ros2 launch jetson/edge_ad.launch.py python:=/opt/edge-ad/venv/bin/python" in text, doc
    assert 'edge_ad.launch.py python:=$PREFIX/venv/bin/python' in (REPO / "jetson" / "install.sh").read_text()


def test_launch_file_passes_every_node_parameter():
    src = (REPO / "jetson" / "edge_ad.launch.py").read_text()
    tree = ast.parse(src)
    args = next(n for n in ast.walk(tree) if isinstance(n, ast.Assign) and n.targets[0].id == "ARGS")
    launch_args = ast.literal_eval(args.value)          # name -> (default, description)
    keys = set(launch_args)
    assert keys == set(ros2_node.PARAMETERS), (sorted(set(ros2_node.PARAMETERS) - keys),
                                               sorted(keys - set(ros2_node.PARAMETERS)))
    # ROS parses a -p override as YAML: each launch default must give the node's default, same type
    # (a float parameter overridden with "10" would be refused as an integer)
    for k, (default, description) in launch_args.items():
        got, want = yaml.safe_load(default), ros2_node.PARAMETERS[k]
        assert type(got) is type(want), (k, default, want)
        assert got == want or (got != got and want != want), (k, default, want)
        assert description
    assert "edge_ad.jetson.ros2_node" in src
