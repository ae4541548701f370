// `lddpm inspect STORE`: a store's summary (format, grid, channels, parameters, subjects, shards)
// and a verification of every shard against manifest.json (size, XXH3-64, subjects). Every bad
// shard is reported, then the command fails (exit 1) naming them.
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "core/Error.h"
#include "core/Json.h"
#include "core/Progress.h"
#include "data/Manifest.h"
#include "data/StoreSchema.h"

namespace lddpm::launch {
namespace fs = std::filesystem;

bool looksLikeStore(const std::string& dir) {
  std::error_code ec;
  if (fs::exists(fs::path(dir) / data::kManifestFile, ec)) return true;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.path().filename().string().rfind("shard-", 0) == 0) return true;
  }
  return false;
}

int inspectStore(const std::string& dir, bool json) {
  const data::Manifest m = data::readManifest(dir);
  std::vector<std::string> problems;
  core::Json shards = core::Json::array();
  core::Progress progress("verifying shards", static_cast<std::int64_t>(m.shards.size()));
  for (std::size_t i = 0; i < m.shards.size(); ++i) {
    data::Manifest one = m;  // verify shard by shard so every bad one is reported
    one.shards = {m.shards[i]};
    std::string problem;
    try {
      data::verifyStore(dir, one);
    } catch (const core::Error& e) {
      problem = e.what();
      problems.push_back(problem);
    }
    const auto& s = m.shards[i];
    shards.push_back({{"file", s.file},
                      {"bytes", s.bytes},
                      {"subjects", s.subjects},
                      {"xxh3_64", s.checksum},
                      {"ok", problem.empty()},
                      {"problem", problem}});
    progress.update(static_cast<std::int64_t>(i + 1));
  }
  progress.finish();

  std::map<std::string, int> splits;
  std::int64_t lesionVoxels = 0, bytes = 0;
  for (const auto& s : m.subjects) {
    ++splits[s.split];
    lesionVoxels += s.lesionVoxels;
  }
  for (const auto& s : m.shards) bytes += s.bytes;
  if (json) {
    core::Json out = m.toJson();
    out["path"] = dir;
    out["verified"] = problems.empty();
    out["shards"] = shards;
    std::cout << out.dump(2) << "\n";
  } else {
    std::cout << "lddpm store " << dir << " (format version " << m.formatVersion << ")\n"
              << "  grid " << m.grid[0] << "x" << m.grid[1] << "x" << m.grid[2] << ", channels ";
    for (std::size_t c = 0; c < m.channels.size(); ++c)
      std::cout << (c ? "," : "") << m.channels[c];
    std::cout << ", parameters " << m.parameters.dump() << "\n  " << m.subjects.size()
              << " scans (";
    bool first = true;
    for (const auto& [split, n] : splits) {
      std::cout << (first ? "" : ", ") << split << " " << n;
      first = false;
    }
    std::cout << "), " << lesionVoxels << " lesion voxels, " << m.shards.size() << " shard(s), "
              << bytes / 1e6 << " MB\n\n"
              << std::left << std::setw(18) << "shard" << std::setw(10) << "scans" << std::setw(14)
              << "bytes" << std::setw(18) << "xxh3_64"
              << "checksum\n";
    for (const auto& s : shards) {
      std::cout << std::setw(18) << s["file"].get<std::string>() << std::setw(10)
                << s["subjects"].get<std::int64_t>() << std::setw(14)
                << s["bytes"].get<std::int64_t>() << std::setw(18)
                << s["xxh3_64"].get<std::string>() << (s["ok"].get<bool>() ? "ok" : "BAD") << "\n";
    }
  }
  if (!problems.empty()) {
    std::ostringstream msg;
    msg << dir << ": " << problems.size() << " bad shard(s):";
    for (const auto& p : problems) msg << "\n" << p;
    throw core::Error(msg.str());
  }
  return 0;
}

}  // namespace lddpm::launch
