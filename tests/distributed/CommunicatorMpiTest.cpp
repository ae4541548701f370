// Every collective of every backend against closed forms valid at any world size n: rank r
// contributes (r+1)·x, so sums are n(n+1)/2·x; uneven splits give rank r r+2 elements. Runs under
// mpiexec -n 2 and -n 3 (3 makes the uneven reduce-scatter/allgather slices really uneven).
#include <gtest/gtest.h>

#include "core/Error.h"
#include "distributed/Communicator.h"
#include "distributed/LocalCommunicator.h"
#include "distributed/MpiCommunicator.h"
#include "distributed/World.h"

namespace {
using namespace lddpm::dist;

double triangle(int n) { return n * (n + 1) / 2.0; }

std::vector<int64_t> unevenCounts(int n) {
  std::vector<int64_t> counts;
  for (int r = 0; r < n; ++r) counts.push_back(r + 2);
  return counts;
}

// The whole battery, against any communicator (the MPI one with and without its thread).
void checkCollectives(Communicator& comm) {
  const int n = comm.size();
  const int r = comm.rank();
  const auto dr = static_cast<double>(r);

  for (auto dtype : {torch::kFloat, torch::kDouble, torch::kLong}) {
    auto t = torch::full({5, 3}, r + 1, torch::TensorOptions().dtype(dtype));
    comm.allreduce(t, ReduceOp::Sum)->wait();
    EXPECT_TRUE(torch::all(t == triangle(n)).item<bool>()) << "allreduce sum, dtype " << dtype;
  }
  {
    auto t = torch::full({7}, dr + 1, torch::kDouble);
    comm.allreduce(t, ReduceOp::Avg)->wait();
    EXPECT_TRUE(torch::allclose(t, torch::full({7}, (n + 1) / 2.0, torch::kDouble)));
  }
  {  // uneven reduce-scatter: element i of the flat input is (r+1)·(i+1) on rank r
    const auto counts = unevenCounts(n);
    const auto offsets = lddpm::dist::detail::offsetsOf(counts);
    const int64_t total = offsets.back() + counts.back();
    auto input = (torch::arange(total, torch::kDouble) + 1) * (dr + 1);
    auto output = torch::zeros({counts[static_cast<size_t>(r)]}, torch::kDouble);
    comm.reduceScatter(output, input, ReduceOp::Sum, counts)->wait();
    auto expected = (torch::arange(offsets[static_cast<size_t>(r)],
                                   offsets[static_cast<size_t>(r)] + counts[static_cast<size_t>(r)],
                                   torch::kDouble) +
                     1) *
                    triangle(n);
    EXPECT_TRUE(torch::equal(output, expected)) << "uneven reduceScatter";

    auto even = torch::full({4 * n}, dr + 1, torch::kFloat);
    auto mine = torch::empty({4}, torch::kFloat);
    comm.reduceScatter(mine, even, ReduceOp::Avg)->wait();
    EXPECT_TRUE(torch::allclose(mine, torch::full({4}, (n + 1) / 2.0f)));
  }
  {  // uneven allgather: rank q sends q·100 + j, j < counts[q]; also in place (ZeRO's shard)
    const auto counts = unevenCounts(n);
    const auto offsets = lddpm::dist::detail::offsetsOf(counts);
    const int64_t total = offsets.back() + counts.back();
    auto expected = torch::empty({total}, torch::kFloat);
    for (int q = 0; q < n; ++q) {
      for (int64_t j = 0; j < counts[static_cast<size_t>(q)]; ++j) {
        expected[offsets[static_cast<size_t>(q)] + j] = q * 100.0f + static_cast<float>(j);
      }
    }
    const auto me = static_cast<size_t>(r);
    auto input = torch::arange(counts[me], torch::kFloat) + r * 100.0f;
    auto output = torch::full({total}, -1.0f);
    comm.allgather(output, input, counts)->wait();
    EXPECT_TRUE(torch::equal(output, expected)) << "uneven allgather";

    auto flat = torch::full({total}, -1.0f);
    flat.narrow(0, offsets[me], counts[me]).copy_(input);
    comm.allgather(flat, flat.narrow(0, offsets[me], counts[me]), counts)->wait();
    EXPECT_TRUE(torch::equal(flat, expected)) << "in-place allgather";
  }
  {  // broadcast from the last rank
    auto t = r == n - 1 ? torch::arange(10, torch::kFloat) : torch::zeros({10});
    comm.broadcast(t, n - 1)->wait();
    EXPECT_TRUE(torch::equal(t, torch::arange(10, torch::kFloat)));
  }
  {  // many in flight at once, waited in issue order
    std::vector<torch::Tensor> ts;
    std::vector<WorkPtr> works;
    for (int i = 0; i < 16; ++i) {
      ts.push_back(torch::full({1000 * (i + 1)}, (dr + 1) * i, torch::kDouble));
      works.push_back(comm.allreduce(ts.back(), ReduceOp::Sum));
    }
    works.push_back(comm.barrier());
    waitAll(works);
    for (int i = 0; i < 16; ++i) {
      EXPECT_TRUE(works[static_cast<size_t>(i)]->isCompleted());
      EXPECT_TRUE(torch::all(ts[static_cast<size_t>(i)] == triangle(n) * i).item<bool>()) << i;
    }
  }
}

TEST(CommunicatorMpi, CollectivesOnCommThread) {
  const World& world = World::get();
  ASSERT_TRUE(world.usesMpi()) << "run under mpiexec";
  MpiCommunicator comm(world, CommunicatorOptions{/*timeoutSeconds=*/60, /*commThread=*/true});
  EXPECT_EQ(comm.size(), world.size());
  EXPECT_EQ(comm.rank(), world.rank());
  EXPECT_TRUE(comm.threaded()) << "World asks for MPI_THREAD_MULTIPLE; Open MPI grants it";
  checkCollectives(comm);
}

TEST(CommunicatorMpi, CollectivesInCallingThread) {
  MpiCommunicator comm(World::get(),
                       CommunicatorOptions{/*timeoutSeconds=*/60, /*commThread=*/false});
  EXPECT_FALSE(comm.threaded());
  checkCollectives(comm);
}

// A small collective that finds the comm thread idle runs in the caller (inlineBytes); one issued
// behind a large one queues, so issue order holds; with inlineBytes 0 every one takes the thread.
TEST(CommunicatorMpi, SmallCollectivesRunInTheCallerOnlyWithNothingAhead) {
  const World& world = World::get();
  CommunicatorOptions options{/*timeoutSeconds=*/60, /*commThread=*/true};
  {
    options.inlineBytes = 0;
    MpiCommunicator comm(world, options);
    checkCollectives(comm);
  }
  options.inlineBytes = std::int64_t{1} << 20;
  MpiCommunicator comm(world, options);
  checkCollectives(comm);
  const int n = comm.size();
  const double r = comm.rank();
  auto small = torch::full({16}, r + 1, torch::kDouble);
  const WorkPtr first = comm.allreduce(small, ReduceOp::Sum);
  EXPECT_TRUE(first->isCompleted()) << "the thread was idle: the caller should have run it";
  first->wait();
  auto large = torch::full({std::int64_t{4} << 20}, r + 1, torch::kFloat);  // 16 MiB: the thread
  auto behind = torch::full({16}, r + 1, torch::kDouble);
  const WorkPtr big = comm.allreduce(large, ReduceOp::Sum);
  const WorkPtr next = comm.allreduce(behind, ReduceOp::Sum);
  next->wait();
  EXPECT_TRUE(big->isCompleted()) << "a small collective overtook the large one issued before it";
  big->wait();
  EXPECT_TRUE(torch::all(small == triangle(n)).item<bool>());
  EXPECT_TRUE(torch::all(large == static_cast<float>(triangle(n))).item<bool>());
  EXPECT_TRUE(torch::all(behind == triangle(n)).item<bool>());
}

TEST(CommunicatorMpi, LocalIsTheIdentity) {
  LocalCommunicator comm;
  checkCollectives(comm);  // the closed forms hold for n = 1
}

TEST(CommunicatorMpi, FactoryChoosesByWorld) {
  const World& world = World::get();
  auto comm = makeCommunicator(Backend::Auto, world);
  EXPECT_EQ(comm->backend(), world.size() > 1 ? Backend::Mpi : Backend::Local);
  if (world.size() > 1) {
    EXPECT_THROW(makeCommunicator(Backend::Local, world), lddpm::core::UsageError);
  }
#if !LDDPM_WITH_NCCL
  EXPECT_THROW(makeCommunicator(Backend::Nccl, world), lddpm::core::UsageError);
#endif
  EXPECT_THROW(parseBackend("gloo"), lddpm::core::UsageError);
}

TEST(CommunicatorMpi, BadArgumentsNameTheCollective) {
  MpiCommunicator comm(World::get(), CommunicatorOptions{});
  auto odd = torch::zeros({comm.size() * 2 + 1});
  auto out = torch::zeros({2});
  try {
    comm.reduceScatter(out, odd, ReduceOp::Sum);
    FAIL() << "uneven split without counts must throw";
  } catch (const lddpm::core::Error& e) {
    EXPECT_NE(std::string(e.what()).find("reduceScatter"), std::string::npos) << e.what();
  }
  EXPECT_THROW(comm.allreduce(torch::zeros({4, 4}).t(), ReduceOp::Sum), lddpm::core::Error);
  EXPECT_THROW(comm.allreduce(torch::zeros({2}, torch::kInt), ReduceOp::Avg), lddpm::core::Error);
}

}  // namespace

namespace {
TEST(CommunicatorMpi, AveragesParametersThatRequireGrad) {
  // The in-place division of an average must not trip autograd's leaf check on the comm thread.
  MpiCommunicator comm(World::get(), CommunicatorOptions{});
  auto p = torch::full({3}, comm.rank() + 1.0, torch::TensorOptions().requires_grad(true));
  comm.allreduce(p, ReduceOp::Avg)->wait();
  EXPECT_TRUE(torch::allclose(p.detach(), torch::full({3}, (comm.size() + 1) / 2.0)));
}
}  // namespace
