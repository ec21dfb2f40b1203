"""Something else in view beside the object: a cable (or a gripper finger) hanging into the frame from its top edge,
with depth readings at about the object's depth (audit 34 #2: sphere's "centroid" alignment moved by it)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..preprocess import largest_component
from .frame import check_frame

# the cable's colour (8-bit RGB): a dark cable, above the sensor-fault check's black level (16)
CABLE_RGB = (30, 30, 30)
# empty columns between the object and the cable: more than a 3 x 3 closing (depth_close 3, depth_fill 3) bridges, so
# the cable stays its own 4-connected component after the preprocessing's depth repair
CABLE_GAP = 3


@dataclass(frozen=True)
class Cable:
    """A thin object in view beside the object (audit 34 #2: a 1-px cable 14 px into the frame made the shipped sphere
    alarm on 67 % of normal frames): ``length`` x ``width`` raw pixels (whole numbers >= 1) entering from the frame's
    top edge (rows 0 .. length - 1, clipped to the frame), with depth readings equal to the median reading of the
    object and RGB ``CABLE_RGB`` (dark). Deterministic (``rng`` unused). Placement: the object is the largest
    4-connected component of the readings (``runtime.preprocess.largest_component``, as ``align: "component"``);
    the cable's columns start ``CABLE_GAP`` (3) empty columns right of the object's rightmost column; when they do
    not fit in the frame, they end ``CABLE_GAP`` columns left of its leftmost column; when neither fits, they lie
    against the frame edge on the side with more room (and may touch the object). A frame without a reading is
    returned unchanged (copies). Assumes a PRE-MASKED depth, as the depth-edge kinds: the readings are the object
    (and the capture's leftovers), and the median reading is within the preprocessing's near..far band."""
    length: int
    width: int

    @property
    def name(self) -> str:
        return f"cable {self.length}x{self.width} px"

    def columns(self, depth) -> tuple:
        """(first, end) columns of the cable in a frame whose depth is ``depth`` (H, W) (the placement rule above);
        None when the frame has no reading."""
        return self._columns(largest_component(np.asarray(depth) > 0))

    def _columns(self, obj: np.ndarray):
        if not obj.any():
            return None
        W = obj.shape[1]
        w = min(self.width, W)
        xs = np.nonzero(obj.any(axis=0))[0]
        x0, x1 = int(xs[0]), int(xs[-1])
        right, left = x1 + 1 + CABLE_GAP, x0 - CABLE_GAP - w
        if right + w <= W:
            c = right
        elif left >= 0:
            c = left
        else:
            c = W - w if W - 1 - x1 >= x0 else 0
        return c, c + w

    def __call__(self, rgb, depth, rng=None):
        rgb, depth = check_frame(rgb, depth)
        out_rgb, out_depth = rgb.copy(), depth.copy()
        obj = largest_component(depth > 0)
        cols = self._columns(obj)
        if cols is None:
            return out_rgb, out_depth
        reading = max(1, int(np.rint(np.median(depth[obj]))))
        rows = slice(0, min(self.length, depth.shape[0]))
        out_depth[rows, cols[0]:cols[1]] = reading
        out_rgb[rows, cols[0]:cols[1]] = CABLE_RGB
        return out_rgb, out_depth
