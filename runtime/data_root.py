"""Where the kinect-rgbd frames are read from by default (the exporter's parity frames, benchmarks, the
Jetson GPU check, the models/kinect-rgbd scripts): one definition, torch-free.

``$EDGE_AD_DATA`` when set; else ``../shared/data/kinect-rgbd`` beside the checkout this package runs
from; an installed package outside a checkout has no checkout to sit beside, so there it is
``../shared/data/kinect-rgbd`` relative to the working directory (as the README's commands write it).
"""
from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "EDGE_AD_DATA"
RELATIVE = Path("..") / "shared" / "data" / "kinect-rgbd"
_CHECKOUT = Path(__file__).resolve().parents[1]    # runtime/.. : the repository root in a checkout


def default_kinect_root() -> Path:
    """The kinect-rgbd root (holding splits.json and one folder per class): ``$EDGE_AD_DATA`` if set, else
    ../shared/data/kinect-rgbd beside the checkout (outside a checkout: beside the working directory).
    Read on every call, so a changed environment applies. The directory may not exist."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    if (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / "runtime").is_dir():
        return _CHECKOUT.parent / "shared" / "data" / "kinect-rgbd"
    return Path.cwd() / RELATIVE
