// `lddpm info`: what this build is and how the job was launched. Every rank reports its host,
// local rank, device and threads; rank 0 prints one table (text or --json).
#include <iostream>

#include "core/Json.h"
#include "core/Log.h"
#include "core/Version.h"
#include "distributed/LaunchReport.h"
#include "distributed/World.h"
#include "launch/Command.h"

namespace lddpm::launch {

int runInfo(const CommandContext& context) {
  bool json = false;
  po::options_description own("info options");
  own.add_options()("json", po::bool_switch(&json), "print JSON instead of text");
  if (!parseCommand(context, "info", "[--json]", own)) return 0;

  dist::World& world = context.world;
  const auto ranks = world.allgatherRankInfo(
      dist::RankInfo{world.rank(), world.localRank(), world.threads(), world.host(), "cpu"});
  if (world.rank() != 0) return 0;

  const core::BuildInfo build = core::buildInfo();
  const core::BlasLibrary blas = core::blasLibrary();
  if (json) {
    core::Json out;
    out["version"] = build.version;
    out["torch"] = build.torchVersion;
    out["backends"] = {{"mpi", build.mpi}, {"cuda", build.cuda}, {"nccl", build.nccl}};
    out["blas"] = {{"name", blas.name}, {"path", blas.path}, {"reference", blas.reference}};
    out["world_size"] = world.size();
    out["launched_by_mpi"] = world.usesMpi();
    core::Json table = core::Json::array();
    for (const auto& r : ranks) {
      table.push_back({{"rank", r.rank},
                       {"host", r.host},
                       {"local_rank", r.localRank},
                       {"device", r.device},
                       {"threads", r.threads}});
    }
    out["ranks"] = table;
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::cout << core::versionLine() << "\n"
            << "BLAS: " << blas.name << (blas.path.empty() ? "" : " (" + blas.path + ")") << "\n"
            << "world size " << world.size() << (world.usesMpi() ? " (MPI)" : " (no launcher)")
            << "\n\n"
            << dist::formatRankTable(ranks);
  for (const auto& problem : dist::launchProblems(ranks)) LDDPM_LOG(Warn) << problem;
  if (blas.reference) {
    LDDPM_LOG(Warn)
        << "LibTorch runs on the reference BLAS (" << blas.path
        << "): attention and linear layers run several times slower; install an optimised one "
           "(Debian: libopenblas0-openmp, which launch/setup.sh installs)";
  }
  return 0;
}

}  // namespace lddpm::launch
