// The subcommand table: one line per subcommand this build implements. A subcommand that a later
// piece of work delivers is absent until then, so nothing pretends to work.
#include "launch/Command.h"

namespace lddpm::launch {

int runInfo(const CommandArgs& args);
int runInspect(const CommandArgs& args);
int runPhantom(const CommandArgs& args);
int runEvaluate(const CommandArgs& args);

const std::vector<CommandSpec>& commands() {
  static const std::vector<CommandSpec> table = {
      {"info", "Show this build (version, backends) and the launch: ranks, hosts, threads.",
       &runInfo},
      {"inspect", "Describe a NIfTI file or an MSLesSeg dataset folder (--check: every voxel).",
       &runInspect},
      {"phantom", "Write an MSLesSeg-shaped demo cohort synthesised from the Colin27 brain.",
       &runPhantom},
      {"evaluate", "Compare synthetic with real scans: `evaluate images` (MSE, MAE, PSNR, SSIM, ...).",
       &runEvaluate},
  };
  return table;
}

}  // namespace lddpm::launch
