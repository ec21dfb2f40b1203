"""Frame sources chosen by URI through one dispatch, ``open_source(uri)``.

  synth://[?n=N&anomaly_rate=R&seed=S]   built-in renderer (the embedded default)
  DIR  or  folder://DIR                  <DIR>/rgb/<id>.(png|jpg) + <DIR>/depth/<id>.png
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlparse

from .base import Frame, Source, SourceError
from .folder import FolderSource

__all__ = ["Frame", "Source", "SourceError", "FolderSource", "open_source"]


def _query(uri: str) -> dict:
    q = parse_qs(urlparse(uri).query)
    return {k: v[-1] for k, v in q.items()}


def open_source(uri: str) -> Source:
    """Open a frame source named by ``uri``. Raises SourceError with the reason when it cannot."""
    uri = str(uri)
    if uri.startswith("synth://"):
        from .synth_source import SynthSource
        q = _query(uri)
        unknown = set(q) - {"n", "anomaly_rate", "seed", "resolution"}
        if unknown:
            raise SourceError(f"synth:// does not take {sorted(unknown)}")
        return SynthSource(n=int(q["n"]) if "n" in q else None,
                           anomaly_rate=float(q.get("anomaly_rate", 0.2)),
                           seed=int(q.get("seed", 0)), resolution=int(q.get("resolution", 64)))
    path = uri[len("folder://"):] if uri.startswith("folder://") else uri
    if Path(path).is_dir():
        return FolderSource(path)
    raise SourceError(f"cannot open source {uri!r}: not a known URI scheme and not a frame folder")
