// The training engine across ranks (run under mpiexec -n 2 and -n 3): N ranks match one rank on
// the same global batch (replicated AdamW and ZeRO-1), a stopped-and-resumed N-rank run is
// bit-identical to an uninterrupted one, a signal on one rank makes every rank checkpoint and
// stop with ResumeRequested, and ranks that drift apart are caught in every parameter group,
// replicated or sharded.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <csignal>
#include <filesystem>
#include <map>

#include "core/Checkpoint.h"
#include "core/Error.h"
#include "core/StopSignal.h"
#include "distributed/LocalCommunicator.h"
#include "distributed/World.h"
#include "launch/engine/GroupOptimizer.h"
#include "launch/engine/Trainer.h"
#include "tests/launch/SyntheticSource.h"

namespace {
using namespace lddpm;
namespace fs = std::filesystem;

using testutil::RunSetup;

// Tiny multi-rank runs: 3 steps of global batch 6 (divisible by 2 and 3 ranks).
RunSetup makeSetup(const std::string& run, const std::string& modelName,
                   const std::vector<std::string>& extra = {}) {
  return testutil::makeRunSetup({{"--store", "unused"},
                                 {"--run", run},
                                 {"--model", modelName},
                                 {"--steps", "3"},
                                 {"--batch", "6"},
                                 {"--warmup", "1"},
                                 {"--checkpoint-every", "100"},
                                 {"--log-every", "1"},
                                 {"--lr", "1e-3"},
                                 {"--desync-check-every", "1"}},
                                extra);
}

struct TrainerMpi : ::testing::Test {
  std::unique_ptr<dist::Communicator> comm;
  fs::path shared;  // the same folder on every rank (rank 0 picks it)
  fs::path local;   // this rank's own folder

  void SetUp() override {
    comm = dist::makeCommunicator(dist::Backend::Mpi, dist::World::get());
    auto id = torch::tensor({static_cast<std::int64_t>(::getpid())});
    comm->broadcast(id, 0)->wait();
    shared = fs::temp_directory_path() /
             ("lddpm-trainer-mpi-" + std::to_string(id.item<std::int64_t>()));
    local = shared / ("rank" + std::to_string(comm->rank()));
    fs::create_directories(local);
    core::StopSignal::reset();
  }
  void TearDown() override {
    comm->barrier()->wait();
    if (comm->rank() == 0) fs::remove_all(shared);
    core::StopSignal::reset();
  }
};

// Relative difference of the whole parameter vectors, ||a - b|| / ||a||, and the worst tensor's.
// Adam normalises each gradient element, so float32 summation-order noise in near-zero gradients
// (zero-initialised output convolutions) moves single tensors far more than the model as a whole;
// a wrong batch split moves everything by ~lr and shows in both figures.
std::pair<double, double> relativeDifference(torch::nn::Module& a, torch::nn::Module& b) {
  double diff2 = 0, norm2 = 0, worst = 0;
  auto pa = a.named_parameters();
  auto pb = b.named_parameters();
  for (size_t i = 0; i < pa.size(); ++i) {
    const auto x = pa[i].value().to(torch::kFloat64);
    const auto y = pb[i].value().to(torch::kFloat64);
    const double d = (x - y).norm().item<double>();
    const double n = x.norm().item<double>();
    diff2 += d * d;
    norm2 += n * n;
    worst = std::max(worst, d / std::max(n, 1e-12));
  }
  return {std::sqrt(diff2 / norm2), worst};
}

class Invariance : public TrainerMpi,
                   public ::testing::WithParamInterface<std::pair<std::string, std::string>> {};

TEST_P(Invariance, NRanksMatchOneRank) {
  const auto [model, zero] = GetParam();
  testutil::SyntheticSource source;
  dist::LocalCommunicator single;
  RunSetup ref = makeSetup((local / "ref").string(), model,
                           {"--zero", zero == std::string("1") ? "true" : "false"});
  launch::Trainer one(ref.train, ref.model, source, single, "");
  one.run();

  RunSetup par = makeSetup((shared / ("par-" + model + zero)).string(), model,
                           {"--zero", zero == std::string("1") ? "true" : "false"});
  launch::Trainer many(par.train, par.model, source, *comm, "");
  many.run();
  const auto [whole, worstTensor] = relativeDifference(one.model(), many.model());
  EXPECT_LE(whole, 1e-5) << "parameters of " << comm->size() << " ranks vs 1 rank";
  EXPECT_LE(worstTensor, 1e-3) << "some tensor drifted far beyond summation-order noise";
}

INSTANTIATE_TEST_SUITE_P(Engine, Invariance,
                         ::testing::Values(std::make_pair("lesion-ddpm", "0"),
                                           std::make_pair("lesion-ddpm", "1"),
                                           std::make_pair("pix2pix", "0")));

TEST_F(TrainerMpi, SignalOnOneRankStopsAllAndResumeIsBitIdentical) {
  testutil::SyntheticSource source;
  RunSetup straightSetup =
      makeSetup((shared / "straight").string(), "lesion-ddpm", {"--steps", "4"});
  launch::Trainer straight(straightSetup.train, straightSetup.model, source, *comm, "");
  straight.run();

  RunSetup stopSetup = makeSetup((shared / "stopped").string(), "lesion-ddpm", {"--steps", "4"});
  testutil::SyntheticSource signalling;
  const int signalRank = comm->size() - 1;
  if (comm->rank() == signalRank) {
    signalling.onGet = [](std::int64_t g) {
      if (g >= 6) core::StopSignal::raiseForTest(SIGTERM);  // during step 2, on one rank only
    };
  }
  std::int64_t stoppedAt = -1;
  {
    launch::Trainer t(stopSetup.train, stopSetup.model, signalling, *comm, "");
    EXPECT_THROW(t.run(), core::ResumeRequested)
        << "every rank must stop, not only rank " << signalRank;
    stoppedAt = t.step();
  }
  EXPECT_GE(stoppedAt, 2);
  EXPECT_LT(stoppedAt, 4);
  core::StopSignal::reset();
  comm->barrier()->wait();
  ASSERT_EQ(core::newestCheckpoint((shared / "stopped" / "checkpoints").string())->step, stoppedAt);

  launch::Trainer resumed(stopSetup.train, stopSetup.model, source, *comm, "");
  EXPECT_EQ(resumed.step(), stoppedAt);
  resumed.run();
  auto a = straight.model().named_parameters();
  auto b = resumed.model().named_parameters();
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(torch::equal(a[i].value(), b[i].value())) << a[i].key();
  }
}

// pix2pix's second group (the generator) drifts on the last rank: the engine's desync check must
// catch it on every rank, naming a generator parameter (it once checked the first group only).
TEST_F(TrainerMpi, DesyncInTheSecondGroupStopsEveryRank) {
  testutil::SyntheticSource source;
  RunSetup setup = makeSetup((shared / "desync").string(), "pix2pix", {"--steps", "2"});
  launch::Trainer trainer(setup.train, setup.model, source, *comm, "");
  if (comm->rank() == comm->size() - 1) {
    torch::NoGradGuard noGrad;
    for (auto& p : trainer.model().named_parameters()) {
      if (p.key().rfind("generator.", 0) == 0) {
        p.value().add_(0.5);
        break;
      }
    }
  }
  try {
    trainer.run();
    FAIL() << "a generator that differs between ranks went unnoticed";
  } catch (const core::Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("desync at step 1"), std::string::npos) << what;
    EXPECT_NE(what.find("'generator."), std::string::npos) << what;
  }
}

// The optimiser interface on its own, replicated and ZeRO-1: ranks in sync pass the check; a
// parameter changed on one rank is named on every rank.
TEST_F(TrainerMpi, GroupOptimizerChecksSyncInBothLayouts) {
  for (const bool zero : {false, true}) {
    SCOPED_TRACE(zero ? "zero" : "replicated");
    torch::manual_seed(3);
    torch::nn::Linear layer(4, 3);
    torch::OrderedDict<std::string, torch::Tensor> params;
    for (const auto& p : layer->named_parameters()) params.insert("layer." + p.key(), p.value());
    launch::TrainConfig config;
    config.parallel.zero = zero;
    auto optimizer = launch::makeGroupOptimizer("model", params, {}, *comm, config, 0.9);
    EXPECT_NO_THROW(optimizer->checkInSync(7));
    if (comm->rank() == comm->size() - 1) {
      torch::NoGradGuard noGrad;
      layer->bias.add_(1.0);
    }
    try {
      optimizer->checkInSync(7);
      ADD_FAILURE() << "a bias that differs between ranks went unnoticed";
    } catch (const core::Error& e) {
      EXPECT_NE(std::string(e.what()).find("'layer.bias'"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("step 7"), std::string::npos) << e.what();
    }
    comm->barrier()->wait();
  }
}

}  // namespace
