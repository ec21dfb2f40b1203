"""Distributed training (issue 14): ``torchrun --standalone --nproc_per_node=2 -m edge_ad train`` with
DistributedDataParallel on gloo (CPU), rank 0 alone writing, resume, world size recorded; and one
process exactly as before (weights bit for bit those of the code before DDP existed)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from edge_ad.models import read_checkpoint  # noqa: E402
from edge_ad.models.distributed import Dist  # noqa: E402
from edge_ad.models.train import TrainConfig, train  # noqa: E402


def reference_training(arr, cfg: TrainConfig) -> tuple:
    """models/train.py's loop as it was before distributed training (commit ab5c3d3), without its
    outputs: the generator and discriminator state after cfg.epochs epochs."""
    from torch import nn

    from edge_ad.models.data import augment, to_tensor
    from edge_ad.models.dcgan import Discriminator, GanConfig, Generator, init_weights
    from edge_ad.models.train import _gradient_penalty
    from edge_ad.runtime.preprocess import PreprocessSpec
    spec = PreprocessSpec()
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    gcfg = GanConfig(z_dim=cfg.z_dim, features_g=cfg.features_g, features_d=cfg.features_d, resolution=spec.resolution)
    G, D = Generator(gcfg), Discriminator(gcfg, sigmoid=cfg.objective == "bce", norm=cfg.critic_norm)
    init_weights(G), init_weights(D)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    X = to_tensor(arr, spec)
    N = len(X)
    bs = min(cfg.batch_size, N)
    bce = nn.BCELoss()
    for _ in range(cfg.epochs):
        G.train(), D.train()
        perm = torch.randperm(N, generator=gen)
        for s in range(max(1, N // bs)):
            real = augment(X[perm[s * bs:(s + 1) * bs]], gen, cfg.hflip, cfg.max_shift, cfg.brightness)
            b = real.shape[0]
            if cfg.objective == "bce":
                fake = G(torch.randn(b, cfg.z_dim, 1, 1, generator=gen))
                d_real, d_fake = D(real).flatten(), D(fake.detach()).flatten()
                loss_d = bce(d_real, torch.ones_like(d_real)) + bce(d_fake, torch.zeros_like(d_fake))
                opt_d.zero_grad(), loss_d.backward(), opt_d.step()
                out_f = D(fake).flatten()
                loss_g = bce(out_f, torch.ones_like(out_f))
                opt_g.zero_grad(), loss_g.backward(), opt_g.step()
            else:
                for _ in range(cfg.critic_iters):
                    fake = G(torch.randn(b, cfg.z_dim, 1, 1, generator=gen)).detach()
                    loss_d = D(fake).mean() - D(real).mean() + cfg.gp_lambda * _gradient_penalty(D, real, fake, gen)
                    opt_d.zero_grad(), loss_d.backward(), opt_d.step()
                loss_g = -D(G(torch.randn(b, cfg.z_dim, 1, 1, generator=gen))).mean()
                opt_g.zero_grad(), loss_g.backward(), opt_g.step()
    return G.state_dict(), D.state_dict()


@pytest.mark.parametrize("objective", ["bce", "wgan-gp"])
def test_one_process_trains_exactly_as_before(tmp_path, kinect_root, objective, monkeypatch):
    """Without torchrun, train() gives bit for bit the weights of the loop before DDP existed."""
    from edge_ad.models.data import load_kinect
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    _, arr = load_kinect(kinect_root, "rectangle", "train")
    cfg = TrainConfig(objective=objective, epochs=2, batch_size=8, features_g=4, features_d=4, critic_iters=2,
                      sample_every=0, seed=5, max_shift=2, brightness=0.1)
    path = train(arr[:24], tmp_path, cfg, data_summary={}, progress=False, resume=False, log=lambda *_: None,
                 dist=Dist.from_env())
    ck = read_checkpoint(path)
    g_ref, d_ref = reference_training(arr[:24], cfg)
    for got, want in ((ck["generator"], g_ref), (ck["discriminator"], d_ref)):
        assert got.keys() == want.keys()
        for k in want:
            assert torch.equal(got[k], want[k]), k
    assert ck["train"]["world_size"] == 1 and "rng_ranks" not in ck["optimizers"]


def torchrun(args: list, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", EDGE_AD_DIST_DEVICE="cpu")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "edge_ad", "train", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_torchrun_two_processes_ddp_and_resume(tmp_path):
    out = tmp_path / "run"
    args = ["--synth", "32", "--out", str(out), "--width", "4", "--batch-size", "16", "--sample-every", "1",
            "--epochs"]
    r = torchrun(args + ["1"], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "world size 2, backend gloo, 8 frames per rank" in r.stdout + r.stderr
    assert (r.stdout + r.stderr).count("checkpoint: ") == 1            # rank 0 alone logs
    assert sorted(p.name for p in out.iterdir()) == ["last.pt", "loss_curve.png", "samples_0001.png"]
    ck = read_checkpoint(out / "last.pt")
    t = ck["train"]
    assert t["world_size"] == 2 and t["epoch"] == 1
    a, b = t["replica_checksums"]                                      # DDP kept the replicas equal
    assert a == b
    assert len(ck["optimizers"]["rng_ranks"]) == 2
    assert not torch.equal(*(torch.as_tensor(s) for s in ck["optimizers"]["rng_ranks"]))   # rank noise differs

    r = torchrun(args + ["2"], tmp_path)                               # resume at epoch 1
    assert r.returncode == 0, r.stdout + r.stderr
    assert "resuming" in r.stdout + r.stderr
    ck2 = read_checkpoint(out / "last.pt")
    assert ck2["train"]["epoch"] == 2 and ck2["train"]["history"]["epoch"] == [1, 2]
    assert ck2["train"]["history"]["loss_g"][0] == t["history"]["loss_g"][0]
    assert not torch.equal(ck2["generator"]["gen.0.0.weight"], ck["generator"]["gen.0.0.weight"])
