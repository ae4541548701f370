// Training-engine utilities against closed forms: the warm-up + cosine learning rate, the EMA, and
// the run layout (file names as docs/training.md documents them, the weights reader).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>

#include "core/Error.h"
#include "launch/engine/Ema.h"
#include "launch/engine/LrSchedule.h"
#include "launch/engine/RunLayout.h"
#include "tests/common/TempDir.h"

namespace {
using lddpm::launch::Ema;
using lddpm::launch::LrSchedule;

TEST(LrSchedule, WarmupThenCosine) {
  const LrSchedule s{/*peakLr=*/1e-3, /*minLr=*/1e-5, /*warmupSteps=*/10, /*totalSteps=*/110};
  EXPECT_DOUBLE_EQ(s.at(0), 1e-4);                    // (0 + 1) / 10 of the peak
  EXPECT_DOUBLE_EQ(s.at(9), 1e-3);                    // end of warm-up
  EXPECT_DOUBLE_EQ(s.at(10), 1e-3);                   // cos(0) = 1
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

// The names docs/training.md ("The run directory") promises, written out.
TEST(RunLayout, FileNamesAsDocumented) {
  const lddpm::launch::RunLayout run("/r/run");
  EXPECT_EQ(run.config(), "/r/run/config.ini");
  EXPECT_EQ(run.status(), "/r/run/status.json");
  EXPECT_EQ(run.metrics(), "/r/run/metrics.jsonl");
  EXPECT_EQ(run.checkpoints(), "/r/run/checkpoints");
  const lddpm::launch::CheckpointLayout ckpt("/r/run/checkpoints/step-00000010");
  EXPECT_EQ(ckpt.model(), "/r/run/checkpoints/step-00000010/model.pt");
  EXPECT_EQ(ckpt.ema(), "/r/run/checkpoints/step-00000010/ema.pt");
  EXPECT_EQ(ckpt.config(), "/r/run/checkpoints/step-00000010/config.ini");
  EXPECT_EQ(ckpt.optimizer("generator"), "/r/run/checkpoints/step-00000010/optimizer-generator.pt");
  EXPECT_EQ(ckpt.optimizerShard("model", 3),
            "/r/run/checkpoints/step-00000010/optimizer-model-rank00003.pt");
  EXPECT_EQ(ckpt.rng(12), "/r/run/checkpoints/step-00000010/rng-rank00012.pt");
}

// EMA weights are the EMA's parameters over the model's buffers; the EMA's update count is not a
// weight; a shape that does not fit names the file.
TEST(RunLayout, WeightsReaderTakesEmaParametersAndModelBuffers) {
  namespace fs = std::filesystem;
  using namespace lddpm;
  const lddpm::testing::TempDir tmp{"layout"};
  const fs::path dir = tmp.path;
  torch::nn::BatchNorm1d model(3);  // parameters weight, bias; buffers running_mean/var, ...
  {
    torch::NoGradGuard noGrad;
    model->running_mean.fill_(7);
  }
  Ema ema(*model, 0.5);
  {
    torch::NoGradGuard noGrad;
    model->weight.fill_(3);
  }
  ema.update(*model);  // decay min(0.5, 1/10) = 0.1: shadow = 0.1·1 + 0.9·3 = 2.8
  const launch::CheckpointLayout ckpt(dir.string());
  core::saveTensorDict(ckpt.model(), launch::moduleWeights(*model));
  core::saveTensorDict(ckpt.ema(), ema.state());
  const core::TensorDict weights = launch::readWeights(ckpt, "ema");
  EXPECT_EQ(weights.count("__ema_updates__"), 0u);
  EXPECT_NEAR(weights.at("weight")[0].item<double>(), 2.8, 1e-6);
  EXPECT_EQ(weights.at("running_mean")[0].item<double>(), 7.0);
  EXPECT_EQ(launch::readWeights(ckpt, "model").at("weight")[0].item<double>(), 3.0);
  torch::nn::BatchNorm1d other(3);
  launch::loadModuleWeights(*other, weights, ckpt.ema());
  EXPECT_NEAR(other->weight[1].item<double>(), 2.8, 1e-6);
  torch::nn::BatchNorm1d wider(4);
  try {
    launch::loadModuleWeights(*wider, weights, ckpt.ema());
    ADD_FAILURE() << "a 3-channel checkpoint loaded into a 4-channel model";
  } catch (const core::IoError& e) {
    EXPECT_NE(std::string(e.what()).find(ckpt.ema()), std::string::npos) << e.what();
  }
}

}  // namespace
