#pragma once
// The data-parallel gradient reducer (after PyTorch DDP's reducer): parameters are grouped into
// flat buckets in reverse registration order — roughly the order backward produces their
// gradients — and each bucket's allreduce is launched from autograd hooks the moment its last
// gradient arrives, so communication overlaps the rest of backward. Each parameter's .grad is a
// view into its bucket (DDP's gradient_as_bucket_view): autograd accumulates into the bucket in
// place and the allreduce averages it in place, so no gradient is copied in or out and the
// gradients take their memory once, not twice. finish() waits for the buckets.
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "distributed/Communicator.h"
#include "distributed/ParameterSync.h"

namespace lddpm::dist {

struct DataParallelOptions {
  // The first bucket is small so the first allreduce starts early in backward; the rest are
  // capped so a bucket is not held back waiting for too many gradients (PyTorch's defaults).
  TORCH_ARG(int64_t, firstBucketBytes) = int64_t{1} << 20;
  TORCH_ARG(int64_t, bucketCapBytes) = int64_t{25} << 20;
  // false: no hooks launch anything; finish() reduces all buckets after backward (the baseline
  // the overlap benchmark compares against).
  TORCH_ARG(bool, overlap) = true;
  // Make every rank start from rank 0's parameters and buffers.
  TORCH_ARG(bool, broadcastAtStart) = true;
};

class DataParallel {
 public:
  // Hooks every parameter of `module` that requires grad. Collective: all ranks
  // construct it with identically built modules (the bucket plan is checked to agree).
  DataParallel(torch::nn::Module& module, Communicator& comm, DataParallelOptions options = {});
  // The same over an explicit parameter list (e.g. one optimiser group of a model: pix2pix's
  // generator or discriminator) and the buffers to broadcast with it.
  DataParallel(const torch::OrderedDict<std::string, torch::Tensor>& namedParameters,
               const std::vector<torch::Tensor>& buffers, Communicator& comm,
               DataParallelOptions options = {});
  ~DataParallel();
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  // Gradient accumulation: with sync off, backward only accumulates into .grad locally; the next
  // backward with sync on reduces the accumulated sum. Leave it on for the last micro-batch.
  void setSync(bool sync);
  bool sync() const { return sync_; }

  // Before a step's first backward: zeroes the buckets and points every .grad at its place in
  // them. Optional: a .grad replaced or reset by someone else (zero_grad to none, an out-of-place
  // accumulation under create_graph) is copied into the bucket once, when it is next
  // accumulated, and the view restored; only that costs a copy.
  void zeroGrad();

  // After backward: waits for every bucket; each .grad then holds the average over ranks.
  // Throws core::Error naming the parameters that received no gradient this step.
  void finish();

  // Desync detection: compares a float64 checksum of every parameter across ranks; throws
  // core::Error naming the first parameter, the ranks and `step` when they differ.
  void checkParametersInSync(int64_t step);

  // The bucket plan (parameter indices in registration order) — for tests and the launch report.
  const std::vector<std::vector<size_t>>& buckets() const { return bucketParams_; }
  int64_t bytesPerStep() const;
  // How many times a .grad had to be moved into its bucket because it was not the bucket's view
  // (see zeroGrad): 0 in a loop that calls zeroGrad() before each step.
  int64_t gradientCopies() const { return gradientCopies_; }

 private:
  struct Slot {  // one parameter's place in the buckets
    size_t bucket;
    int64_t offset;  // elements into the bucket's flat buffer
  };
  void onAccumulated(size_t param);  // after autograd added this backward's gradient to .grad
  void launchReadyBuckets();         // in bucket order: every rank issues the same sequence

  Communicator& comm_;
  DataParallelOptions options_;
  std::vector<std::string> names_;
  std::vector<torch::Tensor> params_;
  std::unique_ptr<AccumulationHooks> hooks_;  // onAccumulated(k) after each gradient
  std::vector<Slot> slots_;
  std::vector<torch::Tensor> views_;  // per parameter: its place in its bucket, its shape
  std::vector<std::vector<size_t>> bucketParams_;
  std::vector<torch::Tensor> buffers_;  // flat, one per bucket
  std::vector<int> pending_;            // per bucket: gradients still to arrive this step
  std::vector<WorkPtr> works_;          // per bucket, this step
  std::vector<bool> ready_;             // per parameter, this step
  size_t nextLaunch_ = 0;
  int64_t gradientCopies_ = 0;
  bool sync_ = true;
  std::mutex mutex_;  // hooks may run on autograd worker threads
};

}  // namespace lddpm::dist
