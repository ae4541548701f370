#!/usr/bin/env bash
# Checkpoints that verify themselves, and storage that fails under the run (docs/training.md
# "Checkpoints, signals and resume"), through the real lddpm binary:
#   1. a damaged newest checkpoint (a flipped byte, a truncated file) is named in a warning and
#      resume falls back to the previous intact one; the run still ends bit-identical (cmp of the
#      exported weights) to an uninterrupted run;
#   2. no intact checkpoint at all: exit 1 with one line naming every damaged file;
#   3. export/sample --run skip a damaged newest checkpoint with a warning; --checkpoint naming it
#      is refused (exit 1, the file named);
#   4. a full file system under the run folder: a small tmpfs when this process may mount one
#      (real ENOSPC), and always a file-size limit (ulimit -f with SIGXFSZ ignored: EFBIG, which
#      needs no privileges): exit 1 with one error line naming a path in the run, no abort, and
#      nothing that resume or export would take for a checkpoint; on the tmpfs also with 2 ranks;
#   5. a read-only run folder (a read-only tmpfs as root, chmod otherwise): exit 1 naming the path.
#   storage.sh LDDPM_BINARY PYTHON MPIEXEC
set -euo pipefail
lddpm=$1 python=$2 mpiexec=$3
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/lddpm-storage.XXXXXX)
mounts=()
cleanup() {
  for m in "${mounts[@]}"; do umount "$m" 2> /dev/null || umount -l "$m" 2> /dev/null || true; done
  chmod -R u+w "$work" 2> /dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
fail() { echo "storage: FAIL: $*" >&2; exit 1; }
say() { echo "storage: $*" >&2; }
export OMP_NUM_THREADS=1

model=(--base-channels 4 --channel-mult 1,2 --attention-levels "" --groups 2 --timesteps 20)
# 4 steps, a checkpoint every step, all kept.
train_opts=(--store store --steps 4 --batch 2 --patch 16 --warmup 1 --checkpoint-every 1
  --keep-checkpoints 4 --log-every 1 --threads 1 "${model[@]}")
train() {  # train RUN [extra options]
  local run=$1
  shift
  "$lddpm" train --run "$run" "${train_opts[@]}" "$@"
}
# expect_failure WHAT LOG PATTERN: exit status 1, exactly one error line, matching PATTERN, and no
# abort (std::terminate, a backtrace).
expect_failure() {
  local what=$1 log=$2 pattern=$3 code=$4
  [ "$code" -eq 1 ] || fail "$what: exit status $code, expected 1: $(cat "$log")"
  ! grep -q "terminate called\|Exception raised from\|frame #" "$log" ||
    fail "$what: aborted instead of a clean error: $(head -5 "$log")"
  [ "$(grep -c "error" "$log")" -eq 1 ] || fail "$what: not exactly one error line: $(cat "$log")"
  grep -q -- "$pattern" "$log" || fail "$what: the message does not name '$pattern': $(cat "$log")"
}
# no_checkpoint_taken RUN: neither resume (listCheckpoints: step-N with meta.json) nor export
# finds anything to use.
no_checkpoint_taken() {
  local run=$1 what=$2
  if compgen -G "$run/checkpoints/step-*/meta.json" > /dev/null; then
    fail "$what: left a checkpoint that resume would take: $(ls "$run/checkpoints")"
  fi
  ! "$lddpm" export --run "$run" --out "$work/never.pt" > /dev/null 2>&1 ||
    fail "$what: lddpm export found a checkpoint in $run"
}
flip_byte() {  # flip_byte FILE: invert one byte near the end, keeping the size
  "$python" - "$1" << 'PY'
import os, sys
p = sys.argv[1]
with open(p, "r+b") as f:
    f.seek(os.path.getsize(p) - 30)
    b = f.read(1)
    f.seek(-1, 1)
    f.write(bytes([b[0] ^ 0xFF]))
PY
}

"$python" "$here/../data/tiny_mslesseg.py" cohort 2 1 48x56x48 > /dev/null
"$lddpm" preprocess --data cohort --out store --log-level warn --threads 1
train ref --log-level warn
"$lddpm" export --run ref --out ref.pt > /dev/null

# 1. Damaged newest checkpoint: a flipped byte (same size), then a truncated file.
cp -r ref flipped
flip_byte flipped/checkpoints/step-00000004/ema.pt
train flipped > flipped.log 2>&1 || fail "resume past a flipped byte failed: $(cat flipped.log)"
grep -q "step-00000004/ema.pt: checksum mismatch" flipped.log ||
  fail "the warning does not name the damaged ema.pt: $(cat flipped.log)"
grep -q "resumed from .*step-00000003" flipped.log || fail "did not resume from step 3: $(cat flipped.log)"
"$lddpm" export --run flipped --out flipped.pt > /dev/null
cmp -s ref.pt flipped.pt || fail "the run resumed past a damaged checkpoint differs from the uninterrupted one"
cp -r ref truncated
truncate -s 100 truncated/checkpoints/step-00000004/model.pt
truncate -s 0 truncated/checkpoints/step-00000003/meta.json
train truncated > truncated.log 2>&1 || fail "resume past truncated files failed: $(cat truncated.log)"
grep -q "step-00000004/model.pt: size 100 bytes" truncated.log || fail "truncated model.pt not named: $(cat truncated.log)"
grep -q "step-00000003/meta.json" truncated.log || fail "torn meta.json not named: $(cat truncated.log)"
grep -q "resumed from .*step-00000002" truncated.log || fail "did not resume from step 2: $(cat truncated.log)"
"$lddpm" export --run truncated --out truncated.pt > /dev/null
cmp -s ref.pt truncated.pt || fail "the run resumed from step 2 differs from the uninterrupted one"
say "ok: damaged newest checkpoints named and skipped; resumed runs bit-identical"

# 2. Nothing intact: a clear error, no training from garbage.
cp -r ref broken
for c in broken/checkpoints/step-*; do truncate -s 10 "$c/model.pt"; done
code=0
train broken > broken.log 2>&1 || code=$?
expect_failure "resume with no intact checkpoint" broken.log "none of its 4 checkpoint(s) is intact" $code
grep -q "step-00000001/model.pt" broken.log || fail "the error does not name every damaged file"

# 3. export/sample read checkpoints the same way.
cp -r ref damaged
flip_byte damaged/checkpoints/step-00000004/model.pt
"$lddpm" export --run damaged --out d.pt > export.log 2>&1 || fail "export --run did not fall back: $(cat export.log)"
grep -q "step-00000004/model.pt: checksum mismatch" export.log || fail "export did not warn: $(cat export.log)"
"$lddpm" export --checkpoint damaged/checkpoints/step-00000003 --out d3.pt > /dev/null
cmp -s d.pt d3.pt || fail "export --run did not take step 3"
code=0
"$lddpm" export --checkpoint damaged/checkpoints/step-00000004 --out d4.pt > export4.log 2>&1 || code=$?
expect_failure "export --checkpoint of a damaged checkpoint" export4.log "step-00000004/model.pt: checksum mismatch" $code
[ ! -e d4.pt ] || fail "export of a damaged checkpoint wrote its output"
code=0
"$lddpm" sample --checkpoint damaged/checkpoints/step-00000004 --store store --out s4 --steps 2 \
  --cases 1 > sample4.log 2>&1 || code=$?
expect_failure "sample --checkpoint of a damaged checkpoint" sample4.log "step-00000004/model.pt" $code
say "ok: export and sample skip a damaged checkpoint with --run, refuse it with --checkpoint"

# 4. A full file system under the run folder.
ckpt_kb=$(du -sk ref/checkpoints/step-00000004 | cut -f1)
if [ "$(id -u)" -eq 0 ] && mkdir -p full && mount -t tmpfs -o size=$((ckpt_kb / 2))k tmpfs full 2> /dev/null; then
  mounts+=("$work/full")
  code=0
  train full/run > full.log 2>&1 || code=$?
  expect_failure "train on a full tmpfs" full.log "full/run/checkpoints/" $code
  grep -qi "space\|disk full" full.log || fail "the message does not say the disk is full: $(cat full.log)"
  no_checkpoint_taken full/run "train on a full tmpfs"
  # 2 ranks with ZeRO-1 (each rank writes its own optimiser shard): the failing rank names its file
  # and brings the job down with exit 1 (MPI_Abort), nothing left behind either.
  code=0
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "$mpiexec" -n 2 --oversubscribe \
    "$lddpm" train --run full/run2 "${train_opts[@]}" --zero true > full2.log 2>&1 || code=$?
  [ "$code" -eq 1 ] || fail "2-rank train on a full tmpfs: exit $code, expected 1: $(cat full2.log)"
  ! grep -q "terminate called\|frame #" full2.log || fail "2-rank train on a full tmpfs aborted: $(cat full2.log)"
  grep -q "error: full/run2/checkpoints/.*: No space left on device" full2.log ||
    fail "2-rank train on a full tmpfs: no error naming the file: $(cat full2.log)"
  no_checkpoint_taken full/run2 "2-rank train on a full tmpfs"
  say "ok: full file system (tmpfs of $((ckpt_kb / 2)) KiB), 1 and 2 ranks: exit 1, path named, no checkpoint left"
else
  say "no tmpfs (not root or mount refused): full file system tested with ulimit -f only"
fi
code=0
bash -c 'trap "" XFSZ; ulimit -f '"$((ckpt_kb / 4))"'; exec "$@"' limit \
  "$lddpm" train --run fsize "${train_opts[@]}" > fsize.log 2>&1 || code=$?
expect_failure "train under ulimit -f" fsize.log "fsize/checkpoints/" $code
no_checkpoint_taken fsize "train under ulimit -f"
say "ok: file-size limit (EFBIG): exit 1, path named, no checkpoint left"

# 5. A read-only run folder: a finished run resumed to write its status, and a new run.
if [ "$(id -u)" -eq 0 ] && mkdir -p ro && mount -t tmpfs -o size=64m tmpfs ro 2> /dev/null; then
  mounts+=("$work/ro")
  cp -r ref ro/run
  mount -o remount,ro "$work/ro" || fail "cannot remount the tmpfs read-only"
else
  mkdir -p ro && cp -r ref ro/run && chmod -R a-w ro
fi
code=0
train ro/run > ro.log 2>&1 || code=$?
expect_failure "train in a read-only run folder" ro.log "ro/run/" $code
code=0
train ro/new > ronew.log 2>&1 || code=$?
expect_failure "train into a read-only folder" ronew.log "ro/new" $code
say "ok: read-only run folder: exit 1, path named"
echo "storage: ok"
