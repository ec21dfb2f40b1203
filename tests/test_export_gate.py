"""The exporter's float64 gate (export/parity.py check_parity): the float64 build of the step graph must
equal the float64 reference to FP64_GRAPH_TOLERANCE, tight enough to fail a weight-gradient bug that the
float32 parity cannot see at lr_theta = 6e-9. The bug is injected into the float64 graph the gate builds:
Adam receives the BN-gamma gradients with their sign flipped (what flipping that gradient's sign in
onnx_graphs.py does)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

pytest.importorskip("torch")

from edge_ad.export import parity, search_graphs  # noqa: E402
from edge_ad.runtime.config import SearchConfig  # noqa: E402


def flip_bn_gamma_gradient(model: onnx.ModelProto) -> int:
    """In a step graph, feed Adam -g instead of g for every BN gamma (the first moment's Add takes the
    gradient as its second input; v uses g * g, unchanged by the sign). Returns how many were flipped."""
    nodes = list(model.graph.node)
    flipped = 0
    for i, n in enumerate(list(nodes)):
        if n.op_type == "Add" and n.output[0].endswith(".gamma.m.out"):
            neg = helper.make_node("Neg", [n.input[1]], [n.input[1] + "_negated"], name=n.name + "_neg")
            n.input[1] = neg.output[0]
            nodes.insert(nodes.index(n), neg)
            flipped += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return flipped


@pytest.fixture(scope="module")
def frames(val_frames):
    return [{"id": f"f{i}", "label": None, "rgb": rgb, "depth": depth} for i, (rgb, depth) in enumerate(val_frames(1))]


def _check(G, d, cfg, frames):
    return parity.check_parity(G, d, cfg, frames, check_fp64=True, check_z_only=False, threads=1,
                               log=lambda *a: None)


def test_gate_passes_the_real_graphs_and_fails_a_flipped_bn_gamma_gradient(export_tiny, tiny_generator, frames,
                                                                           monkeypatch):
    d, cfg = export_tiny(3, 2), SearchConfig(k=3, n_seed=2)
    report = _check(tiny_generator, d, cfg, frames)
    assert report["passed"] and report["fp64_graph_tolerance"] == parity.FP64_GRAPH_TOLERANCE <= 1e-11
    assert report["fp64_graph_max_rel_diff"] < 1e-13                  # measured <= 1.4e-14

    real = search_graphs.build_graph
    counts = []

    def buggy(arch, kind, bn, k=0):
        model = real(arch, kind, bn, k=k)
        if np.dtype(arch.dtype) == np.float64 and kind == "step":    # only the gate's float64 graph
            counts.append(flip_bn_gamma_gradient(model))
        return model
    monkeypatch.setattr(search_graphs, "build_graph", buggy)   # the float64 graphs check_parity builds
    bad = _check(tiny_generator, d, cfg, frames)
    assert counts == [4]                                              # bn0..bn3 gamma
    assert bad["max_rel_diff"] <= 1e-4                                # the float32 parity alone would pass
    assert bad["fp64_graph_max_rel_diff"] > 10 * parity.FP64_GRAPH_TOLERANCE, bad["summary"]
    assert bad["passed"] is False and "float64 graphs" in bad["summary"]



def test_each_parity_frame_is_announced_before_its_work(export_tiny, tiny_generator, val_frames):
    """Audit 29 #9: a study-sized generator's parity frame takes ~2 min on a CPU, and the export said nothing
    between "parity check on 2 frames ..." and each frame's result. Now a line names each frame (i of N) before
    its reference search runs, then its result line follows."""
    d, cfg = export_tiny(3, 2), SearchConfig(k=3, n_seed=2)
    two = [{"id": f"f{i}", "label": None, "rgb": rgb, "depth": depth} for i, (rgb, depth) in enumerate(val_frames(2))]
    said = []
    report = parity.check_parity(tiny_generator, d, cfg, two, check_fp64=False, check_z_only=False, threads=1,
                                 log=said.append)
    assert report["passed"], report["summary"]
    lines = [x for x in said if x.startswith("  parity f")]
    n = len(report["variants"])
    assert lines[0] == f"  parity frame 1/2 (f0): the float64 reference search and {n} variant(s) ..."
    assert lines[1].startswith("  parity f0 (None): reference ")
    assert lines[2] == f"  parity frame 2/2 (f1): the float64 reference search and {n} variant(s) ..."
    assert lines[3].startswith("  parity f1 (None): reference ") and len(lines) == 4, said


def test_parity_checks_the_theta_steps_effect_on_its_own(export_tiny, tiny_generator, frames, monkeypatch):
    """Audit 28 #20: the theta step's effect on the score (faithful minus z-only) is small against the score
    tolerance, so a runtime whose theta update was off by 40 % passed parity. The effect is now compared on its
    own (within THETA_EFFECT_TOLERANCE of the reference's) where it is large enough to tell from float32 noise:
    the real runtime passes (here within 1 %), the faithful searches run at 0.6 x lr_theta fail, although
    their scores are still within the score tolerance."""
    d, cfg = export_tiny(3, 2), SearchConfig(k=3, n_seed=2).replace(lr_theta=2e-6)

    def check():
        return parity.check_parity(tiny_generator, d, cfg, frames, check_fp64=False, check_z_only=True, threads=1,
                                   log=lambda *a: None)
    good = check()
    assert good["passed"], good["summary"]
    thetas = [v["theta_effect_max_rel_diff"] for v in good["variants"].values()]
    assert thetas and all(t is not None and t < 0.01 for t in thetas), good["variants"]
    real = parity._variant_scorers

    def slow_theta(out_dir, man, cfg_, zcfg, threads):       # the faithful searches' theta step at 0.6 x
        right = real(out_dir, man, cfg_, zcfg, threads)
        slow = real(out_dir, man, cfg_.replace(lr_theta=0.6 * cfg_.lr_theta), None, threads)
        return {n: (slow[n][0], right[n][1]) for n in right}
    monkeypatch.setattr(parity, "_variant_scorers", slow_theta)
    bad = check()
    per = bad["variants"].values()
    assert max(v["max_rel_diff"] for v in per) <= 1e-4, bad["summary"]   # the score tolerance alone would pass
    assert bad["passed"] is False and all(not v["passed"] and v["theta_effect_max_rel_diff"] > 0.3 for v in per)
    assert all("theta step's effect within" in v["summary"] for v in per), [v["summary"] for v in per]


def test_theta_effect_check_allows_the_runtimes_float32_rounding_not_a_wrong_step():
    """The theta-effect comparison (audit 28 #20) on a frame whose effect is just above THETA_EFFECT_MIN: float32
    rounding of the runtime's two scores (read from its z-only score's difference to the reference) is allowed, so
    it does not fail a correct export; a theta step off by 40 % of its effect still does."""
    from types import SimpleNamespace as NS

    def result(score):
        return NS(score=score, seed_losses=np.array([score]), error_map=np.zeros((2, 2)))
    ref_score, effect = 1.0, 3e-5                              # the effect: 3e-5 of the score (> 1e-5)
    rounding = 1e-6                                            # the runtime's float32 rounding of a score
    ref = parity._FrameReference(0, {}, np.zeros((1, 2)), None, None, 1.0,
                                 result(ref_score), result(ref_score - effect))

    def theta_rel(faithful_error):
        runtime = result(ref_score + rounding + faithful_error)
        z_only = result(ref_score - effect - rounding)          # rounding the other way: the worst case
        scorers = {"v": (lambda: NS(score=lambda *a, **k: runtime), lambda: NS(score=lambda *a, **k: z_only))}
        row = parity._frame_row({"id": 0, "rgb": None, "depth": None}, ref, scorers, SearchConfig(k=3))
        return row["z_only"]["variants"]["v"]["theta_effect_rel_diff"]
    assert theta_rel(0.0) <= parity.THETA_EFFECT_TOLERANCE               # rounding alone: 2e-6 / 3e-5 = 6.7 % raw
    assert theta_rel(0.4 * effect) > parity.THETA_EFFECT_TOLERANCE       # a theta step off by 40 %


def test_parity_opens_one_scorer_at_a_time(export_tiny, tiny_generator, val_frames, monkeypatch):
    """Audit 29 #9: check_parity held every variant's faithful and z-only Scorer (six sets of onnxruntime sessions)
    alive through all frames: ~0.8 GB at width 32 and ~3 GB of the 7.8 GB peak at the study's width 64. Now each
    scorer is loaded for its frame and closed before the next one opens: at most one is open at any time, none is
    left open, and the parity still passes with every variant, faithful and z-only."""
    from edge_ad.runtime.scorer import Scorer

    d, cfg = export_tiny(3, 2), SearchConfig(k=3, n_seed=2)
    two = [{"id": f"f{i}", "label": None, "rgb": rgb, "depth": depth} for i, (rgb, depth) in enumerate(val_frames(2))]
    alive, most, loads = set(), [0], [0]
    real_load, real_close = Scorer.load, Scorer.close

    def load(cls, *a, **k):
        scorer = real_load(*a, **k)
        alive.add(id(scorer))
        loads[0] += 1
        most[0] = max(most[0], len(alive))
        return scorer

    def close(self, timeout=None):
        alive.discard(id(self))
        return real_close(self, timeout)
    monkeypatch.setattr(Scorer, "load", classmethod(load))
    monkeypatch.setattr(Scorer, "close", close)
    report = parity.check_parity(tiny_generator, d, cfg, two, check_fp64=True, check_z_only=True, threads=1,
                                 log=lambda *a: None)
    n = len(report["variants"])
    assert report["passed"] and n >= 2 and all("z_only" in r for r in report["frames"]), report["summary"]
    assert loads[0] == 2 * 2 * n                       # per frame each variant's faithful and z-only scorer
    assert most[0] == 1 and not alive, (most[0], len(alive))


@pytest.mark.parametrize("k", [3, 0])
def test_float64_graphs_run_one_seed_at_a_time_with_the_all_seeds_losses(tiny_generator, val_frames, monkeypatch, k):
    """Audit 29 #9: the float64 graphs' run held every seed's float64 state, Adam moments and their double buffers
    at once (~3.5 GB at the study's width 64). They are built for one seed and run seed by seed: each run's
    buffers are one seed's, and the seed losses are bit for bit those of the graphs built for all seeds."""
    from edge_ad.runtime.config import make_z0
    from edge_ad.runtime.preprocess import PreprocessSpec, preprocess

    cfg = SearchConfig(k=k, n_seed=3)
    rgb, depth = val_frames(1)[0]
    x = preprocess(rgb, depth, PreprocessSpec())
    z0 = make_z0(cfg.n_seed, tiny_generator.cfg.z_dim, 0)
    real, seen = parity.run_graphs, []

    def spy(models, pristine, shapes, cfg_, arch, mode, x_, z0_, threads):
        seen.append((cfg_.n_seed, arch.n_seed, len(z0_), {s[0] for s in shapes.values()}))
        return real(models, pristine, shapes, cfg_, arch, mode, x_, z0_, threads)
    monkeypatch.setattr(parity, "run_graphs", spy)
    got = parity._Float64Graphs(tiny_generator, cfg).run(cfg, x, z0, 1)["seed_losses"]
    assert seen == [(1, 1, 1, {1})] * 3

    # the graphs built for all seeds (as before), run once on all of them
    params, bn = search_graphs.generator_arrays(tiny_generator)
    arch = search_graphs.arch_of(tiny_generator, cfg.n_seed, 0, np.float64)
    v64 = parity.variants.for_export(cfg, ("gpu",))[0]
    models = {n: search_graphs.GRAPH_BUILDERS[n].model(n, arch, bn, cfg, np.float64)[0] for n in v64.needs(cfg)}
    state = {n: v[0] for n, v in parity.stack_state(arch, params).items()}
    want = real(models, state, {s.name: s.shape for s in arch.state()}, cfg, arch, v64.mode(cfg), x, z0,
                1)["seed_losses"]
    assert got.shape == (3,) and np.array_equal(got, want), (got, want)
