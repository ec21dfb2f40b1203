"""``Scorer.close`` and ``with Scorer.load(...) as scorer`` (review 17 #6): what load allocated is
released when asked, not when garbage collection reaches it: the CPU variants' seed threads, the
encoder's, the onnxruntime search's and the batch graphs' sessions (the TensorRT search's CUDA buffers: test_tensorrt_scorer.py).
A second close does nothing; a closed Scorer refuses to score."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from edge_ad.runtime import Scorer, demo_model_dir


def _seed_threads() -> set:
    return {t for t in threading.enumerate() if t.name.startswith("edge-ad-seed")}


@pytest.mark.parametrize("variant", ["host-head", "fused-adam"])
def test_close_stops_the_seed_threads(export_tiny, variant):
    """k = 2, n_seed = 3 on 2 threads: the seed pool's threads (one or two: ThreadPoolExecutor starts a
    second only when the first is still busy, which depends on the machine's load), gone after close."""
    before = _seed_threads()
    s = Scorer.load(export_tiny(2, 3), threads=2, variant=variant)
    x = np.tanh(np.random.default_rng(0).standard_normal((4, 64, 64))).astype(np.float32)
    s.score_input(x, seed=0)
    mine = _seed_threads() - before
    assert s.mode == variant and 1 <= len(mine) <= 2
    s.close()
    assert not any(t.is_alive() for t in mine)
    s.close()                                                     # a no-op
    for call in (lambda: s.score_input(x, seed=0), lambda: s.score_batch([(np.zeros((8, 8, 3), np.uint8),
                                                                            np.zeros((8, 8), np.uint8))])):
        with pytest.raises(RuntimeError, match="is closed"):
            call()


def test_with_block_closes_the_encoder_and_batch_graphs(monkeypatch, val_frames):
    """The demo model (k = 0, izi encoder, batch graphs): leaving the with block releases the encoder's
    session and every batch-graph session set (the load's and one built for another thread count)."""
    from edge_ad.runtime import batch_scoring
    from edge_ad.runtime.backends import onnxruntime_backend
    made = {"batch": [], "encoder": []}
    for cls, key in ((batch_scoring.OrtBatchGraphs, "batch"), (onnxruntime_backend.OrtEncoder, "encoder")):
        def init(self, *a, _real=cls.__init__, _key=key, **kw):
            _real(self, *a, **kw)
            made[_key].append(self)
        monkeypatch.setattr(cls, "__init__", init)
    frames = val_frames(2)
    with Scorer.load(demo_model_dir(), threads=1) as s:
        search = s._search                                      # OrtSearch, mode forward
        assert s.mode == "forward" and set(search.sessions) == {"final"} and search.final_binding is not None
        assert s.score_batch(frames, seeds=[0, 1], threads=2)[1].score == pytest.approx(
            s.score(*frames[1], seed=1).score, rel=1e-5)
        assert len(made["batch"]) == 2 and len(made["encoder"]) == 1
        assert all(g.final is not None for g in made["batch"]) and made["encoder"][0].session is not None
    assert all(g.final is None and g.encoder is None for g in made["batch"])
    assert made["encoder"][0].session is None
    assert search.sessions == {} and search.final_binding is None and search.final_out is None   # review 17b #2
    with pytest.raises(RuntimeError, match="is closed"):
        s.score(*frames[0], seed=0)
    with pytest.raises(RuntimeError, match="is closed"):
        s.encode(np.zeros((4, s.resolution, s.resolution), np.float32))
    s.close()


def test_close_releases_the_onnxruntime_searchs_sessions(export_tiny):
    """The step variant (OrtSearch, k = 2; forward: the with-block test above): after close the search holds no session, IO
    binding or buffer; a second close does nothing."""
    s = Scorer.load(export_tiny(2, 3), threads=1, variant="step")
    search = s._search
    assert search.sessions and search.final_binding is not None
    s.close()
    assert search.sessions == {} and search.bindings == [] and search.final_binding is None
    assert search.x is None and search.z_buf is None and search._keep == []
    search.close()                                                # idempotent


def test_calibrate_closes_its_scorer_even_when_it_refuses(tmp_path, monkeypatch):
    from edge_ad.runtime.calibrate import CalibrationError, calibrate_model
    closed = []
    close = Scorer.close
    monkeypatch.setattr(Scorer, "close", lambda self: (closed.append(self), close(self))[1])
    with pytest.raises(CalibrationError, match="usable frame"):
        calibrate_model(demo_model_dir(), [], tmp_path / "out")
    assert len(closed) == 1 and closed[0]._closed


def test_close_with_a_timeout_does_not_wait_for_an_abandoned_frame():
    """Review 17b #9: a frame still running (here: a thread holding the scorer's lock, as a frame the
    watchdog abandoned) makes close(timeout=0.2) return False after ~0.2 s instead of waiting forever;
    the scorer refuses new calls at once, and a later close() releases its sessions."""
    import time
    s = Scorer.load(demo_model_dir(), threads=1)
    holding, done = threading.Event(), threading.Event()

    def abandoned_frame():
        with s._lock:
            holding.set()
            done.wait(10)
    t = threading.Thread(target=abandoned_frame, daemon=True)
    t.start()
    holding.wait(5)
    t0 = time.perf_counter()
    assert s.close(timeout=0.2) is False
    assert 0.15 < time.perf_counter() - t0 < 2
    assert s._search.sessions                       # still the running frame's
    done.set()
    t.join(5)
    with pytest.raises(RuntimeError, match="is closed"):
        s.score_input(np.zeros((4, s.resolution, s.resolution), np.float32), seed=0)
    assert s.close() is True and s._search.sessions == {}
    assert s.close(timeout=0) is True               # idempotent
