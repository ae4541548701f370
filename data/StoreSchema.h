#pragma once
// The HDF5 store format (version 1), in one place: names of groups, datasets and attributes,
// storage options, and the in-memory form of one preprocessed subject. docs/store.md describes the
// same schema for people; change both together and bump kStoreFormatVersion on any change.
#include <torch/torch.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "data/Volume.h"

namespace lddpm::data {

inline constexpr const char* kStoreFormat = "lddpm-store";
inline constexpr std::int64_t kStoreFormatVersion = 1;
inline constexpr const char* kManifestFile = "manifest.json";
inline constexpr const char* kSubjectsGroup = "subjects";

// Tissue labels in the `tissue` dataset (3-class k-means of T1 inside the brain, sorted by mean).
enum TissueLabel : std::uint8_t { kBackground = 0, kCsf = 1, kGreyMatter = 2, kWhiteMatter = 3 };

// "shard-00003.h5": one file per writing rank.
std::string shardFileName(int shardIndex);

enum class Compression { None, Deflate, Lz4, Zstd };
// HDF5 filter id of blosc, registered with The HDF Group: the filter of lz4/zstd shards (Debian's
// hdf5-filter-plugin-blosc-serial writes them; the loader decodes them with libblosc itself).
inline constexpr int kBloscFilter = 32001;
Compression parseCompression(const std::string& name);  // UsageError naming --compression
std::string compressionName(Compression compression);

struct StorageOptions {
  Compression compression = Compression::None;
  int chunk =
      32;  // chunk edge in voxels (clipped to the grid); 32^3 won the read test of docs/facts.md
};

// One preprocessed subject, as written to and read back from a shard. All volumes share the
// canonical grid [D, H, W].
struct SubjectData {
  std::string id;                     // "P1_T1" (train) or "P60" (test): unique in a store
  std::string split;                  // "train" | "test"
  std::string patient;                // "P1"
  std::string timepoint;              // "T1", empty for test scans
  std::vector<std::string> channels;  // e.g. {"FLAIR"}; names image's C axis

  torch::Tensor image;         // [C, D, H, W] float32, in [-1, 1], -1 outside the brain
  torch::Tensor tissue;        // [D, H, W] uint8, TissueLabel
  torch::Tensor lesion;        // [D, H, W] uint8, 0/1
  torch::Tensor patchIndex;    // [N, 4] int32: (z, y, x, lesion voxels in the window) on a grid
  torch::Tensor lesionVoxels;  // [L, 3] int32: (z, y, x) of every lesion voxel

  Affine affine{};                            // canonical grid voxel -> world
  std::array<double, 3> spacing{1, 1, 1};     // mm along x, y, z
  std::array<std::int64_t, 3> sourceShape{};  // (nz, ny, nx) of the input NIfTI
  std::array<std::int64_t, 3> cropOffset{};   // grid voxel 0 = (downsampled) source voxel offset
  std::int64_t downsample = 1;
  std::int64_t indexStride = 8;   // patch-index grid step
  std::int64_t indexWindow = 32;  // edge of the cube whose lesion voxels a patch-index row counts
  std::vector<double> normMean;   // per channel: brain mean and std before normalisation
  std::vector<double> normStd;
  std::array<double, 3> tissueMeans{};  // T1 mean of CSF, GM, WM (k-means centres)

  std::int64_t brainVoxels() const;  // tissue > 0
  std::int64_t lesionCount() const;  // lesion voxels
};

}  // namespace lddpm::data
