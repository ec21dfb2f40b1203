#!/usr/bin/env bash
# Install edge-ad on a bare Jetson Orin running JetPack 5.1+ or 6.x (run from the repository root):
#
#   sudo jetson/install.sh [--model DIR] [--ort-wheel URL_OR_PATH] [--realsense] [--service]
#                          [--prefix /opt/edge-ad] [--user edge-ad] [--dry-run]
#
#   --model DIR       exported model directory (edge-ad export ... --out DIR) copied to PREFIX/model;
#                     its TensorRT engine is then built on this device (edge-ad build-engine)
#   --ort-wheel W     the onnxruntime-gpu wheel built for this JetPack and Python (NVIDIA's Jetson
#                     builds; PyPI has none for Jetson). Without it the CPU onnxruntime is installed.
#   --realsense       build librealsense + pyrealsense2 from source (no aarch64 wheel exists)
#   --service         install and enable the systemd unit (edge-ad run --camera, restart on failure)
#   --dry-run         print the commands instead of running them
#
# What it checks first, with one clear message each: Jetson/L4T release, JetPack >= 5.1
# (TensorRT >= 8.5: the search's convolution kernels are runtime tensors), the TensorRT Python
# bindings JetPack ships, the Python version edge-ad needs, the CUDA version (for cuda-python).
set -euo pipefail

PREFIX=/opt/edge-ad
SVC_USER=edge-ad
MODEL=""
ORT_WHEEL=""
REALSENSE=0
SERVICE=0
DRY=0
LIBREALSENSE_VERSION=v2.56.3
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"

die() { echo "edge-ad install: $*" >&2; exit 1; }
run() { if [ "$DRY" = 1 ]; then echo "+ $*"; else "$@"; fi; }

while [ $# -gt 0 ]; do
  case "$1" in
    --model) MODEL="$2"; shift 2 ;;
    --ort-wheel) ORT_WHEEL="$2"; shift 2 ;;
    --realsense) REALSENSE=1; shift ;;
    --service) SERVICE=1; shift ;;
    --prefix) PREFIX="$2"; shift 2 ;;
    --user) SVC_USER="$2"; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

if [ -n "$MODEL" ] && [ ! -f "$MODEL/manifest.json" ]; then
  die "$MODEL is not an exported model directory (no manifest.json); run edge-ad export on a workstation first"
fi
# a unit without a model could only fail (its ExecStartPre build-engine), restart 10 times and give up
if [ "$SERVICE" = 1 ] && [ -z "$MODEL" ] && [ ! -f "$PREFIX/model/manifest.json" ]; then
  die "--service needs a model: pass --model DIR (an edge-ad export), or install one in $PREFIX/model first"
fi

# ---- L4T / JetPack ---------------------------------------------------------------------------
# /etc/nv_tegra_release: "# R36 (release), REVISION: 4.0, ..." -> 36.4.0
L4T_FILE=${L4T_RELEASE_FILE:-/etc/nv_tegra_release}
[ -r "$L4T_FILE" ] || die "this is not a Jetson with L4T ($L4T_FILE missing); on a PC use: pip install 'edge-ad[gpu]' (onnxruntime-gpu, NVIDIA GPU) or 'edge-ad[cpu]' (onnxruntime), one of the two: they share one module"
L4T_MAJOR=$(sed -n 's/^# R\([0-9]*\) (release).*/\1/p' "$L4T_FILE")
L4T_REV=$(sed -n 's/.*REVISION: \([0-9.]*\).*/\1/p' "$L4T_FILE")
[ -n "$L4T_MAJOR" ] && [ -n "$L4T_REV" ] || die "cannot read the L4T release from $L4T_FILE"
L4T="$L4T_MAJOR.$L4T_REV"
case "$L4T_MAJOR" in
  36) JETPACK=6 ;;
  35) JETPACK=5
      # JetPack 5.1 = L4T R35.2.1; 5.0.x (R34, R35.1) ships TensorRT 8.4
      L4T_MINOR=${L4T_REV%%.*}
      [ "$L4T_MINOR" -ge 2 ] || die "L4T R$L4T is JetPack 5.0.x with TensorRT 8.4: the search graphs need TensorRT >= 8.5 (Conv/ConvTranspose with non-constant kernels), i.e. JetPack >= 5.1. Upgrade JetPack." ;;
  *) die "L4T R$L4T is not supported: need JetPack 5.1+ (R35.2+) or JetPack 6 (R36)" ;;
esac
echo "Jetson L4T R$L4T (JetPack $JETPACK.x)"
# numpy as JetPack's binaries were built for: TensorRT 8.5's bindings (JetPack 5) use np.bool, gone in numpy 1.24;
# NVIDIA's onnxruntime-gpu wheels for JetPack 6 (--ort-wheel) are built against numpy 1.x
case "$JETPACK" in
  5) NUMPY="numpy>=1.23,<1.24" ;;
  *) NUMPY="numpy>=1.23,<2" ;;
esac

# ---- TensorRT (from JetPack, never from pip) ---------------------------------------------------
if ! python3 -c "import tensorrt" 2>/dev/null; then
  echo "TensorRT Python bindings missing: installing JetPack's python3-libnvinfer"
  run apt-get update
  run apt-get install -y --no-install-recommends python3-libnvinfer
fi
TRT_VERSION=$(python3 -c "import tensorrt; print(tensorrt.__version__)" 2>/dev/null || echo "")
[ "$DRY" = 1 ] || [ -n "$TRT_VERSION" ] || die "TensorRT Python bindings still not importable (apt package python3-libnvinfer)"
if [ -n "$TRT_VERSION" ]; then
  python3 - "$TRT_VERSION" <<'EOF' || die "TensorRT $TRT_VERSION is older than 8.5: the search graphs need non-constant convolution kernels (JetPack >= 5.1)"
import sys
major, minor = (int(x) for x in sys.argv[1].split(".")[:2])
sys.exit(0 if (major, minor) >= (8, 5) else 1)
EOF
  echo "TensorRT $TRT_VERSION"
fi

# ---- Python ----------------------------------------------------------------------------------
PYV=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
# 3.10: the kit's rosbags (>= 0.10, the camera extra's) ships for Python >= 3.10 only
python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' || die \
  "JetPack $JETPACK ships Python $PYV and its TensorRT bindings are built for it, but the edge-ad kit needs Python >= 3.10 (rosbags >= 0.10 ships for 3.10+). Use JetPack 6 (Python 3.10), or the Docker image (jetson/Dockerfile)."

# ---- CUDA version -> cuda-python -------------------------------------------------------------
CUDA_VER="${EDGE_AD_CUDA_VERSION:-}"     # override for tests / unusual installs
if [ -n "$CUDA_VER" ]; then
  :
elif [ -r /usr/local/cuda/version.json ]; then
  CUDA_VER=$(python3 -c "import json; print(json.load(open('/usr/local/cuda/version.json'))['cuda']['version'])")
elif command -v nvcc >/dev/null; then
  CUDA_VER=$(nvcc --version | sed -n 's/.*release \([0-9.]*\),.*/\1/p')
fi
[ -n "$CUDA_VER" ] || die "cannot find the CUDA version (/usr/local/cuda/version.json); is the JetPack CUDA toolkit installed (apt install nvidia-jetpack)?"
CUDA_MM=$(echo "$CUDA_VER" | cut -d. -f1,2)
CUDA_MAJ=${CUDA_MM%%.*}
CUDA_MIN=${CUDA_MM##*.}
# cuda-python's runtime bindings must not be newer than the CUDA that JetPack ships
CUDA_PYTHON="cuda-python>=$CUDA_MM,<$CUDA_MAJ.$((CUDA_MIN + 1))"
echo "CUDA $CUDA_VER -> $CUDA_PYTHON"

# ---- venv ------------------------------------------------------------------------------------
# build-essential + python3-dev: pip compiles edge-ad's single-pass Adam kernel (the CPU search's
# fast path, runtime/backends/_adam_kernel.c); without them the install still works with the NumPy fallback
run apt-get install -y --no-install-recommends python3-venv python3-pip libusb-1.0-0 build-essential python3-dev
run mkdir -p "$PREFIX"
# --system-site-packages: JetPack's tensorrt module lives in the system site-packages
run python3 -m venv --system-site-packages "$PREFIX/venv"
PIP="$PREFIX/venv/bin/pip"
run "$PIP" install --upgrade pip
run "$PIP" install "$CUDA_PYTHON" "$NUMPY" "click>=8.1" "pillow>=9.0" "rich>=13" "cryptography>=41" "rosbags>=0.10"
if [ -n "$ORT_WHEEL" ]; then
  run "$PIP" install "$ORT_WHEEL"        # onnxruntime-gpu, Jetson build (CUDA EP)
else
  echo "no --ort-wheel: installing the CPU onnxruntime (the GPU path is then TensorRT only)"
  run "$PIP" install "onnxruntime>=1.17"
fi
# --no-deps: the dependencies above as pinned for this JetPack (numpy, cuda-python) and the one onnxruntime (edge-ad's
# base carries none: a CPU onnxruntime next to onnxruntime-gpu would shadow it, same module)
run "$PIP" install --no-deps "$REPO"

# ---- RealSense -------------------------------------------------------------------------------
if [ "$REALSENSE" = 1 ]; then
  run apt-get install -y --no-install-recommends git cmake build-essential libssl-dev libusb-1.0-0-dev libudev-dev pkg-config python3-dev
  SRC=$(mktemp -d)
  run git clone --depth 1 --branch "$LIBREALSENSE_VERSION" https://github.com/IntelRealSense/librealsense.git "$SRC/lrs"
  run cmake -S "$SRC/lrs" -B "$SRC/lrs/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_EXAMPLES=OFF \
      -DBUILD_GRAPHICAL_EXAMPLES=OFF -DBUILD_PYTHON_BINDINGS=ON -DFORCE_RSUSB_BACKEND=ON \
      -DPYTHON_EXECUTABLE="$PREFIX/venv/bin/python" -DPYTHON_INSTALL_DIR="$PREFIX/realsense/python" \
      -DCMAKE_INSTALL_PREFIX="$PREFIX/realsense"
  run cmake --build "$SRC/lrs/build" -j"$(nproc)"
  run cmake --install "$SRC/lrs/build"
  run cp "$SRC/lrs/config/99-realsense-libusb.rules" /etc/udev/rules.d/
  run udevadm control --reload-rules
  SITE=$("$PREFIX/venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" 2>/dev/null || echo "")
  [ "$DRY" = 1 ] || echo "$PREFIX/realsense/python" > "$SITE/librealsense.pth"
  run ldconfig "$PREFIX/realsense/lib"
fi

# ---- model + engine --------------------------------------------------------------------------
if [ -n "$MODEL" ]; then
  run mkdir -p "$PREFIX/model"
  run cp -r "$MODEL"/. "$PREFIX/model/"
  echo "building the TensorRT engine on this device (minutes on an Orin Nano) ..."
  run "$PREFIX/venv/bin/edge-ad" build-engine "$PREFIX/model"
fi

# ---- service ---------------------------------------------------------------------------------
if [ "$SERVICE" = 1 ]; then
  id "$SVC_USER" >/dev/null 2>&1 || run useradd --system --home "$PREFIX" --shell /usr/sbin/nologin "$SVC_USER"
  run usermod -aG video,plugdev "$SVC_USER"
  run mkdir -p /var/lib/edge-ad
  run chown -R "$SVC_USER" /var/lib/edge-ad "$PREFIX/model" 2>/dev/null || true
  unit=$(mktemp)   # the unit for this prefix and user: a private temp file, not a fixed name in /tmp (root writes it)
  trap 'rm -f "$unit"' EXIT   # removed also when a step below fails (set -e exits there)
  sed -e "s|/opt/edge-ad|$PREFIX|g" -e "s|^User=edge-ad|User=$SVC_USER|" "$HERE/edge-ad.service" > "$unit"
  run install -m 0644 "$unit" /etc/systemd/system/edge-ad.service
  rm -f "$unit"
  run systemctl daemon-reload
  run systemctl enable --now edge-ad.service
  echo "service: systemctl status edge-ad; logs: journalctl -u edge-ad -f"
fi

echo "done. Try: $PREFIX/venv/bin/edge-ad run --camera --model $PREFIX/model --backend tensorrt"
echo "ROS 2 node (source /opt/ros/<distro>/setup.bash first): ros2 launch $REPO/jetson/edge_ad.launch.py python:=$PREFIX/venv/bin/python model_dir:=$PREFIX/model"
echo "For steady throughput: sudo nvpmodel -q --verbose (pick a mode), sudo jetson_clocks (see jetson/README.md)"
