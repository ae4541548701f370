// Direct chunk reading: see DirectChunks.h and docs/store.md "Loader".
#include "data/DirectChunks.h"

#include <blosc.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/Error.h"
#include "data/StoreSchema.h"

namespace lddpm::data {
namespace {

// HDF5's shuffle filter stores byte j of element i at j * n + i; this puts it back.
void unshuffle(const unsigned char* in, unsigned char* out, std::size_t bytes,
               std::size_t elementSize) {
  const std::size_t n = bytes / elementSize;
  for (std::size_t j = 0; j < elementSize; ++j) {
    const unsigned char* plane = in + j * n;
    for (std::size_t i = 0; i < n; ++i) out[i * elementSize + j] = plane[i];
  }
  const std::size_t tail = n * elementSize;  // bytes beyond whole elements are stored as they are
  std::memcpy(out + tail, in + tail, bytes - tail);
}

}  // namespace

std::vector<std::int64_t> boxShape(const std::vector<hsize_t>& dims,
                                   const std::array<std::int64_t, 3>& start,
                                   const std::array<std::int64_t, 3>& size,
                                   const std::string& where) {
  const size_t lead = dims.size() - 3;  // 1 for [C, D, H, W], 0 for [D, H, W]
  std::vector<std::int64_t> shape;
  if (lead) shape.push_back(static_cast<std::int64_t>(dims[0]));
  for (size_t i = 0; i < 3; ++i) {
    if (start[i] < 0 || size[i] <= 0 || static_cast<hsize_t>(start[i] + size[i]) > dims[lead + i]) {
      throw core::IoError(
          where, core::strCat("box start ", start[i], " size ", size[i], " outside the grid (",
                              dims[lead + i], ") on axis ", i));
    }
    shape.push_back(size[i]);
  }
  return shape;
}

ShardFile::ShardFile(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) throw core::IoError(path, core::strCat("cannot open: ", std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd_, &st) != 0) {
    const int err = errno;
    ::close(fd_);
    throw core::IoError(path, core::strCat("cannot stat: ", std::strerror(err)));
  }
  size_ = static_cast<std::uint64_t>(st.st_size);
}

ShardFile::~ShardFile() {
  if (fd_ >= 0) ::close(fd_);
}

void ShardFile::readAt(std::uint64_t offset, void* out, std::size_t bytes,
                       const std::string& where) const {
  auto* p = static_cast<char*>(out);
  while (bytes > 0) {
    const ssize_t n = ::pread(fd_, p, bytes, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      throw core::IoError(where, n < 0 ? core::strCat("read failed: ", std::strerror(errno))
                                       : std::string("unexpected end of file (truncated shard?)"));
    }
    p += n;
    offset += static_cast<std::uint64_t>(n);
    bytes -= static_cast<std::size_t>(n);
  }
}

ChunkedDataset::ChunkedDataset(hid_t file, hid_t dataset, hid_t memType, std::string where)
    : where_(std::move(where)) {
  dims_ = h5::datasetShape(dataset, where_);
  h5::Handle dcpl =
      h5::check(H5Dget_create_plist(dataset), &H5Pclose, where_, "H5Dget_create_plist");
  if (H5Pget_layout(dcpl.get()) != H5D_CHUNKED) {
    why_ = "not chunked";
    return;
  }
  chunk_.resize(dims_.size());
  if (H5Pget_chunk(dcpl.get(), static_cast<int>(chunk_.size()), chunk_.data()) !=
      static_cast<int>(dims_.size())) {
    throw core::IoError(where_, "chunk rank differs from the dataset's rank");
  }
  h5::Handle type = h5::check(H5Dget_type(dataset), &H5Tclose, where_, "H5Dget_type");
  if (H5Tequal(type.get(), memType) <= 0) {
    why_ = "stored type differs from the native one";
    return;
  }
  elementSize_ = H5Tget_size(memType);
  chunkBytes_ = elementSize_;
  for (hsize_t c : chunk_) chunkBytes_ *= c;

  H5D_fill_value_t fill{};
  LDDPM_H5_CHECK(H5Pfill_value_defined(dcpl.get(), &fill), where_);
  if (fill == H5D_FILL_VALUE_USER_DEFINED) {
    why_ = "user-defined fill value";
    return;
  }
  h5::Handle fcpl = h5::check(H5Fget_create_plist(file), &H5Pclose, where_, "H5Fget_create_plist");
  hsize_t userblock = 0;
  LDDPM_H5_CHECK(H5Pget_userblock(fcpl.get(), &userblock), where_);
  if (userblock != 0) {
    why_ = "file has a user block";
    return;
  }

  std::vector<H5Z_filter_t> filters;
  const int n = H5Pget_nfilters(dcpl.get());
  for (int i = 0; i < n; ++i) {
    unsigned flags = 0;
    size_t cdCount = 0;
    filters.push_back(H5Pget_filter2(dcpl.get(), static_cast<unsigned>(i), &flags, &cdCount,
                                     nullptr, 0, nullptr, nullptr));
  }
  if (filters.empty()) {
    codec_ = Codec::Raw;
  } else if (filters == std::vector<H5Z_filter_t>{H5Z_FILTER_SHUFFLE, H5Z_FILTER_DEFLATE}) {
    codec_ = Codec::ShuffleDeflate;
  } else if (filters == std::vector<H5Z_filter_t>{kBloscFilter}) {
    codec_ = Codec::Blosc;
  } else {
    why_ = "filter pipeline this reader does not decode";
    return;
  }
  // Where every chunk is stored, once: reading a box makes no HDF5 call afterwards, so loader
  // workers do not queue at HDF5's global lock for it (docs/store.md "Loader semantics").
  const std::size_t rank = dims_.size();
  grid_.resize(rank);
  std::size_t count = 1;
  for (std::size_t a = 0; a < rank; ++a) {
    grid_[a] = (dims_[a] + chunk_[a] - 1) / chunk_[a];
    count *= grid_[a];
  }
  table_.resize(count);
  std::vector<hsize_t> index(rank, 0);
  Located c;  // the chunk being looked up (its offset names it in errors)
  c.offset.resize(rank);
  for (ChunkEntry& entry : table_) {
    for (std::size_t a = 0; a < rank; ++a) c.offset[a] = index[a] * chunk_[a];
    LDDPM_H5_CHECK(H5Dget_chunk_info_by_coord(dataset, c.offset.data(), &entry.filterMask,
                                              &entry.address, &entry.bytes),
                   chunkName(where_, c));
    for (std::size_t a = rank; a-- > 0;) {  // the next chunk, last axis fastest
      if (++index[a] < grid_[a]) break;
      index[a] = 0;
    }
  }
}

bool ChunkedDataset::sameLayout(const ChunkedDataset& other) const {
  return direct() && other.direct() && dims_ == other.dims_ && chunk_ == other.chunk_ &&
         elementSize_ == other.elementSize_ && codec_ == other.codec_;
}

std::string ChunkedDataset::chunkName(const std::string& where, const Located& chunk) const {
  std::string s = where + " chunk at (";
  for (std::size_t a = 0; a < chunk.offset.size(); ++a) {
    s += (a ? "," : "") + std::to_string(chunk.offset[a]);
  }
  return s + ")";
}

std::vector<ChunkedDataset::Located> ChunkedDataset::locate(const ChunkEntry* table,
                                                            const std::vector<hsize_t>& lo,
                                                            const std::vector<hsize_t>& hi) const {
  const std::size_t rank = dims_.size();
  std::vector<hsize_t> first(rank), last(rank);
  for (std::size_t a = 0; a < rank; ++a) {
    first[a] = lo[a] / chunk_[a];
    last[a] = (hi[a] - 1) / chunk_[a];
  }
  std::vector<Located> out;
  std::vector<hsize_t> index = first;
  for (;;) {
    Located c;
    c.offset.resize(rank);
    std::size_t linear = 0;
    for (std::size_t a = 0; a < rank; ++a) {
      c.offset[a] = index[a] * chunk_[a];
      linear = linear * grid_[a] + index[a];
    }
    c.entry = table[linear];
    out.push_back(std::move(c));
    std::size_t a = rank;  // odometer over the chunk grid, last axis fastest
    while (a > 0) {
      --a;
      if (++index[a] <= last[a]) break;
      index[a] = first[a];
      if (a == 0) return out;
    }
  }
}

const unsigned char* ChunkedDataset::decode(const ShardFile& file, const Located& chunk,
                                            std::size_t first, std::size_t last,
                                            const std::string& where, ChunkScratch& s) const {
  if (chunk.entry.bytes == 0 || chunk.entry.address == HADDR_UNDEF)
    return nullptr;  // never written: fill
  if (chunk.entry.address > file.size() || chunk.entry.bytes > file.size() - chunk.entry.address) {
    throw core::IoError(file.path(),
                        core::strCat(chunkName(where, chunk), " (", chunk.entry.bytes, " bytes at ",
                                     chunk.entry.address, ") lies beyond the end of the file (",
                                     file.size(), " bytes; truncated shard?)"));
  }
  s.decoded.resize(chunkBytes_);
  auto bad = [&](const std::string& why) {
    return core::IoError(file.path(), chunkName(where, chunk) + ": " + why + " (corrupt shard?)");
  };
  if (codec_ == Codec::Raw) {
    if (chunk.entry.bytes != chunkBytes_) {
      throw bad(core::strCat("stored ", chunk.entry.bytes, " bytes, expected ", chunkBytes_));
    }
    const std::size_t from = first * elementSize_, bytes = (last + 1 - first) * elementSize_;
    file.readAt(chunk.entry.address + from, s.decoded.data() + from, bytes,
                chunkName(where, chunk));
    return s.decoded.data();
  }
  s.stored.resize(chunk.entry.bytes);
  file.readAt(chunk.entry.address, s.stored.data(), chunk.entry.bytes, chunkName(where, chunk));
  if (codec_ == Codec::Blosc) {
    std::size_t nbytes = 0;
    if (blosc_cbuffer_validate(s.stored.data(), s.stored.size(), &nbytes) != 0 ||
        nbytes != chunkBytes_ ||
        blosc_decompress_ctx(s.stored.data(), s.decoded.data(), chunkBytes_, 1) !=
            static_cast<int>(chunkBytes_)) {
      throw bad("blosc cannot decode it to its " + std::to_string(chunkBytes_) + " bytes");
    }
    return s.decoded.data();
  }
  // Shuffle (filter 0) then deflate (filter 1) on writing; either may have been skipped.
  const bool shuffled = !(chunk.entry.filterMask & 1u), deflated = !(chunk.entry.filterMask & 2u);
  const unsigned char* bytes = s.stored.data();
  std::size_t length = s.stored.size();
  if (deflated) {
    s.unshuffled.resize(chunkBytes_);  // inflate into the spare buffer
    uLongf out = static_cast<uLongf>(chunkBytes_);
    if (::uncompress(s.unshuffled.data(), &out, bytes, static_cast<uLong>(length)) != Z_OK ||
        out != chunkBytes_) {
      throw bad("zlib cannot inflate it to its " + std::to_string(chunkBytes_) + " bytes");
    }
    bytes = s.unshuffled.data();
    length = chunkBytes_;
  }
  if (length != chunkBytes_) {
    throw bad(core::strCat("stored ", length, " bytes, expected ", chunkBytes_));
  }
  if (shuffled && elementSize_ > 1) {
    unshuffle(bytes, s.decoded.data(), chunkBytes_, elementSize_);
  } else {
    std::memcpy(s.decoded.data(), bytes, chunkBytes_);
  }
  return s.decoded.data();
}

void ChunkedDataset::readBox(const ShardFile& file, const std::array<std::int64_t, 3>& start,
                             const std::array<std::int64_t, 3>& size, void* out,
                             ChunkScratch& scratch) const {
  readBox(file, table_.data(), where_, start, size, out, scratch);
}

void ChunkedDataset::readBox(const ShardFile& file, const ChunkEntry* table,
                             const std::string& where, const std::array<std::int64_t, 3>& start,
                             const std::array<std::int64_t, 3>& size, void* out,
                             ChunkScratch& scratch) const {
  LDDPM_CHECK(direct(), where, ": direct read of a dataset that is ", why_);
  boxShape(dims_, start, size, where);  // IoError unless the box lies inside the grid
  const std::size_t rank = dims_.size(), lead = rank - 3;
  std::vector<hsize_t> lo(rank, 0), hi(dims_);
  for (std::size_t i = 0; i < 3; ++i) {
    lo[lead + i] = static_cast<hsize_t>(start[i]);
    hi[lead + i] = static_cast<hsize_t>(start[i] + size[i]);
  }
  // Element strides of the box (the output) and of a chunk, C order.
  std::vector<std::size_t> boxStride(rank, 1), chunkStride(rank, 1);
  for (std::size_t a = rank - 1; a > 0; --a) {
    boxStride[a - 1] = boxStride[a] * (hi[a] - lo[a]);
    chunkStride[a - 1] = chunkStride[a] * chunk_[a];
  }
  auto* dst = static_cast<unsigned char*>(out);
  const std::size_t e = elementSize_;
  for (const Located& chunk : locate(table, lo, hi)) {
    // The part of the box inside this chunk, [a0, a1), and the span of the chunk that holds it.
    std::vector<hsize_t> a0(rank), a1(rank);
    std::size_t first = 0, last = 0;
    for (std::size_t a = 0; a < rank; ++a) {
      a0[a] = std::max(lo[a], chunk.offset[a]);
      a1[a] = std::min(hi[a], chunk.offset[a] + chunk_[a]);
      first += (a0[a] - chunk.offset[a]) * chunkStride[a];
      last += (a1[a] - 1 - chunk.offset[a]) * chunkStride[a];
    }
    const unsigned char* src = decode(file, chunk, first, last, where, scratch);
    // Copied one plane (every axis fixed but the last two) at a time, its rows by pointer
    // strides; the planes by an odometer that moves both offsets by whole strides. No per-row
    // index arithmetic: a mask's rows are 32 bytes.
    const std::size_t run = (a1[rank - 1] - a0[rank - 1]) * e;
    const std::size_t rows = a1[rank - 2] - a0[rank - 2];
    const std::size_t toRow = boxStride[rank - 2] * e, fromRow = chunkStride[rank - 2] * e;
    std::size_t to = 0, from = 0;  // bytes, of the plane's first row in the box and the chunk
    for (std::size_t a = 0; a < rank; ++a) {
      to += (a0[a] - lo[a]) * boxStride[a] * e;
      from += (a0[a] - chunk.offset[a]) * chunkStride[a] * e;
    }
    std::vector<hsize_t> t(a0.begin(), a0.end() - 2);  // the plane's index on the plane axes
    for (bool more = true; more;) {
      unsigned char* d = dst + to;
      if (src) {
        const unsigned char* f = src + from;
        for (std::size_t r = 0; r < rows; ++r, d += toRow, f += fromRow) std::memcpy(d, f, run);
      } else {
        for (std::size_t r = 0; r < rows; ++r, d += toRow) std::memset(d, 0, run);  // fill: 0
      }
      more = false;
      for (std::size_t a = t.size(); a-- > 0;) {  // next plane, last plane axis fastest
        if (++t[a] < a1[a]) {
          to += boxStride[a] * e;
          from += chunkStride[a] * e;
          more = true;
          break;
        }
        to -= (a1[a] - 1 - a0[a]) * boxStride[a] * e;  // back to the axis' first index
        from -= (a1[a] - 1 - a0[a]) * chunkStride[a] * e;
        t[a] = a0[a];
      }
    }
  }
}

}  // namespace lddpm::data
