#include "data/NiftiIo.h"

#include <nifti/nifti2_io.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <mutex>
#include <type_traits>
#include <vector>

#include "core/AtomicFile.h"
#include "core/Error.h"

namespace lddpm::data {
namespace fs = std::filesystem;
using core::IoError;
using core::strCat;

namespace detail {

struct NiftiImageDeleter {
  void operator()(nifti_image* nim) const { nifti_image_free(nim); }
};
using NiftiImagePtr = std::unique_ptr<nifti_image, NiftiImageDeleter>;

// nifticlib prints its own "** ERROR" lines on stderr before returning NULL; we throw a message
// that names the file instead, so the library is kept quiet (its debug level is process-global).
void quietNifticlib() {
  static std::once_flag once;
  std::call_once(once, [] { nifti_set_debug_level(0); });
}

// Removes a temporary file unless released (the writer's failure paths all go through here).
class TempFileGuard {
 public:
  explicit TempFileGuard(std::string path) : path_(std::move(path)) {}
  ~TempFileGuard() {
    if (!path_.empty()) std::remove(path_.c_str());
  }
  TempFileGuard(const TempFileGuard&) = delete;
  TempFileGuard& operator=(const TempFileGuard&) = delete;
  void release() { path_.clear(); }

 private:
  std::string path_;
};

bool isSupportedDatatype(int code) {
  switch (code) {
    case DT_UINT8:
    case DT_INT8:
    case DT_INT16:
    case DT_UINT16:
    case DT_INT32:
    case DT_UINT32:
    case DT_INT64:
    case DT_UINT64:
    case DT_FLOAT32:
    case DT_FLOAT64:
      return true;
    default:
      return false;
  }
}

Affine toAffine(const nifti_dmat44& m) {
  Affine a{};
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) a[r * 4 + c] = m.m[r][c];
  return a;
}

void checkPathReadable(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw IoError(path, "no such file");
  if (fs::is_directory(path, ec)) throw IoError(path, "is a directory, expected a NIfTI file");
}

// Fills `info` from a header-only nifti_image and refuses what we cannot represent as one 3-D
// volume. Shared by the header-only and the full read so both refuse exactly the same files.
NiftiHeaderInfo describe(const nifti_image& nim, const std::string& path) {
  NiftiHeaderInfo info;
  info.path = path;
  info.dim = static_cast<int>(nim.dim[0]);
  info.datatype = niftiDatatypeName(nim.datatype);
  if (!isSupportedDatatype(nim.datatype)) {
    throw IoError(path, strCat("unsupported NIfTI datatype ", info.datatype, " (code ",
                               nim.datatype, "); expected an integer or float32/float64 type"));
  }
  if (nim.dim[1] < 1 || nim.dim[2] < 1) {
    throw IoError(path, strCat("invalid dimensions dim[1..3] = ", nim.dim[1], ", ", nim.dim[2],
                               ", ", nim.dim[3]));
  }
  if (nim.dim[0] < 3 || nim.dim[3] <= 1) {
    throw IoError(path, strCat("is a 2-D image (dim = [", nim.dim[0], ", ", nim.dim[1], ", ",
                               nim.dim[2], ", ", nim.dim[3], "]); expected a 3-D volume"));
  }
  // A 4-D file with one volume (nt = 1) is a 3-D volume that some tools save that way.
  std::int64_t volumes = 1;
  for (int d = 4; d <= std::min<std::int64_t>(nim.dim[0], 7); ++d) {
    if (__builtin_mul_overflow(volumes, std::max<std::int64_t>(nim.dim[d], 1), &volumes)) {
      volumes = std::numeric_limits<std::int64_t>::max();
    }
  }
  if (volumes > 1) {
    throw IoError(path, strCat("holds ", volumes, " volumes (dim[0] = ", nim.dim[0],
                               ", nt = ", nim.dim[4], "); expected a single 3-D volume"));
  }
  info.shape = {nim.dim[1], nim.dim[2], nim.dim[3]};
  info.spacing = {std::fabs(nim.pixdim[1]), std::fabs(nim.pixdim[2]), std::fabs(nim.pixdim[3])};
  for (int d = 0; d < 3; ++d) {
    if (!(info.spacing[d] > 0) || !std::isfinite(info.spacing[d])) {
      throw IoError(path, strCat("invalid voxel size pixdim[", d + 1, "] = ", nim.pixdim[d + 1]));
    }
  }
  info.sformCode = nim.sform_code;
  info.qformCode = nim.qform_code;
  info.sclSlope = nim.scl_slope;
  info.sclInter = nim.scl_inter;
  if (nim.sform_code > 0) {
    info.affine = toAffine(nim.sto_xyz);
  } else if (nim.qform_code > 0) {
    info.affine = toAffine(nim.qto_xyz);
  } else {
    // NIfTI "method 1" (Analyze compatibility): voxel indices scaled by pixdim, no offset.
    info.affine = scaledAffine(info.spacing);
  }
  for (double x : info.affine) {
    if (!std::isfinite(x)) throw IoError(path, "non-finite value in the voxel-to-world affine");
  }
  return info;
}

// The header's framing, checked before nifticlib sees the file: nifticlib 3.0.1 trusts a
// NIfTI-2 header's dim[0] (a garbage value overflowed its stack: found by tests/fuzz/FuzzNifti)
// and prints "** ERROR" lines of its own for bad dim[0] and datatypes. Returns the NIfTI version
// from sizeof_hdr (348: NIfTI-1 or ANALYZE, 540: NIfTI-2; either byte order).
int precheckHeader(const std::string& path) {
  unsigned char h[540] = {};
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) throw IoError(path, "cannot open for reading");
  const int n = gzread(f, h, sizeof h);
  gzclose_r(f);
  const auto get = [&](std::size_t at, int bytes, bool swap) {
    std::uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) {
      v |= static_cast<std::uint64_t>(h[at + (swap ? bytes - 1 - i : i)]) << (8 * i);
    }
    return v;
  };
  const auto sized = [](std::uint64_t v, int bytes) {  // sign-extend
    const int shift = 64 - 8 * bytes;
    return static_cast<std::int64_t>(v << shift) >> shift;
  };
  if (n < 348) throw IoError(path, "not a NIfTI file: the header is truncated or unreadable");
  bool swap = false;
  std::int64_t size = sized(get(0, 4, false), 4);
  if (size != 348 && size != 540) {
    swap = true;
    size = sized(get(0, 4, true), 4);
  }
  if (size != 348 && size != 540) {
    throw IoError(
        path, strCat("not a NIfTI-1/NIfTI-2 file (sizeof_hdr ", sized(get(0, 4, false), 4), ")"));
  }
  if (size == 540 && n < 540) throw IoError(path, "NIfTI-2 header truncated");
  const bool two = size == 540;
  const std::int64_t dim0 = two ? sized(get(16, 8, swap), 8) : sized(get(40, 2, swap), 2);
  if (dim0 < 1 || dim0 > 7) throw IoError(path, strCat("invalid dim[0] = ", dim0, " (1 to 7)"));
  const auto datatype = static_cast<int>(sized(get(two ? 12 : 70, 2, swap), 2));
  if (!isSupportedDatatype(datatype)) {
    throw IoError(path,
                  strCat("unsupported NIfTI datatype ", niftiDatatypeName(datatype), " (code ",
                         datatype, "); expected an integer or float32/float64 type"));
  }
  return two ? 2 : 1;
}

// Converts `n` voxels of type T to float32, applying y = slope * x + inter in double.
template <typename T>
void convert(const void* src, float* dst, std::int64_t n, bool scale, double slope, double inter) {
  const T* in = static_cast<const T*>(src);
  if (!scale) {
    if constexpr (std::is_same_v<T, float>) {
      std::memcpy(dst, in, static_cast<size_t>(n) * sizeof(float));
    } else {
      for (std::int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(in[i]);
    }
    return;
  }
  for (std::int64_t i = 0; i < n; ++i) {
    dst[i] = static_cast<float>(slope * static_cast<double>(in[i]) + inter);
  }
}

void convertVoxels(int datatype, const void* src, std::int64_t n, float* dst, bool scale,
                   double slope, double inter) {
  switch (datatype) {
    case DT_UINT8:
      return convert<std::uint8_t>(src, dst, n, scale, slope, inter);
    case DT_INT8:
      return convert<std::int8_t>(src, dst, n, scale, slope, inter);
    case DT_INT16:
      return convert<std::int16_t>(src, dst, n, scale, slope, inter);
    case DT_UINT16:
      return convert<std::uint16_t>(src, dst, n, scale, slope, inter);
    case DT_INT32:
      return convert<std::int32_t>(src, dst, n, scale, slope, inter);
    case DT_UINT32:
      return convert<std::uint32_t>(src, dst, n, scale, slope, inter);
    case DT_INT64:
      return convert<std::int64_t>(src, dst, n, scale, slope, inter);
    case DT_UINT64:
      return convert<std::uint64_t>(src, dst, n, scale, slope, inter);
    case DT_FLOAT32:
      return convert<float>(src, dst, n, scale, slope, inter);
    case DT_FLOAT64:
      return convert<double>(src, dst, n, scale, slope, inter);
    default:
      break;  // describe() refused it already
  }
}

// The voxel bytes of `nim` (header already read), in host byte order. We read them ourselves
// instead of nifti_image_load because zlib checks a .gz file's CRC only at the end of the stream:
// nifticlib stops after the last voxel byte, so a corrupted (not truncated) .gz would be returned
// as garbage voxels. Draining the stream to its end makes zlib verify the CRC and length.
std::vector<char> readVoxelBytes(const nifti_image& nim, const std::string& path) {
  // The header's dims are not trusted with memory: their product must not overflow, and the
  // buffer grows only as voxel bytes actually arrive, so a damaged header claiming terabytes
  // fails as "truncated" instead of allocating them.
  std::int64_t bytes = 0;
  if (nim.nx < 1 || nim.ny < 1 || nim.nz < 1 || nim.nbyper < 1 ||
      __builtin_mul_overflow(static_cast<std::int64_t>(nim.nx), static_cast<std::int64_t>(nim.ny),
                             &bytes) ||
      __builtin_mul_overflow(bytes, static_cast<std::int64_t>(nim.nz), &bytes) ||
      __builtin_mul_overflow(bytes, static_cast<std::int64_t>(nim.nbyper), &bytes)) {
    throw IoError(path, strCat("dimensions ", nim.nx, "x", nim.ny, "x", nim.nz, " of ",
                               niftiDatatypeName(nim.datatype), " overflow"));
  }
  const std::string what = strCat("voxel data truncated or corrupt (expected ", nim.nx, "x", nim.ny,
                                  "x", nim.nz, " ", niftiDatatypeName(nim.datatype), ")");
  if (nim.iname_offset < 0) throw IoError(path, strCat("negative vox_offset ", nim.iname_offset));
  std::vector<char> out;
  gzFile f = gzopen(nim.iname != nullptr ? nim.iname : path.c_str(), "rb");
  if (f == nullptr) throw IoError(path, "cannot open for reading");
  gzbuffer(f, 1 << 20);
  bool ok = gzseek(f, static_cast<z_off_t>(nim.iname_offset), SEEK_SET) == nim.iname_offset;
  for (std::int64_t at = 0; ok && at < bytes;) {
    const unsigned len = static_cast<unsigned>(std::min<std::int64_t>(bytes - at, 1 << 26));
    out.resize(static_cast<size_t>(at) + len);
    const int got = gzread(f, out.data() + at, len);
    ok = got > 0;
    at += std::max(got, 0);
    out.resize(static_cast<size_t>(at));
  }
  char drain[4096];
  int got = 0;
  while (ok && (got = gzread(f, drain, sizeof drain)) > 0) {
  }
  ok = ok && got == 0;
  ok = (gzclose_r(f) == Z_OK) && ok;
  if (!ok) throw IoError(path, what);
  if (nim.byteorder != nifti_short_order() && nim.swapsize > 1) {
    nifti_swap_Nbytes(nim.nx * nim.ny * nim.nz, nim.swapsize, out.data());
  }
  return out;
}

// Voxels in the on-disk type: float32 as is, integers rounded to nearest and range-checked so
// that a mask with a stray 256 or -1 fails loudly instead of wrapping.
template <typename T>
std::vector<char> encodeVoxels(const torch::Tensor& data, const std::string& path) {
  const float* in = data.data_ptr<float>();
  const std::int64_t n = data.numel();
  std::vector<char> bytes(static_cast<size_t>(n) * sizeof(T));
  T* out = reinterpret_cast<T*>(bytes.data());
  for (std::int64_t i = 0; i < n; ++i) {
    if constexpr (std::is_same_v<T, float>) {
      out[i] = in[i];
    } else {
      const double r = std::nearbyint(static_cast<double>(in[i]));
      if (!(r >= std::numeric_limits<T>::min() && r <= std::numeric_limits<T>::max())) {
        throw IoError(path, strCat("voxel ", i, " has value ", in[i], ", outside the range of ",
                                   niftiDatatypeName(sizeof(T) == 1 ? DT_UINT8 : DT_INT16)));
      }
      out[i] = static_cast<T>(r);
    }
  }
  return bytes;
}

void writeBytes(const std::string& tmp, const std::string& path, const void* header,
                size_t headerBytes, const std::vector<char>& voxels, bool gz, int level) {
  static const char kNoExtensions[4] = {0, 0, 0, 0};  // the "extension" flag after the header
  if (gz) {
    gzFile f = gzopen(tmp.c_str(), strCat("wb", std::clamp(level, 0, 9)).c_str());
    if (f == nullptr) throw IoError(path, strCat("cannot create temporary file '", tmp, "'"));
    gzbuffer(f, 1 << 20);
    bool ok =
        gzwrite(f, header, static_cast<unsigned>(headerBytes)) == static_cast<int>(headerBytes) &&
        gzwrite(f, kNoExtensions, 4) == 4;
    constexpr size_t kChunk = 1 << 26;  // gzwrite takes an unsigned length
    for (size_t at = 0; ok && at < voxels.size(); at += kChunk) {
      const unsigned len = static_cast<unsigned>(std::min(kChunk, voxels.size() - at));
      ok = gzwrite(f, voxels.data() + at, len) == static_cast<int>(len);
    }
    const int closed = gzclose(f);
    if (!ok || closed != Z_OK)
      throw IoError(path, strCat("writing '", tmp, "' failed (disk full?)"));
    return;
  }
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) throw IoError(path, strCat("cannot create temporary file '", tmp, "'"));
  bool ok = std::fwrite(header, 1, headerBytes, f) == headerBytes &&
            std::fwrite(kNoExtensions, 1, 4, f) == 4 &&
            std::fwrite(voxels.data(), 1, voxels.size(), f) == voxels.size();
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) throw IoError(path, strCat("writing '", tmp, "' failed (disk full?)"));
}

}  // namespace detail

std::string niftiDatatypeName(int code) {
  switch (code) {
    case DT_UINT8:
      return "uint8";
    case DT_INT8:
      return "int8";
    case DT_INT16:
      return "int16";
    case DT_UINT16:
      return "uint16";
    case DT_INT32:
      return "int32";
    case DT_UINT32:
      return "uint32";
    case DT_INT64:
      return "int64";
    case DT_UINT64:
      return "uint64";
    case DT_FLOAT32:
      return "float32";
    case DT_FLOAT64:
      return "float64";
    default:
      return strCat("DT_", code);
  }
}

double affineMaxAbsDiff(const Affine& a, const Affine& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(a[i] - b[i]));
  return worst;
}

NiftiHeaderInfo readNiftiHeader(const std::string& path) {
  detail::quietNifticlib();
  detail::checkPathReadable(path);
  const int version = detail::precheckHeader(path);
  detail::NiftiImagePtr nim(nifti_image_read(path.c_str(), /*read_data=*/0));
  if (!nim) throw IoError(path, "not a readable NIfTI-1/NIfTI-2 file (bad header or extension)");
  NiftiHeaderInfo info = detail::describe(*nim, path);
  info.niftiVersion = version;
  return info;
}

Volume readNifti(const std::string& path, NiftiHeaderInfo* infoOut) {
  detail::quietNifticlib();
  detail::checkPathReadable(path);
  const int version = detail::precheckHeader(path);
  // Header first, so a 2-D or multi-volume file is refused before its voxels are decompressed.
  detail::NiftiImagePtr nim(nifti_image_read(path.c_str(), /*read_data=*/0));
  if (!nim) throw IoError(path, "not a readable NIfTI-1/NIfTI-2 file (bad header or extension)");
  NiftiHeaderInfo info = detail::describe(*nim, path);
  const std::vector<char> raw = detail::readVoxelBytes(*nim, path);
  info.niftiVersion = version;

  // docs/facts.md: nifticlib never applies scl_slope; 0 or non-finite slope means "no scaling" (as
  // in nibabel, which then ignores the intercept too); a non-finite intercept counts as 0.
  const bool scale = std::isfinite(info.sclSlope) && info.sclSlope != 0 &&
                     !(info.sclSlope == 1 && (info.sclInter == 0 || !std::isfinite(info.sclInter)));
  const double inter = std::isfinite(info.sclInter) ? info.sclInter : 0.0;

  Volume v;
  v.data = torch::empty({info.shape[2], info.shape[1], info.shape[0]}, torch::kFloat32);
  detail::convertVoxels(nim->datatype, raw.data(), info.shape[0] * info.shape[1] * info.shape[2],
                        v.data.data_ptr<float>(), scale, info.sclSlope, inter);
  v.affine = info.affine;
  v.spacing = info.spacing;
  if (infoOut != nullptr) *infoOut = info;
  return v;
}

void writeNifti(const std::string& path, const Volume& v, NiftiDtype dtype, int gzipLevel) {
  detail::quietNifticlib();
  const bool gz = path.size() > 7 && path.compare(path.size() - 7, 7, ".nii.gz") == 0;
  const bool plain = path.size() > 4 && path.compare(path.size() - 4, 4, ".nii") == 0;
  if (!gz && !plain) throw IoError(path, "NIfTI output must end in .nii.gz or .nii");
  if (!v.data.defined() || v.data.dim() != 3) {
    throw IoError(path, "writeNifti needs a 3-D volume [nz, ny, nx]");
  }
  const torch::Tensor data = v.data.to(torch::kCPU, torch::kFloat32).contiguous();

  int code = DT_FLOAT32;
  std::vector<char> voxels;
  switch (dtype) {
    case NiftiDtype::Float32:
      voxels = detail::encodeVoxels<float>(data, path);
      break;
    case NiftiDtype::UInt8:
      code = DT_UINT8;
      voxels = detail::encodeVoxels<std::uint8_t>(data, path);
      break;
    case NiftiDtype::Int16:
      code = DT_INT16;
      voxels = detail::encodeVoxels<std::int16_t>(data, path);
      break;
  }

  // The header is built by nifticlib from a nifti_image (it knows the quaternion maths), but
  // the bytes are written by us through zlib so that every write and the close are checked.
  const std::int64_t dims[8] = {3, data.size(2), data.size(1), data.size(0), 1, 1, 1, 1};
  detail::NiftiImagePtr nim(nifti_make_new_nim(dims, code, /*data_fill=*/0));
  if (!nim) throw IoError(path, "nifticlib could not create an image header");
  nim->nifti_type = NIFTI_FTYPE_NIFTI1_1;
  nim->iname_offset = 352;  // 348-byte header + 4-byte extension flag
  nim->xyz_units = NIFTI_UNITS_MM;
  nim->scl_slope = 1.0;
  nim->scl_inter = 0.0;
  for (int d = 0; d < 3; ++d) nim->pixdim[d + 1] = v.spacing[d];
  nim->dx = v.spacing[0];
  nim->dy = v.spacing[1];
  nim->dz = v.spacing[2];
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) nim->sto_xyz.m[r][c] = v.affine[r * 4 + c];
  nim->sform_code = NIFTI_XFORM_SCANNER_ANAT;
  nim->qform_code = NIFTI_XFORM_SCANNER_ANAT;
  double qdx = 0, qdy = 0, qdz = 0;
  nifti_dmat44_to_quatern(nim->sto_xyz, &nim->quatern_b, &nim->quatern_c, &nim->quatern_d,
                          &nim->qoffset_x, &nim->qoffset_y, &nim->qoffset_z, &qdx, &qdy, &qdz,
                          &nim->qfac);
  static_assert(sizeof(nifti_1_header) == 348, "NIfTI-1 header must be 348 bytes");
  nifti_1_header header{};
  if (nifti_convert_nim2n1hdr(nim.get(), &header) != 0) {
    throw IoError(path, "nifticlib could not build a NIfTI-1 header");
  }
  header.vox_offset = 352;
  std::memcpy(header.magic, "n+1\0", 4);

  const std::string tmp = core::temporarySibling(path) + (gz ? ".nii.gz" : ".nii");
  detail::TempFileGuard guard(tmp);
  detail::writeBytes(tmp, path, &header, sizeof(header), voxels, gz, gzipLevel);

  // Read back what is on disk (header through nifticlib, voxels through the CRC-checking reader)
  // and compare: the only proof a NIfTI writer gives.
  detail::NiftiImagePtr back(nifti_image_read(tmp.c_str(), /*read_data=*/0));
  const bool sameHeader = back && back->datatype == code && back->nx == dims[1] &&
                          back->ny == dims[2] && back->nz == dims[3];
  bool sameVoxels = false;
  try {
    sameVoxels = sameHeader && detail::readVoxelBytes(*back, tmp) == voxels;
  } catch (const IoError&) {  // reported below under the final name
  }
  if (!sameVoxels) {
    throw IoError(path, strCat("verification of '", tmp, "' failed: the file read back differs"));
  }
  core::fsyncPath(tmp);
  core::publish(tmp, path);
  guard.release();
}

}  // namespace lddpm::data
