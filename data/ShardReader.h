#pragma once
// Reads one shard file: header, subject list, whole subjects, and patches (only the chunks a patch
// touches are read). Patches are read directly (DirectChunks.h: HDF5 locates the chunks, this
// reader's thread reads, decodes and places them outside HDF5's global lock) unless a dataset is
// stored in a way that path does not decode, or `directReads` is off; then through H5Dread. Every
// error names the file and the object inside it. Not shared between threads: each loader worker
// opens its own reader.
#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "data/DirectChunks.h"
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
  // `directReads` false reads every patch through H5Dread (the reference the tests and the loader
  // benchmark compare the direct path with).
  // `tableBytes` bounds the chunk tables kept for direct reads (below): at least one subject's.
  static constexpr std::size_t kDefaultChunkCacheBytes = 8u << 20;
  static constexpr std::size_t kDefaultTableBytes = 64u << 20;
  explicit ShardReader(std::string path, std::size_t chunkCacheBytes = kDefaultChunkCacheBytes,
                       bool directReads = true, std::size_t tableBytes = kDefaultTableBytes);

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
  // The same tables a row at a time, for a loader: it needs one row per patch, and a worker that
  // kept every subject's tables would hold KBs to MBs per subject (docs/store.md "Loader").
  enum class IndexTable { PatchIndex = 0, LesionVoxels = 1 };
  // N and L, from the datasets' shapes; kept per subject with where each table lies (32 bytes).
  std::array<std::int64_t, 2> indexRows(const std::string& id);
  // (z, y, x) of row `row` of one table: read from the file (12 bytes) when the table is stored
  // contiguous in the native int32 (as the store writes it; with `directReads`), else by H5Dread.
  std::array<std::int32_t, 3> readIndexRow(const std::string& id, IndexTable table,
                                           std::int64_t row);
  // The box [start, start + size) of every dataset; the box must lie inside the grid.
  PatchData readPatch(const std::string& id, const std::array<std::int64_t, 3>& start,
                      const std::array<std::int64_t, 3>& size);
  // The same into tensors the caller allocated (contiguous, [C, d, h, w] float32 and [d, h, w]
  // uint8; e.g. slices of a batch), so a batch is assembled without a further copy.
  void readPatchInto(const std::string& id, const std::array<std::int64_t, 3>& start,
                     const std::array<std::int64_t, 3>& size, PatchData& out);
  // Whether the subject's datasets are read by the direct path (tests, the benchmark).
  bool readsDirectly(const std::string& id);
  // Whether the subject's chunk tables are kept now, and the bytes of the block that holds them.
  bool keepsTables(const std::string& id) const { return tableAt_[indexOf(id)] >= 0; }
  std::size_t keptTableBytes() const { return tables_.capacity() * sizeof(ChunkEntry); }

 private:
  struct OpenDataset {
    h5::Handle handle;
    std::shared_ptr<const ChunkedDataset> layout;  // set when read directly
    std::vector<hsize_t> dims;
    std::string where;
  };
  struct OpenSubject {
    std::string id;
    h5::Handle group;
    OpenDataset image, tissue, lesion;
  };
  // Where one index table lies: its rows (-1 until known) and, when read from the file directly,
  // the file offset of its first row.
  struct IndexAt {
    std::int64_t rows = -1;
    haddr_t address = HADDR_UNDEF;
  };
  std::size_t indexOf(const std::string& id) const;  // in subjects_; IoError when absent
  const std::array<IndexAt, 2>& indexAt(std::size_t i);
  OpenSubject& open(const std::string& id);
  OpenDataset openDataset(const std::string& id, const char* name, hid_t memType, hid_t dapl);
  void readBox(const OpenDataset& d, hid_t memType, const std::array<std::int64_t, 3>& start,
               const std::array<std::int64_t, 3>& size, const torch::Tensor& out);
  // Keeps subject i's chunk tables when its datasets are read directly with the shard's layouts;
  // false otherwise (the subject is then read through its open datasets).
  bool keepTables(std::size_t i, const OpenSubject& o);
  void readKnown(std::size_t i, const std::array<std::int64_t, 3>& start,
                 const std::array<std::int64_t, 3>& size, PatchData& out);
  std::string context(const std::string& id) const;

  std::string path_;
  std::size_t chunkCacheBytes_;
  bool directReads_;
  h5::Handle file_;
  std::unique_ptr<ShardFile> raw_;  // the same file for pread (direct reads)
  ChunkScratch scratch_;
  h5::Handle subjectsGroup_;
  ShardHeader header_;
  std::vector<std::string> subjects_;
  OpenSubject current_;  // datasets of the last subject read stay open: patches come in runs
  // The chunk tables of the subjects read directly most recently (DirectChunks.h: where each chunk
  // of its image, tissue and lesion is stored; 24 bytes per chunk, 18 KB for a 192x224x192 scan
  // in 32^3 chunks), so a patch of a subject seen before is read with no HDF5 call and without
  // reopening it. A loader draws each patch from a random subject, and reopening it (and
  // returning HDF5's free lists) under HDF5's global lock for every patch: without it a loader
  // reads 11-46 % more patches per second (docs/BENCHMARKS.md "Data"). The subjects of a store
  // share one grid, so one layout per dataset (the first subject's) reads them all, and the tables
  // lie in one block of slots, sized when the first is kept: objects kept one per subject,
  // allocated between HDF5's transient buffers, fragmented the heap (+47 MB peak at 64 subjects,
  // same bytes in use). The block holds every subject of the shard or, when that is over
  // `tableBytes`, as many as fit; a subject then takes the least recently read one's slot, so
  // memory stays bounded however many subjects a shard holds.
  std::array<std::shared_ptr<const ChunkedDataset>, 3> layouts_;  // image, tissue, lesion
  std::size_t tableBytes_;
  std::size_t perSubject_ = 0;           // chunk entries per subject: one slot
  std::size_t slots_ = 0;                // slots the block holds
  std::vector<ChunkEntry> tables_;       // the slots, one after another
  std::vector<std::int64_t> tableAt_;    // per subject (index in subjects_): its slot, or -1
  std::vector<std::int64_t> slotOwner_;  // per slot in use: the subject in it
  std::vector<std::uint64_t> slotUsed_;  // per slot: when it was last read (useTick_)
  std::uint64_t useTick_ = 0;
  std::vector<std::array<IndexAt, 2>> indexAt_;  // per subject: patch_index, lesion_voxels
};

// The shards of one store, each opened on first use and kept open, so a pass over a store's
// subjects opens every shard once. Not shared between threads, like ShardReader.
class StoreReader {
 public:
  explicit StoreReader(std::string storeDir, bool directReads = true)
      : dir_(std::move(storeDir)), directReads_(directReads) {}

  ShardReader& shard(const std::string& file);  // relative to the store folder
  SubjectData readSubject(const SubjectEntry& entry) {
    return shard(entry.shard).readSubject(entry.id);
  }

 private:
  std::string dir_;
  bool directReads_;
  std::map<std::string, std::unique_ptr<ShardReader>> shards_;
};

}  // namespace lddpm::data
