"""Re-export the demo model: models/demo/demo.pt (the training checkpoint, not shipped) -> runtime/demo/
(the export shipped inside the runtime package, the default of `edge-ad run`).

    python scripts/export_demo.py [--checkpoint models/demo/demo.pt] [--threshold-file threshold.json]

The demo model is trained on the built-in synthetic source, so the parity check runs on its frames
(synth://, seed 1: on seed 0's first frame the z-only search is ill-conditioned, float32 roundings
grow to 1.9e-3 in the step and fused-adam graphs) rather than on kinect-rgbd. The threshold: --threshold-file's
(edge-ad eval's threshold.json), else the checkpoint's own (scoring["threshold"], scripts/train_demo.py
calibrates one), else the current export's. Files of the previous export that the new manifest does not
list (graphs of another search configuration) are removed, so the package ships exactly the manifest's files."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=str(REPO / "models" / "demo" / "demo.pt"))
    ap.add_argument("--out", default=str(REPO / "runtime" / "demo"))
    ap.add_argument("--threshold-file", help="threshold.json of edge-ad eval (default: the checkpoint's, else the "
                    "current export's)")
    ap.add_argument("--parity-n", type=int, default=3, help="synthetic frames in the parity check")
    ap.add_argument("--parity-seed", type=int, default=1, help="seed of the synthetic parity frames")
    a = ap.parse_args(argv)
    from edge_ad.export.exporter import export_model
    from edge_ad.models.checkpoint import read_checkpoint
    from edge_ad.runtime.sources import open_source
    out = Path(a.out)
    if a.threshold_file:
        threshold = json.loads(Path(a.threshold_file).read_text())
    elif (read_checkpoint(a.checkpoint).get("scoring") or {}).get("threshold"):
        threshold = None                                     # the exporter takes the checkpoint's own
    else:
        old = out / "manifest.json"
        threshold = json.loads(old.read_text()).get("threshold") if old.is_file() else None
    frames = []
    with open_source(f"synth://?n={a.parity_n}&seed={a.parity_seed}") as src:
        for fr in src:
            if fr.error is None:
                frames.append({"id": f"synth/{fr.id}", "label": None, "rgb": fr.rgb, "depth": fr.depth})
    old_manifest = out / "manifest.json"
    listed_before = set(json.loads(old_manifest.read_text()).get("files", {})) if old_manifest.is_file() else set()
    man = export_model(a.checkpoint, out, parity_frames=frames, threshold=threshold)
    for name in sorted(listed_before - set(man["files"])):   # only files the previous export wrote
        stale = out / name
        if stale.is_file() and not stale.is_symlink():
            stale.unlink()
            print(f"removed {name} (listed by the previous manifest, not by the new one)")
    print(f"exported {', '.join(man['variants'])} to {out}: {man['parity']['summary']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
