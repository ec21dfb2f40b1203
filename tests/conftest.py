"""Shared fixtures. Real data is read from ../shared/data/kinect-rgbd beside the checkout; it is
never copied into the project."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_ad.runtime.data_root import default_kinect_root

REPO = Path(__file__).resolve().parents[1]
KINECT = default_kinect_root()   # $EDGE_AD_DATA, else ../shared/data/kinect-rgbd beside the checkout


def disk_preflight():
    """scripts/disk_preflight.py (not a package), loaded by path."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("disk_preflight", REPO / "scripts" / "disk_preflight.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class DiskReport:
    """A low disk says so: a warning before the first test when the checkout's or the temp dir's disk has
    less free space than scripts/disk_preflight.py says a run needs, and a line in the summary naming the
    tests that failed with 'No space left on device' and the free space then (a full disk otherwise
    shows up as a wall of unrelated errors). ``check()`` -> (status, lines): disk_preflight's check."""

    NO_SPACE = ("No space left on device", "[Errno 28]")

    def __init__(self, check):
        self.check, self.no_space = check, []

    def pytest_sessionstart(self, session):
        tr = session.config.pluginmanager.get_plugin("terminalreporter")
        for line in self.check()[1]:
            if not line.startswith("disk:") and tr is not None:
                tr.write_line(line, yellow=True, bold=True)

    def pytest_runtest_logreport(self, report):
        if report.failed and any(s in str(report.longrepr) for s in self.NO_SPACE):
            self.no_space.append(report.nodeid)

    def pytest_terminal_summary(self, terminalreporter):
        if self.no_space:
            terminalreporter.write_line(f"{len(self.no_space)} test phase(s) failed with 'No space left on "
                                        f"device', the first: {self.no_space[0]}", red=True, bold=True)
            for line in self.check()[1]:
                terminalreporter.write_line(line, red=True, bold=True)


def pytest_configure(config):
    import tempfile
    tmp = disk_preflight().existing(Path(config.option.basetemp or tempfile.gettempdir()))
    config.pluginmanager.register(DiskReport(lambda: disk_preflight().check(REPO, tmp, venv_ready=True)),
                                  "edge-ad-disk-report")


@pytest.fixture(scope="session")
def kinect_root() -> Path:
    if not (KINECT / "splits.json").is_file():
        pytest.fail(f"real test data missing: {KINECT} (the checkout must sit beside shared/, or set EDGE_AD_DATA)")
    return KINECT


@pytest.fixture(scope="session")
def val_frame(kinect_root):
    """val_frame(cls, i) -> {"id": "cls/fid", "rgb": H x W x 3 uint8, "depth": H x W}: the i-th raw
    val frame of a kinect-rgbd class."""
    import json

    from edge_ad.runtime.sources.folder import read_pair
    splits = json.loads((kinect_root / "splits.json").read_text())

    def frame(cls: str, i: int = 0) -> dict:
        fid = str(splits[cls]["val"][i])
        rgb, depth = read_pair(kinect_root / cls, fid)
        return {"id": f"{cls}/{fid}", "rgb": rgb, "depth": depth}
    return frame


@pytest.fixture(scope="session")
def val_frames(val_frame):
    """val_frames(n) -> [(rgb, depth)]: n raw val frames, alternating cylinder, rectangle, sphere."""
    classes = ("cylinder", "rectangle", "sphere")

    def take(n: int) -> list:
        return [(f["rgb"], f["depth"]) for f in (val_frame(classes[i % 3], i // 3) for i in range(n))]
    return take


@pytest.fixture(scope="session")
def scores_a_b_a(val_frames):
    """scores_a_b_a(scorer, z_dim=100) -> (first, other, again): frame A, frame B (other z0), frame A
    again with A's z0. Asserts the search state is restored per frame: the repeat is bit-identical
    (seed losses, error map) and B scores differently."""
    from edge_ad.runtime.config import make_z0

    def run(scorer, z_dim: int = 100):
        (rgb, depth), (rgb2, depth2) = val_frames(2)
        n_seed = scorer.n_seed
        z0 = make_z0(n_seed, z_dim, 3)
        first = scorer.score(rgb, depth, z0=z0)
        other = scorer.score(rgb2, depth2, z0=make_z0(n_seed, z_dim, 4))
        again = scorer.score(rgb, depth, z0=z0)
        assert other.score != first.score
        np.testing.assert_array_equal(again.seed_losses, first.seed_losses)
        np.testing.assert_array_equal(again.error_map, first.error_map)
        return first, other, again
    return run


@pytest.fixture
def tiny_parity_export(tmp_path, tiny_generator, val_frames):
    """tiny_parity_export(k, n_seed, n_frames) -> the manifest of tiny_generator exported WITH the parity
    check on n_frames real val frames (no float64-graph check)."""
    from edge_ad.export.exporter import export_model
    from edge_ad.runtime.config import SearchConfig

    def make(k: int, n_seed: int, n_frames: int) -> dict:
        parity = [{"id": f"f{i}", "label": None, "rgb": rgb, "depth": depth}
                  for i, (rgb, depth) in enumerate(val_frames(n_frames))]
        return export_model(tiny_generator, tmp_path / "m", search=SearchConfig(k=k, n_seed=n_seed),
                            parity_frames=parity, check_fp64=False, log=lambda *a: None)
    return make


def flip_last_bytes(path, n: int = 8) -> None:
    """Corrupt a file in place (its last n bytes inverted): a tampered model file."""
    with open(path, "r+b") as f:
        f.seek(-n, 2)
        last = f.read(n)
        f.seek(-n, 2)
        f.write(bytes(b ^ 0xFF for b in last))


@pytest.fixture
def tiny_bench(tmp_path, tiny_generator, kinect_root, monkeypatch):
    """tiny_bench(model_dir, variants) -> run_bench's results for tiny_generator (saved as a
    checkpoint) on one real frame, 2 threads, no RSS probes, the sgemm peak stubbed (test_bench
    measures it)."""
    pytest.importorskip("torch")
    from edge_ad.benchmarks import search_bench as benchmark
    from edge_ad.models.checkpoint import save_checkpoint
    from edge_ad.runtime.preprocess import PreprocessSpec
    ck = tmp_path / "g.pt"
    save_checkpoint(ck, tiny_generator, preprocess=PreprocessSpec())
    monkeypatch.setattr(benchmark, "sgemm_peak", lambda threads: 50.0)

    def run(model_dir, variants) -> dict:
        return benchmark.run_bench(str(ck), str(model_dir), n_frames=1, repeats=1, threads=2, rss=False,
                                   variants=tuple(variants), log=lambda *a: None)
    return run


@pytest.fixture(scope="session")
def tiny_generator():
    """A width-8 generator with non-trivial BatchNorm statistics (so eval-mode BN matters)."""
    torch = pytest.importorskip("torch")
    from edge_ad.models.dcgan import GanConfig, Generator, init_weights

    torch.manual_seed(0)
    G = Generator(GanConfig(features_g=8, features_d=8))
    init_weights(G)
    with torch.no_grad():
        for m in G.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.bias.uniform_(-0.1, 0.1)
    return G.eval()


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def export_tiny(tmp_path_factory, tiny_generator):
    """export_tiny(k, n_seed) -> directory of tiny_generator exported without the parity run
    (parity is the export tests' business); cached per (k, n_seed)."""
    from edge_ad.export.exporter import export_model
    from edge_ad.runtime.config import SearchConfig

    cache = {}

    def make(k: int, n_seed: int):
        if (k, n_seed) not in cache:
            d = tmp_path_factory.mktemp(f"tiny_k{k}_s{n_seed}") / "tiny"
            export_model(tiny_generator, d, search=SearchConfig(k=k, n_seed=n_seed), parity=False,
                         log=lambda *a: None)
            cache[k, n_seed] = d
        return cache[k, n_seed]

    return make


@pytest.fixture(scope="session")
def kinect_export(tmp_path_factory):
    """The shipped rectangle model (models/kinect-rgbd/rectangle.pt: izi encoder, k = 0, n_seed = 1,
    latent memory) exported without the parity run: the realistic target of batch scoring."""
    pytest.importorskip("torch")
    from edge_ad.export.exporter import export_model
    out = tmp_path_factory.mktemp("kinect_export") / "rectangle"
    export_model(REPO / "models" / "kinect-rgbd" / "rectangle.pt", out, parity=False, log=lambda *a: None)
    return out


@pytest.fixture(scope="session")
def kinect_export_r0(kinect_export, tmp_path_factory) -> Path:
    """The shipped rectangle export with its test-time shift-min off: score_shift_radius 0 in the manifest's
    search and in its threshold's record (as if released at R = 0; the shipped file has R = 1 since the
    tenth pass). The base that tests of the shift-min, the bank weight and the trusted copies compare against:
    one copy per frame, so a frame's latent distance is its own encoding's. Its threshold is NOT R = 0's: the
    value and the rates table are the shipped R = 1 ones, relabelled, and the configuration keeps its name
    (...-shift1). Kept because tests need a threshold recorded for another radius than the model's
    (test_shift_min: an R = 1 copy of this directory does not apply it) and a floor for calibrate; none
    asserts its value."""
    def radius_zero(man):
        man["search"]["score_shift_radius"] = 0
        man["threshold"]["search"]["score_shift_radius"] = 0
    return edit_manifest(kinect_export, tmp_path_factory.mktemp("kinect_export_r0") / "rectangle", radius_zero)


@pytest.fixture(scope="session")
def untrusted_rectangle(tmp_path_factory) -> Path:
    """A copy of the shipped rectangle.pt whose scoring configuration trusts no augmentation: the field
    bank_trusted_augment cleared from scoring["search"] and from its threshold's record, the configuration
    renamed '<name>-untrusted'; generator, encoder, preprocessing, latent bank and the threshold's value as
    shipped (the value is not re-measured: tests use it only to check whose threshold it is). For tests of a
    configuration without trusted copies, whatever the shipped file trusts."""
    pytest.importorskip("torch")
    import torch

    from edge_ad.models.checkpoint import read_checkpoint, with_integrity
    ck = read_checkpoint(REPO / "models" / "kinect-rgbd" / "rectangle.pt")
    scoring = ck["scoring"]
    name = scoring["search"]["name"] + "-untrusted"
    records = [scoring["search"]] + ([scoring["threshold"]["search"]] if scoring.get("threshold") else [])
    for search in records:
        search.pop("bank_trusted_augment", None)
        search["name"] = name
    scoring["name"] = name
    out = tmp_path_factory.mktemp("untrusted") / "rectangle-untrusted.pt"
    torch.save(with_integrity(ck), out)                         # a release of its own: its own content digest
    return out


def save_bank_checkpoint(path: Path, generator, encoder, bank: np.ndarray, cfg) -> Path:
    """An edge-ad checkpoint at ``path`` scoring with ``cfg`` (a SearchConfig) from the izi ``encoder``
    and the latent ``bank`` (N, z_dim) without augmented rows, on plain preprocessing."""
    import torch
    from edge_ad.models.checkpoint import save_checkpoint
    from edge_ad.models.encoder import encoder_to_dict
    from edge_ad.runtime.preprocess import PreprocessSpec
    save_checkpoint(path, generator, preprocess=PreprocessSpec(),
                    scoring={"name": cfg.name, "search": cfg.to_dict(), "encoder": encoder_to_dict(encoder),
                             "encoder_train": None, "val": None, "latent_bank": torch.from_numpy(bank),
                             "latent_bank_info": {"n": len(bank)}})
    return path


def copy_frames(dst: Path, cls: str, n: int, start: int = 0, split: str | None = None) -> Path:
    """A frame folder ``dst`` (rgb/, depth/) with n real kinect-rgbd frames of class ``cls``: the string-sorted
    ids [start:start + n] of the class, or with ``split`` ("val", ...) the ids [start:start + n] of that split in
    splits.json (frames the shipped models never saw: the sorted ids mix train and val)."""
    import json
    import shutil
    src = KINECT / cls
    if split is None:
        ids = sorted(p.stem for p in (src / "rgb").iterdir())[start:start + n]
    else:
        ids = [str(i) for i in json.loads((KINECT / "splits.json").read_text())[cls][split][start:start + n]]
        assert len(ids) == n, f"{cls} {split} has {len(ids)} frames from {start}, not {n}"
    (dst / "rgb").mkdir(parents=True)
    (dst / "depth").mkdir()
    for i in ids:
        rgb = next((src / "rgb").glob(f"{i}.*"))
        shutil.copy(rgb, dst / "rgb" / rgb.name)
        shutil.copy(src / "depth" / f"{i}.png", dst / "depth" / f"{i}.png")
    return dst


def copy_kinect_layout(kinect_root: Path, dst: Path, per_split: dict) -> Path:
    """A kinect-rgbd layout at dst: for each class the first n ids of each split in per_split
    ({real split: (n, name written in splits.json)}), frames copied."""
    import json
    import shutil
    real = json.loads((kinect_root / "splits.json").read_text())
    splits = {}
    for c in ("rectangle", "cylinder", "sphere"):
        (dst / c / "rgb").mkdir(parents=True)
        (dst / c / "depth").mkdir()
        splits[c] = {}
        for split, (n, name) in per_split.items():
            ids = real[c][split][:n]
            splits[c][name] = ids
            for i in ids:
                rgb = next((kinect_root / c / "rgb").glob(f"{i}.*"))
                shutil.copy(rgb, dst / c / "rgb" / rgb.name)
                shutil.copy(kinect_root / c / "depth" / f"{i}.png", dst / c / "depth" / f"{i}.png")
    (dst / "splits.json").write_text(json.dumps(splits))
    return dst


def run_in_threads(work, n: int = 3) -> None:
    """Run work(t) for t in range(n) on n threads at once; re-raise the first error any of them hit
    (an assertion inside a thread would otherwise only be printed)."""
    import threading
    errors = []

    def guarded(t):
        try:
            work(t)
        except BaseException as e:  # noqa: BLE001 - re-raised below
            errors.append(e)
    threads = [threading.Thread(target=guarded, args=(t,)) for t in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors


def load_kinect_script(name: str):
    """The module models/kinect-rgbd/<name>.py (a folder name that is not a package), loaded by path."""
    import importlib.util
    path = Path(__file__).resolve().parents[1] / "models" / "kinect-rgbd" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def lever_checkpoint(path: Path, out: Path, cls: str, weight: float = 2.0, with_pixels: bool = False) -> np.ndarray:
    """The checkpoint ``path`` saved as ``out`` with the silhouette lever on (runtime/silhouette.py; w_e ``weight``,
    its threshold dropped) and the paired rows of the class's kinect-rgbd train frames opened
    (make_release.silhouette_rows; ``with_pixels``: the opened frames too, for a model with a pixel memory).
    Returns the paired rows (2 N, z_dim) float32."""
    import torch

    from edge_ad.models.checkpoint import CheckpointScoring, load_generator, read_checkpoint, with_integrity
    rows, opened = load_kinect_script("make_release").silhouette_rows(
        CheckpointScoring.read(path).encoder(), KINECT, cls, load_generator(path).preprocess, with_pixels=with_pixels)
    ck = read_checkpoint(path)
    ck["scoring"]["search"]["silhouette_versions_weight"] = weight
    ck["scoring"]["threshold"] = None
    ck["scoring"]["silhouette_bank"] = torch.from_numpy(rows)
    if opened is not None:
        ck["scoring"]["silhouette_pixels"] = torch.from_numpy(opened)
    torch.save(with_integrity(ck), out)
    return rows


SPHERE = REPO / "models" / "kinect-rgbd" / "sphere.pt"


def without_lever(path: Path, out: Path) -> Path:
    """The checkpoint ``path`` (a model with the silhouette lever) saved as ``out`` with the lever off: the field
    silhouette_versions_weight cleared from scoring["search"], the paired rows (silhouette_bank, silhouette_pixels,
    silhouette_info) and the threshold (read on the lever's scores) dropped; generator, encoder, preprocessing,
    latent bank and the configuration's name as shipped: the model as released without the lever (session 33's
    sphere.pt: the same generator, encoder, bank)."""
    import torch

    from edge_ad.models.checkpoint import read_checkpoint, with_integrity
    ck = read_checkpoint(path)
    scoring = ck["scoring"]
    scoring["search"].pop("silhouette_versions_weight", None)
    for key in ("silhouette_bank", "silhouette_pixels", "silhouette_info"):
        scoring.pop(key, None)
    scoring["threshold"] = None
    torch.save(with_integrity(ck), out)                         # a release of its own: its own content digest
    return out


@pytest.fixture(scope="session")
def sphere_lever(tmp_path_factory):
    """(off, lever, rows): the shipped sphere.pt (the silhouette lever on, w_e 2, the paired rows of its 300 train
    frames opened: make_release.py --silhouette-weight 2) exported by the exporter as ``lever``; the same file with
    the lever off (``without_lever``, saved as sphere-off.pt beside) exported as ``off``: the baseline a lever test
    compares against; ``rows``: the shipped paired rows (600, z_dim) float32. Both without the parity run."""
    pytest.importorskip("torch")
    from edge_ad.export.exporter import export_model
    from edge_ad.models.checkpoint import read_checkpoint
    d = tmp_path_factory.mktemp("silhouette")
    without_lever(SPHERE, d / "sphere-off.pt")
    export_model(d / "sphere-off.pt", d / "off", parity=False, log=lambda *a: None)
    export_model(SPHERE, d / "lever", parity=False, log=lambda *a: None)
    rows = read_checkpoint(SPHERE)["scoring"]["silhouette_bank"].numpy()
    return d / "off", d / "lever", rows


def checkpoint_raw_scorer(path: Path, seed: int = 0, batch_frames: int = 64, lever_off: bool = False):
    """(G, score_raw) of the checkpoint ``path`` on the torch path: score_raw(X, frames) -> (scores (N,), winning
    versions [N] or None) of preprocessed frames X (N, 4, R, R) and the same frames raw [(rgb, depth)], frame i
    seeded frame_seed(seed, i), ``batch_frames`` at once, as
    ``edge-ad eval`` scores them: a model with the silhouette lever from the raw frames' versions
    (models.silhouette_reference.score_versions against its own memories and paired rows), one without it from X
    (models.search.score_batch). For quality tests of a shipped file, whichever it carries; ``lever_off``: the
    file's configuration with silhouette_versions_weight 0 (as ``edge-ad eval --silhouette-weight 0``)."""
    from edge_ad.models.checkpoint import CheckpointScoring, load_generator
    from edge_ad.models.search import score_batch
    G, st = load_generator(path), CheckpointScoring.read(path)
    cfg, E, bank, layout = st.search_config(), st.encoder(), st.latent_bank(), st.bank_augment()
    pixels = st.pixel_memory(G.preprocess) if cfg.uses_pixel_memory else None
    if lever_off:
        cfg = cfg.replace(silhouette_versions_weight=0.0)
    if not cfg.uses_silhouette_versions:
        return G, lambda X, frames=None: (score_batch(G, X, cfg, seed=seed, batch_frames=batch_frames, encoder=E,
                                                      latent_bank=bank,
                                                      bank_rows_per_frame=layout, pixel_memory=pixels), None)
    from edge_ad.models.silhouette_reference import lever_memories, score_versions
    rows, opened = st.silhouette_rows(G.cfg.z_dim)
    memories = lever_memories(cfg, G.preprocess, bank, layout, pixels, rows, opened)
    return G, lambda X, frames: score_versions(G, frames, cfg, memories, G.preprocess, seed=seed,
                                               batch_frames=batch_frames, encoder=E)[:2]


def edit_manifest(src: Path, dst: Path, edit) -> Path:
    """A copy of the model directory ``src`` at ``dst`` whose manifest.json went through ``edit(man)``
    (sha256 entries untouched: the manifest itself is not in its own file list)."""
    import json
    import shutil
    shutil.copytree(src, dst)
    man = json.loads((dst / "manifest.json").read_text())
    edit(man)
    (dst / "manifest.json").write_text(json.dumps(man))
    return dst


def runtime_matches_reference(model_dir: Path, cfg, plain_cfg, frames: list, G, E, bank, layout, rtol: float,
                              pixels=None):
    """Score ``frames`` ({"rgb", "depth"} dicts) with the export ``model_dir`` under ``cfg`` and under
    ``plain_cfg`` (onnxruntime CPU, one thread, frame i seeded frame_seed(0, i)); assert that cfg's
    scores and latent distances equal the float64 PyTorch reference (models.search.search_min_shift,
    ``rtol``), models' float32 score_batch (``rtol``) and the runtime's own score_batch (1e-5).
    ``pixels``: the checkpoint's PixelMemory for a configuration with the pixel factor (the shipped rectangle).
    Returns (cfg's ScoreResults, plain_cfg's, X the preprocessed frames (N, 4, R, R))."""
    import torch

    from edge_ad.models.search import score_batch, search_min_shift
    from edge_ad.runtime.config import frame_seed
    from edge_ad.runtime.preprocess import preprocess
    from edge_ad.runtime.scorer import Scorer
    s = Scorer.load(model_dir, threads=1, providers=["CPUExecutionProvider"], config=cfg)
    plain = Scorer.load(model_dir, threads=1, providers=["CPUExecutionProvider"], config=plain_cfg)
    X = np.stack([preprocess(f["rgb"], f["depth"], s.preprocess_spec) for f in frames])
    got = [s.score(f["rgb"], f["depth"], seed=frame_seed(0, i)) for i, f in enumerate(frames)]
    before = [plain.score(f["rgb"], f["depth"], seed=frame_seed(0, i)) for i, f in enumerate(frames)]
    E64 = E.double()
    try:
        for i, x in enumerate(X):
            ref = search_min_shift(G, x, cfg, seed=frame_seed(0, i), dtype=torch.float64, encoder=E64,
                                   latent_bank=bank, bank_rows_per_frame=layout, pixel_memory=pixels)
            assert got[i].score == pytest.approx(ref.score, rel=rtol)
            assert got[i].latent_distance == pytest.approx(ref.latent_distance, rel=rtol)
    finally:
        E.float()
    np.testing.assert_allclose(score_batch(G, X, cfg, seed=0, encoder=E, latent_bank=bank, bank_rows_per_frame=layout,
                                           pixel_memory=pixels),
                               [r.score for r in got], rtol=rtol)
    batch = s.score_batch([(f["rgb"], f["depth"]) for f in frames], seeds=[frame_seed(0, i) for i in range(len(frames))])
    np.testing.assert_allclose([r.score for r in batch], [r.score for r in got], rtol=1e-5)
    return got, before, X


# The slow model-quality and calibrate modules score the shipped cylinder / rectangle with their pixel memories kept
# as float32 rows (EDGE_AD_PIXEL_ROWS=float32, the store before session 35): the default uint8 store gives the same
# rows, distances and scores bit for bit (tests/test_pixel_memory.py: every search path, real frames, both stores;
# test_an_export_scores_alike_with_either_row_store), but rebuilding rows made these modules 1.2-1.4x slower (session
# 35's CI: 32 min against the 30-minute budget; cylinder mirror + roll 87 -> 119 s). Every other module, the CLI's
# subprocesses included, runs the default store.
FLOAT32_ROW_MODULES = {"test_cylinder_mirror_geometry", "test_quality_kinect", "test_calibrate",
                       "test_calibrate_threshold", "test_calibrate_light"}


@pytest.fixture(autouse=True)
def _float32_pixel_rows_in_slow_modules(request):
    # monkeypatch taken only in those modules: an autouse fixture that always took it would set monkeypatch up
    # before a test's tmp_path, so its patches (test_sources: os.scandir refused) outlived tmp_path's teardown
    if request.module.__name__.rpartition(".")[2] in FLOAT32_ROW_MODULES:
        request.getfixturevalue("monkeypatch").setenv("EDGE_AD_PIXEL_ROWS", "float32")
