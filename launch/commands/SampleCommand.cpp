// `lddpm sample`: synthetic FLAIR for every conditioning mask of a store split with a trained
// run's EMA weights, plain or with the cases split over ranks (launch/engine/SampleSplit.h).
#include <iostream>

#include "distributed/World.h"
#include "launch/Command.h"
#include "launch/engine/SampleSplit.h"

namespace lddpm::launch {

int runSample(const CommandContext& context) {
  SampleOptions o;
  const po::options_description own = o.describe();
  const auto parsed =
      parseCommand(context, "sample", "--run DIR --store DIR --out DIR [options]", own);
  if (!parsed) return 0;
  o.validate();

  dist::World& world = context.world;
  const torch::Device device = deviceOption(o.device, "lddpm sample", world.localRank());
  // The communicator only carries timings and barriers: it stays on the CPU whatever --device.
  auto comm = dist::makeCommunicator(dist::Backend::Auto, world);
  if (world.rank() == 0) writeCommandConfig(o.out, "sample", *parsed, own);
  const SampleSummary summary = sampleSplit(o, *comm, device);
  if (world.rank() == 0) {
    std::cout << "sampled " << summary.cases << " case(s) into " << o.out << ": "
              << summary.secondsPerVolume << " s per volume (" << o.sampler << ")\n";
  }
  return 0;
}

}  // namespace lddpm::launch
