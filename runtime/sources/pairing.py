"""Pair a colour stream with a depth stream by timestamp, streaming, with bounded buffers.

Used by the ROS 2 bag reader and the RealSense recording player. Each stream's stamps are assumed
non-decreasing (as recorded). A colour item is paired with the depth item nearest in time once no
later depth can be nearer; a pair further apart than ``slop`` seconds is not made, and the
unpaired items are counted (like message_filters' ApproximateTime, nothing is paired twice).
"""
from __future__ import annotations

from collections import deque
from typing import Any, Iterator


class TimePairer:
    """Feed ``add_colour(t, item)`` / ``add_depth(t, item)``; collect pairs from ``pop_pairs()``;
    call ``finish()`` at the end of the streams. ``unpaired_colour`` / ``unpaired_depth`` count drops."""

    def __init__(self, slop: float, max_pending: int = 64):
        if slop < 0:
            raise ValueError(f"slop must be >= 0 seconds, got {slop}")
        self.slop, self.max_pending = float(slop), int(max_pending)
        self.colour: deque = deque()   # (t, item)
        self.depth: deque = deque()    # (t, item)
        self.pairs: deque = deque()    # (colour_t, colour_item, depth_t, depth_item)
        self.unpaired_colour = 0
        self.unpaired_depth = 0
        self._ended = False

    def add_colour(self, t: float, item: Any) -> None:
        self.colour.append((float(t), item))
        self._match()

    def add_depth(self, t: float, item: Any) -> None:
        self.depth.append((float(t), item))
        self._match()

    def finish(self) -> None:
        """No more items will come: decide everything still pending."""
        self._ended = True
        self._match()
        self.unpaired_depth += len(self.depth)
        self.depth.clear()

    def pop_pairs(self) -> Iterator[tuple]:
        while self.pairs:
            yield self.pairs.popleft()

    def _match(self) -> None:
        while self.colour:
            tc, c = self.colour[0]
            # depths too old to pair with this (or any later) colour item
            while self.depth and self.depth[0][0] < tc - self.slop:
                self.depth.popleft()
                self.unpaired_depth += 1
            if not self.depth:
                if self._ended:
                    self.colour.popleft()
                    self.unpaired_colour += 1
                    continue
                break
            if self.depth[-1][0] < tc and not self._ended:
                break  # a later depth may still be nearer
            best = min(range(len(self.depth)), key=lambda i: abs(self.depth[i][0] - tc))
            td, d = self.depth[best]
            self.colour.popleft()
            if abs(td - tc) <= self.slop:
                for _ in range(best):
                    self.depth.popleft()
                    self.unpaired_depth += 1
                self.depth.popleft()
                self.pairs.append((tc, c, td, d))
            else:
                self.unpaired_colour += 1
        # bounded memory when one stream is missing or far behind
        while len(self.colour) > self.max_pending:
            self.colour.popleft()
            self.unpaired_colour += 1
        while len(self.depth) > self.max_pending:
            self.depth.popleft()
            self.unpaired_depth += 1

    @property
    def stats(self) -> dict:
        return {"unpaired_colour": self.unpaired_colour, "unpaired_depth": self.unpaired_depth}

