#!/usr/bin/env bash
# The README's test command: install what is missing, build (Release, Ninja, ccache), run every
# test through ctest (unit, MPI under mpiexec -n 2/3, CLI, end-to-end). Exit non-zero on any failure.
#
#   bash launch/test.sh [ctest arguments...]      e.g. bash launch/test.sh -L mpi
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${LDDPM_BUILD_DIR:-$root/build}
jobs=${LDDPM_JOBS:-$(nproc)}

bash "$root/launch/setup.sh"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j "$jobs"
cd "$build"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ctest --output-on-failure -j 1 "$@"
