#!/usr/bin/env bash
# Set up everything the tests need on a fresh machine, then run the whole test suite.
# Usage: bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
# Disk first: a full disk otherwise shows up as hundreds of unrelated test errors (exit 2: certainly too little)
python3 scripts/disk_preflight.py
# pyrealsense2 needs libusb at import time (Debian package); install it when we can.
if ! ldconfig -p 2>/dev/null | grep -q libusb-1.0; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq libusb-1.0-0 >/dev/null
  else
    echo "warning: libusb-1.0-0 missing and cannot be installed; RealSense tests will fail" >&2
  fi
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
# constraints.txt pins the CPU build of torch (an unpinned torch pulls a multi-GB CUDA build)
.venv/bin/pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev]"
exec .venv/bin/python -m pytest -q "$@"
