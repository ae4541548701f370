// `lddpm models`: the model registry with parameter counts for the given model options, so a user
// sees what --base-channels or --channel-mult cost before training (docs/models.md "Registry");
// with an explicit --model, that model alone.
#include <iomanip>
#include <iostream>

#include "core/Json.h"
#include "distributed/World.h"
#include "launch/Command.h"
#include "models/Registry.h"

namespace lddpm::launch {

int runModels(const CommandContext& context) {
  bool json = false;
  models::ModelConfig config;
  po::options_description own = config.describe();
  own.add_options()("json", po::bool_switch(&json), "print JSON instead of text");
  const auto parsed = parseCommand(context, "models", "[model options] [--json]", own);
  if (!parsed) return 0;
  if (context.world.rank() != 0) return 0;
  // An explicit --model counts that model alone: options one model takes may not suit another
  // (cond-ddpm at --groups 5 next to pix2pix's default --disc-channels 16).
  const bool oneModel = !parsed->values["model"].defaulted();

  core::Json table = core::Json::array();
  for (const models::ModelSummary& m : models::summarizeModels(config, oneModel)) {
    core::Json groups = core::Json::object();
    for (const auto& [name, count] : m.groups) groups[name] = count;
    table.push_back({{"name", m.name},
                     {"parameters", m.parameters},
                     {"groups", groups},
                     {"size_divisor", m.sizeDivisor},
                     {"summary", m.summary}});
  }
  if (json) {
    std::cout << table.dump(2) << "\n";
    return 0;
  }
  std::cout << std::left << std::setw(13) << "model" << std::right << std::setw(12) << "parameters"
            << "  summary\n";
  for (const auto& row : table) {
    std::cout << std::left << std::setw(13) << row["name"].get<std::string>() << std::right
              << std::setw(12) << row["parameters"].get<std::int64_t>() << "  "
              << row["summary"].get<std::string>() << "\n";
  }
  return 0;
}

}  // namespace lddpm::launch
