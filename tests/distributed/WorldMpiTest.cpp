// World discovery under mpiexec -n N: ranks are 0..N-1 exactly once, every rank agrees on the
// size, local ranks are a permutation of 0..localSize-1 on each host, and the rank table gathers.
#include <gtest/gtest.h>

#include <cstdlib>
#include <set>

#include "distributed/World.h"

namespace {
using lddpm::dist::World;

TEST(WorldMpi, SizeMatchesLauncher) {
  const World& w = World::get();
  const char* launcherSize = std::getenv("OMPI_COMM_WORLD_SIZE");
  ASSERT_NE(launcherSize, nullptr) << "run under mpiexec";
  EXPECT_TRUE(w.usesMpi());
  EXPECT_EQ(w.size(), std::atoi(launcherSize));
  EXPECT_GE(w.rank(), 0);
  EXPECT_LT(w.rank(), w.size());
}

TEST(WorldMpi, RankTableCoversEveryRankOnce) {
  World& w = World::get();
  const auto table = w.allgatherRankInfo({w.rank(), w.localRank(), w.threads(), w.host(), "cpu"});
  ASSERT_EQ(static_cast<int>(table.size()), w.size());
  std::set<int> ranks;
  std::set<std::pair<std::string, int>> hostLocal;
  for (size_t i = 0; i < table.size(); ++i) {
    EXPECT_EQ(table[i].rank, static_cast<int>(i)) << "gathered in rank order";
    ranks.insert(table[i].rank);
    hostLocal.insert({table[i].host, table[i].localRank});
    EXPECT_GE(table[i].threads, 1);
    EXPECT_LT(table[i].localRank, w.localSize());
  }
  EXPECT_EQ(static_cast<int>(ranks.size()), w.size());
  EXPECT_EQ(static_cast<int>(hostLocal.size()), w.size()) << "(host, local rank) pairs are unique";
  EXPECT_EQ(table[static_cast<size_t>(w.rank())].host, w.host());
}

TEST(WorldMpi, ThreadsDividedAmongLocalRanks) {
  World& w = World::get();
  // mpiexec with --oversubscribe does not bind: each rank gets cores / local ranks, at least 1.
  EXPECT_GE(w.threads(), 1);
  EXPECT_LE(w.threads() * w.localSize(),
            std::max(w.localSize(), static_cast<int>(std::thread::hardware_concurrency())));
}

}  // namespace
