#pragma once
// Collectives over MPI on CPU tensors, on a private duplicate of MPI_COMM_WORLD (so nothing else
// in the process can match our messages) with MPI_ERRORS_RETURN, every call checked.
//
// Open MPI advances a nonblocking collective only while some thread is inside MPI (docs/facts.md),
// so an MPI_Iallreduce posted before backward would make no progress until backward ends. As in
// Horovod, one communication thread owns all traffic on our communicator: collectives are queued
// in issue order and run there as blocking calls, while the caller keeps computing. A watchdog
// thread aborts the job when one collective runs longer than the timeout, after asking the other
// ranks' watchdogs (on a second private communicator) which of them have not reached it.
#include <memory>

#include "distributed/Communicator.h"

namespace lddpm::dist {

class MpiCommunicator final : public Communicator {
 public:
  // Collective over every rank of `world`: all ranks construct it together.
  MpiCommunicator(const World& world, const CommunicatorOptions& options);
  // Finishes queued collectives, stops the threads and frees the communicator.
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  Backend backend() const override { return Backend::Mpi; }
  int rank() const override;
  int size() const override;
  // True when collectives run on the communication thread (MPI_THREAD_MULTIPLE granted and
  // options.commThread), false when they run synchronously in the caller.
  bool threaded() const;

  WorkPtr allreduce(torch::Tensor tensor, ReduceOp op) override;
  WorkPtr reduceScatter(torch::Tensor output, torch::Tensor input, ReduceOp op,
                        std::vector<int64_t> counts = {}) override;
  WorkPtr allgather(torch::Tensor output, torch::Tensor input,
                    std::vector<int64_t> counts = {}) override;
  WorkPtr broadcast(torch::Tensor tensor, int root) override;
  WorkPtr barrier() override;
  void setStep(int64_t step) override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lddpm::dist
