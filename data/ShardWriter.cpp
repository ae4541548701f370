// Shard writing: see ShardWriter.h and docs/store.md.
#include "data/ShardWriter.h"

#include <blosc.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "core/AtomicFile.h"
#include "core/Text.h"

namespace lddpm::data {
namespace {

h5::Handle creationPlist(const std::vector<hsize_t>& chunk, const StorageOptions& storage,
                         const std::string& context) {
  h5::Handle plist = h5::check(H5Pcreate(H5P_DATASET_CREATE), &H5Pclose, context, "H5Pcreate");
  LDDPM_H5_CHECK(H5Pset_chunk(plist.get(), static_cast<int>(chunk.size()), chunk.data()), context);
  LDDPM_H5_CHECK(H5Pset_obj_track_times(plist.get(), 0), context);
  switch (storage.compression) {
    case Compression::None:
      break;
    case Compression::Deflate:
      LDDPM_H5_CHECK(H5Pset_shuffle(plist.get()), context);
      LDDPM_H5_CHECK(H5Pset_deflate(plist.get(), 4), context);
      break;
    case Compression::Lz4:
    case Compression::Zstd: {
      // cd_values[0..3] are filled in by the filter's set_local; 4: level, 5: byte shuffle on.
      const unsigned codec = storage.compression == Compression::Lz4 ? BLOSC_LZ4 : BLOSC_ZSTD;
      const unsigned cd[7] = {0, 0, 0, 0, 5, 1, codec};
      if (H5Zfilter_avail(kBloscFilter) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        throw core::IoError(context, "--compression " + compressionName(storage.compression) +
                                         " needs the HDF5 blosc filter plugin (Debian package "
                                         "hdf5-filter-plugin-blosc-serial)");
      }
      LDDPM_H5_CHECK(H5Pset_filter(plist.get(), kBloscFilter, H5Z_FLAG_MANDATORY, 7, cd), context);
      break;
    }
  }
  return plist;
}

void writeDataset(hid_t group, const std::string& name, const torch::Tensor& tensor, hid_t fileType,
                  hid_t memType, const std::vector<hsize_t>& chunk, const StorageOptions* storage,
                  const std::string& context) {
  const std::string where = context + "/" + name;
  const torch::Tensor t = tensor.contiguous();
  std::vector<hsize_t> dims(t.sizes().begin(), t.sizes().end());
  h5::Handle space =
      h5::check(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), &H5Sclose,
                where, "H5Screate_simple");
  h5::Handle plist;
  if (storage) {
    plist = creationPlist(chunk, *storage, where);
  } else {
    plist = h5::check(H5Pcreate(H5P_DATASET_CREATE), &H5Pclose, where, "H5Pcreate");
    LDDPM_H5_CHECK(H5Pset_obj_track_times(plist.get(), 0), where);
  }
  h5::Handle dataset = h5::check(
      H5Dcreate2(group, name.c_str(), fileType, space.get(), H5P_DEFAULT, plist.get(), H5P_DEFAULT),
      &H5Dclose, where, "cannot create dataset");
  if (t.numel() > 0) {
    LDDPM_H5_CHECK(H5Dwrite(dataset.get(), memType, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data_ptr()),
                   where);
  }
}

std::vector<hsize_t> chunkFor(const std::array<std::int64_t, 3>& grid, int edge) {
  std::vector<hsize_t> c(3);
  for (int i = 0; i < 3; ++i) c[i] = static_cast<hsize_t>(std::min<std::int64_t>(edge, grid[i]));
  return c;
}

}  // namespace

ShardWriter::ShardWriter(std::string path, ShardHeader header, StorageOptions storage)
    : path_(std::move(path)),
      tempPath_(core::temporarySibling(path_)),
      header_(std::move(header)),
      storage_(storage) {
  LDDPM_CHECK(storage_.chunk > 0, "--chunk must be positive, got ", storage_.chunk);
  file_ = h5::createFile(tempPath_);
  const hid_t root = file_.get();
  h5::writeAttr(root, "format", std::string(kStoreFormat));
  h5::writeAttr(root, "format_version", kStoreFormatVersion);
  h5::writeAttr(root, "shard_index", static_cast<std::int64_t>(header_.shardIndex));
  h5::writeAttr(root, "parameters", header_.parameters);
  h5::writeAttr(root, "channels", core::joinStrings(header_.channels, ","));
  h5::writeAttr(root, "grid", std::vector<std::int64_t>(header_.grid.begin(), header_.grid.end()));
  h5::writeAttr(root, "compression", compressionName(storage_.compression));
  subjectsGroup_ = h5::createGroup(root, kSubjectsGroup, path_);
}

ShardWriter::~ShardWriter() {
  if (committed_) return;
  subjectsGroup_.reset();
  file_.reset();
  std::error_code ignored;
  std::filesystem::remove(tempPath_, ignored);
}

void ShardWriter::add(const SubjectData& s) {
  const std::string context = path_ + ":/" + kSubjectsGroup + "/" + s.id;
  const auto& g = header_.grid;
  const bool gridOk = s.image.dim() == 4 && s.image.size(1) == g[0] && s.image.size(2) == g[1] &&
                      s.image.size(3) == g[2] && s.tissue.sizes() == s.image.sizes().slice(1) &&
                      s.lesion.sizes() == s.image.sizes().slice(1);
  LDDPM_CHECK(gridOk, context, ": volumes do not match the shard grid ", g[0], "x", g[1], "x",
              g[2]);
  LDDPM_CHECK(s.channels == header_.channels && s.image.size(0) == std::int64_t(s.channels.size()),
              context, ": channels ", core::joinStrings(s.channels, ","),
              " differ from the shard's ", core::joinStrings(header_.channels, ","));
  LDDPM_CHECK(s.image.scalar_type() == torch::kFloat32 && s.tissue.scalar_type() == torch::kUInt8 &&
                  s.lesion.scalar_type() == torch::kUInt8,
              context, ": image must be float32 and masks uint8");
  LDDPM_CHECK(std::find(written_.begin(), written_.end(), s.id) == written_.end(), context,
              ": subject written twice");

  h5::Handle group = h5::createGroup(subjectsGroup_.get(), s.id, path_ + ":/" + kSubjectsGroup);
  const std::vector<hsize_t> chunk3 = chunkFor(g, storage_.chunk);
  std::vector<hsize_t> chunk4 = {1};
  chunk4.insert(chunk4.end(), chunk3.begin(), chunk3.end());
  writeDataset(group.get(), "image", s.image, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, chunk4, &storage_,
               context);
  writeDataset(group.get(), "tissue", s.tissue, H5T_STD_U8LE, H5T_NATIVE_UINT8, chunk3, &storage_,
               context);
  writeDataset(group.get(), "lesion", s.lesion, H5T_STD_U8LE, H5T_NATIVE_UINT8, chunk3, &storage_,
               context);
  // Small index tables: contiguous, read whole once per subject.
  writeDataset(group.get(), "patch_index", s.patchIndex.to(torch::kInt32).reshape({-1, 4}),
               H5T_STD_I32LE, H5T_NATIVE_INT32, {}, nullptr, context);
  writeDataset(group.get(), "lesion_voxels", s.lesionVoxels.to(torch::kInt32).reshape({-1, 3}),
               H5T_STD_I32LE, H5T_NATIVE_INT32, {}, nullptr, context);

  const hid_t a = group.get();
  h5::writeAttr(a, "split", s.split);
  h5::writeAttr(a, "patient", s.patient);
  h5::writeAttr(a, "timepoint", s.timepoint);
  h5::writeAttr(a, "affine", std::vector<double>(s.affine.begin(), s.affine.end()));
  h5::writeAttr(a, "spacing", std::vector<double>(s.spacing.begin(), s.spacing.end()));
  h5::writeAttr(a, "source_shape",
                std::vector<std::int64_t>(s.sourceShape.begin(), s.sourceShape.end()));
  h5::writeAttr(a, "crop_offset",
                std::vector<std::int64_t>(s.cropOffset.begin(), s.cropOffset.end()));
  h5::writeAttr(a, "downsample", s.downsample);
  h5::writeAttr(a, "index_stride", s.indexStride);
  h5::writeAttr(a, "index_window", s.indexWindow);
  h5::writeAttr(a, "norm_mean", s.normMean);
  h5::writeAttr(a, "norm_std", s.normStd);
  h5::writeAttr(a, "tissue_means", std::vector<double>(s.tissueMeans.begin(), s.tissueMeans.end()));
  h5::writeAttr(a, "brain_voxels", s.brainVoxels());
  h5::writeAttr(a, "lesion_voxel_count", s.lesionCount());
  written_.push_back(s.id);
}

void ShardWriter::commit() {
  LDDPM_CHECK(!committed_, path_, ": shard committed twice");
  h5::writeAttr(file_.get(), "subject_count", static_cast<std::int64_t>(written_.size()));
  subjectsGroup_.reset();
  LDDPM_H5_CHECK(H5Fflush(file_.get(), H5F_SCOPE_GLOBAL), tempPath_);
  // H5Fclose writes the remaining metadata: its status decides whether the shard is whole.
  LDDPM_H5_CHECK(H5Fclose(file_.release()), tempPath_);
  core::fsyncPath(tempPath_);
  core::publish(tempPath_, path_);
  committed_ = true;
}

}  // namespace lddpm::data
