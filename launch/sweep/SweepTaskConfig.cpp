#include "launch/sweep/SweepTaskConfig.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/Error.h"
#include "core/Log.h"
#include "core/Options.h"
#include "launch/Command.h"
#include "launch/engine/TrainConfig.h"
#include "models/Registry.h"

namespace lddpm::launch::sweep {

namespace {

namespace fs = std::filesystem;

// The options `lddpm train` accepts, bound to fresh structs (po stores through pointers, so the
// object stays where it was built).
struct TrainOptions {
  TrainConfig train;
  models::ModelConfig model;
  CommonOptions common;
  po::options_description desc;
  po::variables_map values;

  TrainOptions() {
    desc.add(train.describe());
    desc.add(model.describe());
    desc.add(describeCommonOptions(common));
  }
  TrainOptions(const TrainOptions&) = delete;
  TrainOptions& operator=(const TrainOptions&) = delete;

  // Stores INI text; values already stored win (so the first text stored has priority).
  void store(std::istream& ini) {
    po::store(po::parse_config_file(ini, desc, /*allow_unregistered=*/false), values);
  }
  void store(const std::string& ini) {
    std::istringstream in(ini);
    store(in);
  }
};

// Keys a grid file may not set, and why.
const char* reservedReason(const std::string& key) {
  if (key == "run") return "the sweep sets --run to each task's folder (SWEEP/tasks/NNN)";
  if (key == "help") return "not an option a sweep can set";
  return nullptr;
}

}  // namespace

void TaskConfigResolver::checkLines() const {
  const auto check = [&](const char* section, int line, const std::string& key,
                         const std::string& value) {
    const auto where = core::strCat(spec_.path, ":", line, ": [", section, "] ");
    if (const char* why = reservedReason(key)) {
      LDDPM_THROW(core::UsageError, where, "option '", key, "': ", why);
    }
    if (key == "config") {
      if (std::string(section) != "base") {
        LDDPM_THROW(core::UsageError, where, "'config' (a base INI file) belongs in [base]");
      }
      if (!std::ifstream(value)) {
        LDDPM_THROW(core::UsageError, where, "config: cannot read '", value, "'");
      }
      return;
    }
    TrainOptions o;
    if (!o.desc.find_nothrow(key, /*approx=*/false)) {
      LDDPM_THROW(core::UsageError, where, "unknown option '", key,
                  "': not an option of lddpm train (see lddpm train --help)");
    }
    try {
      o.store(key + " = " + value + "\n");
    } catch (const po::error& e) {
      LDDPM_THROW(core::UsageError, where, key, " = '", value, "': ", e.what());
    }
  };
  for (const auto& o : spec_.base) check("base", o.line, o.key, o.value);
  for (const auto& axis : spec_.grid) {
    for (const auto& v : axis.values) check("grid", axis.line, axis.key, v);
  }
  for (const auto& axis : spec_.random) {
    if (const char* why = reservedReason(axis.key)) {
      LDDPM_THROW(core::UsageError, spec_.path, ":", axis.line, ": [random] option '", axis.key,
                  "': ", why);
    }
    TrainOptions o;
    if (axis.key == "config" || !o.desc.find_nothrow(axis.key, /*approx=*/false)) {
      LDDPM_THROW(core::UsageError, spec_.path, ":", axis.line, ": [random] unknown option '",
                  axis.key, "': not an option of lddpm train (see lddpm train --help)");
    }
  }
}

std::string TaskConfigResolver::resolve(const SweepTask& task, const std::string& runDir) {
  std::string values;
  for (const auto& [key, value] : task.values)
    values += (values.empty() ? "" : ", ") + key + " = " + value;
  const std::string where =
      core::strCat(spec_.path, ": task ", task.id, values.empty() ? "" : " (" + values + ")", ": ");

  std::ostringstream ini;
  ini << "run = " << runDir << "\n";
  for (const auto& [key, value] : task.values) ini << key << " = " << value << "\n";
  std::string baseConfig;
  for (const auto& o : spec_.base) {
    if (o.key == "config") {
      baseConfig = o.value;
    } else {
      ini << o.key << " = " << o.value << "\n";
    }
  }
  TrainOptions o;
  try {
    o.store(ini.str());
    if (!baseConfig.empty()) {
      std::ifstream in(baseConfig);
      try {
        o.store(in);
      } catch (const po::error& e) {
        LDDPM_THROW(core::UsageError, where, baseConfig, ": ", e.what());
      }
    }
    po::notify(o.values);
  } catch (const po::error& e) {
    LDDPM_THROW(core::UsageError, where, e.what());
  }
  try {
    o.train.validate(spec_.settings.ranks);
    // The common options, as parseCommand checks them when the task starts.
    core::Log::parseLevel(o.common.logLevel);
    if (o.common.threads < 0) {
      LDDPM_THROW(core::UsageError, "option '--threads' must be >= 0, got ", o.common.threads);
    }
    const std::string modelKey = core::renderConfig(o.values, o.model.describe(), "");
    if (!builtModels_.count(modelKey)) {
      models::createModel(o.model);  // what `lddpm train` builds first; throws UsageError
      builtModels_.insert(modelKey);
    }
  } catch (const core::UsageError& e) {
    LDDPM_THROW(core::UsageError, where, e.what());
  } catch (const c10::Error& e) {
    LDDPM_THROW(core::UsageError, where, "the model does not build: ", e.what_without_backtrace());
  }
  // A task starts wherever SLURM starts it: the store is named by its absolute path.
  const std::string store = fs::absolute(o.train.data.store).lexically_normal().string();
  if (!fs::exists(fs::path(store) / "manifest.json")) {
    LDDPM_THROW(core::UsageError, where, "option 'store': '", o.train.data.store,
                "' is not a complete store (no manifest.json; run lddpm preprocess)");
  }
  o.values.find("store")->second.value() = store;
  return core::renderConfig(
      o.values, o.desc,
      core::strCat("lddpm sweep ", spec_.settings.name, ", task ", task.id,
                   ": every option of this task ([base] + ", values.empty() ? "none" : values,
                   ").\nRun by the sweep's job.sbatch as: lddpm train --config THIS_FILE --run ",
                   runDir, " --resume auto"));
}

}  // namespace lddpm::launch::sweep
