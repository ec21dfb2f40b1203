"""Distributed training (issue 14): ``torchrun --standalone --nproc_per_node=2 -m edge_ad train`` with
DistributedDataParallel on gloo (CPU), rank 0 alone writing, resume, world size recorded; and one
process as before (the weights recorded from the code before DDP existed, GOLDEN)."""
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


# The state after 2 epochs of golden_config, recorded from the training loop as it was before distributed
# training (commit ab5c3d3's loop, which one-process train() matched bit for bit): fingerprint() of the
# generator and of the discriminator. torch 2.13.0+cpu (constraints.txt), x86-64, one thread. Tolerance:
# another thread count moves bce's generator projection by ~1e-3 relative (float sums reordered and grown by
# 6 GAN steps), so the runs pin one thread; bugs in the shared helpers move it by 2.6e-4 to 3e-2 (a 1/4
# flip rate, swapped shift axes, half the brightness range, a penalty around 0.9, swapped penalty mix).
GOLDEN = {"bce": ((14.625714553143956, 3.843371103909358), (7.888374439994276, -9.344279243848378)),
          "wgan-gp": ((13.485316594327585, 6.605392041873725), (7.797588061271746, -8.241257756127029))}
GOLDEN_RTOL = 1e-4
AUGMENT_SHA256 = "8ea004a6e2057fff3b09e88ab5a39008514a504be00846a14fcb2cf56e3eaf50"
GRADIENT_PENALTY = 0.010992517694830894

def golden_config(objective: str) -> TrainConfig:
    """The configuration of the golden runs: 24 rectangle train frames, 2 epochs of 3 batches, width 4."""
    return TrainConfig(objective=objective, epochs=2, batch_size=8, features_g=4, features_d=4, critic_iters=2,
                       sample_every=0, seed=5, max_shift=2, brightness=0.1)


def fingerprint(sd: dict) -> tuple:
    """(L2 norm of all float tensors, their projection on fixed N(0, 1) vectors) of a state dict, float64."""
    names = sorted(k for k, v in sd.items() if v.is_floating_point())
    g = torch.Generator().manual_seed(0)
    proj = sum(float((sd[k].double() * torch.randn(sd[k].shape, generator=g, dtype=torch.float64)).sum())
               for k in names)
    norm = float(torch.sqrt(sum((sd[k].double() ** 2).sum() for k in names)))
    return norm, proj


def augment_digest() -> str:
    """sha256 of models.data.augment (flips, shifts, brightness, white balance) on a fixed batch (16, 4, 64, 64)
    with a fixed generator: elementwise float32 operations and torch's CPU generator, the same bytes on
    every machine."""
    import hashlib

    from edge_ad.models.data import augment
    g = torch.Generator().manual_seed(3)
    x = torch.rand(16, 4, 64, 64, generator=g) * 2 - 1
    x[:, 3, :, :20] = -1.0                                    # background (depth 0) on the left
    out = augment(x, torch.Generator().manual_seed(4), True, 3, 0.2, 0.1)
    return hashlib.sha256(out.numpy().tobytes()).hexdigest()


def gradient_penalty_value() -> float:
    """models.train._gradient_penalty of a fixed width-4 instance-norm critic on fixed real / fake batches."""
    from edge_ad.models.dcgan import Discriminator, GanConfig, init_weights
    from edge_ad.models.train import _gradient_penalty
    torch.manual_seed(7)
    D = Discriminator(GanConfig(features_d=4), sigmoid=False, norm="instance")
    init_weights(D)
    g = torch.Generator().manual_seed(8)
    real, fake = torch.rand(4, 4, 64, 64, generator=g) * 2 - 1, torch.rand(4, 4, 64, 64, generator=g) * 2 - 1
    return _gradient_penalty(D, real, fake, torch.Generator().manual_seed(9)).item()


@pytest.mark.parametrize("objective", ["bce", "wgan-gp"])
def test_one_process_trains_as_recorded(tmp_path, kinect_root, objective, monkeypatch):
    """Without torchrun, train() gives the weights recorded from the loop before DDP existed (GOLDEN): a
    change in the loop or in the helpers it shares (augment, the gradient penalty) shows here."""
    from edge_ad.models.data import load_kinect
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    _, arr = load_kinect(kinect_root, "rectangle", "train")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        path = train(arr[:24], tmp_path, golden_config(objective), data_summary={}, progress=False, resume=False,
                     log=lambda *_: None, dist=Dist.from_env())
    finally:
        torch.set_num_threads(threads)
    ck = read_checkpoint(path)
    got = fingerprint(ck["generator"]) + fingerprint(ck["discriminator"])     # (norm, proj) of G, then of D
    want = GOLDEN[objective][0] + GOLDEN[objective][1]
    assert got == pytest.approx(want, rel=GOLDEN_RTOL, abs=0), (got, want)
    assert ck["train"]["world_size"] == 1 and "rng_ranks" not in ck["optimizers"]


def test_shared_training_helpers_are_as_recorded():
    """augment's bytes and the gradient penalty's value on fixed inputs (recorded with GOLDEN)."""
    assert augment_digest() == AUGMENT_SHA256
    assert gradient_penalty_value() == pytest.approx(GRADIENT_PENALTY, rel=1e-5)

def torchrun(args: list, cwd: Path) -> subprocess.CompletedProcess:
    tmp = cwd / "torchrun-tmp"      # torchrun's torchelastic_* log dirs stay here, not in /tmp
    tmp.mkdir(exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", EDGE_AD_DIST_DEVICE="cpu", TMPDIR=str(tmp))
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
    assert sorted(p.name for p in out.iterdir()) == [".lock", "last.pt", "loss_curve.png", "samples_0001.png"]
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
