"""The lean, torch-free runtime: preprocessing, sources, manifests, ``Scorer`` and its backends."""
from __future__ import annotations

__all__ = ["Scorer", "ScoreResult", "ManifestError"]


def __getattr__(name):  # lazy, so `import edge_ad.runtime` stays cheap
    if name in ("Scorer", "ScoreResult"):
        from . import scorer
        return getattr(scorer, name)
    if name == "ManifestError":
        from .manifest import ManifestError
        return ManifestError
    raise AttributeError(name)
