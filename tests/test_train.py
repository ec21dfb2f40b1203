"""A short real training run, resume equivalence, and the train command's errors."""
import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from edge_ad.cli import main
from edge_ad.models import load_generator, read_checkpoint
from edge_ad.models.data import augment, load_kinect, photometric
from edge_ad.models.train import TrainConfig, train
from edge_ad.runtime.preprocess import PreprocessSpec


@pytest.fixture(scope="module")
def rect_train(kinect_root):
    ids, arr = load_kinect(kinect_root, "rectangle", "train")
    return ids[:64], arr[:64]


def test_short_run_lowers_generator_loss_and_writes_artifacts(tmp_path, rect_train):
    """BCE on 64 real frames: under the trained discriminator, the trained generator's loss
    -log D(G(z)) is lower than the untrained generator's (same init, same z)."""
    from edge_ad.models.dcgan import Discriminator, GanConfig, Generator, init_weights

    ids, arr = rect_train
    cfg = TrainConfig(objective="bce", epochs=6, batch_size=16, lr=2e-4, beta1=0.5, beta2=0.999,
                      features_g=8, features_d=8, sample_every=3, seed=1)
    path = train(arr, tmp_path, cfg, data_summary={"n_frames": len(ids)}, progress=False, log=lambda *_: None)
    ck = read_checkpoint(path)
    h = ck["train"]["history"]
    assert len(h["loss_g"]) == 6 and np.isfinite(h["loss_g"]).all()
    gcfg = GanConfig(features_g=8, features_d=8)
    torch.manual_seed(cfg.seed)  # the untrained generator, initialised exactly as train() does
    G0, D = Generator(gcfg), Discriminator(gcfg)
    init_weights(G0)
    D.load_state_dict(ck["discriminator"])
    G1 = load_generator(path)
    G0.eval(), D.eval()
    z = torch.randn(64, 100, 1, 1, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        loss0 = -torch.log(D(G0(z)).clamp_min(1e-12)).mean()
        loss1 = -torch.log(D(G1(z)).clamp_min(1e-12)).mean()
    assert loss1 < loss0
    assert ck["train"]["config"]["objective"] == "bce" and ck["train"]["data"]["n_frames"] == 64
    for f in ("samples_0003.png", "samples_0006.png", "loss_curve.png"):
        assert (tmp_path / f).stat().st_size > 1000
    assert G1.cfg.features_g == 8


def test_wgan_gp_objective_runs(tmp_path, rect_train):
    _, arr = rect_train
    cfg = TrainConfig(objective="wgan-gp", epochs=1, batch_size=32, features_g=4, features_d=4,
                      critic_iters=2, sample_every=0)
    ck = read_checkpoint(train(arr[:32], tmp_path, cfg, data_summary={}, progress=False, log=lambda *_: None))
    assert np.isfinite(ck["train"]["final_loss_d"])
    D = Discriminator_from(ck)
    assert not isinstance(D.disc[-1], torch.nn.Sigmoid)


def Discriminator_from(ck):
    from edge_ad.models.dcgan import Discriminator, GanConfig
    D = Discriminator(GanConfig.from_dict(ck["config"]), sigmoid=False)
    D.load_state_dict(ck["discriminator"])
    return D


def test_resume_equals_uninterrupted(tmp_path, rect_train):
    _, arr = rect_train
    kw = dict(objective="bce", batch_size=32, features_g=4, features_d=4, sample_every=2, seed=3)
    quiet = dict(data_summary={}, progress=False, log=lambda *_: None)
    train(arr, tmp_path / "a", TrainConfig(epochs=4, **kw), **quiet)
    train(arr, tmp_path / "b", TrainConfig(epochs=2, **kw), **quiet)
    train(arr, tmp_path / "b", TrainConfig(epochs=4, **kw), **quiet)  # resumes at epoch 2
    a, b = read_checkpoint(tmp_path / "a" / "last.pt"), read_checkpoint(tmp_path / "b" / "last.pt")
    assert b["train"]["epoch"] == 4
    for k, v in a["generator"].items():
        assert torch.equal(v, b["generator"][k]), k
    with pytest.raises(ValueError, match=r"different configuration \(lr 0\.0001 -> 0\.001\); use another --out$"):
        train(arr, tmp_path / "a", TrainConfig(epochs=5, **{**kw, "lr": 1e-3}), **quiet)      # not --no-resume
    gray = PreprocessSpec(colour_norm="gray", colour_reference=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="other preprocessing"):   # same config, other normalisation
        train(arr, tmp_path / "a", TrainConfig(epochs=5, **kw), spec=gray, **quiet)
    assert read_checkpoint(tmp_path / "a" / "last.pt")["train"]["epoch"] == 4   # left as it was
    # audit 26 #11: --no-resume trained afresh over an existing last.pt (hours of a run gone), and the errors
    # above advised it; now it is refused on every rank before anything is trained, the checkpoint unchanged
    before = (tmp_path / "a" / "last.pt").read_bytes()
    with pytest.raises(ValueError, match=r"last\.pt exists \(an earlier run's checkpoint\).*never replaced; use "
                                         r"another --out"):
        train(arr, tmp_path / "a", TrainConfig(epochs=1, **kw), resume=False, **quiet)
    assert (tmp_path / "a" / "last.pt").read_bytes() == before
    train(arr, tmp_path / "c", TrainConfig(epochs=1, **kw), resume=False, **quiet)     # a new --out: trains
    assert read_checkpoint(tmp_path / "c" / "last.pt")["train"]["epoch"] == 1


def test_resume_on_other_data_is_refused_naming_both(tmp_path, rect_train):
    """Audit 28 #1: a rerun with another --class (or --data) into the same --out resumed the checkpoint on the
    new frames without a word, and last.pt then claimed the new data. Now refused naming both data sets and
    what differs, last.pt byte for byte unchanged; the same data (its derived foreground share aside) resumes."""
    from edge_ad.models.data import summarize
    ids, arr = rect_train
    kw = dict(objective="bce", batch_size=32, features_g=4, features_d=4, sample_every=0, seed=3)
    quiet = dict(progress=False, log=lambda *_: None)
    rect = summarize(ids, arr, "/data/kinect-rgbd", dataset="kinect-rgbd", cls="rectangle", split="train")
    train(arr, tmp_path, TrainConfig(epochs=1, **kw), data_summary=rect, **quiet)
    before = (tmp_path / "last.pt").read_bytes()
    sphere = {**rect, "cls": "sphere"}               # the same frame ids in another class folder
    with pytest.raises(ValueError, match=rf"last\.pt was trained on /data/kinect-rgbd class rectangle split train "
                                         rf"\({len(ids)} frames, ids {rect['ids_sha256_16']}\); this run's data is "
                                         r"/data/kinect-rgbd class sphere split train .*\(cls 'rectangle' -> "
                                         r"'sphere'\): resuming would mix the two; use another --out$"):
        train(arr, tmp_path, TrainConfig(epochs=2, **kw), data_summary=sphere, **quiet)
    other = summarize(ids[:-1], arr[:-1], "/data/mine")
    with pytest.raises(ValueError, match=r"this run's data is /data/mine \(.*n_frames .*source '/data/kinect-rgbd' "
                                         r"-> '/data/mine'"):
        train(arr[:-1], tmp_path, TrainConfig(epochs=2, **kw), data_summary=other, **quiet)
    assert (tmp_path / "last.pt").read_bytes() == before
    train(arr, tmp_path, TrainConfig(epochs=2, **kw), data_summary={**rect, "foreground_fraction": 0.5}, **quiet)
    assert read_checkpoint(tmp_path / "last.pt")["train"]["epoch"] == 2
    # audit 28 #1b: the same frames read from another path (data copied to a local disk, another mount) resume,
    # said; without the frames' content hash in the checkpoint (written before it), the path still tells
    said = []
    moved = summarize(ids, arr, "/mnt/copy/kinect-rgbd", dataset="kinect-rgbd", cls="rectangle", split="train")
    train(arr, tmp_path, TrainConfig(epochs=3, **kw), data_summary=moved, progress=False, log=said.append)
    assert read_checkpoint(tmp_path / "last.pt")["train"]["epoch"] == 3
    assert f"{tmp_path / 'last.pt'}: the same frames (content sha256 {rect['frames_sha256_16']}), now read from " \
           "/mnt/copy/kinect-rgbd (trained from /data/kinect-rgbd)" in said, said
    old = {k: v for k, v in rect.items() if k != "frames_sha256_16"}     # a checkpoint's record of then
    train(arr, tmp_path / "old", TrainConfig(epochs=1, **kw), data_summary=old, **quiet)
    with pytest.raises(ValueError, match=r"\(source '/data/kinect-rgbd' -> '/mnt/copy/kinect-rgbd'\)"):
        train(arr, tmp_path / "old", TrainConfig(epochs=2, **kw), data_summary=moved, **quiet)
    train(arr, tmp_path / "old", TrainConfig(epochs=2, **kw), data_summary=rect, **quiet)   # hash added: resumes


def test_a_full_disk_while_saving_is_one_line_and_keeps_the_last_checkpoint(tmp_path, rect_train, monkeypatch):
    """Audit 28 #16: a full disk while train saved last.pt ended in a 44-line torch traceback ("basic_ios::clear:
    iostream error"), never saying "no space", and left last.pt.tmp behind. Now the checkpoint is serialised in
    memory and written with a plain file write: OSError naming last.pt, the size and the free space, the
    earlier last.pt unchanged, no last.pt.tmp; the CLI prints it as one line (edge_ad/cli.py)."""
    import builtins
    import errno
    _, arr = rect_train
    kw = dict(objective="bce", batch_size=32, features_g=4, features_d=4, sample_every=1, seed=3)
    quiet = dict(data_summary={}, progress=False, log=lambda *_: None)
    train(arr, tmp_path, TrainConfig(epochs=1, **kw), **quiet)
    before = (tmp_path / "last.pt").read_bytes()
    real_open = builtins.open

    class FullDisk:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

        def write(self, data):                          # 1000 bytes free
            self.f.write(bytes(data[:1000]))
            if len(data) > 1000:
                raise OSError(errno.ENOSPC, "No space left on device")
            return len(data)

    def full_for_tmp(file, mode="r", *a, **k):
        f = real_open(file, mode, *a, **k)
        return FullDisk(f) if str(file).endswith("last.pt.tmp") else f
    monkeypatch.setattr(builtins, "open", full_for_tmp)
    with pytest.raises(OSError) as e:
        train(arr, tmp_path, TrainConfig(epochs=2, **kw), **quiet)
    monkeypatch.undo()
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(tmp_path / "last.pt")
    assert re.fullmatch(rf"No space left on device \(\d+\.\d MB to write, \d+\.\d MB free in {re.escape(str(tmp_path))}\); "
                        rf"{re.escape(str(tmp_path / 'last.pt'))} is as it was before: free space, then the same "
                        r"command resumes from it", e.value.strerror), e.value.strerror
    assert (tmp_path / "last.pt").read_bytes() == before and not (tmp_path / "last.pt.tmp").exists()


@pytest.mark.parametrize("args", [("--width", "0"), ("--max-shift", "-2"), ("--brightness", "-1"), ("--brightness", "1"),
                                  ("--white-balance", "1.5"), ("--sample-every", "-1"), ("--snapshot-every", "-1")])
def test_train_refuses_an_out_of_range_number_at_parse_time(tmp_path, args):
    """Audit 28 #24: --width 0 ended in a 69-line oneDNN traceback; --max-shift -2, --brightness -1 were taken.
    Each is now a usage error naming the option (exit 2), before any frame is read."""
    r = CliRunner().invoke(main, ["train", "--synth", "8", "--out", str(tmp_path / "t"), "--epochs", "1", *args])
    assert r.exit_code == 2 and f"Invalid value for '{args[0]}'" in r.output, r.output
    assert not (tmp_path / "t").exists()


def test_a_second_training_into_the_same_out_is_refused(tmp_path, rect_train):
    """Audit 28 #32 (train part): two trainings started into one new --out both ran, and the last one's last.pt
    replaced the other's (#1's data check cannot see it: no checkpoint existed when both started). The training
    holds OUT/.lock: a second one is refused before anything is trained."""
    from edge_ad.runtime.results import try_lock
    _, arr = rect_train
    tmp_path.mkdir(exist_ok=True)
    with open(tmp_path / ".lock", "a") as held:                  # the first training, still running
        assert try_lock(held)
        with pytest.raises(ValueError, match=r"is being written by another edge-ad train \(it holds .*\.lock\): two "
                                             r"trainings never write one --out"):
            train(arr, tmp_path, TrainConfig(epochs=1, batch_size=32, features_g=4, features_d=4, sample_every=0),
                  data_summary={}, progress=False, log=lambda *_: None)
    assert not (tmp_path / "last.pt").exists()


def test_augment_flips_and_shifts_keep_depth_values():
    x = torch.linspace(-1, 1, 4 * 8 * 8).reshape(1, 4, 8, 8).repeat(6, 1, 1, 1)
    g = torch.Generator().manual_seed(0)
    y = augment(x, g, hflip=True, max_shift=2, brightness=0.0)
    assert y.shape == x.shape
    vals = set(x[0, 3].flatten().tolist()) | {-1.0}
    assert set(y[:, 3].flatten().tolist()) <= vals  # geometry only: no new depth values


def _fg_batch(B=16):
    """x (B, 4, 8, 8): RGB mid-grey on a foreground square, background (-1 everywhere) around it."""
    x = torch.full((B, 4, 8, 8), -1.0)
    x[:, :3, 2:6, 2:6] = 0.0          # RGB 0.5 (as 0..1)
    x[:, 3, 2:6, 2:6] = 0.3
    return x


def test_photometric_zero_amounts_change_nothing_and_draw_nothing():
    x = _fg_batch()
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    assert torch.equal(photometric(x, g, 0.0, 0.0), x)
    assert torch.equal(g.get_state(), state)     # older runs keep their random stream


def test_white_balance_scales_red_and_blue_of_the_foreground_only():
    x = _fg_batch(64)
    y = photometric(x, torch.Generator().manual_seed(0), brightness=0.0, white_balance=0.2)
    fg = x[:, 3] > -1
    assert torch.equal(y[:, 3], x[:, 3]) and torch.equal(y[:, :3][:, :, ~fg[0]], x[:, :3][:, :, ~fg[0]])
    assert torch.equal(y[:, 1], x[:, 1])                     # G kept
    gains = (y[:, [0, 2], 3, 3] + 1) / 2 / 0.5               # (B, 2) per-frame R and B gains
    assert gains.min() >= 0.8 - 1e-6 and gains.max() <= 1.2 + 1e-6
    assert gains.std() > 0.05 and not torch.allclose(gains[:, 0], gains[:, 1])   # drawn per frame and channel
    # constant over each frame's foreground
    assert torch.allclose(y[:, 0, 2:6, 2:6], y[:, 0, 3:4, 3:4].expand(-1, 4, 4))


def test_train_command_errors(tmp_path):
    r = CliRunner().invoke(main, ["train", "--out", str(tmp_path / "o")])
    assert r.exit_code != 0 and "--synth" in r.output
    r = CliRunner().invoke(main, ["train", "--data", str(tmp_path), "--class", "rectangle", "--out", str(tmp_path / "o")])
    assert r.exit_code != 0 and "splits.json" in r.output


def test_train_command_preprocess_trains_under_the_shipped_colour_norm(tmp_path):
    """--preprocess: the run trains on (and its checkpoint carries) the given preprocessing, "auto" colour
    reference = the training frames' mean foreground colour; bad JSON / align are refused by name."""
    from edge_ad.models.data import load_synth
    out = tmp_path / "gray"
    r = CliRunner().invoke(main, ["train", "--synth", "32", "--out", str(out), "--epochs", "1", "--width", "4",
                                  "--batch-size", "16", "--sample-every", "0", "--white-balance", "0.1",
                                  "--preprocess", '{"colour_norm": "gray", "colour_reference": "auto"}'])
    assert r.exit_code == 0, r.output
    G = load_generator(out / "last.pt")
    arr = load_synth(32, seed=0)[1]
    fg = arr[..., 3] > 0
    ref = [round(float(arr[..., c][fg].mean() / 255), 4) for c in range(3)]
    assert G.preprocess.colour_norm == "gray" and list(G.preprocess.colour_reference) == pytest.approx(ref)
    assert read_checkpoint(out / "last.pt")["train"]["config"]["white_balance"] == 0.1
    for bad, msg in (("{nope", "not JSON"), ('{"align": "centroid"}', "align"),
                     ('{"mask_rgb_background": false}', "mask_rgb_background"), ('{"far_mm": 900}', "far_mm"),
                     ('{"depth_fill": 3}', "depth_fill"), ('{"scene_shift": [1, 0]}', "scene_shift"),   # review 18 #4
                     ('{"depth_close": 3}', "depth_close")):
        r = CliRunner().invoke(main, ["train", "--synth", "8", "--out", str(tmp_path / "b"), "--epochs", "1",
                                      "--width", "4", "--preprocess", bad])
        assert r.exit_code != 0 and msg in r.output, r.output


def test_train_command_on_synthetic_boxes(tmp_path):
    r = CliRunner().invoke(main, ["train", "--synth", "32", "--out", str(tmp_path), "--epochs", "2",
                                  "--width", "4", "--batch-size", "16", "--sample-every", "1"])
    assert r.exit_code == 0, r.output
    G = load_generator(tmp_path / "last.pt")
    assert read_checkpoint(tmp_path / "last.pt")["train"]["data"]["source"] == "synth://"
    assert G(torch.randn(1, 100, 1, 1)).shape == (1, 4, 64, 64)


def test_resume_of_a_run_saved_before_a_config_field_existed(tmp_path, rect_train):
    """A last.pt written before TrainConfig.white_balance existed resumes (the field's default is assumed)."""
    _, arr = rect_train
    kw = dict(objective="bce", batch_size=32, features_g=4, features_d=4, sample_every=0, seed=3)
    quiet = dict(data_summary={}, progress=False, log=lambda *_: None)
    train(arr, tmp_path, TrainConfig(epochs=1, **kw), **quiet)
    ck = torch.load(tmp_path / "last.pt", map_location="cpu", weights_only=True)
    del ck["train"]["config"]["white_balance"]
    del ck["integrity"]                                 # a file of then: written before checkpoints carried a digest
    torch.save(ck, tmp_path / "last.pt")
    train(arr, tmp_path, TrainConfig(epochs=2, **kw), **quiet)
    assert read_checkpoint(tmp_path / "last.pt")["train"]["epoch"] == 2
    with pytest.raises(ValueError, match="different configuration"):   # now recorded as 0.0: 0.1 is refused
        train(arr, tmp_path, TrainConfig(epochs=3, **{**kw, "white_balance": 0.1}), **quiet)


def test_training_on_a_class_folder_of_a_split_dataset_says_its_held_out_ids_are_included(tmp_path):
    """Audit 29 #8: `edge-ad train --data kinect-rgbd/rectangle` (the class folder a newcomer sees, splits.json
    beside it) trained on all 400 frames, the 100 val ids included, without a word, and an eval on those val
    frames then looked held out (AUROC 1.000). Now train warns, naming the held-out ids and the --class way, and
    eval warns when it scores frames of the folder the checkpoint was trained on whole; a frame folder without a
    splits.json beside it (or one not listing it) trains without the warning."""
    import json

    from conftest import copy_frames
    from edge_ad.models.data import split_class_note
    root = tmp_path / "ds"
    copy_frames(root / "rectangle", "rectangle", 8)
    ids = sorted(p.stem for p in (root / "rectangle" / "rgb").iterdir())
    (root / "splits.json").write_text(json.dumps({"rectangle": {"train": ids[:6], "val": ids[6:]}}))
    r = CliRunner().invoke(main, ["train", "--data", str(root / "rectangle"), "--out", str(tmp_path / "run"),
                                  "--epochs", "1", "--width", "4", "--batch-size", "8", "--sample-every", "0"])
    assert r.exit_code == 0, r.output
    assert r.output.count("warning: ") == 1 and (
        f"warning: {root / 'rectangle'} is the 'rectangle' class of a split dataset ({root / 'splits.json'} beside "
        "it): training on all its frames, its 2 'val' ids included, so an evaluation on them is not held out; "
        f"`--data {root} --class rectangle` trains on its 'train' split only") in r.output, r.output
    assert "training on 8 frames" in r.output
    # eval then warns when the frames it scores as normal come from the folder the model was trained on whole
    copy_frames(tmp_path / "sphere", "sphere", 2)
    copy_frames(tmp_path / "other", "rectangle", 2, start=100)
    said = {}
    for normal in ("rectangle", "other"):
        folder = root / normal if normal == "rectangle" else tmp_path / normal
        r = CliRunner().invoke(main, ["eval", "--model", str(tmp_path / "run" / "last.pt"), "--normal", str(folder),
                                      "--anomalous", str(tmp_path / "sphere"), "--max-per-class", "2",
                                      "--no-baselines", "--out", str(tmp_path / f"eval-{normal}")])
        assert r.exit_code == 0, r.output
        said[normal] = r.output
    assert (f"warning: the model was trained on every frame of {root / 'rectangle'} (8 frames, its checkpoint says), "
            "the frames scored here included: these metrics are not held out") in said["rectangle"], said
    assert "not held out" not in said["other"], said["other"]
    (root / "splits.json").write_text(json.dumps({"sphere": {"train": ids[:6], "val": ids[6:]}}))
    assert split_class_note(root / "rectangle") is None                 # splits.json without this class
    (root / "splits.json").write_text("not json")
    assert split_class_note(root / "rectangle") is None
    (root / "splits.json").unlink()
    assert split_class_note(root / "rectangle") is None                 # a plain frame folder


def test_train_command_reads_a_close_range_16bit_mm_folder(tmp_path, kinect_root):
    """Review 15 #1: a 16-bit PNG millimetre dataset all within 25.5 cm (a wrist camera) could not be
    trained on ('looks like 8-bit depth levels', and near_mm / far_mm cannot be set in training). Now it
    trains, its depth read as millimetres, with one warning that the PNGs might hold 8-bit levels."""
    from test_sources import close_range_folder  # tests/ is on sys.path under pytest

    from edge_ad.models.data import load_folder
    ids = sorted(int(p.stem) for p in (kinect_root / "rectangle" / "rgb").glob("*.jpg"))[:8]
    root = close_range_folder(tmp_path / "wrist", kinect_root, ids=[str(i) for i in ids])
    said = []
    _, arr = load_folder(root, on_warning=said.append)
    mm = np.stack([np.asarray(Image.open(root / "depth" / f"{i}.png")) for i in ids]).astype(np.float64)
    assert np.array_equal(arr[..., 3], np.where(mm > 0, np.clip(np.rint(mm * 255 / 700), 1, 255), 0))
    assert len(said) == 1 and "16-bit PNGs whose readings all lie in 1..255" in said[0]
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["train", "--data", str(root), "--out", str(out), "--epochs", "1", "--width", "4",
                                  "--batch-size", "8", "--sample-every", "0"])
    assert r.exit_code == 0, r.output
    assert r.output.count("warning: depth ") == 1 and "read as millimetres" in r.output
    assert (out / "last.pt").is_file()
