"""models/kinect-rgbd/shift_evidence.py: the "object only" row keeps the largest connected depth
component (the object) and drops the thin static lines beside it."""
import numpy as np

from conftest import load_kinect_script


def test_largest_component_keeps_the_object_and_drops_lines():
    se = load_kinect_script("shift_evidence")
    u8 = np.zeros((16, 16, 4), np.uint8)
    u8[4:9, 4:10] = (120, 80, 40, 90)            # the object: 5 x 6 = 30 pixels
    u8[12, 2:14] = (10, 10, 10, 30)              # a table-edge line: 12 pixels, not touching it
    u8[2, 14] = (5, 5, 5, 20)                    # a speck
    out = se.largest_component(u8)
    assert (out[..., 3] > 0).sum() == 30
    assert np.array_equal(out[4:9, 4:10], u8[4:9, 4:10])
    assert not out[12].any() and not out[2, 14].any()
    assert out is not u8 and u8[12, 2:14, 3].all()   # the input is left as it was
    # diagonal neighbours belong to the same component (8-connectivity)
    u8[9, 10] = (1, 1, 1, 50)
    assert (se.largest_component(u8)[..., 3] > 0).sum() == 31
    # no foreground: returned unchanged
    empty = np.zeros((8, 8, 4), np.uint8)
    assert not se.largest_component(empty).any()
