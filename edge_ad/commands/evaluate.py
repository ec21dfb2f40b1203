"""``edge-ad eval``: score normal and anomalous frames with the PyTorch reference search and report
AUROC / AP / F1-max per anomalous class, with ROC and histogram PNGs. A model with the silhouette lever
(runtime/silhouette.py) is scored from the raw frames: each frame's versions as the runtime makes them, each scored by
the reference, the least weighted score (models/silhouette_reference.py); the report also counts the winners."""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Optional

import click

from .options import FiniteFloat, check_out_place, model_file
from .stop import EXIT_CODES, unwind_on_sigterm

EXIT_SIGINT = 130          # what a shell reports for a process ended by Ctrl-C (SIGINT)
SCORE_CHUNK = 4            # frames scored between two saves when they are scored one by one (the weights searched)


@click.command("eval")
@click.option("--model", "model_path", type=click.Path(exists=True), callback=model_file, required=True,
              help="generator checkpoint (edge-ad, study state_dict or TorchScript).")
@click.option("--data", type=click.Path(exists=True, file_okay=False), help="kinect-rgbd root.")
@click.option("--class", "cls", help="normal class of kinect-rgbd; the other classes are anomalies.")
@click.option("--split", default="val", show_default=True)
@click.option("--normal", "normal_dir", type=click.Path(exists=True, file_okay=False),
              help="folder of normal frames (instead of --data/--class).")
@click.option("--anomalous", "anomalous_dirs", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="folder(s) of anomalous frames (repeatable).")
@click.option("--synth", "synth_n", type=click.IntRange(min=0), default=0, help="evaluate on N rendered frames (boxes normal).")
@click.option("--max-per-class", type=click.IntRange(min=0), default=0,
              help="use only the first N frames of each group (0: all).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="directory for report.json, threshold.json, roc.png, histogram.png; one that holds an earlier "
                   "evaluation's is refused (never overwritten).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="run seed for the initial latents.")
@click.option("--lr-z", type=FiniteFloat(), help="override the search's lr_z.")
@click.option("--lr-theta", type=FiniteFloat(), help="override lr_theta (0: z-only search).")
@click.option("--n-seed", type=click.IntRange(min=1), help="override n_seed.")
@click.option("--k", "k", type=click.IntRange(min=0), help="override the number of steps k.")
@click.option("--fg-power", "fg_power", type=FiniteFloat(),
              help="override score_fg_power (score / foreground share ** p; 0: reference plain mean).")
@click.option("--latent-power", "latent_power", type=FiniteFloat(),
              help="override score_latent_power (score * latent-memory distance ** p; 0: off).")
@click.option("--pixel-power", "pixel_power", type=FiniteFloat(min=0),
              help="override score_pixel_power q (score * pixel-memory distance ** q: the mean squared difference "
              "of the frame to the nearest frame of the checkpoint's pixel memory; 0: off). q > 0 needs a checkpoint "
              "that carries a pixel memory (scoring['pixel_memory']).")
@click.option("--pixel-shift-radius", "pixel_shift_radius", type=click.IntRange(min=0),
              help="override pixel_shift_radius R_p (the pixel distance's own shift search: d_pix of a frame is the "
              "minimum over the frame moved by up to R_p px; the same factor for every shift-min copy; 0: the frame "
              "as given).")
@click.option("--shift-radius", "shift_radius", type=click.IntRange(min=0),
              help="override score_shift_radius R (test-time shift-min: each frame's score is the minimum over "
              "its copies shifted by up to R px; 0: off; costs (2R + 1)^2 scorings per frame).")
@click.option("--silhouette-weight", "silhouette_weight", type=FiniteFloat(min=0.0),
              help="override silhouette_versions_weight w_e (the silhouette lever, runtime/silhouette.py: score = "
              "min(S_id, w_e S_ero, S_dil) over each raw frame's versions; 0: off, else >= 1); on needs the "
              "checkpoint's paired rows (make_release.py --silhouette-weight).")
@click.option("--bank-augment-weight", "bank_augment_weight", type=FiniteFloat(),
              help="override bank_augment_weight w >= 1 (latent distance = min(nearest original bank row, "
              "w * nearest augmented copy); 1: all rows alike).")
@click.option("--bank-trusted-augment", "bank_trusted_augment", multiple=True, metavar="TEXT",
              help="override bank_trusted_augment (repeatable): an augmentation text of the latent bank (e.g. "
              "brightness:1.2) whose copies count as original rows (factor 1, not w); 'none' for none.")
@click.option("--scoring", "scoring", type=click.Choice(["checkpoint", "reference"]), default="checkpoint",
              show_default=True, help="start from the checkpoint's named scoring configuration and its "
              "preprocessing (if it carries one), or from the algorithm's reference configuration (SearchConfig "
              "defaults) on plain preprocessing (the checkpoint's without colour_norm / align / scene levers, "
              "as the generator was trained); overrides apply on top and rename the configuration.")
@click.option("--baselines/--no-baselines", default=True, show_default=True,
              help="also report nearest-neighbour baselines (NN MSE, NN MSE per foreground pixel, the model's own "
              "fg power) and the foreground area against the class's train frames (kinect-rgbd only): on plain "
              "preprocessing (the issues' definition) and, where the model's preprocessing differs (colour_norm, "
              "align), on the model's as well; each labelled with its preprocessing.")
@click.option("--batch-frames", type=click.IntRange(min=0), default=32, show_default=True,
              help="frames scored at once by z-only configurations (same numbers, faster); 0: one by one.")
@click.option("--calibrate-fpr", type=FiniteFloat(0, 1, min_open=True, max_open=True), default=0.05,
              show_default=True, help="save a threshold flagging this share of normal frames (threshold.json): a "
              "share in (0, 1), 0.05 = 5 %; checked before any frame is scored.")
@click.option("--nuisance", "nuisance", is_flag=True,
              help="also run the nuisance suite: each nuisance applied to the raw frames of every group; "
              "AUROC, false alarms and anomalies flagged at the model's threshold (report.json 'nuisance').")
@click.option("--nuisance-set", "nuisance_set", multiple=True, metavar="SPEC",
              help="a nuisance of the suite instead of the default ones (repeatable), e.g. brightness:1.3, "
              "wb:1.1,1,0.9, shift:2, mirror, rgb-noise:8, depth-noise:10, depth-offset:30, gamma:0.8, offset:-30, "
              "contrast:1.2, blur:1, jpeg:40, depth-holes:0.05, depth-edge-spurs:0.1, rotate:3, scale:1.05, fg-blur:1, "
              "fg-rotate:3, fg-scale:1.05 (fg-: colours resampled from pixels with a depth reading only), joined with '+'.")
@click.option("--nuisance-seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="seed of the nuisances' noise; each row also draws by its place in the list (docs/evaluate.md): "
              "rerun the same list in the same order to reproduce a row.")
@click.option("--threads", type=click.IntRange(min=0), default=0, help="torch CPU threads (0: torch's default).")
def cmd(model_path, data, cls, split, normal_dir, anomalous_dirs, synth_n, max_per_class, out_dir, seed,
        lr_z, lr_theta, n_seed, k, fg_power, latent_power, shift_radius, silhouette_weight, bank_augment_weight,
        bank_trusted_augment,
        scoring, baselines, pixel_power, pixel_shift_radius,
        batch_frames, calibrate_fpr, nuisance, nuisance_set, nuisance_seed, threads):
    """Evaluate detection quality of a generator on held-out frames."""
    # the workstation packages first: a missing one is named (edge_ad/cli.py) before anything is checked
    import torch
    from tqdm import tqdm

    from edge_ad.models.data import DataError
    from edge_ad.models.evaluate import ScoreLog, earlier_report, write_report
    from edge_ad.runtime.preprocess import PreprocessSpec

    found = earlier_report(out_dir)
    if found:
        raise click.ClickException(f"--out {out_dir} already holds an evaluation ({', '.join(found)}); choose a new "
                                   "directory (evaluations are never overwritten)")
    check_out_place(out_dir)      # before any frame is scored (an eval takes minutes), not after
    if threads:
        torch.set_num_threads(threads)
    G = _load_generator(model_path)
    overrides = dict(lr_z=lr_z, lr_theta=lr_theta, n_seed=n_seed, k=k, score_fg_power=fg_power,
                     score_latent_power=latent_power, score_shift_radius=shift_radius,
                     silhouette_versions_weight=silhouette_weight,
                     bank_augment_weight=bank_augment_weight, bank_trusted_augment=bank_trusted_augment,
                     score_pixel_power=pixel_power, pixel_shift_radius=pixel_shift_radius)
    stored, cfg, spec = _scoring_configuration(model_path, scoring, overrides)
    encoder, bank, bank_rows, pixels = _model_memories(model_path, stored, cfg, spec)
    lever = _lever_memories(model_path, stored, cfg, spec, G, bank, bank_rows, pixels)   # None without the lever
    groups, normal_name = _read_groups(data, cls, split, normal_dir, anomalous_dirs, synth_n, seed, spec)
    _say_if_trained_on(stored, Path(data) / cls if data and cls else normal_dir)
    if max_per_class:
        groups = {k_: v[:max_per_class] for k_, v in groups.items()}
    _check_both_kinds(groups, normal_name, synth_n)     # before any frame is scored
    baselines_skipped = _baselines_unavailable(data, cls) if baselines and data and cls else None
    suite = raw = None
    if nuisance or nuisance_set:
        suite, raw = _read_nuisance_suite(nuisance_set, data, cls, split, normal_dir, anomalous_dirs, synth_n, seed,
                                          max_per_class)
    if lever is not None:                        # the lever's versions are made on the raw frames
        raw = raw or _read_raw(data, cls, split, normal_dir, anomalous_dirs, synth_n, seed, max_per_class)
        odd = [f"{g} ({len(raw.get(g, ()))} raw, {len(v)} evaluated)" for g, v in groups.items()
               if len(raw.get(g, ())) != len(v)]
        if odd:
            raise click.ClickException(f"the raw frames read for the silhouette lever are not the evaluated frames: "
                                       f"{', '.join(odd)}")
    with _out_lock(out_dir):      # one eval per --out at a time: a second one into it is refused at once
        n_total = sum(len(v) for v in groups.values())
        try:   # the scores so far, kept as they are made: a stopped eval continues where it stopped (same settings)
            log = ScoreLog(Path(out_dir), _score_settings(model_path, cfg, spec, seed, batch_frames, groups))
        except ValueError as e:
            raise click.ClickException(str(e))
        resumed = log.n_scored
        if resumed:
            click.echo(f"continuing an eval stopped earlier: {resumed} of {n_total} frames already scored ({log.path})",
                       err=True)
        unwind_on_sigterm()     # SIGTERM (timeout, a lost session) stops in order, as Ctrl-C: _stopped_says, exit 143
        with _stopped_says(log, n_total):
            # -- the work: every frame scored (kept as it is made), then the baselines and the nuisance suite --
            scores, secs = _score_groups(G, groups, spec, cfg, seed, batch_frames, encoder, bank, bank_rows, pixels,
                                         tqdm, log, lever, raw)
            normal = scores.pop(normal_name)
            extra = {"model": str(model_path), "model_sha256": _file_sha256(model_path),
                     "search": cfg.to_dict(), "scoring": scoring,
                     "preprocess": (spec or PreprocessSpec()).to_dict(), "split": split, "seed": seed,
                     "max_per_class": max_per_class, "seconds_per_frame": secs / max(n_total - resumed, 1),
                     "batch_frames": batch_frames if not cfg.updates_weights else 0,
                     "torch_threads": torch.get_num_threads()}
            if lever is not None:
                extra["silhouette"] = _lever_record(cfg, groups, log)
            if baselines and data and cls and baselines_skipped is None:
                try:
                    extra["baselines"], extra["baseline_definitions"] = _baselines(data, cls, split, spec, groups,
                                                                                   normal_name, cfg, max_per_class)
                except DataError as e:     # an unreadable train frame: the model's results are still written
                    baselines_skipped = f"the {cls} 'train' split of --data could not be read: {e}"
                    click.echo(f"note: baselines skipped: {baselines_skipped}", err=True)
            if baselines_skipped is not None:
                extra["baselines_skipped"] = baselines_skipped
            if suite is not None:
                extra["nuisance"] = _nuisance(G, cfg, encoder, bank, bank_rows, seed, batch_frames, stored, normal,
                                              calibrate_fpr, suite, nuisance_seed, data, cls, raw, normal_name, spec,
                                              baselines and baselines_skipped is None, pixels, log, lever)
            report = write_report(Path(out_dir), normal_name, normal, scores, calibrate_fpr=calibrate_fpr, extra=extra)
            if (report.get("threshold") or {}).get("warning"):
                click.echo(f"warning: {Path(out_dir) / 'threshold.json'}: {report['threshold']['warning']}", err=True)
            _echo_results(report, list(scores), normal_name, extra, cls, suite is not None)
            click.echo(f"{secs / max(n_total - resumed, 1):.3f} s/frame; report: {Path(out_dir) / 'report.json'}")
        log.done()


def _file_sha256(path) -> Optional[str]:
    """sha256 of the model file ``path`` (threshold.json records it: export refuses another checkpoint's), or None."""
    from edge_ad.runtime.manifest import sha256_file
    return sha256_file(path) if Path(path).is_file() else None


@contextlib.contextmanager
def _out_lock(out_dir):
    """Hold OUT/.lock (runtime.results.try_lock, as edge-ad batch) for the eval's work: two evals started into one
    --out both passed the earlier-report check and the last one replaced the other's report; the second is now
    refused in one line."""
    from edge_ad.runtime.results import try_lock
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "a") as lock:
        if not try_lock(lock):
            raise click.ClickException(f"--out {out_dir} is being written by another edge-ad eval (it holds "
                                       f"{out / '.lock'}): two evals never write one folder; choose another --out")
        from edge_ad.models.evaluate import earlier_report
        found = earlier_report(out)           # one that finished since the check at the start
        if found:
            raise click.ClickException(f"--out {out_dir} already holds an evaluation ({', '.join(found)}); choose a "
                                       "new directory (evaluations are never overwritten)")
        yield


@contextlib.contextmanager
def _stopped_says(log, n_total: int):
    """Ctrl-C, SIGTERM or SIGHUP (unwind_on_sigterm) inside the block: one line saying how many frames are scored
    and kept in ``log``'s file, then exit 130 / 143 / 129 as a shell reports them (no traceback, no "Aborted!")."""
    try:
        yield
    except (KeyboardInterrupt, SystemExit) as e:
        if isinstance(e, SystemExit) and e.code not in EXIT_CODES:
            raise
        suite = f", and {log.n_nuisance} nuisance-suite scorings" if log.n_nuisance else ""
        click.echo(f"stopped: {log.n_scored} of {n_total} frames scored{suite}, kept in {log.path}; the same command "
                   "continues from there", err=True)
        raise SystemExit(e.code if isinstance(e, SystemExit) else EXIT_SIGINT) from None


def _score_settings(model_path, cfg, spec, seed, batch_frames, groups) -> dict:
    """What an eval's scores depend on (ScoreLog's settings): the model file's sha256, the configuration, the
    preprocessing, the seed, the batch size, and each group's frame count and content sha256 (N, R, R, 4)."""
    import hashlib

    import numpy as np

    from edge_ad.runtime.manifest import sha256_file
    from edge_ad.runtime.preprocess import PreprocessSpec
    return {"model_sha256": sha256_file(model_path), "search": cfg.to_dict(),
            "preprocess": (spec or PreprocessSpec()).to_dict(), "seed": seed, "batch_frames": batch_frames,
            "groups": {name: [len(arr), hashlib.sha256(np.ascontiguousarray(arr).data).hexdigest()]   # (also empty)
                       for name, arr in groups.items()}}


def _load_generator(model_path):
    """The generator of ``model_path``; a checkpoint that cannot be read is a one-line error."""
    from edge_ad.models.checkpoint import load_generator
    from edge_ad.models.checkpoint_errors import CheckpointError
    try:
        return load_generator(model_path)
    except CheckpointError as e:
        raise click.ClickException(str(e))


def _scoring_configuration(model_path, scoring: str, overrides: dict):
    """(the checkpoint's stored scoring, the SearchConfig, the PreprocessSpec or None) that edge-ad export
    would export (one rule: resolve_scoring) with the command line's ``overrides`` (None: not given), checked
    before anything is read: --bank-trusted-augment's texts, a shift radius the preprocessing can fill."""
    from edge_ad.models.checkpoint import CheckpointScoring, resolve_scoring
    from edge_ad.models.checkpoint_errors import CheckpointError
    from edge_ad.runtime.config import trusted_override
    from edge_ad.runtime.preprocess import PreprocessSpec, check_shift_fill
    try:
        overrides["bank_trusted_augment"] = trusted_override(overrides["bank_trusted_augment"])
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--bank-trusted-augment")
    try:       # the configuration and preprocessing edge-ad export would export (one rule)
        stored = CheckpointScoring.read(model_path)
        cfg, spec = resolve_scoring(stored, scoring, overrides)
    except CheckpointError as e:
        raise click.ClickException(str(e))
    except ValueError as e:
        raise click.UsageError(str(e))
    try:
        check_shift_fill(spec or PreprocessSpec(), cfg.score_shift_radius)
        if cfg.uses_pixel_memory:
            check_shift_fill(spec or PreprocessSpec(), cfg.pixel_shift_radius, "pixel_shift_radius")
    except ValueError as e:
        raise click.ClickException(f"{model_path}: {e}")
    return stored, cfg, spec


def _model_memories(model_path, stored, cfg, spec):
    """What the configuration scores with besides the generator, from the checkpoint, checked before any
    frame is scored: (izi encoder or None, latent bank (N, z_dim) or None, the bank's augment list,
    pixel memory or None). Also checks that a stored threshold is well-formed (the nuisance suite uses it)."""
    from edge_ad.models.checkpoint_errors import CheckpointError
    from edge_ad.runtime.latent_memory import latent_memory
    from edge_ad.runtime.preprocess import PreprocessSpec
    encoder = bank = bank_rows = pixels = None
    try:
        if cfg.z_init == "encoder":
            encoder = stored.encoder()
            if encoder is None:
                raise click.ClickException(f"{model_path}: scoring configuration {cfg.name!r} needs an encoder "
                                           "but the checkpoint carries none")
        if cfg.uses_latent_bank:
            # the bank's layout as its augment list (bank_trusted_augment names its texts)
            bank, bank_rows = stored.latent_bank(), stored.bank_augment()
            if bank is None:
                raise click.ClickException(f"{model_path}: scoring configuration {cfg.name!r} needs a latent bank "
                                           "(score_latent_power > 0) but the checkpoint carries none")
            latent_memory(bank, cfg, bank_rows)   # the bank's layout against bank_trusted_augment, before scoring
        if cfg.uses_pixel_memory:
            # the stored frames and their copies, preprocessed as the frames are scored (spec)
            pixels = stored.pixel_memory(spec or PreprocessSpec())
            if pixels is None:
                raise click.ClickException(f"{model_path}: scoring configuration {cfg.name!r} multiplies the score by "
                                           "the pixel-memory distance (score_pixel_power > 0, --pixel-power), but the "
                                           "checkpoint carries no pixel memory (scoring['pixel_memory'])")
        stored.threshold(cfg, spec)    # a stored threshold is well-formed (the nuisance suite uses it), before scoring
    except ValueError as e:      # CheckpointError, or the bank's layout
        raise click.ClickException(str(e) if isinstance(e, CheckpointError) else f"{model_path}: {e}")
    return encoder, bank, bank_rows, pixels


def _lever_memories(model_path, stored, cfg, spec, G, bank, bank_rows, pixels) -> Optional[dict]:
    """The silhouette lever's {version: (latent memory, pixel memory)} (models.silhouette_reference.lever_memories;
    the dil version's paired rows from the checkpoint, export's rule: export.exporter.resolve_silhouette_rows), None
    without the lever; a checkpoint without its paired rows is a one-line error before any frame is scored."""
    if not cfg.uses_silhouette_versions:
        return None
    from edge_ad.export.errors import ExportError
    from edge_ad.export.exporter import resolve_silhouette_rows
    from edge_ad.models.silhouette_reference import lever_memories
    from edge_ad.runtime.preprocess import PreprocessSpec
    try:
        rows, opened = resolve_silhouette_rows(cfg, stored, G.cfg.z_dim, G.cfg.resolution)
        return lever_memories(cfg, spec or PreprocessSpec(), bank, bank_rows, pixels, rows, opened)
    except (ExportError, ValueError) as e:
        raise click.ClickException(f"{model_path}: {e}")


def _lever_record(cfg, groups: dict, log) -> dict:
    """report.json's "silhouette": the lever's weight, how a frame is scored, and per group how many frames each
    version won (the clean frames; the nuisance suite's rows hold their own)."""
    from edge_ad.models.silhouette_reference import winner_counts
    return {"weight": cfg.silhouette_versions_weight,
            "score": "min(S_id, w_e * S_ero, S_dil) over each raw frame's silhouette versions (runtime/silhouette.py), "
                     "each version scored by the PyTorch reference, the dil version also against the paired rows",
            "winners": {name: winner_counts(log.won(name)) for name in groups}}


def _say_if_trained_on(stored, normal_folder) -> None:
    """A warning on stderr when the checkpoint was trained on every frame of the folder whose frames are scored
    as normal (``normal_folder``: --data/--class's class folder or --normal; None: rendered frames)."""
    from edge_ad.models.data import trained_on_note
    note = trained_on_note(stored.train_data, normal_folder) if normal_folder else None
    if note:
        click.echo(f"warning: {note}", err=True)


def _read_groups(data, cls, split, normal_dir, anomalous_dirs, synth_n, seed, spec) -> tuple[dict, str]:
    """The frames to score, preprocessed with ``spec``: ({group: uint8 (N, R, R, 4)}, the normal group's name),
    from kinect-rgbd (--data / --class: the normal class first, every class's frames checked before any is
    read), from folders (--normal / --anomalous) or rendered (--synth N)."""
    import numpy as np

    from edge_ad.models.data import KINECT_CLASSES, DataError, check_kinect_split, load_folder, load_kinect, load_synth
    from edge_ad.models.evaluate import folder_group_names
    groups: dict[str, np.ndarray] = {}
    try:
        if data and cls:
            if cls not in KINECT_CLASSES:
                raise DataError(f"--class must be one of {KINECT_CLASSES}")
            normal_name = cls
            order = [cls] + [c for c in KINECT_CLASSES if c != cls]
            for c in order:          # every class folder and listed frame present, before any is read
                check_kinect_split(data, c, split)
            for c in order:
                groups[c] = load_kinect(data, c, split, spec)[1]
        elif normal_dir and anomalous_dirs:
            dirs = (normal_dir, *anomalous_dirs)
            try:
                names = folder_group_names(dirs)        # unique: a second x/dents never replaces the first
            except ValueError as e:
                raise click.UsageError(str(e))
            normal_name = names[0]
            for name, d in zip(names, dirs):
                groups[name] = load_folder(d, spec=spec)[1]
        elif synth_n:
            _, arr, kinds = load_synth(synth_n, seed=10_000 + seed, anomaly_rate=0.5, spec=spec)
            kinds = np.array(kinds)
            normal_name = "box"
            for kname in ("box", "sphere", "cylinder"):
                groups[kname] = arr[kinds == kname]
        else:
            raise click.UsageError("give --data and --class, or --normal and --anomalous, or --synth N")
    except DataError as e:
        raise click.ClickException(str(e))
    return groups, normal_name


def _check_both_kinds(groups: dict, normal_name: str, synth_n: int) -> None:
    """AUROC needs normal AND anomalous frames: a one-line error naming each group's count when either is
    missing (a small --synth N renders few spheres and cylinders), before anything is scored: exit 2 for --synth
    (the option to change), else 1."""
    empty = [k_ for k_, v in groups.items() if not len(v)]          # each group is scored against the normals
    if not empty and len(groups) > 1:
        return
    counts = ", ".join(f"{len(v)} {k_}" for k_, v in groups.items())
    missing = "normal" if normal_name in empty else "anomalous"
    if synth_n:
        raise click.UsageError(f"--synth {synth_n} rendered {counts}: no {' and no '.join(empty)} frame, and eval "
                               "needs frames of every group (normal and each anomaly); use --synth 20 or more")
    raise click.ClickException(f"no {missing} frame to evaluate in {', '.join(empty) or 'any anomaly group'} "
                               f"({counts}): eval needs frames of every group (normal and each anomaly)")


def _baselines_unavailable(data, cls) -> Optional[str]:
    """Why the baselines cannot run (the normal class's train split they compare with is missing), said as a
    note; None when they can."""
    from edge_ad.models.data import DataError, check_kinect_split
    try:
        check_kinect_split(data, cls, "train")
    except DataError as e:
        skipped = f"the baselines need the {cls} 'train' split of --data: {e} (--no-baselines leaves them out)"
        click.echo(f"note: baselines skipped: {skipped}", err=True)
        return skipped
    return None


def nuisance_rows(texts, parse) -> dict:
    """{label: nuisance}, one row per text of ``texts`` in their order (``parse``: runtime.nuisance.parse_nuisance).
    A label already taken (a text given again: another draw, docs/evaluate.md; or one its label rounds alike,
    brightness:1.12 and 1.124 are both "brightness +12%") gets " (row K: TEXT)", K its place in the list: a
    dict by label alone kept only the last of them, without a word (audit 30 #5)."""
    rows: dict = {}
    for k, text in enumerate(texts, start=1):
        n = parse(text)
        rows[n.name if n.name not in rows else f"{n.name} (row {k}: {text})"] = n
    return rows


def _read_nuisance_suite(nuisance_set, data, cls, split, normal_dir, anomalous_dirs, synth_n, seed,
                         max_per_class) -> tuple[dict, dict]:
    """The nuisance suite ({name: Nuisance}: --nuisance-set's, else the default one) and the raw frames it
    perturbs ({group: [(rgb (H, W, 3), depth (H, W))]}), read before any scoring; a nuisance that would move
    the content out of the smallest frame is refused, and so is a blur whose kernel is as wide as its smaller side."""
    from edge_ad.runtime.nuisance import DEFAULT_SUITE, parse_nuisance, too_large_for
    try:
        suite = nuisance_rows(nuisance_set or DEFAULT_SUITE, parse_nuisance)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--nuisance-set")
    # the raw frames, read before any scoring (the shift check below needs their size)
    raw = _read_raw(data, cls, split, normal_dir, anomalous_dirs, synth_n, seed, max_per_class, "the nuisance suite")
    height = min(rgb.shape[0] for frames in raw.values() for rgb, _ in frames)
    width = min(rgb.shape[1] for frames in raw.values() for rgb, _ in frames)
    for label, n in suite.items():
        why = too_large_for(n, height, width)
        if why is not None:
            raise click.BadParameter(f"{label!r} {why}", param_hint="--nuisance-set")
    return suite, raw


def _read_raw(data, cls, split, normal_dir, anomalous_dirs, synth_n, seed, max_per_class,
              what: str = "the silhouette lever") -> dict:
    """The raw frames of the evaluated groups ({group: [(rgb (H, W, 3), depth (H, W))]}, models.evaluate.raw_groups),
    read before any scoring; one that cannot be read is a one-line error naming ``what`` needs them."""
    from edge_ad.models.data import DataError
    from edge_ad.models.evaluate import raw_groups
    from edge_ad.runtime.preprocess import FrameError
    from edge_ad.runtime.sources import SourceError
    try:
        return raw_groups(data, cls, split, normal_dir, anomalous_dirs, synth_n, seed, max_per_class)
    except (SourceError, FrameError, DataError, OSError) as e:
        raise click.ClickException(f"reading the raw frames for {what}: {e}")


def _score_groups(G, groups: dict, spec, cfg, seed, batch_frames, encoder, bank, bank_rows, pixels,
                  tqdm, log, lever: Optional[dict] = None, raw: Optional[dict] = None) -> tuple[dict, float]:
    """Every group's frames (uint8 (N, R, R, 4), preprocessed with ``spec``) scored by the PyTorch reference
    search (models.search.score_batch), a ``tqdm`` progress bar per group: ({group: scores (N,)}, seconds).
    Scored in chunks (--batch-frames for a z-only configuration, else SCORE_CHUNK frames), each appended to
    ``log`` (models.evaluate.ScoreLog) as it is made; the chunks an earlier run made are kept, not scored again,
    and frame i keeps its seed (score_batch's first_index): the scores of one uninterrupted run. With the silhouette
    lever (``lever``: its memories, ``_lever_memories``) the frames scored are ``raw``'s (the same frames, raw): each
    one's versions (models.silhouette_reference.score_versions), the winners kept in ``log`` too."""
    import numpy as np

    from edge_ad.models.data import to_tensor
    from edge_ad.models.search import score_batch
    from edge_ad.models.silhouette_reference import score_versions
    from edge_ad.runtime.preprocess import PreprocessSpec
    chunk = batch_frames if batch_frames > 0 and not cfg.updates_weights else SCORE_CHUNK
    scores, t0 = {}, time.perf_counter()
    for name, arr in groups.items():
        X = to_tensor(arr, spec).numpy()                                          # (N, 4, R, R)
        with tqdm(total=len(X), initial=len(log.scored(name)), desc=f"scoring {name}", unit="frame") as bar:
            for start in range(len(log.scored(name)), len(X), chunk):
                if lever is not None:
                    part, won, _ = score_versions(G, raw[name][start:start + chunk], cfg, lever, spec or PreprocessSpec(),
                                                  seed=seed, first_index=start, batch_frames=batch_frames,
                                                  encoder=encoder)
                else:
                    part, won = score_batch(G, X[start:start + chunk], cfg, seed=seed, batch_frames=batch_frames,
                                            encoder=encoder, latent_bank=bank, bank_rows_per_frame=bank_rows,
                                            pixel_memory=pixels, first_index=start), None
                log.add(name, part, won)
                bar.update(len(part))
        scores[name] = np.asarray(log.scored(name), dtype=float)
        # the nuisance suite's clean row: these frames, scored once
        log.know(X, scores[name], log.won(name) if lever is not None else None)
    return scores, time.perf_counter() - t0


def _echo_results(report: dict, anomalous: list, normal_name: str, extra: dict, cls, nuisance: bool) -> None:
    """The report on the terminal: per anomalous group and overall AUROC / AP / F1-max, the baselines (or why
    they were skipped) and the nuisance suite's table."""
    m = report["metrics"]
    for name in anomalous + ["overall"]:
        click.echo(f"{normal_name} vs {name:9s} AUROC {m[name]['auroc']:.3f}  AP {m[name]['ap']:.3f}  "
                   f"F1max {m[name]['f1_max']:.3f} @ {m[name]['f1_threshold']:.4g}")
    if extra.get("silhouette"):
        from edge_ad.models.evaluate import winners_table
        click.echo(winners_table({"clean": extra["silhouette"]["winners"]}))
    if extra.get("baselines"):
        n_train = next(iter(extra["baseline_definitions"].values()))["train_frames"]
        click.echo(f"baselines against the {n_train} {cls} train frames (plain preprocessing: the issues' "
                   "definition, without the model's colour_norm / align / scene levers; model preprocessing: "
                   "the model's own, where it differs):")
        width = max(map(len, extra["baselines"]))
        for bname, b in extra["baselines"].items():
            click.echo(f"  baseline {bname:{width}s} AUROC overall {b['overall']:.3f}  "
                       + "  ".join(f"vs {k_} {v:.3f}" for k_, v in b.items() if k_ != "overall"))
    if "baselines_skipped" in extra:
        click.echo(f"baselines skipped: {extra['baselines_skipped']}")
    if nuisance:
        from edge_ad.models.evaluate import nuisance_table
        nu = extra["nuisance"]
        click.echo(f"nuisance suite (threshold {nu['threshold']:.4g}, {nu['threshold_source']}):")
        click.echo(nuisance_table(nu))
        if extra.get("silhouette"):
            from edge_ad.models.evaluate import winners_table
            click.echo(winners_table({label: r["silhouette_winners"] for label, r in nu["conditions"].items()
                                      if "silhouette_winners" in r}))
        if nu.get("baseline"):
            click.echo(f"NN baseline column: {nu['baseline']}")


def _nuisance(G, cfg, encoder, bank, bank_rows, seed, batch_frames, stored, clean_normal, calibrate_fpr, suite,
              nuisance_seed, data, cls, raw, normal_name, spec, baselines, pixels=None, log=None, lever=None) -> dict:
    """The nuisance suite on ``raw`` (``models.evaluate.raw_groups``) at the model's threshold (the checkpoint's
    calibrated one when it carries one for this configuration and ``spec`` is the checkpoint's
    preprocessing; else calibrated now on the clean normal frames at --calibrate-fpr). With the silhouette lever
    (``lever``: its memories) each perturbed raw frame's versions are scored (models.silhouette_reference), and each
    row counts the winners."""
    from tqdm import tqdm

    from edge_ad.models.data import DataError, load_kinect, to_tensor
    from edge_ad.models.evaluate import calibrate_threshold, nuisance_suite
    from edge_ad.models.search import score_batch

    from edge_ad.runtime.preprocess import PreprocessSpec, plain_spec
    # a checkpoint threshold belongs to its configuration AND its preprocessing (--scoring reference: plain)
    thr = stored.threshold(cfg, spec or PreprocessSpec())
    if thr is not None:
        threshold, source = float(thr["value"]), (f"the checkpoint's, calibrated at {thr.get('target_fpr')} "
                                                  f"false alarms on {thr.get('normal', 'normal frames')}")
    else:
        threshold = calibrate_threshold(clean_normal, calibrate_fpr or 0.05)
        source = f"calibrated now on these clean normal frames at {calibrate_fpr or 0.05} false alarms"
    baseline_fn = baseline_skipped = None
    plain = plain_spec(spec or PreprocessSpec())   # the baseline as the issue defines it
    if baselines and data and cls:
        from edge_ad.models.baselines import nearest_neighbour_scores
        try:
            train = to_tensor(load_kinect(data, cls, "train", plain)[1], plain).numpy()
            baseline_fn = lambda X: nearest_neighbour_scores(train, X, fg_power=1.0)   # noqa: E731
        except DataError as e:
            baseline_skipped = f"the {cls} 'train' split of --data could not be read: {e}"
    if lever is not None:   # the versions of the perturbed raw frames (X: their own inputs, the log's key)
        from edge_ad.models.silhouette_reference import score_versions

        def score_fn(X, frames):
            def score(_):
                return score_versions(G, frames, cfg, lever, spec or PreprocessSpec(), seed=seed,
                                      batch_frames=batch_frames, encoder=encoder)[:2]
            return score(X) if log is None else log.kept_scores(X, score)
    else:
        score = lambda X: score_batch(G, X, cfg, seed=seed, batch_frames=batch_frames, encoder=encoder,  # noqa: E731
                                      latent_bank=bank, bank_rows_per_frame=bank_rows, pixel_memory=pixels)
        # each perturbed group's scores kept in ``log`` (ScoreLog) as made: a stopped eval does not redo them
        score_fn = score if log is None else (lambda X: log.kept_scores(X, score))  # noqa: E731
    res = nuisance_suite(score_fn, raw, normal_name, suite, spec, threshold, seed=nuisance_seed,
                         baseline_fn=baseline_fn, progress=lambda it: tqdm(it, desc="nuisance suite", unit="condition"),
                         baseline_spec=plain, score_raw=lever is not None)
    res["threshold_source"] = source
    res["baseline"] = (f"{NUISANCE_BASELINE}, the header's baseline of that name: nearest-neighbour MSE per "
                       "foreground pixel vs the class's train frames, without the model's colour_norm / align / "
                       "scene levers, on the same perturbed frames") if baseline_fn else None
    if baseline_skipped:
        res["baseline_skipped"] = baseline_skipped
    return res


NN_MSE, NN_MSE_PER_FG = "nearest-neighbour MSE", "nearest-neighbour MSE per foreground pixel"
PLAIN = "plain preprocessing"
# the nuisance table's baseline column: the issue-12 definition (fg^1 on plain preprocessing)
NUISANCE_BASELINE = f"{NN_MSE_PER_FG} ({PLAIN})"


def _baselines(data, cls, split, spec, groups, normal_name, cfg, max_per_class) -> tuple[dict, dict]:
    """The nearest-neighbour baselines against the class's train split, on the same frames:
    ({name: {group: AUROC, "overall": AUROC}}, {name: what it computes and on which preprocessing}).

    On plain preprocessing (``plain_spec``: the issues' definitions) always: NN MSE (issue 4), NN MSE
    per foreground pixel (fg^1, issue 12), NN MSE / fg^p for the configuration's own fg power p if it
    is another, and the foreground area. When the model's preprocessing ``spec`` differs from plain
    (colour_norm, align, scene levers: ``levers_text``), the same NN variants on ``spec`` as well, labelled with its
    levers: a baseline that normalises like the model, often the stronger one. ``groups`` are the
    evaluated frames already read with ``spec`` (uint8 (N, R, R, 4) per group)."""
    from edge_ad.models.baselines import area_scores, baseline_fg_floor, nearest_neighbour_scores
    from edge_ad.models.data import load_kinect, to_tensor
    from edge_ad.runtime.preprocess import PreprocessSpec, levers_text, plain_spec

    spec = spec or PreprocessSpec()
    levers = levers_text(spec)
    preps = {PLAIN: ("plain", plain_spec(spec) if levers else spec)}   # spec: preprocesses as plain
    if levers:
        preps[f"model preprocessing: {levers}"] = ("model", spec)
    powers = {NN_MSE: 0.0, NN_MSE_PER_FG: 1.0}
    if cfg.score_fg_power and cfg.score_fg_power != 1.0:
        powers[f"{NN_MSE}/fg^{cfg.score_fg_power:g}"] = float(cfg.score_fg_power)
    out, definitions = {}, {}
    for label, (which, pspec) in preps.items():
        train = to_tensor(load_kinect(data, cls, "train", pspec)[1], pspec).numpy()
        X = {k_: to_tensor(v, pspec).numpy() for k_, v in (
            groups.items() if pspec == spec else
            ((c, load_kinect(data, c, split, pspec)[1][:max_per_class or None]) for c in groups))}
        fns = {}
        for bname, p in powers.items():
            floor = baseline_fg_floor(p, cfg.fg_floor)   # the fg^1 at 0.01, the model's power at its floor
            fns[f"{bname} ({label})"] = (lambda v, p=p, floor=floor: nearest_neighbour_scores(
                train, v, fg_power=p, fg_floor=floor))
            definitions[f"{bname} ({label})"] = {
                "score": "min over train frames of the mean squared difference"
                         + (f" / max(foreground share, {floor:g}) ** {p:g}" if p else ""),
                "fg_power": p, "preprocessing": which, "levers": levers_text(pspec) or "none",
                "train_frames": int(len(train))}
        if which == "plain":
            area = (f"foreground area ({label})", lambda v, train=train: area_scores(train, v), dict(
                score="|foreground share - median of the train frames'| / their std", preprocessing=which,
                levers="none", train_frames=int(len(train))), X)
        for bname, fn in fns.items():
            out[bname] = _aurocs(fn, X, normal_name)
    bname, fn, definitions[bname], X = area     # listed last: not a nearest neighbour
    out[bname] = _aurocs(fn, X, normal_name)
    return out, definitions


def _aurocs(fn, X: dict, normal_name: str) -> dict:
    """{anomalous group: AUROC, "overall": AUROC} of the scores fn(frames) (N,) of each group of X."""
    from edge_ad.models.evaluate import evaluate_scores
    s = {k_: fn(v) for k_, v in X.items()}
    normal = s.pop(normal_name)
    return {k_: float(v["auroc"]) for k_, v in evaluate_scores(normal, s).items()}
