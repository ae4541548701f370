// Training-engine utilities against closed forms: the warm-up + cosine learning rate and the EMA.
#include <gtest/gtest.h>

#include <cmath>

#include "launch/engine/Ema.h"
#include "launch/engine/LrSchedule.h"

namespace {
using lddpm::launch::Ema;
using lddpm::launch::LrSchedule;

TEST(LrSchedule, WarmupThenCosine) {
  const LrSchedule s{/*peakLr=*/1e-3, /*minLr=*/1e-5, /*warmupSteps=*/10, /*totalSteps=*/110};
  EXPECT_DOUBLE_EQ(s.at(0), 1e-4);    // (0 + 1) / 10 of the peak
  EXPECT_DOUBLE_EQ(s.at(9), 1e-3);    // end of warm-up
  EXPECT_DOUBLE_EQ(s.at(10), 1e-3);   // cos(0) = 1
  EXPECT_NEAR(s.at(60), 0.5 * (1e-3 + 1e-5), 1e-15);  // half-way: cos(π/2) = 0
  EXPECT_NEAR(s.at(110), 1e-5, 1e-15);
  EXPECT_NEAR(s.at(500), 1e-5, 1e-15);  // clamped after the end
  for (int step = 10; step < 110; ++step) EXPECT_LE(s.at(step + 1), s.at(step));
}

TEST(LrSchedule, NoWarmup) {
  const LrSchedule s{2.0, 0.0, 0, 4};
  EXPECT_DOUBLE_EQ(s.at(0), 2.0);
  EXPECT_NEAR(s.at(2), 1.0, 1e-15);
}

TEST(Ema, MatchesClosedFormForConstantWeights) {
  torch::nn::Linear model(2, 1);
  {
    torch::NoGradGuard g;
    model->weight.fill_(0.0);
    model->bias.fill_(0.0);
  }
  Ema ema(*model, /*decay=*/0.9);
  {
    torch::NoGradGuard g;
    model->weight.fill_(1.0);
    model->bias.fill_(1.0);
  }
  // shadow_n = 1 - Π_{k<n} d_k with d_k = min(0.9, (1 + k) / (10 + k)).
  double remaining = 1.0;
  for (int k = 0; k < 30; ++k) {
    ema.update(*model);
    remaining *= std::min(0.9, (1.0 + k) / (10.0 + k));
  }
  for (const auto& t : ema.tensors()) {
    EXPECT_NEAR(t.flatten()[0].item<double>(), 1.0 - remaining, 1e-6);
  }
  torch::nn::Linear copy(2, 1);
  ema.copyTo(*copy);
  EXPECT_NEAR(copy->bias.item<double>(), 1.0 - remaining, 1e-6);

  Ema restored(*model, 0.9);
  restored.load(ema.state());
  EXPECT_EQ(restored.updates(), 30);
  EXPECT_TRUE(torch::equal(restored.tensors()[0], ema.tensors()[0]));
}

}  // namespace
