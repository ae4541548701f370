#!/usr/bin/env bash
# Configures and builds a sanitizer tree of the tests marked for it (lddpm_add_test ... SANITIZE)
# and, for address, the fuzz harnesses: the set-up step of the asan / tsan / fuzz ctest labels.
#   build.sh address|thread SOURCE_DIR BUILD_DIR
set -euo pipefail
kind=$1 src=$2 dir=$3
jobs=${LDDPM_JOBS:-$(nproc)}
cmake -S "$src" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLDDPM_SANITIZE="$kind" > /dev/null
cmake --build "$dir" -j "$jobs" --target lddpm_sanitized_tests
