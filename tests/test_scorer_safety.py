"""A Scorer shared by threads and the ScoreResults it returns (issue 16, items 1-2).

Before the fix, three threads sharing one Scorer got wrong scores for 26-35 of 36 frames (every CPU
variant: the search's input and output buffers are allocated once and were overwritten mid-search),
and a kept result's error_map, z and reconstructions changed on the next call (step and unrolled
searches: views of the runtime's output buffers)."""
from __future__ import annotations

import numpy as np
import pytest

from edge_ad.runtime import Scorer
from edge_ad.runtime.config import make_z0

from conftest import run_in_threads

# the CPU searches that stay (issue 15, runtime/variants.py): step (z-only graph with lr_theta = 0),
# forward (k = 0: the final pass only), fused-adam, host-head
CPU_VARIANTS = [("step", {}, 2), ("step", {"lr_theta": 0.0}, 2), ("forward", {}, 0),
                ("fused-adam", {}, 2), ("host-head", {}, 2)]


def _load(export_tiny, variant, extra, k):
    return Scorer.load(export_tiny(k, 3), variant=variant, threads=2, **extra)


@pytest.mark.parametrize("variant,extra,k", [CPU_VARIANTS[0], CPU_VARIANTS[3], CPU_VARIANTS[4]],
                         ids=["step", "fused-adam", "host-head"])
def test_shared_scorer_threads_get_single_thread_scores(export_tiny, val_frames, variant, extra, k):
    """3 threads share one Scorer, each scoring its own frames twice: every score, seed loss and error
    map equals the single-thread result bit for bit (the lock serialises the search)."""
    scorer = _load(export_tiny, variant, extra, k)
    frames = val_frames(6)
    ref = [scorer.score(rgb, depth, seed=i) for i, (rgb, depth) in enumerate(frames)]
    got = {}

    def work(t):
        for rep in range(2):
            for i in range(t, len(frames), 3):
                got[t, rep, i] = scorer.score(*frames[i], seed=i)
    run_in_threads(work, 3)
    assert len(got) == 2 * len(frames)
    wrong = [(t, rep, i) for (t, rep, i), r in got.items() if r.score != ref[i].score]
    assert not wrong, f"{len(wrong)} of {len(got)} concurrent scores differ from the single-thread ones"
    for (t, rep, i), r in got.items():
        np.testing.assert_array_equal(r.seed_losses, ref[i].seed_losses)
        np.testing.assert_array_equal(r.error_map, ref[i].error_map)
        np.testing.assert_array_equal(r.z, ref[i].z)


@pytest.mark.parametrize("variant,extra,k", CPU_VARIANTS,
                         ids=["step", "step_z", "forward-k0", "fused-adam", "host-head"])
def test_kept_result_owns_its_arrays(export_tiny, val_frames, variant, extra, k):
    """A kept ScoreResult never changes: not on later score() calls, not when the caller reuses the
    z0 array it passed; no array is shared with another result."""
    scorer = _load(export_tiny, variant, extra, k)
    (rgb, depth), (rgb2, depth2) = val_frames(2)
    z0 = make_z0(scorer.n_seed, scorer.z_dim, 1)
    first = scorer.score(rgb, depth, z0=z0, keep_reconstructions=True)
    names = ("seed_losses", "error_map", "z", "reconstructions", "z0")
    kept = {n: getattr(first, n).copy() for n in names}
    z0[...] = make_z0(scorer.n_seed, scorer.z_dim, 2)             # the caller reuses its z0 buffer
    second = scorer.score(rgb2, depth2, z0=z0, keep_reconstructions=True)
    assert second.score != first.score
    for n in names:
        np.testing.assert_array_equal(getattr(first, n), kept[n], err_msg=f"{n} changed after the next score()")
        assert not np.shares_memory(getattr(first, n), getattr(second, n)), n
        assert not np.shares_memory(getattr(first, n), z0), n


def test_the_manifest_handed_out_is_the_callers_copy():
    """Audit 27 #5: ``scorer.manifest`` was the scorer's own validated dict: a caller editing it (annotating,
    logging a copy it thought its own) changed the threshold every later frame was flagged against, the input
    size checked, ..., unchecked (NaN, a string), from any thread. Now it is a copy: edits change nothing."""
    from edge_ad.runtime import demo_model_dir
    from edge_ad.runtime.sources import open_source
    scorer = Scorer.load(demo_model_dir())
    threshold, rate, n, res = scorer.threshold, scorer.threshold_rate, scorer.threshold_n_normal, scorer.resolution
    m = scorer.manifest
    assert m["threshold"]["value"] == threshold and m == scorer.manifest and m is not scorer.manifest
    m["threshold"].update(value=123.0, target_fpr=float("nan"), n_normal="many")
    m["layout"].update(resolution=8, channels=1)
    assert (scorer.threshold, scorer.threshold_rate, scorer.threshold_n_normal, scorer.resolution) == \
        (threshold, rate, n, res)
    assert scorer.manifest["threshold"]["value"] == threshold
    with open_source("synth://?n=1&anomaly_rate=0") as src:
        fr = next(iter(src))
    r = scorer.score(fr.rgb, fr.depth)                            # its input check keeps 4 channels of res x res
    assert r.error_map.shape == (res, res) and r.score < threshold


def test_a_bad_seed_or_thread_count_is_named():
    """Audit 28 #14: seed=1.5 / "3" / -1 ended in numpy's words ("SeedSequence expects int or sequence of ints for
    entropy", "expected non-negative integer") naming no seed, and threads=-2 / 1.5 / 0 loaded and scored with
    some default, while the CLI refuses them. Now each is a ValueError naming the argument, as z0's are."""
    from edge_ad.runtime import Scorer, demo_model_dir
    from edge_ad.runtime.sources import open_source
    f = next(iter(open_source("synth://?n=1")))
    for threads in (-2, 1.5, 0, True):
        with pytest.raises(ValueError, match=rf"threads must be a whole number >= 1 \(or None: all cores\), got "
                                             rf"{threads!r}"):
            Scorer.load(demo_model_dir(), threads=threads)
    with Scorer.load(demo_model_dir(), threads=1) as s:
        for seed in (1.5, "3", -1, True):
            with pytest.raises(ValueError, match=rf"seed must be a whole number >= 0 \(or None: a random one\), got "
                                                 rf"{seed!r}"):
                s.score(f.rgb, f.depth, seed=seed)
        assert s.score(f.rgb, f.depth, seed=np.int64(3)).score == s.score(f.rgb, f.depth, seed=3).score


def test_a_search_setting_that_is_not_a_finite_number_is_named():
    """ifix-found B (session 30): SearchConfig took NaN / inf wherever its check was "x < 0" (NaN < 0 is False) and
    floats for n_seed / k, so the Python API loaded such a scorer: z_init_sigma=nan scored every frame NaN (edge-ad
    run: each a bad frame, the cause unnamed), score_latent_power=nan dropped the latent factor silently (nan > 0 is
    False), latent_floor=inf ended in ZeroDivisionError, n_seed=1.0 in onnxruntime's "incompatible function
    arguments", Scorer.load(lr_theta=nan) loaded. Now a ValueError naming the setting (a manifest's were already
    checked: ManifestError); whole NumPy integers stay accepted, as ints."""
    import json

    from edge_ad.runtime import demo_model_dir
    from edge_ad.runtime.config import SearchConfig
    base = SearchConfig(**json.loads((demo_model_dir() / "manifest.json").read_text())["search"])
    for key in ("lr_z", "lr_theta", "z_init_sigma", "score_fg_power", "score_latent_power", "latent_floor", "eps"):
        for v in (float("nan"), float("inf"), "0.1"):
            with pytest.raises(ValueError, match=rf"^the search settings must be finite numbers, got {key}="):
                base.replace(**{key: v})
    for key, v in (("n_seed", 1.0), ("k", 2.5), ("k", True), ("n_seed", "3")):
        with pytest.raises(ValueError, match=rf"^{key} must be a whole number, got {v!r}$"):
            base.replace(**{key: v})
    assert base.replace(k=np.int64(0)).to_dict() == base.to_dict() and type(base.replace(k=np.int64(0)).k) is int
    with pytest.raises(ValueError, match=r"got lr_theta=nan$"):
        Scorer.load(demo_model_dir(), lr_theta=float("nan"))
    with pytest.raises(ValueError, match=r"got z_init_sigma=nan$"):
        Scorer.load(demo_model_dir(), config=base.replace(z_init_sigma=float("nan")))


def test_the_scorers_other_methods_check_their_arguments_too():
    """ifix-found C (session 30): encode(x) took any x (a (3, 64, 64) array: onnxruntime's "The input size of numpy
    arrays does not match the size of the OrtValue"; NaN: NaN latents); score_batch(threads=1.5) ran (int(1.5))
    while load refuses 1.5; score_batch(iter(frames)) ended in "object of type 'list_iterator' has no len()";
    load(providers="CPUExecutionProvider") said providers ['C', 'P', 'U', ...] are not available. Each is now a
    ValueError naming the argument, as score_input's and load's own; an iterator of frames is scored as its list."""
    from edge_ad.runtime import demo_model_dir
    from edge_ad.runtime.sources import open_source
    with pytest.raises(ValueError, match=r"^providers must be a list of onnxruntime execution providers .* got "
                                         r"'CPUExecutionProvider'$"):
        Scorer.load(demo_model_dir(), providers="CPUExecutionProvider")
    frames = [(f.rgb, f.depth) for f in open_source("synth://?n=3&seed=1")]
    with Scorer.load(demo_model_dir(), threads=1) as s:
        R = s.resolution
        with pytest.raises(ValueError, match=rf"^x must have shape \(4, {R}, {R}\), got \(3, {R}, {R}\)$"):
            s.encode(np.zeros((3, R, R), np.float32))
        with pytest.raises(ValueError, match=r"^x contains NaN or inf$"):
            s.encode(np.full((4, R, R), np.nan, np.float32))
        for threads in (1.5, 0, "2", True):
            with pytest.raises(ValueError, match=rf"^threads must be a whole number >= 1 \(or None: load's\), got "
                                                 rf"{threads!r}$"):
                s.score_batch(frames, threads=threads)
        want = [r.score for r in s.score_batch(frames, seeds=[1, 2, 3])]
        assert [r.score for r in s.score_batch(iter(frames), seeds=iter([1, 2, 3]))] == want
