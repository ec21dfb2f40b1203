#!/usr/bin/env bash
# The main job on its embedded default, on a fresh machine: a lean install (no torch) and
# `edge-ad run` scoring the built-in synthetic RGB-D source with the shipped demo model; the run
# ends with AUROC, recall and false alarms against the renderer's truth, and writes a contact sheet.
# Usage: bash scripts/demo.sh [edge-ad run args]   (default: 30 frames, runs/demo_sheet.png)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv-runtime/bin/python ] || python3 -m venv .venv-runtime
.venv-runtime/bin/pip install -q --disable-pip-version-check -e .
if [ $# -eq 0 ]; then set -- --max-frames 30 --out runs/demo-results.jsonl --sheet runs/demo_sheet.png; fi
exec .venv-runtime/bin/edge-ad run "$@"
