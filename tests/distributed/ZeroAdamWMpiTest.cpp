// ZeRO-1 AdamW against two independent references computed in the same test on every rank:
// torch::optim::AdamW on one rank with the combined batch, and DataParallel + torch AdamW on all
// ranks. Also the shard layout (uneven at np 3), global-norm clipping against
// torch::nn::utils::clip_grad_norm_, and per-rank state save/restore (read back by Python's
// torch.load as an independent check).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "core/Error.h"
#include "distributed/DataParallel.h"
#include "distributed/World.h"
#include "distributed/ZeroAdamW.h"
#include "tests/common/TempDir.h"
#include "tests/distributed/TestModels.h"

namespace {
using namespace lddpm::dist;
using lddpm::testing::fullBatch;
using lddpm::testing::makeNet;
using lddpm::testing::maxRelativeDifference;

constexpr int64_t kLocalBatch = 2;
constexpr double kLr = 1e-2;
constexpr double kDecay = 0.1;

torch::Tensor localLoss(lddpm::testing::TinyNet& net, int step, int rank, int size) {
  auto [x, y] = fullBatch(kLocalBatch * size, 200 + static_cast<uint64_t>(step));
  return torch::mse_loss(net->forward(x.narrow(0, kLocalBatch * rank, kLocalBatch)),
                         y.narrow(0, kLocalBatch * rank, kLocalBatch));
}

void compareWithReferences(double maxGradNorm) {
  auto comm = makeCommunicator(Backend::Auto, World::get());
  const int n = comm->size();
  const int r = comm->rank();
  auto reference = makeNet(1);
  auto plain = makeNet(1);
  auto sharded = makeNet(1 + 5 * static_cast<uint64_t>(r));  // rank 0's weights via broadcast
  const auto adamw = torch::optim::AdamWOptions(kLr).weight_decay(kDecay);
  torch::optim::AdamW refOpt(reference->parameters(), adamw);
  DataParallel dp(*plain, *comm);
  torch::optim::AdamW plainOpt(plain->parameters(), adamw);
  ZeroAdamW zero(sharded->named_parameters(), *comm,
                 ZeroAdamWOptions().lr(kLr).weightDecay(kDecay).maxGradNorm(maxGradNorm));

  for (int step = 0; step < 4; ++step) {
    auto [x, y] = fullBatch(kLocalBatch * n, 200 + static_cast<uint64_t>(step));
    refOpt.zero_grad();
    torch::mse_loss(reference->forward(x), y).backward();
    double refNorm = 0;
    if (maxGradNorm > 0) {
      refNorm = torch::nn::utils::clip_grad_norm_(reference->parameters(), maxGradNorm);
      EXPECT_GT(refNorm, maxGradNorm) << "clipping must be active for the test to mean anything";
    }
    refOpt.step();

    plainOpt.zero_grad();
    localLoss(plain, step, r, n).backward();
    dp.finish();
    if (maxGradNorm > 0) torch::nn::utils::clip_grad_norm_(plain->parameters(), maxGradNorm);
    plainOpt.step();

    zero.zeroGrad();
    localLoss(sharded, step, r, n).backward();
    const double norm = zero.step();
    if (maxGradNorm > 0) {
      EXPECT_NEAR(norm, refNorm, 1e-9 * refNorm) << "global norm, step " << step;
    }
  }
  EXPECT_LE(maxRelativeDifference(*sharded, *reference), 1e-6) << "ZeRO vs torch AdamW, 1 rank";
  EXPECT_LE(maxRelativeDifference(*sharded, *plain), 1e-6) << "ZeRO vs DataParallel + AdamW";
  EXPECT_GT(maxRelativeDifference(*sharded, *makeNet(1)), 1e-3) << "training moved the parameters";
}

TEST(ZeroAdamWMpi, EqualsTorchAdamWAndDataParallel) { compareWithReferences(0.0); }
TEST(ZeroAdamWMpi, GlobalNormClippingEqualsClipGradNorm) { compareWithReferences(0.05); }

TEST(ZeroAdamWMpi, ShardsCoverTheParametersOnce) {
  auto comm = makeCommunicator(Backend::Auto, World::get());
  auto net = makeNet(1);
  ZeroAdamW zero(net->named_parameters(), *comm);
  int64_t total = 0;
  for (const auto& p : net->parameters()) total += p.numel();
  ASSERT_EQ(zero.totalSize(), total);
  const int n = comm->size();
  const int r = comm->rank();
  EXPECT_EQ(zero.shardSize(), total / n + (r < total % n ? 1 : 0));
  auto layout = torch::tensor({zero.shardOffset(), zero.shardSize()}, torch::kLong);
  auto all = torch::empty({2 * n}, torch::kLong);
  comm->allgather(all, layout)->wait();
  int64_t next = 0;
  for (int q = 0; q < n; ++q) {
    EXPECT_EQ(all[2 * q].item<int64_t>(), next) << "shards are contiguous in rank order";
    next += all[2 * q + 1].item<int64_t>();
  }
  EXPECT_EQ(next, total);
}

// The flat arenas: every parameter and .grad lives in one buffer each and stays in place across
// steps with nothing copied; a .grad reset by someone else, or a parameter whose storage was
// replaced (as Module::load does), is moved back once and counted; the result still equals
// torch::optim::AdamW on the full batch.
TEST(ZeroAdamWMpi, ParametersAndGradientsLiveInTheArenas) {
  auto comm = makeCommunicator(Backend::Auto, World::get());
  const int n = comm->size();
  const int r = comm->rank();
  auto reference = makeNet(3);
  auto net = makeNet(3);
  torch::optim::AdamW refOpt(reference->parameters(),
                             torch::optim::AdamWOptions(kLr).weight_decay(kDecay));
  ZeroAdamW zero(net->named_parameters(), *comm, ZeroAdamWOptions().lr(kLr).weightDecay(kDecay));
  auto params = net->parameters();
  const int64_t nParams = static_cast<int64_t>(params.size());
  std::vector<const void*> paramAt, gradAt;
  for (int step = 0; step < 4; ++step) {
    SCOPED_TRACE(step);
    auto [x, y] = fullBatch(kLocalBatch * n, 200 + static_cast<uint64_t>(step));  // as localLoss
    refOpt.zero_grad();
    torch::mse_loss(reference->forward(x), y).backward();
    refOpt.step();
    if (step == 1) {
      for (auto& p : params) p.mutable_grad() = torch::Tensor();  // reset, not zeroGrad()
    } else {
      zero.zeroGrad();
    }
    if (step == 2) {
      torch::NoGradGuard noGrad;
      params[0].set_data(params[0].clone());  // storage replaced, as Module::load does
    }
    localLoss(net, step, r, n).backward();
    zero.step();
    EXPECT_EQ(zero.gradientCopies(), step >= 1 ? nParams : 0);
    EXPECT_EQ(zero.parameterCopies(), step >= 2 ? 1 : 0);
    std::vector<const void*> paramsNow, gradsNow;
    for (const auto& p : params) {
      EXPECT_TRUE(p.storage().is_alias_of(zero.parameterArena().storage()));
      EXPECT_TRUE(p.grad().storage().is_alias_of(zero.gradientArena().storage()));
      paramsNow.push_back(p.data_ptr());
      gradsNow.push_back(p.grad().data_ptr());
    }
    if (paramAt.empty()) paramAt = paramsNow, gradAt = gradsNow;
    EXPECT_EQ(paramsNow, paramAt) << "the parameters stay in place";
    EXPECT_EQ(gradsNow, gradAt) << "the gradients stay in place";
  }
  EXPECT_LE(maxRelativeDifference(*net, *reference), 1e-6) << "ZeRO arenas vs torch AdamW";
}

TEST(ZeroAdamWMpi, StateSavedAndRestoredPerRank) {
  auto comm = makeCommunicator(Backend::Auto, World::get());
  const int n = comm->size();
  const int r = comm->rank();
  const lddpm::testing::TempDir dir("zero");  // per rank: each has its own process id
  const std::string path = (dir / "optimizer.pt").string();

  auto a = makeNet(2);
  ZeroAdamW optA(a->named_parameters(), *comm, ZeroAdamWOptions().lr(kLr));
  for (int step = 0; step < 2; ++step) {
    optA.zeroGrad();
    localLoss(a, step, r, n).backward();
    optA.step();
  }
  optA.save(path);
  if (r == 0 && std::filesystem::exists("/usr/bin/python3")) {
    // Independent reader: Debian's python3-torch must see a plain dict of this rank's tensors.
    const std::string check =
        "/usr/bin/python3 -c \"import sys, torch; d = torch.load(sys.argv[1]); "
        "assert sorted(d) == ['exp_avg', 'exp_avg_sq', 'shard_offset', 'shard_size', 'step', "
        "'total_size', 'world_size'], sorted(d); "
        "assert d['exp_avg'].numel() == int(sys.argv[2]) and int(d['step']) == 2\" " +
        path + " " + std::to_string(optA.shardSize()) + " 2>&1";
    EXPECT_EQ(std::system(check.c_str()), 0) << check;
  }

  // A fresh optimizer on a copy of the parameters, restored from the file, must continue exactly.
  auto b = makeNet(99);
  {
    torch::NoGradGuard noGrad;
    auto pa = a->parameters();
    auto pb = b->parameters();
    for (size_t i = 0; i < pa.size(); ++i) pb[i].copy_(pa[i]);
  }
  ZeroAdamW optB(b->named_parameters(), *comm, ZeroAdamWOptions().lr(kLr));
  optB.load(path);
  EXPECT_EQ(optB.stepCount(), 2);
  for (auto* pair : {&optA, &optB}) {
    pair->zeroGrad();
  }
  localLoss(a, 2, r, n).backward();
  localLoss(b, 2, r, n).backward();
  optA.step();
  optB.step();
  EXPECT_EQ(maxRelativeDifference(*a, *b), 0.0) << "restored state continues bit-identically";

  auto state = optA.stateDict();
  state.insert_or_assign("world_size", torch::tensor(int64_t{n + 1}));
  try {
    optB.loadStateDict(state, "ckpt/optimizer-rank0.pt");
    FAIL() << "a state from another world size must be refused";
  } catch (const lddpm::core::Error& e) {
    EXPECT_NE(std::string(e.what()).find("world_size"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("ckpt/optimizer-rank0.pt"), std::string::npos);
  }
}

}  // namespace
