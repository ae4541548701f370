#include "launch/engine/TrainConfig.h"

#include "core/Error.h"

namespace lddpm::launch {

TrainConfig::TrainConfig() {
  data.split = "train";
  data.patch = 48;
  data.sampler.lesionFraction = 0.33;
  data.sampler.flip = true;
  data.threads = 2;
}

core::po::options_description TrainConfig::describe() {
  namespace po = core::po;
  po::options_description d("Training options");
  d.add(data.describe());
  d.add_options()("run", po::value(&run)->required()->value_name("DIR"),
                  "run directory: config.ini, metrics.jsonl, checkpoints/, status.json")(
      "steps", po::value(&steps)->default_value(steps), "optimiser steps")(
      "batch", po::value(&batch)->default_value(batch),
      "GLOBAL batch per step (split over ranks and micro-batches: results do not depend on the "
      "number of ranks)")("accumulate", po::value(&accumulate)->default_value(accumulate),
                          "micro-batches per step")("seed", po::value(&seed)->default_value(seed),
                                                    "seed of every random stream")(
      "lr", po::value(&lr)->default_value(lr), "peak learning rate (AdamW)")(
      "min-lr", po::value(&minLr)->default_value(minLr), "learning rate at the end of the cosine")(
      "warmup", po::value(&warmup)->default_value(warmup), "linear warm-up steps")(
      "weight-decay", po::value(&weightDecay)->default_value(weightDecay),
      "AdamW decoupled weight decay")(
      "adam-beta1", po::value(&beta1)->default_value(beta1),
      "Adam beta1 of parameter groups that set none (pix2pix's groups use 0.5)")(
      "adam-beta2", po::value(&beta2)->default_value(beta2), "Adam beta2")(
      "grad-clip", po::value(&gradClip)->default_value(gradClip),
      "clip the global gradient norm; 0 = off")("ema-decay",
                                                po::value(&emaDecay)->default_value(emaDecay),
                                                "EMA decay of the sampling weights")(
      "max-nonfinite", po::value(&maxNonfinite)->default_value(maxNonfinite),
      "stop after this many consecutive steps with a NaN/Inf loss or gradient")(
      "device", po::value(&device)->default_value(device),
      "cpu | cuda (one GPU per rank by local rank)")("bf16", po::value(&bf16)->default_value(bf16),
                                                     "bf16 autocast on CUDA, fp32 master weights")(
      "checkpoint-every", po::value(&checkpointEvery)->default_value(checkpointEvery),
      "steps between checkpoints (and one at the end and on SIGTERM/SIGUSR2)")(
      "keep-checkpoints", po::value(&keepCheckpoints)->default_value(keepCheckpoints),
      "checkpoints kept")(
      "resume", po::value(&resume)->default_value(resume),
      "auto: newest complete checkpoint of --run if any; never; or a checkpoint folder")(
      "log-every", po::value(&logEvery)->default_value(logEvery),
      "steps between metrics.jsonl rows");
  d.add(parallel.describe(/*training=*/true));
  return d;
}

void TrainConfig::validate(int worldSize) const {
  auto fail = [](const char* option, const std::string& why) {
    LDDPM_THROW(core::UsageError, "lddpm train: option '--", option, "': ", why);
  };
  if (steps < 1) fail("steps", "must be >= 1");
  if (batch < 1) fail("batch", "must be >= 1");
  if (accumulate < 1) fail("accumulate", "must be >= 1");
  if (batch % (static_cast<std::int64_t>(worldSize) * accumulate) != 0) {
    fail("batch", core::strCat(batch, " is not divisible by ranks × micro-batches = ", worldSize,
                               " × ", accumulate, " (the global batch is split evenly)"));
  }
  try {
    data.validateOptions();
  } catch (const core::UsageError& e) {
    LDDPM_THROW(core::UsageError, "lddpm train: ", e.what());
  }
  if (lr <= 0) fail("lr", "must be > 0");
  if (minLr < 0 || minLr > lr) fail("min-lr", "must be in [0, --lr]");
  if (warmup < 0) fail("warmup", "must be >= 0");
  if (gradClip < 0) fail("grad-clip", "must be >= 0");
  if (!(beta1 >= 0 && beta1 < 1)) fail("adam-beta1", "must be in [0, 1)");
  if (!(beta2 >= 0 && beta2 < 1)) fail("adam-beta2", "must be in [0, 1)");
  if (emaDecay < 0 || emaDecay >= 1) fail("ema-decay", "must be in [0, 1)");
  if (maxNonfinite < 1) fail("max-nonfinite", "must be >= 1");
  if (device != "cpu" && device != "cuda") fail("device", "must be cpu or cuda");
  if (bf16 && device != "cuda") fail("bf16", "bf16 autocast needs --device cuda");
  parallel.validate();
  if (checkpointEvery < 1) fail("checkpoint-every", "must be >= 1");
  if (keepCheckpoints < 1) fail("keep-checkpoints", "must be >= 1");
  if (logEvery < 1) fail("log-every", "must be >= 1");
}

}  // namespace lddpm::launch
