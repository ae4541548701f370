#include "launch/engine/TrainedModel.h"

#include <fstream>

#include "core/Checkpoint.h"
#include "core/Error.h"
#include "core/Log.h"
#include "launch/engine/RunLayout.h"

namespace lddpm::launch {
namespace po = core::po;

std::string newestCheckpointOfRun(const std::string& command, const std::string& run) {
  // Damaged checkpoints are skipped with a warning naming the bad file; none intact is an IoError.
  const auto newest = core::newestIntactCheckpoint(RunLayout(run).checkpoints());
  if (!newest) {
    LDDPM_THROW(core::UsageError, "lddpm ", command, ": option '--run': '", run,
                "' has no complete checkpoint in checkpoints/");
  }
  return newest->path;
}

std::string checkpointFromOptions(const std::string& command, const std::string& run,
                                  const std::string& checkpoint, const std::string& weights) {
  if (run.empty() == checkpoint.empty()) {
    LDDPM_THROW(core::UsageError, "lddpm ", command,
                ": give exactly one of '--run' and '--checkpoint'");
  }
  if (weights != "ema" && weights != "model") {
    LDDPM_THROW(core::UsageError, "lddpm ", command, ": option '--weights': '", weights,
                "' is not ema or model");
  }
  if (!run.empty()) return newestCheckpointOfRun(command, run);
  // A folder the user named is used or refused, never silently replaced by another one.
  if (!core::verifyCheckpoint(checkpoint)) {
    LDDPM_LOG(Warn) << checkpoint << ": written without checksums (an older lddpm): not verified";
  }
  return checkpoint;
}

TrainedModel loadTrainedModel(const std::string& checkpoint, const std::string& weights) {
  core::readCheckpointMeta(checkpoint);  // format check, names the file on failure
  TrainedModel out;
  out.checkpoint = checkpoint;
  const std::string ini = CheckpointLayout(checkpoint).config();
  try {
    // Every key as text (the training options too), then the model's own options parsed from it.
    std::ifstream in(ini);
    if (!in) throw core::IoError(ini, "cannot read the run's resolved configuration");
    po::options_description none;
    for (const auto& option :
         po::parse_config_file(in, none, /*allow_unregistered=*/true).options) {
      if (!option.value.empty()) out.settings[option.string_key] = option.value.back();
    }
    std::ifstream again(ini);
    po::options_description described = out.config.describe();
    po::variables_map values;
    po::store(po::parse_config_file(again, described, /*allow_unregistered=*/true), values);
    po::notify(values);
  } catch (const po::error& e) {
    throw core::IoError(ini, e.what());
  }
  out.model = models::createModel(out.config);
  const CheckpointLayout layout(checkpoint);
  loadModuleWeights(*out.model, readWeights(layout, weights),
                    weights == "ema" ? layout.ema() : layout.model());
  out.model->eval();
  return out;
}

}  // namespace lddpm::launch
