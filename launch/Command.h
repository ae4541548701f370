#pragma once
// The lddpm subcommand table and what every subcommand shares: the context main() hands it (the
// MPI world and its arguments), the common options (logging, threads), option parsing with
// `--help`/`--config`, one dispatcher for commands with modes, and writing the resolved
// configuration. Each subcommand lives in launch/commands/<Name>Command.cpp and is listed once in
// Commands.cpp.
#include <optional>
#include <string>
#include <vector>

#include "core/Options.h"

namespace lddpm::dist {
class World;
}

namespace lddpm::launch {

namespace po = core::po;

using CommandArgs = std::vector<std::string>;

// What main() hands a subcommand: the MPI world it set up (rank, size, threads) and the arguments
// after the command's name. Commands take the world from here, never from a singleton, so a test
// or another driver runs one in the world it owns.
struct CommandContext {
  dist::World& world;
  CommandArgs args;

  // The same world, the arguments after the first (a mode's name).
  CommandContext afterFirst() const {
    return {world, CommandArgs(args.begin() + (args.empty() ? 0 : 1), args.end())};
  }
};

using CommandFn = int (*)(const CommandContext& context);

struct CommandSpec {
  const char* name;
  const char* summary;  // one line for `lddpm --help`
  CommandFn run;
};

// All subcommands this build implements, in the order `lddpm --help` lists them.
const std::vector<CommandSpec>& commands();
const CommandSpec* findCommand(const std::string& name);

// Options every subcommand accepts.
struct CommonOptions {
  std::string logLevel = "info";
  bool logAllRanks = false;
  int threads = 0;  // 0: decide from SLURM_CPUS_PER_TASK, OMP_NUM_THREADS, cores ÷ local ranks
};
po::options_description describeCommonOptions(CommonOptions& options);

// Parses the context's arguments against `own` + the common options. When `--help` is given it
// prints the help (rank 0 only) and returns nullopt: the command then returns 0. Otherwise the
// common options are applied (log level, threads) before returning. Usage problems throw
// core::UsageError naming the option.
std::optional<core::ParsedOptions> parseCommand(
    const CommandContext& context, const std::string& name, const std::string& usage,
    const po::options_description& own, const po::positional_options_description& positional = {});

// One mode of a command with modes (`evaluate images`, `sweep status`, `bench comm`).
struct ModeSpec {
  const char* name;
  const char* summary;  // one line for `lddpm <command> --help`
  CommandFn run;
};

// The one dispatcher of commands with modes, so they all behave alike: the first argument names
// the mode, which runs with the arguments after it. `--help`/`-h` lists the modes (rank 0, exit
// 0); no mode, or a word that is not one, is a usage error naming the modes (exit 2). A command
// whose first argument may be an option names its `defaultMode` (`lddpm sweep --grid F` is
// `lddpm sweep submit --grid F`), which then receives every argument.
int runMode(const CommandContext& context, const std::string& command,
            const std::vector<ModeSpec>& modes, const char* defaultMode = nullptr);

// `--device cpu|cuda` → the torch device of this rank: cuda:<localRank>, one GPU per rank.
// Throws core::UsageError naming `command`'s --device when the value is unknown, this build or
// machine has no CUDA, or there are fewer GPUs than ranks on the node.
torch::Device deviceOption(const std::string& value, const std::string& command, int localRank);

// Writes `<dir>/<file>` (default config.ini) with every resolved option of `own` + common.
void writeCommandConfig(const std::string& dir, const std::string& name,
                        const core::ParsedOptions& parsed, const po::options_description& own,
                        const std::string& file = "config.ini");

}  // namespace lddpm::launch
