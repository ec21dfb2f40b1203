"""ONNX export of the search and the torch-free Scorer: parity against the float64 reference on
real kinect-rgbd frames, the two exporter traps (Adam eps deleted; float64 scalars demoted),
manifest contents and tamper checks, the z-only and unrolled graphs, the export command."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from edge_ad.export.onnx_graphs import (GraphCheckError, SCALARS, Arch, build_graph,  # noqa: E402
                                        eps_closure, stack_state, verify_graph)
from edge_ad.runtime.config import SearchConfig, make_z0  # noqa: E402
from edge_ad.runtime.manifest import ManifestError, load_manifest  # noqa: E402


def _frame(root, cls, i=0):
    from edge_ad.runtime.sources.folder import read_pair
    fid = str(json.loads((root / "splits.json").read_text())[cls]["val"][i])
    rgb, depth = read_pair(root / cls, fid)
    return {"id": f"{cls}/{fid}", "rgb": rgb, "depth": depth}


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_generator, kinect_root):
    """The tiny generator saved as a checkpoint and exported with the reference configuration;
    parity on a normal (sphere) and an anomalous (rectangle) real frame."""
    from edge_ad.export import export_model
    from edge_ad.models.checkpoint import save_checkpoint
    from edge_ad.runtime.preprocess import PreprocessSpec
    d = tmp_path_factory.mktemp("export")
    ck = d / "g.pt"
    save_checkpoint(ck, tiny_generator, preprocess=PreprocessSpec())
    frames = [dict(_frame(kinect_root, "sphere"), label="normal"),
              dict(_frame(kinect_root, "rectangle"), label="anomalous")]
    out = d / "model"
    man = export_model(ck, out, parity_frames=frames, log=lambda *a: None)
    return out, man


def test_parity_report_normal_and_anomalous_frames(exported):
    _, man = exported
    p = man["parity"]
    assert p["passed"] is True and p["tolerance"] == 1e-4
    assert [r["label"] for r in p["frames"]] == ["normal", "anomalous"]
    # one row per exported variant (the default targets: cpu and gpu), faithful and z-only
    assert set(p["variants"]) == set(man["variants"]) == {"host-head", "fused-adam", "step"}
    assert p["failed_variants"] == [] and all(v["passed"] for v in p["variants"].values())
    for r in p["frames"]:
        assert r["rel_diff"] <= 1e-4, r
        assert set(r["variants"]) == set(r["z_only"]["variants"]) == set(p["variants"])
        for name in p["variants"]:
            assert r["variants"][name]["rel_diff"] <= 1e-4 and r["z_only"]["variants"][name]["rel_diff"] <= 1e-4, r
        # the same graphs built in float64 reproduce the float64 reference to rounding
        assert r["fp64_graph_rel_diff"] <= 1e-9, r
    # the two frames really differ (the anomalous one is not a copy of the normal one)
    assert p["frames"][0]["reference_score"] != pytest.approx(p["frames"][1]["reference_score"], rel=1e-3)


def test_scorer_matches_float64_reference_independently(exported, tiny_generator, kinect_root):
    """Not trusting the exporter's own report: a third real frame, a fresh Scorer, search_eager."""
    from edge_ad.models.search import search_eager
    from edge_ad.runtime.preprocess import preprocess
    from edge_ad.runtime.scorer import Scorer
    out, _ = exported
    fr = _frame(kinect_root, "cylinder", 1)
    scorer = Scorer.load(out)
    # auto prefers, on the CPU, the host-head search (both compiled kernels, AVX2), else fused-adam
    from edge_ad.runtime.variants import host_head_runs_here
    assert scorer.mode == ("host-head" if host_head_runs_here() else "fused-adam")
    z0 = make_z0(3, 100, 123)
    got = scorer.score(fr["rgb"], fr["depth"], z0=z0)
    ref = search_eager(tiny_generator, preprocess(fr["rgb"], fr["depth"]), SearchConfig(), z0=z0,
                       dtype=torch.float64)
    assert abs(got.score - ref.score) / ref.score <= 1e-4
    np.testing.assert_allclose(got.seed_losses, ref.seed_losses, rtol=1e-4)
    np.testing.assert_allclose(got.error_map, ref.error_map, atol=1e-5)
    assert got.error_map.shape == (64, 64) and got.z.shape == (3, 100)


def test_weights_restored_for_every_frame(exported, kinect_root):
    from edge_ad.runtime.scorer import Scorer
    out, _ = exported
    s = Scorer.load(out, variant="step")
    a, b = _frame(kinect_root, "sphere", 2), _frame(kinect_root, "rectangle", 2)
    r1 = s.score(a["rgb"], a["depth"], seed=7)
    ptrs = [buf.data_ptr() for trip in s._search.p_buf[1].values() for buf in trip]
    s.score(b["rgb"], b["depth"], seed=7)
    r2 = s.score(a["rgb"], a["depth"], seed=7)
    assert r1.score == r2.score and np.array_equal(r1.seed_losses, r2.seed_losses)
    # the same preallocated buffers are used frame after frame
    assert ptrs == [buf.data_ptr() for trip in s._search.p_buf[1].values() for buf in trip]


def _held_buffers(obj, path: str = "", seen=None) -> dict:
    """{attribute path: (the object, its data address)} of every numpy array and onnxruntime OrtValue
    that ``obj`` holds in its attributes, dicts, lists and tuples (recursively; its own sub-objects too)."""
    import onnxruntime as ort
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return {}
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return {path: (obj, obj.__array_interface__["data"][0])}
    if isinstance(obj, ort.OrtValue):
        return {path: (obj, obj.data_ptr())}
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, (list, tuple)):
        items = enumerate(obj)
    elif hasattr(obj, "__dict__") and type(obj).__module__.startswith("edge_ad."):
        items = vars(obj).items()
    else:
        return {}
    out = {}
    for k, v in items:
        out.update(_held_buffers(v, f"{path}.{k}", seen))
    return out


@pytest.mark.parametrize("variant", ["step", "fused-adam"])
def test_steady_state_scoring_reuses_the_buffers_allocated_at_load(exported, kinect_root, variant):
    """Buffers are allocated at load (step: our OrtValues; fused-adam: host buffers per worker): every
    array and OrtValue the search holds after load is the same object at the same address after
    scoring frames, and scoring adds none (a search that allocated its buffers per call fails)."""
    from edge_ad.runtime.scorer import Scorer
    s = Scorer.load(exported[0], variant=variant, threads=2)
    loaded = _held_buffers(s._search)
    assert len(loaded) >= 10, sorted(loaded)
    fr = _frame(kinect_root, "sphere", 6)
    for i in range(3):
        s.score(fr["rgb"], fr["depth"], seed=i)
    after = _held_buffers(s._search)
    assert after.keys() == loaded.keys()
    moved = [p for p, (o, addr) in loaded.items() if after[p][0] is not o or after[p][1] != addr]
    assert not moved, moved


def test_adam_eps_is_in_the_graph_and_reaches_the_arithmetic(exported, kinect_root):
    out, man = exported
    step = onnx.load(str(out / "step.onnx"))
    n_state = len(man["layout"]["state"])
    found = verify_graph(step, np.float32, n_adam=n_state + 1)
    assert found["eps_adds"] == n_state + 1
    assert "eps" in {i.name for i in step.graph.input}
    # behaviour: a different eps changes the search (it would not, had '+ eps' been folded away)
    from edge_ad.runtime.scorer import Scorer
    fr = _frame(kinect_root, "sphere")
    z0 = make_z0(3, 100, 1)
    base = Scorer.load(out).score(fr["rgb"], fr["depth"], z0=z0).z
    big = Scorer.load(out, config=SearchConfig(eps=1e-1)).score(fr["rgb"], fr["depth"], z0=z0).z
    assert np.abs(base - big).max() > 1e-3
    # a graph whose optimiser dropped '+ eps' is refused
    broken = onnx.load(str(out / "step.onnx"))
    eps = eps_closure(broken)
    for n in broken.graph.node:
        if n.op_type == "Add" and set(n.input) & eps:
            keep = [i for i in n.input if i not in eps]
            n.op_type = "Identity"
            del n.input[:]
            n.input.extend(keep)
    with pytest.raises(GraphCheckError, match="eps missing"):
        verify_graph(broken, np.float32, n_adam=n_state + 1)


def test_dynamo_exporter_trap_is_caught():
    """The real trap: torch.onnx's dynamo exporter with its default optimiser drops '+ 1e-8'."""
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter needs it)
    except ImportError:
        pytest.fail("onnxscript is not installed: it belongs in the 'train' extra (torch.onnx dynamo exporter)")
    class Upd(torch.nn.Module):
        def forward(self, p, m, v):
            return p - 0.05 * m / (torch.sqrt(v) + 1e-8)
    x = torch.rand(4)
    model = torch.onnx.export(Upd(), (x, x, x), dynamo=True, optimize=True, verbose=False).model_proto
    assert not any(n.op_type == "Add" for n in model.graph.node)   # the trap is real in this torch
    with pytest.raises(GraphCheckError, match="eps missing"):
        verify_graph(model, np.float32)


def test_legacy_exporter_float64_demotion_is_caught():
    """The real trap: the legacy exporter writes float64 bias-correction constants as float32."""
    import io

    class Upd(torch.nn.Module):
        def forward(self, p, m, v, t):
            return p - 0.05 * m / (torch.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    a = torch.rand(4, dtype=torch.float64)
    f = io.BytesIO()
    torch.onnx.export(Upd(), (a, a, a, torch.tensor(3.0, dtype=torch.float64)), f, dynamo=False, opset_version=17)
    with pytest.raises(GraphCheckError, match="mixes float precisions"):
        verify_graph(onnx.load_from_string(f.getvalue()), np.float64)


def test_float64_graph_keeps_float64_everywhere(tiny_generator):
    from edge_ad.export.search_graphs import arch_of, generator_arrays
    params, bn = generator_arrays(tiny_generator)
    arch = arch_of(tiny_generator, 3, 0, np.float64)
    m = build_graph(arch, "step", bn)
    assert verify_graph(m, np.float64, n_adam=len(arch.state()) + 1)["dtype"] == "DOUBLE"
    scal = {i.name: i.type.tensor_type.elem_type for i in m.graph.input if i.name in SCALARS}
    assert set(scal) == set(SCALARS) and set(scal.values()) == {onnx.TensorProto.DOUBLE}
    with pytest.raises(GraphCheckError):
        verify_graph(m, np.float32)


def test_host_adam_scalars_are_float64_exact():
    from edge_ad.runtime.config import adam_scalars
    cfg = SearchConfig()
    for t in (1, 2, 19):
        s = adam_scalars(cfg, t)
        assert s["step_size_z"] == cfg.lr_z / (1 - 0.9 ** t)
        assert s["inv_sqrt_bc2"] == 1 / np.sqrt(1 - 0.999 ** t)
        assert s["eps"] == 1e-8


def test_manifest_contents(exported):
    from edge_ad.runtime.manifest import sha256_file
    out, man = exported
    disk = json.loads((out / "manifest.json").read_text())
    assert disk["format"] == "edge-ad-model" and disk["version"] == 1
    assert disk["model"]["features_g"] == 8 and disk["model"]["z_dim"] == 100
    assert disk["search"] == SearchConfig().to_dict()
    assert disk["preprocess"]["resolution"] == 64 and disk["opset"] == 18
    assert {"onnx", "onnxruntime", "torch", "edge_ad"} <= set(disk["exporter"])
    # the default targets (cpu and gpu): host-head, fused-adam, step, each with its z-only graph; no unrolled
    assert disk["targets"] == ["cpu", "gpu"]
    assert {v: e["graphs"] for v, e in disk["variants"].items()} == {
        "host-head": ["grad_tail_seed", "final_seed", "grad_z_tail_seed"],
        "fused-adam": ["grad_seed", "final_seed", "grad_z_seed"], "step": ["step", "final", "step_z"]}
    assert set(disk["graphs"]) == {"step", "step_z", "final", "grad_seed", "grad_z_seed",
                                   "final_seed", "grad_tail_seed", "grad_z_tail_seed"}
    assert set(disk["files"]) == {"step.onnx", "step_z.onnx", "final.onnx", "grad_seed.onnx", "grad_z_seed.onnx",
                                  "final_seed.onnx", "grad_tail_seed.onnx", "grad_z_tail_seed.onnx",
                                  "head_consts.npy", "weights.npz"}
    assert sorted(p.name for p in out.iterdir()) == sorted(set(disk["files"]) | {"manifest.json"})
    for f, h in disk["files"].items():
        assert sha256_file(out / f) == h
    step_in = {i["name"]: i for i in disk["graphs"]["step"]["inputs"]}
    assert step_in["z"]["shape"] == [3, 1, 100] and step_in["z"]["dtype"] == "float32"
    assert step_in["x"]["shape"] == [4, 64, 64]
    assert disk["parity"]["passed"] is True
    assert disk["source"]["sha256"] and disk["source"]["format"] == "edge-ad"


@pytest.mark.parametrize("damage, needle", [
    ("tamper_weights", "weights.npz has been modified"),
    ("tamper_graph", "step.onnx has been modified"),
    ("delete_graph", "final.onnx listed in the manifest is missing"),
    ("version", "manifest version 99 is not supported"),
    ("no_manifest", "manifest.json missing"),
    ("failed_parity", "failed its parity check"),
])
def test_tampered_or_incomplete_directory_is_refused(exported, tmp_path, damage, needle):
    from edge_ad.runtime.scorer import Scorer
    src, _ = exported
    d = tmp_path / "m"
    shutil.copytree(src, d)
    man = json.loads((d / "manifest.json").read_text())
    if damage == "tamper_weights":
        w = np.load(d / "weights.npz")
        arrs = {k: w[k].copy() for k in w.files}
        arrs["bias4"][0] += 1e-3
        np.savez(d / "weights.npz", **arrs)
    elif damage == "tamper_graph":
        with open(d / "step.onnx", "ab") as f:
            f.write(b"\0")
    elif damage == "delete_graph":
        (d / "final.onnx").unlink()
    elif damage == "version":
        man["version"] = 99
    elif damage == "no_manifest":
        (d / "manifest.json").unlink()
    elif damage == "failed_parity":
        man["parity"]["passed"] = False
    if damage in ("version", "failed_parity"):
        (d / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ManifestError, match=needle):
        Scorer.load(d)


def test_n_seed_mismatch_is_refused(exported):
    from edge_ad.runtime.scorer import Scorer
    with pytest.raises(ManifestError, match="n_seed"):
        Scorer.load(exported[0], config=SearchConfig(n_seed=2))


def test_z_only_graph_is_used_for_lr_theta_zero(exported, tiny_generator, kinect_root):
    from edge_ad.models.search import search_eager
    from edge_ad.runtime.preprocess import preprocess
    from edge_ad.runtime.scorer import Scorer
    out, _ = exported
    s = Scorer.load(out, lr_theta=0.0, variant="step")
    assert s.mode == "step_z" and "step_z" in s._search.sessions and "step" not in s._search.sessions
    for g in ("grad_z_seed", "step_z"):                                          # auto's CPU choice too
        zg = onnx.load(str(out / f"{g}.onnx"))
        assert [o.name for o in zg.graph.output if o.name.startswith("W")] == [], g
    fused = Scorer.load(out, lr_theta=0.0, variant="fused-adam")
    step_z = onnx.load(str(out / "step_z.onnx"))
    assert not any(o.name.startswith("W") for o in step_z.graph.output)        # no weight updates
    assert sum(n.op_type == "MatMul" for n in step_z.graph.node) < \
        sum(n.op_type == "MatMul" for n in onnx.load(str(out / "step.onnx")).graph.node)
    fr = _frame(kinect_root, "rectangle", 3)
    z0 = make_z0(3, 100, 5)
    ref = search_eager(tiny_generator, preprocess(fr["rgb"], fr["depth"]), SearchConfig(lr_theta=0.0),
                       z0=z0, dtype=torch.float64)
    assert abs(s.score(fr["rgb"], fr["depth"], z0=z0).score - ref.score) / ref.score <= 1e-4
    assert abs(fused.score(fr["rgb"], fr["depth"], z0=z0).score - ref.score) / ref.score <= 1e-4


def test_unrolled_graph_equals_step_loop(tmp_path, tiny_generator, kinect_root):
    from edge_ad.export import export_model
    from edge_ad.runtime.scorer import Scorer
    cfg = SearchConfig(k=3, n_seed=2)
    fr = dict(_frame(kinect_root, "sphere"), label="normal")
    export_model(tiny_generator, tmp_path / "m", search=cfg, unrolled=True, parity_frames=[fr],
                 check_fp64=False, log=lambda *a: None)
    z0 = make_z0(2, 100, 0)
    a = Scorer.load(tmp_path / "m", variant="step").score(fr["rgb"], fr["depth"], z0=z0)
    b = Scorer.load(tmp_path / "m", variant="unrolled").score(fr["rgb"], fr["depth"], z0=z0)
    np.testing.assert_allclose(a.seed_losses, b.seed_losses, rtol=1e-6)
    with pytest.raises(ManifestError, match="k=3"):
        Scorer.load(tmp_path / "m", variant="unrolled", config=cfg.replace(k=4))


def test_export_command_study_state_dict(tmp_path, tiny_generator, kinect_root):
    from click.testing import CliRunner

    from edge_ad.cli import main
    sd = tmp_path / "study.pt"
    torch.save(tiny_generator.state_dict(), sd)
    r = CliRunner().invoke(main, ["export", str(sd), "--out", str(tmp_path / "m"), "--k", "2",
                                  "--parity-frames", str(kinect_root / "cylinder"), "--parity-n", "1",
                                  "--no-fp64-check"])
    assert r.exit_code == 0, r.output
    man = load_manifest(tmp_path / "m")
    assert man["source"]["format"] == "study-state-dict" and man["search"]["k"] == 2
    assert man["parity"]["passed"] and man["parity"]["frames"][0]["rel_diff"] <= 1e-4
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    r = CliRunner().invoke(main, ["export", str(bad), "--out", str(tmp_path / "m2"), "--no-parity"])
    assert r.exit_code == 1 and "bad.pt" in r.output


def test_export_torchscript_file(tmp_path, tiny_generator, kinect_root):
    """TorchScript generators (the study's other file format) export and pass parity."""
    from edge_ad.export import export_model
    ts = tmp_path / "g.ts"
    torch.jit.trace(tiny_generator, torch.randn(1, 100, 1, 1)).save(str(ts))
    fr = dict(_frame(kinect_root, "sphere", 5), label="normal")
    man = export_model(ts, tmp_path / "m", search=SearchConfig(k=2), unrolled=False, parity_frames=[fr],
                       check_fp64=False, log=lambda *a: None)
    assert man["source"]["format"] == "torchscript" and man["parity"]["passed"]
    assert "unrolled" not in man["graphs"]


def test_runtime_scores_without_torch(exported, kinect_root):
    out, _ = exported
    fr = kinect_root / "sphere"
    code = textwrap.dedent(f"""
        import sys
        from edge_ad.runtime import Scorer
        from edge_ad.runtime.sources.folder import read_pair, list_ids
        s = Scorer.load({str(out)!r})
        rgb, d = read_pair({str(fr)!r}, list_ids({str(fr)!r})[0])
        r = s.score(rgb, d, seed=0)
        bad = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.") or m == "onnx")
        assert not bad, bad
        print(r.score)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert float(r.stdout.strip()) > 0


def test_chunked_float64_graphs_match_reference(tiny_generator, kinect_root):
    """Many small weight chunks (the Adam cache blocking) compute exactly the reference search."""
    from edge_ad.export.parity import run_graphs
    from edge_ad.export.search_graphs import arch_of, generator_arrays
    from edge_ad.models.search import search
    from edge_ad.runtime.preprocess import preprocess
    params, bn = generator_arrays(tiny_generator)
    arch = arch_of(tiny_generator, 2, 8 << 10, np.float64)
    assert max(len(arch.col_chunks(l)) for l in range(5)) >= 4
    cfg = SearchConfig(k=3, n_seed=2)
    models = {"step": build_graph(arch, "step", bn), "final": build_graph(arch, "final", bn)}
    st = {k: v[0] for k, v in stack_state(arch, params).items()}
    fr = _frame(kinect_root, "cylinder", 4)
    x, z0 = preprocess(fr["rgb"], fr["depth"]), make_z0(2, 100, 9)
    got = run_graphs(models, st, {s.name: s.shape for s in arch.state()}, cfg, arch, "step", x, z0, 1)
    ref = search(tiny_generator, x, cfg, z0=z0, dtype=torch.float64)
    np.testing.assert_allclose(got["seed_losses"], ref.seed_losses, rtol=1e-10)
    np.testing.assert_allclose(got["z"], ref.z, rtol=1e-9, atol=1e-12)


def test_stack_state_layout_round_trip(tiny_generator):
    """The GEMM column layout of the state tensors is a permutation of the torch weights."""
    from edge_ad.export.search_graphs import arch_of, generator_arrays
    params, _ = generator_arrays(tiny_generator)
    arch = arch_of(tiny_generator, 2, 4096)
    st = stack_state(arch, params)
    w = params["gen.2.0.weight"]                                   # (C_in, C_out, 4, 4)
    cols = np.concatenate([st[s.name][1] for s in arch.state() if s.param == "gen.2.0.weight"], axis=1)
    back = cols.reshape(w.shape[0], 2, 2, 2, 2, w.shape[1]).transpose(0, 5, 1, 3, 2, 4).reshape(w.shape)
    np.testing.assert_allclose(back, w, rtol=1e-6)
    assert len([s for s in arch.state() if s.param == "gen.2.0.weight"]) > 1   # chunked
