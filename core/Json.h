#pragma once
// JSON through nlohmann/json (Debian nlohmann-json3-dev): header-only, well kept, and exact about
// numbers, which a hand-written writer for manifests and metrics would not be.
#include <nlohmann/json.hpp>
#include <string>

namespace lddpm::core {

using Json = nlohmann::ordered_json;  // keeps keys in insertion order: stable, diffable files

// Reads and parses a JSON file; IoError naming the file on failure (including parse errors).
Json readJsonFile(const std::string& path);
// Writes `value` pretty-printed, atomically.
void writeJsonFile(const std::string& path, const Json& value);

}  // namespace lddpm::core
