// The training engine on a GPU (skipped without one; run by docs/gpu.md's check): a few steps on
// cuda:0 reach the parameters the same steps reach on the CPU (same batches, same noise: the
// noise is drawn from CPU generators on every device), and bf16 autocast trains with float32
// master weights to a nearby point.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "distributed/LocalCommunicator.h"
#include "launch/engine/Trainer.h"
#include "tests/common/TempDir.h"
#include "tests/launch/SyntheticSource.h"

namespace {
using namespace lddpm;
namespace fs = std::filesystem;

struct TrainerCuda : ::testing::Test {
  lddpm::testing::TempDir tmp{"trainer-cuda"};
  const fs::path dir = tmp.path;
  void SetUp() override {
    if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  }

  std::vector<torch::Tensor> initial;  // parameters before the first step (identical in every run)

  // Three steps of batch 2 of the tiny Lesion-DDPM; returns the final parameters on the CPU.
  std::vector<torch::Tensor> train(const std::string& name, const std::string& device, bool bf16) {
    testutil::RunSetup s = testutil::makeRunSetup({{"--store", "unused"},
                                                   {"--run", (dir / name).string()},
                                                   {"--model", "lesion-ddpm"},
                                                   {"--steps", "3"},
                                                   {"--batch", "2"},
                                                   {"--warmup", "1"},
                                                   {"--checkpoint-every", "100"},
                                                   {"--lr", "1e-3"},
                                                   {"--device", device},
                                                   {"--bf16", bf16 ? "true" : "false"}},
                                                  {});
    dist::LocalCommunicator comm;
    testutil::SyntheticSource source;
    const torch::Device where =
        device == "cuda" ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
    launch::Trainer trainer(s.train, s.model, source, comm, "", where);
    if (initial.empty()) {
      for (const auto& p : trainer.model().parameters())
        initial.push_back(p.detach().cpu().clone());
    }
    const auto result = trainer.run();
    EXPECT_EQ(result.finalStep, 3);
    EXPECT_EQ(result.skippedSteps, 0);
    std::vector<torch::Tensor> out;
    for (const auto& p : trainer.model().parameters()) {
      EXPECT_EQ(p.device(), where);
      EXPECT_EQ(p.scalar_type(), torch::kFloat32);
      out.push_back(p.detach().cpu());
    }
    return out;
  }
};

// Mean |a − b| over every parameter element.
double meanDistance(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  double sum = 0, count = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    sum += (a[i] - b[i]).abs().sum().item<double>();
    count += static_cast<double>(a[i].numel());
  }
  return sum / count;
}

TEST_F(TrainerCuda, Float32MatchesTheCpuRun) {
  const auto cpu = train("cpu", "cpu", false);
  const auto gpu = train("gpu", "cuda", false);
  ASSERT_EQ(cpu.size(), gpu.size());
  // Adam moves every element by about lr per step whatever its gradient, so compare the two
  // runs' disagreement with how far training moved the weights: a few percent at most.
  const double moved = meanDistance(cpu, initial);
  ASSERT_GT(moved, 0.0);
  EXPECT_LT(meanDistance(gpu, cpu), 0.05 * moved);
}

TEST_F(TrainerCuda, Bf16StaysNearFloat32) {
  const auto fp32 = train("fp32", "cuda", false);
  const auto bf16 = train("bf16", "cuda", true);
  const double d = meanDistance(bf16, fp32);
  EXPECT_GT(d, 0.0);  // autocast really changed the arithmetic
  EXPECT_LT(d, 0.5 * meanDistance(fp32, initial));
}

}  // namespace
