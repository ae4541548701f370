// The subcommand table: one line per subcommand this build implements. A subcommand that a later
// piece of work delivers is absent until then, so nothing pretends to work.
#include "launch/Command.h"

namespace lddpm::launch {

int runInfo(const CommandArgs& args);
int runInspect(const CommandArgs& args);
int runPreprocess(const CommandArgs& args);
int runPhantom(const CommandArgs& args);

const std::vector<CommandSpec>& commands() {
  static const std::vector<CommandSpec> table = {
      {"info", "Show this build (version, backends) and the launch: ranks, hosts, threads.",
       &runInfo},
      {"inspect",
       "Describe a NIfTI file, an MSLesSeg dataset folder (--check: every voxel) or a store "
       "(verifies every checksum).",
       &runInspect},
      {"preprocess", "MSLesSeg NIfTIs -> HDF5 shard store + manifest (ranks split the scans).",
       &runPreprocess},
      {"phantom", "Write an MSLesSeg-shaped demo cohort synthesised from the Colin27 brain.",
       &runPhantom},
  };
  return table;
}

}  // namespace lddpm::launch
