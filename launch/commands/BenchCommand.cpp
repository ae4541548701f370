// `lddpm bench <what>`: measurements a user runs on their own machine or cluster before booking
// it. `comm` measures collectives nccl-tests style (docs/distributed.md, docs/BENCHMARKS.md);
// other benches are added as modes in runBench's table.
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "core/AtomicFile.h"
#include "core/Error.h"
#include "core/Json.h"
#include "core/Log.h"
#include "core/Progress.h"
#include "core/Text.h"
#include "distributed/CommBenchmark.h"
#include "distributed/DistributedOptions.h"
#include "distributed/World.h"
#include "launch/Command.h"

namespace lddpm::launch {
namespace {

// "4096", "4K", "256M", "1G" (binary units) → bytes; throws UsageError naming the option.
int64_t parseBytes(const std::string& text, const char* option) {
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  const std::string unit = text.substr(std::min(used, text.size()));
  double scale = 0;
  if (unit.empty() || unit == "B") scale = 1;
  if (unit == "K" || unit == "KiB") scale = 1024.0;
  if (unit == "M" || unit == "MiB") scale = 1024.0 * 1024;
  if (unit == "G" || unit == "GiB") scale = 1024.0 * 1024 * 1024;
  if (used == 0 || scale == 0 || !(value > 0)) {
    LDDPM_THROW(core::UsageError, "option '", option, "': '", text,
                "' is not a size (examples: 4096, 4K, 256M, 1G)");
  }
  return static_cast<int64_t>(value * scale);
}

struct BenchCommOptions {
  std::string minText = "1K";
  std::string maxText = "256M";
  int64_t factor = 4;
  int iters = 20;
  int warmup = 5;
  std::string ops = "allreduce,reduce-scatter,allgather";
  std::string outDir;
  std::string device = "cpu";
  bool json = false;
  dist::DistributedOptions distributed;
  // resolved by validate()
  int64_t minBytes = 0, maxBytes = 0;
  std::vector<dist::Collective> collectives;

  po::options_description describe() {
    po::options_description own("bench comm options");
    own.add_options()("min-bytes", po::value(&minText)->default_value(minText)->value_name("SIZE"),
                      "smallest buffer (4096, 4K, 256M, 1G)")(
        "max-bytes", po::value(&maxText)->default_value(maxText)->value_name("SIZE"),
        "largest buffer")("factor", po::value(&factor)->default_value(factor)->value_name("F"),
                          "each size is F times the previous")(
        "iters", po::value(&iters)->default_value(iters)->value_name("N"),
        "timed collectives per size")("warmup",
                                      po::value(&warmup)->default_value(warmup)->value_name("N"),
                                      "untimed collectives per size first")(
        "ops", po::value(&ops)->default_value(ops)->value_name("LIST"),
        "comma-separated: allreduce, reduce-scatter, allgather")(
        "out", po::value(&outDir)->value_name("DIR"),
        "also write comm.json and config.ini into DIR")(
        "device", po::value(&device)->default_value(device),
        "cpu | cuda: where the buffers live (cuda + --comm-backend auto = NCCL, one GPU per rank)")(
        "json", po::bool_switch(&json), "print JSON instead of a table");
    own.add(distributed.describe(/*training=*/false));
    return own;
  }

  void validate() {
    distributed.validate();
    minBytes = parseBytes(minText, "--min-bytes");
    maxBytes = parseBytes(maxText, "--max-bytes");
    if (maxBytes < minBytes) {
      LDDPM_THROW(core::UsageError, "option '--max-bytes' (", maxText, ") is below --min-bytes (",
                  minText, ")");
    }
    if (factor < 2) LDDPM_THROW(core::UsageError, "option '--factor' must be >= 2, got ", factor);
    if (iters < 1) LDDPM_THROW(core::UsageError, "option '--iters' must be >= 1, got ", iters);
    if (warmup < 0) LDDPM_THROW(core::UsageError, "option '--warmup' must be >= 0, got ", warmup);
    for (const auto& name : core::splitString(ops, ',', /*skipEmpty=*/true))
      collectives.push_back(dist::parseCollective(name, "--ops"));
    if (collectives.empty()) LDDPM_THROW(core::UsageError, "option '--ops' names no collective");
  }
};

core::Json reportJson(const BenchCommOptions& o, const dist::Communicator& comm,
                      const std::vector<dist::CommBenchResult>& results) {
  core::Json table = core::Json::array();
  for (const auto& r : results) {
    table.push_back({{"collective", dist::collectiveName(r.collective)},
                     {"bytes", r.bytes},
                     {"seconds", r.seconds},
                     {"algbw_GBs", r.algbwGBs},
                     {"busbw_GBs", r.busbwGBs},
                     {"correct", r.correct}});
  }
  return {{"ranks", comm.size()},
          {"backend", dist::backendName(comm.backend())},
          {"comm_thread", o.distributed.commThread},
          {"iters", o.iters},
          {"results", table}};
}

std::string reportTable(const dist::Communicator& comm,
                        const std::vector<dist::CommBenchResult>& results) {
  std::ostringstream out;
  out << "# lddpm bench comm: " << comm.size() << " ranks, backend "
      << dist::backendName(comm.backend()) << "; busbw by the nccl-tests formulas\n"
      << std::left << std::setw(16) << "collective" << std::right << std::setw(12) << "bytes"
      << std::setw(14) << "time_us" << std::setw(13) << "algbw_GB/s" << std::setw(13)
      << "busbw_GB/s"
      << "  check\n";
  for (const auto& r : results) {
    out << std::left << std::setw(16) << dist::collectiveName(r.collective) << std::right
        << std::setw(12) << r.bytes << std::setw(14) << std::fixed << std::setprecision(1)
        << r.seconds * 1e6 << std::setw(13) << std::setprecision(3) << r.algbwGBs << std::setw(13)
        << r.busbwGBs << "  " << (r.correct ? "ok" : "WRONG") << "\n";
  }
  return out.str();
}

int runBenchComm(const CommandContext& context) {
  BenchCommOptions o;
  const po::options_description own = o.describe();
  const auto parsed = parseCommand(context, "bench comm", "[options]", own);
  if (!parsed) return 0;
  o.validate();

  const dist::World& world = context.world;
  const torch::Device where = deviceOption(o.device, "lddpm bench comm", world.localRank());
  auto comm = dist::makeCommunicator(o.distributed.backendKind(), world,
                                     o.distributed.communicatorOptions(), where);
  const auto sizes = dist::geometricSizes(o.minBytes, o.maxBytes, o.factor);
  LDDPM_LOG(Info) << "bench comm: " << comm->size() << " rank(s), backend "
                  << dist::backendName(comm->backend()) << ", comm thread "
                  << (o.distributed.commThread ? "on" : "off") << ", " << sizes.size()
                  << " sizes x " << o.collectives.size() << " collectives, " << o.iters << " iters";
  std::vector<dist::CommBenchResult> results;
  core::Progress progress("bench comm", static_cast<int64_t>(sizes.size() * o.collectives.size()));
  for (dist::Collective c : o.collectives) {
    for (int64_t bytes : sizes) {
      results.push_back(dist::benchmarkCollective(*comm, c, bytes, o.iters, o.warmup));
      progress.update(static_cast<int64_t>(results.size()),
                      core::strCat(dist::collectiveName(c), " ", bytes, " B"));
    }
  }
  progress.finish();

  if (world.rank() == 0) {
    const core::Json report = reportJson(o, *comm, results);
    if (!o.outDir.empty()) {
      std::filesystem::create_directories(o.outDir);
      core::writeFileAtomic((std::filesystem::path(o.outDir) / "comm.json").string(),
                            report.dump(2) + "\n");
      writeCommandConfig(o.outDir, "bench comm", *parsed, own);
    }
    std::cout << (o.json ? report.dump(2) + "\n" : reportTable(*comm, results));
  }
  std::string wrong;
  for (const auto& r : results) {
    if (!r.correct)
      wrong += core::strCat(wrong.empty() ? "" : ", ", dist::collectiveName(r.collective), " ",
                            r.bytes, " B");
  }
  LDDPM_CHECK(wrong.empty(), "bench comm: wrong collective results for ", wrong);
  return 0;
}

}  // namespace

int runBench(const CommandContext& context) {
  static const std::vector<ModeSpec> modes = {
      {"comm",
       "allreduce / reduce-scatter / allgather bandwidth, 1 KiB..256 MiB (nccl-tests style)",
       &runBenchComm}};
  return runMode(context, "bench", modes);
}

}  // namespace lddpm::launch
