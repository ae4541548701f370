// Sliding-window inference: Gaussian blending is a weighted average, so one window covering the
// volume reproduces the direct prediction, a constant predictor comes back constant everywhere
// (every voxel covered, weights normalised), and windows tile the volume with the asked overlap.
#include <gtest/gtest.h>

#include "models/Conv3d.h"
#include "models/SlidingWindow.h"

namespace {
using namespace lddpm::models;

TEST(SlidingWindow, OneWindowOverTheVolumeIsTheDirectForward) {
  torch::manual_seed(0);
  torch::nn::Conv3d conv(torch::nn::Conv3dOptions(2, 3, 3).padding(1));
  const auto volume = torch::randn({1, 2, 8, 12, 16});
  const auto predictor = [&](const torch::Tensor& x) { return conv(x); };
  torch::NoGradGuard noGrad;
  const auto direct = conv(volume);
  const auto windowed =
      slidingWindowInference(volume, predictor, SlidingWindowOptions().window({8, 12, 16}));
  EXPECT_TRUE(torch::allclose(windowed, direct, 1e-6, 1e-6));
}

TEST(SlidingWindow, EveryVoxelIsCoveredAndWeightsAreNormalised) {
  const auto volume = torch::zeros({2, 1, 21, 16, 35}, torch::kFloat64);
  std::int64_t windows = 0;
  const auto ones = [&](const torch::Tensor& x) {
    ++windows;
    EXPECT_EQ(x.sizes().slice(2), (std::vector<int64_t>{8, 8, 8}));
    return torch::ones_like(x);
  };
  const auto out =
      slidingWindowInference(volume, ones, SlidingWindowOptions().window({8, 8, 8}).overlap(0.5));
  EXPECT_EQ(out.sizes(), volume.sizes());
  EXPECT_TRUE(torch::allclose(out, torch::ones_like(out), 1e-12, 1e-12));
  // Step 4 with the last window flush: 21 -> 5 starts, 16 -> 3, 35 -> 8.
  EXPECT_EQ(windows, 5 * 3 * 8);
}

// Windows stacked along the batch (windowBatch) through a network of the models' Conv3d: the same
// bits as one window per call, whatever the count left for the last call; ⌈windows / k⌉ calls.
TEST(SlidingWindow, BatchedWindowsGiveTheSameBits) {
  torch::manual_seed(1);
  Conv3d conv1(torch::nn::Conv3dOptions(1, 4, 3).padding(1));
  Conv3d conv2(torch::nn::Conv3dOptions(4, 2, 3).padding(1));
  std::int64_t calls = 0;
  const auto predictor = [&](const torch::Tensor& x) {
    ++calls;
    return conv2(torch::silu(conv1(x)));
  };
  const auto volume = torch::randn({2, 1, 21, 16, 20});
  const auto options = SlidingWindowOptions().window({8, 8, 8}).overlap(0.5);
  const auto one = slidingWindowInference(volume, predictor, options);
  const std::int64_t windows = calls;  // 5 x 3 x 4 = 60
  ASSERT_EQ(windows, 5 * 3 * 4);
  for (std::int64_t k : {4, 7}) {
    calls = 0;
    const auto batched =
        slidingWindowInference(volume, predictor, SlidingWindowOptions(options).windowBatch(k));
    EXPECT_EQ(calls, (windows + k - 1) / k) << "window batch " << k;
    EXPECT_TRUE(torch::equal(batched, one))
        << "window batch " << k << ": max |Δ| " << (batched - one).abs().max().item<double>();
  }
}

TEST(SlidingWindow, SmallVolumesArePaddedAndCroppedBack) {
  const auto volume = torch::arange(6 * 5 * 4, torch::kFloat64).view({1, 1, 6, 5, 4});
  const auto identity = [](const torch::Tensor& x) { return x.clone(); };
  const auto out =
      slidingWindowInference(volume, identity, SlidingWindowOptions().window({8, 8, 8}));
  EXPECT_TRUE(torch::allclose(out, volume, 1e-12, 1e-12));
}

TEST(SlidingWindow, StartsCoverTheAxisWithTheAskedOverlap) {
  EXPECT_EQ(windowStarts(16, 8, 0.5), (std::vector<std::int64_t>{0, 4, 8}));
  EXPECT_EQ(windowStarts(8, 8, 0.5), (std::vector<std::int64_t>{0}));
  EXPECT_EQ(windowStarts(5, 8, 0.5), (std::vector<std::int64_t>{0}));
  EXPECT_EQ(windowStarts(10, 8, 0.0), (std::vector<std::int64_t>{0, 2}));
  const auto starts = windowStarts(182, 64, 0.5);
  EXPECT_EQ(starts.front(), 0);
  EXPECT_EQ(starts.back(), 182 - 64);
  for (std::size_t i = 1; i < starts.size(); ++i) EXPECT_LE(starts[i] - starts[i - 1], 32);
}

TEST(SlidingWindow, GaussianPeaksAtTheCentre) {
  const auto g = gaussianImportanceMap({9, 9, 9}, 0.125, torch::kFloat64);
  EXPECT_DOUBLE_EQ(g[4][4][4].item<double>(), 1.0);
  EXPECT_GT(g.min().item<double>(), 0.0);
  EXPECT_LT(g[0][4][4].item<double>(), g[2][4][4].item<double>());
  // σ = 9/8 along each axis: weight at distance 4 on one axis is exp(-16 / (2 σ²)).
  EXPECT_NEAR(g[0][4][4].item<double>(), std::exp(-16.0 / (2 * 1.125 * 1.125)), 1e-12);
}

}  // namespace
