// The data-parallel reducer against a one-rank reference computed inside the same test on every
// rank from the combined batch: K steps on n ranks with batch b each must end where one process
// with batch n·b ends (≤ 1e-6 relative), with and without overlap, with gradient accumulation, and
// with the failure modes (unused parameter, desync, mismatched models) reported by name.
#include <gtest/gtest.h>

#include <set>

#include "core/Error.h"
#include "distributed/DataParallel.h"
#include "distributed/World.h"
#include "distributed/ZeroAdamW.h"
#include "tests/common/Errors.h"
#include "tests/distributed/TestModels.h"

namespace {
using lddpm::testutil::errorOf;
using namespace lddpm::dist;
using lddpm::testing::CountingCommunicator;
using lddpm::testing::fullBatch;
using lddpm::testing::makeNet;
using lddpm::testing::maxRelativeDifference;

constexpr int64_t kLocalBatch = 2;

DataParallelOptions smallBuckets() {
  // Tiny caps so the 4-layer model spreads over several buckets.
  return DataParallelOptions().firstBucketBytes(256).bucketCapBytes(2048);
}

void trainAndCompare(bool overlap) {
  auto comm = makeCommunicator(Backend::Auto, World::get());
  const int n = comm->size();
  const int r = comm->rank();
  auto reference = makeNet(/*seed=*/1);
  auto net = makeNet(/*seed=*/1 + 7 * static_cast<uint64_t>(r));  // differs until broadcast
  DataParallel dp(*net, *comm, smallBuckets().overlap(overlap));
  EXPECT_LT(maxRelativeDifference(*net, *reference), 1e-15) << "broadcast from rank 0";
  EXPECT_GT(dp.buckets().size(), 2u);

  torch::optim::SGD refOpt(reference->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
  torch::optim::SGD opt(net->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
  for (int step = 0; step < 4; ++step) {
    auto [x, y] = fullBatch(kLocalBatch * n, /*seed=*/100 + static_cast<uint64_t>(step));
    refOpt.zero_grad();
    torch::mse_loss(reference->forward(x), y).backward();
    refOpt.step();

    opt.zero_grad();
    auto xs = x.narrow(0, kLocalBatch * r, kLocalBatch);
    auto ys = y.narrow(0, kLocalBatch * r, kLocalBatch);
    torch::mse_loss(net->forward(xs), ys).backward();
    dp.finish();
    opt.step();
  }
  EXPECT_LE(maxRelativeDifference(*net, *reference), 1e-6) << "overlap " << overlap;
  EXPECT_GT(maxRelativeDifference(*net, *makeNet(1)), 1e-3) << "training moved the parameters";
  dp.checkParametersInSync(/*step=*/4);
}

TEST(DataParallelMpi, EqualsOneRankOnCombinedBatchWithOverlap) { trainAndCompare(true); }
TEST(DataParallelMpi, EqualsOneRankOnCombinedBatchWithoutOverlap) { trainAndCompare(false); }

TEST(DataParallelMpi, BucketsInReverseOrderLaunchedDuringBackward) {
  auto inner = makeCommunicator(Backend::Auto, World::get());
  CountingCommunicator comm(*inner);
  auto net = makeNet(1);
  DataParallel dp(*net, comm, smallBuckets());
  const size_t nParams = net->parameters().size();
  // Reverse registration order: the head's bias (registered last) opens the first bucket, and
  // every parameter appears exactly once, indices descending.
  std::vector<size_t> order;
  for (const auto& b : dp.buckets()) order.insert(order.end(), b.begin(), b.end());
  ASSERT_EQ(order.size(), nParams);
  for (size_t i = 0; i < nParams; ++i) EXPECT_EQ(order[i], nParams - 1 - i);

  const int before = comm.allreduces;
  auto [x, y] = fullBatch(kLocalBatch, 5);
  torch::mse_loss(net->forward(x), y).backward();
  // Every bucket was launched from the hooks, before finish() was called.
  EXPECT_EQ(comm.allreduces - before, static_cast<int>(dp.buckets().size()));
  dp.finish();
  EXPECT_EQ(comm.allreduces - before, static_cast<int>(dp.buckets().size()));
}

TEST(DataParallelMpi, AccumulationOverMicroBatchesEqualsBigBatch) {
  auto inner = makeCommunicator(Backend::Auto, World::get());
  CountingCommunicator comm(*inner);
  const int n = comm.size();
  const int r = comm.rank();
  constexpr int kMicro = 3;
  auto reference = makeNet(3);
  auto net = makeNet(3);
  DataParallel dp(*net, comm, smallBuckets());
  auto [x, y] = fullBatch(kLocalBatch * kMicro * n, 11);
  torch::mse_loss(reference->forward(x), y).backward();

  const int before = comm.allreduces;
  for (int m = 0; m < kMicro; ++m) {
    dp.setSync(m == kMicro - 1);
    const int64_t start = (r * kMicro + m) * kLocalBatch;
    auto loss = torch::mse_loss(net->forward(x.narrow(0, start, kLocalBatch)),
                                y.narrow(0, start, kLocalBatch)) /
                kMicro;
    loss.backward();
    if (m < kMicro - 1) {
      EXPECT_EQ(comm.allreduces, before) << "no communication without sync";
    }
    dp.finish();
  }
  EXPECT_EQ(comm.allreduces - before, static_cast<int>(dp.buckets().size()));
  auto refParams = reference->parameters();
  auto params = net->parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    const double scale = refParams[i].grad().abs().max().item<double>();
    EXPECT_LE((params[i].grad() - refParams[i].grad()).abs().max().item<double>(), 1e-9 * scale)
        << "parameter " << i;
  }
}

// The gradients live in the buckets (no copy in or out, memory once): every .grad shares the
// storage of one bucket, keeps its address from step to step, and holds the average over ranks.
// A .grad reset to none before backward (as zero_grad(set_to_none) does) is moved back into the
// bucket on its next accumulation, with the same result.
TEST(DataParallelMpi, GradientsAreViewsIntoTheBuckets) {
  auto comm = makeCommunicator(Backend::Auto, World::get());
  const int n = comm->size();
  const int r = comm->rank();
  auto reference = makeNet(4);
  auto net = makeNet(4);
  DataParallel dp(*net, *comm, smallBuckets());
  ASSERT_GT(dp.buckets().size(), 2u);
  std::vector<const void*> addresses;
  const int64_t nParams = static_cast<int64_t>(net->parameters().size());
  for (int step = 0; step < 3; ++step) {
    SCOPED_TRACE(step);
    auto [x, y] = fullBatch(kLocalBatch * n, 40 + static_cast<uint64_t>(step));
    for (auto& p : reference->parameters()) p.mutable_grad() = torch::Tensor();
    torch::mse_loss(reference->forward(x), y).backward();
    if (step == 1) {
      for (auto& p : net->parameters()) p.mutable_grad() = torch::Tensor();  // reset, not zeroed
    } else {
      dp.zeroGrad();
    }
    torch::mse_loss(net->forward(x.narrow(0, kLocalBatch * r, kLocalBatch)),
                    y.narrow(0, kLocalBatch * r, kLocalBatch))
        .backward();
    dp.finish();
    // Copy-free after zeroGrad(); after the reset, each gradient was moved into its bucket once.
    EXPECT_EQ(dp.gradientCopies(), step == 0 ? 0 : nParams);
    std::set<const void*> storages;
    std::vector<const void*> now;
    auto params = net->parameters();
    auto refParams = reference->parameters();
    for (size_t i = 0; i < params.size(); ++i) {
      const torch::Tensor& g = params[i].grad();
      storages.insert(g.storage().data());
      now.push_back(g.data_ptr());
      const double scale = refParams[i].grad().abs().max().item<double>();
      EXPECT_LE((g - refParams[i].grad()).abs().max().item<double>(), 1e-6 * scale)
          << "parameter " << i;
    }
    EXPECT_EQ(storages.size(), dp.buckets().size()) << "each .grad is a view into its bucket";
    if (addresses.empty()) addresses = now;
    EXPECT_EQ(now, addresses) << "the gradients stay in place";
  }
}

TEST(DataParallelMpi, ParameterWithoutGradientIsNamed) {
  auto comm = makeCommunicator(Backend::Auto, World::get());
  auto net = makeNet(1, /*withUnused=*/true);
  DataParallel dp(*net, *comm, smallBuckets());
  auto [x, y] = fullBatch(kLocalBatch, 5);
  torch::mse_loss(net->forward(x), y).backward();
  const std::string message = errorOf([&] { dp.finish(); });
  EXPECT_NE(message.find("unused.weight"), std::string::npos) << message;
  EXPECT_NE(message.find("unused.bias"), std::string::npos) << message;
  EXPECT_EQ(message.find("conv1"), std::string::npos) << message;
}

TEST(DataParallelMpi, NothingToTrainIsRefusedByBothOptimisers) {
  auto comm = makeCommunicator(Backend::Auto, World::get());
  auto net = makeNet(1);
  for (auto& p : net->parameters()) p.set_requires_grad(false);
  const auto named = net->named_parameters();
  const std::string replicated = errorOf([&] { DataParallel dp(*net, *comm); });
  EXPECT_NE(replicated.find("DataParallel: no parameter that requires grad"), std::string::npos)
      << replicated;
  const std::string zero = errorOf([&] { ZeroAdamW opt(named, *comm); });
  EXPECT_NE(zero.find("ZeroAdamW: no parameter that requires grad"), std::string::npos) << zero;
}

TEST(DataParallelMpi, InjectedDesyncIsDetected) {
  auto comm = makeCommunicator(Backend::Auto, World::get());
  auto net = makeNet(1);
  DataParallel dp(*net, *comm, smallBuckets());
  EXPECT_NO_THROW(dp.checkParametersInSync(3));
  if (comm->rank() == comm->size() - 1) {
    torch::NoGradGuard noGrad;
    net->conv2->bias.add_(1e-4);
  }
  const std::string message = errorOf([&] { dp.checkParametersInSync(7); });
  EXPECT_NE(message.find("desync at step 7"), std::string::npos) << message;
  EXPECT_NE(message.find("conv2.bias"), std::string::npos) << message;
}

TEST(DataParallelMpi, DifferentModelsFailOnEveryRank) {
  auto comm = makeCommunicator(Backend::Auto, World::get());
  auto net = makeNet(1, /*withUnused=*/comm->rank() == 1);
  const std::string message = errorOf([&] { DataParallel dp(*net, *comm, smallBuckets()); });
  EXPECT_NE(message.find("different model"), std::string::npos) << message;
}

}  // namespace
