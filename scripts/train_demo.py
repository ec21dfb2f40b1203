"""Train the demo model (models/demo/demo.pt, exported to runtime/demo/ by scripts/export_demo.py), step by
step, on the built-in renderer (runtime/sources/synth.py). Every frame set has its own seed, none of them the
demo's (synth:// seed 0), the export parity check's (seed 1) or the shipped-demo test's (tests/test_demo_model.py,
seed 4242):

    train boxes         render_set(N_TRAIN, seed=TRAIN_SEED)                       generator, encoder, latent bank
    calibration boxes   render_set(N_CAL, seed=CAL_SEED)                           the shipped threshold
    validation frames   render_set(N_VAL, seed=VAL_SEED, anomaly_rate=0.5)         choosing the configuration

The shipped demo.pt (issue 13) was made by these commands (one CPU thread; 4 + 6 + 2 min):

    # 1. generator + encoder pre-trained together as an autoencoder (z 16, width 16) on 3000 boxes,
    #    preprocessing colour_norm "rgb" + centroid alignment (references measured on the train boxes)
    OMP_NUM_THREADS=1 .venv/bin/python scripts/train_demo.py ae --out runs/demo-ae --epochs 30
    # 2. the generator trained as a GAN from there: a discriminator (trained from scratch) against G(z),
    #    z ~ N(0, I), and G(E(x)); reconstruction weight 1000, 10 epochs
    OMP_NUM_THREADS=1 .venv/bin/python scripts/train_demo.py aegan --init runs/demo-ae/last.pt \
        --out runs/demo-aegan --epochs 10 --rec-weight 1000
    # 3. latent bank (train boxes + mirrored), the configuration with the best validation AUROC among
    #    CANDIDATES, the threshold at 5% false alarms on the calibration boxes -> demo.pt
    OMP_NUM_THREADS=1 .venv/bin/python scripts/train_demo.py release --generator runs/demo-aegan/last.pt \
        --encoder runs/demo-aegan/last.encoder.pt --out models/demo/demo.pt
    # 4. export into the runtime package
    .venv/bin/python scripts/export_demo.py

Measured on the validation frames (issue 13; best candidate each): the autoencoder alone (step 1 released
directly) 0.998; `aegan` from scratch (no --init, 30 epochs, reconstruction weight 100 / 300) 0.970 / 0.977
(its residual alone 0.65: the reconstructions stay blurrier); step 1 + step 2 with weight 300 / 1000:
0.9985 / 0.9993 (shipped; residual alone 0.983). `gan` trains the generator as a plain BCE DCGAN (the
kinect-rgbd recipe) for `release` to train an izi encoder on it (`release` without --encoder): width 16,
snapshots at epochs 30 and 60, validation AUROC 0.48-0.70, spheres 0.15-0.51 (its blurry boxes
reconstruct a sphere better than a box).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

TRAIN_SEED, CAL_SEED, VAL_SEED = 1000, 2000, 3000
N_TRAIN, N_CAL, N_VAL = 3000, 300, 400


def base_spec():
    from edge_ad.runtime.preprocess import PreprocessSpec
    return PreprocessSpec()


def demo_spec(train_rgb, train_depth):
    """The demo's preprocessing: colour_norm "rgb" (foreground colour scaled per channel to the train boxes'
    mean foreground colour) + align "centroid" (at the train boxes' mean foreground centroid), both measured
    on the train boxes ("auto", as make_release.py and edge-ad train --preprocess do)."""
    from edge_ad.models.data import spec_with
    spec = base_spec()
    return spec_with(spec, {"colour_norm": "rgb", "colour_reference": "auto", "align": "centroid",
                            "align_centre": "auto"}, frames_u8(train_rgb, train_depth, spec))


def frames_u8(rgb, depth, spec) -> np.ndarray:
    from edge_ad.runtime.preprocess import frame_to_uint8
    return np.stack([frame_to_uint8(r, d, spec) for r, d in zip(rgb, depth)])


def train_boxes(n_train: int):
    """(spec, arr (N, R, R, 4) uint8 under spec, data summary) of the train boxes render_set(n_train, TRAIN_SEED)."""
    from edge_ad.models.data import summarize
    from edge_ad.runtime.sources.synth import render_set
    rgb, depth, _ = render_set(n_train, seed=TRAIN_SEED)
    spec = demo_spec(rgb, depth)
    arr = frames_u8(rgb, depth, spec)
    summary = summarize([f"synth-{i:06d}" for i in range(len(arr))], arr,
                        f"synth:// render_set({n_train}, seed={TRAIN_SEED})", kind="box")
    return spec, arr, summary


def save_generator_and_encoder(out: Path, G, E, spec, cfg: dict, history: dict, loss_history: list,
                               summary: dict) -> None:
    """OUT/last.pt (a generator checkpoint carrying cfg, history and the data summary) and
    OUT/last.encoder.pt (the encoder, for `release --encoder`)."""
    import torch

    from edge_ad.models.checkpoint import save_checkpoint
    from edge_ad.models.encoder import encoder_to_dict
    wall = float(sum(history["seconds"]))
    train_info = {"config": cfg, "epoch": cfg["epochs"], "history": history, "data": summary,
                  "wall_seconds": wall, "torch": str(torch.__version__)}
    save_checkpoint(out / "last.pt", G, preprocess=spec, train=train_info)
    torch.save({"encoder": encoder_to_dict(E), "info": {**cfg, "loss_history": loss_history, "wall_seconds": wall}},
               out / "last.encoder.pt")
    print(f"wrote {out / 'last.pt'} and {out / 'last.encoder.pt'}", flush=True)


def cmd_gan(a) -> None:
    import torch

    from edge_ad.models.train import TrainConfig, train
    torch.set_num_threads(a.threads)
    spec, arr, summary = train_boxes(a.n_train)
    print(f"preprocess: {spec.to_dict()}", flush=True)
    cfg = TrainConfig(objective="bce", epochs=a.epochs, batch_size=64, lr=2e-4, beta1=0.5, beta2=0.999,
                      features_g=a.width, features_d=a.width, seed=0, hflip=True, max_shift=a.max_shift,
                      sample_every=5, snapshot_every=5)
    train(arr, a.out, cfg, data_summary=summary, spec=spec, progress=False,
          log=lambda m: print(m, flush=True))


def cmd_ae(a) -> None:
    """The generator as the decoder of an autoencoder: G (DCGAN generator) and E (izi encoder architecture)
    trained together on mean((G(E(x)) - x)^2) over the train boxes (hflip), Adam, cosine schedule.
    Writes OUT/last.pt (a generator checkpoint) and OUT/last.encoder.pt (the encoder, for `release --encoder`)."""
    import time

    import torch

    from edge_ad.models.data import augment, to_tensor
    from edge_ad.models.dcgan import GanConfig, Generator, init_weights
    from edge_ad.models.encoder import Encoder, EncoderConfig
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    spec, arr, summary = train_boxes(a.n_train)
    G = Generator(GanConfig(z_dim=a.z_dim, features_g=a.width, features_d=a.width, resolution=spec.resolution))
    init_weights(G)
    E = Encoder(EncoderConfig(z_dim=a.z_dim, width=a.encoder_width))
    params = list(G.parameters()) + list(E.parameters())
    opt = torch.optim.Adam(params, lr=a.lr, betas=(0.9, 0.999))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, a.epochs)
    X = to_tensor(arr, spec)                                                     # (N, 4, R, R)
    N, bs = len(X), 64
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    hist, secs = [], []
    for ep in range(1, a.epochs + 1):
        t0 = time.perf_counter()
        G.train(), E.train()
        perm = torch.randperm(N, generator=gen)
        tot = 0.0
        for b in range(0, N - bs + 1, bs):
            x = augment(X[perm[b:b + bs]], gen, hflip=True)
            loss = ((G(E(x)) - x) ** 2).mean()
            opt.zero_grad(), loss.backward(), opt.step()
            tot += loss.item()
        sched.step()
        hist.append(tot / (N // bs)), secs.append(time.perf_counter() - t0)
        print(f"ae epoch {ep}/{a.epochs} loss {hist[-1]:.5f} ({secs[-1]:.1f} s)", flush=True)
    G.eval(), E.eval()
    cfg = {"objective": "autoencoder: mean((G(E(x)) - x)^2), G and E trained together", "epochs": a.epochs,
           "batch_size": bs, "lr": a.lr, "adam_betas": [0.9, 0.999], "schedule": "cosine", "seed": 0,
           "hflip": True, "features_g": a.width, "z_dim": a.z_dim, "encoder_width": a.encoder_width}
    save_generator_and_encoder(out, G, E, spec, cfg, {"loss": hist, "seconds": secs}, hist, summary)


def cmd_aegan(a) -> None:
    """The generator trained as a GAN with an encoder (adversarial + reconstruction, as alpha-GAN / VAE-GAN):
    per batch x of train boxes (hflip) and z ~ N(0, I),
      D step:     BCE(D(x), real) + BCE(D(G(z)), fake) + BCE(D(G(E(x))), fake)
      G, E step:  BCE(D(G(z)), real) + BCE(D(G(E(x))), real) + rec_weight * mean((G(E(x)) - x)^2)
                  + latent_weight * (mean_b E(x)^2 moments vs N(0, I): mean^2 + (var - 1)^2, per dimension)
    so G is a generator of boxes from N(0, I) that a discriminator cannot tell from rendered ones (sharp
    edges), and E its inverse. Adam (2e-4, betas 0.5, 0.999) for D, G and E. Writes OUT/last.pt (a generator
    checkpoint) and OUT/last.encoder.pt."""
    import time

    import torch
    import torch.nn.functional as F

    from edge_ad.models.data import augment, to_tensor
    from edge_ad.models.dcgan import Discriminator, GanConfig, Generator, init_weights
    from edge_ad.models.encoder import Encoder, EncoderConfig
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    spec, arr, summary = train_boxes(a.n_train)
    gcfg = GanConfig(z_dim=a.z_dim, features_g=a.width, features_d=a.width, resolution=spec.resolution)
    G, D = Generator(gcfg), Discriminator(gcfg, sigmoid=False)        # D: logits (B, 1, 1, 1)
    init_weights(G), init_weights(D)
    E = Encoder(EncoderConfig(z_dim=a.z_dim, width=a.encoder_width))
    if a.init:   # start G and E from an autoencoder run of the `ae` step (same data, spec and sizes)
        from edge_ad.models.checkpoint import load_generator
        from edge_ad.models.encoder import encoder_from_dict
        G.load_state_dict(load_generator(a.init).state_dict())
        E.load_state_dict(encoder_from_dict(torch.load(Path(a.init).with_name(Path(a.init).stem + ".encoder.pt"),
                                                       map_location="cpu", weights_only=True)["encoder"]).state_dict())
        print(f"G and E start from {a.init}", flush=True)
    opt_ge = torch.optim.Adam(list(G.parameters()) + list(E.parameters()), lr=a.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=a.lr, betas=(0.5, 0.999))
    X = to_tensor(arr, spec)                                                     # (N, 4, R, R)
    N, bs = len(X), 64
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    hist = {"loss_d": [], "loss_adv": [], "loss_rec": [], "seconds": []}

    def bce(logits, real: bool):
        return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, 1.0 if real else 0.0))

    for ep in range(1, a.epochs + 1):
        t0 = time.perf_counter()
        G.train(), E.train(), D.train()
        perm = torch.randperm(N, generator=gen)
        tot = np.zeros(3)
        for b in range(0, N - bs + 1, bs):
            x = augment(X[perm[b:b + bs]], gen, hflip=True)                      # (bs, 4, R, R)
            z = torch.randn(bs, a.z_dim, 1, 1, generator=gen)                    # (bs, z_dim, 1, 1)
            e = E(x)                                                             # (bs, z_dim, 1, 1)
            fake, recon = G(z), G(e)
            loss_d = bce(D(x), True) + bce(D(fake.detach()), False) + bce(D(recon.detach()), False)
            opt_d.zero_grad(), loss_d.backward(), opt_d.step()
            adv = bce(D(fake), True) + bce(D(recon), True)
            rec = ((recon - x) ** 2).mean()
            lat = (e.mean(0) ** 2).mean() + ((e.var(0) - 1) ** 2).mean()
            loss = adv + a.rec_weight * rec + a.latent_weight * lat
            opt_ge.zero_grad(), loss.backward(), opt_ge.step()
            tot += (loss_d.item(), adv.item(), rec.item())
        tot /= N // bs
        for k, v in zip(("loss_d", "loss_adv", "loss_rec"), tot):
            hist[k].append(float(v))
        hist["seconds"].append(time.perf_counter() - t0)
        print(f"aegan epoch {ep}/{a.epochs} D {tot[0]:.3f} adv {tot[1]:.3f} rec {tot[2]:.5f} "
              f"({hist['seconds'][-1]:.1f} s)", flush=True)
    G.eval(), E.eval()
    cfg = {"objective": "GAN with an encoder: BCE adversarial on G(z) and G(E(x)) + rec_weight * "
                        "mean((G(E(x)) - x)^2) + latent_weight * moments of E(x) vs N(0, I)",
           "epochs": a.epochs, "batch_size": bs, "lr": a.lr, "adam_betas": [0.5, 0.999], "seed": 0, "hflip": True,
           "features_g": a.width, "features_d": a.width, "z_dim": a.z_dim, "encoder_width": a.encoder_width,
           "rec_weight": a.rec_weight, "latent_weight": a.latent_weight,
           "init": str(a.init) if a.init else None}
    save_generator_and_encoder(out, G, E, spec, cfg, hist, hist["loss_rec"], summary)


# Candidate scoring configurations (all k = 0: E(x) is the latent, no search steps; ~ms per frame), the one
# with the best validation AUROC is shipped. Score = recon error of G(E(x)) / fg^fg_power * d(E(x), bank)^p.
CANDIDATES = [{"name": f"izi-mem-fg{fg}-lat{lat}", "k": 0, "n_seed": 1, "lr_theta": 0.0, "z_init": "encoder",
               "score_fg_power": fg, "score_latent_power": lat}
              for fg in (0.5, 1.0) for lat in (0.0, 0.5, 1.0, 2.0)]


def rendered(n, seed, anomaly_rate, spec):
    """(X float32 (n, 4, R, R) in [-1, 1], kinds) of render_set(n, seed, anomaly_rate) under spec."""
    from edge_ad.runtime.preprocess import normalize_uint8
    from edge_ad.runtime.sources.synth import render_set
    rgb, depth, kinds = render_set(n, seed=seed, anomaly_rate=anomaly_rate)
    return normalize_uint8(frames_u8(rgb, depth, spec), spec), kinds


def cmd_release(a) -> None:
    import time

    import torch

    from edge_ad.models.checkpoint import load_generator, read_checkpoint, save_checkpoint
    from edge_ad.models.encoder import encoder_from_dict, encoder_latents, encoder_to_dict, train_encoder
    from edge_ad.models.evaluate import calibrate_threshold, detection_metrics
    from edge_ad.models.search import score_batch
    from edge_ad.runtime.config import SearchConfig
    from edge_ad.runtime.latent_bank import bank_inputs
    from edge_ad.runtime.preprocess import normalize_uint8
    from edge_ad.runtime.sources.synth import render_set
    torch.set_num_threads(a.threads)
    G = load_generator(a.generator)
    src = read_checkpoint(a.generator)
    spec = G.preprocess
    rgb, depth, _ = render_set(a.n_train, seed=TRAIN_SEED)
    train_u8 = frames_u8(rgb, depth, spec)
    if a.encoder:
        enc = torch.load(a.encoder, map_location="cpu", weights_only=True)
        E, enc_info = encoder_from_dict(enc["encoder"]), enc["info"]
    else:
        torch.manual_seed(0)
        E, enc_info = train_encoder(G, train_u8, epochs=a.encoder_epochs, width=a.encoder_width,
                                    max_shift=a.encoder_shift, log=lambda m: print(m, flush=True))
        enc_path = Path(a.generator).with_name(Path(a.generator).stem + ".encoder.pt")
        torch.save({"encoder": encoder_to_dict(E), "info": enc_info}, enc_path)
        print(f"encoder: {enc_path} ({enc_info['wall_seconds']:.0f} s)", flush=True)
    augment = tuple(t for t in a.bank_augment.split(";") if t)
    bank = encoder_latents(E, np.concatenate([bank_inputs(r, d, spec, augment, index=i)
                                              for i, (r, d) in enumerate(zip(rgb, depth))]))
    Xv, kv = rendered(a.n_val, VAL_SEED, 0.5, spec)
    Xc, _ = rendered(a.n_cal, CAL_SEED, 0.0, spec)
    yv = np.array([k != "box" for k in kv])
    results = []
    for c in CANDIDATES:
        cfg = SearchConfig.from_dict(c)
        t0 = time.perf_counter()
        sv = score_batch(G, Xv, cfg, batch_frames=100, encoder=E, latent_bank=bank,
                         bank_rows_per_frame=list(augment))
        secs = (time.perf_counter() - t0) / len(Xv)
        m = {kind: round(detection_metrics(sv[~yv], sv[np.array(kv) == kind])["auroc"], 4)
             for kind in ("sphere", "cylinder")}
        m["overall"] = round(detection_metrics(sv[~yv], sv[yv])["auroc"], 4)
        results.append((m["overall"], c, m, sv, secs))
        print(f"{c['name']}: val AUROC {m} ({secs * 1e3:.1f} ms/frame batched)", flush=True)
    best, c, m, sv, secs = max(results, key=lambda r: r[0])
    cfg = SearchConfig.from_dict(c)
    sc = score_batch(G, Xc, cfg, batch_frames=100, encoder=E, latent_bank=bank,
                     bank_rows_per_frame=list(augment))
    thr = calibrate_threshold(sc, a.threshold_fpr)
    val = {"split": f"render_set({a.n_val}, seed={VAL_SEED}, anomaly_rate=0.5)", "auroc": m,
           "recall_at_threshold": round(float((sv[yv] >= thr).mean()), 4),
           "false_alarms_at_threshold": round(float((sv[~yv] >= thr).mean()), 4),
           "candidates": {r[1]["name"]: r[2] for r in results},
           "batched_seconds_per_frame": round(secs, 5)}
    from edge_ad.models.baselines import nearest_neighbour_scores
    nn = nearest_neighbour_scores(normalize_uint8(train_u8, spec), Xv, fg_power=1.0)
    val["baselines"] = {"nearest-neighbour MSE/fg (train boxes, same preprocessing)":
                        round(detection_metrics(nn[~yv], nn[yv])["auroc"], 4)}
    print(json.dumps(val, indent=1), flush=True)
    print(f"threshold {thr:.6g} ({a.threshold_fpr} false alarms on {a.n_cal} calibration boxes)", flush=True)
    train = dict(src["train"])
    train.setdefault("source_run", str(a.generator))
    objective = (train.get("config") or {}).get("objective", "see config")
    train["note"] = (f"demo model on rendered boxes (synth://), generator trained by: {objective}; preprocessing "
                     "colour_norm rgb + centroid alignment; made by scripts/train_demo.py")
    scoring = {"name": cfg.name, "search": cfg.to_dict(), "encoder": encoder_to_dict(E), "encoder_train": enc_info,
               "latent_bank": torch.from_numpy(bank),
               "latent_bank_info": {"frames": f"synth:// render_set({a.n_train}, seed={TRAIN_SEED}) boxes",
                                    "n": len(bank), "n_frames": a.n_train, "augment": list(augment),
                                    "what": "E(x), the izi encoder's latents of the normal training frames "
                                            "and of their augmented copies (runtime/latent_bank.py)"},
               "val": val,
               "threshold": {"value": thr, "target_fpr": a.threshold_fpr, "n_normal": a.n_cal,
                             "normal": f"synth:// render_set({a.n_cal}, seed={CAL_SEED}) boxes",
                             "search": cfg.to_dict()}}
    save_checkpoint(a.out, G, preprocess=spec, train=train, scoring=scoring)
    print(f"wrote {a.out} ({Path(a.out).stat().st_size / 1e6:.1f} MB)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="step", required=True)
    g = sub.add_parser("gan", help="train the generator")
    g.add_argument("--out", required=True)
    g.add_argument("--n-train", type=int, default=N_TRAIN)
    g.add_argument("--epochs", type=int, default=50)
    g.add_argument("--width", type=int, default=32)
    g.add_argument("--max-shift", type=int, default=0)
    g.add_argument("--threads", type=int, default=1)
    for step, help_, epochs, lr in (("ae", "train generator + encoder together as an autoencoder", 40, 1e-3),
                                    ("aegan", "train generator (as a GAN) + encoder together: adversarial + "
                                              "reconstruction", 30, 2e-4)):
        j = sub.add_parser(step, help=help_)      # generator + encoder trained together: the same settings
        j.add_argument("--out", required=True)
        j.add_argument("--n-train", type=int, default=N_TRAIN)
        j.add_argument("--epochs", type=int, default=epochs)
        j.add_argument("--width", type=int, default=16)
        j.add_argument("--encoder-width", type=int, default=16)
        j.add_argument("--z-dim", type=int, default=16)
        j.add_argument("--lr", type=float, default=lr)
        j.add_argument("--threads", type=int, default=1)
        if step == "aegan":
            j.add_argument("--rec-weight", type=float, default=50.0)
            j.add_argument("--latent-weight", type=float, default=1.0)
            j.add_argument("--init", help="start G and E from the `ae` step's OUT/last.pt (+ last.encoder.pt)")
    r = sub.add_parser("release", help="encoder, latent bank, configuration, threshold -> demo.pt")
    r.add_argument("--generator", required=True, help="a generator checkpoint of step 1 (last.pt or a snapshot)")
    r.add_argument("--out", required=True)
    r.add_argument("--encoder", help="reuse an encoder file written by an earlier release (GENERATOR.encoder.pt beside the generator)")
    r.add_argument("--n-train", type=int, default=N_TRAIN)
    r.add_argument("--n-val", type=int, default=N_VAL)
    r.add_argument("--n-cal", type=int, default=N_CAL)
    r.add_argument("--encoder-epochs", type=int, default=20)
    r.add_argument("--encoder-width", type=int, default=16)
    r.add_argument("--encoder-shift", type=int, default=0)
    r.add_argument("--bank-augment", default="mirror", help="nuisance texts joined by ';' ('' for none)")
    r.add_argument("--threshold-fpr", type=float, default=0.05)
    r.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    {"gan": cmd_gan, "ae": cmd_ae, "aegan": cmd_aegan, "release": cmd_release}[a.step](a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
