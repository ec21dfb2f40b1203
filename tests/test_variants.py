"""The variant table (runtime/variants.py): what an export writes for its configuration and targets,
what "auto" chooses where, and the refusals naming what does not fit."""
from __future__ import annotations

import pytest

from edge_ad.runtime import variants
from edge_ad.runtime.config import SearchConfig
from edge_ad.runtime.manifest import ManifestError, load_manifest
from edge_ad.runtime.scorer import Scorer
from edge_ad.runtime.variants import VARIANTS, choose, for_export, graphs_for_export, resolve

REF = SearchConfig()                          # k = 19, lr_theta = 6e-9
ZONLY = SearchConfig(lr_theta=0.0)
K0 = SearchConfig(k=0)


def _names(vs):
    return [v.name for v in vs]


def test_export_writes_what_the_targets_run():
    assert _names(for_export(REF)) == ["host-head", "fused-adam", "step"]      # default: cpu and gpu
    assert _names(for_export(REF, ["cpu"])) == ["host-head", "fused-adam"]
    assert _names(for_export(REF, ["gpu"])) == ["step"]
    assert _names(for_export(REF, ["gpu"], unrolled=True)) == ["step", "unrolled"]
    assert _names(for_export(K0)) == _names(for_export(K0, ["cpu"])) == ["forward"]   # k = 0: final only
    assert graphs_for_export(K0, for_export(K0)) == ["final"]
    # faithful graphs and their z-only twins (the named fast option); lr_theta = 0: the z-only ones only
    assert graphs_for_export(REF, for_export(REF, ["cpu"])) == \
        ["grad_tail_seed", "final_seed", "grad_z_tail_seed", "grad_seed", "grad_z_seed"]
    assert graphs_for_export(REF, for_export(REF, ["gpu"])) == ["step", "final", "step_z"]
    assert graphs_for_export(ZONLY, for_export(ZONLY)) == ["grad_z_tail_seed", "final_seed", "grad_z_seed",
                                                           "step_z", "final"]
    with pytest.raises(ValueError, match="unknown export targets"):
        for_export(REF, ["tpu"])


def _graphs(*names, unrolled_k=None):
    g = {n: {"file": f"{n}.onnx"} for n in names}
    if unrolled_k is not None:
        g["unrolled"] = {"file": "unrolled.onnx", "k": unrolled_k}
    return g


ALL = _graphs("grad_tail_seed", "grad_z_tail_seed", "grad_seed", "grad_z_seed", "final_seed", "step", "step_z",
              "final", unrolled_k=19)


def test_auto_choice(monkeypatch):
    monkeypatch.setattr(variants, "host_head_runs_here", lambda: True)
    assert choose(REF, "onnxruntime", True, ALL).name == "host-head"
    assert choose(ZONLY, "onnxruntime", True, ALL).name == "host-head"
    assert choose(REF, "onnxruntime", False, ALL).name == "step"             # the CUDA provider
    assert choose(REF, "tensorrt", False, ALL).name == "step"                # never unrolled on its own
    assert choose(K0, "onnxruntime", True, ALL).name == choose(K0, "tensorrt", False, ALL).name == "forward"
    monkeypatch.setattr(variants, "host_head_runs_here", lambda: False)      # ARM, no AVX2, no head kernel
    assert choose(REF, "onnxruntime", True, ALL).name == "fused-adam"
    assert choose(REF, "onnxruntime", True, _graphs("step", "step_z", "final")).name == "step"   # gpu-only export
    # a cpu-only export on a GPU backend, a k >= 1 export asked to run... : one error naming the fix
    with pytest.raises(ManifestError, match=r"no exported search runs on tensorrt on a GPU .* has: fused-adam, "
                                            r"host-head.*re-export with --target gpu"):
        choose(REF, "tensorrt", False, _graphs("grad_tail_seed", "grad_z_tail_seed", "grad_seed", "grad_z_seed",
                                               "final_seed"))
    with pytest.raises(ManifestError, match="no exported search runs on the CPU for k=0"):
        choose(K0, "onnxruntime", True, _graphs("step", "step_z"))


def test_explicit_variants_are_checked(monkeypatch):
    assert resolve("unrolled", REF, "onnxruntime", True, ALL).name == "unrolled"
    with pytest.raises(ManifestError, match="exported for k=19"):
        resolve("unrolled", REF.replace(k=4), "onnxruntime", True, ALL)
    with pytest.raises(ManifestError, match=r"needs the graphs unrolled \(missing: unrolled\).*--target gpu --unrolled"):
        resolve("unrolled", REF, "onnxruntime", True, _graphs("step", "final"))
    with pytest.raises(ValueError, match="'seed-parallel' was removed"):
        resolve("seed-parallel", REF, "onnxruntime", True, ALL)
    with pytest.raises(ValueError, match="unknown variant 'fast'"):
        resolve("fast", REF, "onnxruntime", True, ALL)
    with pytest.raises(ValueError, match="not a tensorrt one"):
        resolve("fused-adam", REF, "tensorrt", False, ALL)
    with pytest.raises(ValueError, match="runs only k = 0"):
        resolve("forward", REF, "onnxruntime", True, ALL)
    with pytest.raises(ValueError, match="unknown backend"):
        resolve("auto", REF, "openvino", True, ALL)
    for v in VARIANTS.values():                  # the Scorer's mode names: the variant's, step_z for z-only step
        assert v.mode(REF) == v.name and v.mode(ZONLY) == ("step_z" if v.name == "step" else v.name)


def test_gpu_only_export_and_its_refusals(tmp_path, tiny_generator):
    """--target gpu writes the step graphs only; the CPU then runs them (auto: step), asking for a CPU
    variant names the fix."""
    from edge_ad.export.exporter import export_model
    d = tmp_path / "gpu"
    man = export_model(tiny_generator, d, search=SearchConfig(k=2, n_seed=2), targets=["gpu"], parity=False,
                       log=lambda *a: None)
    assert set(man["graphs"]) == {"step", "step_z", "final"} and list(man["variants"]) == ["step"]
    assert sorted(p.name for p in d.iterdir()) == ["final.onnx", "manifest.json", "step.onnx", "step_z.onnx",
                                                   "weights.npz"]
    assert Scorer.load(d, threads=1).mode == "step"
    with pytest.raises(ManifestError, match="re-export with --target cpu"):
        Scorer.load(d, variant="host-head")
    # re-exporting into the same directory for another target leaves no stale graph behind
    man = export_model(tiny_generator, d, search=SearchConfig(k=2, n_seed=2), targets=["cpu"], parity=False,
                       log=lambda *a: None)
    assert "step" not in man["graphs"] and not (d / "step.onnx").exists()
    assert set(load_manifest(d)["files"]) == {p.name for p in d.iterdir()} - {"manifest.json"}


def test_a_failing_variant_is_left_out_not_blocking_the_others(tiny_parity_export, monkeypatch):
    """Parity per variant: a step graph that is off (its weight step size scaled by 1e6, as a broken graph would
    be) is dropped from the export with its report; host-head and fused-adam stay and the export passes."""
    from edge_ad.runtime.backends import onnxruntime_backend as ob
    real = ob.adam_scalars

    def broken(cfg, t):                     # only the step graphs read these through OrtSearch
        s = dict(real(cfg, t))
        s["step_size_theta"] *= 1e6
        return s
    monkeypatch.setattr(ob, "adam_scalars", broken)
    man = tiny_parity_export(2, 2, 1)
    p = man["parity"]
    assert p["failed_variants"] == ["step"] and p["passed"] is True, p["variants"]
    assert p["variants"]["step"]["passed"] is False and p["variants"]["step"]["max_rel_diff"] > 1e-4
    assert p["variants"]["fused-adam"]["passed"] and p["variants"]["host-head"]["passed"]
    assert "step" not in man["variants"] and not {"step", "step_z", "final"} & set(man["graphs"])
    assert "FAILED and not exported: step" in p["summary"]
