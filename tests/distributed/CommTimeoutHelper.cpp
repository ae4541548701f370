// Helper for CommTimeoutTest, run as `mpiexec -n 2 CommTimeoutHelper <mode> <timeout-seconds>`.
// Rank 0 enters an allreduce at step 7; rank 1 never joins it:
//   stall: sleeps far past the timeout (a hung data loader, a deadlock)
//   die:   exits at once without MPI_Finalize (a crash, the OOM killer)
//   throw: fails with an exception and, as lddpm's main does, brings the job down
// Whatever the mode, every rank must be gone, with a non-zero status, shortly after the timeout.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>

#include "core/Error.h"
#include "distributed/MpiCommunicator.h"
#include "distributed/World.h"

int main(int argc, char** argv) {
  using namespace lddpm::dist;
  World& world = World::init(&argc, &argv);
  if (argc != 3) {
    std::fprintf(stderr, "usage: CommTimeoutHelper stall|die|throw TIMEOUT_SECONDS\n");
    return 2;
  }
  const std::string mode = argv[1];
  MpiCommunicator comm(world, CommunicatorOptions{/*timeoutSeconds=*/std::atof(argv[2]),
                                                  /*commThread=*/true});
  comm.setStep(7);
  try {
    if (world.rank() == 1) {
      if (mode == "stall") std::this_thread::sleep_for(std::chrono::seconds(120));
      if (mode == "die") std::_Exit(3);
      if (mode == "throw") throw std::runtime_error("rank 1 failed on purpose");
    }
    auto t = torch::ones({1024});
    comm.allreduce(t, ReduceOp::Sum)->wait();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rank %d: %s\n", world.rank(), e.what());
    world.abort(lddpm::core::kExitFailure);
  }
  world.finalize();
  return 0;  // reached only if the collective completed, which it must not
}
