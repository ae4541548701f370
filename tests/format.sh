#!/usr/bin/env bash
# Every C++ source is formatted as .clang-format says (Debian 12's clang-format 14, which
# launch/setup.sh installs). Fix with:
#   git ls-files '*.cpp' '*.h' | xargs clang-format -i
set -u
root=${1:-$(dirname "$0")/..}
cd "$root" || exit 2
command -v clang-format >/dev/null || { echo "format: clang-format not found (bash launch/setup.sh)"; exit 1; }
mapfile -t files < <(find core data models distributed launch tests -name '*.cpp' -o -name '*.h' | sort)
bad=()
for f in "${files[@]}"; do
  clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if [ ${#bad[@]} -gt 0 ]; then
  echo "format: ${#bad[@]} of ${#files[@]} files are not clang-formatted:"
  printf '  %s\n' "${bad[@]}"
  echo "fix: clang-format -i <files> (clang-format $(clang-format --version | grep -o '[0-9.]*' | head -1))"
  exit 1
fi
echo "format: ${#files[@]} files ok"
