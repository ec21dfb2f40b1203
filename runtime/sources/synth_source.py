"""``synth://`` source: rendered boxes (normal) with spheres/cylinders at a given anomaly rate."""
from __future__ import annotations

import time
from typing import Iterator, Optional

import numpy as np

from .base import Frame, Source
from .synth import NORMAL_KIND, render

MIN_RESOLUTION = 8      # preprocessing refuses a smaller RGB image (every frame a bad frame)
MAX_RESOLUTION = 4096   # 4096 x 4096: the default --max-frame-pixels


class SynthSource(Source):
    """Endless (or ``n``-frame) synthetic RGB-D frames (``resolution`` x ``resolution``: RGB (R, R, 3) uint8,
    depth (R, R) uint8); ``meta['kind']`` and ``meta['anomalous']`` carry the ground truth. ValueError naming the
    setting for n < 1, an anomaly_rate outside [0, 1], a seed < 0 or a resolution outside [8, 4096]."""

    labelled = True

    def __init__(self, n: Optional[int] = None, anomaly_rate: float = 0.2, seed: int = 0,
                 resolution: int = 64):
        if n is not None and (isinstance(n, bool) or int(n) != n or n < 1):
            raise ValueError(f"n (the number of frames) must be a whole number >= 1, got {n}; "
                             "leave it out for an endless stream")
        if not 0.0 <= anomaly_rate <= 1.0:
            raise ValueError(f"anomaly_rate must be in [0, 1], got {anomaly_rate}")
        if isinstance(seed, bool) or int(seed) != seed or seed < 0:
            raise ValueError(f"seed must be a whole number >= 0, got {seed}")
        if isinstance(resolution, bool) or int(resolution) != resolution \
                or not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
            raise ValueError(f"resolution (the frames' side in pixels) must be a whole number in "
                             f"[{MIN_RESOLUTION}, {MAX_RESOLUTION}], got {resolution}")
        self.n, self.anomaly_rate, self.seed, self.resolution = n, anomaly_rate, seed, resolution
        # the URI that opens these frames again (no n: endless; resolution only when not the default)
        self.uri = ("synth://?" + ("" if n is None else f"n={n}&") + f"anomaly_rate={anomaly_rate}&seed={seed}"
                    + ("" if resolution == 64 else f"&resolution={resolution}"))

    def __iter__(self) -> Iterator[Frame]:
        rng = np.random.default_rng(self.seed)
        i = 0
        while self.n is None or i < self.n:
            anomalous = rng.random() < self.anomaly_rate
            kind = str(rng.choice(["sphere", "cylinder"])) if anomalous else NORMAL_KIND
            rgb, depth = render(kind, rng, self.resolution)
            yield Frame(f"synth-{i:06d}", rgb, depth, time.time(),
                        meta={"kind": kind, "anomalous": bool(anomalous)})
            i += 1
