#!/usr/bin/env bash
# The GPU acceptance check (docs/gpu.md), in one run on a machine with a CUDA GPU, a PyTorch wheel
# (its LibTorch), nvcc and the nvidia-nccl wheel, but no MPI/HDF5/Boost/nifticlib:
#   1. unpack the Debian 12 packages fetched by tests/gpu/fetch-debs.sh into a prefix;
#   2. configure + build lesion-ddpm with CUDA and NCCL on; check one libtorch and one libnccl;
#   3. run the gpu-labelled tests;
#   4. a Lesion-DDPM training step in fp32 and bf16 (step time, peak CUDA memory, model FLOP rate
#      vs one large bf16 conv3d in the same process);
#   5. NCCL communicator init + allreduce bandwidth at world size 1 (`lddpm bench comm`);
#   6. train the demo configuration on the GPU from a prebuilt store, then sample its test masks
#      with DDPM (all T steps) and DDIM (K = 10, 25, 50) and evaluate each: seconds per volume and
#      image metrics side by side (docs/BENCHMARKS.md).
# Every stage logs to <stage>.log and goes on after a failure; the logs are re-packed into
# $OUT/logs.tar.gz after each stage (a device runner may bring back only a few files) and the
# summary table, kept in $OUT/summary.md, is printed last. A test that crashes is rerun under gdb
# (when the machine has it) for a backtrace. Figures are checked against bounds (below); the
# script exits 1 when any stage or test failed, a GPU test skipped on a GPU run, or any figure is
# beyond its bound, and says which on the table's last line.
#
# Bounds (each overridable): CPU-vs-GPU relative difference of loss and gradients per model
# (CudaModelsTest's own 1e-3, TF32 convolutions) LDDPM_GPU_MAX_CPU_GAP=1e-3; bf16 vs fp32 loss of
# the same seeded first step LDDPM_GPU_MAX_BF16_GAP=0.02 (bf16 keeps 8 mantissa bits; the loss is a
# mean over ~10^5 voxels); step time at 64^3 x 2 x base 32 LDDPM_GPU_MAX_STEP_64=2 s and at
# 96^3 x 2 x base 64 LDDPM_GPU_MAX_STEP_96=10 s (an H200 took 0.1 and 0.5 s: a 20x margin that
# only a CPU fallback or a broken build exceeds); bf16 no slower than fp32 x
# LDDPM_GPU_MAX_BF16_SLOWDOWN=1.2; the trained loss finite and not above its first logged value; each
# sampler's MAE finite and <= 2 (intensities in [-1, 1]).
#   OUT=dir bash tests/gpu/check.sh [DEBS_DIR [STORE_DIR]]
# Defaults: .gpu-debs and .gpu-data/store (both git-ignored). Knobs: LDDPM_TORCH_PREFIX (a
# share/cmake prefix holding Torch), NCCL_ROOT, LDDPM_GPU_STAGES (space-separated subset of
# "deps configure build tests bench comm pipeline"), LDDPM_TRAIN_STEPS (default 400),
# LDDPM_GPU_SAMPLERS (default "ddpm:200 ddim:10 ddim:25 ddim:50"), LDDPM_GPU_DEVICE (cuda; cpu
# rehearses the bench and pipeline stages without a GPU), LDDPM_GPU_BENCH_SIZES (default
# "64:2:32 96:2:64", side:batch:base).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${OUT:-$root/gpu-out}
logs=${LDDPM_GPU_LOGS:-$root/build-gpu-logs}
debs=${1:-$root/.gpu-debs}
store=${2:-$root/.gpu-data/store}
deps=${LDDPM_DEPS_PREFIX:-$root/build-gpu-deps}
build=${LDDPM_BUILD_DIR:-$root/build-gpu}
stages=${LDDPM_GPU_STAGES:-deps configure build tests bench comm pipeline}
train_steps=${LDDPM_TRAIN_STEPS:-400}
samplers=${LDDPM_GPU_SAMPLERS:-ddpm:200 ddim:10 ddim:25 ddim:50}
device=${LDDPM_GPU_DEVICE:-cuda}  # cpu: rehearse the pipeline stage on a machine without a GPU
arch=x86_64-linux-gnu
export root out logs debs store deps build arch device
mkdir -p "$out" "$logs"
summary="$out/summary.md"
printf '| stage | result |\n|---|---|\n' > "$summary"
rm -f "$out/samplers.md"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

note() { printf '| %s | %s |\n' "$1" "$2" >> "$summary"; }
want() { [[ " $stages " == *" $1 "* ]]; }
failed=()
failure() { failed+=("$1"); note "$1" "**FAILED**: $2"; }
# bound NAME VALUE MAX [what]: records VALUE, and a failure when it is not a number <= MAX.
bound() {
  local name=$1 value=$2 max=$3 what=${4:-}
  if awk -v v="$value" -v m="$max" 'BEGIN { exit !(v ~ /^[-+]?[0-9.]+([eE][-+]?[0-9]+)?$/ && v + 0 <= m + 0) }'; then
    note "$name" "$value (bound <= $max) $what"
  else
    failure "$name" "$value beyond bound <= $max $what"
  fi
}
max_cpu_gap=${LDDPM_GPU_MAX_CPU_GAP:-1e-3}
max_bf16_gap=${LDDPM_GPU_MAX_BF16_GAP:-0.02}
max_bf16_slowdown=${LDDPM_GPU_MAX_BF16_SLOWDOWN:-1.2}
bench_sizes=${LDDPM_GPU_BENCH_SIZES:-64:2:32 96:2:64}

# stage NAME TIMEOUT_S CMD...: runs CMD with its output in $OUT/NAME.log, records ok/FAILED.
stage() {
  local name=$1 limit=$2; shift 2
  echo "== $name ($(date +%T))"
  local t0=$SECONDS rc=0
  # Functions run in a child bash (timeout cannot run them): they and the settings are exported.
  timeout "$limit" bash -c '"$@"' stage "$@" > "$logs/$name.log" 2>&1 || rc=$?
  if [ "$rc" -eq 0 ]; then
    note "$name" "ok, $((SECONDS - t0)) s"
  else
    failure "$name" "exit $rc after $((SECONDS - t0)) s; $name.log"
    tail -n 25 "$logs/$name.log"
    if [ "$rc" -ge 128 ] && [ "$rc" -ne 137 ] && [ -x "$1" ] && command -v gdb > /dev/null; then
      timeout 300 gdb -batch -ex run -ex bt --args "$@" > "$logs/$name.gdb.log" 2>&1
      grep -A 30 '^Thread .* received signal\|^Program received signal' "$logs/$name.gdb.log" | head -40
    fi
  fi
  tar czf "$out/logs.tar.gz" -C "$logs" . 2> /dev/null
  return "$rc"
}

# --- 0. what machine this is --------------------------------------------------------------------
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
  nvcc --version 2>&1 | tail -2
  "${CXX:-c++}" --version 2>&1 | head -1
  ldd --version 2>&1 | head -1
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' 2>&1
  nproc
} > "$logs/machine.log" 2>&1
gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)

# --- 1. Debian packages into a prefix -----------------------------------------------------------
unpack_deps() {
  rm -rf "$deps" "$deps.fallback"
  mkdir -p "$deps" "$deps.fallback"
  local d name
  for d in "$debs"/*.deb; do
    name=$(basename "$d"); name=${name%%_*}
    if grep -qx "$name" "$debs/direct.txt"; then
      dpkg-deb -x "$d" "$deps"
    else
      dpkg-deb -x "$d" "$deps.fallback"
    fi
  done
  # Transitive libraries only where the machine lacks that soname: its own (newer) copies win.
  local lib soname added=0
  for lib in "$deps.fallback/usr/lib/$arch"/*.so.* "$deps.fallback/lib/$arch"/*.so.*; do
    [ -f "$lib" ] && [ ! -L "$lib" ] || continue
    soname=$(objdump -p "$lib" 2>/dev/null | awk '/SONAME/ {print $2}')
    [ -n "$soname" ] || continue
    if ! ldconfig -p | grep -q "^[[:space:]]*$soname "; then
      cp "$lib" "$deps/usr/lib/$arch/$soname" && added=$((added + 1)) && echo "  + $soname"
    fi
  done
  # Debian's -dev symlinks may point at absolute paths (libz.so -> /lib/.../libz.so.1.2.13) that
  # differ here: repoint dangling ones at this machine's library of the same name.
  local link target found
  for link in "$deps/usr/lib/$arch"/*.so; do
    [ -L "$link" ] && [ ! -e "$link" ] || continue
    target=$(readlink "$link")
    found=$(ls /lib/$arch/"$(basename "$link")".[0-9]* /usr/lib/$arch/"$(basename "$link")".[0-9]* \
            "$deps/usr/lib/$arch/$(basename "$link")".[0-9]* 2>/dev/null | head -1)
    if [ -n "$found" ]; then ln -sf "$found" "$link" && echo "  $(basename "$link") -> $found (was $target)"; fi
  done
  echo "unpacked $(ls "$debs"/*.deb | wc -l) packages; $added transitive libraries the machine lacks"
}
export -f unpack_deps
# Open MPI and PMIx find their components and help files under their install prefix.
export OPAL_PREFIX="$deps/usr"
export PMIX_PREFIX="$deps/usr"
export LD_LIBRARY_PATH="$deps/usr/lib/$arch:$deps/usr/lib/$arch/hdf5/serial:$deps/usr/lib/$arch/openmpi/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$deps/usr/bin:$PATH"
if want deps; then stage deps 300 unpack_deps; fi

# --- 2. configure + build -----------------------------------------------------------------------
torch_prefix=${LDDPM_TORCH_PREFIX:-$(python3 -c 'import torch.utils; print(torch.utils.cmake_prefix_path)' 2>/dev/null)}
nccl_root=${NCCL_ROOT:-$(python3 -c 'import nvidia.nccl as n; print(list(n.__path__)[0])' 2>/dev/null)}
export NCCL_ROOT="$nccl_root"
# The wheel's libnccl is found through torch's RPATH; the tests and lddpm need it on the path too.
[ -n "$nccl_root" ] && export LD_LIBRARY_PATH="$nccl_root/lib:$LD_LIBRARY_PATH"
torch_lib=$(python3 -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null)
[ -n "$torch_lib" ] && export LD_LIBRARY_PATH="$torch_lib:$LD_LIBRARY_PATH"
if command -v nvcc > /dev/null; then
  export CUDACXX=${CUDACXX:-$(command -v nvcc)}
  export CUDA_HOME=${CUDA_HOME:-$(dirname "$(dirname "$CUDACXX")")}
fi
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}

configure() {
  local libdir="$deps/usr/lib/$arch"
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$deps/usr;$torch_prefix" \
    -DCMAKE_LIBRARY_PATH="$libdir;$libdir/hdf5/serial" \
    -DCMAKE_INCLUDE_PATH="$deps/usr/include;$deps/usr/include/hdf5/serial" \
    -DCMAKE_LIBRARY_ARCHITECTURE="$arch" \
    -DMPI_C_COMPILER=NOTFOUND -DMPI_SKIP_COMPILER_WRAPPER=ON -DMPI_SKIP_GUESSING=ON \
    -DMPI_C_HEADER_DIR="$libdir/openmpi/include" -DMPI_C_LIB_NAMES=mpi \
    -DMPI_mpi_LIBRARY="$libdir/openmpi/lib/libmpi.so" -DMPIEXEC_EXECUTABLE="$deps/usr/bin/mpiexec.openmpi" \
    -DHDF5_C_COMPILER_EXECUTABLE=/nonexistent/h5cc -DHDF5_C_INCLUDE_DIR="$deps/usr/include/hdf5/serial" \
    -DHDF5_C_LIBRARY_hdf5="$libdir/hdf5/serial/libhdf5.so" \
    -DHDF5_hdf5_LIBRARY_RELEASE="$libdir/hdf5/serial/libhdf5.so" \
    -DBoost_DIR="$libdir/cmake/Boost-1.74.0" -DBoost_NO_SYSTEM_PATHS=ON \
    -Dnlohmann_json_DIR="$deps/usr/share/cmake/nlohmann_json" \
    -DGTest_DIR="$libdir/cmake/GTest" -DCMAKE_POLICY_VERSION_MINIMUM=3.5 \
    -DCMAKE_CUDA_ARCHITECTURES=90 ${LDDPM_CMAKE_ARGS:-} "$@"
}
build_targets() {
  cmake --build "$build" -j "$(nproc)" -- -k 0 \
    lddpm NcclCommunicatorTest CudaModelsTest TrainerCudaTest ModelsBench
}
link_check() {
  ldd "$build/launch/lddpm" | grep -E 'nccl|libtorch|libc10|libmpi|hdf5|cudart'
  local n_nccl n_torch
  n_nccl=$(ldd "$build/launch/lddpm" | grep -c 'libnccl')
  n_torch=$(ldd "$build/launch/lddpm" | grep -c 'libtorch_cpu')
  echo "libnccl copies: $n_nccl, libtorch_cpu copies: $n_torch"
  "$build/launch/lddpm" info
  [ "$n_nccl" -le 1 ] && [ "$n_torch" -eq 1 ]
}
export torch_prefix
export -f configure build_targets link_check
if want configure; then
  stage configure 300 configure
  grep -E 'lesion-ddpm .*CUDA=|Torch|NCCL' "$logs/configure.log" | tail -3
fi
if want build; then
  stage build 330 build_targets
  stage link 60 link_check
fi

# --- 3. gpu-labelled tests ----------------------------------------------------------------------
if want tests; then
  for t in distributed/NcclCommunicatorTest models/CudaModelsTest launch/TrainerCudaTest; do
    name=$(basename "$t")
    stage "test-$name" 600 "$build/tests/$t"
    grep -E '^\[  (PASSED|FAILED|SKIPPED) ' "$logs/test-$name.log" | tr '\n' ' ' ; echo
    # On a GPU run a skipped GPU test checked nothing: it counts as a failure.
    skipped=$(grep -c '^\[  SKIPPED \] [A-Za-z]' "$logs/test-$name.log")
    if [ "$device" = cuda ] && [ "$skipped" -gt 0 ]; then
      failure "test-$name skipped" "$skipped test(s) skipped (no GPU seen?)"
    fi
  done
  # CudaModelsTest prints one "cpu-vs-gpu MODEL loss_rel X grad_rel Y" line per model.
  while read -r _ model _ loss_rel _ grad_rel; do
    bound "cpu-vs-gpu $model loss" "$loss_rel" "$max_cpu_gap" "(relative)"
    bound "cpu-vs-gpu $model gradients" "$grad_rel" "$max_cpu_gap" "(worst tensor, relative to its max)"
  done < <(grep '^cpu-vs-gpu ' "$logs/test-CudaModelsTest.log" 2> /dev/null)
  if [ "$device" = cuda ] && ! grep -q '^cpu-vs-gpu ' "$logs/test-CudaModelsTest.log" 2> /dev/null; then
    failure "cpu-vs-gpu" "CudaModelsTest printed no agreement figures"
  fi
fi

# --- 4. one training step: fp32 vs bf16 ---------------------------------------------------------
bench_json() { python3 -c 'import json,sys; d=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print(sys.argv[2].format(**d))' "$@"; }
if want bench; then
  for size in $bench_sizes; do
    IFS=: read -r side batch base <<< "$size"
    for prec in fp32 bf16; do
      flag=(); [ "$prec" = bf16 ] && flag=(--bf16)
      name="step-$side-b$batch-c$base-$prec"
      if stage "$name" 300 "$build/tests/bench/models/ModelsBench" --mode flops --device "$device" \
          --side "$side" --batch "$batch" --base "$base" --steps 5 --json "${flag[@]}"; then
        note "$name" "$(bench_json "$logs/$name.log" 'step {step_s:.4f} s, peak {peak_mib:.0f} MiB, model {model_gflops:.0f} GFLOP/s = {ratio:.2f} x bf16 conv3d ({conv_gflops:.0f} GFLOP/s), first loss {first_loss:.6f}')"
      fi
    done
    fp32="$logs/step-$side-b$batch-c$base-fp32.log" bf16="$logs/step-$side-b$batch-c$base-bf16.log"
    if ! bench_json "$fp32" '{step_s}' > /dev/null 2>&1 || ! bench_json "$bf16" '{step_s}' > /dev/null 2>&1; then
      continue  # the failed stage is on the table already
    fi
    max_step_var=LDDPM_GPU_MAX_STEP_$side
    max_step=${!max_step_var:-$([ "$side" -le 64 ] && echo 2 || echo 10)}
    bound "step $side^3 fp32" "$(bench_json "$fp32" '{step_s:.4f}')" "$max_step" "s"
    bound "step $side^3 bf16" "$(bench_json "$bf16" '{step_s:.4f}')" "$max_step" "s"
    bound "bf16 / fp32 step time $side^3" "$(python3 -c 'import json, sys
a, b = (json.loads(open(f).read().strip().splitlines()[-1]) for f in sys.argv[1:])
print("%.3f" % (b["step_s"] / a["step_s"]))' "$fp32" "$bf16")" "$max_bf16_slowdown"
    bound "bf16 vs fp32 loss $side^3" "$(python3 -c 'import json, sys
a, b = (json.loads(open(f).read().strip().splitlines()[-1]) for f in sys.argv[1:])
print("%.2e" % (abs(b["first_loss"] - a["first_loss"]) / abs(a["first_loss"])))' "$fp32" "$bf16")" \
      "$max_bf16_gap" "(relative, first step, same weights and batch)"
  done
fi

# --- 5. NCCL at world size 1 --------------------------------------------------------------------
if want comm; then
  if stage comm-nccl 300 "$build/launch/lddpm" bench comm --device cuda --comm-backend nccl \
      --min-bytes 1M --max-bytes 1G --factor 8 --iters 20 --out "$logs/comm"; then
    tail -n 12 "$logs/comm-nccl.log"
  fi
fi

# --- 6. train on the GPU, DDPM vs DDIM ----------------------------------------------------------
lddpm="$build/launch/lddpm"
work="$root/build-gpu-run"
sample_and_score() {  # NAME SAMPLER STEPS
  local name=$1 sampler=$2 steps=$3
  "$lddpm" sample --run "$work/run" --store "$store" --split test --device "$device" \
    --sampler "$sampler" --steps "$steps" --out "$work/$name" &&
  "$lddpm" evaluate images --real "$work/$name/real" --synthetic "$work/$name/synthetic" \
    --mask "$work/$name/lesion" --brain-mask "$work/$name/brain" --out "$work/$name/eval"
}
export lddpm work
export -f sample_and_score
if want pipeline; then
  rm -rf "$work"; mkdir -p "$work"
  bf16=false; [ "$device" = cuda ] && bf16=true
  if stage train-gpu 420 "$lddpm" train --config "$root/launch/configs/demo.ini" --store "$store" \
      --run "$work/run" --device "$device" --bf16 "$bf16" --steps "$train_steps" --batch 8 \
      --checkpoint-every "$train_steps" --log-every 50; then
    note train-gpu "$(python3 - "$work/run/metrics.jsonl" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
last = rows[-1]
print(f"{last['step']} steps, loss {last['loss']:.3f}, {last.get('samples_per_s', 0):.1f} samples/s, "
      f"data wait {100 * last.get('data_wait', 0):.1f} %")
EOF
)"
    # The loss must be finite and have come down from its first logged value.
    bound "train-gpu last / first loss" "$(python3 -c 'import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
r = rows[-1]["loss"] / rows[0]["loss"]
print("%.3f" % r if math.isfinite(r) else "nan")' "$work/run/metrics.jsonl" 2> /dev/null || echo missing)" 1
    names=()
    for spec in $samplers; do
      sampler=${spec%%:*}; steps=${spec##*:}; name="$sampler$steps"; names+=("$name")
      stage "sample-$name" 300 sample_and_score "$name" "$sampler" "$steps"
    done
    # Each sampler's MAE against the real scans: finite and within the intensity range.
    for name in "${names[@]}"; do
      bound "sample-$name MAE" "$(python3 -c 'import json, sys
print(json.load(open(sys.argv[1]))["mean"]["mae"])' "$work/$name/eval/images.json" 2> /dev/null ||
        echo missing)" 2
    done
    python3 - "$work" "${names[@]}" > "$out/samplers.md" <<'EOF'
import json, os, sys
work = sys.argv[1]
print("\n| sampler | steps | s/volume | MAE | PSNR (dB) | SSIM | lesion MAE |\n|---|---:|---:|---:|---:|---:|---:|")
for name in sys.argv[2:]:
    try:
        s = json.load(open(os.path.join(work, name, "sampling.json")))
        m = json.load(open(os.path.join(work, name, "eval", "images.json")))
        g = lambda k: f"{m['mean'][k]:.4g} ± {m['sd'][k]:.2g}" if m['mean'].get(k) is not None else "n/a"
        print(f"| {s['sampler']} | {s['steps']} | {s['seconds_per_volume']:.2f} | {g('mae')} | {g('psnr')} | {g('ssim')} | {g('lesion_mae')} |")
    except Exception as e:  # keep the table going; the stage logs say why
        print(f"| {name} | - | - | missing: {e} | | | |")
EOF
  fi
fi

if [ ${#failed[@]} -eq 0 ]; then
  note verdict "PASSED: every stage, test and bound"
else
  note verdict "FAILED (${#failed[@]}): ${failed[*]}"
fi
tar czf "$out/logs.tar.gz" -C "$logs" . 2> /dev/null
echo
echo "# GPU check on ${gpu_name:-unknown GPU}, device $device ($(date -u +%F))"
[ -s "$out/samplers.md" ] && cat "$out/samplers.md" && echo
cat "$summary"
[ ${#failed[@]} -eq 0 ]
