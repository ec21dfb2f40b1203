"""``edge-ad run --display``: an OpenCV window showing each scored frame; q or Esc stops the run.

A per-result hook (``hook(rec, frame, res)``, see ``capture.run_capture``) on top of
``pictures.frame_panels``: input RGB | depth | reconstruction RGB | depth | error heat map, with the
frame id, score and threshold written on it (red when flagged). A reconstruction the scorer did not
keep is a blank tile.
"""
from __future__ import annotations

import os
import sys
import threading

import numpy as np

from .pictures import frame_panels, panel_row


def _without_gui(cv2) -> bool:
    """Whether this OpenCV was built without a window system ("GUI: NONE" in its build information, as
    opencv-python-headless); False when it cannot tell."""
    info = getattr(cv2, "getBuildInformation", None)
    if info is None:
        return False
    for line in info().splitlines():
        if line.strip().startswith("GUI:"):
            return line.split(":", 1)[1].strip().upper() == "NONE"
    return False


class Display:
    """An OpenCV window with input, reconstruction and error map; q/Esc sets ``stop``. ImportError
    without OpenCV, RuntimeError without a graphical session (Linux without DISPLAY / WAYLAND_DISPLAY)."""

    name = "--display"   # how hook_failed events and the summary's hook_failures name it

    def __init__(self, spec, stop: threading.Event):
        try:
            import cv2
        except ImportError:
            raise ImportError("--display needs OpenCV: pip install opencv-python") from None
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise RuntimeError("--display needs a graphical session (DISPLAY is not set)")
        if _without_gui(cv2):      # opencv-python-headless: every imshow would fail, once per frame
            raise RuntimeError("--display needs OpenCV with a window system (its build says GUI: NONE: "
                               "opencv-python-headless): pip uninstall -y opencv-python-headless && pip install "
                               "opencv-python")
        self.cv2, self.spec, self.stop = cv2, spec, stop

    def picture(self, rec: dict, frame, res) -> np.ndarray:
        """The window's picture (H*4, 5*W*4, 3) uint8 BGR, labelled."""
        cv2 = self.cv2
        img = np.ascontiguousarray(panel_row(frame_panels(frame, res, self.spec))[:, :, ::-1])
        colour = (0, 0, 255) if rec.get("anomalous") else (0, 200, 0)
        text = f"{rec['frame']}  score {rec['score']:.4g}" + (
            f"  thr {rec['threshold']:.4g}" if rec["threshold"] is not None else "")
        cv2.putText(img, text, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, colour, 2)
        return img

    def __call__(self, rec: dict, frame, res) -> None:
        self.cv2.imshow("edge-ad", self.picture(rec, frame, res))
        if self.cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            self.stop.set()

    def close(self):
        try:
            self.cv2.destroyAllWindows()
        except Exception:
            pass
