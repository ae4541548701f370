// The subcommand table: one line per subcommand this build implements. A subcommand that a later
// piece of work delivers is absent until then, so nothing pretends to work.
#include "launch/Command.h"

namespace lddpm::launch {

int runInfo(const CommandArgs& args);
int runBench(const CommandArgs& args);

const std::vector<CommandSpec>& commands() {
  static const std::vector<CommandSpec> table = {
      {"info", "Show this build (version, backends) and the launch: ranks, hosts, threads.",
       &runInfo},
      {"bench", "Measure this machine or cluster: `lddpm bench comm` (collective bandwidth).",
       &runBench},
  };
  return table;
}

}  // namespace lddpm::launch
