"""How far a nuisance moves or blurs the frame, and the refusal of one that would leave nothing of it.
``largest_shift`` / ``largest_blur_radius`` are singledispatch functions: each kind that moves or blurs registers
its reach next to its class (geometric.py, blur.py, compose.py), so kinds refuse themselves without a cycle."""
from __future__ import annotations

from functools import singledispatch


@singledispatch
def largest_shift(nuisance) -> tuple:
    """(dy, dx): the most raw pixels one shift of ``nuisance`` moves the content down/up and sideways
    (Shift: (|dy|, |dx|), RandomShift: (px, px), Compose: the largest of its parts; (0, 0) for the others).
    A shift of at least the frame's height (dy) or width (dx) leaves nothing of the frame (``too_large_for``:
    ``edge-ad eval``, Shift and RandomShift refuse it; parse_nuisance cannot: it does not know the frame size)."""
    return 0, 0


@singledispatch
def largest_blur_radius(nuisance) -> int:
    """The radius in raw pixels of the widest Gaussian kernel ``nuisance`` blurs with (Blur, fg-blur included:
    ceil(3 sigma), at least 1, as gaussian_kernel; Sharpen: 3, its blur's; Compose: the widest of its parts; 0
    without a blur). A kernel as wide as the frame's smaller side leaves only its mean colour, and Blur pads the
    frame by the radius: blur:1e6 asked for 786 TiB (``too_large_for``: ``edge-ad eval`` refuses it before scoring,
    as it refuses a shift out of the frame, and Blur and Sharpen refuse it themselves)."""
    return 0


def too_large_for(nuisance, height: int, width: int):
    """Why ``nuisance`` cannot apply to a frame of ``height`` x ``width`` raw pixels, or None when it can: a shift
    of at least the frame's height or width (``largest_shift``: nothing of the frame would be left) or a blur
    kernel as wide as its smaller side (``largest_blur_radius``: only its mean colour would be left, and the pad
    grows with the radius). The text follows the nuisance's name or label: ``edge-ad eval`` refuses such a suite
    row before scoring; ``Shift``, ``RandomShift`` and ``Blur`` refuse themselves (``refuse_too_large``)."""
    dy, dx = largest_shift(nuisance)
    if dy >= height or dx >= width:
        moved, side = (f"{dy} px down/up", f"height ({height} px)") if dy >= height else \
            (f"{dx} px sideways", f"width ({width} px)")
        return f"moves the content by {moved}, at least the frame's {side}: nothing of the frame would be left"
    r = largest_blur_radius(nuisance)
    if r >= min(height, width):
        return (f"blurs with a kernel of radius {r} px (3 sigma), at least the frame's smaller side "
                f"({min(height, width)} px): only its mean colour would be left (a typo for a sigma of a few px?)")
    return None


def refuse_too_large(nuisance, shape: tuple) -> None:
    """ValueError "<name> <too_large_for's reason>" when ``nuisance`` cannot apply to a frame of ``shape`` (H, W, ...):
    checked before any work, so shift:1000000000000 or blur:1e6 through the Python API fail at once."""
    why = too_large_for(nuisance, shape[0], shape[1])
    if why is not None:
        raise ValueError(f"{nuisance.name} {why}")
