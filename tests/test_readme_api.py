"""README's Python API example runs as written (audit 2 #4: it died on the first unreadable frame with
a misleading 'FrameError: missing RGB image'): the block is taken from README.md, pointed at the demo
model and at a folder with good frames, a corrupt and a truncated JPEG and a black (dead) colour frame."""
from __future__ import annotations

import contextlib
import io
import re
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def readme_api_block() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    after = text[text.index("Python API (embedding"):]
    return re.search(r"```python\n(.*?)```", after, re.S).group(1)


def test_readme_python_api_example_survives_bad_frames(tmp_path, kinect_root):
    from edge_ad.runtime import demo_model_dir
    src = kinect_root / "rectangle"
    d = tmp_path / "frames"
    (d / "rgb").mkdir(parents=True)
    (d / "depth").mkdir()
    for fid in ("3", "4", "7", "31", "74"):
        shutil.copy(src / "depth" / f"{fid}.png", d / "depth" / f"{fid}.png")
    for fid in ("3", "74"):
        shutil.copy(src / "rgb" / f"{fid}.jpg", d / "rgb" / f"{fid}.jpg")
    (d / "rgb" / "4.jpg").write_bytes(b"not a jpeg at all")                          # corrupt
    (d / "rgb" / "7.jpg").write_bytes((src / "rgb" / "7.jpg").read_bytes()[:600])   # truncated
    shape = np.asarray(Image.open(src / "rgb" / "31.jpg")).shape
    Image.fromarray(np.zeros(shape, np.uint8)).save(d / "rgb" / "31.jpg")              # dead colour sensor

    code = readme_api_block()
    assert '"runs/rect-onnx"' in code and '"realsense://"' in code
    code = code.replace('"runs/rect-onnx"', repr(str(demo_model_dir()))).replace('"realsense://"', repr(str(d)))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md (Python API)", "exec"), {})
    lines = dict(line.split(": ", 1) for line in out.getvalue().splitlines())
    assert sorted(lines, key=int) == ["3", "4", "7", "31", "74"], out.getvalue()
    assert lines["4"].startswith("not read:") and "unreadable RGB" in lines["4"] and "4.jpg" in lines["4"]
    assert lines["7"].startswith("not read:") and "7.jpg" in lines["7"]
    assert lines["31"].startswith("not scored: sensor fault black_rgb"), lines["31"]
    for fid in ("3", "74"):
        assert lines[fid].startswith("score ") and lines[fid].split()[-1] in ("normal", "ANOMALY"), lines[fid]
