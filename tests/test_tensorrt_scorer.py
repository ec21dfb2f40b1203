"""``Scorer.load(..., backend="tensorrt")``, ``edge-ad run --backend tensorrt`` and
``edge-ad build-engine``: one clear message without TensorRT/GPU (this machine), and the whole
path on the fake TensorRT + fake CUDA runtime (engines = the exported ONNX graphs in onnxruntime).
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("onnx")

from test_tensorrt_fakes import FakeCudart, make_fake_trt  # noqa: E402


def _have_tensorrt() -> bool:
    try:
        import tensorrt  # noqa: F401
        return True
    except ImportError:
        return False


@pytest.fixture(scope="module")
def tiny_model(export_tiny):
    return export_tiny(3, 2)


@pytest.fixture
def model_copy(tiny_model, tmp_path):
    d = tmp_path / "model"
    shutil.copytree(tiny_model, d)
    return d


# -- this machine: no TensorRT, no GPU ----------------------------------------------------------
@pytest.mark.skipif(_have_tensorrt(), reason="TensorRT is installed here")
def test_scorer_load_without_tensorrt_is_one_clear_error(tiny_model):
    from edge_ad.runtime import Scorer
    from edge_ad.runtime.backends.tensorrt import TensorRTUnavailable
    with pytest.raises(TensorRTUnavailable) as e:
        Scorer.load(tiny_model, backend="tensorrt")
    msg = str(e.value)
    assert "Python package 'tensorrt' is not installed" in msg
    assert "JetPack >= 5.1" in msg and "--backend onnxruntime" in msg
    assert isinstance(e.value, ImportError)     # what `edge-ad run` reports without a traceback


def _cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "edge_ad.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.skipif(_have_tensorrt(), reason="TensorRT is installed here")
def test_run_backend_tensorrt_without_tensorrt_no_traceback(tiny_model, tmp_path):
    p = _cli("run", "--backend", "tensorrt", "--model", str(tiny_model), "--source", "synth://",
             "--max-frames", "1", "--out", str(tmp_path / "r.jsonl"))
    out = p.stdout + p.stderr
    assert p.returncode != 0
    assert "Traceback" not in out
    assert "backend 'tensorrt' is not available" in out and "'tensorrt' is not installed" in out


@pytest.mark.skipif(_have_tensorrt(), reason="TensorRT is installed here")
def test_build_engine_without_tensorrt_no_traceback(tiny_model):
    p = _cli("build-engine", str(tiny_model))
    out = p.stdout + p.stderr
    assert p.returncode == 1 and "Traceback" not in out
    assert "Error: the TensorRT backend needs NVIDIA TensorRT >= 8.5" in out


def test_tensorrt_without_gpu_names_the_driver(tiny_model, monkeypatch):
    """TensorRT importable but no NVIDIA driver (a fake tensorrt + the real or fake cuda runtime)."""
    import edge_ad.runtime.backends.tensorrt as T
    from edge_ad.runtime import Scorer
    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_trt())
    monkeypatch.setattr(T, "load_cudart", lambda: FakeCudart(no_driver=True))
    with pytest.raises(T.TensorRTUnavailable, match="cannot run here: no usable NVIDIA GPU: CUDA reports "
                                                     "cudaErrorInsufficientDriver"):
        Scorer.load(tiny_model, backend="tensorrt")


# -- the whole path on fakes ----------------------------------------------------------------------
@pytest.fixture
def fake_gpu(monkeypatch):
    """tensorrt = fake module, CUDA = FakeCudart; the real engine build runs on the fake builder, which
    records each build (BuildRecord: onnx, flags, workspace) and 'serializes' the ONNX path."""
    import edge_ad.runtime.backends.tensorrt as T
    trt = make_fake_trt()
    state = {"builds": trt.builds, "cudart": FakeCudart(), "trt": trt}
    monkeypatch.setitem(sys.modules, "tensorrt", state["trt"])
    monkeypatch.setattr(T, "load_cudart", lambda: state["cudart"])
    return state


def test_scorer_tensorrt_equals_onnxruntime_and_caches_engines(model_copy, fake_gpu, rng):
    from edge_ad.runtime import Scorer
    from edge_ad.runtime.backends.precision import PrecisionWarning
    with pytest.warns(PrecisionWarning, match="fp32: an Adam step of lr_theta = 6e-09"):
        trt_scorer = Scorer.load(model_copy, backend="tensorrt")
    assert sorted(b.onnx for b in fake_gpu["builds"]) == sorted(str(model_copy / f) for f in ("final.onnx", "step.onnx"))
    assert all(b.flags == set() for b in fake_gpu["builds"])       # fp32: TensorRT's default TF32 cleared
    engines = sorted(p.name for p in (model_copy / "engines").glob("*.engine"))
    assert [e.split(".")[0] for e in engines] == ["final", "step"]
    assert all(".fp32.sm87.trt10.3.0.30." in e for e in engines)
    # the same graphs in onnxruntime (the CPU's auto choice, host-head, sums in another order: ~1e-4 in z)
    ort_scorer = Scorer.load(model_copy, backend="onnxruntime", providers=["CPUExecutionProvider"], variant="step")
    for i in range(2):
        rgb = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        depth = rng.integers(0, 256, (48, 64), dtype=np.uint8)
        # random noise: the backends' numerics, not a scene (the fault check would call it colour_noise)
        a = trt_scorer.score(rgb, depth, seed=i, check_faults=False)
        b = ort_scorer.score(rgb, depth, seed=i, check_faults=False)
        np.testing.assert_allclose(a.seed_losses, b.seed_losses, rtol=1e-5)
        np.testing.assert_allclose(a.error_map, b.error_map, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(a.z, b.z, rtol=1e-5, atol=1e-6)
        assert a.score == pytest.approx(b.score, rel=1e-5)
    # a second load hits the cache: no new build
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Scorer.load(model_copy, backend="tensorrt")
    assert len(fake_gpu["builds"]) == 2


def test_scorer_tensorrt_z_only_uses_step_z_engine(model_copy, fake_gpu):
    from edge_ad.runtime import Scorer
    s = Scorer.load(model_copy, backend="tensorrt", lr_theta=0.0)
    assert s.mode == "step_z"
    assert {b.onnx.rsplit("/", 1)[1] for b in fake_gpu["builds"]} == {"step_z.onnx", "final.onnx"}
    o = Scorer.load(model_copy, backend="onnxruntime", lr_theta=0.0, providers=["CPUExecutionProvider"], variant="step")
    x = np.tanh(np.random.default_rng(0).standard_normal((4, 64, 64))).astype(np.float32)
    np.testing.assert_allclose(s.score_input(x, seed=1).seed_losses, o.score_input(x, seed=1).seed_losses, rtol=1e-5)


def test_build_engine_cli_builds_checks_and_refuses_fp16(model_copy, fake_gpu):
    from edge_ad.cli import main
    runner = CliRunner()
    r = runner.invoke(main, ["build-engine", str(model_copy), "--check"])
    assert r.exit_code == 1 and "no TensorRT engine" in r.output and "edge-ad build-engine" in r.output
    r = runner.invoke(main, ["build-engine", str(model_copy)])
    assert r.exit_code == 0, r.output
    assert "GPU Fake Orin (sm_87), TensorRT 10.3.0.30, fp32" in r.output
    assert "warning: fp32:" in r.output          # BatchNorm scales near 1 keep their value
    assert "step: " in r.output and "final: " in r.output and len(fake_gpu["builds"]) == 2
    r = runner.invoke(main, ["build-engine", str(model_copy), "--check"])
    assert r.exit_code == 0 and len(fake_gpu["builds"]) == 2
    r = runner.invoke(main, ["build-engine", str(model_copy), "--precision", "fp16"])
    assert r.exit_code == 1 and "refusing precision fp16" in r.output and "stored as 0" in r.output
    assert len(fake_gpu["builds"]) == 2
    # another GPU (same model dir, e.g. shared over NFS): --check names what differs
    fake_gpu["cudart"].name, fake_gpu["cudart"].cc = b"NVIDIA H200", (9, 0)
    r = runner.invoke(main, ["build-engine", str(model_copy), "--check"])
    assert r.exit_code == 1
    assert "GPU: engine has 'Fake Orin', this machine needs 'NVIDIA H200'" in r.output
    r = runner.invoke(main, ["build-engine", str(model_copy)])
    assert r.exit_code == 0 and len(fake_gpu["builds"]) == 4 and "another GPU" in r.output


def test_run_tensorrt_without_a_usable_engine_or_gpu_memory_is_one_line(model_copy, fake_gpu, tmp_path,
                                                                        monkeypatch):
    """Audit 33 #2: EngineCacheError (no engine built for this GPU under EDGE_AD_TRT_ON_MISMATCH=fail) and
    CudaError (no GPU memory) are not ValueError / ImportError, so `edge-ad run --backend tensorrt` ended in a
    traceback. Both derive from BackendUnavailable now: exit 1, one error line naming the model and the reason,
    no results file."""
    from edge_ad.cli import main
    from edge_ad.runtime.backends.errors import BackendUnavailable

    def run(out):
        return CliRunner().invoke(main, ["run", "--model", str(model_copy), "--backend", "tensorrt", "--source",
                                         "synth://?n=1", "--quiet", "--out", str(out)])

    monkeypatch.setenv("EDGE_AD_TRT_ON_MISMATCH", "fail")
    r = run(tmp_path / "a.jsonl")
    errors = [ln for ln in r.output.splitlines() if ln.startswith("Error:")]
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), (r.output, r.exception)
    assert len(errors) == 1 and errors[0].startswith(f"Error: cannot load model {model_copy} with backend "
                                                     f"tensorrt: no TensorRT engine in {model_copy / 'engines'}")
    assert errors[0].endswith("GPU 'Fake Orin' (sm_87), TensorRT 10.3.0.30, fp32; run `edge-ad build-engine "
                              "MODEL_DIR` on this device first"), r.output
    assert "Traceback" not in r.output and not (tmp_path / "a.jsonl").exists() and fake_gpu["builds"] == []
    monkeypatch.delenv("EDGE_AD_TRT_ON_MISMATCH")
    fake_gpu["cudart"].fail_malloc_after = 0          # engines build, the device buffers do not fit
    r = run(tmp_path / "b.jsonl")
    errors = [ln for ln in r.output.splitlines() if ln.startswith("Error:")]
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), (r.output, r.exception)
    assert len(errors) == 1 and errors[0].startswith(f"Error: cannot load model {model_copy} with backend "
                                                     "tensorrt: cudaMalloc"), r.output
    assert "cudaErrorMemoryAllocation" in errors[0] and not (tmp_path / "b.jsonl").exists()
    from edge_ad.runtime.backends.cuda_buffers import CudaError, GpuUnavailable
    from edge_ad.runtime.backends.engine_cache import EngineCacheError
    assert all(issubclass(c, BackendUnavailable) for c in (CudaError, GpuUnavailable, EngineCacheError))


def test_build_engine_refuses_old_tensorrt(model_copy, fake_gpu, monkeypatch):
    from edge_ad.cli import main
    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_trt("8.4.1"))
    r = CliRunner().invoke(main, ["build-engine", str(model_copy)])
    assert r.exit_code == 1 and "TensorRT 8.4.1 is too old" in r.output and "JetPack >= 5.1" in r.output


def test_gpu_modules_are_torch_free_and_onnx_free():
    code = ("import sys\n"
            "import edge_ad.runtime.backends.tensorrt, edge_ad.runtime.backends.cuda_buffers, edge_ad.runtime.backends.precision\n"
            "import edge_ad.runtime.backends.engine_cache, edge_ad.commands.build_engine\n"
            "import edge_ad.jetson.budget, edge_ad.jetson.gpu_check\n"
            "bad = [m for m in ('torch', 'onnx', 'tensorrt', 'cuda.bindings.runtime', 'cuda.cudart') if m in sys.modules]\n"
            "print(bad); sys.exit(1 if bad else 0)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr


def test_scorer_tensorrt_k0_runs_the_final_engine_alone(export_tiny, tmp_path, fake_gpu):
    """k = 0 (variant forward, the shipped kinect models' kind): the export has final.onnx only, TensorRT
    builds that one engine and scores as onnxruntime does (z comes back unchanged)."""
    from edge_ad.runtime import Scorer
    d = tmp_path / "k0"
    shutil.copytree(export_tiny(0, 2), d)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = Scorer.load(d, backend="tensorrt")
    assert s.mode == "forward" and [b.onnx.rsplit("/", 1)[1] for b in fake_gpu["builds"]] == ["final.onnx"]
    o = Scorer.load(d, providers=["CPUExecutionProvider"])
    assert o.mode == "forward"
    x = np.tanh(np.random.default_rng(1).standard_normal((4, 64, 64))).astype(np.float32)
    a, b = s.score_input(x, seed=3), o.score_input(x, seed=3)
    np.testing.assert_allclose(a.seed_losses, b.seed_losses, rtol=1e-6)
    np.testing.assert_allclose(a.error_map, b.error_map, rtol=1e-5, atol=1e-8)
    np.testing.assert_array_equal(a.z, a.z0)


def test_scorer_tensorrt_shift_min_runs_the_engine_not_the_batch_graphs(export_tiny, tmp_path, fake_gpu):
    """score_shift_radius R = 1 on TensorRT: every one of the 9 shifted copies goes through the loaded
    TensorRT search (never onnxruntime's batch graphs, which the export also carries), in score_input
    and score_batch, and scores as onnxruntime's one-batch path does."""
    from edge_ad.runtime import Scorer
    from edge_ad.runtime.config import SearchConfig
    d = tmp_path / "k0"
    shutil.copytree(export_tiny(0, 2), d)
    import json
    man = json.loads((d / "manifest.json").read_text())
    assert "final_batch" in man["graphs"]                  # the batch graphs are there to be misused
    cfg = SearchConfig.from_dict(man["search"]).replace(score_shift_radius=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = Scorer.load(d, backend="tensorrt", config=cfg)
    calls = []
    run = s._search.run
    s._search.run = lambda x, z0: (calls.append(x.copy()), run(x, z0))[1]
    o = Scorer.load(d, providers=["CPUExecutionProvider"], config=cfg)
    x = np.tanh(np.random.default_rng(1).standard_normal((4, 64, 64))).astype(np.float32)
    a, b = s.score_input(x, seed=3), o.score_input(x, seed=3)
    assert len(calls) == 9 and s._batch is None
    assert s.mode == "forward" and a.timings["shifts"] == 9
    assert a.shift == b.shift and a.score == pytest.approx(b.score, rel=1e-5)
    np.testing.assert_allclose(a.error_map, b.error_map, rtol=1e-4, atol=1e-7)
    rgb = np.random.default_rng(2).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    depth = np.random.default_rng(3).integers(0, 256, (48, 64), dtype=np.uint8)
    calls.clear()
    (ra,), (rb,) = (s.score_batch([(rgb, depth)], seeds=[1], check_faults=False),      # noise: numerics only
                    o.score_batch([(rgb, depth)], seeds=[1], check_faults=False))
    assert len(calls) == 9 and s._batch is None
    assert ra.shift == rb.shift and ra.score == pytest.approx(rb.score, rel=1e-5)


def test_scorer_close_frees_every_cuda_buffer(model_copy, fake_gpu):
    """Review 17 #6: ``Scorer.close`` frees the TensorRT search's device and pinned buffers when asked
    (they were freed only when garbage collection reached the search); a second close frees nothing
    more; a closed Scorer refuses to score."""
    from edge_ad.runtime import Scorer
    cudart = fake_gpu["cudart"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = Scorer.load(model_copy, backend="tensorrt")
    x = np.tanh(np.random.default_rng(1).standard_normal((4, 64, 64))).astype(np.float32)
    s.score_input(x, seed=0)
    assert cudart.device and cudart.pinned
    s.close()
    assert cudart.device == {} and cudart.pinned == {}
    freed = cudart.n_free
    s.close()
    assert cudart.n_free == freed
    with pytest.raises(RuntimeError, match="is closed"):
        s.score_input(x, seed=0)


def test_gpu_check_frees_each_backend_before_loading_the_next(model_copy, fake_gpu, tmp_path, monkeypatch):
    """jetson/gpu_check closes every scorer it loads (review 17 #6): when the second TensorRT engine
    loads, none of the first one's CUDA buffers are left."""
    import edge_ad.runtime.backends.tensorrt as T
    from edge_ad.jetson.gpu_check import check
    cudart, live = fake_gpu["cudart"], []
    load_search = T.load_search
    monkeypatch.setattr(T, "load_search", lambda *a, **kw: (live.append(len(cudart.device)), load_search(*a, **kw))[1])
    rep = check(model_copy, tmp_path, repeats=1, warmup=0, tf32=True, only=["tensorrt-fp32", "tensorrt-tf32"],
                log=lambda *a: None)
    assert rep["backends"]["tensorrt-fp32"]["ok"], rep["backends"]
    assert live == [0, 0] and cudart.device == {}


def test_tensorrt_options_are_load_arguments_not_the_environment(model_copy, fake_gpu, monkeypatch):
    """Review 17 #7: ``Scorer.load(..., backend="tensorrt", backend_options=...)`` reaches load_search's
    precision / on_mismatch with os.environ untouched (a process-global input: another thread's load
    could see it); $EDGE_AD_TRT_PRECISION stays the default when no option is given, and an option
    wins over it; options a backend does not take are refused by name."""
    import os

    import edge_ad.runtime.backends.tensorrt as T
    from edge_ad.runtime import Scorer
    monkeypatch.delenv("EDGE_AD_TRT_PRECISION", raising=False)
    monkeypatch.delenv("EDGE_AD_TRT_ON_MISMATCH", raising=False)
    asked = []
    ensure = T.ensure_engines
    monkeypatch.setattr(T, "ensure_engines", lambda d, m, g, precision, on_mismatch, **kw: (
        asked.append((precision, on_mismatch, os.environ.get("EDGE_AD_TRT_PRECISION"))),
        ensure(d, m, g, precision, on_mismatch, **kw))[1])
    env = dict(os.environ)

    def load(**kw):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")              # tf32: PrecisionWarning (drift must be measured)
            return Scorer.load(model_copy, backend="tensorrt", **kw)
    s = load(backend_options={"precision": "tf32", "on_mismatch": "rebuild"})
    assert asked == [("tf32", "rebuild", None)] and s._search.precision == "tf32"
    assert [b.flags for b in fake_gpu["builds"]] and all(b.flags for b in fake_gpu["builds"])   # TF32 kept on
    assert dict(os.environ) == env
    s.close()
    monkeypatch.setenv("EDGE_AD_TRT_PRECISION", "tf32")
    asked.clear()
    load().close()                                        # the environment: the default
    load(backend_options={"precision": "fp32"}).close()   # an option wins over it
    assert [a[0] for a in asked] == ["tf32", "fp32"]
    with pytest.raises(ValueError, match="backend 'tensorrt' takes no option 'workspace'"):
        load(backend_options={"workspace": 1})
    with pytest.raises(ValueError, match="backend 'onnxruntime' takes no option 'precision'"):
        Scorer.load(model_copy, backend_options={"precision": "tf32"})


def test_gpu_check_passes_the_precision_as_an_option(model_copy, fake_gpu, tmp_path, monkeypatch):
    """jetson/gpu_check's TensorRT rows reach load_search as precision arguments; it no longer sets
    $EDGE_AD_TRT_PRECISION around Scorer.load."""
    import os

    import edge_ad.runtime.backends.tensorrt as T
    from edge_ad.jetson.gpu_check import check
    monkeypatch.delenv("EDGE_AD_TRT_PRECISION", raising=False)
    seen = []
    load_search = T.load_search
    monkeypatch.setattr(T, "load_search", lambda *a, **kw: (
        seen.append((kw.get("precision"), os.environ.get("EDGE_AD_TRT_PRECISION"))), load_search(*a, **kw))[1])
    check(model_copy, tmp_path, repeats=1, warmup=0, tf32=True, only=["tensorrt-fp32", "tensorrt-tf32"],
          log=lambda *a: None)
    assert seen == [("fp32", None), ("tf32", None)]
