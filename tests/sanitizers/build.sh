#!/usr/bin/env bash
# Configures and builds a sanitizer tree of the tests marked for it (lddpm_add_test ... SANITIZE),
# or of those of them that ONLY names (comma-separated; empty: all), and, for address, the fuzzers:
# the set-up step of the asan / asan-quick / tsan / fuzz ctest labels.
#   build.sh address|thread SOURCE_DIR BUILD_DIR [ONLY]
set -euo pipefail
kind=$1 src=$2 dir=$3 only=${4:-}
only=${only//,/;}  # CMake's list separator
jobs=${LDDPM_JOBS:-$(nproc)}
cmake -S "$src" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLDDPM_SANITIZE="$kind" \
  "-DLDDPM_SANITIZE_ONLY=$only" > /dev/null
cmake --build "$dir" -j "$jobs" --target lddpm_sanitized_tests
