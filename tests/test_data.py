"""Folder source, kinect splits and the synthetic renderer (real files, real rendering)."""
import numpy as np
import pytest
from PIL import Image

from edge_ad.models.data import DataError, kinect_split_ids, load_kinect, load_synth
from edge_ad.runtime.sources import FolderSource, SourceError, open_source
from edge_ad.runtime.sources.synth import render


def test_kinect_split_loads_real_frames(kinect_root):
    ids = kinect_split_ids(kinect_root, "sphere", "val")
    assert len(ids) == 100
    got_ids, arr = load_kinect(kinect_root, "sphere", "val")
    assert arr.shape == (100, 64, 64, 4) and arr.dtype == np.uint8
    assert 0.01 < (arr[..., 3] > 0).mean() < 0.5  # objects on an empty background
    with pytest.raises(DataError, match="class 'cube'"):
        kinect_split_ids(kinect_root, "cube", "train")


def test_folder_source_matches_by_stem(kinect_root, tmp_path):
    for sub in ("rgb", "depth"):
        (tmp_path / sub).mkdir()
    Image.open(kinect_root / "rectangle" / "rgb" / "0.jpg").save(tmp_path / "rgb" / "10.png")
    Image.open(kinect_root / "rectangle" / "depth" / "0.png").save(tmp_path / "depth" / "10.png")
    Image.open(kinect_root / "rectangle" / "rgb" / "2.jpg").save(tmp_path / "rgb" / "9.jpg")  # no depth
    frames = list(open_source(str(tmp_path)))
    assert [f.id for f in frames] == ["9", "10"]  # numeric order
    assert frames[0].error and "missing depth" in frames[0].error
    assert frames[1].error is None and frames[1].rgb.shape == (64, 64, 3) and frames[1].depth.dtype == np.uint8
    assert len(FolderSource(kinect_root / "cylinder")) == 400
    with pytest.raises(SourceError, match="not a frame folder"):
        FolderSource(tmp_path / "rgb")


def test_synthetic_renderer_classes():
    rng = np.random.default_rng(0)
    for kind in ("box", "sphere", "cylinder"):
        rgb, depth = render(kind, rng)
        fg = depth > 0
        assert rgb.shape == (64, 64, 3) and depth.shape == (64, 64)
        assert 0.01 < fg.mean() < 0.6, kind
        assert (rgb[~fg] == 0).all() and (rgb[fg].max(axis=1) > 0).all()  # black background
    # a sphere's silhouette is round: its area matches pi r^2 of its extent
    rgb, depth = render("sphere", np.random.default_rng(5))
    ys, xs = np.nonzero(depth)
    r = (xs.max() - xs.min() + 1) / 2
    assert (depth > 0).sum() == pytest.approx(np.pi * r * r, rel=0.15)
    _, arr, kinds = load_synth(20, seed=1, anomaly_rate=0.5)
    assert arr.shape == (20, 64, 64, 4) and {"box"} < set(kinds)
    frames = list(open_source("synth://?n=5&anomaly_rate=1.0&seed=2"))
    assert len(frames) == 5 and all(f.meta["anomalous"] for f in frames)
    with pytest.raises(SourceError):
        open_source("nosuch://x")


def test_load_folder_names_every_bad_frame_in_one_error(tmp_path, kinect_root):
    """Audit 27 #12: train / eval on a folder stopped at the FIRST bad frame, naming only it (fix, rerun, meet the
    next). Now one DataError after the whole pass: how many cannot be read, each with why; at most
    SHOWN_BAD_FRAMES named, the rest counted."""
    import shutil

    from edge_ad.models import data
    from edge_ad.models.data import load_folder
    src, bad = kinect_root / "rectangle", tmp_path / "bad3"
    ids = sorted(int(p.stem) for p in (src / "rgb").glob("*.jpg"))[:8]
    (bad / "rgb").mkdir(parents=True)
    (bad / "depth").mkdir()
    for i in ids:
        shutil.copy(src / "rgb" / f"{i}.jpg", bad / "rgb" / f"{i}.jpg")
        shutil.copy(src / "depth" / f"{i}.png", bad / "depth" / f"{i}.png")
    a, b, c = ids[0], ids[2], ids[5]
    (bad / "rgb" / f"{a}.jpg").write_bytes(b"")
    (bad / "depth" / f"{b}.png").write_bytes(b"\x89PNG garbage")
    (bad / "depth" / f"{c}.png").unlink()
    with pytest.raises(DataError) as e:
        load_folder(bad)
    msg = str(e.value)
    assert msg.startswith(f"3 of 8 frames in {bad} cannot be read (fix or remove them): frame {a}: "), msg
    assert f"; frame {b}: " in msg and f"; frame {c}: missing depth file" in msg and "more" not in msg, msg
    data.SHOWN_BAD_FRAMES = 1
    try:
        with pytest.raises(DataError, match=r"3 of 8 frames .*: frame \d+: [^;]*; \.\.\. and 2 more$"):
            load_folder(bad)
    finally:
        data.SHOWN_BAD_FRAMES = 20
