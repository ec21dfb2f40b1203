"""``Scorer.score_batch`` (issue 14): k = 0 exports score frame batches through final_batch.onnx /
encoder_batch.onnx, equal to ``Scorer.score`` frame by frame (float32 rounding: relative 1e-5);
a bad frame is returned as its error without disturbing the others; other models fall back to
``score``; a batch graph changed on disk is refused."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from conftest import flip_last_bytes
from edge_ad.runtime import Scorer
from edge_ad.runtime.config import frame_seed
from edge_ad.runtime.manifest import ManifestError
from edge_ad.runtime.preprocess import FrameError

RTOL = 1e-5   # float32: the batch graph sums the same products in another order


def assert_same(one, got, keep: bool = False):
    assert got.score == pytest.approx(one.score, rel=RTOL)
    np.testing.assert_allclose(got.seed_losses, one.seed_losses, rtol=RTOL)
    np.testing.assert_allclose(got.error_map, one.error_map, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(got.z0, one.z0)                       # the same initial latents
    assert got.score_scale == pytest.approx(one.score_scale, rel=1e-6)
    if one.latent_distance is None:
        assert got.latent_distance is None
    else:
        assert got.latent_distance == pytest.approx(one.latent_distance, rel=1e-5)
    if keep:
        np.testing.assert_allclose(got.reconstructions, one.reconstructions, atol=1e-5)


def test_shipped_model_batch_equals_one_at_a_time(kinect_export, val_frames):
    """The shipped rectangle model (izi encoder, latent memory, fg power): 7 real frames of the
    three classes and one frame with NaN-free garbage shape in the middle."""
    scorer = Scorer.load(kinect_export, threads=2)
    assert scorer.config.k == 0 and "final_batch" in scorer.manifest["graphs"]
    frames = val_frames(7)
    frames.insert(3, (np.zeros((10, 10, 3), np.uint8), np.zeros((12, 12), np.uint8)))   # shapes disagree
    seeds = [frame_seed(4, i) for i in range(len(frames))]
    got = scorer.score_batch(frames, seeds=seeds, keep_reconstructions=True, threads=2)
    assert isinstance(got[3], FrameError)
    with pytest.raises(FrameError):
        scorer.score(*frames[3])
    for i, (rgb, depth) in enumerate(frames):
        if i != 3:
            assert_same(scorer.score(rgb, depth, seed=seeds[i], keep_reconstructions=True), got[i], keep=True)
            assert got[i].timings["batch_size"] == (3 if i < 4 else 4)   # graph runs of MAX_BATCH = 4 frames
    scores = [r.score for i, r in enumerate(got) if i != 3]
    assert len(set(scores)) == 7                                        # frames differ, no slot mixed up
    again = scorer.score_batch(frames[:2], seeds=seeds[:2])            # another batch size, same results
    assert again[0].score == pytest.approx(got[0].score, rel=RTOL)
    assert_results_belong_to_the_caller(scorer, frames[:2], seeds[:2])


def assert_results_belong_to_the_caller(scorer, frames, seeds):
    """A kept score_batch result is never changed by later calls, and changing it changes no later result."""
    first = scorer.score_batch(frames, seeds=seeds)
    kept = [(r.error_map.copy(), r.seed_losses.copy(), r.z0.copy()) for r in first]
    for r in first:
        r.error_map[:], r.seed_losses[:], r.z0[:] = -1, -1, -1
    again = scorer.score_batch(frames[::-1], seeds=seeds[::-1])[::-1]     # another order: other slots
    for r, (error_map, seed_losses, z0) in zip(again, kept):
        np.testing.assert_allclose(r.error_map, error_map, rtol=RTOL, atol=1e-7)
        np.testing.assert_allclose(r.seed_losses, seed_losses, rtol=RTOL)
        np.testing.assert_array_equal(r.z0, z0)
    kept = [r.error_map.copy() for r in again]
    scorer.score_batch(frames, seeds=[s + 1 for s in seeds])
    for r, error_map in zip(again, kept):
        np.testing.assert_array_equal(r.error_map, error_map)


def test_batches_beyond_max_batch_run_in_chunks(kinect_export, val_frames, monkeypatch):
    from edge_ad.runtime import batch_scoring
    scorer = Scorer.load(kinect_export, threads=2)
    frames, seeds = val_frames(5), [7, 8, 9, 10, 11]
    whole = scorer.score_batch(frames, seeds=seeds)
    monkeypatch.setattr(batch_scoring, "MAX_BATCH", 2)
    parts = scorer.score_batch(frames, seeds=seeds)
    assert [r.timings["batch_size"] for r in parts] == [2, 2, 2, 2, 1]
    for a, b in zip(whole, parts):
        assert b.score == pytest.approx(a.score, rel=RTOL)
        np.testing.assert_array_equal(b.z0, a.z0)


def test_several_seeds_random_z_and_explicit_z0(export_tiny, val_frames):
    """n_seed = 3, z0 from make_z0 (no encoder): the (B, S) layout of the batch graph."""
    from edge_ad.runtime.config import make_z0
    scorer = Scorer.load(export_tiny(0, 3), threads=2)
    assert "final_batch" in scorer.manifest["graphs"] and "encoder_batch" not in scorer.manifest["graphs"]
    frames = val_frames(4)
    z0s = [None, make_z0(3, 100, 77), None, None]
    got = scorer.score_batch(frames, seeds=[1, 2, 3, 4], z0s=z0s)
    for i, (rgb, depth) in enumerate(frames):
        assert_same(scorer.score(rgb, depth, seed=i + 1, z0=z0s[i]), got[i])
    bad = scorer.score_batch(frames[:2], z0s=[np.full((3, 100), np.nan, np.float32), None], seeds=[0, 0])
    assert isinstance(bad[0], ValueError) and bad[1].score == pytest.approx(scorer.score(*frames[1], seed=0).score, rel=RTOL)
    with pytest.raises(ValueError, match="2 frames but 1 seeds"):
        scorer.score_batch(frames[:2], seeds=[0])


def test_models_with_search_steps_score_frame_by_frame(export_tiny, val_frames):
    scorer = Scorer.load(export_tiny(1, 1), threads=2)
    assert "final_batch" not in scorer.manifest["graphs"]
    frames = val_frames(2)
    got = scorer.score_batch(frames, seeds=[5, 6])
    for i, (rgb, depth) in enumerate(frames):
        one = scorer.score(rgb, depth, seed=5 + i)
        assert got[i].score == one.score                                   # the same code path
        np.testing.assert_array_equal(got[i].seed_losses, one.seed_losses)


def test_batch_graph_changed_after_load_is_refused(kinect_export, tmp_path, val_frames):
    """The load's batch sessions hold the bytes load verified: a final_batch.onnx changed on disk later
    never reaches them; the sessions of another thread count, built later, read the file again and
    refuse it; so does the next load."""
    d = tmp_path / "m"
    shutil.copytree(kinect_export, d)
    scorer = Scorer.load(d, threads=1)
    flip_last_bytes(d / "final_batch.onnx")
    frames = val_frames(1)
    got = scorer.score_batch(frames, seeds=[0])[0]
    assert got.score == pytest.approx(scorer.score(*frames[0], seed=0).score, rel=RTOL)
    with pytest.raises(ManifestError, match="final_batch.onnx does not match its sha256"):
        scorer.score_batch(frames, threads=2)
    with pytest.raises(ManifestError, match="final_batch.onnx"):
        Scorer.load(d)


def test_score_batch_runs_on_the_threads_asked_for(kinect_export, val_frames, monkeypatch):
    """Review 17 #2: the batch sessions are built by load (on load's threads) and ``threads=N`` runs on N
    intra-op threads on every call, not only on the first (the sessions used to be built on the first
    call and kept whatever a later call asked for); one session set per count, kept; no attribute
    appears on the Scorer after load."""
    from edge_ad.runtime import batch_scoring
    built, ran = [], []
    real_init, real_run = batch_scoring.OrtBatchGraphs.__init__, batch_scoring.OrtBatchGraphs.run

    def init(self, *a, **kw):
        real_init(self, *a, **kw)
        built.append(self.final.get_session_options().intra_op_num_threads)

    def run(self, X, Z0):
        ran.append(self.final.get_session_options().intra_op_num_threads)
        return real_run(self, X, Z0)
    monkeypatch.setattr(batch_scoring.OrtBatchGraphs, "__init__", init)
    monkeypatch.setattr(batch_scoring.OrtBatchGraphs, "run", run)
    scorer = Scorer.load(kinect_export, threads=1)
    assert built == [1]                                                  # allocated at load
    state = dict(vars(scorer))
    frames, seeds = val_frames(2), [3, 4]
    copies = (2 * scorer.config.score_shift_radius + 1) ** 2 * len(frames)     # 9 per frame at the shipped R = 1
    scores = {}
    for threads in (None, 1, 2, 2, 1, 3):
        ran.clear()
        scores[threads] = [r.score for r in scorer.score_batch(frames, seeds=seeds, threads=threads)]
        # one graph run per MAX_BATCH copies (several with the shipped rectangle's shift-min), all on the count asked
        assert len(ran) == int(np.ceil(copies / batch_scoring.MAX_BATCH)), (threads, ran)        # 5 at R = 1
        assert set(ran) == {1 if threads is None else threads}, (threads, ran)
    assert built == [1, 2, 3]                                            # each count built once
    assert vars(scorer).keys() == state.keys() and all(vars(scorer)[k] is v for k, v in state.items())
    for s in scores.values():
        np.testing.assert_allclose(s, scores[None], rtol=RTOL)
    with pytest.raises(ValueError, match="threads"):
        scorer.score_batch(frames, threads=0)


def test_export_parity_covers_the_batch_graphs(tiny_parity_export, monkeypatch):
    """k = 0 exports check score_batch against the float64 PyTorch reference too (the parity report's
    "batch"), and refuse a batch graph that disagrees with it."""
    from edge_ad.export import batch_graphs
    from edge_ad.export.errors import ExportError
    man = tiny_parity_export(0, 2, 2)
    b = man["parity"]["batch"]
    assert b["passed"] and len(b["rel_diff"]) == 2 and b["max_rel_diff"] <= 1e-5
    assert b["graphs"] == ["final_batch"]
    build = batch_graphs.build_final_batch_graph

    def off_by_a_bias(params, bn, arch):             # a generator whose last bias is 0.05 off
        return build({**params, "gen.4.bias": params["gen.4.bias"] + 0.05}, bn, arch)
    monkeypatch.setattr(batch_graphs, "build_final_batch_graph", off_by_a_bias)
    with pytest.raises(ExportError, match="score_batch over 2 frames.*FAILED"):
        tiny_parity_export(0, 2, 2)


@pytest.mark.parametrize("batch_graphs", [True, False])
def test_a_missing_frame_or_depth_fails_only_its_entry(kinect_export, export_tiny, val_frames, batch_graphs):
    """None, (rgb,) without depth and a 3-tuple in a batch are per-frame FrameErrors, as the
    single-frame path reports a missing depth; the good frames are still scored (batch graphs of the
    k = 0 export, and the frame-by-frame fallback of a k = 1 model)."""
    scorer = Scorer.load(kinect_export if batch_graphs else export_tiny(1, 1), threads=1)
    (rgb, depth), (rgb2, depth2) = val_frames(2)
    frames = [(rgb, depth), None, (rgb,), (rgb, depth, depth), (rgb2, depth2)]
    got = scorer.score_batch(frames, seeds=[1, 2, 3, 4, 5])
    assert [type(r).__name__ for r in got] == ["ScoreResult", "FrameError", "FrameError", "FrameError", "ScoreResult"]
    assert "None" in str(got[1]) and "missing depth" in str(got[2]) and "3 items" in str(got[3])
    assert got[0].score == pytest.approx(scorer.score(rgb, depth, seed=1).score, rel=RTOL)
    assert got[4].score == pytest.approx(scorer.score(rgb2, depth2, seed=5).score, rel=RTOL)


def test_an_entry_that_is_not_a_pair_is_named():
    """One image array, a dict or a string as a score_batch entry: before, an image of 48 rows read as "48 items"
    and a dict {"rgb": ..., "depth": ...} as the pair ("rgb", "depth") (then "RGB must be H x W x 3, got shape
    ()"); now what the entry is."""
    from edge_ad.runtime.batch_scoring import frame_pair
    rgb, depth = np.zeros((48, 64, 3), np.uint8), np.zeros((48, 64), np.uint16)
    for entry, msg in ((rgb, r"got one array of shape \(48, 64, 3\) \(an image without its partner\?\)$"),
                       ({"rgb": rgb, "depth": depth}, r"got a dict with keys \['depth', 'rgb'\]$"),
                       ("frame.jpg", r"got a str$")):
        with pytest.raises(FrameError, match=r"^an \(rgb, depth\) pair is needed, " + msg):
            frame_pair(entry)
    got = frame_pair([rgb, depth])
    assert got[0] is rgb and got[1] is depth


def test_batch_sessions_are_kept_for_the_loads_threads_and_the_latest_other():
    """Review 17b #6: a caller varying ``threads`` does not grow one session set per count: the load's
    set and the most recent other one are kept; an older one is dropped (freed once nobody holds it),
    not closed, so a call already holding it still runs; close closes the kept ones."""
    import gc
    import weakref

    from edge_ad.runtime import demo_model_dir
    from edge_ad.runtime.batch_scoring import BatchGraphs
    from edge_ad.runtime.manifest import load_manifest
    d = demo_model_dir()
    graphs = BatchGraphs(d, load_manifest(d, verify=False), 1, ["CPUExecutionProvider"])
    load_set = graphs.get()
    held = graphs.get(2)                           # a caller still running on the 2-thread set
    gone = weakref.ref(graphs.get(3))
    assert graphs.get(2) is not held               # 2 was dropped when 3 came, built anew
    assert sorted(graphs._by_threads) == [1, 2] and graphs.get(1) is load_set
    gc.collect()
    assert gone() is None                          # the dropped 3-thread set's sessions are freed
    assert not held.closed and held.final is not None
    kept = graphs.get(2)
    graphs.close()
    assert load_set.closed and kept.closed and graphs._by_threads == {}
