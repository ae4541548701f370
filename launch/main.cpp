// lddpm: one binary, git-style subcommands (docs/architecture.md). main() owns the process-level
// policy: MPI world set-up, mapping exceptions to exit codes, and bringing the whole job down
// when one rank fails so that no other rank hangs in a collective.
#include <iostream>
#include <string>
#include <vector>

#include "core/Allocator.h"
#include "core/Error.h"
#include "core/Log.h"
#include "core/Version.h"
#include "distributed/World.h"
#include "launch/Command.h"

namespace {

void printUsage(std::ostream& out) {
  out << "Usage: lddpm <command> [options]     (lddpm <command> --help for its options)\n\n"
         "Lesion-DDPM: train and sample a 3-D diffusion model of MS FLAIR MRI from anatomical +\n"
         "lesion masks, plain or data-parallel under mpirun/srun.\n\nCommands:\n";
  for (const auto& c : lddpm::launch::commands()) {
    std::string name = c.name;
    name.resize(std::max<size_t>(name.size() + 2, 12), ' ');
    out << "  " << name << c.summary << "\n";
  }
  out << "\nOptions:\n  -h, --help     show this help\n  --version      show version and "
         "backends\n\nExit codes: 0 ok, 1 failure, 2 usage error, 75 stopped on a signal after "
         "checkpointing (resume me).\n";
}

}  // namespace

int main(int argc, char** argv) {
  using namespace lddpm;
  core::tuneAllocatorForTensors();  // before the first tensor: see core/Allocator.h
  dist::World* world = nullptr;
  try {
    world = &dist::World::init(&argc, &argv);
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return core::kExitFailure;
  }
  const bool rank0 = world->rank() == 0;
  const std::vector<std::string> args(argv + 1, argv + argc);

  int code = core::kExitOk;
  try {
    if (args.empty()) {
      if (rank0) printUsage(std::cerr);
      code = core::kExitUsage;
    } else if (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
      if (rank0) printUsage(std::cout);
    } else if (args[0] == "--version" || args[0] == "-V") {
      if (rank0) std::cout << core::versionLine() << "\n";
    } else if (const launch::CommandSpec* cmd = launch::findCommand(args[0])) {
      code = cmd->run(launch::CommandContext{*world, {args.begin() + 1, args.end()}});
    } else {
      LDDPM_THROW(core::UsageError, "lddpm: '", args[0], "' is not a command (see 'lddpm --help')");
    }
  } catch (const core::UsageError& e) {
    // Options are identical on every rank, so every rank fails the same way: rank 0 reports.
    if (rank0) std::cerr << "error: " << e.what() << "\n";
    code = core::kExitUsage;
  } catch (const core::ResumeRequested& e) {
    LDDPM_LOG(Info) << e.what();
    code = core::kExitResume;
  } catch (const std::exception& e) {
    LDDPM_LOG_EVERY_RANK(Error) << e.what();
    if (world->size() > 1) world->abort(core::kExitFailure);
    code = core::kExitFailure;
  }
  world->finalize();
  return code;
}
