#include "data/StoreInspection.h"

#include <filesystem>
#include <iomanip>
#include <map>
#include <sstream>

#include "core/Error.h"
#include "core/Progress.h"
#include "data/StoreSchema.h"

namespace lddpm::data {
namespace fs = std::filesystem;

bool looksLikeStore(const std::string& dir) {
  std::error_code ec;
  if (fs::exists(fs::path(dir) / kManifestFile, ec)) return true;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.path().filename().string().rfind("shard-", 0) == 0) return true;
  }
  return false;
}

StoreInspection inspectStore(const std::string& dir) {
  StoreInspection out{dir, readManifest(dir), {}};
  const Manifest& m = out.manifest;
  core::Progress progress("verifying shards", static_cast<std::int64_t>(m.shards.size()));
  for (std::size_t i = 0; i < m.shards.size(); ++i) {
    Manifest one = m;  // verify shard by shard so every bad one is reported
    one.shards = {m.shards[i]};
    ShardCheck check{m.shards[i], ""};
    try {
      verifyStore(dir, one);
    } catch (const core::Error& e) {
      check.problem = e.what();
    }
    out.shards.push_back(check);
    progress.update(static_cast<std::int64_t>(i + 1));
  }
  progress.finish();
  return out;
}

std::vector<std::string> StoreInspection::problems() const {
  std::vector<std::string> p;
  for (const auto& s : shards) {
    if (!s.problem.empty()) p.push_back(s.problem);
  }
  return p;
}

core::Json StoreInspection::toJson() const {
  core::Json list = core::Json::array();
  for (const auto& [s, problem] : shards) {
    list.push_back({{"file", s.file},
                    {"bytes", s.bytes},
                    {"subjects", s.subjects},
                    {"xxh3_64", s.checksum},
                    {"ok", problem.empty()},
                    {"problem", problem}});
  }
  core::Json out = manifest.toJson();
  out["path"] = dir;
  out["verified"] = problems().empty();
  out["shards"] = list;
  return out;
}

std::string StoreInspection::toText() const {
  const Manifest& m = manifest;
  std::map<std::string, int> splits;
  std::int64_t lesionVoxels = 0, bytes = 0;
  for (const auto& s : m.subjects) {
    ++splits[s.split];
    lesionVoxels += s.lesionVoxels;
  }
  for (const auto& s : m.shards) bytes += s.bytes;
  std::ostringstream out;
  out << "lddpm store " << dir << " (format version " << m.formatVersion << ")\n"
      << "  grid " << m.grid[0] << "x" << m.grid[1] << "x" << m.grid[2] << ", channels ";
  for (std::size_t c = 0; c < m.channels.size(); ++c) out << (c ? "," : "") << m.channels[c];
  out << ", parameters " << m.parameters.dump() << "\n  " << m.subjects.size() << " scans (";
  bool first = true;
  for (const auto& [split, n] : splits) {
    out << (first ? "" : ", ") << split << " " << n;
    first = false;
  }
  out << "), " << lesionVoxels << " lesion voxels, " << m.shards.size() << " shard(s), "
      << bytes / 1e6 << " MB\n\n"
      << std::left << std::setw(18) << "shard" << std::setw(10) << "scans" << std::setw(14)
      << "bytes" << std::setw(18) << "xxh3_64"
      << "checksum\n";
  for (const auto& [s, problem] : shards) {
    out << std::setw(18) << s.file << std::setw(10) << s.subjects << std::setw(14) << s.bytes
        << std::setw(18) << s.checksum << (problem.empty() ? "ok" : "BAD") << "\n";
  }
  return out.str();
}

}  // namespace lddpm::data
