"""The latent-memory factor of a scoring configuration (issue 4): score *= max(d(E(x), bank),
latent_floor) ** score_latent_power, bank = E(x) of the normal training frames, through the PyTorch
reference, export (latent_bank.npy, sha256, parity) and the torch-free runtime. Tiny generator + tiny
untrained encoder, real kinect frames."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from edge_ad.runtime.config import SearchConfig
from edge_ad.runtime.latent_memory import LatentMemory
from edge_ad.runtime.score_scale import latent_factor, score_scale

CFG = SearchConfig(name="izi-latent-test", n_seed=1, k=0, lr_theta=0.0, score_fg_power=0.5,
                   z_init="encoder", score_latent_power=1.0, latent_metric="cosine")
QUIET = {"log": lambda *a: None}


def test_latent_distance_by_hand():
    bank = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]], dtype=np.float32)
    e = np.array([3.0, 3.0, 0.0])
    # cosine: unit vectors; e/|e| = (1, 1, 0)/sqrt2 -> squared distance to (1,0,0) = 2 - 2/sqrt2
    assert LatentMemory(bank, "cosine").distance(e) == pytest.approx(2 - 2 / np.sqrt(2), rel=1e-12)
    # l2: mean squared difference to the nearest row: (3-0)^2 + (3-2)^2 = 10 -> 10 / 3
    assert LatentMemory(bank, "l2").distance(e) == pytest.approx(10 / 3, rel=1e-12)
    assert LatentMemory(bank, "cosine").distance(bank[1] * 5) == pytest.approx(0.0, abs=1e-12)  # scale-free
    with pytest.raises(ValueError, match=r"latent bank must be \(N, z_dim=2\)"):
        LatentMemory(bank).distance(np.ones(2))
    with pytest.raises(ValueError, match="NaN"):
        LatentMemory(bank).distance(np.array([np.nan, 0, 0]))
    with pytest.raises(ValueError, match="unknown latent metric"):
        LatentMemory(bank, "manhattan").distance(e)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_batch_distances_equal_one_frame_distances(metric):
    """LatentMemory.distances (one GEMM over a batch, score_batch's path) returns exactly distance()
    per row, also where the GEMM's expanded form cannot tell bank rows apart: rows 1e-9 apart, a
    latent on a bank row (distance 0), a zero latent, huge latents; NaN refused as distance() does."""
    rng = np.random.default_rng(3)
    bank = rng.standard_normal((600, 16))
    bank[1] = bank[0] + 1e-9 * rng.standard_normal(16)          # near-duplicate rows
    memory = LatentMemory(bank, metric)                               # float64: the 1e-9 gaps survive
    state = dict(vars(memory))
    E = np.concatenate([rng.standard_normal((12, 16)), bank[:2], bank[:4] + 1e-10 * rng.standard_normal((4, 16)),
                        bank[5:7], np.zeros((1, 16)), 1e5 * rng.standard_normal((2, 16)),
                        rng.standard_normal((4, 16)).astype(np.float32)])
    got = memory.distances(E)
    assert got.shape == (len(E),) and got.dtype == np.float64
    np.testing.assert_array_equal(got, [memory.distance(e) for e in E])
    # a memory shared by scoring threads is never modified by scoring (review 17 #11: |b|^2 was cached lazily)
    assert vars(memory).keys() == state.keys() and all(vars(memory)[k] is v for k, v in state.items())
    with pytest.raises(ValueError, match="NaN"):
        memory.distances(np.where(np.arange(16) == 3, np.nan, E[:2]))
    with pytest.raises(ValueError, match=r"latent bank must be \(N, z_dim\)"):
        memory.distances(E[:, :8])


def test_config_validation_and_factor():
    assert SearchConfig().score_latent_power == 0 and not SearchConfig().uses_latent_bank
    assert latent_factor(None, SearchConfig()) == 1.0                      # the reference: no factor
    with pytest.raises(ValueError, match="needs z_init='encoder'"):
        SearchConfig(score_latent_power=1.0)
    with pytest.raises(ValueError, match="latent_metric"):
        CFG.replace(latent_metric="dot")
    with pytest.raises(ValueError, match="no latent distance was given"):
        latent_factor(None, CFG)
    assert latent_factor(0.25, CFG.replace(score_latent_power=0.5)) == pytest.approx(0.5)
    assert latent_factor(0.0, CFG) == CFG.latent_floor                    # an exact match is floored
    x = -np.ones((4, 8, 8), np.float32)
    x[3, :4] = 0.5                                                         # half the frame foreground
    assert score_scale(x, CFG, 0.2) == pytest.approx(0.5 ** 0.5 / 0.2)


torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def parts(kinect_root, val_frame, tiny_generator):
    """Tiny untrained encoder, a bank of E(x) of 20 real rectangle train frames, 4 real val frames."""
    from edge_ad.models.data import load_kinect, to_tensor
    from edge_ad.models.encoder import Encoder, EncoderConfig, latent_bank
    from edge_ad.runtime.preprocess import PreprocessSpec
    torch.manual_seed(3)
    E = Encoder(EncoderConfig(z_dim=100, width=4, channels=4)).eval()
    train = to_tensor(load_kinect(kinect_root, "rectangle", "train", PreprocessSpec())[1][:20]).numpy()
    frames = [dict(val_frame("rectangle"), label="normal"), dict(val_frame("sphere"), label="anomalous")]
    return E, latent_bank(E, train), train, frames


def test_reference_score_batch_applies_the_factor(tiny_generator, parts):
    from edge_ad.models.search import score_batch, search
    E, bank, train, frames = parts
    from edge_ad.runtime.preprocess import preprocess
    X = np.stack([preprocess(f["rgb"], f["depth"]) for f in frames] + [train[0]])
    got = score_batch(tiny_generator, X, CFG, encoder=E, latent_bank=bank, batch_frames=2)
    with torch.no_grad():
        e = E(torch.as_tensor(X)).flatten(1).double().numpy()              # (3, z_dim)
    u = e / np.linalg.norm(e, axis=1, keepdims=True)
    b = bank.astype(np.float64) / np.linalg.norm(bank, axis=1, keepdims=True)
    d = ((u[:, None] - b[None]) ** 2).sum(-1).min(1)                       # independent cosine NN
    assert d[2] < 1e-10 and d[0] > 1e-4                                    # a train frame is in its bank
    for i in range(len(X)):
        plain = search(tiny_generator, X[i], CFG.replace(score_latent_power=0.0), z0=e[i:i + 1].astype(np.float32))
        assert got[i] == pytest.approx(plain.score * max(d[i], CFG.latent_floor), rel=1e-5)
    per_frame = score_batch(tiny_generator, X, CFG, encoder=E, latent_bank=bank, batch_frames=0)
    np.testing.assert_allclose(per_frame, got, rtol=1e-5)
    with pytest.raises(ValueError, match="latent bank"):
        score_batch(tiny_generator, X, CFG, encoder=E)


def test_held_out_bank_scores_leave_each_frame_out(tiny_generator, parts):
    """models.search.held_out_bank_scores (the release threshold's train sample): frame i of the bank's
    own frames scores as an unseen frame against the bank without its rows (with augmented copies: all A
    of them), an independent nearest-neighbour check; in its own bank it would score at the floor."""
    from edge_ad.models.encoder import encoder_latents
    from edge_ad.models.search import held_out_bank_scores, score_batch, search
    E, bank, train, _ = parts
    X = train[:6]
    got = held_out_bank_scores(tiny_generator, X, CFG, E, bank[:6], 1)
    e = encoder_latents(E, X).astype(np.float64)
    u = e / np.linalg.norm(e, axis=1, keepdims=True)
    for i in range(len(X)):
        others = np.delete(u, i, axis=0)
        d = ((others - u[i]) ** 2).sum(1).min()                              # nearest OTHER frame, cosine
        plain = search(tiny_generator, X[i], CFG.replace(score_latent_power=0.0), z0=e[i:i + 1].astype(np.float32))
        assert got[i] == pytest.approx(plain.score * max(d, CFG.latent_floor), rel=1e-5)
    in_bank = score_batch(tiny_generator, X, CFG, encoder=E, latent_bank=bank[:6])
    assert np.all(got > 10 * in_bank)                                         # in-bank: distance 0 -> floor
    # A = 2 rows per frame (the frame + a mirrored copy): both rows of frame i are held out
    mirrored = encoder_latents(E, X[:, :, :, ::-1].copy())
    bank2 = np.stack([e.astype(np.float32), mirrored], 1).reshape(-1, e.shape[1])   # frame-major (12, z_dim)
    got2 = held_out_bank_scores(tiny_generator, X, CFG, E, bank2, 2)
    for i in range(len(X)):
        keep = np.delete(bank2, [2 * i, 2 * i + 1], axis=0)
        assert got2[i] == pytest.approx(score_batch(tiny_generator, X[i:i + 1], CFG, encoder=E, latent_bank=keep,
                                                    bank_rows_per_frame=2)[0], rel=1e-6)
    with pytest.raises(ValueError, match="rows for each"):
        held_out_bank_scores(tiny_generator, X, CFG, E, bank2[:11], 2)
    with pytest.raises(ValueError, match="not E of these frames"):
        held_out_bank_scores(tiny_generator, X[::-1].copy(), CFG, E, bank[:6], 1)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_generator, parts):
    """A checkpoint in make_release.py's layout (scoring with encoder and latent_bank), exported with its
    own configuration and parity on two real frames."""
    from conftest import save_bank_checkpoint
    from edge_ad.export.exporter import export_model
    E, bank, _, frames = parts
    d = tmp_path_factory.mktemp("latent")
    ck = d / "g.pt"
    save_bank_checkpoint(ck, tiny_generator, E, bank, CFG)
    out = d / "model"
    return ck, out, export_model(ck, out, parity_frames=frames, **QUIET)


def test_export_and_runtime_carry_the_latent_factor(exported, parts, tiny_generator):
    from edge_ad.models.search import search
    from edge_ad.runtime.preprocess import preprocess
    from edge_ad.runtime.scorer import Scorer
    E, bank, _, frames = parts
    _, out, man = exported
    assert man["search"] == CFG.to_dict()
    lb = man["latent_bank"]
    assert lb["file"] == "latent_bank.npy" and lb["file"] in man["files"] and lb["shape"] == [20, 100]
    np.testing.assert_array_equal(np.load(out / "latent_bank.npy"), bank)
    assert man["parity"]["passed"] is True
    for r in man["parity"]["frames"]:
        assert r["latent_distance"]["rel_diff"] <= 1e-4 and r["rel_diff"] <= 1e-4, r
    s = Scorer.load(out, threads=1)
    for fr in frames:
        x = preprocess(fr["rgb"], fr["depth"])
        got = s.score(fr["rgb"], fr["depth"])
        with torch.no_grad():
            e = E(torch.as_tensor(x[None], dtype=torch.float64).float()).flatten().double().numpy()
        d = LatentMemory(bank, "cosine").distance(e)
        ref = search(tiny_generator, x, CFG, z0=e[None].astype(np.float32), dtype=torch.float64, latent_distance=d)
        assert got.latent_distance == pytest.approx(d, rel=1e-4)
        assert got.score == pytest.approx(ref.score, rel=1e-4)
        assert got.score == pytest.approx(got.seed_losses.mean() / score_scale(x, CFG, got.latent_distance), rel=1e-12)


def test_tampered_missing_or_absent_bank_refused(exported, tmp_path, tiny_generator, parts):
    from edge_ad.export.errors import ExportError
    from edge_ad.export.exporter import export_model
    from edge_ad.runtime.manifest import ManifestError
    from edge_ad.runtime.scorer import Scorer
    E = parts[0]
    _, out, _ = exported
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    b = np.load(bad / "latent_bank.npy")
    b[0, 0] += 1.0
    np.save(bad / "latent_bank.npy", b)
    with pytest.raises(ManifestError, match=r"latent_bank\.npy has been modified"):
        Scorer.load(bad)
    (bad / "latent_bank.npy").unlink()
    with pytest.raises(ManifestError, match=r"latent_bank\.npy listed in the manifest is missing"):
        Scorer.load(bad)
    with pytest.raises(ExportError, match="no latent bank"):
        export_model(tiny_generator, tmp_path / "nobank", search=CFG, encoder=E, parity=False, **QUIET)
    # an export without a bank, asked to score with a configuration that needs one
    plain = tmp_path / "plain"
    export_model(tiny_generator, plain, search=CFG.replace(score_latent_power=0.0), encoder=E, parity=False, **QUIET)
    with pytest.raises(ManifestError, match="no latent bank"):
        Scorer.load(plain, config=CFG)


@pytest.fixture(scope="module")
def exported_fast(tmp_path_factory, tiny_generator, parts):
    """CFG with its encoder and bank exported without the parity run (the runtime's own arithmetic is tested)."""
    from edge_ad.export.exporter import export_model
    E, bank, _, _ = parts
    out = tmp_path_factory.mktemp("latent_fast") / "model"
    export_model(tiny_generator, out, search=CFG, encoder=E, latent_bank=bank, parity=False, **QUIET)
    return out


def test_latent_distance_is_of_the_encoder_latent_not_the_search_start(exported_fast, parts):
    """d is measured from E(x), whatever the search starts from: with z_init_sigma > 0 (z0 = E(x) + noise)
    and with an explicit z0, the latent distance and the score's factor are those of E(x). The score's
    divisor is recomputed here from its definition: max(fg, fg_floor) ** 0.5 / max(d, latent_floor), fg =
    the share of pixels with a depth reading (these 64x64 frames are not resized)."""
    from edge_ad.runtime.config import make_z0
    from edge_ad.runtime.preprocess import preprocess
    from edge_ad.runtime.scorer import Scorer
    E, bank, _, frames = parts
    sigma = 0.5
    noisy = Scorer.load(exported_fast, config=CFG.replace(z_init_sigma=sigma), threads=1)
    plain = Scorer.load(exported_fast, threads=1)
    for i, fr in enumerate(frames):
        x = preprocess(fr["rgb"], fr["depth"])
        e = plain.encode(x)                                                  # E(x) from encoder.onnx
        want = LatentMemory(bank, "cosine").distance(e)
        scale = max(float((np.asarray(fr["depth"]) > 0).mean()), 0.01) ** 0.5 / max(want, 1e-6)
        base = plain.score(fr["rgb"], fr["depth"])
        assert base.latent_distance == pytest.approx(want, rel=1e-12)
        r = noisy.score(fr["rgb"], fr["depth"], seed=10 + i)
        np.testing.assert_array_equal(r.z0, e[None] + np.float32(sigma) * make_z0(1, 100, 10 + i))
        assert r.latent_distance == pytest.approx(want, rel=1e-12)          # not d(z0[0]): the search started elsewhere
        z0 = np.random.default_rng(i).standard_normal((1, 100)).astype(np.float32)
        given = plain.score(fr["rgb"], fr["depth"], z0=z0)
        assert given.latent_distance == pytest.approx(want, rel=1e-12)
        for res in (base, r, given):
            assert res.score == pytest.approx(res.seed_losses.mean() / scale, rel=1e-12)

