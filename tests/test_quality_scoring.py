"""Issue 4 scoring variants: foreground-normalised score, batched z-only search, izi encoder z0,
baselines. Small generators and real kinect frames; fast."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_ad.models.baselines import area_scores, foreground_fractions, nearest_neighbour_scores
from edge_ad.models.data import load_kinect, to_tensor
from edge_ad.models.encoder import Encoder, EncoderConfig, encoder_from_dict, encoder_to_dict, encoder_z0, train_encoder
from edge_ad.models.search import score_batch, search, search_eager, search_zonly_batch
from edge_ad.runtime.config import SearchConfig, frame_seed, make_z0
from edge_ad.runtime.score_scale import foreground_fraction, score_scale


@pytest.fixture(scope="module")
def frames(kinect_root):
    return {c: to_tensor(load_kinect(kinect_root, c, "val")[1][:4]).numpy() for c in ("rectangle", "sphere")}


def test_reference_defaults_unchanged():
    cfg = SearchConfig()
    assert (cfg.score_fg_power, cfg.z_init, cfg.z_init_sigma) == (0.0, "random", 0.0)
    assert SearchConfig.from_dict(cfg.to_dict()) == cfg
    for bad in ({"score_fg_power": -1}, {"fg_floor": 0}, {"z_init": "pca"}, {"z_init_sigma": -0.1}):
        with pytest.raises(ValueError):
            SearchConfig(**bad)


def test_fg_normalised_score_divides_the_same_search(tiny_generator, frames):
    x = frames["rectangle"][0]
    fg = foreground_fraction(x)
    assert 0.01 < fg < 0.9 and fg == pytest.approx(float((x[3] > -1 + 1e-3).mean()))
    ref = search(tiny_generator, x, SearchConfig(k=3), seed=1)
    for p in (0.5, 1.0):
        cfg = SearchConfig(k=3, score_fg_power=p)
        r, e = search(tiny_generator, x, cfg, seed=1), search_eager(tiny_generator, x, cfg, seed=1)
        np.testing.assert_allclose(r.seed_losses, ref.seed_losses, rtol=1e-6)   # search itself unchanged
        assert r.score == pytest.approx(ref.score / fg ** p, rel=1e-6)
        assert e.score == pytest.approx(r.score, rel=1e-4) and r.score_scale == pytest.approx(score_scale(x, cfg))
    empty = np.full_like(x, -1.0)
    assert score_scale(empty, SearchConfig(score_fg_power=1.0)) == pytest.approx(0.01)   # the floor
    assert ref.score_scale == 1.0


def test_batched_zonly_equals_frame_by_frame(tiny_generator, frames):
    X = np.concatenate([frames["rectangle"], frames["sphere"]])
    cfg = SearchConfig(lr_theta=0.0, k=4, score_fg_power=1.0)
    a = score_batch(tiny_generator, X, cfg, seed=3)
    b = score_batch(tiny_generator, X, cfg, seed=3, batch_frames=5)
    np.testing.assert_allclose(b, a, rtol=1e-4)
    with pytest.raises(ValueError, match="z-only"):
        search_zonly_batch(tiny_generator, X, SearchConfig(k=1), np.zeros((len(X), 3, 100), np.float32))


def test_encoder_z0_roundtrip_and_training_reduces_izi_loss(tiny_generator, frames, kinect_root):
    u8 = load_kinect(kinect_root, "rectangle", "train")[1][:64]
    X = to_tensor(u8).numpy()

    def izi(E):
        with torch.no_grad():
            return float(((tiny_generator(E(torch.as_tensor(X))) - torch.as_tensor(X)) ** 2).mean())

    torch.manual_seed(0)
    E0 = Encoder(EncoderConfig(z_dim=100, width=4))
    E, info = train_encoder(tiny_generator, u8, epochs=3, width=4, batch_size=32, log=None)
    assert izi(E) < izi(E0) and len(info["loss_history"]) == 3
    E2 = encoder_from_dict(encoder_to_dict(E))
    cfg = SearchConfig(lr_theta=0.0, n_seed=2, k=0, z_init="encoder")
    z0 = encoder_z0(E, X[:3], cfg)
    assert z0.shape == (3, 2, 100) and np.array_equal(z0, encoder_z0(E2, X[:3], cfg))
    noisy = encoder_z0(E, X[:3], cfg.replace(z_init_sigma=0.5), seeds=[frame_seed(0, i) for i in range(3)])
    np.testing.assert_allclose(noisy - z0, 0.5 * np.stack([make_z0(2, 100, frame_seed(0, i)) for i in range(3)]),
                               atol=1e-5)
    # k = 0: the score is the MSE of G(E(x)) itself
    s = score_batch(tiny_generator, X[:3], cfg, encoder=E)
    with torch.no_grad():
        direct = ((tiny_generator(E(torch.as_tensor(X[:3]))) - torch.as_tensor(X[:3])) ** 2).flatten(1).mean(1)
    np.testing.assert_allclose(s, direct.numpy(), rtol=1e-5)
    with pytest.raises(ValueError, match="no encoder"):
        score_batch(tiny_generator, X[:3], cfg)
    with pytest.raises(ValueError, match="invalid encoder"):
        encoder_from_dict({"config": {"z_dim": 100, "width": 8}, "state_dict": encoder_to_dict(E)["state_dict"]})


def test_baselines(frames):
    T = frames["rectangle"]
    nn = nearest_neighbour_scores(T, np.concatenate([T, frames["sphere"]]))
    assert np.allclose(nn[:4], 0, atol=1e-9) and (nn[4:] > 1e-3).all()
    fg = foreground_fractions(frames["sphere"])
    np.testing.assert_allclose(nearest_neighbour_scores(T, frames["sphere"], fg_power=1.0),
                               nn[4:] / np.maximum(fg, 0.01))
    a = area_scores(T, T)
    assert a.shape == (4,) and (a >= 0).all()
    with pytest.raises(ValueError, match="train"):
        nearest_neighbour_scores(T[:, :3], T)



class _PcaDecoder(torch.nn.Module):
    """A frozen linear 'generator' z (N, 16, 1, 1) -> mean + z @ the data's top 16 principal axes
    (N, 4, 64, 64): what an encoder can invert, unlike a random tiny DCGAN."""

    def __init__(self, X: torch.Tensor, k: int = 16):
        super().__init__()
        from types import SimpleNamespace
        self.cfg = SimpleNamespace(z_dim=k)
        flat = X.flatten(1)
        self.mean = flat.mean(0)
        self.axes = torch.linalg.svd(flat - self.mean, full_matrices=False)[2][:k]    # (k, 4*64*64)
        self.shape = X.shape[1:]

    def forward(self, z):
        return (self.mean + z.flatten(1) @ self.axes).reshape(-1, *self.shape)


def test_encoder_light_jitter_targets(kinect_root):
    """photometric_target 'clean' trains E to reconstruct the frame before the light jitter: on the
    same darkened inputs its reconstruction of the clean frames is closer than an 'augmented' encoder's
    (which reconstructs the darkened frame it sees)."""
    u8 = load_kinect(kinect_root, "rectangle", "train")[1][:64]
    X = to_tensor(u8)
    G = _PcaDecoder(X)
    kw = dict(epochs=30, width=4, batch_size=16, lr=3e-3, log=None, brightness=0.4, seed=0, hflip=False)
    E_clean, info = train_encoder(G, u8, photometric_target="clean", **kw)
    assert info["brightness"] == 0.4 and info["photometric_target"] == "clean"
    E_aug, _ = train_encoder(G, u8, photometric_target="augmented", **kw)
    with pytest.raises(ValueError, match="photometric_target"):
        train_encoder(G, u8, photometric_target="nope", **kw)
    dim = X.clone()
    fg = X[:, 3:4] > -1
    dim[:, :3] = torch.where(fg, ((X[:, :3] + 1) / 2 * 0.65) * 2 - 1, X[:, :3])     # 35 % less light
    with torch.no_grad():
        err = {k: float(((G(E(dim)) - X) ** 2).mean()) for k, E in (("clean", E_clean), ("aug", E_aug))}
    assert err["clean"] < 0.9 * err["aug"], err
