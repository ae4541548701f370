#pragma once
// Direct chunk reading: a box of a chunked HDF5 dataset read without HDF5 copying the voxels.
// HDF5 is asked only where each chunk lies in the file (H5Dget_chunk_info_by_coord), once per
// chunk when the dataset is inspected: reading a box makes no HDF5 call. Reading the bytes (pread),
// decoding them (blosc for lz4/zstd stores, zlib + unshuffle for deflate ones) and copying each
// row of the box into place happen outside HDF5, whose thread-safe build serialises every API call
// behind one global lock: loader workers read and decode in parallel (docs/store.md "Loader").
// A dataset stored any other way (a filter pipeline this code does not decode, a non-native type,
// a user-defined fill value, a user block) reports !direct() and the caller reads it with H5Dread.
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "data/Hdf5.h"

namespace lddpm::data {

// The shape of the box [start, start + size) of the last three axes of a 3-D or 4-D dataset of
// `dims` (with all of a leading channel axis); IoError naming `where` when the box is not inside
// the grid.
std::vector<std::int64_t> boxShape(const std::vector<hsize_t>& dims,
                                   const std::array<std::int64_t, 3>& start,
                                   const std::array<std::int64_t, 3>& size,
                                   const std::string& where);

// A read-only file descriptor of the shard, shared by the datasets of one reader (pread only, so
// no shared file offset). Closes on destruction.
class ShardFile {
 public:
  explicit ShardFile(const std::string& path);
  ~ShardFile();
  ShardFile(const ShardFile&) = delete;
  ShardFile& operator=(const ShardFile&) = delete;

  const std::string& path() const { return path_; }
  std::uint64_t size() const { return size_; }
  // Reads exactly `bytes` at `offset`; IoError naming `where` on a short read or an error.
  void readAt(std::uint64_t offset, void* out, std::size_t bytes, const std::string& where) const;

 private:
  std::string path_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
};

// One chunk's entry of HDF5's chunk index: where it is stored, and how.
struct ChunkEntry {
  haddr_t address = HADDR_UNDEF;
  hsize_t bytes = 0;        // stored size; 0: never written (fill value)
  unsigned filterMask = 0;  // bit i set: filter i of the pipeline was skipped
};

// Scratch buffers of one reading thread, reused from chunk to chunk.
struct ChunkScratch {
  std::vector<unsigned char> stored, decoded, unshuffled;
};

class ChunkedDataset {
 public:
  enum class Codec { Raw, ShuffleDeflate, Blosc };

  // Inspects `dataset` of `file`: layout, chunk shape, element type against `memType`, filter
  // pipeline, fill value, user block; when direct(), also reads its chunk table (24 bytes per
  // chunk). Neither handle is used afterwards: reading needs only the ShardFile.
  ChunkedDataset(hid_t file, hid_t dataset, hid_t memType, std::string where);

  bool direct() const { return why_.empty(); }
  const std::string& whyNotDirect() const { return why_; }  // empty when direct()
  Codec codec() const { return codec_; }
  const std::vector<hsize_t>& dims() const { return dims_; }
  // Where each chunk is stored, C order over the chunk grid (empty unless direct()).
  const std::vector<ChunkEntry>& table() const { return table_; }
  // The same grid, chunk shape, element type and codec: a table of `other`'s reads with this
  // layout (readBox below), so a store's subjects can share one layout and keep only tables.
  bool sameLayout(const ChunkedDataset& other) const;

  // Reads the box [start, start + size) of the last three axes, all of any leading axis (the
  // channels of [C, D, H, W]), into `out`: contiguous, leading dims then `size`. Only direct().
  // Errors (a chunk beyond the end of the file, a chunk that does not decode to its size) are
  // IoError naming the dataset and the chunk.
  void readBox(const ShardFile& file, const std::array<std::int64_t, 3>& start,
               const std::array<std::int64_t, 3>& size, void* out, ChunkScratch& scratch) const;
  // The same for a dataset of sameLayout() whose table() is `table` (table().size() entries),
  // named `where` in errors.
  void readBox(const ShardFile& file, const ChunkEntry* table, const std::string& where,
               const std::array<std::int64_t, 3>& start, const std::array<std::int64_t, 3>& size,
               void* out, ChunkScratch& scratch) const;

 private:
  struct Located {
    std::vector<hsize_t> offset;  // first element of the chunk, per axis
    ChunkEntry entry;
  };
  // The chunks the box [lo, hi) touches, with their entries in `table`.
  std::vector<Located> locate(const ChunkEntry* table, const std::vector<hsize_t>& lo,
                              const std::vector<hsize_t>& hi) const;
  // The rest, without HDF5: the chunk's voxels, decoded, in scratch.decoded (or nullptr: fill).
  // An uncompressed chunk is read only over [first, last] (element offsets in the chunk): the
  // span that holds the part of the box inside it.
  const unsigned char* decode(const ShardFile& file, const Located& chunk, std::size_t first,
                              std::size_t last, const std::string& where,
                              ChunkScratch& scratch) const;
  std::string chunkName(const std::string& where, const Located& chunk) const;

  std::string where_, why_;
  Codec codec_ = Codec::Raw;
  std::vector<hsize_t> dims_, chunk_, grid_;  // grid_: chunks per axis
  std::size_t elementSize_ = 0, chunkBytes_ = 0;
  std::vector<ChunkEntry> table_;
};

}  // namespace lddpm::data
