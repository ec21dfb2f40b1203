"""CPU stand-ins for cuda-python's runtime module and for a TensorRT engine (no tests here).

``FakeCudart`` implements the subset of ``cuda.bindings.runtime`` that runtime/backends/cuda_buffers.py and
runtime/backends/tensorrt.py call, with the same calling convention (every call returns a tuple
whose first element is a ``cudaError_t``). "Device" memory is host memory at real addresses, so
copies are real ``memmove``s and a wrong address or size corrupts results the way it would on a
GPU. Stream capture records the enqueued operations; a graph launch replays them.

``make_fake_trt`` is a ``tensorrt`` module stand-in whose engines run an ONNX graph with onnxruntime
(CPU) on the tensors at the addresses bound with ``set_tensor_address``, and whose builder records
what the real engine build asks for (parser, network flags, builder-config flags, workspace); the
"serialized engine" it returns is the ONNX file's path.
"""
from __future__ import annotations

import ctypes
import enum
import types

import numpy as np


class cudaError_t(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorInsufficientDriver = 35
    cudaErrorNoDevice = 100
    cudaErrorStreamCaptureUnsupported = 900


class cudaMemcpyKind(enum.IntEnum):
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
    cudaMemcpyDeviceToDevice = 3


class cudaStreamCaptureMode(enum.IntEnum):
    cudaStreamCaptureModeGlobal = 0
    cudaStreamCaptureModeThreadLocal = 1
    cudaStreamCaptureModeRelaxed = 2


OK = cudaError_t.cudaSuccess


_STREAMS = {}   # handle -> FakeStream (TensorRT receives the stream as an integer handle)


class FakeStream:
    def __init__(self):
        self.capture = None   # list of recorded ops while capturing
        _STREAMS[id(self)] = self

    def __int__(self):        # like cuda-python's cudaStream_t
        return id(self)

    __index__ = __int__

    def enqueue(self, fn):
        if self.capture is not None:
            self.capture.append(fn)
        else:
            fn()


class FakeCudart:
    """A CUDA runtime on the CPU. ``no_driver=True`` behaves like this machine (no NVIDIA driver)."""

    cudaError_t = cudaError_t
    cudaMemcpyKind = cudaMemcpyKind
    cudaStreamCaptureMode = cudaStreamCaptureMode
    cudaStreamNonBlocking = 1

    def __init__(self, no_driver=False, fail_malloc_after=None, name=b"Fake Orin", cc=(8, 7)):
        self.no_driver, self.fail_malloc_after = no_driver, fail_malloc_after
        self.name, self.cc = name, cc
        self.device = {}      # addr -> np.uint8 array
        self.pinned = {}
        self.n_malloc = self.n_malloc_host = self.n_free = 0
        self.n_graph_launch = self.n_memcpy = 0
        self.streams = []
        self._keep = []

    # -- errors and device query ---------------------------------------------------------------
    def cudaGetErrorString(self, err):
        return OK, {35: b"CUDA driver version is insufficient for CUDA runtime version",
                    2: b"out of memory"}.get(int(err), b"fake error")

    def cudaGetDeviceCount(self):
        return (cudaError_t.cudaErrorInsufficientDriver, None) if self.no_driver else (OK, 1)

    def cudaGetDeviceProperties(self, dev):
        return OK, types.SimpleNamespace(name=self.name + b"\0\0", major=self.cc[0], minor=self.cc[1])

    def cudaSetDevice(self, dev):
        return (cudaError_t.cudaErrorInsufficientDriver,) if self.no_driver else (OK,)

    # -- memory --------------------------------------------------------------------------------
    def _alloc(self, table, n):
        raw = np.full(max(int(n), 1) + 256, 0xAB, dtype=np.uint8)   # garbage, like fresh device memory
        off = (-raw.ctypes.data) % 256                               # cudaMalloc: 256-byte aligned
        a = raw[off:off + max(int(n), 1)]
        self._keep.append(raw)
        table[a.ctypes.data] = a
        return a.ctypes.data

    def cudaMalloc(self, n):
        if self.no_driver:
            return cudaError_t.cudaErrorInsufficientDriver, None
        if self.fail_malloc_after is not None and self.n_malloc >= self.fail_malloc_after:
            return cudaError_t.cudaErrorMemoryAllocation, None
        self.n_malloc += 1
        return OK, self._alloc(self.device, n)

    def cudaMallocHost(self, n):
        self.n_malloc_host += 1
        return OK, self._alloc(self.pinned, n)

    def cudaFree(self, p):
        self.n_free += 1
        return (OK,) if self.device.pop(p, None) is not None else (cudaError_t.cudaErrorInvalidValue,)

    def cudaFreeHost(self, p):
        return (OK,) if self.pinned.pop(p, None) is not None else (cudaError_t.cudaErrorInvalidValue,)

    def _inside(self, table, p, n):
        return any(base <= p and p + n <= base + a.size for base, a in table.items())

    def _check(self, dst, src, n, kind):
        dev_dst = kind in (cudaMemcpyKind.cudaMemcpyHostToDevice, cudaMemcpyKind.cudaMemcpyDeviceToDevice)
        dev_src = kind in (cudaMemcpyKind.cudaMemcpyDeviceToHost, cudaMemcpyKind.cudaMemcpyDeviceToDevice)
        if dev_dst and not self._inside(self.device, dst, n):
            raise AssertionError(f"memcpy {kind.name}: destination {dst:#x}+{n} is not device memory")
        if dev_src and not self._inside(self.device, src, n):
            raise AssertionError(f"memcpy {kind.name}: source {src:#x}+{n} is not device memory")

    def cudaMemcpy(self, dst, src, n, kind):
        self._check(int(dst), int(src), n, kind)
        ctypes.memmove(int(dst), int(src), n)
        return (OK,)

    def cudaMemcpyAsync(self, dst, src, n, kind, stream):
        dst, src = int(dst), int(src)
        self._check(dst, src, n, kind)
        if kind == cudaMemcpyKind.cudaMemcpyHostToDevice and stream.capture is not None \
                and not self._inside(self.pinned, src, n):
            return (cudaError_t.cudaErrorStreamCaptureUnsupported,)   # pageable memory in a graph

        def op():
            self.n_memcpy += 1
            ctypes.memmove(dst, src, n)
        stream.enqueue(op)
        return (OK,)

    def cudaMemsetAsync(self, p, value, n, stream):
        if not self._inside(self.device, int(p), n):
            raise AssertionError("memset outside device memory")
        stream.enqueue(lambda: ctypes.memset(int(p), value, n))
        return (OK,)

    # -- streams and graphs --------------------------------------------------------------------
    def cudaStreamCreateWithFlags(self, flags):
        s = FakeStream()
        self.streams.append(s)
        return OK, s

    def cudaStreamDestroy(self, s):
        return (OK,)

    def cudaStreamSynchronize(self, s):
        return (OK,)

    def cudaStreamBeginCapture(self, s, mode):
        assert s.capture is None, "already capturing"
        s.capture = []
        return (OK,)

    def cudaStreamEndCapture(self, s):
        ops, s.capture = s.capture, None
        return OK, list(ops)

    def cudaGraphInstantiateWithFlags(self, graph, flags):
        return OK, ("exec", graph)

    def cudaGraphLaunch(self, graph_exec, stream):
        self.n_graph_launch += 1
        for op in graph_exec[1]:
            op()
        return (OK,)

    def cudaGraphExecDestroy(self, e):
        return (OK,)

    def cudaGraphDestroy(self, g):
        return (OK,)


# ------------------------------------------------------------------------------------------------
# TensorRT stand-in
# ------------------------------------------------------------------------------------------------
class _DataType(enum.IntEnum):
    FLOAT = 0
    HALF = 1
    INT64 = 2


class _TensorIOMode(enum.IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class FakeEngine:
    """Wraps an onnxruntime CPU session; I/O described like ICudaEngine's name-based API."""

    def __init__(self, onnx_path):
        import onnxruntime as ort
        self.sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        self.ins = {i.name: i.shape for i in self.sess.get_inputs()}
        self.outs = {o.name: o.shape for o in self.sess.get_outputs()}
        self.names = list(self.ins) + list(self.outs)
        self.n_contexts = 0

    @property
    def num_io_tensors(self):
        return len(self.names)

    def get_tensor_name(self, i):
        return self.names[i]

    def get_tensor_mode(self, name):
        return _TensorIOMode.INPUT if name in self.ins else _TensorIOMode.OUTPUT

    def get_tensor_shape(self, name):
        return tuple(self.ins.get(name, self.outs.get(name)))

    def get_tensor_dtype(self, name):
        return _DataType.FLOAT

    def create_execution_context(self):
        self.n_contexts += 1
        return FakeContext(self)


class FakeContext:
    def __init__(self, engine):
        self.engine, self.addr = engine, {}
        self.n_execute = 0

    def set_tensor_address(self, name, ptr):
        if name not in self.engine.names:
            raise AssertionError(f"unknown tensor {name}")
        if int(ptr) % 256:
            raise AssertionError(f"{name}: address {int(ptr):#x} is not 256-byte aligned (TensorRT requires it)")
        self.addr[name] = int(ptr)
        return True

    def execute_async_v3(self, stream_handle):
        if not isinstance(stream_handle, int):
            raise TypeError("execute_async_v3(): stream_handle must be an int (the cudaStream_t handle)")
        stream = _STREAMS[stream_handle]
        missing = [n for n in self.engine.names if n not in self.addr]
        if missing:
            return False
        addr = dict(self.addr)      # addresses are fixed at enqueue/capture time

        def view(name, shape):
            size = int(np.prod(shape))
            arr = np.ctypeslib.as_array(ctypes.cast(addr[name], ctypes.POINTER(ctypes.c_float)), (max(size, 1),))
            return arr[:size].reshape(shape)

        def run():
            self.n_execute += 1
            feeds = {n: view(n, s).copy() for n, s in self.engine.ins.items()}
            outs = self.engine.sess.run(list(self.engine.outs), feeds)
            for n, v in zip(self.engine.outs, outs):
                view(n, self.engine.outs[n])[...] = v
        stream.enqueue(run)
        return True


class FakeLogger:
    WARNING, ERROR, INFO = 1, 2, 3

    def __init__(self, level=1):
        self.level = level


class FakeRuntime:
    def __init__(self, logger):
        self.logger = logger

    def deserialize_cuda_engine(self, data):
        # our fake "serialized engine" is the path of the ONNX file it was built from
        return FakeEngine(bytes(data).decode())


# -- the engine builder: records what runtime/backends/tensorrt.build_engine_bytes asks for ---------------
class _BuilderFlag(enum.IntEnum):           # TensorRT's values
    FP16 = 0
    INT8 = 1
    TF32 = 7


class _MemoryPoolType(enum.IntEnum):
    WORKSPACE = 0


class _NetworkDefinitionCreationFlag(enum.IntEnum):
    EXPLICIT_BATCH = 0


class FakeBuilderConfig:
    """IBuilderConfig: records every call. Its flags start as TensorRT's defaults: TF32 ON (TensorRT
    enables it by default on Ampere and newer, Orin included), FP16 off."""

    def __init__(self):
        self.flags = {_BuilderFlag.TF32}
        self.calls = []               # ("set_flag" | "clear_flag" | "set_memory_pool_limit", args...)
        self.pools = {}

    def set_flag(self, flag):
        self.calls.append(("set_flag", _BuilderFlag(flag)))
        self.flags.add(_BuilderFlag(flag))

    def clear_flag(self, flag):
        self.calls.append(("clear_flag", _BuilderFlag(flag)))
        self.flags.discard(_BuilderFlag(flag))

    def get_flag(self, flag):
        return _BuilderFlag(flag) in self.flags

    def set_memory_pool_limit(self, pool, size):
        self.calls.append(("set_memory_pool_limit", _MemoryPoolType(pool), int(size)))
        self.pools[_MemoryPoolType(pool)] = int(size)


class FakeNetwork:
    def __init__(self, flags):
        self.creation_flags = flags
        self.onnx_path = None         # set by a successful parse


class _ParserError:
    def __init__(self, desc):
        self._desc = desc

    def desc(self):
        return self._desc

    def __str__(self):
        return self._desc


class FakeOnnxParser:
    """OnnxParser: reads the file with onnx (a file that is not a valid ONNX model fails to parse, as in
    TensorRT) and refuses ops TensorRT has no importer for (Col2Im: the CPU-only graphs)."""

    UNSUPPORTED = {"Col2Im"}

    def __init__(self, network, logger):
        self.network, self.errors = network, []

    @property
    def num_errors(self):
        return len(self.errors)

    def get_error(self, i):
        return self.errors[i]

    def parse_from_file(self, path):
        import onnx
        try:
            model = onnx.load(str(path))
            onnx.checker.check_model(model)
        except Exception as e:  # noqa: BLE001 - whatever onnx says becomes the parser's error
            self.errors.append(_ParserError(f"ModelImporter: failed to parse the ONNX model: {e}"))
            return False
        for n in model.graph.node:
            if n.op_type in self.UNSUPPORTED:
                self.errors.append(_ParserError(f"In node {n.name} (importFallbackPluginImporter): UNSUPPORTED_NODE: "
                                                f"No importer registered for op: {n.op_type}"))
        if self.errors:
            return False
        self.network.onnx_path = str(path)
        return True


class BuildRecord(types.SimpleNamespace):
    """One build_serialized_network call: onnx (path), flags (the config's flags then), workspace
    (bytes), network_flags (create_network's argument), config (the FakeBuilderConfig, with its calls)."""


def _fake_builder_class(builds: list, fail: set):
    class FakeBuilder:
        def __init__(self, logger):
            self.logger = logger

        def create_network(self, flags=0):
            return FakeNetwork(flags)

        def create_builder_config(self):
            return FakeBuilderConfig()

        def build_serialized_network(self, network, config):
            assert network.onnx_path is not None, "build_serialized_network on a network that was not parsed"
            builds.append(BuildRecord(onnx=network.onnx_path, flags=set(config.flags),
                                      workspace=config.pools.get(_MemoryPoolType.WORKSPACE),
                                      network_flags=network.creation_flags, config=config))
            if network.onnx_path.rsplit("/", 1)[-1] in fail:
                return None           # TensorRT returns None when the build fails
            return network.onnx_path.encode()   # the fake "serialized engine": the ONNX path (FakeRuntime)
    return FakeBuilder


def _nptype_of_tensorrt_85(dt):
    """trt.nptype as TensorRT 8.5 (JetPack 5) behaves under numpy >= 1.24 (its table names np.bool): the runtime
    must not depend on it (audit 28 #12)."""
    raise AttributeError("module 'numpy' has no attribute 'bool'. `np.bool` was a deprecated alias")


def make_fake_trt(version="10.3.0.30", fail_build=()):
    """A module-like namespace with the parts of ``tensorrt`` the runner and the engine builder use.
    ``.builds`` lists every engine build (BuildRecord); ``fail_build``: ONNX file names whose build
    returns None."""
    builds = []
    return types.SimpleNamespace(__version__=version, Logger=FakeLogger, Runtime=FakeRuntime,
                                 TensorIOMode=_TensorIOMode, DataType=_DataType,
                                 nptype=_nptype_of_tensorrt_85,
                                 Builder=_fake_builder_class(builds, set(fail_build)), OnnxParser=FakeOnnxParser,
                                 BuilderFlag=_BuilderFlag, MemoryPoolType=_MemoryPoolType,
                                 NetworkDefinitionCreationFlag=_NetworkDefinitionCreationFlag, builds=builds)
