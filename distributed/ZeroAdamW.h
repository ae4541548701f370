#pragma once
// ZeRO stage 1 AdamW: each rank keeps the Adam moments of one contiguous slice ("shard") of the
// flattened parameters, so optimizer memory per rank falls from 8 B to 8/N B per parameter
// (fp32 moments). A step reduce-scatters the local gradients (each rank receives the average of
// its shard), clips by the global norm, updates its shard with AdamW and allgathers the updated
// parameters. Replaces DataParallel + torch::optim::AdamW; the update is the same formula as
// torch::optim::AdamW (decoupled weight decay), so both give the same parameters.
//
// Flat arenas: every parameter's data and, from zeroGrad() on, its .grad are views into two flat
// buffers (the parameters' and the gradients' arena), so a step copies nothing in or out:
// autograd adds each gradient into the gradient arena in place, the reduce-scatter reads it, the
// AdamW update writes this rank's slice of the parameter arena and the allgather fills the rest
// in place. A post-hook on each parameter's AccumulateGrad node records which parameters received
// a gradient. A .grad reset or replaced by someone else, or a parameter whose storage was
// replaced (Tensor::set_data), is moved back into its arena at the next step and counted
// (gradientCopies(), parameterCopies()).
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/Checkpoint.h"
#include "distributed/Communicator.h"
#include "distributed/ParameterSync.h"

namespace lddpm::dist {

struct ZeroAdamWOptions {
  TORCH_ARG(double, lr) = 1e-3;
  TORCH_ARG(double, beta1) = 0.9;
  TORCH_ARG(double, beta2) = 0.999;
  TORCH_ARG(double, eps) = 1e-8;
  TORCH_ARG(double, weightDecay) = 1e-2;
  // Clip the gradient to this global L2 norm (torch::nn::utils::clip_grad_norm_'s rule);
  // 0 disables clipping.
  TORCH_ARG(double, maxGradNorm) = 0.0;
  // Make every rank start from rank 0's parameters.
  TORCH_ARG(bool, broadcastAtStart) = true;
};

class ZeroAdamW {
 public:
  // Collective. Parameters that do not require grad are left alone; the rest must share one
  // floating dtype and device.
  ZeroAdamW(const torch::OrderedDict<std::string, torch::Tensor>& namedParameters,
            Communicator& comm, ZeroAdamWOptions options = {});
  ~ZeroAdamW();
  ZeroAdamW(const ZeroAdamW&) = delete;
  ZeroAdamW& operator=(const ZeroAdamW&) = delete;

  // Uses the local (un-reduced) .grad of every parameter; returns the global gradient norm
  // before clipping. Throws core::Error naming parameters without a gradient.
  double step();
  // Zeroes the gradient arena and points every .grad at its view (call before each backward).
  void zeroGrad();
  // Collective: core::Error naming the first parameter whose value differs between ranks (after
  // each step's allgather every rank must hold the same parameters).
  void checkParametersInSync(int64_t step);

  void setLr(double lr) { options_.lr(lr); }
  const ZeroAdamWOptions& options() const { return options_; }

  // This rank's slice of the flattened parameters: [offset, offset + size) of totalSize().
  int64_t shardOffset() const { return offsets_[static_cast<size_t>(comm_.rank())]; }
  int64_t shardSize() const { return counts_[static_cast<size_t>(comm_.rank())]; }
  int64_t totalSize() const { return flatParams_.numel(); }
  int64_t stepCount() const { return step_; }
  // Gradients / parameters found outside their arena and copied back in (0 when zeroGrad()
  // precedes each backward and nobody replaces a parameter's storage).
  int64_t gradientCopies() const { return gradientCopies_; }
  int64_t parameterCopies() const { return parameterCopies_; }
  const torch::Tensor& parameterArena() const { return flatParams_; }
  const torch::Tensor& gradientArena() const { return flatGrads_; }

  // Per-rank state: exp_avg, exp_avg_sq (this shard), step, and the layout it belongs to
  // (world_size, shard_offset, shard_size, total_size) so a restore into another layout fails
  // loudly. save()/load() go through core's tensor-dict files (a pickled dict of tensors that
  // Python's torch.load reads).
  core::TensorDict stateDict() const;
  void loadStateDict(const core::TensorDict& state, const std::string& source);
  void save(const std::string& path) const;
  void load(const std::string& path);

 private:
  Communicator& comm_;
  ZeroAdamWOptions options_;
  std::vector<std::string> names_;
  std::vector<torch::Tensor> params_;
  std::vector<int64_t> counts_;
  std::vector<int64_t> offsets_;
  void onAccumulated(size_t k);
  // Moves a .grad that holds values outside its arena slot into it and re-points it; true when it
  // did (counted in gradientCopies_). Caller holds mutex_.
  bool adoptGradient(size_t k);
  void gatherIntoArenas(std::string& missing);

  torch::Tensor flatParams_;                           // [total]: every parameter's storage
  torch::Tensor flatGrads_;                            // [total]: every .grad's storage
  std::vector<torch::Tensor> paramViews_, gradViews_;  // per parameter, detached views
  std::unique_ptr<AccumulationHooks> hooks_;           // onAccumulated(k) after each gradient
  std::vector<char> received_;                         // a gradient arrived since zeroGrad()
  std::mutex mutex_;                                   // hooks may run on autograd worker threads
  int64_t gradientCopies_ = 0, parameterCopies_ = 0;
  torch::Tensor shardGrad_;  // [shardSize]
  torch::Tensor expAvg_;     // [shardSize]
  torch::Tensor expAvgSq_;   // [shardSize]
  int64_t step_ = 0;
};

}  // namespace lddpm::dist
