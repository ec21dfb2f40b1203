"""The reference scorer against a direct transcription of the algorithm text (adgan-rgbd-algorithm.md),
written here independently: per seed a weight copy, hand-written Adam on z and on theta."""
import copy
import math

import numpy as np
import pytest
import torch

from edge_ad.models.search import search, search_eager
from edge_ad.runtime.config import SearchConfig, make_z0


def transcription(G, x, z0, lr_z, lr_theta, k, b1=0.9, b2=0.999, eps=1e-8):
    """Algorithm 1, literally, in float64: returns (score, per-seed final losses)."""
    x = torch.as_tensor(x, dtype=torch.float64)[None]
    finals = []
    for j in range(len(z0)):
        Gj = copy.deepcopy(G).double().eval()                  # theta_j,0 = theta
        z = torch.tensor(z0[j], dtype=torch.float64).reshape(1, -1, 1, 1)
        theta = list(Gj.requires_grad_(True).parameters())
        tensors = [z] + theta
        m = [torch.zeros_like(t) for t in tensors]
        v = [torch.zeros_like(t) for t in tensors]
        for t in range(1, k + 1):
            z.requires_grad_(True)
            loss = ((Gj(z) - x) ** 2).mean()                    # l(G_theta_{j,t-1}(z_{j,t-1}), x)
            grads = torch.autograd.grad(loss, [z] + theta)
            with torch.no_grad():
                new = []
                for i, (p, g) in enumerate(zip([z] + theta, grads)):
                    lr = lr_z if i == 0 else lr_theta
                    m[i] = b1 * m[i] + (1 - b1) * g
                    v[i] = b2 * v[i] + (1 - b2) * g * g
                    mhat, vhat = m[i] / (1 - b1 ** t), v[i] / (1 - b2 ** t)
                    new.append(p - lr * mhat / (vhat.sqrt() + eps))
                z = new[0].detach()
                for p, q in zip(theta, new[1:]):
                    p.copy_(q)
        with torch.no_grad():
            finals.append(float(((Gj(z) - x) ** 2).mean()))  # l(G_theta_{j,k}(z_{j,k}), x)
    return float(np.mean(finals)), np.array(finals)


@pytest.mark.parametrize("lr_theta", [6e-9, 1e-3])
def test_reference_matches_transcription(tiny_generator, lr_theta):
    x = np.random.default_rng(1).uniform(-1, 1, (4, 64, 64))
    cfg = SearchConfig(lr_theta=lr_theta, k=6, n_seed=3)
    z0 = make_z0(3, 100, seed=7)
    want, want_seeds = transcription(tiny_generator, x, z0, cfg.lr_z, cfg.lr_theta, cfg.k)
    for fn in (search, search_eager):
        got = fn(tiny_generator, x, cfg, z0=z0, dtype=torch.float64)
        # torch's Adam divides by sqrt(bias_correction2) after the sqrt: identical up to rounding
        assert got.score == pytest.approx(want, rel=1e-10), fn.__name__
        np.testing.assert_allclose(got.seed_losses, want_seeds, rtol=1e-10)


def test_weight_learning_rate_matters_and_weights_are_reset(tiny_generator):
    x = np.random.default_rng(2).uniform(-1, 1, (4, 64, 64))
    before = {k: v.clone() for k, v in tiny_generator.state_dict().items()}
    a = search(tiny_generator, x, SearchConfig(lr_theta=0.0), seed=3, dtype=torch.float64)
    b = search(tiny_generator, x, SearchConfig(lr_theta=1e-2), seed=3, dtype=torch.float64)
    c = search(tiny_generator, x, SearchConfig(lr_theta=0.0), seed=3, dtype=torch.float64)
    assert b.score != a.score               # the weights really are updated during the search ...
    assert c.score == a.score               # ... and reset to theta for the next frame
    for k, v in tiny_generator.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_search_reduces_loss_and_returns_maps(tiny_generator):
    x = np.random.default_rng(3).uniform(-1, 1, (4, 64, 64)).astype(np.float32)
    r0 = search(tiny_generator, x, SearchConfig(k=0), seed=5)
    r = search(tiny_generator, x, SearchConfig(), seed=5, keep_trajectory=True)
    assert r.score < r0.score
    assert r.seed_losses.shape == (3,) and r.score == pytest.approx(r.seed_losses.mean(), rel=1e-6)
    assert r.error_map.shape == (64, 64)
    assert r.error_map.mean() == pytest.approx(r.score, rel=1e-5)  # mean over pixels of the MSE map
    assert r.reconstructions.shape == (3, 4, 64, 64) and len(r.trajectory) == 20


def test_determinism_and_input_validation(tiny_generator):
    x = np.zeros((4, 64, 64), np.float32)
    assert search(tiny_generator, x, seed=11).score == search(tiny_generator, x, seed=11).score
    assert search(tiny_generator, x, seed=11).score != search(tiny_generator, x, seed=12).score
    with pytest.raises(ValueError, match="z0 must have shape"):
        search(tiny_generator, x, z0=np.zeros((2, 100)))
    with pytest.raises(ValueError, match="NaN"):
        search(tiny_generator, np.full((4, 64, 64), np.nan), seed=0)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        search(tiny_generator, np.zeros((64, 64)), seed=0)


def test_defaults_are_the_papers():
    cfg = SearchConfig()
    assert (cfg.lr_z, cfg.lr_theta, cfg.n_seed, cfg.k) == (5e-2, 6e-9, 3, 19)
    assert (cfg.beta1, cfg.beta2, cfg.eps) == (0.9, 0.999, 1e-8)
    assert math.isclose(SearchConfig.from_dict(cfg.to_dict()).lr_theta, 6e-9)


def test_frozen_generator_is_still_searched_and_encoder_training_has_no_side_effect(tiny_generator):
    """A generator whose parameters were frozen elsewhere (requires_grad False) must still get its
    weight copies updated by the search; training an izi encoder must not freeze the caller's G."""
    import copy as _copy

    from edge_ad.models.encoder import train_encoder

    G = _copy.deepcopy(tiny_generator).requires_grad_(False)
    x = np.random.default_rng(4).uniform(-1, 1, (4, 64, 64))
    cfg = SearchConfig(k=3, lr_theta=1e-2)
    a = search_eager(G, x, cfg, seed=1, dtype=torch.float64)
    b = search_eager(G, x, cfg.replace(lr_theta=0.0), seed=1, dtype=torch.float64)
    c = search(G, x, cfg, seed=1, dtype=torch.float64)
    assert a.score != b.score and a.score == pytest.approx(c.score, rel=1e-10)
    G2 = _copy.deepcopy(tiny_generator)
    data = np.zeros((8, 64, 64, 4), np.uint8)
    train_encoder(G2, data, epochs=1, width=4, batch_size=8, log=None)
    assert all(p.requires_grad for p in G2.parameters())
