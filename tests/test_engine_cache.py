"""TensorRT engine cache: keys, mismatch handling, tamper detection, the TensorRT >= 8.5 check."""
from __future__ import annotations

import hashlib
import json

import pytest

from edge_ad.runtime.backends.engine_cache import EngineCache, EngineCacheError, EngineKey, check_trt_version

SHA = hashlib.sha256(b"step graph").hexdigest()
ORIN = dict(onnx_sha256=SHA, gpu_name="Orin", compute_capability="8.7", trt_version="10.3.0.30")


def test_key_filename_names_every_component_and_differs_per_field():
    k = EngineKey(**ORIN)
    name = k.filename()
    assert name.startswith("step.fp32.sm87.trt10.3.0.30.") and name.endswith(".engine")
    variants = [dict(ORIN, gpu_name="NVIDIA H200", compute_capability="9.0"),
                dict(ORIN, trt_version="8.6.2.3"), dict(ORIN, precision="tf32"),
                dict(ORIN, onnx_sha256=hashlib.sha256(b"other").hexdigest()),
                dict(ORIN, graph="final")]
    names = {EngineKey(**v).filename() for v in variants} | {name}
    assert len(names) == len(variants) + 1
    # the same key always gives the same name
    assert EngineKey(**ORIN).filename() == name


def test_key_validation_names_the_field():
    with pytest.raises(EngineCacheError, match="onnx_sha256"):
        EngineKey(**dict(ORIN, onnx_sha256="abc"))
    with pytest.raises(EngineCacheError, match="compute capability"):
        EngineKey(**dict(ORIN, compute_capability="sm87"))
    with pytest.raises(EngineCacheError, match="TensorRT version"):
        EngineKey(**dict(ORIN, trt_version="latest"))


@pytest.mark.parametrize("version,ok", [("8.4.1.5", False), ("8.5.2.2", True), ("8.6.2", True),
                                        ("10.3.0.30", True), ("7.1.3", False)])
def test_trt_version_check_for_runtime_conv_kernels(version, ok):
    if ok:
        assert check_trt_version(version)[:2] >= (8, 5)
    else:
        with pytest.raises(EngineCacheError, match=r"non-constant kernels need TensorRT >= 8.5 \(JetPack >= 5.1\)"):
            check_trt_version(version)


def test_build_once_then_hit(tmp_path):
    cache = EngineCache(tmp_path)
    key = EngineKey(**ORIN)
    calls = []

    def build():
        calls.append(1)
        return b"ENGINE-BYTES"

    r1 = cache.resolve(key, build)
    r2 = cache.resolve(key, build)
    assert r1.built and not r2.built and len(calls) == 1
    assert r2.path.read_bytes() == b"ENGINE-BYTES"
    meta = json.loads(r2.path.with_suffix(".json").read_text())
    assert meta["key"]["trt_version"] == "10.3.0.30"
    assert meta["engine_sha256"] == hashlib.sha256(b"ENGINE-BYTES").hexdigest()
    # force rebuilds
    assert cache.resolve(key, build, force=True).built and len(calls) == 2


def test_mismatch_fails_clearly_or_rebuilds(tmp_path):
    cache = EngineCache(tmp_path)
    cache.resolve(EngineKey(**ORIN), lambda: b"orin")
    h200 = EngineKey(**dict(ORIN, gpu_name="NVIDIA H200", compute_capability="9.0", trt_version="10.7.0"))
    with pytest.raises(EngineCacheError) as e:
        cache.resolve(h200, lambda: b"never", on_mismatch="fail")
    msg = str(e.value)
    assert "GPU: engine has 'Orin', this machine needs 'NVIDIA H200'" in msg
    assert "TensorRT version: engine has '10.3.0.30'" in msg
    assert "edge-ad build-engine" in msg
    r = cache.resolve(h200, lambda: b"h200")
    assert r.built and r.path.read_bytes() == b"h200" and len(r.replaced) == 1
    # the Orin engine is kept: both machines can share a model dir
    assert cache.lookup(EngineKey(**ORIN)).read_bytes() == b"orin"


def test_empty_cache_fail_mode_says_what_to_run(tmp_path):
    with pytest.raises(EngineCacheError, match="run `edge-ad build-engine MODEL_DIR` on this device"):
        EngineCache(tmp_path).resolve(EngineKey(**ORIN), lambda: b"x", on_mismatch="fail")


def test_tampered_engine_is_refused_or_rebuilt(tmp_path):
    cache = EngineCache(tmp_path)
    key = EngineKey(**ORIN)
    path = cache.resolve(key, lambda: b"good engine").path
    path.write_bytes(b"evil engine")
    with pytest.raises(EngineCacheError, match="corrupt or was modified"):
        cache.lookup(key)
    with pytest.raises(EngineCacheError, match="corrupt or was modified"):
        cache.resolve(key, lambda: b"rebuilt", on_mismatch="fail")
    r = cache.resolve(key, lambda: b"rebuilt")
    assert r.built and cache.lookup(key).read_bytes() == b"rebuilt"


def test_old_tensorrt_refused_before_building(tmp_path):
    key = EngineKey(**dict(ORIN, trt_version="8.2.1"))
    with pytest.raises(EngineCacheError, match="too old"):
        EngineCache(tmp_path).resolve(key, lambda: pytest.fail("must not build"))


def test_failed_build_is_an_error(tmp_path):
    with pytest.raises(EngineCacheError, match="failed to build"):
        EngineCache(tmp_path).resolve(EngineKey(**ORIN), lambda: None)


def test_cache_dir_defaults_to_model_dir_and_env(tmp_path, monkeypatch):
    monkeypatch.delenv("EDGE_AD_ENGINE_CACHE", raising=False)
    assert EngineCache.for_model(tmp_path).dir == tmp_path / "engines"
    monkeypatch.setenv("EDGE_AD_ENGINE_CACHE", str(tmp_path / "elsewhere"))
    assert EngineCache.for_model(tmp_path).dir == tmp_path / "elsewhere"
    assert EngineCache.for_model(tmp_path, tmp_path / "x").dir == tmp_path / "x"


def test_read_only_model_dir_uses_the_user_cache(tmp_path, monkeypatch):
    import os
    monkeypatch.delenv("EDGE_AD_ENGINE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    model = tmp_path / "site-packages" / "demo"
    model.mkdir(parents=True)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p).startswith(str(model)) else real_access(p, mode))
    d = EngineCache.for_model(model).dir
    assert d.parent == tmp_path / "xdg" / "edge-ad" / "engines" and d.name.startswith("demo-")
    # stable per model dir, different for another one
    assert EngineCache.for_model(model).dir == d
    other = tmp_path / "other" / "demo"
    other.mkdir(parents=True)
    monkeypatch.setattr(os, "access", lambda p, mode: False)
    assert EngineCache.for_model(other).dir != d
