"""Shared fixtures. Real data is read from ../shared/data/kinect-rgbd beside the checkout; it is
never copied into the project."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
KINECT = REPO.parent / "shared" / "data" / "kinect-rgbd"


@pytest.fixture(scope="session")
def kinect_root() -> Path:
    if not (KINECT / "splits.json").is_file():
        pytest.fail(f"real test data missing: {KINECT} (the checkout must sit beside shared/)")
    return KINECT


@pytest.fixture(scope="session")
def val_frame(kinect_root):
    """val_frame(cls, i) -> {"id": "cls/fid", "rgb": H x W x 3 uint8, "depth": H x W}: the i-th raw
    val frame of a kinect-rgbd class."""
    import json

    from edge_ad.runtime.sources.folder import read_pair
    splits = json.loads((kinect_root / "splits.json").read_text())

    def frame(cls: str, i: int = 0) -> dict:
        fid = str(splits[cls]["val"][i])
        rgb, depth = read_pair(kinect_root / cls, fid)
        return {"id": f"{cls}/{fid}", "rgb": rgb, "depth": depth}
    return frame


@pytest.fixture(scope="session")
def tiny_generator():
    """A width-8 generator with non-trivial BatchNorm statistics (so eval-mode BN matters)."""
    torch = pytest.importorskip("torch")
    from edge_ad.models.dcgan import GanConfig, Generator, init_weights

    torch.manual_seed(0)
    G = Generator(GanConfig(features_g=8, features_d=8))
    init_weights(G)
    with torch.no_grad():
        for m in G.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.bias.uniform_(-0.1, 0.1)
    return G.eval()


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def export_tiny(tmp_path_factory, tiny_generator):
    """export_tiny(k, n_seed) -> directory of tiny_generator exported without the parity run
    (parity is the export tests' business); cached per (k, n_seed)."""
    from edge_ad.export.exporter import export_model
    from edge_ad.runtime.config import SearchConfig

    cache = {}

    def make(k: int, n_seed: int):
        if (k, n_seed) not in cache:
            d = tmp_path_factory.mktemp(f"tiny_k{k}_s{n_seed}") / "tiny"
            export_model(tiny_generator, d, search=SearchConfig(k=k, n_seed=n_seed), parity=False,
                         log=lambda *a: None)
            cache[k, n_seed] = d
        return cache[k, n_seed]

    return make
