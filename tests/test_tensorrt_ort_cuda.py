"""The onnxruntime CUDA-EP device-resident path: provider options and per-step CUDA-graph ids
(the GPU run itself needs a machine with onnxruntime-gpu; see jetson/gpu_check.py)."""
from __future__ import annotations

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")

from edge_ad.runtime.backends.onnxruntime_backend import (OrtSearch, cuda_graph_requested,  # noqa: E402
                                                          cuda_graph_run_options, cuda_providers)
from edge_ad.runtime.config import SearchConfig  # noqa: E402


def test_cuda_providers_enable_graphs_without_cpu_fallback():
    p = cuda_providers()
    assert p == [("CUDAExecutionProvider", {"device_id": "0", "enable_cuda_graph": "1"})]
    assert cuda_graph_requested(p)
    assert not cuda_graph_requested(cuda_providers(cuda_graph=False))
    assert not cuda_graph_requested(["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert not cuda_graph_requested(None)
    assert cuda_graph_requested([("CUDAExecutionProvider", {"enable_cuda_graph": True})])


def test_one_graph_id_per_step_binding():
    ro = cuda_graph_run_options(cuda_providers(), k=19)
    ids = [r.get_run_config_entry("gpu_graph_id") for r in ro["steps"]]
    assert ids == [str(t) for t in range(1, 20)]          # 0 is reserved by onnxruntime
    assert ro["final"].get_run_config_entry("gpu_graph_id") == "1"   # a different session
    assert cuda_graph_run_options(["CPUExecutionProvider"], k=19) is None


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="a GPU is here")
def test_cuda_providers_without_gpu_are_refused_clearly(tmp_path, tiny_generator):
    from edge_ad.export.exporter import export_model
    from edge_ad.runtime import Scorer
    from edge_ad.runtime.preprocess import PreprocessSpec
    import copy
    G = copy.deepcopy(tiny_generator)
    G.preprocess = PreprocessSpec()
    export_model(G, tmp_path / "m", search=SearchConfig(k=2, n_seed=2), parity=False, log=lambda *a: None)
    with pytest.raises(RuntimeError, match=r"providers \['CUDAExecutionProvider'\] are not available here"):
        Scorer.load(tmp_path / "m", providers=cuda_providers())
    # the CPU path keeps running without run options
    s = Scorer.load(tmp_path / "m", providers=["CPUExecutionProvider"])
    assert s._search._run_opts is None
    r = s.score_input(np.zeros((4, 64, 64), np.float32), seed=0)
    assert np.isfinite(r.score)


def test_both_onnxruntime_distributions_are_named_in_the_refusal(monkeypatch):
    """Audit 28 #22: pip install 'edge-ad[gpu]' installs PyPI's onnxruntime (a base dependency) AND onnxruntime-gpu,
    which share one module: the CUDA provider is then missing. The refusal says so and how to keep one."""
    from importlib import metadata
    from types import SimpleNamespace

    from edge_ad.runtime.backends import onnxruntime_backend as ob
    both = [SimpleNamespace(metadata={"Name": n}) for n in ("numpy", "onnxruntime", "onnxruntime_gpu")]
    monkeypatch.setattr(metadata, "distributions", lambda: iter(both))
    assert ob.both_onnxruntimes_hint() == (
        "; both onnxruntime and onnxruntime-gpu are installed and share one module (only one of them works): "
        "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu")
    monkeypatch.setattr(metadata, "distributions", lambda: iter(both[:2]))
    assert ob.both_onnxruntimes_hint() == ""


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="a GPU is here")
def test_a_k0_model_with_missing_providers_is_refused_before_any_session():
    """Audit 28 #22 (rest): a k = 0 model (the demo, every shipped model) with providers=CUDA got onnxruntime's
    "Can't allocate memory on the CUDA device using this package of OnnxRuntime" from the encoder / batch graph
    sessions, which skipped the provider check: now Scorer.load refuses first, with the same line."""
    from edge_ad.runtime import Scorer, demo_model_dir
    with pytest.raises(RuntimeError, match=r"providers \['CUDAExecutionProvider'\] are not available here"):
        Scorer.load(demo_model_dir(), providers=cuda_providers())

