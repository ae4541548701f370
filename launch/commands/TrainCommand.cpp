// `lddpm train`: one model on one store, plain or data-parallel under mpirun/srun. Wires the
// loader (data/), the model (models/) and the communicator (distributed/) into the engine.
#include <filesystem>
#include <iostream>

#include "core/Error.h"
#include "core/Log.h"
#include "distributed/World.h"
#include "launch/Command.h"
#include "launch/engine/StoreBatchSource.h"
#include "launch/engine/Trainer.h"

namespace lddpm::launch {
namespace fs = std::filesystem;

int runTrain(const CommandContext& context) {
  TrainConfig config;
  models::ModelConfig modelConfig;
  po::options_description own;
  own.add(config.describe());
  own.add(modelConfig.describe());
  const auto parsed = parseCommand(context, "train", "--store DIR --run DIR [options]", own);
  if (!parsed) return 0;

  dist::World& world = context.world;
  config.validate(world.size());
  if (!fs::exists(fs::path(config.data.store) / "manifest.json")) {
    LDDPM_THROW(core::UsageError, "lddpm train: option '--store': '", config.data.store,
                "' is not a complete store (no manifest.json; run lddpm preprocess)");
  }
  const torch::Device device = deviceOption(config.device, "lddpm train", world.localRank());
  auto comm = dist::makeCommunicator(config.parallel.backendKind(), world,
                                     config.parallel.communicatorOptions(), device);

  if (world.rank() == 0) writeCommandConfig(config.run, "train", *parsed, own);
  const std::string resolved = core::renderConfig(parsed->values, own, "lddpm train (resolved)");

  StoreBatchSource source(config, world.rank(), world.size());
  LDDPM_LOG(Info) << "train " << modelConfig.model << " on " << config.data.store << " ("
                  << config.data.split << "), " << world.size() << " rank(s) x " << world.threads()
                  << " threads, global batch " << config.batch << ", " << config.steps
                  << " steps -> " << config.run;
  Trainer trainer(config, modelConfig, source, *comm, resolved, device);
  const TrainResult result = trainer.run();
  if (world.rank() == 0) {
    std::cout << "trained " << modelConfig.model << " for " << result.finalStep
              << " steps (final loss " << result.lastLoss << ", " << result.skippedSteps
              << " skipped); run " << config.run << "\n";
  }
  return 0;
}

}  // namespace lddpm::launch
