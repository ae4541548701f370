// Store-format helpers: see StoreSchema.h.
#include "data/StoreSchema.h"

#include <cstdio>

#include "core/Error.h"

namespace lddpm::data {

std::string shardFileName(int shardIndex) {
  char name[32];
  std::snprintf(name, sizeof name, "shard-%05d.h5", shardIndex);
  return name;
}

Compression parseCompression(const std::string& name) {
  if (name == "none") return Compression::None;
  if (name == "deflate") return Compression::Deflate;
  if (name == "lz4") return Compression::Lz4;
  if (name == "zstd") return Compression::Zstd;
  LDDPM_THROW(core::UsageError, "option '--compression': unknown value '", name,
              "' (expected none, deflate, lz4 or zstd)");
}

std::string compressionName(Compression compression) {
  switch (compression) {
    case Compression::None:
      return "none";
    case Compression::Deflate:
      return "deflate";
    case Compression::Lz4:
      return "lz4";
    case Compression::Zstd:
      return "zstd";
  }
  return "?";
}

std::int64_t SubjectData::brainVoxels() const { return tissue.gt(0).sum().item<std::int64_t>(); }
std::int64_t SubjectData::lesionCount() const { return lesion.gt(0).sum().item<std::int64_t>(); }

}  // namespace lddpm::data
