#pragma once
// The world-of-one backend: every collective is the identity (or a copy between distinct
// tensors) and completes before it returns, so single-process training pays nothing for the
// distributed code path (flashlight keeps the same always-built stub).
#include "distributed/Communicator.h"

namespace lddpm::dist {

class LocalCommunicator final : public Communicator {
 public:
  Backend backend() const override { return Backend::Local; }
  int rank() const override { return 0; }
  int size() const override { return 1; }

  WorkPtr allreduce(torch::Tensor tensor, ReduceOp op) override;
  WorkPtr reduceScatter(torch::Tensor output, torch::Tensor input, ReduceOp op,
                        std::vector<int64_t> counts = {}) override;
  WorkPtr allgather(torch::Tensor output, torch::Tensor input,
                    std::vector<int64_t> counts = {}) override;
  WorkPtr broadcast(torch::Tensor tensor, int root) override;
  WorkPtr barrier() override;
};

}  // namespace lddpm::dist
