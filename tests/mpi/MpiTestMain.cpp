// gtest main for MPI tests: initialises the World (MPI under mpiexec), silences the default
// printer on ranks other than 0, and makes every rank exit non-zero when any rank failed, so a
// failure on rank 2 cannot hide behind a passing rank 0.
#include <gtest/gtest.h>
#include <mpi.h>

#include "distributed/World.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  auto& world = lddpm::dist::World::init(&argc, &argv);
  world.configureThreads(0);
  if (world.rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  if (world.usesMpi()) {
    int anyFailed = 0;
    MPI_Allreduce(&failed, &anyFailed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (anyFailed && !failed) {
      std::fprintf(stderr, "[rank %d] passed here, but another rank failed\n", world.rank());
    }
    failed = anyFailed;
  }
  world.finalize();
  return failed;
}
