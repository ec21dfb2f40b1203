"""``edge-ad run``'s picture hooks in runtime/ (--save-anomalies: runtime/anomaly_saver.py, --display:
runtime/display.py), both drawn from ``pictures.frame_panels``: the saved pictures are the ones the
command wrote before they moved, a missing reconstruction is a plain error (the saver) or a blank
tile (the window), never the input standing in for it."""
from __future__ import annotations

import hashlib
import threading
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from edge_ad.runtime.anomaly_saver import AnomalySaver
from edge_ad.runtime.pictures import BLANK_GREY
from edge_ad.runtime.preprocess import PreprocessSpec, preprocess
from edge_ad.runtime.sources import open_source

# pixels of the five pictures of synth://?n=1&seed=3's frame (index 3, recon = -x), as written by
# edge_ad/commands/run.py's AnomalySaver before it moved to runtime/ (commit 4e63e08): shape, sha256
RECORDED = {
    "rgb": ((64, 64, 3), "593740cc1efa89b7826bc865f5c29f8340aa9f5d2217161649a01f2158dcc574"),
    "depth": ((64, 64), "a3ac580c93c25437f5f4aa3ed21dde228c0e2bba5b9032c5e6e450ab8f91638a"),
    "recon": ((64, 128, 3), "794cb5063757fb58d2136f7bf1470db56e1dc5b7895321794de2fe935fd3457e"),
    "error": ((256, 256, 3), "e8fa3bd860900b5126f979b564eab106c0a97a4a3b62bbfbaeb530f522df2e66"),
    "overlay": ((256, 1280, 3), "32149b7a79117dce2487a341cad253e341f82010fe2e996877a05c3442088044"),
}


def _scored_frame(keep_recon: bool = True):
    """A synth:// frame and a stand-in result: error = mean x^2 over channels, reconstruction -x."""
    spec = PreprocessSpec()
    fr = next(iter(open_source("synth://?n=1&seed=3")))
    x = preprocess(fr.rgb, fr.depth, spec)                       # (4, 64, 64)
    err = (x ** 2).mean(axis=0).astype(np.float32)
    return spec, fr, SimpleNamespace(score=float(err.mean()), error_map=err,
                                     reconstruction=-x if keep_recon else None)


def test_saved_pictures_are_the_ones_written_before_the_move(tmp_path):
    from PIL import Image
    spec, fr, res = _scored_frame()
    AnomalySaver(str(tmp_path), spec)({"frame": fr.id, "index": 3, "anomalous": True}, fr, res)
    got = {}
    for part in RECORDED:
        a = np.asarray(Image.open(tmp_path / f"00000003_{fr.id}_{part}.png"))
        got[part] = (a.shape, hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest())
    assert got == RECORDED
    assert len(list(tmp_path.iterdir())) == 5


def test_saver_without_a_reconstruction_raises_a_plain_error(tmp_path):
    """No reconstruction kept: a RuntimeError (the run reports it as hook_failed), not a click
    exception from inside a run hook, and no picture is written."""
    import click
    spec, fr, res = _scored_frame(keep_recon=False)
    with pytest.raises(RuntimeError, match="no reconstruction") as e:
        AnomalySaver(str(tmp_path), spec)({"frame": fr.id, "index": 0, "anomalous": True}, fr, res)
    assert not isinstance(e.value, click.ClickException)
    assert list(tmp_path.iterdir()) == []


def fake_cv2(monkeypatch, key: int = -1) -> dict:
    """cv2 with the calls Display makes; records what imshow was given."""
    shown = {}
    cv2 = ModuleType("cv2")
    cv2.FONT_HERSHEY_SIMPLEX = 0
    cv2.putText = lambda img, text, org, font, scale, colour, thick: shown.setdefault("text", text)
    cv2.imshow = lambda name, img: shown.update(img=img.copy())
    cv2.waitKey = lambda ms: key
    cv2.destroyAllWindows = lambda: None
    monkeypatch.setitem(__import__("sys").modules, "cv2", cv2)
    monkeypatch.setenv("DISPLAY", ":0")
    return shown


def test_display_without_a_reconstruction_draws_blank_tiles(monkeypatch):
    """The window's reconstruction RGB and depth tiles are blank grey when the scorer kept none (the
    input was shown there as if it were the reconstruction); with one, they show it."""
    from edge_ad.runtime.display import Display
    shown = fake_cv2(monkeypatch)
    spec, fr, res = _scored_frame(keep_recon=False)
    rec = {"frame": fr.id, "score": res.score, "threshold": 0.5, "anomalous": False}
    stop = threading.Event()
    disp = Display(spec, stop)
    disp(rec, fr, res)
    img = shown["img"]
    assert img.shape == (256, 5 * 256, 3) and shown["text"].startswith(fr.id)
    tiles = [img[:, c * 256:(c + 1) * 256] for c in range(5)]
    assert (tiles[2] == BLANK_GREY).all() and (tiles[3] == BLANK_GREY).all()
    assert not (tiles[0] == BLANK_GREY).all() and not (tiles[4] == BLANK_GREY).all()
    _, _, with_recon = _scored_frame(keep_recon=True)
    disp(rec, fr, with_recon)
    assert not (shown["img"][:, 2 * 256:3 * 256] == BLANK_GREY).all()
    assert not stop.is_set()


def test_display_q_stops_and_missing_pieces_are_plain_errors(monkeypatch):
    from edge_ad.runtime.display import Display
    fake_cv2(monkeypatch, key=ord("q"))
    spec, fr, res = _scored_frame()
    stop = threading.Event()
    Display(spec, stop)({"frame": fr.id, "score": 1.0, "threshold": None, "anomalous": None}, fr, res)
    assert stop.is_set()
    monkeypatch.delenv("DISPLAY")
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(RuntimeError, match="graphical session"):
        Display(spec, stop)
    monkeypatch.setitem(__import__("sys").modules, "cv2", None)     # OpenCV not installed
    with pytest.raises(ImportError, match="needs OpenCV"):
        Display(spec, stop)


def test_display_refuses_a_headless_opencv_at_start(monkeypatch):
    """Audit 28 #21: the display extra installed opencv-python-headless, whose imshow fails on every frame ("The
    function is not implemented. Rebuild the library with ... GTK+"), a hook failure per frame and no window. A
    build without a window system is refused when the display is made, naming the package to install."""
    from edge_ad.runtime.display import Display
    fake_cv2(monkeypatch)
    cv2 = __import__("sys").modules["cv2"]
    cv2.getBuildInformation = lambda: "General configuration\n  GUI:                           NONE\n"
    spec, fr, res = _scored_frame()
    with pytest.raises(RuntimeError, match=r"--display needs OpenCV with a window system \(its build says GUI: NONE: "
                                           r"opencv-python-headless\): pip uninstall -y opencv-python-headless && "
                                           r"pip install opencv-python"):
        Display(spec, threading.Event())
    cv2.getBuildInformation = lambda: "General configuration\n  GUI:                           GTK3\n"
    Display(spec, threading.Event())                          # a GUI build: taken
    import tomllib

    from conftest import REPO
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["display"] == ["opencv-python>=4.8"]


def test_run_display_without_opencv_is_a_one_line_error(monkeypatch):
    """edge-ad run --display without OpenCV: exit 1 and the reason, as before the move."""
    from edge_ad.commands import run as run_cmd
    from test_run import StubScorer   # noqa: E402  (tests/ is on sys.path under pytest)
    monkeypatch.setattr(run_cmd, "load_scorer", lambda model, backend, **kw: StubScorer())
    monkeypatch.setitem(__import__("sys").modules, "cv2", None)
    r = CliRunner().invoke(run_cmd.cmd, ["--source", "synth://?n=1", "--display", "-q"])
    assert r.exit_code == 1 and "--display needs OpenCV: pip install opencv-python" in r.output, r.output
