#pragma once
// Options of `lddpm train` that belong to the engine (the model's own options are
// models::ModelConfig): data, schedule, optimisation, parallelism, checkpoints. One struct, one
// po::options_description, documented defaults (docs/training.md).
#include <cstdint>
#include <string>

#include "core/Options.h"
#include "data/Loader.h"
#include "distributed/DistributedOptions.h"

namespace lddpm::launch {

struct TrainConfig {
  TrainConfig();
  // data: --store, --split, --patch, --lesion-fraction, --flips, --prefetch are the loader's own
  // options (data::LoaderOptions::describe), with training's defaults: 48³ patches, flips on.
  // The engine sets their seed, batch, rank and start.
  data::LoaderOptions data;
  std::string run;
  // schedule
  std::int64_t steps = 1000;
  std::int64_t batch = 2;  // GLOBAL batch per optimiser step, split over ranks × micro-batches
  std::int64_t accumulate = 1;  // micro-batches per step (gradient accumulation)
  std::uint64_t seed = 0;
  // optimisation
  double lr = 2e-4;
  double minLr = 1e-6;
  std::int64_t warmup = 100;
  double weightDecay = 0.0;
  double beta1 = 0.9;  // Adam β₁ of groups that do not set their own (pix2pix: 0.5)
  double beta2 = 0.999;
  double gradClip = 1.0;  // global L2 norm; 0 = off
  double emaDecay = 0.999;
  int maxNonfinite = 5;  // consecutive skipped steps before giving up
  // device; the parallel options (backend, timeout, buckets, overlap, ZeRO, desync checks) are
  // distributed/'s own
  std::string device = "cpu";  // cpu | cuda (one GPU per rank by local rank)
  bool bf16 = false;           // bf16 autocast on CUDA (fp32 master weights)
  dist::DistributedOptions parallel;
  // checkpoints and logging
  std::int64_t checkpointEvery = 200;
  int keepCheckpoints = 3;
  std::string resume = "auto";  // auto | never | PATH of a checkpoint folder
  std::int64_t logEvery = 10;

  core::po::options_description describe();
  // Checks ranges and the divisibility of the global batch; UsageError naming the option.
  void validate(int worldSize) const;
  // Samples per rank per micro-batch.
  std::int64_t localBatch(int worldSize) const { return batch / (worldSize * accumulate); }
};

}  // namespace lddpm::launch
