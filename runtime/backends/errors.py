"""The one error a backend raises when it cannot run a model on this machine.

``BackendUnavailable`` is the common base of TensorRT's "cannot have it here" errors: the GPU stack is
missing (``cuda_buffers.GpuUnavailable``, and ``tensorrt.TensorRTUnavailable`` under it), no usable engine
(``engine_cache.EngineCacheError``: none built for this GPU with on_mismatch "fail", corrupt, another
TensorRT version, a build that failed) or a CUDA call failed (``cuda_buffers.CudaError``, e.g. no GPU
memory for an execution context). Its message is one line saying what and how to fix it, so the
commands and the ROS 2 node that load a model (``edge-ad run``, ``edge-ad build-engine``,
jetson/ros2_node.py) catch this one class and print that line, never a traceback.
"""
from __future__ import annotations


class BackendUnavailable(RuntimeError):
    """The chosen backend cannot run the model here; the message names what is missing or failed."""
