#!/usr/bin/env bash
# The README's test command: install what is missing, build (Release, Ninja, ccache), run every
# test through ctest (unit, MPI under mpiexec -n 2/3, CLI, end-to-end, fault injection, and the
# sanitizer builds with the fuzzers: labels asan, tsan, fuzz, faults; docs/architecture.md).
# Exit non-zero on any failure. LDDPM_JOBS sets the build parallelism (default: all cores), for
# the sanitizer trees too.
#
#   bash launch/test.sh [ctest arguments...]      e.g. bash launch/test.sh -L mpi, -LE asan
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
