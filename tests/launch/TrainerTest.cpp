// The training engine on one rank: a run stopped by a signal and resumed ends bit-identical to an
// uninterrupted one (parameters, EMA); metrics and checkpoints are written; bad options name
// themselves; export loads in Python.
#include <gtest/gtest.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <map>

#include "core/Checkpoint.h"
#include "core/Error.h"
#include "core/MetricsLog.h"
#include "core/StopSignal.h"
#include "distributed/LocalCommunicator.h"
#include "launch/engine/Trainer.h"
#include "tests/common/TempDir.h"
#include "tests/launch/SyntheticSource.h"

namespace {
using namespace lddpm;
namespace fs = std::filesystem;

using testutil::RunSetup;

// Tiny single-rank runs: 6 steps of batch 2.
RunSetup makeSetup(const std::string& run, const std::string& modelName,
                   const std::vector<std::string>& extra = {}) {
  return testutil::makeRunSetup({{"--store", "unused"},
                                 {"--run", run},
                                 {"--model", modelName},
                                 {"--steps", "6"},
                                 {"--batch", "2"},
                                 {"--warmup", "2"},
                                 {"--checkpoint-every", "100"},
                                 {"--log-every", "1"},
                                 {"--lr", "1e-3"}},
                                extra);
}

struct TrainerFixture : ::testing::Test {
  lddpm::testing::TempDir tmp{"trainer"};
  const fs::path dir = tmp.path;
  void SetUp() override { core::StopSignal::reset(); }
  void TearDown() override { core::StopSignal::reset(); }
};

void expectIdentical(torch::nn::Module& a, torch::nn::Module& b) {
  auto pa = a.named_parameters();
  auto pb = b.named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_TRUE(torch::equal(pa[i].value(), pb[i].value())) << pa[i].key();
  }
}

class ResumeTest : public TrainerFixture, public ::testing::WithParamInterface<std::string> {};

TEST_P(ResumeTest, StoppedAndResumedIsBitIdentical) {
  const std::string model = GetParam();
  dist::LocalCommunicator comm;
  testutil::SyntheticSource source;

  RunSetup straight = makeSetup((dir / "straight").string(), model);
  launch::Trainer a(straight.train, straight.model, source, comm, "");
  a.run();

  // The same run, stopped by SIGUSR2 while step 3 loads its batch, then resumed from disk.
  RunSetup stopped = makeSetup((dir / "stopped").string(), model);
  testutil::SyntheticSource signalling;
  signalling.onGet = [](std::int64_t g) {
    if (g == 2 * 2) core::StopSignal::raiseForTest(SIGUSR2);  // first sample of step 3
  };
  std::int64_t stoppedAt = 0;
  {
    launch::Trainer b(stopped.train, stopped.model, signalling, comm, "");
    EXPECT_THROW(b.run(), core::ResumeRequested);
    stoppedAt = b.step();
  }
  // Ranks agree at the next step boundary: the signal arrived during step 3.
  EXPECT_GE(stoppedAt, 3);
  EXPECT_LE(stoppedAt, 4);
  core::StopSignal::reset();
  ASSERT_EQ(core::newestCheckpoint((dir / "stopped" / "checkpoints").string())->step, stoppedAt);
  launch::Trainer c(stopped.train, stopped.model, source, comm, "");
  EXPECT_EQ(c.step(), stoppedAt);
  c.run();
  EXPECT_EQ(c.step(), 6);

  expectIdentical(a.model(), c.model());
  ASSERT_EQ(a.ema().tensors().size(), c.ema().tensors().size());
  for (size_t i = 0; i < a.ema().tensors().size(); ++i) {
    EXPECT_TRUE(torch::equal(a.ema().tensors()[i], c.ema().tensors()[i])) << a.ema().names()[i];
  }
  // metrics.jsonl tells one history: steps 1..6 once each.
  const auto rows = core::MetricsLog::readAll((dir / "stopped" / "metrics.jsonl").string());
  ASSERT_EQ(rows.size(), 6u);
  for (size_t i = 0; i < rows.size(); ++i) EXPECT_EQ(rows[i]["step"], static_cast<int>(i + 1));
}

INSTANTIATE_TEST_SUITE_P(Models, ResumeTest,
                         ::testing::Values("lesion-ddpm", "cond-ddpm", "pix2pix", "seg"));

TEST_F(TrainerFixture, LossFallsOnRepeatedData) {
  dist::LocalCommunicator comm;
  testutil::SyntheticSource source;
  RunSetup s = makeSetup((dir / "fall").string(), "lesion-ddpm", {"--steps", "30", "--lr", "3e-3"});
  launch::Trainer t(s.train, s.model, source, comm, "");
  t.run();
  const auto rows = core::MetricsLog::readAll((dir / "fall" / "metrics.jsonl").string());
  ASSERT_EQ(rows.size(), 30u);
  double first = 0, last = 0;
  for (int i = 0; i < 5; ++i) first += rows[static_cast<size_t>(i)]["loss"].get<double>();
  for (int i = 25; i < 30; ++i) last += rows[static_cast<size_t>(i)]["loss"].get<double>();
  EXPECT_LT(last, first) << "mean loss of the last 5 steps is not below the first 5";
  for (const char* key : {"lr", "grad_norm", "samples_per_s", "voxels_per_s", "data_wait"}) {
    EXPECT_TRUE(rows.back().contains(key)) << key;
  }
}

TEST_F(TrainerFixture, BatchNotDivisibleNamesOption) {
  try {
    RunSetup s =
        makeSetup((dir / "x").string(), "lesion-ddpm", {"--batch", "3", "--accumulate", "2"});
    s.train.validate(1);
    FAIL();
  } catch (const core::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("--batch"), std::string::npos) << e.what();
  }
}

TEST_F(TrainerFixture, NonFiniteLossStopsWithMessage) {
  dist::LocalCommunicator comm;
  struct NanSource : testutil::SyntheticSource {
    models::Batch get(const std::vector<std::int64_t>& idx) override {
      auto b = SyntheticSource::get(idx);
      b.image.fill_(std::nan(""));
      return b;
    }
  } source;
  RunSetup s = makeSetup((dir / "nan").string(), "lesion-ddpm", {"--max-nonfinite", "2"});
  launch::Trainer t(s.train, s.model, source, comm, "");
  try {
    t.run();
    FAIL();
  } catch (const core::Error& e) {
    EXPECT_NE(std::string(e.what()).find("NaN/Inf"), std::string::npos) << e.what();
  }
}

}  // namespace
