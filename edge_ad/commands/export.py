"""``edge-ad export CHECKPOINT --out DIR``: ONNX search graphs + manifest, parity-checked."""
from __future__ import annotations

import click

from edge_ad.runtime.variants import TARGETS

from .options import FiniteFloat, check_out_place
from .stop import unwind_on_sigterm


@click.command("export")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output model directory. The export is built beside it and moved in only "
              "after its parity check passed: an earlier export there is replaced whole (a failed export "
              "leaves it unchanged, the failure kept in DIR.failed); a directory with other files is refused.")
@click.option("--n-seed", type=click.IntRange(min=1), help="Seeds per frame (default: checkpoint's scoring config, else 3).")
@click.option("--k", type=click.IntRange(min=0), help="Adam steps per frame (default 19).")
@click.option("--lr-z", type=FiniteFloat(), help="Latent learning rate (default 5e-2).")
@click.option("--lr-theta", type=FiniteFloat(), help="Generator learning rate (default 6e-9; 0 = z-only search).")
@click.option("--shift-radius", "shift_radius", type=click.IntRange(min=0),
              help="Test-time shift-min radius R (score = min over the frame shifted by up to R px; 0 = off; "
                   "default: the checkpoint's scoring config). A threshold calibrated with another R is not kept.")
@click.option("--silhouette-weight", "silhouette_weight", type=FiniteFloat(min=0.0),
              help="The silhouette lever's weight w_e (runtime/silhouette.py: score = min(S_id, w_e S_ero, S_dil) "
                   "over each raw frame's versions; 0 = off, else >= 1; default: the checkpoint's scoring config). "
                   "On needs the checkpoint's paired rows (make_release.py --silhouette-weight). A threshold "
                   "calibrated with another w_e is not kept.")
@click.option("--bank-augment-weight", "bank_augment_weight", type=FiniteFloat(min=1.0),
              help="Weight w >= 1 of the latent bank's augmented rows (latent distance = min(nearest original "
                   "row, w * nearest augmented copy); default: the checkpoint's scoring config). A threshold "
                   "calibrated with another w is not kept.")
@click.option("--bank-trusted-augment", "bank_trusted_augment", multiple=True, metavar="TEXT",
              help="Repeatable: an augmentation text of the latent bank (its latent_bank_info augment, e.g. "
                   "brightness:1.2) whose copies count as original rows (factor 1, not w); 'none' for none. "
                   "Replaces the checkpoint's list; default: the checkpoint's scoring config.")
@click.option("--scoring", "scoring", type=click.Choice(["checkpoint", "reference"]), default="checkpoint",
              show_default=True,
              help="checkpoint: the checkpoint's named scoring configuration and preprocessing; reference: the "
                   "algorithm's reference configuration (plain MSE, n_seed 3, k 19, lr_theta 6e-9, random z0; no "
                   "encoder, latent memory, fg power or shift-min) on plain preprocessing (no colour_norm / align), "
                   "as edge-ad eval --scoring reference. Overrides apply on top and rename the configuration.")
@click.option("--target", "targets", multiple=True, type=click.Choice(TARGETS),
              help="Where the model will run (repeatable; default: all): cpu = the host-head search and its "
                   "fallback fused-adam (CPUs without AVX2, e.g. ARM); gpu = the step graphs (TensorRT, CUDA "
                   "provider). k = 0 writes the final graph only (with its batch twin and the encoder).")
@click.option("--unrolled/--no-unrolled", default=False, show_default=True,
              help="Also write the whole k-step search as one graph (variant 'unrolled'; no runtime path "
                   "picks it on its own).")
@click.option("--chunk-kb", type=click.IntRange(min=0), default=1024, show_default=True,
              help="Weight chunk size for the Adam update (0 = no chunking).")
@click.option("--parity-frames", type=click.Path(file_okay=False, exists=True),
              help="Frame folder (rgb/, depth/) for the parity check [default: 2 kinect-rgbd val frames].")
@click.option("--parity-n", type=click.IntRange(min=1), default=2, show_default=True,
              help="Frames taken from --parity-frames.")
@click.option("--tolerance", type=FiniteFloat(), default=1e-4, show_default=True,
              help="Max relative score difference, onnxruntime fp32 vs PyTorch float64.")
@click.option("--no-parity", is_flag=True, help="Skip the parity check (the manifest says so).")
@click.option("--no-fp64-check", is_flag=True, help="Skip the float64-graph maths check.")
@click.option("--threads", type=click.IntRange(min=1), help="onnxruntime intra-op threads.")
@click.option("--threshold", "threshold_value", type=FiniteFloat(), help="Anomaly threshold stored in the manifest.")
@click.option("--threshold-file", type=click.Path(dir_okay=False, exists=True),
              help="threshold.json written by edge-ad eval (calibrated on normal frames).")
@click.option("--sign", "sign_key", metavar="KEY", type=click.Path(dir_okay=False, exists=True),
              help="Sign the export with this Ed25519 private key (PEM; `edge-ad keygen`): writes "
                   "manifest.sig, checked by `edge-ad run --trusted-key`.")
@click.option("--no-threshold", is_flag=True,
              help="Export without a threshold (default: the checkpoint's calibrated one, when it carries one "
              "for the exported configuration).")
def cmd(checkpoint, out_dir, n_seed, k, lr_z, lr_theta, shift_radius, silhouette_weight, bank_augment_weight,
        bank_trusted_augment, scoring, targets, unrolled, chunk_kb, parity_frames, parity_n, tolerance, no_parity,
        no_fp64_check, threads, threshold_value, threshold_file, sign_key, no_threshold):
    """Export a generator (edge-ad checkpoint, study state_dict or TorchScript) to ONNX graphs that
    run the seeded k-step search (forward, backward, Adam on z and on per-seed weights), check them
    against the float64 PyTorch reference, and write manifest.json with sha256 of every file.

    The checkpoint's named scoring configuration (scoring["search"]) is the default (--scoring reference:
    the algorithm's reference configuration on plain preprocessing); --n-seed/--k/--lr-z/--lr-theta/
    --shift-radius/--silhouette-weight/--bank-augment-weight/--bank-trusted-augment override single settings of it,
    and a configuration they change is renamed "<name>+<setting>=<value>,...". A threshold calibrated for another
    configuration or preprocessing is not kept. A configuration that starts from an izi encoder (z_init =
    "encoder") also exports the checkpoint's encoder as encoder.onnx."""
    from edge_ad.models.checkpoint import resolve_scoring
    from edge_ad.models.checkpoint_errors import CheckpointError
    from edge_ad.runtime.config import trusted_override

    check_out_place(out_dir)     # not a traceback naming the hidden staging directory beside it
    unwind_on_sigterm()          # a stopped export removes its staging directory (audit 27 #9)

    from edge_ad.export.errors import ExportError
    from edge_ad.export.exporter import export_model
    from edge_ad.runtime.signing import SigningError, load_private_key

    if sign_key:
        try:
            sign_key = load_private_key(sign_key)       # before minutes of export: a bad key fails now
        except SigningError as e:
            raise click.ClickException(str(e))

    try:
        trusted = trusted_override(bank_trusted_augment)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--bank-trusted-augment")
    overrides = dict(n_seed=n_seed, k=k, lr_z=lr_z, lr_theta=lr_theta, score_shift_radius=shift_radius,
                     silhouette_versions_weight=silhouette_weight, bank_augment_weight=bank_augment_weight,
                     bank_trusted_augment=trusted)
    try:       # the configuration and preprocessing edge-ad eval would score with (one rule)
        search, preprocess = resolve_scoring(checkpoint, scoring, overrides)
    except CheckpointError as e:
        raise click.ClickException(str(e))
    except ValueError as e:
        raise click.BadParameter(str(e))
    frames = None
    if parity_frames:
        from edge_ad.runtime.sources import open_source
        frames = []
        with open_source(parity_frames) as src:
            for fr in src:
                if fr.error:
                    continue
                frames.append({"id": fr.id, "label": None, "rgb": fr.rgb, "depth": fr.depth})
                if len(frames) >= parity_n:
                    break
        if not frames:
            raise click.ClickException(f"--parity-frames {parity_frames}: no readable frame")
    threshold = None
    if threshold_file:
        from edge_ad.runtime.manifest import DuplicateKeyError, loads_unique
        try:
            threshold = loads_unique(open(threshold_file).read())
        except DuplicateKeyError as e:     # e.g. two "value"s: which one would the export take?
            raise click.ClickException(f"--threshold-file {threshold_file}: {e}")
        except ValueError as e:
            raise click.ClickException(f"--threshold-file {threshold_file}: not JSON ({e})")
    if threshold_value is not None:
        threshold = {"value": threshold_value, "source": "--threshold"}
    if no_threshold:
        if threshold is not None:
            raise click.UsageError("--no-threshold contradicts --threshold / --threshold-file")
        threshold = False
    try:
        man = export_model(checkpoint, out_dir, search=search, chunk_bytes=chunk_kb * 1024, unrolled=unrolled,
                           parity_frames=frames, parity=not no_parity, tolerance=tolerance,
                           check_fp64=not no_fp64_check, threads=threads, threshold=threshold,
                           targets=targets or TARGETS, sign_key=sign_key, preprocess=preprocess, log=click.echo)
    except (CheckpointError, ExportError) as e:
        raise click.ClickException(str(e))
    p = man.get("parity") or {}
    click.echo(f"exported {', '.join(man['variants'])} ({', '.join(man['graphs'])}) to {out_dir} "
               f"(configuration {man['search']['name']!r}: n_seed={man['search']['n_seed']}, k={man['search']['k']}); "
               f"parity: {p.get('summary')}")
    if not man.get("threshold"):       # edge-ad run would flag nothing: say how to get one
        click.echo(f"{out_dir} has no threshold (edge-ad run flags no frame until it has one): with anomalous frames "
                   "too, edge-ad eval writes threshold.json for --threshold-file; with normal frames only, "
                   f"edge-ad calibrate --model {out_dir} --source HELD_OUT_NORMAL_FRAMES --out {out_dir}-cal sets one "
                   "(frames not used in training)")
