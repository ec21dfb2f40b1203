"""Reproduce the silhouette tables of HISTORY.md (session 32, audit 31 #9): which score term moves when the
silhouette is one pixel smaller (``depth-edge-erode:1``) or larger (``depth-edge-spurs:1``), and the paired
silhouette lever, measured offline on val from a shipped model file.

    .venv/bin/python models/kinect-rgbd/silhouette_levers.py --class sphere [--model PATH] [--n 100] \
        [--conditions clean,depth-edge-erode:1,depth-edge-spurs:1,brightness:0.8,...] [--cache DIR]

The score is rebuilt term by term from the file (torch: generator, izi encoder; runtime: latent memory, pixel
memory), as the runtime makes it for the shipped configurations (k = 0 steps, z0 = E(x'), one seed): per
shift-min copy x' of frame x, log score = log L + a log d_lat + q log d_pix - p log fg (L = mean squared error
of G(E(x')) to x', d_lat = E(x')'s bank distance, d_pix = the frame's pixel distance, fg its foreground share;
floors as runtime/score_scale.py), the score the minimum over the copies.

Table 1, per nuisance: the median change of each log term of the centre copy (normals / anomalies, nuisance
minus clean) and the AUROC / false alarms / flagged at the file's threshold when that one term takes its clean
value: the term whose clean value removes the false alarms drives them.

Table 2, levers. Each frame is also scored as VERSIONS made on the raw frame (before depth_fill / close /
alignment): ``ero`` = DepthEdgeErode(1), ``dil`` = DepthEdgeSpurs(1.0) (runtime/nuisance.py). PAIRED memories:
the id and ero versions are measured against the file's bank / pixel memory; the dil version against those plus
copies of the OPENED train frames, open = dil(ero(frame)), and their mirrors (E of them; the frames themselves for
the pixel memory): a 1-px eroded input dilated is its frame opened (ero(x) then dil = open(x), the frame without
its 1-px-wide structures, which erosion deletes), a dilated input eroded is its frame closed (~ the frame).
  shipped                       the file's score
  paired d_lat                  d_lat = min over the versions (paired); L, fg, d_pix of the frame as given
  paired d_lat + d_pix          both memories' distances the minimum over the versions (paired)
  paired full min               the minimum over the versions of each version's own score (paired memories)
  paired full min over id, dil  the same without the ero version (2 scorings a frame instead of 3)
  paired full min, ero x w      the ero version's score times w (--ero-weight, default 2): ero versions of
                                anomalies find the bank too, a dilated normal needs its ero version only
Threshold of a lever row: its clean val normals at the rate the file's threshold gives them (a val-only
stand-in for make_release.py's 400-normal rule); the shipped row also at the file's own threshold. Nuisance
rows: each text drawn as `edge-ad eval --nuisance-set TEXT` alone (nuisance seed 0, number 1).
Cells: AUROC / false alarms % / anomalies flagged %. Cost per class and condition on one core: sphere ~30 s,
rectangle ~3 min, cylinder (--n 50) ~5 min (the pixel distances of three versions); cached in --cache, by the
model file's sha256.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from edge_ad.models.checkpoint import CheckpointScoring, load_generator, resolve_scoring
from edge_ad.models.data import KINECT_CLASSES, kinect_split_ids
from edge_ad.models.evaluate import calibrate_threshold
from edge_ad.runtime.data_root import default_kinect_root
from edge_ad.runtime.latent_memory import latent_memory
from edge_ad.runtime.nuisance import DepthEdgeErode, DepthEdgeSpurs, Mirror, frame_rng, parse_nuisance
from edge_ad.runtime.pixel_memory import PixelMemory
from edge_ad.runtime.preprocess import frame_to_uint8, normalize_uint8, shift_frame, shift_offsets
from edge_ad.runtime.sources.folder import read_pair
from edge_ad.runtime.truth import auroc

HERE = Path(__file__).resolve().parent
CONDITIONS = "clean,depth-edge-erode:1,depth-edge-spurs:1"
_RNG = np.random.default_rng(0)                 # DepthEdgeSpurs(1.0) draws, but takes every pixel at fraction 1
VERSIONS = {"id": lambda r, d: (r, d), "ero": lambda r, d: DepthEdgeErode(1)(r, d),
            "dil": lambda r, d: DepthEdgeSpurs(1.0)(r, d, _RNG)}
TERMS = ("L", "d_lat", "d_pix", "fg")
CELL = "%.3f / %.0f %% / %.1f %%"                # AUROC / false alarms / anomalies flagged


def opened(rgb, depth):
    """open = dil(ero(frame)): the frame's silhouette without its 1-px-wide structures."""
    return VERSIONS["dil"](*VERSIONS["ero"](rgb, depth))


class Model:
    """A model file's scoring pieces: G, E, cfg, spec, the latent memory, the pixel memory (or None), the
    threshold, and the paired copies: unit E of the opened train frames and mirrors (2 N, z), and a pixel
    memory of the opened frames (+ mirror)."""

    def __init__(self, path, data: Path, cls: str):
        st = CheckpointScoring.read(path)
        self.cfg, self.spec = resolve_scoring(st, "checkpoint")
        self.G, self.E = load_generator(path).eval(), st.encoder().eval()
        self.memory = latent_memory(st.latent_bank(), self.cfg, st.bank_augment())
        self.pixels = st.pixel_memory(self.spec) if self.cfg.uses_pixel_memory else None
        self.threshold = float(st.threshold(self.cfg, self.spec)["value"])
        train = [read_pair(data / cls, str(i)) for i in kinect_split_ids(data, cls, "train")]
        u8 = np.stack([frame_to_uint8(*opened(*f), self.spec) for f in train])          # (N, R, R, 4)
        mu8 = np.stack([frame_to_uint8(*opened(*Mirror()(*f)), self.spec) for f in train])
        self.open_rows = _unit(np.concatenate([self.encode(normalize_uint8(x, self.spec)) for x in (u8, mu8)]))
        self.open_pixels = PixelMemory(u8, self.spec, ["mirror"]) if self.pixels is not None else None

    def encode(self, X: np.ndarray) -> np.ndarray:
        """E(X) (N, z) float64 of preprocessed frames X (N, 4, R, R)."""
        with torch.no_grad():
            return self.E(torch.from_numpy(np.asarray(X, np.float32))).flatten(1).double().numpy()

    def terms(self, X: np.ndarray, paired: bool) -> dict:
        """Terms of frames X (N, 4, R, R): L, fg, d_lat (N, S) per shift-min copy, d_pix (N,); ``paired``: the
        latent and pixel distances also to the opened copies (the dil version's memories)."""
        cfg, out = self.cfg, {k: [] for k in ("L", "fg", "d_lat")}
        for dy, dx in shift_offsets(cfg.score_shift_radius):
            Xs = shift_frame(X, dy, dx).astype(np.float32)
            with torch.no_grad():
                e = self.E(torch.from_numpy(Xs))
                r = self.G(e.reshape(len(Xs), -1, 1, 1))
            out["L"].append(((r - torch.from_numpy(Xs)) ** 2).flatten(1).mean(1).double().numpy())
            out["fg"].append((Xs[:, 3] > -1 + 1e-3).mean((1, 2)))
            e = e.flatten(1).double().numpy()
            d = self.memory.distances(e)
            if paired:
                d = np.minimum(d, (2 - 2 * _unit(e) @ self.open_rows.T).min(1))
            out["d_lat"].append(d)
        out = {k: np.stack(v, 1) for k, v in out.items()}
        out["d_pix"] = np.ones(len(X))
        if self.pixels is not None:
            args = (cfg.pixel_shift_radius, None, cfg.pixel_gain_limits)
            out["d_pix"] = self.pixels.frame_distances(X, *args)
            if paired:
                out["d_pix"] = np.minimum(out["d_pix"], self.open_pixels.frame_distances(X, *args))
        return out

    def log_terms(self, t: dict) -> dict:
        """{term: (N, S)} the log terms whose sum over the terms is each copy's log score."""
        cfg, L = self.cfg, np.log(t["L"])
        return {"L": L,
                "d_lat": cfg.score_latent_power * np.log(np.maximum(t["d_lat"], cfg.latent_floor)),
                "d_pix": (cfg.score_pixel_power * np.log(np.maximum(t["d_pix"], cfg.pixel_floor)))[:, None]
                + 0 * L if self.pixels is not None else 0 * L,
                "fg": -cfg.score_fg_power * np.log(np.maximum(t["fg"], cfg.fg_floor))}


def _unit(a):
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def collect(m: Model, raw: dict, cond: str, cache: Path) -> dict:
    """{group: {version: log terms}} of one condition (cached as npz in ``cache``)."""
    f = cache / f"{cond.replace(':', '_').replace(',', '_')}.npz"
    if f.exists():
        z = np.load(f)
        flat = {k: z[k] for k in z.files}
    else:
        nu, flat = None if cond == "clean" else parse_nuisance(cond), {}
        for g, (c, frames) in enumerate(raw.items()):
            fr = [ff if nu is None else nu(*ff, frame_rng(0, 100000 * g + i, 1)) for i, ff in enumerate(frames)]
            for v, op in VERSIONS.items():
                X = normalize_uint8(np.stack([frame_to_uint8(*op(*ff), m.spec) for ff in fr]), m.spec)
                for k, val in m.terms(X, paired=v == "dil").items():
                    flat[f"{c}/{v}/{k}"] = val
        np.savez_compressed(f, **flat)
    keys = ("L", "fg", "d_lat", "d_pix")
    return {c: {v: m.log_terms({k: flat[f"{c}/{v}/{k}"] for k in keys}) for v in VERSIONS} for c in raw}


def levers(lt: dict, ero_weight: float = 2.0) -> dict:
    """{row: log score (N,)} of one group's versions' log terms; ``ero_weight``: the ero version's score
    factor in the "paired full min, ero x w" row."""
    score = lambda t: sum(t.values()).min(1)                                    # noqa: E731
    mins = {k: np.minimum.reduce([lt[v][k] for v in VERSIONS]) for k in TERMS}
    return {"shipped": score(lt["id"]),
            "paired d_lat": score({**lt["id"], "d_lat": mins["d_lat"]}),
            "paired d_lat + d_pix": score({**lt["id"], "d_lat": mins["d_lat"], "d_pix": mins["d_pix"]}),
            "paired full min": np.minimum.reduce([score(lt[v]) for v in VERSIONS]),
            "paired full min over id, dil": np.minimum(score(lt["id"]), score(lt["dil"])),
            f"paired full min, ero x {ero_weight:g}": np.minimum.reduce(
                [score(lt["id"]), score(lt["ero"]) + np.log(ero_weight), score(lt["dil"])])}


def _cells(normal, anomalous, log_thr) -> tuple:
    a = auroc(np.r_[normal, anomalous], np.r_[np.zeros(len(normal), bool), np.ones(len(anomalous), bool)])
    return a, 100 * (normal > log_thr).mean(), 100 * (anomalous > log_thr).mean()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--class", dest="cls", required=True, choices=KINECT_CLASSES)
    ap.add_argument("--model", help="model file (default models/kinect-rgbd/CLASS.pt)")
    ap.add_argument("--data", default=str(default_kinect_root()))
    ap.add_argument("--n", type=int, default=100, help="val frames per class (the first N)")
    ap.add_argument("--conditions", default=CONDITIONS, help="'clean' and nuisance texts, comma-separated")
    ap.add_argument("--cache", default="runs/silhouette-levers")
    ap.add_argument("--ero-weight", type=float, default=2.0, help="the ero version's score factor (a row)")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    data, model = Path(a.data), a.model or str(HERE / f"{a.cls}.pt")
    conds = a.conditions.split(",")
    if conds[0] != "clean":
        raise SystemExit("--conditions must start with 'clean' (the thresholds and Table 1 compare with it)")
    from edge_ad.runtime.manifest import sha256_file
    # keyed by the file's content: a re-released model never reads another file's terms
    cache = Path(a.cache) / f"{a.cls}-n{a.n}-{sha256_file(model)[:12]}"
    cache.mkdir(parents=True, exist_ok=True)
    m = Model(model, data, a.cls)
    order = [a.cls] + [c for c in KINECT_CLASSES if c != a.cls]
    raw = {c: [read_pair(data / c, str(i)) for i in kinect_split_ids(data, c, "val")[:a.n]] for c in order}
    lt = {}
    for cond in conds:
        lt[cond] = collect(m, raw, cond, cache)
        print(f"  collected {cond}", flush=True)
    log_thr = np.log(m.threshold)
    normal = lambda cond, f: f(lt[cond][a.cls])                                     # noqa: E731
    anomalous = lambda cond, f: np.concatenate([f(lt[cond][c]) for c in order[1:]])   # noqa: E731
    cfg = m.cfg
    print(f"\n{a.cls}: {Path(model).name}, a = {cfg.score_latent_power:g}, q = {cfg.score_pixel_power:g}, "
          f"p = {cfg.score_fg_power:g}, shift-min {cfg.score_shift_radius}; val, {a.n} frames per class")
    print("| nuisance | term | median change normals / anomalies (log) "
          "| with the clean term: AUROC / FA / flagged |")
    print("| --- | --- | --- | --- |")
    for cond in conds[1:]:
        full = lambda g: sum(g["id"].values()).min(1)                               # noqa: E731
        cells = _cells(normal(cond, full), anomalous(cond, full), log_thr)
        print(f"| {cond} | (none) | | {CELL % cells} |")
        c0 = lt[cond][a.cls]["id"]["L"].shape[1] // 2                              # the centre copy (0, 0)
        for k in TERMS:
            if k == "d_pix" and m.pixels is None:
                continue
            swap = lambda g, c=None, k=k: sum({**g["id"], k: c[k]}.values()).min(1)    # noqa: E731
            dn = np.median(lt[cond][a.cls]["id"][k][:, c0] - lt["clean"][a.cls]["id"][k][:, c0])
            da = np.median(np.concatenate([lt[cond][c]["id"][k][:, c0] - lt["clean"][c]["id"][k][:, c0]
                                           for c in order[1:]]))
            n_ = swap(lt[cond][a.cls], lt["clean"][a.cls]["id"])
            an_ = np.concatenate([swap(lt[cond][c], lt["clean"][c]["id"]) for c in order[1:]])
            print(f"| {cond} | {k} | {dn:+.2f} / {da:+.2f} | {CELL % _cells(n_, an_, log_thr)} |")
    rows = {cond: {c: levers(lt[cond][c], a.ero_weight) for c in order} for cond in conds}
    fa = max(0.01, float((rows["clean"][a.cls]["shipped"] > log_thr).mean()))
    print(f"\nlevers (threshold: the file's, then each row's clean val normals at {100 * fa:.0f} %)")
    print("| row | " + " | ".join(conds) + " |")
    print("|---" * (len(conds) + 1) + "|")
    for name in rows["clean"][a.cls]:
        thrs = ([("file threshold", log_thr)] if name == "shipped" else []) + \
            [("val threshold", np.log(calibrate_threshold(np.exp(rows["clean"][a.cls][name]), fa)))]
        for label, thr in thrs:
            cells = [_cells(rows[cond][a.cls][name], np.concatenate([rows[cond][c][name] for c in order[1:]]),
                            thr) for cond in conds]
            print(f"| {name} ({label}) | " + " | ".join("%.3f / %.0f / %.1f" % c for c in cells) + " |")


if __name__ == "__main__":
    main()
