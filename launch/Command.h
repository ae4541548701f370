#pragma once
// The lddpm subcommand table and what every subcommand shares: the common options (logging,
// threads), option parsing with `--help`/`--config`, and writing the resolved configuration.
// Each subcommand lives in launch/commands/<Name>Command.cpp and is listed once in Commands.cpp.
#include <optional>
#include <string>
#include <vector>

#include "core/Options.h"

namespace lddpm::launch {

namespace po = core::po;

using CommandArgs = std::vector<std::string>;

struct CommandSpec {
  const char* name;
  const char* summary;  // one line for `lddpm --help`
  int (*run)(const CommandArgs& args);
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

// Parses a subcommand's arguments against `own` + the common options. When `--help` is given it
// prints the help (rank 0 only) and returns nullopt: the command then returns 0. Otherwise the
// common options are applied (log level, threads) before returning. Usage problems throw
// core::UsageError naming the option.
std::optional<core::ParsedOptions> parseCommand(
    const std::string& name, const std::string& usage, const CommandArgs& args,
    const po::options_description& own, const po::positional_options_description& positional = {});

// `--device cpu|cuda` → the torch device of this rank: cuda:<localRank>, one GPU per rank.
// Throws core::UsageError naming `command`'s --device when the value is unknown, this build or
// machine has no CUDA, or there are fewer GPUs than ranks on the node.
torch::Device deviceOption(const std::string& value, const std::string& command, int localRank);

// Writes `<dir>/<file>` (default config.ini) with every resolved option of `own` + common.
void writeCommandConfig(const std::string& dir, const std::string& name,
                        const core::ParsedOptions& parsed, const po::options_description& own,
                        const std::string& file = "config.ini");

}  // namespace lddpm::launch
