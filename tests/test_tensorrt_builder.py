"""The TensorRT engine build (runtime/backends/tensorrt.build_engine_bytes) on a fake builder that records
what the real code asks for: precision flags (fp32 clears TensorRT's default TF32, tf32 sets it, fp16
sets FP16 and clears TF32), the workspace limit, the explicit-batch network flag of TensorRT 8.x; parse
and build failures as one clear error naming the file. Through Scorer.load and `edge-ad build-engine`
too. What this cannot check: TensorRT's own parser and kernels (runtime/backends/tensorrt.py: not yet
run on hardware)."""
from __future__ import annotations

import shutil
import sys
import warnings

import pytest
from click.testing import CliRunner

pytest.importorskip("onnx")

from edge_ad.runtime.backends import tensorrt as T  # noqa: E402
from edge_ad.runtime.backends.engine_cache import EngineCacheError  # noqa: E402
from test_tensorrt_fakes import FakeCudart, make_fake_trt  # noqa: E402


@pytest.fixture(scope="module")
def tiny_model(export_tiny):
    return export_tiny(3, 2)


@pytest.mark.parametrize("precision,flags", [("fp32", set()), ("tf32", {"TF32"}), ("fp16", {"FP16"})])
def test_precision_sets_exactly_its_builder_flags(tiny_model, precision, flags):
    trt = make_fake_trt()
    data = T.build_engine_bytes(tiny_model / "step.onnx", precision, trt=trt, workspace_bytes=123 << 20)
    assert data == str(tiny_model / "step.onnx").encode()
    (b,) = trt.builds
    assert {f.name for f in b.flags} == flags, f"{precision}: builder flags {b.flags}"
    assert b.workspace == 123 << 20 and b.network_flags == 0           # TensorRT 10: always explicit batch
    # what was asked, not only the end state: TF32 is cleared explicitly unless tf32 was asked for
    asked = [(c[0], c[1].name) for c in b.config.calls if c[0] != "set_memory_pool_limit"]
    assert (("clear_flag", "TF32") in asked) == (precision != "tf32")


def test_tensorrt_8_networks_are_explicit_batch(tiny_model):
    trt = make_fake_trt("8.6.1")
    T.build_engine_bytes(tiny_model / "final.onnx", "fp32", trt=trt)
    assert trt.builds[0].network_flags == 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)


def test_unknown_precision_is_refused(tiny_model):
    with pytest.raises(ValueError, match="unknown precision 'int8'"):
        T.build_engine_bytes(tiny_model / "step.onnx", "int8", trt=make_fake_trt())


def test_parse_errors_name_the_file_and_the_problem(tiny_model, tmp_path):
    trt = make_fake_trt()
    bad = tmp_path / "step.onnx"
    bad.write_bytes(b"\x08\x07 this is not an ONNX model")
    with pytest.raises(EngineCacheError, match=r"TensorRT 10.3.0.30 cannot parse .*step\.onnx: ModelImporter"):
        T.build_engine_bytes(bad, "fp32", trt=trt)
    # the CPU-only gradient graphs use Col2Im, which TensorRT has no importer for
    with pytest.raises(EngineCacheError, match=r"cannot parse .*grad_seed\.onnx: .*No importer registered for op: Col2Im"):
        T.build_engine_bytes(tiny_model / "grad_seed.onnx", "fp32", trt=trt)
    assert trt.builds == []                                            # nothing was built from a failed parse


def test_failed_build_is_a_clear_error(tiny_model):
    trt = make_fake_trt(fail_build={"step.onnx"})
    with pytest.raises(EngineCacheError, match=r"failed to build an engine from .*step\.onnx \(fp32\); run with "
                                               "EDGE_AD_TRT_VERBOSE=1"):
        T.build_engine_bytes(tiny_model / "step.onnx", "fp32", trt=trt)


@pytest.fixture
def fake_device(tiny_model, tmp_path, monkeypatch):
    d = tmp_path / "model"
    shutil.copytree(tiny_model, d)
    trt = make_fake_trt()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(T, "load_cudart", lambda: FakeCudart())
    return d, trt


@pytest.mark.parametrize("precision", ["fp32", "tf32"])
def test_scorer_load_builds_its_engines_with_the_precision_flags(fake_device, monkeypatch, precision):
    from edge_ad.runtime import Scorer
    d, trt = fake_device
    monkeypatch.setenv("EDGE_AD_TRT_PRECISION", precision)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                                # the precision guard's warnings
        s = Scorer.load(d, backend="tensorrt")
    assert s._search.precision == precision
    assert sorted(b.onnx.rsplit("/", 1)[1] for b in trt.builds) == ["final.onnx", "step.onnx"]
    for b in trt.builds:
        assert {f.name for f in b.flags} == ({"TF32"} if precision == "tf32" else set()), b.onnx
        assert b.workspace == T.DEFAULT_WORKSPACE


def test_build_engine_cli_passes_precision_and_workspace(fake_device):
    from edge_ad.cli import main
    d, trt = fake_device
    r = CliRunner().invoke(main, ["build-engine", str(d), "--precision", "tf32", "--workspace-mb", "256"])
    assert r.exit_code == 0, r.output
    assert len(trt.builds) == 2
    assert all({f.name for f in b.flags} == {"TF32"} and b.workspace == 256 << 20 for b in trt.builds)
    r = CliRunner().invoke(main, ["build-engine", str(d)])                # fp32: new engines, TF32 cleared
    assert r.exit_code == 0, r.output
    assert len(trt.builds) == 4 and all(b.flags == set() for b in trt.builds[2:])
