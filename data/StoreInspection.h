#pragma once
// What `lddpm inspect STORE` reports: a store's summary (format, grid, channels, parameters,
// subjects per split, shards) and a verification of every shard against manifest.json (size,
// XXH3-64, subjects), shard by shard so that every bad one is named.
#include <string>
#include <vector>

#include "core/Json.h"
#include "data/Manifest.h"

namespace lddpm::data {

// A folder that holds manifest.json or shard files (a store, complete or not).
bool looksLikeStore(const std::string& dir);

struct ShardCheck {
  ShardEntry shard;
  std::string problem;  // empty: the shard verifies
};

struct StoreInspection {
  std::string dir;
  Manifest manifest;
  std::vector<ShardCheck> shards;  // in manifest order

  // The problems of the bad shards, in order; empty when the store verifies.
  std::vector<std::string> problems() const;
  // The manifest's JSON with "path", "verified" and each shard's check.
  core::Json toJson() const;
  // A summary line block and a table of the shards (ok / BAD).
  std::string toText() const;
};

// Reads the manifest (IoError naming it when it is missing or malformed) and verifies every
// shard, with progress on stderr.
StoreInspection inspectStore(const std::string& dir);

}  // namespace lddpm::data
