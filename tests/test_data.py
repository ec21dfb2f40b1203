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
