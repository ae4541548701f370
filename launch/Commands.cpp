// The subcommand table: one line per subcommand this build implements, in pipeline order. A
// subcommand that a later piece of work delivers is absent until then, so nothing pretends to work.
#include "launch/Command.h"

namespace lddpm::launch {

int runPhantom(const CommandContext& context);
int runPreprocess(const CommandContext& context);
int runInspect(const CommandContext& context);
int runModels(const CommandContext& context);
int runTrain(const CommandContext& context);
int runSample(const CommandContext& context);
int runExport(const CommandContext& context);
int runEvaluate(const CommandContext& context);
int runBench(const CommandContext& context);
int runSweep(const CommandContext& context);
int runInfo(const CommandContext& context);

const std::vector<CommandSpec>& commands() {
  static const std::vector<CommandSpec> table = {
      {"phantom", "Write an MSLesSeg-shaped demo cohort synthesised from the Colin27 brain.",
       &runPhantom},
      {"preprocess", "MSLesSeg NIfTIs -> HDF5 shard store + manifest (ranks split the scans).",
       &runPreprocess},
      {"inspect",
       "Describe a NIfTI file, an MSLesSeg dataset folder (--check: every voxel) or a store "
       "(verifies every checksum).",
       &runInspect},
      {"models",
       "List the models (lesion-ddpm and baselines) with parameter counts for given options.",
       &runModels},
      {"train",
       "Train a model on a store, plain or data-parallel; checkpoints, resumes, stops on signals.",
       &runTrain},
      {"sample",
       "Synthesise FLAIR for a store split's masks with a trained run (DDPM or DDIM), NIfTI + PNG.",
       &runSample},
      {"export",
       "Write a run's EMA (or raw) weights as a dict of tensors that Python's torch.load reads.",
       &runExport},
      {"evaluate",
       "Score results: `evaluate images` (synthetic vs real: MSE, MAE, PSNR, SSIM, ...), "
       "`evaluate segmentation` (Dice, lesion-wise).",
       &runEvaluate},
      {"sweep",
       "A grid of train options as one SLURM job array (`sweep --grid`), `sweep status`, `sweep "
       "collect`.",
       &runSweep},
      {"bench", "Measure this machine or cluster: `lddpm bench comm` (collective bandwidth).",
       &runBench},
      {"info", "Show this build (version, backends) and the launch: ranks, hosts, threads.",
       &runInfo},
  };
  return table;
}

}  // namespace lddpm::launch
