#!/usr/bin/env bash
# Installs every system package lesion-ddpm needs, from Debian 12, and nothing else. Idempotent:
# packages already present are skipped and `apt-get update` runs only when something is missing.
# This is the one place that knows the package list.
#
#   bash launch/setup.sh            # build + run dependencies
#   bash launch/setup.sh --check    # only report what is missing (exit 1 if anything is)
set -euo pipefail

PACKAGES=(
  # toolchain; GCC's sanitizer runtimes for the asan/tsan/fuzz test builds (tests/sanitizers)
  build-essential cmake ninja-build ccache pkg-config
  # the format check of the test command (tests/format.sh)
  clang-format libasan8 libubsan1 libtsan2
  # LibTorch 1.13 (CPU, oneDNN) and Python's torch for cross-checks of exported weights; an
  # optimised BLAS for their matrix products (attention, linear layers): both link the generic
  # libblas.so.3, which is Debian's reference implementation unless one is installed (docs/facts.md).
  # The OpenMP build shares LibTorch's threads and runs single-threaded inside its parallel regions.
  libtorch-dev python3-torch libopenblas0-openmp
  # MPI: headers, the launcher, and the PMIx plugin path used by srun
  libopenmpi-dev openmpi-bin
  # HDF5 1.10 serial + tools, and the blosc filter plugin (lz4/zstd compression of shards)
  libhdf5-dev hdf5-tools hdf5-filter-plugin-blosc-serial
  # blosc itself: the loader decodes lz4/zstd chunks outside HDF5 (data/DirectChunks.h)
  libblosc-dev
  # XXH3 checksums of store shards
  libxxhash-dev
  # configuration, JSON, NIfTI, images, compression
  libboost-program-options-dev nlohmann-json3-dev libnifti2-dev libpng-dev zlib1g-dev
  # tests and independent reference implementations used by them
  libgtest-dev python3-numpy python3-nibabel python3-h5py python3-scipy
  # the demo report's loss curve
  python3-matplotlib
  # the real template brain behind the phantom cohort (Colin27, JHU atlas)
  mricron-data
  # a real single-node SLURM cluster for the SLURM tests
  slurm-wlm munge
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi
if [ "${1:-}" = "--check" ]; then
  echo "setup: missing: ${missing[*]}"
  exit 1
fi

echo "setup: installing ${#missing[@]} missing package(s): ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: error: not root and no sudo; install as root: apt-get install ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || { echo "setup: error: apt-get update failed (no network or no Debian mirror?)" >&2; exit 1; }
if ! $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"; then
  # Find the package(s) that cannot be installed so the message names them.
  for pkg in "${missing[@]}"; do
    if ! $SUDO apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null 2>&1; then
      echo "setup: error: could not install Debian package '$pkg'" >&2
    fi
  done
  exit 1
fi
echo "setup: done"
