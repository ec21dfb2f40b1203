"""The lean, torch-free runtime: preprocessing, sources, manifests, ``Scorer`` and its backends."""
from __future__ import annotations

from pathlib import Path

__all__ = ["Scorer", "ScoreResult", "ManifestError", "demo_model_dir"]


def demo_model_dir() -> Path:
    """The shipped demo model: an exported model directory inside this package (runtime/demo/, package
    data of the runtime wheel; its training checkpoint, models/demo/demo.pt, is not shipped)."""
    return Path(__file__).resolve().parent / "demo"


def __getattr__(name):  # lazy, so `import edge_ad.runtime` stays cheap
    if name in ("Scorer", "ScoreResult"):
        from . import scorer
        return getattr(scorer, name)
    if name == "ManifestError":
        from .manifest import ManifestError
        return ManifestError
    raise AttributeError(name)
