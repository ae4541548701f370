#!/usr/bin/env bash
# The README's test command: install what is missing, build (Release, Ninja, ccache), run every
# test through ctest (unit, MPI under mpiexec -n 2/3, CLI, end-to-end, parser fuzzers, fault
# injection; labels in docs/architecture.md). Exit non-zero on any failure. LDDPM_JOBS sets the
# build parallelism (default: all cores). LDDPM_SANITIZERS=1 adds the two sanitizer trees (labels
# asan, tsan: about 40 more minutes on 2 cores, so CI leaves them out).
#
#   bash launch/test.sh [ctest arguments...]      e.g. bash launch/test.sh -L mpi, -LE asan
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${LDDPM_BUILD_DIR:-$root/build}
jobs=${LDDPM_JOBS:-$(nproc)}

bash "$root/launch/setup.sh"
sanitizers=OFF
[[ "${LDDPM_SANITIZERS:-0}" == 1 ]] && sanitizers=ON
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLDDPM_SANITIZER_TESTS=$sanitizers
cmake --build "$build" -j "$jobs"
cd "$build"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ctest --output-on-failure -j 1 "$@"
