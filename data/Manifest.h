#pragma once
// STORE/manifest.json: the store's table of contents, written last (atomically) once every shard
// is complete, so its presence means "this store is whole". It names each shard with its size and
// XXH3-64 checksum, maps every subject to its shard, and records the preprocessing parameters.
// Keys are documented in docs/store.md.
#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/Json.h"

namespace lddpm::data {

struct ShardEntry {
  std::string file;  // relative to the store folder
  std::int64_t bytes = 0;
  std::string checksum;  // XXH3-64, 16 hex digits
  std::int64_t subjects = 0;
};

struct SubjectEntry {
  std::string id;
  std::string split;
  std::string shard;  // file name of the shard holding it
  std::int64_t brainVoxels = 0;
  std::int64_t lesionVoxels = 0;
};

// A store split as the commands name it (--split train | test | all).
enum class Split { Train, Test, All };
// UsageError naming `option` unless `name` is train, test or all.
Split parseSplit(const std::string& name, const std::string& option = "split");
std::string splitName(Split split);

// UsageError naming `option` unless `suffix` (appended to subject ids of derived stores) is
// non-empty and made of letters, digits, '_', '-' and '.' only.
void checkIdSuffix(const std::string& suffix, const std::string& option);

struct Manifest {
  std::int64_t formatVersion = 0;
  core::Json parameters = core::Json::object();
  std::vector<std::string> channels;
  std::array<std::int64_t, 3> grid{};
  std::vector<ShardEntry> shards;
  std::vector<SubjectEntry> subjects;  // sorted by id

  // The subjects of `split`, in id order (may be empty).
  std::vector<SubjectEntry> subjectsOf(Split split) const;
  // The cases a command works on: the subjects of `split` (its --split text), the first `limit`
  // of them (0 = all). IoError naming `storeDir` and --split when there are none.
  std::vector<SubjectEntry> casesOf(const std::string& split, std::int64_t limit,
                                    const std::string& storeDir) const;

  core::Json toJson() const;
  // Parses and checks format and version; IoError naming `path` and the bad key otherwise.
  static Manifest fromJson(const core::Json& json, const std::string& path);
};

// Reads every listed shard of `storeDir` (names relative to it), checks that they agree (format,
// parameters, grid, channels, no subject twice) and checksums them. IoError names the shard.
Manifest buildManifest(const std::string& storeDir, const std::vector<std::string>& shardFiles);

std::string manifestPath(const std::string& storeDir);
void writeManifest(const std::string& storeDir, const Manifest& manifest);  // atomic
Manifest readManifest(const std::string& storeDir);  // IoError when missing: "not a complete store"

// Checks each shard's existence, size and checksum against the manifest and that it holds the
// subjects the manifest says. Throws IoError naming the shard and the mismatch. `onShard` (may be
// empty) is called after each shard with the number verified so far (for progress).
void verifyStore(const std::string& storeDir, const Manifest& manifest,
                 const std::function<void(std::size_t done)>& onShard = {});

}  // namespace lddpm::data
