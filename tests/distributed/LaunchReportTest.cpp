// The launch report's table and the placement problems it flags, on hand-made rank tables.
#include <gtest/gtest.h>

#include "distributed/LaunchReport.h"

namespace {
using namespace lddpm::dist;

TEST(LaunchReport, TableHasOneLinePerRank) {
  const std::vector<RankInfo> ranks = {{0, 0, 8, "node-a", "cuda:0"},
                                       {1, 1, 8, "node-a", "cuda:1"},
                                       {2, 0, 8, "node-long-name-b", "cuda:0"}};
  const std::string table = formatRankTable(ranks);
  EXPECT_EQ(std::count(table.begin(), table.end(), '\n'), 4);
  EXPECT_NE(table.find("node-long-name-b"), std::string::npos);
  EXPECT_NE(table.find("cuda:1"), std::string::npos);
  EXPECT_TRUE(launchProblems(ranks).empty());
}

TEST(LaunchReport, TwoRanksOnOneGpuAreFlagged) {
  const std::vector<RankInfo> ranks = {
      {0, 0, 4, "n1", "cuda:0"}, {1, 1, 4, "n1", "cuda:0"}, {2, 0, 4, "n2", "cuda:0"}};
  const auto problems = launchProblems(ranks);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].find("ranks 0, 1 share cuda:0 on n1"), std::string::npos) << problems[0];
}

TEST(LaunchReport, UnevenThreadsAreFlaggedButCpuSharingIsNot) {
  const std::vector<RankInfo> ranks = {{0, 0, 2, "n1", "cpu"}, {1, 1, 1, "n1", "cpu"}};
  const auto problems = launchProblems(ranks);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].find("different thread counts"), std::string::npos);
}

}  // namespace
