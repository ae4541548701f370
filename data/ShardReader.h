#pragma once
// Reads one shard file: header, subject list, whole subjects, and patches (hyperslabs of the
// chunked datasets, so only the chunks a patch touches are read). Every error names the file and
// the object inside it. Not shared between threads: each loader worker opens its own reader.
#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "data/Hdf5.h"
#include "data/Manifest.h"
#include "data/ShardWriter.h"
#include "data/StoreSchema.h"

namespace lddpm::data {

// One sample's voxels: the image channels and both masks over the same box.
struct PatchData {
  torch::Tensor image;   // [C, d, h, w] float32
  torch::Tensor tissue;  // [d, h, w] uint8
  torch::Tensor lesion;  // [d, h, w] uint8
};

class ShardReader {
 public:
  // Opens and checks the format and version; IoError naming the file otherwise.
  explicit ShardReader(std::string path, std::size_t chunkCacheBytes = 8u << 20);

  const std::string& path() const { return path_; }
  const ShardHeader& header() const { return header_; }
  const std::vector<std::string>& subjects() const { return subjects_; }
  bool contains(const std::string& id) const;

  // Metadata and attributes; volumes and index tables too when `withVoxels`.
  SubjectData readSubject(const std::string& id, bool withVoxels = true);
  // (brain voxels, lesion voxels) from the subject's attributes, without reading voxels.
  std::pair<std::int64_t, std::int64_t> readCounts(const std::string& id);
  // patch_index [N, 4] and lesion_voxels [L, 3] (int32).
  std::pair<torch::Tensor, torch::Tensor> readIndex(const std::string& id);
  // The box [start, start + size) of every dataset; the box must lie inside the grid.
  PatchData readPatch(const std::string& id, const std::array<std::int64_t, 3>& start,
                      const std::array<std::int64_t, 3>& size);

 private:
  struct OpenSubject {
    std::string id;
    h5::Handle group, image, tissue, lesion;
  };
  OpenSubject& open(const std::string& id);
  std::string context(const std::string& id) const;

  std::string path_;
  std::size_t chunkCacheBytes_;
  h5::Handle file_;
  h5::Handle subjectsGroup_;
  ShardHeader header_;
  std::vector<std::string> subjects_;
  OpenSubject current_;  // datasets of the last subject read stay open: patches come in runs
};

// The shards of one store, each opened on first use and kept open, so a pass over a store's
// subjects opens every shard once. Not shared between threads, like ShardReader.
class StoreReader {
 public:
  explicit StoreReader(std::string storeDir) : dir_(std::move(storeDir)) {}

  ShardReader& shard(const std::string& file);  // relative to the store folder
  SubjectData readSubject(const SubjectEntry& entry) {
    return shard(entry.shard).readSubject(entry.id);
  }

 private:
  std::string dir_;
  std::map<std::string, std::unique_ptr<ShardReader>> shards_;
};

}  // namespace lddpm::data
