// Shard reading: see ShardReader.h and docs/store.md.
#include "data/ShardReader.h"

#include <algorithm>
#include <filesystem>

#include "core/Text.h"

namespace lddpm::data {
namespace {

template <size_t N, typename T>
std::array<T, N> toArray(const std::vector<T>& v, const std::string& context, const char* name) {
  if (v.size() != N)
    throw core::IoError(context, std::string("attribute '") + name + "' has the wrong length");
  std::array<T, N> out{};
  std::copy(v.begin(), v.end(), out.begin());
  return out;
}

// Reads the hyperslab [offset, offset + count) of `dataset` through HDF5 (H5Dread) into `out`
// (contiguous, count's shape).
void readSlab(hid_t dataset, hid_t memType, const std::vector<hsize_t>& offset,
              const std::vector<hsize_t>& count, void* out, const std::string& where) {
  h5::Handle fileSpace = h5::check(H5Dget_space(dataset), &H5Sclose, where, "H5Dget_space");
  LDDPM_H5_CHECK(H5Sselect_hyperslab(fileSpace.get(), H5S_SELECT_SET, offset.data(), nullptr,
                                     count.data(), nullptr),
                 where);
  h5::Handle memSpace =
      h5::check(H5Screate_simple(static_cast<int>(count.size()), count.data(), nullptr), &H5Sclose,
                where, "H5Screate_simple");
  LDDPM_H5_CHECK(H5Dread(dataset, memType, memSpace.get(), fileSpace.get(), H5P_DEFAULT, out),
                 where);
}

// Reads a box through HDF5 into `out` (contiguous, boxShape's shape).
void readBoxHdf5(hid_t dataset, hid_t memType, const std::array<std::int64_t, 3>& start,
                 const std::array<std::int64_t, 3>& size, void* out, const std::string& where) {
  std::vector<hsize_t> dims = h5::datasetShape(dataset, where);
  const std::vector<std::int64_t> shape = boxShape(dims, start, size, where);
  const size_t lead = dims.size() - 3;
  std::vector<hsize_t> offset(dims.size(), 0), count(shape.begin(), shape.end());
  for (size_t i = 0; i < 3; ++i) offset[lead + i] = static_cast<hsize_t>(start[i]);
  readSlab(dataset, memType, offset, count, out, where);
}

// The two index tables, in ShardReader::IndexTable's order: dataset name and columns (int32).
struct IndexTableSchema {
  const char* name;
  hsize_t columns;
};
constexpr IndexTableSchema kIndexTables[2] = {{"patch_index", 4}, {"lesion_voxels", 3}};

torch::Tensor readWhole(hid_t group, const std::string& name, torch::ScalarType dtype,
                        hid_t memType, const std::string& context) {
  h5::Handle d = h5::openDataset(group, name, context);
  const std::vector<hsize_t> dims = h5::datasetShape(d.get(), context + "/" + name);
  torch::Tensor out = torch::empty(std::vector<std::int64_t>(dims.begin(), dims.end()),
                                   torch::TensorOptions().dtype(dtype));
  if (out.numel() > 0) {
    LDDPM_H5_CHECK(H5Dread(d.get(), memType, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data_ptr()),
                   context + "/" + name);
  }
  return out;
}

// IoError unless the box lies inside `dims`; an error naming `where` unless `out` is the box's
// contiguous buffer.
void checkPatchBuffer(const std::vector<hsize_t>& dims, const std::string& where,
                      const std::array<std::int64_t, 3>& start,
                      const std::array<std::int64_t, 3>& size, const torch::Tensor& out) {
  const std::vector<std::int64_t> shape = boxShape(dims, start, size, where);
  LDDPM_CHECK(out.is_contiguous() && out.sizes().vec() == shape, where, ": patch buffer of shape ",
              out.sizes(), ", expected ", torch::IntArrayRef(shape));
}

}  // namespace

ShardReader::ShardReader(std::string path, std::size_t chunkCacheBytes, bool directReads,
                         std::size_t tableBytes)
    : path_(std::move(path)),
      chunkCacheBytes_(chunkCacheBytes),
      directReads_(directReads),
      tableBytes_(tableBytes) {
  file_ = h5::openFile(path_);
  const hid_t root = file_.get();
  const std::string format = h5::readStringAttr(root, "format", path_);
  if (format != kStoreFormat) {
    throw core::IoError(path_, "not an lddpm store shard (format '" + format + "')");
  }
  const std::int64_t version = h5::readIntAttr(root, "format_version", path_);
  if (version != kStoreFormatVersion) {
    throw core::IoError(path_, core::strCat("store format version ", version,
                                            "; this build reads version ", kStoreFormatVersion));
  }
  header_.shardIndex = static_cast<int>(h5::readIntAttr(root, "shard_index", path_));
  header_.parameters = h5::readStringAttr(root, "parameters", path_);
  header_.channels = core::splitString(h5::readStringAttr(root, "channels", path_), ',');
  header_.grid = toArray<3>(h5::readIntsAttr(root, "grid", path_), path_, "grid");
  subjectsGroup_ = h5::openGroup(root, kSubjectsGroup, path_);
  subjects_ = h5::listGroup(subjectsGroup_.get(), path_ + ":/" + kSubjectsGroup);
  const std::int64_t expected = h5::readIntAttr(root, "subject_count", path_);
  if (expected != static_cast<std::int64_t>(subjects_.size())) {
    throw core::IoError(
        path_, core::strCat("holds ", subjects_.size(), " subjects but its header says ", expected,
                            " (incomplete shard)"));
  }
  if (directReads_) raw_ = std::make_unique<ShardFile>(path_);
  tableAt_.assign(subjects_.size(), -1);
  indexAt_.resize(subjects_.size());
}

bool ShardReader::contains(const std::string& id) const {
  return std::binary_search(subjects_.begin(), subjects_.end(), id);
}

std::size_t ShardReader::indexOf(const std::string& id) const {
  const auto it = std::lower_bound(subjects_.begin(), subjects_.end(), id);
  if (it == subjects_.end() || *it != id)
    throw core::IoError(path_, "no subject '" + id + "' in this shard");
  return static_cast<std::size_t>(it - subjects_.begin());
}

std::string ShardReader::context(const std::string& id) const {
  return path_ + ":/" + kSubjectsGroup + "/" + id;
}

ShardReader::OpenSubject& ShardReader::open(const std::string& id) {
  if (current_.id == id && current_.group.valid()) return current_;
  indexOf(id);  // IoError unless the shard holds the subject
  const std::string where = context(id);
  current_ = OpenSubject{};
  // HDF5 keeps freed chunk-cache and metadata buffers on internal free lists that never shrink
  // on their own: a loader visiting 64 subjects grew ~2.5 MB per subject (LoaderBench peak RSS
  // 194 -> 333 MB). Returning them when a subject's datasets close keeps memory flat
  // (H5set_free_list_limits did not).
  H5garbage_collect();
  current_.group = h5::openGroup(subjectsGroup_.get(), id, path_ + ":/" + kSubjectsGroup);
  // A chunk cache large enough for every chunk a patch touches, so no chunk is decompressed
  // twice within one read (HDF5's default is 1 MiB).
  h5::Handle dapl = h5::check(H5Pcreate(H5P_DATASET_ACCESS), &H5Pclose, where, "H5Pcreate");
  LDDPM_H5_CHECK(H5Pset_chunk_cache(dapl.get(), 1021, chunkCacheBytes_, 1.0), where);
  current_.image = openDataset(id, "image", H5T_NATIVE_FLOAT, dapl.get());
  current_.tissue = openDataset(id, "tissue", H5T_NATIVE_UINT8, dapl.get());
  current_.lesion = openDataset(id, "lesion", H5T_NATIVE_UINT8, dapl.get());
  current_.id = id;
  return current_;
}

ShardReader::OpenDataset ShardReader::openDataset(const std::string& id, const char* name,
                                                  hid_t memType, hid_t dapl) {
  OpenDataset d;
  d.where = context(id) + "/" + name;
  d.handle = h5::openDataset(current_.group.get(), name, context(id), dapl);
  d.dims = h5::datasetShape(d.handle.get(), d.where);
  if (directReads_) {
    auto layout =
        std::make_shared<const ChunkedDataset>(file_.get(), d.handle.get(), memType, d.where);
    if (layout->direct()) d.layout = std::move(layout);
  }
  return d;
}

void ShardReader::readBox(const OpenDataset& d, hid_t memType,
                          const std::array<std::int64_t, 3>& start,
                          const std::array<std::int64_t, 3>& size, const torch::Tensor& out) {
  checkPatchBuffer(d.dims, d.where, start, size, out);
  if (d.layout) {
    d.layout->readBox(*raw_, start, size, out.data_ptr(), scratch_);
  } else {
    readBoxHdf5(d.handle.get(), memType, start, size, out.data_ptr(), d.where);
  }
}

bool ShardReader::readsDirectly(const std::string& id) {
  const OpenSubject& o = open(id);
  return o.image.layout && o.tissue.layout && o.lesion.layout;
}

SubjectData ShardReader::readSubject(const std::string& id, bool withVoxels) {
  OpenSubject& o = open(id);
  const std::string where = context(id);
  const hid_t a = o.group.get();
  SubjectData s;
  s.id = id;
  s.channels = header_.channels;
  s.split = h5::readStringAttr(a, "split", where);
  s.patient = h5::readStringAttr(a, "patient", where);
  s.timepoint = h5::readStringAttr(a, "timepoint", where);
  s.affine = toArray<16>(h5::readDoublesAttr(a, "affine", where), where, "affine");
  s.spacing = toArray<3>(h5::readDoublesAttr(a, "spacing", where), where, "spacing");
  s.sourceShape = toArray<3>(h5::readIntsAttr(a, "source_shape", where), where, "source_shape");
  s.cropOffset = toArray<3>(h5::readIntsAttr(a, "crop_offset", where), where, "crop_offset");
  s.downsample = h5::readIntAttr(a, "downsample", where);
  s.indexStride = h5::readIntAttr(a, "index_stride", where);
  s.indexWindow = h5::readIntAttr(a, "index_window", where);
  s.normMean = h5::readDoublesAttr(a, "norm_mean", where);
  s.normStd = h5::readDoublesAttr(a, "norm_std", where);
  s.tissueMeans = toArray<3>(h5::readDoublesAttr(a, "tissue_means", where), where, "tissue_means");
  if (withVoxels) {
    const auto& g = header_.grid;
    PatchData all = readPatch(id, {0, 0, 0}, g);
    s.image = all.image;
    s.tissue = all.tissue;
    s.lesion = all.lesion;
    std::tie(s.patchIndex, s.lesionVoxels) = readIndex(id);
  }
  return s;
}

std::pair<std::int64_t, std::int64_t> ShardReader::readCounts(const std::string& id) {
  OpenSubject& o = open(id);
  return {h5::readIntAttr(o.group.get(), "brain_voxels", context(id)),
          h5::readIntAttr(o.group.get(), "lesion_voxel_count", context(id))};
}

std::pair<torch::Tensor, torch::Tensor> ShardReader::readIndex(const std::string& id) {
  OpenSubject& o = open(id);
  const std::string where = context(id);
  torch::Tensor index =
      readWhole(o.group.get(), "patch_index", torch::kInt32, H5T_NATIVE_INT32, where);
  torch::Tensor lesions =
      readWhole(o.group.get(), "lesion_voxels", torch::kInt32, H5T_NATIVE_INT32, where);
  if (index.dim() != 2 || index.size(1) != 4 || lesions.dim() != 2 || lesions.size(1) != 3) {
    throw core::IoError(where, "patch_index must be [N, 4] and lesion_voxels [L, 3]");
  }
  return {index, lesions};
}

const std::array<ShardReader::IndexAt, 2>& ShardReader::indexAt(std::size_t i) {
  std::array<IndexAt, 2>& at = indexAt_[i];
  if (at[0].rows >= 0) return at;
  const OpenSubject& o = open(subjects_[i]);
  for (std::size_t k = 0; k < 2; ++k) {
    const IndexTableSchema& schema = kIndexTables[k];
    const std::string where = context(subjects_[i]) + "/" + schema.name;
    const h5::Handle d = h5::openDataset(o.group.get(), schema.name, context(subjects_[i]));
    const std::vector<hsize_t> dims = h5::datasetShape(d.get(), where);
    if (dims.size() != 2 || dims[1] != schema.columns) {
      throw core::IoError(where, core::strCat("must be [rows, ", schema.columns, "] int32"));
    }
    at[k].rows = static_cast<std::int64_t>(dims[0]);
    const h5::Handle type = h5::check(H5Dget_type(d.get()), &H5Tclose, where, "H5Dget_type");
    // H5Dget_offset: the absolute file offset of contiguous storage; HADDR_UNDEF for any other
    // layout, storage never written, or an external file.
    if (directReads_ && H5Tequal(type.get(), H5T_NATIVE_INT32) > 0)
      at[k].address = H5Dget_offset(d.get());
  }
  return at;
}

std::array<std::int64_t, 2> ShardReader::indexRows(const std::string& id) {
  const auto& at = indexAt(indexOf(id));
  return {at[0].rows, at[1].rows};
}

std::array<std::int32_t, 3> ShardReader::readIndexRow(const std::string& id, IndexTable table,
                                                      std::int64_t row) {
  const std::size_t k = static_cast<std::size_t>(table);
  const IndexAt& at = indexAt(indexOf(id))[k];
  const IndexTableSchema& schema = kIndexTables[k];
  const std::string where = context(id) + "/" + schema.name;
  LDDPM_CHECK(row >= 0 && row < at.rows, where, ": row ", row, " of ", at.rows);
  std::array<std::int32_t, 3> zyx{};
  if (at.address != HADDR_UNDEF) {
    raw_->readAt(at.address + static_cast<hsize_t>(row) * schema.columns * sizeof(std::int32_t),
                 zyx.data(), sizeof(zyx), where);
    return zyx;
  }
  const h5::Handle d = h5::openDataset(open(id).group.get(), schema.name, context(id));
  readSlab(d.get(), H5T_NATIVE_INT32, {static_cast<hsize_t>(row), 0}, {1, 3}, zyx.data(), where);
  return zyx;
}

PatchData ShardReader::readPatch(const std::string& id, const std::array<std::int64_t, 3>& start,
                                 const std::array<std::int64_t, 3>& size) {
  const std::int64_t channels = static_cast<std::int64_t>(header_.channels.size());
  PatchData p;
  p.image = torch::empty({channels, size[0], size[1], size[2]}, torch::kFloat32);
  p.tissue = torch::empty({size[0], size[1], size[2]}, torch::kUInt8);
  p.lesion = torch::empty({size[0], size[1], size[2]}, torch::kUInt8);
  readPatchInto(id, start, size, p);
  return p;
}

void ShardReader::readPatchInto(const std::string& id, const std::array<std::int64_t, 3>& start,
                                const std::array<std::int64_t, 3>& size, PatchData& out) {
  LDDPM_CHECK(out.image.scalar_type() == torch::kFloat32 &&
                  out.tissue.scalar_type() == torch::kUInt8 &&
                  out.lesion.scalar_type() == torch::kUInt8,
              context(id), ": patch buffers must be float32, uint8, uint8");
  const std::size_t i = indexOf(id);
  if (tableAt_[i] < 0) {
    OpenSubject& o = open(id);
    if (!keepTables(i, o)) {
      readBox(o.image, H5T_NATIVE_FLOAT, start, size, out.image);
      readBox(o.tissue, H5T_NATIVE_UINT8, start, size, out.tissue);
      readBox(o.lesion, H5T_NATIVE_UINT8, start, size, out.lesion);
      return;
    }
  }
  readKnown(i, start, size, out);
}

bool ShardReader::keepTables(std::size_t i, const OpenSubject& o) {
  const std::array<const ChunkedDataset*, 3> mine{o.image.layout.get(), o.tissue.layout.get(),
                                                  o.lesion.layout.get()};
  for (const ChunkedDataset* d : mine)
    if (d == nullptr) return false;
  if (!layouts_[0]) {
    layouts_ = {o.image.layout, o.tissue.layout, o.lesion.layout};
    for (const auto& d : layouts_) perSubject_ += d->table().size();
    const std::size_t fit =
        tableBytes_ / std::max<std::size_t>(1, perSubject_ * sizeof(ChunkEntry));
    slots_ = std::clamp<std::size_t>(fit, 1, subjects_.size());
    // One block, reserved (pages are touched as slots fill): never moved, never interleaved.
    tables_.reserve(slots_ * perSubject_);
  }
  for (std::size_t k = 0; k < 3; ++k) {
    if (!layouts_[k]->sameLayout(*mine[k])) return false;
  }
  // A new slot while the block has room, else the least recently read subject's (a miss
  // already costs HDF5 opens, so the scan over the slots is no cost).
  std::size_t slot = slotOwner_.size();
  if (slot < slots_) {
    tables_.resize(tables_.size() + perSubject_);
    slotOwner_.push_back(-1);
    slotUsed_.push_back(0);
  } else {
    slot = static_cast<std::size_t>(std::min_element(slotUsed_.begin(), slotUsed_.end()) -
                                    slotUsed_.begin());
    tableAt_[static_cast<std::size_t>(slotOwner_[slot])] = -1;
  }
  slotOwner_[slot] = static_cast<std::int64_t>(i);
  tableAt_[i] = static_cast<std::int64_t>(slot);
  ChunkEntry* to = tables_.data() + slot * perSubject_;
  for (const ChunkedDataset* d : mine) to = std::copy(d->table().begin(), d->table().end(), to);
  return true;
}

void ShardReader::readKnown(std::size_t i, const std::array<std::int64_t, 3>& start,
                            const std::array<std::int64_t, 3>& size, PatchData& out) {
  static constexpr const char* kNames[3] = {"image", "tissue", "lesion"};
  const std::array<const torch::Tensor*, 3> buffers{&out.image, &out.tissue, &out.lesion};
  const auto slot = static_cast<std::size_t>(tableAt_[i]);
  slotUsed_[slot] = ++useTick_;
  const ChunkEntry* table = tables_.data() + slot * perSubject_;
  for (std::size_t k = 0; k < 3; ++k) {
    const ChunkedDataset& layout = *layouts_[k];
    const std::string where = context(subjects_[i]) + "/" + kNames[k];
    checkPatchBuffer(layout.dims(), where, start, size, *buffers[k]);
    layout.readBox(*raw_, table, where, start, size, buffers[k]->data_ptr(), scratch_);
    table += layout.table().size();
  }
}

ShardReader& StoreReader::shard(const std::string& file) {
  auto& reader = shards_[file];
  if (!reader)
    reader = std::make_unique<ShardReader>((std::filesystem::path(dir_) / file).string(),
                                           ShardReader::kDefaultChunkCacheBytes, directReads_);
  return *reader;
}

}  // namespace lddpm::data
