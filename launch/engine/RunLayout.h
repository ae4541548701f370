#pragma once
// Every file name of a run folder and of its checkpoints, in one place (docs/training.md "The run
// directory"). The trainer, sample, export, evaluate and sweep status ask here instead of joining
// strings, so a file can be renamed or moved once. Also the one reader of a checkpoint's weights.
#include <torch/torch.h>

#include <string>

#include "core/Checkpoint.h"

namespace lddpm::launch {

class RunLayout {
 public:
  explicit RunLayout(std::string run) : run_(std::move(run)) {}
  const std::string& run() const { return run_; }
  std::string config() const;       // config.ini: the resolved options of `lddpm train`
  std::string status() const;       // status.json: state, step, steps, model, world size
  std::string metrics() const;      // metrics.jsonl: one row per --log-every steps
  std::string checkpoints() const;  // checkpoints/step-NNNNNNNN/ (core/Checkpoint.h)

 private:
  std::string run_;
};

// The files of one checkpoint folder (meta.json itself belongs to core/Checkpoint.h).
class CheckpointLayout {
 public:
  explicit CheckpointLayout(std::string dir) : dir_(std::move(dir)) {}
  const std::string& dir() const { return dir_; }
  std::string model() const;   // model.pt: parameters and buffers
  std::string ema() const;     // ema.pt: the EMA of the parameters (launch/engine/Ema.h)
  std::string config() const;  // config.ini of the run that wrote it
  // Replicated AdamW state of a parameter group (rank 0 writes it).
  std::string optimizer(const std::string& group) const;
  // ZeRO-1 state of a group: one shard per rank.
  std::string optimizerShard(const std::string& group, int rank) const;
  std::string rng(int rank) const;  // the rank's default-generator state

 private:
  std::string dir_;
};

// A module's parameters and buffers by name (what model.pt holds).
core::TensorDict moduleWeights(const torch::nn::Module& module);
// Copies `weights` into `module`'s parameters and buffers. IoError naming `file` when a tensor is
// missing or its shape differs (a checkpoint of other --model options).
void loadModuleWeights(torch::nn::Module& module, const core::TensorDict& weights,
                       const std::string& file);
// The weights to run a model with: "model" (model.pt), or "ema" (the EMA's parameters over
// model.pt's buffers, such as normalisation statistics, which the EMA does not average).
core::TensorDict readWeights(const CheckpointLayout& checkpoint, const std::string& which);

}  // namespace lddpm::launch
