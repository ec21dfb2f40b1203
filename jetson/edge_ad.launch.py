"""ROS 2 launch file for the edge-ad scoring node.

    ros2 launch jetson/edge_ad.launch.py python:=/opt/edge-ad/venv/bin/python model_dir:=/opt/edge-ad/model \\
        rgb_topic:=/camera/camera/color/image_raw \\
        depth_topic:=/camera/camera/aligned_depth_to_color/image_raw threshold:=0.05

edge-ad is a pip package, not an ament package, so the node runs as a Python module of the
interpreter that has edge-ad installed (``python`` launch argument): jetson/install.sh installs it only
into PREFIX/venv, so the default is that venv's python (VENV_PYTHON, install.sh's default PREFIX) when it
is there, else python3 (edge-ad pip-installed into the system's interpreter); another PREFIX: python:=PREFIX/venv/bin/python.

The node ends itself on a fatal stop (a frame stuck over frame_timeout_s, a results file it cannot write, a
camera gone for good) so that it is started afresh: ``respawn`` (default true) restarts it RESPAWN_DELAY_S
seconds after it exits, results_path continuing its frame index. A node that cannot start (a bad parameter:
exit 2; a model that does not load: exit 1) is retried as often: fix it, or launch with respawn:=false.
"""
import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess
from launch.substitutions import LaunchConfiguration

ARGS = {
    "model_dir": ("demo", "exported model directory (demo: the shipped demo model)"),
    "backend": ("onnxruntime", "onnxruntime or tensorrt"),
    "threshold": (".nan", "anomaly threshold (.nan: the model's calibrated one)"),
    "rgb_topic": ("/camera/camera/color/image_raw", "colour image topic"),
    "depth_topic": ("/camera/camera/aligned_depth_to_color/image_raw", "depth aligned to colour"),
    "rgb_compressed": ("false", "colour topic is sensor_msgs/CompressedImage"),
    "depth_compressed": ("false", "depth topic is sensor_msgs/CompressedImage (compressedDepth)"),
    "slop": ("0.02", "approximate time sync tolerance, seconds"),
    "queue_size": ("10", "approximate time sync queue length, message pairs"),
    "seed": ("0", "base seed of the latent search (frame i uses a seed derived from it)"),
    "results_path": ("none", "also write JSON lines here (none: no file)"),
    "stale_s": ("10.0", "no synchronized pair for this long, seconds: an outage (logged, waits again)"),
    "frame_timeout_s": ("0.0", "a frame scoring longer ends the node (restarted by the launcher); 0.0: no limit"),
    "rotate_mb": ("0.0", "rotate results_path past this size, MB (0.0: never)"),
    "rotate_keep": ("0", "keep the newest N rotated results files, delete older ones (0: keep all)"),
    "trusted_keys": ("''", "comma-separated Ed25519 public key files; the model must be signed by one "
                           "('': no check)"),
    "alarm_window": ("200", "alarm-rate watch over the last N scored frames (0: off): ~/alarm_rate events when "
                            "more are flagged than the threshold's calibrated rate allows"),
    "alarm_alpha": ("0.001", "alarm-rate watch: significance of its one-sided binomial test, in (0, 0.05)"),
}
# Values are YAML, as ROS parses a -p override; the node declares its parameters dynamically typed, so a whole
# number for a float (stale_s:=10) is taken; tests/test_ros.py checks every default parses to the node's PARAMETERS.
RESPAWN_DELAY_S = 5.0     # seconds between the node's exit and its restart (respawn:=true)
VENV_PYTHON = "/opt/edge-ad/venv/bin/python"   # the interpreter jetson/install.sh installs edge-ad into (PREFIX/venv)


def default_python() -> str:
    """The node's interpreter when no python:= is given: install.sh's venv when it is there, else python3."""
    return VENV_PYTHON if os.access(VENV_PYTHON, os.X_OK) else "python3"


def generate_launch_description():
    declared = [DeclareLaunchArgument(k, default_value=v, description=d) for k, (v, d) in ARGS.items()]
    declared.append(DeclareLaunchArgument("python", default_value=default_python(),
                                          description="interpreter with edge-ad installed (default: install.sh's "
                                                      f"{VENV_PYTHON} when it is there, else python3)"))
    declared.append(DeclareLaunchArgument("respawn", default_value="true",
                                          description=f"restart the node {RESPAWN_DELAY_S:g} s after it exits "
                                                      "(it ends itself on a fatal stop to be restarted)"))
    params = []
    for k in ARGS:
        params += ["-p", [k, ":=", LaunchConfiguration(k)]]
    node = ExecuteProcess(
        cmd=[LaunchConfiguration("python"), "-m", "edge_ad.jetson.ros2_node", "--ros-args",
             "-r", "__node:=edge_ad", *params],
        output="screen", name="edge_ad",
        respawn=LaunchConfiguration("respawn"), respawn_delay=RESPAWN_DELAY_S)   # ROS 2 Humble+ (JetPack 6)
    return LaunchDescription(declared + [node])
