"""TensorRT engine cache: one engine per (ONNX graph, GPU, TensorRT version, precision).

A serialized TensorRT engine only runs on the GPU model (compute capability) and the exact
TensorRT version that built it. Engines therefore live in ``MODEL_DIR/engines/`` under a name
derived from all four, each with a JSON sidecar that records the full key and the engine file's
sha256. ``EngineCache.resolve`` returns a valid engine, rebuilds on a mismatch (``on_mismatch=
"rebuild"``) or fails with a message naming what differs (``on_mismatch="fail"``).

The search graphs take the generator weights as runtime tensors (they are updated every step), so
their convolution kernels are not constants (the current exporter writes them as MatMuls of two
runtime tensors; a Conv/ConvTranspose export would need non-constant kernels, TensorRT >= 8.5),
and the runner uses the name-based I/O API of TensorRT 8.5+. ``check_trt_version`` refuses
anything older than 8.5 (JetPack 5.1) with that explanation.

Standard library only (no TensorRT needed): keys, file names and checks are unit-tested on CPU.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

from ..manifest import sha256_file
from .errors import BackendUnavailable

MIN_TRT = (8, 5)
SIDECAR_FORMAT = "edge-ad-engine"
SIDECAR_VERSION = 1


class EngineCacheError(BackendUnavailable):
    """No usable engine: built elsewhere, tampered, or TensorRT too old."""


def parse_version(v: str) -> tuple:
    """'10.3.0.30' -> (10, 3, 0, 30); raises EngineCacheError for text that is not a version."""
    m = re.match(r"^\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:\.(\d+))?", str(v))
    if not m:
        raise EngineCacheError(f"cannot read a TensorRT version from {v!r}")
    return tuple(int(x) for x in m.groups() if x is not None)


def check_trt_version(version: str) -> tuple:
    """Refuse TensorRT < 8.5: the search graphs need Conv/ConvTranspose with non-constant kernels."""
    parsed = parse_version(version)
    if parsed[:2] < MIN_TRT:
        raise EngineCacheError(
            f"TensorRT {version} is too old: the search feeds the generator weights as runtime tensors "
            f"(they change every Adam step), and convolutions with non-constant kernels need TensorRT "
            f">= 8.5 (JetPack >= 5.1), as does the name-based I/O API the runner uses "
            f"(set_tensor_address, execute_async_v3). Upgrade JetPack, or use --backend onnxruntime.")
    return parsed


@dataclass(frozen=True)
class EngineKey:
    """Everything a serialized engine depends on."""

    onnx_sha256: str
    gpu_name: str
    compute_capability: str      # "8.7" (Orin), "9.0" (H100/H200)
    trt_version: str             # trt.__version__, exact
    precision: str = "fp32"      # fp32 | tf32 | fp16 (builder flags)
    graph: str = "step"          # which ONNX graph of the model dir (step, final, unrolled...)

    def __post_init__(self):
        if not re.fullmatch(r"[0-9a-f]{64}", self.onnx_sha256 or ""):
            raise EngineCacheError(f"onnx_sha256 must be 64 hex digits, got {self.onnx_sha256!r}")
        if not re.fullmatch(r"\d+\.\d+", self.compute_capability or ""):
            raise EngineCacheError(f"compute capability must look like '8.7', got {self.compute_capability!r}")
        parse_version(self.trt_version)
        if not re.fullmatch(r"[A-Za-z0-9_]+", self.graph) or not re.fullmatch(r"[a-z0-9]+", self.precision):
            raise EngineCacheError(f"bad graph/precision name {self.graph!r}/{self.precision!r}")

    def digest(self) -> str:
        """Short stable hash of the whole key."""
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def filename(self) -> str:
        """e.g. ``step.fp32.sm87.trt10.3.0.30.3f2a....engine``: readable, and unique per key."""
        sm = self.compute_capability.replace(".", "")
        trt = ".".join(str(x) for x in parse_version(self.trt_version))
        return f"{self.graph}.{self.precision}.sm{sm}.trt{trt}.{self.digest()}.engine"

    def describe(self) -> str:
        return (f"{self.graph} graph {self.onnx_sha256[:12]}, GPU {self.gpu_name!r} (sm_"
                f"{self.compute_capability.replace('.', '')}), TensorRT {self.trt_version}, {self.precision}")

    def differences(self, other: "EngineKey") -> list:
        """Human-readable list of the fields in which ``other`` (e.g. an engine on disk) differs."""
        names = {"onnx_sha256": "ONNX graph", "gpu_name": "GPU", "compute_capability": "compute capability",
                 "trt_version": "TensorRT version", "precision": "precision", "graph": "graph"}
        a, b = asdict(self), asdict(other)
        return [f"{names[f]}: engine has {b[f]!r}, this machine needs {a[f]!r}"
                for f in names if a[f] != b[f]]


@dataclass
class Resolved:
    path: Path
    key: EngineKey
    built: bool              # True if this call built it
    replaced: list           # descriptions of mismatching engines found (kept on disk)


class EngineCache:
    """Engines of one model dir (``MODEL_DIR/engines`` unless ``cache_dir`` is given)."""

    def __init__(self, cache_dir: os.PathLike):
        self.dir = Path(cache_dir)

    @classmethod
    def for_model(cls, model_dir: os.PathLike, cache_dir: Optional[os.PathLike] = None) -> "EngineCache":
        """``cache_dir``, else $EDGE_AD_ENGINE_CACHE, else MODEL_DIR/engines when writable, else a
        per-model folder under $XDG_CACHE_HOME (~/.cache)/edge-ad/engines (read-only model dirs,
        e.g. the demo model inside an installed package)."""
        env = os.environ.get("EDGE_AD_ENGINE_CACHE")
        if cache_dir or env:
            return cls(Path(cache_dir or env))
        model_dir = Path(model_dir)
        local = model_dir / "engines"
        if os.access(local if local.exists() else model_dir, os.W_OK):
            return cls(local)
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        tag = hashlib.sha256(str(model_dir.resolve()).encode()).hexdigest()[:16]
        return cls(base / "edge-ad" / "engines" / f"{model_dir.name}-{tag}")

    def path_for(self, key: EngineKey) -> Path:
        return self.dir / key.filename()

    def _sidecar(self, engine: Path) -> Path:
        return engine.with_suffix(".json")

    def entries(self) -> list:
        """(engine path, key, sidecar dict) of every engine with a readable sidecar."""
        out = []
        if not self.dir.is_dir():
            return out
        for side in sorted(self.dir.glob("*.json")):
            try:
                meta = json.loads(side.read_text())
                if meta.get("format") != SIDECAR_FORMAT:
                    continue
                key = EngineKey(**meta["key"])
            except (ValueError, KeyError, TypeError, EngineCacheError):
                continue
            out.append((side.with_suffix(".engine"), key, meta))
        return out

    def lookup(self, key: EngineKey) -> Optional[Path]:
        """The engine for exactly this key, verified against its sidecar; None if there is none.

        Raises EngineCacheError when the file exists but does not match its recorded sha256
        (a truncated copy or a tampered file must not be deserialized).
        """
        path = self.path_for(key)
        side = self._sidecar(path)
        if not path.is_file() or not side.is_file():
            return None
        try:
            meta = json.loads(side.read_text())
            recorded = EngineKey(**meta["key"])
        except (ValueError, KeyError, TypeError) as e:
            raise EngineCacheError(f"unreadable engine sidecar {side}: {e}") from None
        if recorded != key:
            raise EngineCacheError(f"engine sidecar {side} does not match its file name: "
                                   + "; ".join(key.differences(recorded)))
        actual = sha256_file(path)
        if actual != meta.get("engine_sha256"):
            raise EngineCacheError(f"engine {path} is corrupt or was modified (sha256 {actual[:12]}..., "
                                   f"recorded {str(meta.get('engine_sha256'))[:12]}...); delete it or "
                                   f"rebuild with `edge-ad build-engine --force`")
        return path

    def store(self, key: EngineKey, engine_bytes: bytes, extra: Optional[dict] = None) -> Path:
        """Write engine + sidecar atomically (tmp + rename), return the engine path."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.path_for(key)
        tmp = path.with_suffix(".engine.tmp")
        tmp.write_bytes(bytes(engine_bytes))
        os.replace(tmp, path)
        meta = {"format": SIDECAR_FORMAT, "version": SIDECAR_VERSION, "key": asdict(key),
                "engine_sha256": sha256_file(path), "engine_bytes": path.stat().st_size,
                "created_unix": time.time(), **(extra or {})}
        side = self._sidecar(path)
        tmp_side = side.with_suffix(".json.tmp")
        tmp_side.write_text(json.dumps(meta, indent=2, sort_keys=True))
        os.replace(tmp_side, side)
        return path

    def mismatches(self, key: EngineKey) -> list:
        """Engines on disk for the same graph whose key differs, each with its differences."""
        return [(p, k, key.differences(k)) for p, k, _ in self.entries()
                if k != key and k.graph == key.graph]

    def resolve(self, key: EngineKey, build: Callable[[], bytes], on_mismatch: str = "rebuild",
                force: bool = False, extra: Optional[dict] = None) -> Resolved:
        """A valid engine for ``key``: cached, or built by ``build()`` (returns the serialized bytes).

        on_mismatch="fail": never build; if no engine matches, raise EngineCacheError naming what the
        engines on disk were built for (GPU, TensorRT, ONNX graph, precision) and how to rebuild.
        A corrupt cached engine is rebuilt under "rebuild" and refused under "fail".
        """
        if on_mismatch not in ("rebuild", "fail"):
            raise ValueError(f"on_mismatch must be 'rebuild' or 'fail', got {on_mismatch!r}")
        check_trt_version(key.trt_version)
        others = self.mismatches(key)
        if not force:
            try:
                hit = self.lookup(key)
            except EngineCacheError:
                if on_mismatch == "fail":
                    raise
                hit = None
            if hit is not None:
                return Resolved(hit, key, False, [])
        if on_mismatch == "fail":
            if others:
                lines = [f"  {p.name}: " + "; ".join(d) for p, _, d in others]
                raise EngineCacheError(
                    "no TensorRT engine for this machine (" + key.describe() + "). Engines found were built "
                    "for something else:\n" + "\n".join(lines) +
                    "\nEngines are specific to the GPU and the TensorRT version: run "
                    "`edge-ad build-engine MODEL_DIR` on this device.")
            raise EngineCacheError(f"no TensorRT engine in {self.dir} for {key.describe()}; run "
                                   f"`edge-ad build-engine MODEL_DIR` on this device first")
        data = build()
        if not data:
            raise EngineCacheError(f"TensorRT failed to build an engine for {key.describe()}")
        path = self.store(key, data, extra)
        return Resolved(path, key, True, [f"{p.name}: " + "; ".join(d) for p, _, d in others])
