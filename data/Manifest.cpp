// Store manifest: see Manifest.h and docs/store.md.
#include "data/Manifest.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <set>

#include "core/Checksum.h"
#include "core/Error.h"
#include "core/Printable.h"
#include "core/Version.h"
#include "data/ShardReader.h"
#include "data/StoreSchema.h"

namespace lddpm::data {
namespace fs = std::filesystem;

Split parseSplit(const std::string& name, const std::string& option) {
  if (name == "train") return Split::Train;
  if (name == "test") return Split::Test;
  if (name == "all") return Split::All;
  LDDPM_THROW(core::UsageError, "option '--", option, "': '", name,
              "' is not a split (expected train, test or all)");
}

void checkIdSuffix(const std::string& suffix, const std::string& option) {
  const bool usable =
      !suffix.empty() && std::all_of(suffix.begin(), suffix.end(), [](unsigned char c) {
        return std::isalnum(c) || c == '_' || c == '-' || c == '.';
      });
  if (!usable) {
    LDDPM_THROW(core::UsageError, "option '--", option, "': '", suffix,
                "' is not a usable id suffix (non-empty; letters, digits, _ - . only)");
  }
}

std::string splitName(Split split) {
  switch (split) {
    case Split::Train:
      return "train";
    case Split::Test:
      return "test";
    default:
      return "all";
  }
}

std::vector<SubjectEntry> Manifest::subjectsOf(Split split) const {
  std::vector<SubjectEntry> out;
  for (const auto& s : subjects) {
    if (split == Split::All || s.split == splitName(split)) out.push_back(s);
  }
  return out;
}

std::vector<SubjectEntry> Manifest::casesOf(const std::string& split, std::int64_t limit,
                                            const std::string& storeDir) const {
  std::vector<SubjectEntry> out = subjectsOf(parseSplit(split));
  if (out.empty())
    throw core::IoError(storeDir, "has no '" + split + "' subjects (option --split)");
  if (limit > 0 && static_cast<std::int64_t>(out.size()) > limit) {
    out.resize(static_cast<std::size_t>(limit));
  }
  return out;
}

core::Json Manifest::toJson() const {
  core::Json j;
  j["format"] = kStoreFormat;
  j["format_version"] = formatVersion;
  j["lddpm_version"] = core::buildInfo().version;
  j["checksum"] = "xxh3_64";
  j["parameters"] = parameters;
  j["channels"] = channels;
  j["grid"] = grid;
  std::int64_t lesionVoxels = 0;
  core::Json splits = core::Json::object();
  for (const auto& s : subjects) {
    lesionVoxels += s.lesionVoxels;
    splits[s.split] = splits.value(s.split, 0) + 1;
  }
  j["counts"] = {{"subjects", subjects.size()},
                 {"shards", shards.size()},
                 {"splits", splits},
                 {"lesion_voxels", lesionVoxels}};
  core::Json shardList = core::Json::array();
  for (const auto& s : shards) {
    shardList.push_back(
        {{"file", s.file}, {"bytes", s.bytes}, {"xxh3_64", s.checksum}, {"subjects", s.subjects}});
  }
  j["shards"] = shardList;
  core::Json subjectList = core::Json::array();
  for (const auto& s : subjects) {
    subjectList.push_back({{"id", s.id},
                           {"split", s.split},
                           {"shard", s.shard},
                           {"brain_voxels", s.brainVoxels},
                           {"lesion_voxels", s.lesionVoxels}});
  }
  j["subjects"] = subjectList;
  return j;
}

namespace {

// Names the manifest gives are used as paths inside the store (shards) and as file names of
// outputs (subject ids: `lddpm sample` writes <id>.nii.gz): a damaged or hostile manifest must not
// make a reader open or a writer create anything outside those folders.
bool isPlainName(const std::string& name) {
  if (name.empty() || name == "." || name == ".." || name.size() > 255) return false;
  return std::none_of(name.begin(), name.end(), [](char c) {
    return c == '/' || c == '\\' || static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
  });
}

}  // namespace

Manifest Manifest::fromJson(const core::Json& j, const std::string& path) {
  Manifest m;
  try {
    if (j.at("format").get<std::string>() != kStoreFormat) {
      throw core::IoError(path, "not an lddpm store manifest (format " +
                                    core::printable(j.at("format").get<std::string>()) + ")");
    }
    m.formatVersion = j.at("format_version").get<std::int64_t>();
    if (m.formatVersion != kStoreFormatVersion) {
      throw core::IoError(path, core::strCat("store format version ", m.formatVersion,
                                             "; this build reads version ", kStoreFormatVersion));
    }
    m.parameters = j.at("parameters");
    m.channels = j.at("channels").get<std::vector<std::string>>();
    m.grid = j.at("grid").get<std::array<std::int64_t, 3>>();
    for (const auto& s : j.at("shards")) {
      m.shards.push_back({s.at("file").get<std::string>(), s.at("bytes").get<std::int64_t>(),
                          s.at("xxh3_64").get<std::string>(),
                          s.at("subjects").get<std::int64_t>()});
    }
    for (const auto& s : j.at("subjects")) {
      m.subjects.push_back({s.at("id").get<std::string>(), s.at("split").get<std::string>(),
                            s.at("shard").get<std::string>(),
                            s.at("brain_voxels").get<std::int64_t>(),
                            s.at("lesion_voxels").get<std::int64_t>()});
    }
  } catch (const core::Json::exception& e) {
    throw core::IoError(path, std::string("malformed manifest: ") + e.what());
  }
  for (const std::int64_t edge : m.grid) {
    if (edge < 1 || edge > (1 << 16)) {
      throw core::IoError(path, core::strCat("grid edge ", edge, " is not in [1, 65536]"));
    }
  }
  std::set<std::string> shardFiles;
  for (const ShardEntry& s : m.shards) {
    if (!isPlainName(s.file) || s.file[0] == '.') {
      throw core::IoError(
          path, "shard " + core::printable(s.file) + " is not a file name inside the store");
    }
    if (!shardFiles.insert(s.file).second) {
      throw core::IoError(path, "shard " + core::printable(s.file) + " is listed twice");
    }
    if (s.bytes < 0 || s.subjects < 0) {
      throw core::IoError(
          path, "shard " + core::printable(s.file) + " has a negative size or subject count");
    }
  }
  std::set<std::string> ids;
  for (const SubjectEntry& s : m.subjects) {
    if (!isPlainName(s.id) || s.id[0] == '.') {
      throw core::IoError(
          path, "subject id " + core::printable(s.id) + " is not a plain name (it names files)");
    }
    if (!ids.insert(s.id).second) {
      throw core::IoError(path, "subject " + core::printable(s.id) + " is listed twice");
    }
    if (!shardFiles.count(s.shard)) {
      throw core::IoError(path, "subject " + core::printable(s.id) + " is in shard " +
                                    core::printable(s.shard) +
                                    ", which the manifest does not list");
    }
  }
  return m;
}

Manifest buildManifest(const std::string& storeDir, const std::vector<std::string>& shardFiles) {
  Manifest m;
  m.formatVersion = kStoreFormatVersion;
  std::string firstParameters;
  std::set<std::string> seen;
  for (const std::string& file : shardFiles) {
    const std::string path = (fs::path(storeDir) / file).string();
    ShardEntry entry;
    entry.file = file;
    {
      ShardReader reader(path);
      const ShardHeader& h = reader.header();
      if (m.shards.empty()) {
        firstParameters = h.parameters;
        m.parameters = core::Json::parse(h.parameters);
        m.channels = h.channels;
        m.grid = h.grid;
      } else if (h.parameters != firstParameters || h.channels != m.channels || h.grid != m.grid) {
        throw core::IoError(path, "written with other parameters, channels or grid than " +
                                      m.shards.front().file + " (stale shard from another run?)");
      }
      for (const std::string& id : reader.subjects()) {
        if (!seen.insert(id).second)
          throw core::IoError(path, "subject '" + id + "' is in two shards");
        const SubjectData s = reader.readSubject(id, /*withVoxels=*/false);
        const auto [brain, lesion] = reader.readCounts(id);
        m.subjects.push_back({id, s.split, file, brain, lesion});
      }
      entry.subjects = static_cast<std::int64_t>(reader.subjects().size());
    }
    entry.bytes = static_cast<std::int64_t>(fs::file_size(path));
    entry.checksum = core::checksumHex(core::checksumFile(path));
    m.shards.push_back(entry);
  }
  std::sort(m.subjects.begin(), m.subjects.end(),
            [](const SubjectEntry& a, const SubjectEntry& b) { return a.id < b.id; });
  return m;
}

std::string manifestPath(const std::string& storeDir) {
  return (fs::path(storeDir) / kManifestFile).string();
}

void writeManifest(const std::string& storeDir, const Manifest& manifest) {
  core::writeJsonFile(manifestPath(storeDir), manifest.toJson());
}

Manifest readManifest(const std::string& storeDir) {
  const std::string path = manifestPath(storeDir);
  if (!fs::exists(path)) {
    throw core::IoError(storeDir,
                        "no manifest.json: not a complete store (preprocessing "
                        "unfinished? rerun lddpm preprocess to finish it)");
  }
  return Manifest::fromJson(core::readJsonFile(path), path);
}

void verifyStore(const std::string& storeDir, const Manifest& manifest,
                 const std::function<void(std::size_t)>& onShard) {
  std::size_t done = 0;
  for (const ShardEntry& shard : manifest.shards) {
    const std::string path = (fs::path(storeDir) / shard.file).string();
    if (!fs::exists(path)) throw core::IoError(path, "listed in manifest.json but missing");
    const auto bytes = static_cast<std::int64_t>(fs::file_size(path));
    if (bytes != shard.bytes) {
      throw core::IoError(path, core::strCat("size ", bytes, " bytes but manifest.json says ",
                                             shard.bytes, " (truncated or rewritten)"));
    }
    const std::string actual = core::checksumHex(core::checksumFile(path));
    if (actual != shard.checksum) {
      throw core::IoError(path, "checksum mismatch: xxh3_64 " + actual + ", manifest.json says " +
                                    shard.checksum + " (corrupt or modified shard)");
    }
    ShardReader reader(path);
    for (const SubjectEntry& s : manifest.subjects) {
      if (s.shard == shard.file && !reader.contains(s.id)) {
        throw core::IoError(path, "does not hold subject '" + s.id + "' listed in manifest.json");
      }
    }
    if (onShard) onShard(++done);
  }
}

}  // namespace lddpm::data
