// The NCCL backend on this rank's GPU (built only with LDDPM_WITH_NCCL; skipped without a GPU):
// the collectives against closed forms at any world size, and a data-parallel step on CUDA that
// must match the same step computed on the CPU.
#include <gtest/gtest.h>

#include "distributed/DataParallel.h"
#include "distributed/NcclCommunicator.h"
#include "distributed/World.h"
#include "tests/distributed/TestModels.h"

namespace {
using namespace lddpm::dist;

#define SKIP_WITHOUT_GPU() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device"

TEST(NcclCommunicator, CollectivesMatchClosedForms) {
  SKIP_WITHOUT_GPU();
  NcclCommunicator comm(World::get(), CommunicatorOptions{/*timeoutSeconds=*/60});
  const int n = comm.size();
  const int r = comm.rank();
  const auto cuda = torch::TensorOptions().device(comm.device());
  auto t = torch::full({1000}, r + 1.0, cuda);
  comm.allreduce(t, ReduceOp::Sum)->wait();
  EXPECT_TRUE(torch::all(t == n * (n + 1) / 2.0).item<bool>());
  comm.allreduce(t, ReduceOp::Avg)->wait();
  EXPECT_TRUE(torch::all(t == n * (n + 1) / 2.0).item<bool>());

  std::vector<int64_t> counts;
  for (int q = 0; q < n; ++q) counts.push_back(q + 2);
  const auto offsets = lddpm::dist::detail::offsetsOf(counts);
  const int64_t total = offsets.back() + counts.back();
  auto input = (torch::arange(total, cuda.dtype(torch::kDouble)) + 1) * (r + 1);
  auto mine = torch::zeros({counts[static_cast<size_t>(r)]}, cuda.dtype(torch::kDouble));
  comm.reduceScatter(mine, input, ReduceOp::Sum, counts)->wait();
  auto expected = (torch::arange(offsets[static_cast<size_t>(r)],
                                 offsets[static_cast<size_t>(r)] + counts[static_cast<size_t>(r)],
                                 cuda.dtype(torch::kDouble)) +
                   1) *
                  (n * (n + 1) / 2.0);
  EXPECT_TRUE(torch::equal(mine, expected));

  auto gathered = torch::zeros({total}, cuda.dtype(torch::kDouble));
  comm.allgather(gathered, mine, counts)->wait();
  EXPECT_TRUE(torch::equal(
      gathered, (torch::arange(total, cuda.dtype(torch::kDouble)) + 1) * (n * (n + 1) / 2.0)));

  auto b = r == 0 ? torch::arange(10, cuda) : torch::zeros({10}, cuda);
  comm.broadcast(b, 0)->wait();
  EXPECT_TRUE(torch::equal(b.cpu(), torch::arange(10, torch::kFloat)));
  comm.barrier()->wait();
}

TEST(NcclCommunicator, DataParallelStepMatchesCpu) {
  SKIP_WITHOUT_GPU();
  NcclCommunicator comm(World::get(), CommunicatorOptions{/*timeoutSeconds=*/60});
  const torch::Device gpu = comm.device();
  auto reference = lddpm::testing::makeNet(1);
  auto net = lddpm::testing::makeNet(1);
  net->to(gpu);
  DataParallel dp(*net, comm);
  auto [x, y] = lddpm::testing::fullBatch(2 * comm.size(), 3);
  torch::mse_loss(reference->forward(x), y).backward();
  torch::mse_loss(net->forward(x.narrow(0, 2 * comm.rank(), 2).to(gpu)),
                  y.narrow(0, 2 * comm.rank(), 2).to(gpu))
      .backward();
  dp.finish();
  auto pr = reference->parameters();
  auto pg = net->parameters();
  for (size_t i = 0; i < pr.size(); ++i) {
    EXPECT_TRUE(torch::allclose(pg[i].grad().cpu(), pr[i].grad(), 1e-9, 1e-12)) << i;
  }
}

}  // namespace
