#pragma once
// A trained model read back from a run or checkpoint folder for inference (evaluate segmentation):
// the newest complete checkpoint of a run, the options the run was trained with (its config.ini)
// and the model built from them with the EMA or raw weights loaded.
#include <map>
#include <memory>
#include <string>

#include "models/Model.h"
#include "models/Registry.h"

namespace lddpm::launch {

struct TrainedModel {
  std::string checkpoint;                       // the checkpoint folder the weights came from
  std::map<std::string, std::string> settings;  // every key = value of its config.ini, as text
  models::ModelConfig config;                   // the model options among them
  std::shared_ptr<models::ModelImpl> model;     // in eval mode, on the CPU
};

// `run`'s newest intact checkpoint folder (damaged newer ones skipped with a warning);
// UsageError naming "lddpm <command>: option '--run'" when it has none, IoError naming each
// damaged file when none verifies.
std::string newestCheckpointOfRun(const std::string& command, const std::string& run);

// The checkpoint folder a command's `--run DIR | --checkpoint DIR` names (exactly one of them;
// a run gives its newest intact checkpoint, a named folder must verify: IoError naming the bad
// file otherwise), after checking `--weights ema|model`. UsageError naming "lddpm <command>" and
// the option otherwise.
std::string checkpointFromOptions(const std::string& command, const std::string& run,
                                  const std::string& checkpoint, const std::string& weights);

// Loads `checkpoint` with "ema" (EMA parameters + the model's buffers) or "model" weights.
// IoError naming the file when config.ini or a weight file is missing or does not fit the model.
TrainedModel loadTrainedModel(const std::string& checkpoint, const std::string& weights);

}  // namespace lddpm::launch
