// `lddpm sweep`: a grid (and random draws) of `lddpm train` options as one SLURM job array, one
// run directory per task (docs/sweeps.md). `lddpm sweep [submit] --grid G --template T --out SWEEP`
// checks every task's options as `lddpm train` would, writes SWEEP and submits the unfinished
// tasks (launch/sweep/SweepSubmit.h); `lddpm sweep status SWEEP` shows each task's state; `lddpm
// sweep collect SWEEP` ranks the tasks by a metric. Every usage problem is found before anything
// is written or submitted.
#include <filesystem>
#include <iostream>
#include <optional>

#include "core/AtomicFile.h"
#include "core/Error.h"
#include "core/Json.h"
#include "distributed/World.h"
#include "launch/Command.h"
#include "launch/sweep/SweepStatus.h"
#include "launch/sweep/SweepSubmit.h"

namespace lddpm::launch {

namespace {

namespace fs = std::filesystem;
using namespace sweep;

constexpr const char* kCommand = "sweep";

constexpr const char* kSubmitUsage =
    "--grid FILE --template FILE --out DIR [--dry-run] [--force] [--sbatch CMD]\n"
    "       lddpm sweep status DIR [--json]\n"
    "       lddpm sweep collect DIR [--metric NAME] [--descending] [--last N]";

int runSubmit(const CommandContext& context) {
  SubmitOptions o;
  const po::options_description own = o.describe();
  if (!parseCommand(context, kCommand, kSubmitUsage, own)) return 0;
  if (context.world.rank() != 0) return 0;  // a login-node command: one process acts
  std::cout << submitSweep(o) << "\n";
  return 0;
}

// ---- lddpm sweep status / collect -----------------------------------------------------------

std::vector<std::string> sweptKeys(const core::Json& record) {
  return record.value("swept", std::vector<std::string>{});
}

int runStatus(const CommandContext& context) {
  std::string dir, squeue = "squeue";
  bool json = false;
  po::options_description own("sweep status options");
  // clang-format off
  own.add_options()
      ("dir", po::value(&dir)->required()->value_name("DIR"), "sweep folder")
      ("json", po::bool_switch(&json), "print JSON instead of a table")
      ("squeue", po::value(&squeue)->default_value(squeue)->value_name("CMD"),
       "command that lists queued tasks (their state when they have not started)");
  // clang-format on
  po::positional_options_description positional;
  positional.add("dir", 1);
  if (!parseCommand(context, kCommand, "status DIR [--json]", own, positional)) return 0;
  if (context.world.rank() != 0) return 0;

  const core::Json record = readSweepRecord(dir);
  const auto tasks = readTaskStates(dir, record, queuedTasks(squeue, record));
  if (json) {
    core::Json out = core::Json::array();
    for (const auto& t : tasks) {
      core::Json values = core::Json::object();
      for (const auto& [key, value] : t.values) values[key] = value;
      out.push_back({{"task", t.id},
                     {"values", values},
                     {"state", t.state},
                     {"step", t.step},
                     {"steps", t.steps},
                     {"metrics", t.metrics}});
    }
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::cout << "sweep " << record.value("name", "") << " (" << dir << "): " << stateSummary(tasks)
            << "\n\n"
            << statusTable(tasks, sweptKeys(record)).text();
  return 0;
}

int runCollect(const CommandContext& context) {
  std::string dir, metric;
  bool descending = false;
  int last = 1;
  po::options_description own("sweep collect options");
  // clang-format off
  own.add_options()
      ("dir", po::value(&dir)->required()->value_name("DIR"), "sweep folder")
      ("metric", po::value(&metric)->value_name("NAME"),
       "metrics.jsonl key to sort by (default: [sweep] metric of the grid, else loss)")
      ("descending", po::bool_switch(&descending), "largest first (default: the grid's setting)")
      ("last", po::value(&last)->default_value(last)->value_name("N"),
       "average each metric over the last N rows of metrics.jsonl (1: the last row)");
  // clang-format on
  po::positional_options_description positional;
  positional.add("dir", 1);
  if (!parseCommand(context, kCommand, "collect DIR [--metric NAME] [--descending] [--last N]", own,
                    positional)) {
    return 0;
  }
  if (context.world.rank() != 0) return 0;
  if (last < 1) LDDPM_THROW(core::UsageError, "lddpm sweep collect: option '--last' must be >= 1");

  const core::Json record = readSweepRecord(dir);
  if (metric.empty()) metric = record.value("metric", "loss");
  descending = descending || record.value("descending", false);
  const Collected c = collectResults(readTaskStates(dir, record, std::nullopt, last),
                                     sweptKeys(record), metric, descending);
  const std::string markdown =
      c.table.markdown() +
      core::strCat(
          "\nSorted by ", metric, descending ? " (largest first)" : " (smallest first)",
          last > 1 ? core::strCat(", mean of the last ", last, " rows") : std::string(", last row"),
          "; * = unfinished (latest metrics, not final).\n");
  const core::Json json = {{"sweep", record.value("name", "")},
                           {"metric", metric},
                           {"descending", descending},
                           {"last", last},
                           {"tasks", c.json}};
  core::writeFileAtomic((fs::path(dir) / "results.md").string(), markdown);
  core::writeFileAtomic((fs::path(dir) / "results.csv").string(), c.table.csv());
  core::writeJsonFile((fs::path(dir) / "results.json").string(), json);
  std::cout << markdown;
  return 0;
}

}  // namespace

int runSweep(const CommandContext& context) {
  static const std::vector<ModeSpec> modes = {
      {"submit", "expand --grid over --template into one SLURM job array (or --dry-run)",
       &runSubmit},
      {"status", "each task's state, step and loss; requeues and failures", &runStatus},
      {"collect", "one table (markdown, CSV, JSON) of every task's final metrics", &runCollect}};
  return runMode(context, "sweep", modes, "submit");
}

}  // namespace lddpm::launch
