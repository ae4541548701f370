#pragma once
// Collectives over NCCL on CUDA tensors, one GPU per rank chosen by local rank (two ranks on one
// GPU hang inside NCCL). Bootstrapped over MPI: rank 0 creates the ncclUniqueId and broadcasts
// its bytes. Compiled only when LDDPM_WITH_NCCL (a CUDA LibTorch and NCCL found by CMake).
//
// Collectives run on one NCCL stream that first waits for the caller's current stream (where
// the tensors were produced). As in PyTorch c10d, Work::wait() does not block the host: it
// makes the caller's current stream wait for the collective, and a host read such as .item()
// then synchronises as usual. A watchdog thread polls the in-flight collectives and NCCL's
// asynchronous errors, and on a timeout or error aborts the NCCL communicator and the job.
#include <memory>

#include "distributed/Communicator.h"

namespace lddpm::dist {

class NcclCommunicator final : public Communicator {
 public:
  // Collective over every rank of `world`.
  NcclCommunicator(const World& world, const CommunicatorOptions& options);
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  Backend backend() const override { return Backend::Nccl; }
  int rank() const override;
  int size() const override;
  // This rank's GPU (cuda:<local rank>).
  torch::Device device() const override;

  WorkPtr allreduce(torch::Tensor tensor, ReduceOp op) override;
  WorkPtr reduceScatter(torch::Tensor output, torch::Tensor input, ReduceOp op,
                        std::vector<int64_t> counts = {}) override;
  WorkPtr allgather(torch::Tensor output, torch::Tensor input,
                    std::vector<int64_t> counts = {}) override;
  WorkPtr broadcast(torch::Tensor tensor, int root) override;
  // Blocks the host until every rank has reached it.
  WorkPtr barrier() override;
  void setStep(int64_t step) override;

  // Defined in the .cpp; public only so that file's helpers can take it by reference.
  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace lddpm::dist
