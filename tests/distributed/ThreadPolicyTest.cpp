// The thread-count policy: --threads > SLURM_CPUS_PER_TASK > OMP_NUM_THREADS > cores per rank.
#include <gtest/gtest.h>

#include "distributed/World.h"

namespace {
using lddpm::dist::chooseThreadCount;

TEST(ThreadPolicy, ExplicitRequestWins) { EXPECT_EQ(chooseThreadCount(3, "8", "4", 16, 16, 2), 3); }

TEST(ThreadPolicy, SlurmBeforeOmp) {
  EXPECT_EQ(chooseThreadCount(0, "8", "4", 16, 16, 2), 8);
  EXPECT_EQ(chooseThreadCount(0, nullptr, "4", 16, 16, 2), 4);
}

TEST(ThreadPolicy, MalformedEnvironmentIsIgnored) {
  EXPECT_EQ(chooseThreadCount(0, "eight", "-2", 16, 16, 4), 4);
}

TEST(ThreadPolicy, CoresDividedAmongLocalRanks) {
  EXPECT_EQ(chooseThreadCount(0, nullptr, nullptr, 16, 16, 4), 4);
  EXPECT_EQ(chooseThreadCount(0, nullptr, nullptr, 2, 2, 3), 1);  // never 0
}

TEST(ThreadPolicy, LauncherBindingIsRespected) {
  // mpirun bound this rank to 2 of the machine's 16 cores: use those 2, do not divide again.
  EXPECT_EQ(chooseThreadCount(0, nullptr, nullptr, 2, 16, 8), 2);
}

}  // namespace
