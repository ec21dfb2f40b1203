"""Distributed training (issue 14): ``torchrun --standalone --nproc_per_node=2 -m edge_ad train`` with
DistributedDataParallel on gloo (CPU), rank 0 alone writing, resume, world size recorded; and one
process exactly as before (weights bit for bit those of the code before DDP existed)."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from edge_ad.models import read_checkpoint  # noqa: E402
from edge_ad.models.distributed import Dist  # noqa: E402
from edge_ad.models.train import TrainConfig, train  # noqa: E402


def digest(ck: dict) -> str:
    h = hashlib.sha256()
    for part in ("generator", "discriminator"):
        for k, v in sorted(ck[part].items()):
            h.update(k.encode())
            h.update(v.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


# sha256 of the trained G and D state, computed with models/train.py as it was before distributed
# training was added (commit ab5c3d3), 1 thread, the arguments below
BEFORE_DDP = {"bce": "b30b38af92b29207041582b09d2a430aebcefe4666c143c0e7e4c018c4e1a0d2",
              "wgan-gp": "33f71f011c2d8434608e7610129dc789d64858724847137470ad39c721c434db"}


@pytest.mark.parametrize("objective", ["bce", "wgan-gp"])
def test_one_process_trains_exactly_as_before(tmp_path, kinect_root, objective, monkeypatch):
    from edge_ad.models.data import load_kinect
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    _, arr = load_kinect(kinect_root, "rectangle", "train")
    cfg = TrainConfig(objective=objective, epochs=2, batch_size=8, features_g=4, features_d=4, critic_iters=2,
                      sample_every=0, seed=5, max_shift=2, brightness=0.1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        path = train(arr[:24], tmp_path, cfg, data_summary={}, progress=False, resume=False, log=lambda *_: None,
                     dist=Dist.from_env())
    finally:
        torch.set_num_threads(threads)
    ck = read_checkpoint(path)
    assert digest(ck) == BEFORE_DDP[objective]
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
