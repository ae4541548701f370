#include "launch/Command.h"

#include <filesystem>
#include <iomanip>
#include <iostream>

#include "core/Error.h"
#include "core/Log.h"
#include "distributed/World.h"

namespace lddpm::launch {

const CommandSpec* findCommand(const std::string& name) {
  for (const CommandSpec& c : commands()) {
    if (name == c.name) return &c;
  }
  return nullptr;
}

po::options_description describeCommonOptions(CommonOptions& o) {
  po::options_description desc("Common options");
  desc.add_options()("log-level",
                     po::value(&o.logLevel)->default_value(o.logLevel)->value_name("LEVEL"),
                     "debug | info | warn | error | off")(
      "log-all-ranks", po::bool_switch(&o.logAllRanks),
      "every rank logs, prefixed [rank/size] (default: rank 0 only)")(
      "threads", po::value(&o.threads)->default_value(o.threads)->value_name("N"),
      "torch intra-op threads per rank; 0 = SLURM_CPUS_PER_TASK, else OMP_NUM_THREADS, else "
      "cores / ranks on the node");
  return desc;
}

namespace {
// Keeps the common options' storage alive for the process (po stores through pointers).
CommonOptions gCommon;
}  // namespace

std::optional<core::ParsedOptions> parseCommand(
    const CommandContext& context, const std::string& name, const std::string& usage,
    const po::options_description& own, const po::positional_options_description& positional) {
  po::options_description all;
  all.add(own);
  all.add(describeCommonOptions(gCommon));
  core::ParsedOptions parsed = core::parseOptions(name, context.args, all, positional);
  dist::World& world = context.world;
  if (parsed.helpRequested) {
    if (world.rank() == 0) {
      const CommandSpec* spec = findCommand(name);
      std::cout << "Usage: lddpm " << name << " " << usage << "\n\n"
                << (spec ? spec->summary : "") << "\n\n"
                << core::helpText(all) << core::helpText(core::metaOptions());
    }
    return std::nullopt;
  }
  if (gCommon.threads < 0) {
    LDDPM_THROW(core::UsageError, "lddpm ", name, ": option '--threads' must be >= 0, got ",
                gCommon.threads);
  }
  core::LogConfig log = core::Log::config();
  log.level = core::Log::parseLevel(gCommon.logLevel);
  log.allRanks = gCommon.logAllRanks;
  log.rank = world.rank();
  log.worldSize = world.size();
  core::Log::configure(log);
  world.configureThreads(gCommon.threads);
  return parsed;
}

namespace {
std::string modeNames(const std::vector<ModeSpec>& modes) {
  std::string names;
  for (const ModeSpec& m : modes) names += core::strCat(names.empty() ? "" : ", ", m.name);
  return names;
}
}  // namespace

int runMode(const CommandContext& context, const std::string& command,
            const std::vector<ModeSpec>& modes, const char* defaultMode) {
  const std::string first = context.args.empty() ? "" : context.args[0];
  if (first == "--help" || first == "-h") {
    if (context.world.rank() == 0) {
      std::cout << "Usage: lddpm " << command << " <mode> [options]     (lddpm " << command
                << " <mode> --help)\n\nModes:\n";
      for (const ModeSpec& m : modes) {
        std::cout << "  " << std::left << std::setw(14) << m.name << m.summary << "\n";
      }
      if (defaultMode) {
        std::cout << "\nOptions without a mode run '" << defaultMode << "': lddpm " << command
                  << " --opt ... = lddpm " << command << " " << defaultMode << " --opt ...\n";
      }
    }
    return 0;
  }
  for (const ModeSpec& m : modes) {
    if (first == m.name) return m.run(context.afterFirst());
  }
  if (defaultMode && first.rfind('-', 0) == 0) {
    for (const ModeSpec& m : modes) {
      if (std::string(defaultMode) == m.name) return m.run(context);
    }
  }
  if (first.empty()) {
    LDDPM_THROW(core::UsageError, "lddpm ", command,
                ": expected a mode (one of: ", modeNames(modes), "; see 'lddpm ", command,
                " --help')");
  }
  LDDPM_THROW(core::UsageError, "lddpm ", command, ": '", first,
              "' is not a mode (one of: ", modeNames(modes), "; see 'lddpm ", command, " --help')");
}

void writeCommandConfig(const std::string& dir, const std::string& name,
                        const core::ParsedOptions& parsed, const po::options_description& own,
                        const std::string& file) {
  po::options_description all;
  all.add(own);
  all.add(describeCommonOptions(gCommon));
  std::filesystem::create_directories(dir);
  core::writeResolvedConfig((std::filesystem::path(dir) / file).string(), parsed.values, all, name);
}

torch::Device deviceOption(const std::string& value, const std::string& command, int localRank) {
  if (value == "cpu") return torch::kCPU;
  if (value != "cuda") {
    LDDPM_THROW(core::UsageError, command, ": option '--device': '", value, "' is not cpu or cuda");
  }
  const auto gpus = static_cast<int>(torch::cuda::device_count());
  if (gpus == 0) {
    LDDPM_THROW(core::UsageError, command, ": option '--device': cuda requested but ",
                LDDPM_WITH_CUDA
                    ? "this machine has no visible CUDA device"
                    : "this build has no CUDA (Debian's LibTorch is CPU-only; see docs/slurm.md)");
  }
  if (localRank >= gpus) {
    LDDPM_THROW(core::UsageError, command, ": option '--device': local rank ", localRank,
                " but only ", gpus, " GPU(s) on this node; start one rank per GPU");
  }
  return {torch::kCUDA, static_cast<c10::DeviceIndex>(localRank)};
}

}  // namespace lddpm::launch
