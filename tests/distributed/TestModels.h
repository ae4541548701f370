#pragma once
// Small models and a call-counting communicator shared by the distributed tests.
#include <torch/torch.h>

#include <atomic>

#include "distributed/Communicator.h"

namespace lddpm::testing {

// Conv3d → SiLU → Conv3d → Linear on [B, 2, 4, 4, 4] inputs; float64 so that comparisons with a
// one-rank reference can be tight. `unused` is a layer forward() never touches.
struct TinyNetImpl : torch::nn::Module {
  explicit TinyNetImpl(bool withUnused = false) {
    conv1 =
        register_module("conv1", torch::nn::Conv3d(torch::nn::Conv3dOptions(2, 4, 3).padding(1)));
    conv2 =
        register_module("conv2", torch::nn::Conv3d(torch::nn::Conv3dOptions(4, 4, 3).padding(1)));
    head = register_module("head", torch::nn::Linear(4 * 4 * 4 * 4, 3));
    if (withUnused) unused = register_module("unused", torch::nn::Linear(3, 3));
    to(torch::kDouble);
  }
  torch::Tensor forward(torch::Tensor x) {  // [B, 2, 4, 4, 4] → [B, 3]
    x = torch::silu(conv1(x));
    x = conv2(x);
    return head(x.flatten(1));
  }
  torch::nn::Conv3d conv1{nullptr}, conv2{nullptr};
  torch::nn::Linear head{nullptr}, unused{nullptr};
};
TORCH_MODULE(TinyNet);

// Deterministic data: the same full batch on every rank, [batch, 2, 4, 4, 4] and targets [batch,
// 3].
inline std::pair<torch::Tensor, torch::Tensor> fullBatch(int64_t batch, uint64_t seed) {
  auto gen = torch::make_generator<at::CPUGeneratorImpl>(seed);
  auto x = torch::randn({batch, 2, 4, 4, 4}, gen, torch::kDouble);
  auto y = torch::randn({batch, 3}, gen, torch::kDouble);
  return {x, y};
}

inline TinyNet makeNet(uint64_t seed, bool withUnused = false) {
  torch::manual_seed(seed);
  return TinyNet(withUnused);
}

// Wraps a communicator and counts what passes through (checks overlap and no-sync behaviour).
class CountingCommunicator final : public dist::Communicator {
 public:
  explicit CountingCommunicator(dist::Communicator& inner) : inner_(inner) {}
  dist::Backend backend() const override { return inner_.backend(); }
  int rank() const override { return inner_.rank(); }
  int size() const override { return inner_.size(); }
  dist::WorkPtr allreduce(torch::Tensor t, dist::ReduceOp op) override {
    ++allreduces;
    return inner_.allreduce(t, op);
  }
  dist::WorkPtr reduceScatter(torch::Tensor o, torch::Tensor i, dist::ReduceOp op,
                              std::vector<int64_t> c = {}) override {
    ++reduceScatters;
    return inner_.reduceScatter(o, i, op, std::move(c));
  }
  dist::WorkPtr allgather(torch::Tensor o, torch::Tensor i, std::vector<int64_t> c = {}) override {
    ++allgathers;
    return inner_.allgather(o, i, std::move(c));
  }
  dist::WorkPtr broadcast(torch::Tensor t, int root) override { return inner_.broadcast(t, root); }
  dist::WorkPtr barrier() override { return inner_.barrier(); }
  std::atomic<int> allreduces{0}, reduceScatters{0}, allgathers{0};

 private:
  dist::Communicator& inner_;
};

inline double maxRelativeDifference(torch::nn::Module& a, torch::nn::Module& b) {
  auto pa = a.parameters();
  auto pb = b.parameters();
  double worst = 0;
  for (size_t i = 0; i < pa.size(); ++i) {
    const double scale = pb[i].abs().max().item<double>() + 1e-12;
    worst = std::max(worst, (pa[i] - pb[i]).abs().max().item<double>() / scale);
  }
  return worst;
}

}  // namespace lddpm::testing
