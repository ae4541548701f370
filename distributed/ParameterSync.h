#pragma once
// What every data-parallel optimiser needs about replicated tensors: start every rank from rank
// 0's values, and detect ranks that drifted apart (a periodic, cheap desync check). Shared by
// DataParallel (replicated AdamW) and ZeroAdamW (ZeRO-1), whose parameters are replicated after
// each step's allgather.
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "distributed/Communicator.h"

namespace lddpm::dist {

// The parameters an optimiser updates: those of `named` that require grad, in order, with their
// names. core::Error naming `who` when there is none.
struct TrainableParameters {
  std::vector<std::string> names;
  std::vector<torch::Tensor> tensors;
};
TrainableParameters trainableParameters(const torch::OrderedDict<std::string, torch::Tensor>& named,
                                        const char* who);

// Collective. Overwrites every defined, non-empty tensor with rank 0's values, all broadcasts in
// flight at once.
void broadcastFromRankZero(const std::vector<torch::Tensor>& tensors, Communicator& comm);

// Collective. Two float64 sums per tensor (of the values and of their squares: few corruptions
// keep both) are gathered from every rank; core::Error naming `step`, the first tensor whose sums
// differ from rank 0's (by `names`) and the rank. Healthy ranks hold bitwise-equal values; the
// relative tolerance of 1e-9 only absorbs summation-order noise should thread counts differ.
void checkInSync(const std::vector<std::string>& names, const std::vector<torch::Tensor>& tensors,
                 Communicator& comm, std::int64_t step);

// Calls `onAccumulated(k)` each time autograd has accumulated a gradient into `params[k]`'s .grad
// (a post-hook on the parameter's AccumulateGrad node); removes the hooks when destroyed. Holds
// the nodes, of which autograd keeps only a weak reference. How DataParallel and ZeroAdamW keep
// .grad inside their buffers and learn which parameters received a gradient.
class AccumulationHooks {
 public:
  AccumulationHooks(const std::vector<torch::Tensor>& params,
                    std::function<void(size_t)> onAccumulated);
  ~AccumulationHooks();
  AccumulationHooks(const AccumulationHooks&) = delete;
  AccumulationHooks& operator=(const AccumulationHooks&) = delete;

 private:
  std::vector<std::shared_ptr<torch::autograd::Node>> nodes_;
  std::vector<uintptr_t> keys_;
};

}  // namespace lddpm::dist
