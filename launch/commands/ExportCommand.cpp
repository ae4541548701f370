// `lddpm export`: the weights of a run or checkpoint as one file that Python's torch.load reads
// as a dict of parameter name -> tensor (EMA weights by default), for evaluation or fine-tuning
// in Python.
#include <iostream>

#include "core/Checkpoint.h"
#include "core/Error.h"
#include "core/Log.h"
#include "distributed/World.h"
#include "launch/Command.h"
#include "launch/engine/RunLayout.h"
#include "launch/engine/TrainedModel.h"

namespace lddpm::launch {

int runExport(const CommandContext& context) {
  std::string run, checkpoint, out, weights = "ema";
  po::options_description own("export options");
  own.add_options()("run", po::value(&run)->value_name("DIR"),
                    "run directory: its newest complete checkpoint")(
      "checkpoint", po::value(&checkpoint)->value_name("DIR"), "a checkpoint folder")(
      "out", po::value(&out)->required()->value_name("FILE"), "output .pt file")(
      "weights", po::value(&weights)->default_value(weights), "ema | model");
  if (!parseCommand(context, "export",
                    "--run DIR | --checkpoint DIR --out FILE [--weights ema|model]", own)) {
    return 0;
  }
  checkpoint = checkpointFromOptions("export", run, checkpoint, weights);
  core::readCheckpointMeta(checkpoint);  // format check, names the file on failure
  if (context.world.rank() != 0) return 0;
  const core::TensorDict tensors = readWeights(CheckpointLayout(checkpoint), weights);
  core::saveTensorDict(out, tensors);
  std::cout << "wrote " << out << ": " << tensors.size() << " tensors (" << weights
            << " weights of " << checkpoint << ")\n";
  return 0;
}

}  // namespace lddpm::launch
