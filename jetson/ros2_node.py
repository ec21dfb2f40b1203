"""ROS 2 node: score synchronized colour + aligned depth topics, publish score, flag and error map.

    python3 -m edge_ad.jetson.ros2_node --ros-args -p model_dir:=/opt/edge-ad/model \\
        -p rgb_topic:=/camera/camera/color/image_raw \\
        -p depth_topic:=/camera/camera/aligned_depth_to_color/image_raw

or ``ros2 launch edge_ad.launch.py`` (jetson/edge_ad.launch.py). rclpy, message_filters and the
message packages come from the robot's ROS 2 install (they are not on PyPI): this module imports
them only in ``main()``. Everything else (parameter checks, message conversion, the frame source
fed by the subscriptions, the publishing hook) is plain Python, shared with ``edge-ad run`` through
``runtime.capture.run_capture`` and unit-tested offline.

Parameters: model_dir ("demo" = the shipped demo model), backend, threshold (NaN = the model's),
rgb_topic, depth_topic, rgb_compressed, depth_compressed (CompressedImage topics), slop (s),
queue_size, seed, results_path ("none" = no file), stale_s (no pair for this long = outage),
frame_timeout_s, rotate_mb, trusted_keys, alarm_window (scored frames; 0: no alarm-rate watch),
alarm_alpha. They are checked before the model loads
(``node_settings``): a bad one ends the node at once (exit 2) with a line naming it, e.g.
"parameter threshold must be a finite number > 0 (scores are >= 0), or .nan for the model's
calibrated one; got -1.0". A model that cannot load (corrupt, unsigned with trusted_keys, backend
missing, no usable TensorRT engine, no GPU memory) ends it with exit 1 and one line naming model_dir
and the reason; so does a results_path that holds another model's results (a restart with a new
model: both models named; the scores of two models are never mixed in one file) or is not a results
file (the file is left unchanged).

Publishes ~/score (std_msgs/Float32), ~/anomaly (std_msgs/Bool), ~/error_map (sensor_msgs/Image
32FC1, the model resolution) stamped with the colour frame's header. Every synchronized pair the node
takes gives exactly one ~/score message; pairs that arrive while a frame is being scored are dropped
for the newest one (newest-frame policy: counted as ``skipped`` in the results summary, or, when replaced
before the loop took them, as ``replaced_before_decode`` in its ``source_stats``), so a model
slower than the camera publishes one message per scoring, not one per pair. A frame that was not scored (a sensor fault such as black_rgb or
no_depth, or an unreadable frame) publishes ~/score NaN (no score: never a made-up number, and no
gap that a plot or a monitor would bridge with the previous frame's score), ~/anomaly True and
~/fault (std_msgs/String, "<fault>: <reason>"; ``ResultPublisher``), never a normal-looking result;
so does a camera that stopped (no pair for stale_s: "source_lost: ..."). Consumers: act on
~/anomaly, or test ~/score for NaN. ``score > t`` is False for NaN, so a consumer that thresholds
~/score itself without ``math.isnan(score)`` first reads every fault and outage as a normal frame
(jetson/README.md shows a subscriber that checks it).

~/alarm_rate (std_msgs/String): the alarm-rate watch's events (runtime/alarm_watch.py, the same
``alarm_rate_high`` / ``alarm_rate_normal`` lines as in results_path, as JSON): more frames flagged
over the last alarm_window scored frames than the model threshold's calibrated rate allows (a run of
anomalies, or the scene changed: adapt the model with edge-ad calibrate), then plausible again.
"""
from __future__ import annotations

import array
import json
import math
import os
import sys
import threading
import time
from typing import Callable, Iterator, Optional

from edge_ad.runtime.alarm_watch import DEFAULT_ALPHA, DEFAULT_WINDOW, NORMAL_P, check_watch_settings
from edge_ad.runtime.msgconv import (msg_to_depth_mm, msg_to_rgb, numpy_to_image_fields, registration_problem,
                                     stamp_seconds)
from edge_ad.runtime.preprocess import FrameError
from edge_ad.runtime.results import rotate_bytes_of, rotation_problem
from edge_ad.runtime.sources.base import Frame, Source, SourceError

NO_SCORE = float("nan")   # ~/score of a frame (or an outage) that was not scored

PARAMETERS = {  # name -> default
    "model_dir": "demo", "backend": "onnxruntime", "threshold": float("nan"),
    "rgb_topic": "/camera/camera/color/image_raw",
    "depth_topic": "/camera/camera/aligned_depth_to_color/image_raw",
    "rgb_compressed": False, "depth_compressed": False, "slop": 0.02, "queue_size": 10,
    "seed": 0, "results_path": "none", "stale_s": 10.0,
    # a frame scoring longer than this ends the node (fatal, so the launcher restarts it); 0 = no limit
    "frame_timeout_s": 0.0, "rotate_mb": 0.0,   # results_path rotation (0 = never)
    "rotate_keep": 0,     # rotated results files kept, the newest N; older ones deleted (0 = keep all)
    "trusted_keys": "",   # comma-separated Ed25519 public key files: the model must be signed by one
    # the alarm-rate watch (runtime/alarm_watch.py): scored frames in its window (0 = off), its test's alpha
    "alarm_window": DEFAULT_WINDOW, "alarm_alpha": DEFAULT_ALPHA,
}


class ParameterError(ValueError):
    """A node parameter that cannot work; the message names it ("parameter slop must be ...")."""


def _number(p: dict, name: str, lowest: float, strict: bool) -> float:
    """Parameter ``name`` as a finite float > ``lowest`` (``strict``) or >= it, else ParameterError."""
    v = p[name]
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if not ok or v < lowest or (strict and v == lowest):
        raise ParameterError(f"parameter {name} must be a finite number {'>' if strict else '>='} {lowest:g}, "
                             f"got {v!r}")
    return float(v)


def _integer(p: dict, name: str, lowest: int) -> int:
    """Parameter ``name`` as an integer >= ``lowest``, else ParameterError."""
    v = p[name]
    if not isinstance(v, int) or isinstance(v, bool) or v < lowest:
        raise ParameterError(f"parameter {name} must be an integer >= {lowest}, got {v!r}")
    return v


def node_settings(p: dict) -> dict:
    """The node's parameters (``PARAMETERS`` names -> values) checked and converted before the model
    loads (seconds; minutes when TensorRT builds an engine), so a bad value fails at once with a
    ParameterError naming the parameter, never after the load.

    Returns model_dir (the demo model's for "demo" / ""), backend, threshold (None: the model's),
    rgb_topic, depth_topic, rgb_compressed, depth_compressed, slop, queue_size, seed, results_path
    (None: no file), stale_s, frame_timeout (None: no limit), rotate_bytes (None: never),
    trusted_keys (None: no check), alarm_window, alarm_alpha."""
    from edge_ad.runtime.manifest import MANIFEST
    from edge_ad.runtime.variants import BACKENDS

    p = {**PARAMETERS, **p}
    out = {}
    if not isinstance(p["model_dir"], str):
        raise ParameterError(f"parameter model_dir must be a directory name, got {p['model_dir']!r}")
    if p["model_dir"] in ("", "demo"):
        from edge_ad.runtime import demo_model_dir
        out["model_dir"] = str(demo_model_dir())
    else:
        model_dir = os.path.expanduser(p["model_dir"])
        if not os.path.isdir(model_dir):
            raise ParameterError(f"parameter model_dir: no directory {model_dir!r} (an edge-ad export "
                                 "output, or 'demo' for the shipped demo model)")
        if not os.path.isfile(os.path.join(model_dir, MANIFEST)):
            raise ParameterError(f"parameter model_dir: {model_dir!r} has no {MANIFEST}: not an exported "
                                 "edge-ad model (edge-ad export writes one)")
        out["model_dir"] = model_dir
    if p["backend"] not in BACKENDS:
        raise ParameterError(f"parameter backend must be one of {', '.join(BACKENDS)}, got {p['backend']!r}")
    out["backend"] = p["backend"]
    thr = p["threshold"]
    if isinstance(thr, float) and math.isnan(thr):
        out["threshold"] = None
    elif (not isinstance(thr, (int, float)) or isinstance(thr, bool) or not math.isfinite(thr)
          or thr <= 0):
        raise ParameterError("parameter threshold must be a finite number > 0 (scores are >= 0), or .nan "
                             f"for the model's calibrated one; got {thr!r}")
    else:
        out["threshold"] = float(thr)
    for name in ("rgb_topic", "depth_topic"):
        if not isinstance(p[name], str) or not p[name].strip():
            raise ParameterError(f"parameter {name} must be a topic name, got {p[name]!r}")
        out[name] = p[name]
    for name in ("rgb_compressed", "depth_compressed"):
        if not isinstance(p[name], bool):
            raise ParameterError(f"parameter {name} must be true or false, got {p[name]!r}")
        out[name] = p[name]
    out["slop"] = _number(p, "slop", 0, strict=True)
    out["queue_size"] = _integer(p, "queue_size", 1)
    out["seed"] = _integer(p, "seed", 0)
    out["stale_s"] = _number(p, "stale_s", 0, strict=True)
    out["frame_timeout"] = _number(p, "frame_timeout_s", 0, strict=False) or None
    out["rotate_bytes"] = rotate_bytes_of(_number(p, "rotate_mb", 0, strict=False))
    out["rotate_keep"] = _integer(p, "rotate_keep", 0) or None
    results = p["results_path"]
    if not isinstance(results, str):
        raise ParameterError(f"parameter results_path must be a file name or 'none', got {results!r}")
    out["results_path"] = None if results in ("", "none") else os.path.expanduser(results)
    why = rotation_problem(out["results_path"] is not None, out["rotate_bytes"] is not None,
                           out["rotate_keep"] is not None, results_name="results_path", rotate_name="rotate_mb > 0",
                           keep_name="rotate_keep")
    if why:                                       # as edge-ad run refuses it: settings that would do nothing
        raise ParameterError(f"parameter {why}")
    if out["results_path"] is not None and os.path.isdir(out["results_path"]):
        raise ParameterError(f"parameter results_path: {results!r} is a directory; give a file name "
                             "(results are appended to it) or 'none'")
    why = None if out["results_path"] is None else _unwritable(out["results_path"])
    if why:                                       # found now, not after the (slow) model load
        raise ParameterError(f"parameter results_path: cannot write {out['results_path']}: {why}")
    if not isinstance(p["trusted_keys"], str):
        raise ParameterError("parameter trusted_keys must be comma-separated key files, "
                             f"got {p['trusted_keys']!r}")
    keys = [os.path.expanduser(k.strip()) for k in p["trusted_keys"].split(",") if k.strip()]
    for k in keys:
        if not os.path.isfile(k):
            raise ParameterError(f"parameter trusted_keys: no key file {k!r}")
    out["trusted_keys"] = keys or None
    out["alarm_window"] = _integer(p, "alarm_window", 0)
    try:
        _, out["alarm_alpha"] = check_watch_settings(out["alarm_window"], p["alarm_alpha"])
    except ValueError:
        raise ParameterError(f"parameter alarm_alpha must be a number in (0, {NORMAL_P:g}), "
                             f"got {p['alarm_alpha']!r}") from None
    return out


def _unwritable(path: str) -> Optional[str]:
    """Why the node could not create or append to the results file ``path`` (its nearest existing ancestor is a
    file, or a folder this user may not write, e.g. a read-only mount), or None. What this cannot foresee
    (a folder the filesystem refuses to create) main reports when the file is opened."""
    if os.path.exists(path):
        return None if os.access(path, os.W_OK) else "no permission to write it"
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        return f"{parent} is not a directory"
    return None if os.access(parent, os.W_OK | os.X_OK) else f"no permission to write in {parent}"


def results_refused_message(e, results_path: str) -> str:
    """The node's one error line for a results_path that run_capture refused (``e``: a
    results.ResultsFileError; the file is left unchanged): another model's results (OtherModelError:
    both models named) or not a results file."""
    from edge_ad.runtime.results import OtherModelError
    if isinstance(e, OtherModelError):
        return (f"results_path {results_path} holds results of the model {e.previous.get('path')}, not of "
                f"this node's model {e.model.get('path')} ({', '.join(e.differences)}); the scores of two "
                "models are never mixed in one file: give another results_path, or the model that wrote "
                "it (the file is left unchanged)")
    problem = e.problem or str(e)
    return f"results_path {results_path} {problem}; left unchanged: move it away or give another results_path"


def frame_from_msgs(rgb_msg, depth_msg, fid: str) -> Frame:
    """A synchronized (colour, depth) message pair -> Frame; undecodable pairs, and pairs whose depth is not
    registered to colour (``msgconv.registration_problem``: different header.frame_id), get ``error``."""
    header = getattr(rgb_msg, "header", None)
    t = stamp_seconds(header) if header is not None else time.time()
    problem = registration_problem(header, getattr(depth_msg, "header", None))
    if problem:
        return Frame(fid, None, None, t, meta={"header": header},
                     error=f"{problem}; subscribe depth_topic to depth aligned to colour (realsense2_camera: "
                           "align_depth.enable:=true, .../aligned_depth_to_color/image_raw)")
    try:
        rgb, depth = msg_to_rgb(rgb_msg), msg_to_depth_mm(depth_msg)
    except FrameError as e:
        return Frame(fid, None, None, t, error=str(e), meta={"header": header})
    return Frame(fid, rgb, depth, t, meta={"header": header})


class TopicSource(Source):
    """A live Source fed by subscription callbacks (``push``); keeps only the newest pair.

    Raises SourceError when no pair arrived for ``stale_s`` seconds (the capture loop logs an
    outage and reopens, i.e. waits again)."""

    live = True

    def __init__(self, uri: str = "ros2://", stale_s: float = 10.0):
        self.uri, self.stale_s = uri, stale_s
        self._cond = threading.Condition()
        self._pair = None
        self._closed = False
        self._n = 0                    # frame ids "1", "2", ..., going on across outages (``reopened``)
        self.stats = {"replaced_before_decode": 0}

    def push(self, rgb_msg, depth_msg) -> None:
        """Keep the pair (replacing an untaken one), also while closed: ``reopened`` takes it up."""
        with self._cond:
            if self._pair is not None:
                self.stats["replaced_before_decode"] += 1
            self._pair = (rgb_msg, depth_msg)
            self._cond.notify_all()

    def __iter__(self) -> Iterator[Frame]:
        while True:
            with self._cond:
                got = self._cond.wait_for(lambda: self._pair is not None or self._closed, self.stale_s)
                if self._closed:
                    return
                if not got:
                    raise SourceError(f"no synchronized colour/depth pair for {self.stale_s:.0f} s")
                pair, self._pair = self._pair, None
            self._n += 1
            yield frame_from_msgs(pair[0], pair[1], str(self._n))

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def frames_read(self) -> int:
        """Pairs taken so far, counting the sources this one continues (the last frame id)."""
        return self._n


def reopened(source: TopicSource) -> TopicSource:
    """``source`` open again after it reported an outage and run_capture closed it (run_capture's reopen):
    the same mailbox, so a pair the subscription pushed while run_capture waited to reopen (its backoff) is
    taken, not lost in a closed source (and, with it, the newest-pair counts in ``stats``); the same topics
    and staleness, frame ids going on from the last one (they restarted at "1" after every outage, so one
    results_path held many frames "1")."""
    with source._cond:
        source._closed = False
    return source


class ResultPublisher:
    """The node's output hooks for run_capture: ``__call__`` (``on_result``) publishes a scored frame,
    ``fault`` (``on_error``) a frame that was not scored, ``outage`` (``on_outage``) a camera that stopped.

    Scored frame: ~/score, ~/anomaly (when there is a threshold), ~/error_map. Sensor fault or
    unscorable frame (``error`` line of the results): ~/score NaN (one ~/score message per frame,
    scored or not: there is no score, and a skipped message would leave a plot or a monitor showing
    the previous frame's), ~/anomaly True, so a consumer that stops on an anomaly also stops on a
    broken camera (a fault never looks normal), and ~/fault, a text naming the fault and its reason
    ("black_rgb: 100.0% of the foreground is black (limit 95.0%)"; "unscorable: ..." for a frame
    that could not be read or scored). ~/error_map is not published for it (there is no map).

    ``alarm_rate`` (``on_alarm_rate``): an alarm-rate watch event, published on ~/alarm_rate as its
    JSON line.

    ``make_float``, ``make_bool``, ``make_image``, ``make_string`` build messages (rclpy classes in
    the node, plain dicts in tests); ``publish_*`` send them."""

    def __init__(self, make_float: Callable, make_bool: Callable, make_image: Callable,
                 publish_score: Callable, publish_flag: Callable, publish_error_map: Callable,
                 make_string: Callable, publish_fault: Callable, publish_alarm_rate: Optional[Callable] = None):
        self.make_float, self.make_bool, self.make_image = make_float, make_bool, make_image
        self.publish_score, self.publish_flag, self.publish_error_map = publish_score, publish_flag, publish_error_map
        self.make_string, self.publish_fault = make_string, publish_fault
        self.publish_alarm_rate = publish_alarm_rate

    def __call__(self, rec: dict, frame: Frame, res) -> None:
        self.publish_score(self.make_float(float(rec["score"])))
        if rec["anomalous"] is not None:
            self.publish_flag(self.make_bool(bool(rec["anomalous"])))
        fields = numpy_to_image_fields(res.error_map.astype("float32"), "32FC1", data_as_bytes=True)
        fields["data"] = array.array("B", fields["data"])
        self.publish_error_map(self.make_image(frame.meta.get("header"), fields))

    def outage(self, rec: dict) -> None:
        """Publish a ``source_lost`` / ``source_failed`` event (no synchronized pair for ``stale_s``):
        ~/score NaN, ~/anomaly True and ~/fault "source_lost: <why>", so the last frame's score and
        flag do not stand for a camera that stopped."""
        self.publish_score(self.make_float(NO_SCORE))
        self.publish_flag(self.make_bool(True))
        self.publish_fault(self.make_string(f"{rec['event']}: {rec['error']}"))

    def alarm_rate(self, rec: dict) -> None:
        """Publish an ``alarm_rate_high`` / ``alarm_rate_normal`` event (``rec``: its results line) on
        ~/alarm_rate as that JSON line (nothing without a ``publish_alarm_rate``)."""
        if self.publish_alarm_rate is not None:
            self.publish_alarm_rate(self.make_string(json.dumps(rec)))

    def fault(self, rec: dict, frame: Frame) -> None:
        """Publish an ``error`` line (``rec``: its ``fault`` name, if a sensor fault, and ``error``)."""
        name = rec.get("fault") or "unscorable"
        reason, prefix = rec["error"], f"sensor fault {name}: "    # the error line says "sensor fault NAME: ..."
        reason = reason[len(prefix):] if reason.startswith(prefix) else reason
        self.publish_score(self.make_float(NO_SCORE))
        self.publish_flag(self.make_bool(True))
        self.publish_fault(self.make_string(f"{name}: {reason}"))


def main(argv: Optional[list] = None) -> int:
    """Run the node (needs a ROS 2 install: rclpy, message_filters, sensor_msgs, std_msgs)."""
    try:
        import message_filters
        import rclpy
        from rcl_interfaces.msg import ParameterDescriptor
        from rclpy.exceptions import ParameterException
        from rclpy.node import Node
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import CompressedImage, Image
        from std_msgs.msg import Bool, Float32, String
    except ImportError as e:
        print(f"edge-ad ROS 2 node: {e}. rclpy and the ROS message packages come from a ROS 2 "
              "install (not from pip): source /opt/ros/<distro>/setup.bash first.", file=sys.stderr)
        return 1
    from edge_ad.runtime import Scorer
    from edge_ad.runtime.backends.errors import BackendUnavailable
    from edge_ad.runtime.capture import EXIT_FATAL, EXIT_OK, exit_status, run_capture, scorer_threshold
    from edge_ad.runtime.results import ResultsFileError
    from edge_ad.runtime.scorer import threshold_dropped

    rclpy.init(args=argv if argv is not None else sys.argv)
    node = Node("edge_ad")

    def give_up(message: str, status: int) -> int:
        """One error line (no traceback), the node shut down, the exit status."""
        node.get_logger().error(f"edge-ad ROS 2 node: {message}")
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
        return status

    try:   # every parameter checked before the (slow) model load
        # dynamic typing: rclpy would otherwise fix each type from its default and refuse stale_s:=5 (an integer
        # for a float) with a traceback; node_settings checks every type and range itself (ints taken as floats)
        s = node_settings({k: node.declare_parameter(k, v, ParameterDescriptor(dynamic_typing=True)).value
                           for k, v in PARAMETERS.items()})
    except ParameterError as e:
        return give_up(str(e), 2)
    except ParameterException as e:    # anything else rclpy refuses in a declaration: one line too
        return give_up(f"parameter: {e}", 2)
    model_dir = s["model_dir"]
    try:
        scorer = Scorer.load(model_dir, backend=s["backend"], trusted_keys=s["trusted_keys"])
    # a bad or unsigned model (ModelError), a missing backend, no usable TensorRT engine or GPU memory
    except (ValueError, ImportError, BackendUnavailable) as e:
        return give_up(f"cannot load model_dir {model_dir} (backend {s['backend']}): {e}", 1)
    thr = s["threshold"] if s["threshold"] is not None else scorer_threshold(scorer)
    pub_score = node.create_publisher(Float32, "~/score", 10)
    pub_flag = node.create_publisher(Bool, "~/anomaly", 10)
    pub_err = node.create_publisher(Image, "~/error_map", 10)
    pub_fault = node.create_publisher(String, "~/fault", 10)
    pub_alarm_rate = node.create_publisher(String, "~/alarm_rate", 10)

    def make_image(header, fields):
        msg = Image(**fields)
        if header is not None:
            msg.header = header
        return msg

    hook = ResultPublisher(lambda v: Float32(data=v), lambda v: Bool(data=v), make_image,
                           pub_score.publish, pub_flag.publish, pub_err.publish,
                           lambda v: String(data=v), pub_fault.publish, pub_alarm_rate.publish)
    holder = {"source": TopicSource(f"ros2://{s['rgb_topic']}+{s['depth_topic']}", s["stale_s"])}

    def new_source():
        holder["source"] = reopened(holder["source"])
        return holder["source"]

    # best-effort subscriptions receive from both reliable and best-effort camera drivers
    subs = [message_filters.Subscriber(node, CompressedImage if s["rgb_compressed"] else Image, s["rgb_topic"],
                                       qos_profile=qos_profile_sensor_data),
            message_filters.Subscriber(node, CompressedImage if s["depth_compressed"] else Image, s["depth_topic"],
                                       qos_profile=qos_profile_sensor_data)]
    sync = message_filters.ApproximateTimeSynchronizer(subs, s["queue_size"], s["slop"])
    sync.registerCallback(lambda c, d: holder["source"].push(c, d))
    spinner = threading.Thread(target=rclpy.spin, args=(node,), daemon=True)
    spinner.start()
    dropped = threshold_dropped(getattr(scorer, "manifest", None), getattr(scorer, "config", None))
    node.get_logger().info(f"scoring {s['rgb_topic']} + {s['depth_topic']} with {model_dir} "
                           f"(threshold {thr}{f': {dropped}' if thr is None and dropped else ''})")
    try:
        summary = run_capture(holder["source"], scorer, threshold=thr, out=s["results_path"],
                              seed=s["seed"], reopen=new_source, on_result=hook, on_error=hook.fault,
                              on_outage=hook.outage, on_alarm_rate=hook.alarm_rate,
                              log=node.get_logger().warning,
                              frame_timeout=s["frame_timeout"], rotate_bytes=s["rotate_bytes"],
                              rotate_keep=s["rotate_keep"],
                              alarm_window=s["alarm_window"], alarm_alpha=s["alarm_alpha"])
        node.get_logger().info(f"summary: {summary}")
    except ResultsFileError as e:   # another model's results, or not a results file: refused, unchanged
        node.get_logger().error(f"edge-ad ROS 2 node: {results_refused_message(e, s['results_path'])}")
        return 1
    except OSError as e:   # the results file cannot be opened (the loop itself reports every other error)
        node.get_logger().error(f"edge-ad ROS 2 node: cannot write results_path {s['results_path']}: {e}")
        return 1
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    if summary.get("abandoned_frame") is not None:   # a scoring call is still stuck: do not wait for it
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_FATAL)
    # bad frames are published (~/fault) and in the results: only a failed run is a failed node
    return EXIT_FATAL if exit_status(summary) == EXIT_FATAL else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
