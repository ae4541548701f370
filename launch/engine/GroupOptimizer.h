#pragma once
// One parameter group's optimiser as the training engine drives it, whatever the parallel
// layout: ReplicatedAdamW (torch's AdamW on every rank, gradients averaged by a DataParallel
// reducer when there is more than one rank) or ShardedAdamW (ZeRO-1, dist::ZeroAdamW: each rank
// keeps the moments of one shard). The engine runs a step's micro-batches, then agrees with the
// other ranks whether the step was finite, then calls step(lr) or discard(); every
// --desync-check-every steps it calls checkInSync; checkpoints go through save/load.
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "core/Json.h"
#include "distributed/Communicator.h"
#include "launch/engine/RunLayout.h"
#include "launch/engine/TrainConfig.h"

namespace lddpm::launch {

class GroupOptimizer {
 public:
  virtual ~GroupOptimizer() = default;

  const std::string& name() const { return name_; }
  const torch::OrderedDict<std::string, torch::Tensor>& parameters() const { return params_; }

  // Before a step's first forward, after the engine has reset every gradient of the model.
  virtual void beginStep() {}
  // Before a micro-batch's forward: whether its backward is the step's last, the one whose
  // gradients are reduced across ranks (earlier micro-batches accumulate locally).
  virtual void beginMicroBatch(bool last) {}
  // After the last micro-batch's backward, before the gradients are read.
  virtual void endBackward() {}
  // True when every gradient of the group is finite on this rank.
  bool gradientsFinite() const;
  // Clips to the global gradient norm and updates at `lr`. Returns the norm before clipping.
  virtual double step(double lr) = 0;
  // A skipped step: this step's gradients are dropped, the state is untouched.
  virtual void discard() = 0;
  // Collective: core::Error naming step, parameter and rank when ranks hold different values.
  virtual void checkInSync(std::int64_t step) = 0;
  // Collective: this rank's share of the state into / out of a checkpoint folder.
  virtual void save(const CheckpointLayout& checkpoint) const = 0;
  // `meta` is the checkpoint's meta.json (world size and layout it was written with).
  virtual void load(const CheckpointLayout& checkpoint, const core::Json& meta) = 0;

 protected:
  GroupOptimizer(std::string name, torch::OrderedDict<std::string, torch::Tensor> params)
      : name_(std::move(name)), params_(std::move(params)) {}

  std::string name_;
  torch::OrderedDict<std::string, torch::Tensor> params_;
};

// The optimiser `config` asks for (--zero: sharded, else replicated) for one group. `buffers`
// (the model's, given with the first group only) start from rank 0's values like the parameters.
// `beta1` is the group's own Adam β₁ (models/Model.h ParameterGroup), or config.beta1.
std::unique_ptr<GroupOptimizer> makeGroupOptimizer(
    std::string name, torch::OrderedDict<std::string, torch::Tensor> params,
    const std::vector<torch::Tensor>& buffers, dist::Communicator& comm, const TrainConfig& config,
    double beta1);

}  // namespace lddpm::launch
