"""Build a shipped checkpoint (weights only: generator, no discriminator or optimizer state) from a
training run, with its recipe and named scoring configuration (and izi encoder) in "scoring".

    .venv/bin/python models/kinect-rgbd/make_release.py --generator RUN/epoch_0300.pt --class rectangle \
        --search '{"name": "fg-izi", ...}' [--shift-radius R] [--encoder ENC.pt] [--val-report REPORT.json] \
        [--pixel-memory-augment "mirror;scale:1.03;rotate:3;blur:0.7"] [--silhouette-weight 2] \
        --out models/kinect-rgbd/rectangle.pt

--silhouette-weight W (the silhouette lever, runtime/silhouette.py; needs --data, an encoder and the latent bank)
stores the paired rows of the opened training frames (scoring["silhouette_bank"], and scoring["silhouette_pixels"]
with a pixel memory) and sets the configuration's silhouette_versions_weight W. Its scores are made on the raw
frames' versions (``lever_scores``: the PyTorch reference per version, runtime.silhouette's min): the val AUROC
(scoring["val"]["silhouette"]; scoring["val"]'s other numbers are those of the frames as they are, the lever off),
the normal scores and the threshold, whose train leave-one-out leaves out each frame's bank rows, its 2 paired rows
(and its pixel-memory rows) from every version's memories (``silhouette_held_out_scores``).

ENC.pt is ``{"encoder": encoder_to_dict(E), "info": {...}}`` as written by train_encoder's caller.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from edge_ad.models.checkpoint import load_generator, read_checkpoint, save_checkpoint
from edge_ad.runtime.config import SearchConfig
from edge_ad.runtime.latent_memory import trusted_original_rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generator", required=True)
    ap.add_argument("--class", dest="cls", required=True)
    ap.add_argument("--search", required=True, help="SearchConfig as JSON (the named scoring configuration, "
                    "e.g. with bank_augment_weight: the factor on the distances to the bank's augmented rows, and "
                    "bank_trusted_augment: a list of --bank-augment texts whose copies count as original rows)")
    ap.add_argument("--shift-radius", type=int, help="score_shift_radius of the released configuration "
                    "(test-time shift-min; overrides --search's; the val measurement and threshold use it)")
    ap.add_argument("--encoder", help="encoder file from izi training")
    ap.add_argument("--reuse-encoder", action="store_true",
                    help="re-release: keep the izi encoder stored in --generator's scoring section")
    ap.add_argument("--train-encoder", type=int, default=0, metavar="EPOCHS",
                    help="train the izi encoder now on the class's train split (needs --data)")
    ap.add_argument("--encoder-width", type=int, default=16)
    ap.add_argument("--encoder-seed", type=int, default=0)
    ap.add_argument("--encoder-max-shift", type=int, default=2, help="izi training: random shifts up to N px")
    ap.add_argument("--encoder-brightness", type=float, default=0.0,
                    help="izi training: foreground brightness jitter 1 +- this (models.data.photometric)")
    ap.add_argument("--encoder-white-balance", type=float, default=0.0,
                    help="izi training: colour-cast jitter, R and B gains 1 +- this")
    ap.add_argument("--encoder-target", choices=("augmented", "clean"), default="augmented",
                    help="izi training: reconstruct the jittered frame, or the frame before the light jitter")
    ap.add_argument("--data", help="kinect-rgbd root: measure val AUROC, baselines and the CI subset now")
    ap.add_argument("--ci-per-class", type=int, default=100, help="val frames per class of the CI floor test")
    ap.add_argument("--preprocess", help="preprocessing fields to set, as JSON (e.g. colour_norm, align: \"centroid\" "
                    "or \"component\", the largest component's centroid); \"auto\" for colour_reference / align_centre: "
                    "the train frames' mean foreground colour / centroid (of the readings the align step aligns)")
    ap.add_argument("--bank-augment", default="", help="augmentations of the bank's train frames: 'pose' "
                    "(runtime.latent_bank.POSE_AUGMENT), 'pose+light' (+ LIGHT_AUGMENT), 'grid2' (GRID2_AUGMENT), 'mirror', or nuisance texts joined by ';'")
    ap.add_argument("--pixel-memory-augment", default=None, metavar="TEXTS",
                    help="store a pixel memory (scoring['pixel_memory'], runtime/pixel_memory.py): the class's train "
                         "frames at the model's resolution (unaligned_uint8 under the release's preprocessing) with "
                         "these augmentations, nuisance texts joined by ';' (e.g. 'mirror;scale:1.03;rotate:3;blur:0.7'; "
                         "'none': the frames alone). Needs --data; required when --search has score_pixel_power > 0")
    ap.add_argument("--threshold-fpr", type=float, default=0.05,
                    help="calibrate the shipped threshold on the val normals at this false-alarm rate (needs --data)")
    ap.add_argument("--threshold-normals", choices=("val", "val+train-loo"), default="val",
                    help="normal frames the threshold is read from: the class's val frames, or those plus its "
                         "train frames each scored against the latent bank without its own rows (leave-one-out; "
                         "4x the sample: 400 frames)")
    ap.add_argument("--silhouette-weight", type=float, default=0.0, metavar="W",
                    help="the silhouette lever (runtime/silhouette.py): score = min(S_id, W x S_ero, S_dil) over the raw "
                         "frame's silhouette versions, the dil version also against paired rows of the opened train "
                         "frames (built here; needs --data); 0 = off (default; 2 measured)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    G = load_generator(a.generator)
    src = read_checkpoint(a.generator)
    if a.preprocess:
        if not a.data:
            raise SystemExit("--preprocess needs --data")
        G.preprocess = release_spec(G.preprocess, json.loads(a.preprocess), a.data, a.cls)
        print(f"preprocess: {G.preprocess.to_dict()}")
    train = dict(src["train"])
    train.setdefault("source_run", str(a.generator))   # a re-release keeps the original run
    cfg = SearchConfig.from_dict(json.loads(a.search))
    if a.shift_radius is not None:
        cfg = cfg.replace(score_shift_radius=a.shift_radius)
    if a.silhouette_weight:
        cfg = cfg.replace(silhouette_versions_weight=a.silhouette_weight)
    scoring = {"name": cfg.name, "search": cfg.to_dict(), "encoder": None, "encoder_train": None, "val": None,
               "latent_bank": None, "latent_bank_info": None}
    if a.reuse_encoder:
        old = src.get("scoring") or {}
        if not old.get("encoder"):
            raise SystemExit(f"--reuse-encoder: {a.generator} carries no encoder")
        scoring["encoder"], scoring["encoder_train"] = old["encoder"], old.get("encoder_train")
    elif a.encoder:
        enc = torch.load(a.encoder, map_location="cpu", weights_only=True)
        scoring["encoder"], scoring["encoder_train"] = enc["encoder"], enc["info"]
    elif a.train_encoder:
        if not a.data:
            raise SystemExit("--train-encoder needs --data")
        from edge_ad.models.data import load_kinect
        from edge_ad.models.encoder import encoder_to_dict, train_encoder
        torch.manual_seed(a.encoder_seed)
        E, info = train_encoder(G, load_kinect(a.data, a.cls, "train", G.preprocess)[1], epochs=a.train_encoder,
                                width=a.encoder_width, seed=a.encoder_seed, max_shift=a.encoder_max_shift,
                                brightness=a.encoder_brightness, white_balance=a.encoder_white_balance,
                                photometric_target=a.encoder_target)
        scoring["encoder"], scoring["encoder_train"] = encoder_to_dict(E), info
    elif cfg.z_init == "encoder":
        raise SystemExit("--search has z_init='encoder' but no --encoder was given")
    E = None
    if scoring["encoder"]:
        from edge_ad.models.encoder import encoder_from_dict
        E = encoder_from_dict(scoring["encoder"])
    if cfg.uses_latent_bank:
        if not (a.data and E is not None):
            raise SystemExit("a configuration with score_latent_power > 0 needs an encoder and --data (the bank "
                             "is E(x) of the class's train frames)")
        augment = bank_augment(a.bank_augment)
        bank = train_bank(E, a.data, a.cls, G.preprocess, augment)
        scoring["latent_bank"] = torch.from_numpy(bank)
        scoring["latent_bank_info"] = {"frames": f"kinect-rgbd {a.cls} train split", "n": len(bank),
                                       "n_frames": len(bank) // (1 + len(augment)), "augment": list(augment),
                                       "what": "E(x), the izi encoder's latents of the normal training frames "
                                               "and of their augmented copies (runtime/latent_bank.py)"}
        try:        # bank_trusted_augment must name texts of this recipe (latent_memory.trusted_original_rows)
            trusted_original_rows(len(bank), list(augment), cfg.bank_trusted_augment)
        except ValueError as e:
            raise SystemExit(f"--search: {e}")
    pixels = None
    if a.pixel_memory_augment is not None or cfg.uses_pixel_memory:
        if a.pixel_memory_augment is None or not a.data:
            raise SystemExit("a pixel memory (--search with score_pixel_power > 0) needs --data and "
                             "--pixel-memory-augment TEXTS ('none' for the train frames alone)")
        pixels = train_pixel_memory(a.data, a.cls, G.preprocess, pixel_augment(a.pixel_memory_augment))
        scoring["pixel_memory"] = torch.from_numpy(pixels.frames.copy())
        scoring["pixel_memory_info"] = {"frames": f"kinect-rgbd {a.cls} train split", "n_frames": pixels.n_frames,
                                        "augment": list(pixels.augment),
                                        "what": "the normal training frames at the model's resolution (uint8, before "
                                                "align), expanded at load with augment (runtime/pixel_memory.py)"}
    if cfg.uses_silhouette_versions:
        if not a.data:
            raise SystemExit("--silhouette-weight (the silhouette lever) needs --data: its paired rows are the class's "
                             "train frames opened")
        rows, opened = silhouette_rows(E, a.data, a.cls, G.preprocess, with_pixels=cfg.uses_pixel_memory)
        scoring["silhouette_bank"] = torch.from_numpy(rows)
        scoring["silhouette_pixels"] = None if opened is None else torch.from_numpy(opened)
        scoring["silhouette_info"] = {"frames": f"kinect-rgbd {a.cls} train split, opened (dil(ero(frame)))",
                                      "n_frames": len(rows) // 2,
                                      "what": "E of each opened train frame and of its mirror (runtime/silhouette.py); "
                                              "the dil version's paired rows"}
    if a.data:
        info = scoring["latent_bank_info"] or {}
        plain = cfg.replace(silhouette_versions_weight=0.0)     # the frames as they are (the reference search)
        scoring["val"] = measure(G, E, plain, a.data, a.cls, a.ci_per_class, bank=scoring["latent_bank"],
                                 bank_rows=list(info.get("augment") or []), pixels=pixels)
        normal_scores = scoring["val"].pop("normal_scores")
        opened = None
        if cfg.uses_silhouette_versions:       # the raw frames' versions, scored by the reference
            from edge_ad.runtime.pixel_memory import PixelMemory
            from edge_ad.runtime.silhouette import OPENED_AUGMENT
            if cfg.uses_pixel_memory:
                opened = PixelMemory(scoring["silhouette_pixels"].numpy(), G.preprocess, OPENED_AUGMENT)
            scoring["val"]["silhouette"], normal_scores = lever_val(G, E, cfg, scoring, a.data, a.cls, pixels, opened)
        print(json.dumps({k: v for k, v in scoring["val"].items()}, indent=1))
        if a.threshold_fpr:
            scoring["threshold"] = release_threshold(G, E, cfg, a, normal_scores, scoring, pixels, opened)
            print(f"threshold: {scoring['threshold']['value']:.6g} at {a.threshold_fpr} false alarms on "
                  f"{scoring['threshold']['normal']}")
    save_checkpoint(a.out, G, preprocess=G.preprocess, train=train, scoring=scoring)
    print(f"wrote {a.out} ({Path(a.out).stat().st_size / 1e6:.1f} MB)")


def release_threshold(G, E, cfg, a, val_normal_scores, scoring, pixels=None, opened=None) -> dict:
    """The shipped threshold: the (1 - a.threshold_fpr) quantile of the normal scores ("higher"), read from
    the val normals, or (--threshold-normals val+train-loo) from those plus the train frames scored
    leave-one-out (models.search.held_out_bank_scores: without the frame's rows in the latent bank and, with
    score_pixel_power > 0, in the pixel memory ``pixels``, built from the same train frames in the same
    order), with the two samples' quantiles recorded side by side so that a reader can check they agree.
    With the silhouette lever on, the train frames' held-out scores are the lever's (``silhouette_held_out_scores``;
    ``opened``: the opened frames' pixel memory when cfg has the pixel factor)."""
    import numpy as np

    from edge_ad.models.evaluate import calibrate_threshold
    val = np.asarray(val_normal_scores, float)
    thr = {"target_fpr": a.threshold_fpr, "search": cfg.to_dict()}
    if a.threshold_normals == "val":
        return {"value": calibrate_threshold(val, a.threshold_fpr), "n_normal": len(val),
                "normal": f"kinect-rgbd {a.cls} val", "rates": rate_table(val), **thr}
    from tqdm import tqdm

    from edge_ad.models.data import load_kinect, to_tensor
    from edge_ad.models.search import held_out_bank_scores
    if scoring["latent_bank"] is None:
        raise SystemExit("--threshold-normals val+train-loo needs a configuration with a latent bank")
    augment = list((scoring["latent_bank_info"] or {}).get("augment") or [])      # the bank's layout
    if cfg.uses_silhouette_versions:
        loo = silhouette_held_out_scores(G, E, cfg, scoring, raw_frames(a.data, a.cls, "train"), pixels if cfg.uses_pixel_memory else None, opened)
    else:
        X = to_tensor(load_kinect(a.data, a.cls, "train", G.preprocess)[1], G.preprocess).numpy()
        loo = held_out_bank_scores(G, X, cfg, E, scoring["latent_bank"].numpy(), augment,
                                   progress=lambda it: tqdm(it, desc="train frames, leave-one-out", unit="frame"),
                                   pixel_memory=pixels if cfg.uses_pixel_memory else None)
    value = calibrate_threshold(np.concatenate([val, loo]), a.threshold_fpr)

    def sample(scores):          # what a reader compares between the two samples
        q = [50, 90, 95]
        return {"n": len(scores), "percentiles": dict(zip(map(str, q), np.percentile(scores, q).tolist())),
                "false_alarm_rate": float((scores > value).mean())}
    return {"value": value, "n_normal": len(val) + len(loo), "rates": rate_table(np.concatenate([val, loo])),
            "normal": (f"kinect-rgbd {a.cls} val ({len(val)} frames) + train ({len(loo)} frames, each scored "
                       "against the latent bank without its own rows" + (" and the pixel memory without its own rows"
                                                                         if cfg.uses_pixel_memory else "")
                       + (" and the silhouette lever's paired rows without its own" if cfg.uses_silhouette_versions
                          else "")
                       + ": leave-one-out)"),
            "samples": {"val": sample(val), "train_leave_one_out": sample(loo)}, **thr}


RATES = [round(0.01 * i, 2) for i in range(1, 21)]     # the rate table's false-alarm rates: 1 % .. 20 %


def rate_table(normal_scores) -> dict:
    """{"0.01": threshold, ..., "0.20": threshold}: the threshold flagging at most each rate of the normal
    scores (models.evaluate.calibrate_threshold, as the shipped value), so that edge-ad calibrate at
    another --fpr than the shipped rate starts from a threshold read from the same normal frames
    (runtime/calibrate.model_threshold_at) instead of a few dozen scene frames' quantile."""
    from edge_ad.models.evaluate import calibrate_threshold
    return {f"{r:.2f}": calibrate_threshold(normal_scores, r) for r in RATES}


def measure(G, E, cfg, data, cls, ci_per_class, seed=0, bank=None, bank_rows=None, pixels=None) -> dict:
    """Val AUROC (overall and per anomalous class) of (G, E, cfg), the baselines on the same frames,
    the CI subset's AUROC (first ci_per_class val frames per class) and the batched scoring time.
    bank: the latent bank (torch tensor), bank_rows its layout (the augment list, or its rows per train
    frame 1 + len(augment); the list when cfg.bank_trusted_augment names some); pixels: the pixel memory
    (runtime.pixel_memory.PixelMemory) when cfg.score_pixel_power > 0."""
    import time

    from edge_ad.models.baselines import area_scores, nearest_neighbour_scores
    from edge_ad.models.data import KINECT_CLASSES, load_kinect, to_tensor
    from edge_ad.models.evaluate import evaluate_scores
    from edge_ad.models.search import score_batch

    X = {c: to_tensor(load_kinect(data, c, "val", G.preprocess)[1], G.preprocess).numpy() for c in KINECT_CLASSES}
    train = to_tensor(load_kinect(data, cls, "train", G.preprocess)[1], G.preprocess).numpy()
    t0 = time.perf_counter()
    bank = None if bank is None else bank.numpy()
    S = {c: score_batch(G, x, cfg, seed=seed, batch_frames=50, encoder=E, latent_bank=bank,
                        bank_rows_per_frame=bank_rows, pixel_memory=pixels if cfg.uses_pixel_memory else None)
         for c, x in X.items()}
    secs = (time.perf_counter() - t0) / sum(len(x) for x in X.values())

    def table(scores, n=None):
        s = {c: v[:n] for c, v in scores.items()}
        normal = s.pop(cls)
        return {k: round(float(v["auroc"]), 4) for k, v in evaluate_scores(normal, s).items()}

    base = {"nearest-neighbour MSE": {c: nearest_neighbour_scores(train, x) for c, x in X.items()},
            "nearest-neighbour MSE/fg": {c: nearest_neighbour_scores(train, x, fg_power=1.0) for c, x in X.items()},
            "foreground area": {c: area_scores(train, x) for c, x in X.items()}}
    return {"split": "val", "n_per_class": {c: len(x) for c, x in X.items()}, "seed": seed,
            "normal_scores": [float(v) for v in S[cls]],
            "auroc": table(S), "baselines": {k: table(v) for k, v in base.items()},
            "batched_seconds_per_frame": round(secs, 4),
            "ci_subset": {"max_per_class": ci_per_class, "seed": seed, "auroc_overall": table(S, ci_per_class)["overall"]}}


def raw_frames(data, cls, split: str) -> list:
    """The class's raw frames of a kinect-rgbd split, [(rgb (H, W, 3) uint8, depth (H, W))] in the split's order
    (frame i of the bank, the pixel memory and the paired rows is the split's i-th id)."""
    from edge_ad.models.data import kinect_split_ids
    from edge_ad.runtime.sources.folder import read_pair
    return [read_pair(Path(data) / cls, str(i)) for i in kinect_split_ids(data, cls, split)]


def silhouette_rows(E, data, cls, spec, with_pixels: bool) -> tuple:
    """The silhouette lever's paired rows of the class's train frames (split order): E of each opened frame and of
    its mirror (runtime.silhouette.opened_inputs), float32 (2 N, z_dim), and with ``with_pixels`` the opened frames
    (runtime.silhouette.opened_uint8) uint8 (N, R, R, 4), else None."""
    import numpy as np

    from edge_ad.models.encoder import encoder_latents
    from edge_ad.runtime.silhouette import opened_inputs, opened_uint8
    frames = raw_frames(data, cls, "train")
    rows = encoder_latents(E, np.concatenate([opened_inputs(*f, spec) for f in frames])).astype(np.float32)
    return rows, (np.stack([opened_uint8(*f, spec) for f in frames]) if with_pixels else None)


def lever_scores(G, E, cfg, frames, memories: dict, pixels=None, opened=None, exclude=None,
                 batch_frames: int = 50) -> "np.ndarray":
    """(N,) silhouette-lever scores of raw ``frames`` [(rgb, depth)] by the PyTorch reference
    (models.silhouette_reference.score_versions: the versions as the runtime makes them, each scored by
    models.search.score_batch with the lever off, runtime.silhouette's min; edge-ad eval's scoring of a lever model).
    ``memories``: {version: the runtime LatentMemory it is measured against} (id, ero: the bank; dil: the bank + the
    paired rows); ``pixels`` / ``opened``: the pixel memory and the opened frames' (runtime PixelMemory) when cfg has
    the pixel factor (the dil version: the nearer of the two, runtime.silhouette.PairedPixelMemory);
    ``exclude``: pixel-memory frames left out (held-out scoring)."""
    from edge_ad.models.silhouette_reference import lever_pixel_memories, score_versions
    pix = lever_pixel_memories(cfg, pixels, opened)
    return score_versions(G, frames, cfg, {v: (m, pix[v]) for v, m in memories.items()}, G.preprocess,
                          batch_frames=batch_frames, encoder=E, exclude=exclude)[0]


def lever_memories(cfg, scoring) -> dict:
    """{version: runtime LatentMemory} of the silhouette lever from the release's scoring section
    (models.silhouette_reference.lever_latent_memories: the latent bank for id and ero, it plus the paired rows
    for dil)."""
    from edge_ad.models.silhouette_reference import lever_latent_memories
    return lever_latent_memories(cfg, scoring["latent_bank"].numpy(),
                                 list(scoring["latent_bank_info"].get("augment") or []),
                                 scoring["silhouette_bank"].numpy())


def lever_val(G, E, cfg, scoring, data, cls, pixels=None, opened=None) -> tuple:
    """({"auroc": {...}, ...}, the class's val normal scores): every class's val frames scored with the lever
    (``lever_scores``)."""
    from edge_ad.models.data import KINECT_CLASSES
    from edge_ad.models.evaluate import evaluate_scores
    mem = lever_memories(cfg, scoring)
    S = {c: lever_scores(G, E, cfg, raw_frames(data, c, "val"), mem, pixels, opened) for c in KINECT_CLASSES}
    normal = S.pop(cls)
    return ({"auroc": {k: round(float(v["auroc"]), 4) for k, v in evaluate_scores(normal, S).items()},
             "n_per_class": len(normal), "scored_by": "make_release.lever_scores (raw frames' versions, PyTorch)"},
            [float(v) for v in normal])


def silhouette_held_out_scores(G, E, cfg, scoring, frames, pixels=None, opened=None, which=None) -> "np.ndarray":
    """(N,) (or len(which),: the frames ``which`` only) lever scores of the release's own train ``frames``
    [(rgb, depth)] (split order: frame i owns the latent bank's rows [i A, (i + 1) A), the paired rows [2 i, 2 i + 2)
    and pixel-memory frame i of both pixel memories), each scored as an unseen frame would be: every version
    against the memories without frame i's rows (LatentMemory.subset; the pixel distances with exclude [i])."""
    import numpy as np
    mem = lever_memories(cfg, scoring)
    base, paired = mem["id"], mem["dil"]
    N = len(frames)
    A = base.shape[0] // N
    if base.shape[0] != A * N or paired.shape[0] != A * N + 2 * N:
        raise SystemExit(f"held-out scores: the bank ({base.shape[0]} rows) and the paired rows "
                         f"({paired.shape[0] - base.shape[0]}) do not hold A and 2 rows for each of the {N} train frames")
    which = range(N) if which is None else list(which)
    out = np.empty(len(which))
    for j, i in enumerate(which):
        keep = np.ones(paired.shape[0], bool)
        keep[i * A:(i + 1) * A] = False
        keep[A * N + 2 * i:A * N + 2 * i + 2] = False
        held = {"id": base.subset(keep[:A * N]), "ero": base.subset(keep[:A * N]), "dil": paired.subset(keep)}
        out[j] = lever_scores(G, E, cfg, [frames[i]], held, pixels, opened, exclude=[i])[0]
    return out


def release_spec(spec, fields: dict, data, cls):
    """spec with ``fields`` set; "auto" colour_reference / align_centre measured on the class's train frames."""
    from edge_ad.models.data import load_kinect, spec_with
    from edge_ad.runtime.preprocess import PreprocessSpec
    u8 = load_kinect(data, cls, "train", PreprocessSpec.from_dict({**spec.to_dict(), "align": "none"}))[1]
    return spec_with(spec, fields, u8)


def bank_augment(text: str) -> tuple:
    from edge_ad.runtime.latent_bank import GRID2_AUGMENT, LIGHT_AUGMENT, POSE_AUGMENT
    if text in ("", "none"):
        return ()
    if text == "pose":
        return POSE_AUGMENT
    if text == "pose+light":
        return POSE_AUGMENT + LIGHT_AUGMENT
    if text == "grid2":
        return GRID2_AUGMENT
    if text == "mirror":
        return ("mirror",)
    return tuple(t.strip() for t in text.split(";") if t.strip())


def pixel_augment(text: str) -> tuple:
    """--pixel-memory-augment's texts: 'none' or '' for none, else nuisance texts joined by ';' (checked)."""
    from edge_ad.runtime.pixel_memory import check_pixel_augment
    texts = () if text.strip() in ("", "none") else tuple(t.strip() for t in text.split(";") if t.strip())
    try:
        return tuple(check_pixel_augment(list(texts)))
    except ValueError as e:
        raise SystemExit(f"--pixel-memory-augment: {e}")


def train_pixel_memory(data, cls, spec, augment) -> "PixelMemory":
    """The pixel memory of the class's train frames (runtime.pixel_memory.PixelMemory): each frame as
    runtime.latent_bank.unaligned_uint8 gives it under the release's preprocessing ``spec``, (N, R, R, 4)
    uint8 in the split's order (held_out_bank_scores leaves frame i's rows out), expanded with ``augment``."""
    import numpy as np

    from edge_ad.runtime.latent_bank import unaligned_uint8
    from edge_ad.runtime.pixel_memory import PixelMemory
    frames = np.stack([unaligned_uint8(*f, spec) for f in raw_frames(data, cls, "train")])
    return PixelMemory(frames, spec, augment)


def train_bank(E, data, cls, spec, augment) -> "np.ndarray":
    """E of the class's train frames and of their augmented copies (runtime.latent_bank.bank_inputs),
    float32 (N * (1 + len(augment)), z_dim), frame by frame in that order."""
    import numpy as np

    from edge_ad.models.encoder import encoder_latents
    from edge_ad.runtime.latent_bank import bank_inputs
    X = np.concatenate([bank_inputs(*f, spec, augment, index=n) for n, f in enumerate(raw_frames(data, cls, "train"))])
    return encoder_latents(E, X)


if __name__ == "__main__":
    main()
