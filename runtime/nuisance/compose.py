"""Compose: several nuisances applied in order (a text joined with '+'), and how far they move or blur
together (the largest of their parts)."""
from __future__ import annotations

from dataclasses import dataclass

from .limits import largest_blur_radius, largest_shift


@dataclass(frozen=True)
class Compose:
    """Several nuisances in order (e.g. a new scene: other light + camera shift + depth offset)."""
    parts: tuple
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or " + ".join(p.name for p in self.parts)

    def __call__(self, rgb, depth, rng=None):
        for p in self.parts:
            rgb, depth = p(rgb, depth, rng)
        return rgb, depth


@largest_shift.register(Compose)
def _compose_shift(nuisance) -> tuple:
    parts = [largest_shift(p) for p in nuisance.parts]
    return max(p[0] for p in parts), max(p[1] for p in parts)


@largest_blur_radius.register(Compose)
def _compose_blur_radius(nuisance) -> int:
    return max((largest_blur_radius(p) for p in nuisance.parts), default=0)
