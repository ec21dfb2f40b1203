"""CI floor for the shipped kinect-rgbd models (issue 4): each model's image AUROC (its class normal,
the other two anomalous) on a fixed val subset stays above (the AUROC measured at release - 0.05).
The subset and the measured value are recorded in the checkpoint's scoring["val"]["ci_subset"]. A model with the
silhouette lever (the shipped sphere.pt since session 34) is scored as it scores: each raw frame's versions."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edge_ad.models.checkpoint import load_generator, read_checkpoint
from edge_ad.models.data import KINECT_CLASSES, load_kinect, to_tensor
from edge_ad.models.evaluate import evaluate_scores
from edge_ad.models.search import (checkpoint_bank_augment, checkpoint_bank_rows_per_frame, checkpoint_encoder,
                                   checkpoint_latent_bank, checkpoint_search_config, score_batch)

MODELS = Path(__file__).resolve().parents[1] / "models" / "kinect-rgbd"


@pytest.mark.slow   # the torch path on the val split: cylinder 10-17 min at load (still run in CI)
@pytest.mark.parametrize("cls", KINECT_CLASSES)
def test_shipped_model_val_auroc_floor(cls, kinect_root):
    path = MODELS / f"{cls}.pt"
    assert path.is_file(), f"shipped model missing: {path}"
    ck = read_checkpoint(path)
    sub = ck["scoring"]["val"]["ci_subset"]
    cfg = checkpoint_search_config(path)
    assert cfg is not None and cfg.name == ck["scoring"]["name"]
    G, E, bank = load_generator(path), checkpoint_encoder(path), checkpoint_latent_bank(path)
    if cfg.uses_latent_bank:   # the bank is E(x) of the class's 300 train frames (and of their augmented
        from edge_ad.models.encoder import encoder_latents                # copies), never of val frames
        augment = (ck["scoring"].get("latent_bank_info") or {}).get("augment") or []
        train = to_tensor(load_kinect(kinect_root, cls, "train", G.preprocess)[1], G.preprocess).numpy()
        assert checkpoint_bank_rows_per_frame(path) == 1 + len(augment) and checkpoint_bank_augment(path) == augment
        np.testing.assert_allclose(bank[::1 + len(augment)], encoder_latents(E, train), rtol=1e-4, atol=1e-5)
        if augment:   # the augmented rows, rebuilt as edge-ad calibrate rebuilds a scene's (runtime/latent_bank.py);
            from edge_ad.runtime.latent_bank import bank_inputs       # the first 12 train frames' (fast)
            from edge_ad.runtime.sources.folder import read_pair
            ids = json.loads((kinect_root / "splits.json").read_text())[cls]["train"][:12]
            X = np.concatenate([bank_inputs(*read_pair(kinect_root / cls, str(i)), G.preprocess, augment, index=n)
                                for n, i in enumerate(ids)])
            np.testing.assert_allclose(bank[:len(X)], encoder_latents(E, X), rtol=1e-4, atol=1e-5)
    pixels = None
    if cfg.uses_pixel_memory:  # the pixel memory holds exactly the class's 300 train frames (no val frame)
        from edge_ad.models.checkpoint import CheckpointScoring
        stored = ck["scoring"]["pixel_memory"].numpy()
        assert np.array_equal(stored, load_kinect(kinect_root, cls, "train", G.preprocess)[1])
        pixels = CheckpointScoring.read(path).pixel_memory(G.preprocess)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    n = sub["max_per_class"]
    scores = {}
    if cfg.uses_silhouette_versions:   # the shipped sphere (session 34): scored as it scores, the lever's versions of
        from conftest import checkpoint_raw_scorer                       # each raw frame (as edge-ad eval does)
        from edge_ad.runtime.sources.folder import read_pair
        _, score_raw = checkpoint_raw_scorer(path, seed=sub["seed"], batch_frames=n)
    for c in KINECT_CLASSES:
        ids, u8 = load_kinect(kinect_root, c, "val", G.preprocess)
        X = to_tensor(u8[:n], G.preprocess).numpy()
        if cfg.uses_silhouette_versions:
            raw = [read_pair(kinect_root / c, str(i)) for i in ids[:n]]
            scores[c] = score_raw(X, raw)[0]
            continue
        scores[c] = score_batch(G, X, cfg, seed=sub["seed"], batch_frames=n, encoder=E,
                               latent_bank=bank, bank_rows_per_frame=checkpoint_bank_augment(path), pixel_memory=pixels)
    normal = scores.pop(cls)
    auroc = evaluate_scores(normal, scores)["overall"]["auroc"]
    floor = sub["auroc_overall"] - 0.05   # the lever model (sphere): ci_subset's AUROC is its release's without the
    # lever (0.994); with it, scoring["val"]["silhouette"] read 0.9931: the stricter floor is kept
    assert auroc >= floor, f"{cls}: val-subset AUROC {auroc:.3f} fell below the floor {floor:.3f}"
    if n >= 100:   # the whole val split: issue 12's clean targets at the shipped threshold, as measured at release
        thr = ck["scoring"]["threshold"]["value"]
        false_alarms, flagged = float((normal > thr).mean()), float((np.concatenate(list(scores.values())) > thr).mean())
        assert auroc >= 0.97, f"{cls}: val AUROC {auroc:.3f} < 0.97"
        assert false_alarms <= 0.10 and flagged >= 0.90, \
            f"{cls}: at the shipped threshold {thr:.4g}: false alarms {false_alarms:.0%} (<= 10 %), flagged {flagged:.1%} (>= 90 %)"


def test_shipped_models_are_small_and_weights_only():
    for c in KINECT_CLASSES:
        ck = read_checkpoint(MODELS / f"{c}.pt")
        assert ck["discriminator"] is None and ck["optimizers"] is None
        assert ck["config"]["features_g"] <= 32
        assert ck["train"]["data"]["cls"] == c and ck["train"]["data"]["split"] == "train"
        for key in ("objective", "epochs", "seed", "hflip", "max_shift"):
            assert key in ck["train"]["config"]
        assert np.isfinite(ck["scoring"]["val"]["auroc"]["overall"])
        thr = ck["scoring"]["threshold"]         # calibrated out of the box, for the shipped configuration
        assert np.isfinite(thr["value"]) and thr["value"] > 0 and 0 < thr["target_fpr"] <= 0.10
        assert thr["search"] == ck["scoring"]["search"]
        if thr["n_normal"] != 100:   # val + train leave-one-out (make_release.py --threshold-normals val+train-loo)
            assert thr["n_normal"] == 400 and set(thr["samples"]) == {"val", "train_leave_one_out"}
            for sample in thr["samples"].values():   # both samples alike at the threshold: none far off the rate
                assert abs(sample["false_alarm_rate"] - thr["target_fpr"]) <= 0.03, (c, thr["samples"])


def test_ci_runs_the_slow_tests(request):
    """The slow marker only documents (pyproject: "still run in CI"): neither pytest's addopts nor CI's command
    (.ci/run -> scripts/test.sh -> pytest) deselects by marker, so the slow tests above are run, not skipped.
    pytest's own config reads pyproject (no tomllib: Python 3.10 on the Jetson image has none)."""
    import re
    root = MODELS.parents[1]
    assert "slow" in " ".join(request.config.getini("markers"))
    assert "-m" not in request.config.getini("addopts")              # (a local `pytest -m "not slow"` may skip them)
    ci = (root / ".ci" / "run").read_text()
    assert "exec bash scripts/test.sh\n" in ci
    pytest_line = [line for line in (root / "scripts" / "test.sh").read_text().splitlines() if "pytest" in line
                   and not line.lstrip().startswith("#")]
    assert len(pytest_line) == 1 and "-m" not in pytest_line[0].split()[4:] and "slow" not in pytest_line[0], pytest_line
    conftest = (root / "tests" / "conftest.py").read_text()      # no hook deselects or skips them either
    assert not re.search(r"""['"]slow['"]|markexpr|\.deselect""", conftest)
