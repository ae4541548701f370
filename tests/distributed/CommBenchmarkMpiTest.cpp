// The collective benchmark behind `lddpm bench comm`: nccl-tests' bus-bandwidth factors in
// closed form, the size ladder, and a real run at small sizes whose correctness check passes
// (and whose byte count is rounded to whole float slices per rank).
#include <gtest/gtest.h>

#include "core/Error.h"
#include "distributed/CommBenchmark.h"
#include "distributed/World.h"

namespace {
using namespace lddpm::dist;

TEST(CommBenchmark, BusBandwidthFactorsAreNcclTests) {
  EXPECT_DOUBLE_EQ(busBandwidthFactor(Collective::Allreduce, 1), 0.0);
  EXPECT_DOUBLE_EQ(busBandwidthFactor(Collective::Allreduce, 2), 1.0);
  EXPECT_DOUBLE_EQ(busBandwidthFactor(Collective::Allreduce, 8), 1.75);
  EXPECT_DOUBLE_EQ(busBandwidthFactor(Collective::ReduceScatter, 8), 0.875);
  EXPECT_DOUBLE_EQ(busBandwidthFactor(Collective::Allgather, 4), 0.75);
}

TEST(CommBenchmark, GeometricSizes) {
  EXPECT_EQ(geometricSizes(1024, 268435456, 4).size(), 10u);  // 1 KiB, 4 KiB, ..., 256 MiB
  EXPECT_EQ(geometricSizes(1024, 268435456, 4).back(), 268435456);
  EXPECT_EQ(geometricSizes(10, 100, 3), (std::vector<int64_t>{10, 30, 90}));
  EXPECT_THROW(geometricSizes(10, 5, 2), lddpm::core::Error);
  EXPECT_THROW(parseCollective("broadcast", "--ops"), lddpm::core::UsageError);
}

TEST(CommBenchmark, EveryCollectiveRunsAndChecksOut) {
  auto comm = makeCommunicator(Backend::Auto, World::get());
  const int n = comm->size();
  for (auto c : {Collective::Allreduce, Collective::ReduceScatter, Collective::Allgather}) {
    const CommBenchResult r = benchmarkCollective(*comm, c, 4096 + 4, /*iters=*/3, /*warmup=*/1);
    EXPECT_TRUE(r.correct) << collectiveName(c);
    EXPECT_EQ(r.bytes % (4 * n), 0) << "whole float slices per rank";
    EXPECT_LE(r.bytes, 4096 + 4);
    EXPECT_GT(r.seconds, 0);
    EXPECT_NEAR(r.busbwGBs, r.algbwGBs * busBandwidthFactor(c, n), 1e-12);
  }
}

}  // namespace
