"""Reproduce the sixth pass's "tried, not shipped" table of HISTORY.md: levers on the latent memory of
an exported model against camera shifts (the rectangle's limit), measured offline on val.

    .venv/bin/python models/kinect-rgbd/pose_levers.py --model EXPORT_DIR [--member EXPORT_DIR ...]
        [--class rectangle] [--data ../shared/data/kinect-rgbd] [--cache DIR]

For every val frame of the three classes, clean and under the val suite (DEFAULT_SUITE, nuisance
seed 0) plus six harder conditions (seed 1: brightness x1.35 / x0.65, white balance 1.2/1/0.8 and
0.8/1/1.2, shifts of 1 and 4 px), it keeps the encoder latent e = E(x) (100,), the residual factor
r = score / latent distance and the foreground centroid, then scores each lever's variant of the
latent distance d (score = r * d, as the shipped configuration with score_latent_power 1):
  shipped       the model's weighted bank distance (bank_augment_weight, bank_trusted_augment)
  r * d^b       other powers of the latent factor, and d + median(d) (a softer latent factor)
  NAP k         nuisance attribute projection: the latents (unit length) projected off the top k
                principal directions of the bank's copy-minus-original differences, then cosine
  WCCN l        the same differences' covariance + l * its mean variance, whitened
  aligned R f   a second memory: E of each train frame (and its mirror) shifted by the whole pixels
                that move its foreground centroid onto the test frame's (|dy|, |dx| <= R), distance
                x f, the minimum with the bank's
  pooled L7     --pooled-features CKPT (torch): a memory of the izi encoder's last 4 x 4 feature map
                (128 channels after its 4th convolution), mean- and max-pooled over space (256,), of
                the bank's frames and copies (original rows 1, copies w), cosine; r * d_feat, and
                r * d * d_feat
  ensemble      --member: other exports of the same generator (izi encoders of other seeds, their
                own banks); the geometric mean of the members' scores
Threshold of each variant: the 93rd percentile of its 100 clean val normals (the shipped rate, 7 %).
Columns: clean AUROC / anomalies flagged; over the val suite: worst AUROC, largest false-alarm rate;
3-px and 4-px shifts AUROC / false alarms. Torch-free (runtime + onnxruntime); ~3 min per model on
one core, the latents are cached in --cache.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from edge_ad.runtime import Scorer
from edge_ad.runtime.data_root import default_kinect_root
from edge_ad.runtime.latent_memory import trusted_original_rows
from edge_ad.runtime.nuisance import DEFAULT_SUITE, frame_rng, parse_nuisance
from edge_ad.runtime.preprocess import frame_to_uint8, move_uint8, normalize_uint8
from edge_ad.runtime.truth import auroc

CLASSES = ("rectangle", "cylinder", "sphere")
EXTRA = ("brightness:1.35", "brightness:0.65", "wb:1.2,1,0.8", "wb:0.8,1,1.2", "shift:1", "shift:4")
CONDITIONS = [("clean", None, 0, 0)] + [(t, t, 0, k + 1) for k, t in enumerate(DEFAULT_SUITE)] \
    + [(t + "@1", t, 1, k + 1) for k, t in enumerate(EXTRA)]      # (label, nuisance, seed, draw index)
ALIGN_RADIUS = 5


def _frames(data: Path, cls: str, split: str) -> list:
    ids = json.loads((data / "splits.json").read_text())[cls][split]
    return [(np.array(Image.open(data / cls / "rgb" / f"{i}.jpg")), np.array(Image.open(data / cls / "depth" / f"{i}.png")))
            for i in ids]


def _centroid(u8: np.ndarray) -> tuple:
    ys, xs = np.nonzero(u8[..., 3] > 0)
    return ys.mean(), xs.mean()


def collect(scorer: Scorer, data: Path, classes: tuple) -> dict:
    """{(label, class): (e (N, z), r (N,), centroid (N, 2))} for every condition, val frames."""
    spec, out = scorer.preprocess_spec, {}
    raw = {c: _frames(data, c, "val") for c in classes}
    for label, text, seed, k in CONDITIONS:
        nu = None if text is None else parse_nuisance(text)
        for g, c in enumerate(classes):
            E, R, C = [], [], []
            for i, f in enumerate(raw[c]):
                u8 = frame_to_uint8(*(f if nu is None else nu(*f, frame_rng(seed, 100000 * g + i, k))), spec)
                x = normalize_uint8(u8, spec)
                res = scorer.score_input(x, seed=0)
                E.append(scorer.encode(x)), R.append(res.score / res.latent_distance), C.append(_centroid(u8))
            out[label, c] = (np.array(E), np.array(R), np.array(C))
        print(f"  collected {label}", flush=True)
    return out


def aligned_memory(scorer: Scorer, data: Path, cls: str) -> tuple:
    """E of every train frame and its mirror shifted by every (dy, dx), |dy|, |dx| <= ALIGN_RADIUS:
    unit latents (2, N, 2R + 1, 2R + 1, z) and the frames' centroids (2, N, 2)."""
    spec, R, mirror = scorer.preprocess_spec, ALIGN_RADIUS, parse_nuisance("mirror")
    frames = _frames(data, cls, "train")
    lat, cen = [], []
    for f in frames:
        for m, ff in enumerate((f, mirror(*f))):
            u8 = frame_to_uint8(*ff, spec)
            cen.append(_centroid(u8))
            lat.append([scorer.encode(normalize_uint8(move_uint8(u8, dy, dx), spec))
                        for dy in range(-R, R + 1) for dx in range(-R, R + 1)])
    lat = np.array(lat).reshape(len(frames), 2, 2 * R + 1, 2 * R + 1, -1).swapaxes(0, 1)
    return _unit(lat), np.array(cen).reshape(len(frames), 2, 2).swapaxes(0, 1)


def pooled_features(checkpoint: str, scorer: Scorer, data: Path, classes: tuple, augment: list) -> tuple:
    """(bank (N_frames * (1 + len(augment)), 256), {(label, class): (N, 256)}): the checkpoint's izi
    encoder's 4 x 4 feature map after its 4th convolution, mean- and max-pooled over space."""
    import torch                                                    # models/ tooling: torch is fine here

    from edge_ad.models.search import checkpoint_encoder
    from edge_ad.runtime.latent_bank import bank_inputs
    torch.set_num_threads(1)
    enc, spec = checkpoint_encoder(checkpoint).eval(), scorer.preprocess_spec

    def feats(X: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            h = enc.enc[:8](torch.from_numpy(np.asarray(X, np.float32)))        # (B, 128, 4, 4)
            return torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1).double().numpy()

    bank = np.concatenate([feats(bank_inputs(*f, spec, augment, index=n))
                           for n, f in enumerate(_frames(data, classes[0], "train"))])
    raw, out = {c: _frames(data, c, "val") for c in classes}, {}
    for label, text, seed, k in CONDITIONS:
        nu = None if text is None else parse_nuisance(text)
        for g, c in enumerate(classes):
            out[label, c] = feats(np.stack([normalize_uint8(frame_to_uint8(
                *(f if nu is None else nu(*f, frame_rng(seed, 100000 * g + i, k))), spec), spec)
                for i, f in enumerate(raw[c])]))
    return bank, out


def _unit(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


class Bank:
    """A model's latent bank: unit rows (N, z) and their weights (original 1, augmented w)."""

    def __init__(self, model_dir: Path, scorer: Scorer):
        man = json.loads((model_dir / "manifest.json").read_text())
        self.U = _unit(np.load(model_dir / man["latent_bank"]["file"]))
        augment = list(man["latent_bank"]["augment"])
        cfg = scorer.config
        self.rows_per_frame, self.augment = 1 + len(augment), augment
        self.W = np.where(trusted_original_rows(len(self.U), augment, cfg.bank_trusted_augment), 1.0,
                          cfg.bank_augment_weight)

    def distance(self, E: np.ndarray, P: np.ndarray | None = None) -> np.ndarray:
        """Weighted cosine distance (2 - 2 cos) of each latent to the nearest row; P: a (z, z) map
        applied to latents and rows first (re-normalised)."""
        u, U = _unit(E), self.U
        if P is not None:
            u, U = _unit(u @ P.T), _unit(U @ P.T)
        return np.maximum(((2 - 2 * u @ U.T) * self.W).min(1), 1e-6)

    def nuisance_differences(self) -> np.ndarray:
        """Unit latent of each augmented copy minus its frame's: (N_frames * (rows - 1), z)."""
        Uf = self.U.reshape(-1, self.rows_per_frame, self.U.shape[1])
        return (Uf[:, 1:] - Uf[:, :1]).reshape(-1, self.U.shape[1])


def aligned_distance(E: np.ndarray, C: np.ndarray, AU: np.ndarray, AC: np.ndarray, radius: int) -> np.ndarray:
    """Distance to the centroid-aligned memory: per train frame (and mirror) the copy shifted onto the
    test frame's centroid, copies needing more than ``radius`` px excluded (distance 4, the largest)."""
    u, R = _unit(E), (AU.shape[2] - 1) // 2
    out = np.empty(len(u))
    n = AU.shape[1]
    for q in range(len(u)):
        d = np.rint(C[q][None, None] - AC).astype(int)                        # (2, N, 2)
        ok = (np.abs(d) <= radius).all(-1)
        d = np.clip(d, -R, R) + R
        rows = AU[np.arange(2)[:, None], np.arange(n)[None], d[..., 0], d[..., 1]]   # (2, N, z)
        out[q] = np.where(ok, 2 - 2 * rows @ u[q], 4.0).min()
    return np.maximum(out, 1e-6)


def table_row(name: str, log_score: dict, classes: tuple) -> str:
    """One line: clean AUROC / flagged, worst suite AUROC / false alarms, 3- and 4-px shifts."""
    thr = np.quantile(log_score["clean", classes[0]], 0.93)
    res = {}
    for label, *_ in CONDITIONS:
        n = log_score[label, classes[0]]
        a = np.concatenate([log_score[label, c] for c in classes[1:]])
        res[label] = (auroc(np.r_[n, a], np.r_[np.zeros(len(n), bool), np.ones(len(a), bool)]),
                      (n > thr).mean(), (a > thr).mean())
    suite = [res[t] for t in DEFAULT_SUITE]
    au, fa = min(s[0] for s in suite), max(s[1] for s in suite)
    return (f"| {name} | {res['clean'][0]:.3f} / {100 * res['clean'][2]:.1f} % | {au:.3f} / {100 * fa:.0f} % | "
            f"{res['shift:3'][0]:.3f} / {100 * res['shift:3'][1]:.0f} % | {res['shift:4@1'][0]:.3f} / "
            f"{100 * res['shift:4@1'][1]:.0f} % |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="the export to measure (its bank and configuration)")
    ap.add_argument("--member", action="append", default=[], help="more exports for the ensemble rows")
    ap.add_argument("--class", dest="cls", default="rectangle", choices=CLASSES)
    ap.add_argument("--data", default=str(default_kinect_root()))
    ap.add_argument("--pooled-features", metavar="CHECKPOINT",
                    help="the model's checkpoint (torch): add the pooled-feature memory rows")
    ap.add_argument("--cache", default="runs/pose-levers", help="where the collected latents are kept")
    a = ap.parse_args(argv)
    classes = (a.cls,) + tuple(c for c in CLASSES if c != a.cls)    # the normal class first
    data, cache = Path(a.data), Path(a.cache)
    cache.mkdir(parents=True, exist_ok=True)
    models = [Path(a.model)] + [Path(m) for m in a.member]
    collected, banks = [], []
    for k, m in enumerate(models):
        scorer = Scorer.load(m)
        f = cache / f"member{k}-{a.cls}.npy"
        if f.exists():
            collected.append(np.load(f, allow_pickle=True)[0])
        else:
            print(f"collecting {m} ...", flush=True)
            collected.append(collect(scorer, data, classes))
            np.save(f, np.array([collected[-1]], dtype=object), allow_pickle=True)
        banks.append(Bank(m, scorer))
        if k == 0:
            first = scorer
    Q, bank = collected[0], banks[0]
    keys = list(Q)
    rows = []

    def add(name, latent_factor):
        rows.append(table_row(name, {key: np.log(Q[key][1]) + np.log(latent_factor(key)) for key in keys}, classes))

    base = {key: bank.distance(Q[key][0]) for key in keys}
    add("shipped (r * d)", lambda key: base[key])
    add("residual only", lambda key: np.ones_like(base[key]))
    for b in (0.5, 0.75, 1.5):
        add(f"r * d^{b}", lambda key, b=b: base[key] ** b)
    med = np.median(base["clean", a.cls])
    add("r * (d + median d)", lambda key: base[key] + med)
    D = bank.nuisance_differences()
    cov = D.T @ D / len(D)
    vals, vecs = np.linalg.eigh(cov)
    vecs = vecs[:, ::-1]
    for k in (2, 5, 10, 30):
        P = np.eye(len(cov)) - vecs[:, :k] @ vecs[:, :k].T
        dk = {key: bank.distance(Q[key][0], P) for key in keys}
        add(f"NAP k = {k}", lambda key, dk=dk: dk[key])
    for lam in (0.1, 1.0):
        ev, evc = np.linalg.eigh(cov + lam * np.trace(cov) / len(cov) * np.eye(len(cov)))
        Wm = evc @ np.diag(ev ** -0.5) @ evc.T
        dl = {key: bank.distance(Q[key][0], Wm) for key in keys}
        add(f"WCCN l = {lam}", lambda key, dl=dl: dl[key])
    f = cache / f"aligned-{a.cls}.npz"
    if not f.exists():
        print("encoding the centroid-aligned memory ...", flush=True)
        AU, AC = aligned_memory(first, data, a.cls)
        np.savez(f, AU=AU, AC=AC)
    z = np.load(f)
    AU, AC = z["AU"], z["AC"]
    for radius, factors in ((3, (1.0, 1.5, 2.0)), (5, (1.0, 2.0))):
        da = {key: aligned_distance(Q[key][0], Q[key][2], AU, AC, radius) for key in keys}
        add(f"aligned R = {radius} only", lambda key, da=da: da[key])
        for fac in factors:
            add(f"aligned R = {radius} x {fac} + bank", lambda key, da=da, fac=fac: np.minimum(base[key], fac * da[key]))
    if a.pooled_features:
        print("pooled encoder features ...", flush=True)
        FB, FQ = pooled_features(a.pooled_features, first, data, classes, bank.augment)
        FB = _unit(FB)
        for w in (1.0, bank.W.max()):
            Wf = np.where(np.arange(len(FB)) % bank.rows_per_frame == 0, 1.0, w)
            dfe = {key: np.maximum(((2 - 2 * _unit(FQ[key]) @ FB.T) * Wf).min(1), 1e-6) for key in keys}
            add(f"pooled L7, copies x {w:g}: r * d_feat", lambda key, dfe=dfe: dfe[key])
            add(f"pooled L7, copies x {w:g}: r * d * d_feat", lambda key, dfe=dfe: base[key] * dfe[key])
    for k in range(1, len(models)):
        dk = {key: banks[k].distance(collected[k][key][0]) for key in keys}
        rows.append(table_row(f"member {k} alone", {key: np.log(collected[k][key][1]) + np.log(dk[key]) for key in keys}, classes))
    if len(models) > 1:
        logs = [{key: np.log(collected[k][key][1]) + np.log(banks[k].distance(collected[k][key][0])) for key in keys}
                for k in range(len(models))]
        rows.append(table_row(f"ensemble of {len(models)} (geometric mean)",
                              {key: np.mean([lg[key] for lg in logs], 0) for key in keys}, classes))
    print("| variant | clean AUROC / flagged | worst suite AUROC / max false alarms | shift 3 px | shift 4 px |")
    print("| --- | --- | --- | --- | --- |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
