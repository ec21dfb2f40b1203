#!/usr/bin/env bash
# The main job on its embedded default, on a fresh machine: a lean install (no torch) and
# `edge-ad run` scoring the built-in synthetic RGB-D source with the shipped demo model; the run
# ends with AUROC, recall and false alarms against the renderer's truth, and writes a contact sheet.
# Usage: bash scripts/demo.sh [edge-ad run args]
#   default: 30 frames, results runs/demo-<UTC time>.jsonl and sheet runs/demo-<UTC time>.png: each
#   run writes new files (never a file of an earlier run, which may hold another demo model's results)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv-runtime/bin/python ] || python3 -m venv .venv-runtime
# [cpu]: the runtime with PyPI's CPU onnxruntime (the base install carries no onnxruntime: pyproject.toml)
.venv-runtime/bin/pip install -q --disable-pip-version-check -e ".[cpu]"
if [ $# -eq 0 ]; then
  mkdir -p runs
  stem="runs/demo-$(date -u +%Y%m%d-%H%M%S)"
  name="$stem"; n=2
  while [ -e "$name.jsonl" ] || [ -e "$name.png" ]; do name="$stem-$n"; n=$((n + 1)); done
  echo "demo results: $name.jsonl, contact sheet: $name.png"
  set -- --max-frames 30 --out "$name.jsonl" --sheet "$name.png"
fi
exec .venv-runtime/bin/edge-ad run "$@"
