"""The error every model-file reader of models/ raises (checkpoint.py, torchscript_weights.py), and the one-line
form of an underlying exception its messages quote."""
from __future__ import annotations


class CheckpointError(ValueError):
    """A model file that is corrupt, of an unknown layout, or does not match the architecture."""


def first_line(e: BaseException, limit: int = 300) -> str:
    """``e`` as "TypeName: first line of its text" (at most ``limit`` characters of text), or its type name alone."""
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:limit]}" if text else type(e).__name__
