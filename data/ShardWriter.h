#pragma once
// Writes one shard file of the store (schema in StoreSchema.h / docs/store.md) under a temporary
// name beside its final path; commit() closes, fsyncs and renames it, so a shard under its final
// name is always complete. An uncommitted writer removes its temporary file.
#include <array>
#include <string>
#include <vector>

#include "data/Hdf5.h"
#include "data/StoreSchema.h"

namespace lddpm::data {

// Root attributes of a shard: what it is and which preprocessing produced it.
struct ShardHeader {
  int shardIndex = 0;
  std::string parameters;  // canonical JSON of the preprocessing parameters (a rerun compares it)
  std::vector<std::string> channels;
  std::array<std::int64_t, 3> grid{};  // (D, H, W)
};

class ShardWriter {
 public:
  ShardWriter(std::string path, ShardHeader header, StorageOptions storage);
  ~ShardWriter();
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  // Appends one subject; its grid and channels must match the header.
  void add(const SubjectData& subject);
  // Writes the subject list, closes the file and publishes it under the final path.
  void commit();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::string tempPath_;
  ShardHeader header_;
  StorageOptions storage_;
  h5::Handle file_;
  h5::Handle subjectsGroup_;
  std::vector<std::string> written_;
  bool committed_ = false;
};

}  // namespace lddpm::data
