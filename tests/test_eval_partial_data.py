"""``edge-ad eval --data`` on partial / held-out copies of kinect-rgbd (audit 2 #2, #9) and nuisances that
leave nothing to score (#10): each named before any scoring, or skipped with a note in report.json."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import copy_kinect_layout
from edge_ad.runtime import nuisance as nu

torch = pytest.importorskip("torch")


@pytest.fixture
def tiny_ck(tmp_path, tiny_generator):
    from edge_ad.models import save_checkpoint
    from edge_ad.runtime.preprocess import PreprocessSpec
    ck = tmp_path / "g.pt"
    save_checkpoint(ck, tiny_generator, preprocess=PreprocessSpec())
    return ck


@pytest.fixture
def no_scoring(monkeypatch):
    """score_batch fails the test: the error must come before any frame is scored."""
    import edge_ad.models.search as search

    def fail(*a, **k):
        raise AssertionError("frames were scored before the data error was found")
    monkeypatch.setattr(search, "score_batch", fail)


def _eval(ck, data, out, *extra):
    from edge_ad.cli import main
    return CliRunner().invoke(main, ["eval", "--model", str(ck), "--data", str(data), "--class", "rectangle",
                                     "--k", "0", "--n-seed", "1", "--out", str(out), *extra])


def test_eval_on_a_held_out_copy_without_train_skips_the_baselines_and_writes_the_report(tmp_path, kinect_root,
                                                                                       tiny_ck):
    """#2: splits.json with only a 'test' split; baselines on (the default), nuisance suite too: the
    old code scored everything, then crashed loading 'train' (no report). Now the baselines are
    skipped with the reason in report.json and the output, the model's results written."""
    copy_kinect_layout(kinect_root, tmp_path / "held", {"val": (3, "test")})
    r = _eval(tiny_ck, tmp_path / "held", tmp_path / "ev", "--split", "test", "--nuisance-set", "shift:1")
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert "baselines" not in rep
    assert "split 'train' not in" in rep["baselines_skipped"] and "--no-baselines" in rep["baselines_skipped"]
    assert "baselines skipped: the baselines need the rectangle 'train' split" in r.output
    assert rep["nuisance"]["baseline"] is None and "baseline_auroc" not in rep["nuisance"]["mean"]
    assert list(rep["nuisance"]["conditions"]) == ["clean", "shift 1 px"]
    assert 0.0 <= rep["metrics"]["overall"]["auroc"] <= 1.0


def test_eval_names_a_missing_class_folder_before_scoring(tmp_path, kinect_root, tiny_ck, no_scoring):
    """#9: a copy without the cylinder folder said 'frame 3: missing RGB file .../cylinder/rgb/3.(png|jpg)'."""
    copy_kinect_layout(kinect_root, tmp_path / "two", {"val": (3, "val"), "train": (3, "train")})
    shutil.rmtree(tmp_path / "two" / "cylinder")
    r = _eval(tiny_ck, tmp_path / "two", tmp_path / "ev")
    assert r.exit_code == 1, r.output
    assert f"Error: --data {tmp_path / 'two'} has no class folder 'cylinder' (needs rectangle, cylinder, sphere)" \
        in r.output
    assert not (tmp_path / "ev" / "report.json").exists()


def test_eval_refuses_split_ids_without_frames_before_scoring(tmp_path, kinect_root, tiny_ck, no_scoring):
    """#9: splits.json lists frames the copy lacks: one error with how many and the first few (eval never
    skips frames), before scoring; the old code stopped at the first absent id, after reading the others."""
    copy_kinect_layout(kinect_root, tmp_path / "part", {"val": (8, "val"), "train": (3, "train")})
    real = json.loads((kinect_root / "splits.json").read_text())
    gone = [str(i) for i in real["sphere"]["val"][2:8]]
    for i in gone:
        for p in (tmp_path / "part" / "sphere").glob(f"*/{i}.*"):
            p.unlink()
    r = _eval(tiny_ck, tmp_path / "part", tmp_path / "ev")
    assert r.exit_code == 1, r.output
    assert f"lists 6 of its 8 sphere 'val' ids that {tmp_path / 'part' / 'sphere'} has no rgb/ + depth/ files for " \
           f"(first: {', '.join(gone[:5])}, ...)" in r.output
    assert "frames are not skipped" in r.output
    # a frame with its RGB but not its depth counts as absent too
    (next((tmp_path / "part" / "rectangle" / "depth").glob("*.png"))).unlink()
    r = _eval(tiny_ck, tmp_path / "part", tmp_path / "ev")
    assert r.exit_code == 1 and "lists 1 of its 8 rectangle 'val' ids" in r.output


def test_eval_refuses_a_shift_of_the_frame_size_before_scoring(tmp_path, kinect_root, tiny_ck, no_scoring):
    """#10: shift:70,70 (or shift:64, or one inside a '+' combination) on 64 x 64 frames moved every frame out
    of view and gave a row 'AUROC 0.500, false alarms 100%'."""
    copy_kinect_layout(kinect_root, tmp_path / "d", {"val": (2, "val")})
    for bad, moved in (("shift:70,70", "70 px down/up, at least the frame's height (64 px)"),
                       ("shift:64", "64 px down/up, at least the frame's height (64 px)"),
                       ("gamma:0.9+shift:0,-64", "64 px sideways, at least the frame's width (64 px)")):
        r = _eval(tiny_ck, tmp_path / "d", tmp_path / "ev", "--no-baselines", "--nuisance-set", "shift:2",
                  "--nuisance-set", bad)
        assert r.exit_code == 2, (bad, r.output)
        assert f"moves the content by {moved}: nothing of the frame would be left" in r.output, bad


def test_eval_refuses_a_blur_wider_than_the_frame_before_scoring(tmp_path, kinect_root, tiny_ck, no_scoring):
    """ifix-found E (session 30): blur:1e6 (a typo for 1.6, say) was taken, every clean frame scored, then the suite's
    blur row died in "MemoryError: Unable to allocate 786. TiB" (Blur pads the frame by its kernel radius). A blur
    whose kernel radius (ceil(3 sigma)) is at least the frame's smaller side is refused before scoring, as a shift
    out of the frame is."""
    copy_kinect_layout(kinect_root, tmp_path / "d", {"val": (2, "val")})
    for bad, r in (("blur:1e6", 3000000), ("gamma:0.9+blur:22", 66)):
        got = _eval(tiny_ck, tmp_path / "d", tmp_path / "ev", "--no-baselines", "--nuisance-set", "blur:1.5",
                    "--nuisance-set", bad)
        assert got.exit_code == 2, (bad, got.output)
        assert (f"blurs with a kernel of radius {r} px (3 sigma), at least the frame's smaller side (64 px)"
                in " ".join(got.output.split())), got.output
    assert [nu.largest_blur_radius(nu.parse_nuisance(t)) for t in ("blur:1.5", "blur:0", "mirror", "blur:21+blur:2")] \
        == [5, 0, 0, 63]


def test_largest_shift():
    assert nu.largest_shift(nu.parse_nuisance("shift:3,-70")) == (3, 70)
    assert nu.largest_shift(nu.parse_nuisance("shift:5")) == (5, 5)
    assert nu.largest_shift(nu.parse_nuisance("brightness:1.2+shift:-9,2+shift:4")) == (9, 4)
    assert nu.largest_shift(nu.parse_nuisance("rotate:30")) == (0, 0)


def test_nuisance_suite_skips_a_condition_that_empties_every_frame():
    """#10: a nuisance after which no frame has any foreground (here every depth reading dropped) is not
    scored into a meaningless row: it is marked skipped, left out of the mean and worst, shown as such."""
    from edge_ad.models.evaluate import nuisance_suite, nuisance_table
    from edge_ad.runtime.preprocess import PreprocessSpec
    spec = PreprocessSpec(resolution=16)
    rng = np.random.default_rng(0)

    def group(level, n=6):
        return [(np.full((16, 16, 3), level + i, np.uint8), rng.integers(1, 256, (16, 16)).astype(np.uint8))
                for i in range(n)]
    raw = {"dark": group(60), "bright": group(120)}
    calls = []

    def score(X):
        calls.append(len(X))
        return X[:, :3].mean((1, 2, 3))
    res = nuisance_suite(score, raw, "dark", {"holes": nu.DepthHoles(1.0), "half": nu.DepthHoles(0.5),
                                              "mirror": nu.Mirror()}, spec, threshold=0.0)
    c = res["conditions"]
    assert "skipped" in c["holes"] and "auroc" not in c["holes"]
    assert c["holes"]["frames_without_foreground"] == {"dark": 6, "bright": 6}
    assert c["half"]["frames_without_foreground"] == {"dark": 0, "bright": 0} and "auroc" in c["half"]
    assert len(calls) == 2 * 3                                  # clean, half, mirror: two groups each
    assert res["mean"]["auroc"] == pytest.approx(np.mean([c[k]["auroc"] for k in ("clean", "half", "mirror")]))
    assert "holes" in nuisance_table(res) and "skipped: no foreground left in any frame" in nuisance_table(res)


def test_the_shift_check_takes_height_and_width_apart(tmp_path, tiny_ck):
    """On 48 x 80 raw frames (--normal / --anomalous folders) a sideways shift of 60 px leaves part of
    the frame and is scored; 50 px down is at least the height and refused."""
    from PIL import Image

    from edge_ad.cli import main
    rng = np.random.default_rng(1)
    for name in ("norm", "odd"):
        for sub in ("rgb", "depth"):
            (tmp_path / name / sub).mkdir(parents=True)
        for i in range(2):
            depth = np.zeros((48, 80), np.uint8)
            depth[10:40, 5:75] = rng.integers(100, 200)
            Image.fromarray(rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)).save(tmp_path / name / "rgb" / f"{i}.png")
            Image.fromarray(depth).save(tmp_path / name / "depth" / f"{i}.png")

    def run(spec):
        return CliRunner().invoke(main, ["eval", "--model", str(tiny_ck), "--normal", str(tmp_path / "norm"),
                                         "--anomalous", str(tmp_path / "odd"), "--k", "0", "--n-seed", "1",
                                         "--nuisance-set", spec, "--out", str(tmp_path / spec.replace(":", "-"))])
    r = run("shift:0,60")
    assert r.exit_code == 0, r.output
    r = run("shift:50,0")
    assert r.exit_code == 2 and "50 px down/up, at least the frame's height (48 px)" in r.output, r.output
