// Fuzzes the NIfTI reader (data/NiftiIo: readNiftiHeader + readNifti) with mutated files:
// every NIfTI-1 header field and the NIfTI-2 dims set to boundary values (dims that overflow,
// NaN/Inf scaling and pixdim, bad datatypes and vox_offset, extension sizes), byte-level
// mutations, and the file gzip-compressed with the compressed stream then corrupted or truncated.
// An accepted file must give a volume whose size is its header's and finite geometry.
#include <zlib.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "data/NiftiIo.h"
#include "tests/common/TempDir.h"
#include "tests/fuzz/Fuzzer.h"

namespace {
using namespace lddpm;
using fuzz::Bytes;
namespace fs = std::filesystem;

// The first byte of the input says how it is stored: even = plain .nii, odd = .nii.gz; for
// .nii.gz the second byte, when >= 128, corrupts the compressed stream (the rest picks where).
struct Field {
  std::size_t offset;
  int bytes;
  bool real;  // float32
};
// NIfTI-1 header fields (offset, size): all of them, as nifti1.h lays them out.
const Field kNifti1Fields[] = {
    {0, 4, false},   {39, 1, false},  {40, 2, false},  {42, 2, false},  {44, 2, false},
    {46, 2, false},  {48, 2, false},  {50, 2, false},  {52, 2, false},  {54, 2, false},
    {56, 4, true},   {60, 4, true},   {64, 4, true},   {68, 2, false},  {70, 2, false},
    {72, 2, false},  {74, 2, false},  {76, 4, true},   {80, 4, true},   {84, 4, true},
    {88, 4, true},   {92, 4, true},   {96, 4, true},   {100, 4, true},  {104, 4, true},
    {108, 4, true},  {112, 4, true},  {116, 4, true},  {120, 2, false}, {122, 1, false},
    {123, 1, false}, {124, 4, true},  {128, 4, true},  {132, 4, true},  {136, 4, true},
    {140, 4, false}, {144, 4, false}, {252, 2, false}, {254, 2, false}, {256, 4, true},
    {260, 4, true},  {264, 4, true},  {268, 4, true},  {272, 4, true},  {276, 4, true},
    {280, 4, true},  {284, 4, true},  {288, 4, true},  {292, 4, true},  {296, 4, true},
    {300, 4, true},  {304, 4, true},  {308, 4, true},  {312, 4, true},  {316, 4, true},
    {320, 4, true},  {324, 4, true},  {344, 4, false}, {348, 4, false}, {352, 4, false},
    {356, 4, false}};
// NIfTI-2 (540-byte header): sizeof_hdr, datatype, bitpix, dim[0..7] (int64), pixdim (float64),
// vox_offset (int64), scl_slope/inter (float64), qform/sform codes (int32), extension flag.
const Field kNifti2Fields[] = {{0, 4, false},   {12, 2, false},  {14, 2, false},  {16, 8, false},
                               {24, 8, false},  {32, 8, false},  {40, 8, false},  {48, 8, false},
                               {104, 8, false}, {112, 8, false}, {120, 8, false}, {128, 8, false},
                               {168, 8, false}, {176, 8, false}, {184, 8, false}, {344, 4, false},
                               {348, 4, false}, {540, 4, false}, {544, 4, false}};
const std::size_t kNifti2RealFields[] = {104, 112, 120, 128, 176, 184};

void mutateField(Bytes& b, fuzz::Rng& rng) {
  if (b.size() < 3) return;
  const bool two =
      b.size() > 544 && b[2] == 0x1c && b[3] == 0x02;  // sizeof_hdr 540 after the 2 tag bytes
  if (!two) {
    const Field f = kNifti1Fields[rng() % std::size(kNifti1Fields)];
    const std::size_t at = 2 + f.offset;
    if (at + f.bytes > b.size()) return;
    if (f.real && rng() % 2 == 0) {
      fuzz::detail::putSpecialFloat(b, at, false, rng);
    } else {
      fuzz::detail::putLe(b, at, fuzz::detail::interesting(rng, f.bytes), f.bytes);
    }
    return;
  }
  if (rng() % 3 == 0) {
    const std::size_t at = 2 + kNifti2RealFields[rng() % std::size(kNifti2RealFields)];
    fuzz::detail::putSpecialFloat(b, at, true, rng);
    return;
  }
  const Field f = kNifti2Fields[rng() % std::size(kNifti2Fields)];
  if (2 + f.offset + f.bytes <= b.size()) {
    fuzz::detail::putLe(b, 2 + f.offset, fuzz::detail::interesting(rng, f.bytes), f.bytes);
  }
}

Bytes readAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), {});
}

Bytes gunzip(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  Bytes out;
  char buf[1 << 14];
  for (int n; (n = gzread(f, buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
  gzclose(f);
  return out;
}

Bytes gzip(const Bytes& raw) {
  uLongf size = compressBound(raw.size()) + 64;
  Bytes out(size, '\0');
  z_stream z{};
  deflateInit2(&z, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);  // gzip wrapper
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(raw.data()));
  z.avail_in = static_cast<uInt>(raw.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

// A hand-made NIfTI-2 file (nibabel's layout): 540-byte header, 4 extension bytes, int16 voxels.
Bytes nifti2Seed() {
  Bytes h(544, '\0');
  auto put = [&](std::size_t at, auto v) { std::memcpy(&h[at], &v, sizeof v); };
  put(0, std::int32_t{540});
  std::memcpy(&h[4], "n+2\0\r\n\032\n", 8);
  put(12, std::int16_t{4});   // DT_INT16
  put(14, std::int16_t{16});  // bitpix
  const std::int64_t dims[8] = {3, 3, 4, 5, 1, 1, 1, 1};
  for (int i = 0; i < 8; ++i) put(16 + 8 * i, dims[i]);
  const double pixdim[8] = {1, 2, 2, 2, 1, 1, 1, 1};
  for (int i = 0; i < 8; ++i) put(104 + 8 * i, pixdim[i]);
  put(168, std::int64_t{544});  // vox_offset
  put(176, 2.0);                // scl_slope
  put(184, 1.0);                // scl_inter
  put(348, std::int32_t{0});    // qform_code
  put(344, std::int32_t{0});    // sform_code: pixdim geometry
  for (int i = 0; i < 60; ++i) h.append(reinterpret_cast<const char*>(&i), 2);
  return h;
}

}  // namespace

int main(int argc, char** argv) {
  const lddpm::testing::TempDir dir("fuzz-nifti");
  // Seeds: what our writer makes (float32, uint8, int16; odd sizes; one with affine rotation),
  // gunzipped so mutations see the header; a NIfTI-2 file. Tag bytes: storage, gzip damage.
  std::vector<Bytes> seeds;
  const auto add = [&](const data::Volume& v, data::NiftiDtype dtype) {
    const std::string path = (dir / "seed.nii.gz").string();
    data::writeNifti(path, v, dtype);
    const Bytes raw = gunzip(path);
    seeds.push_back(Bytes("\x00\x00", 2) + raw);
    seeds.push_back(Bytes("\x01\x00", 2) + raw);
  };
  data::Volume v;
  v.data = torch::arange(60, torch::kFloat32).reshape({5, 4, 3}) / 7.0;
  v.spacing = {1.0, 1.5, 2.0};
  v.affine = data::scaledAffine(v.spacing);
  add(v, data::NiftiDtype::Float32);
  v.data = (torch::arange(60, torch::kFloat32).reshape({3, 4, 5}).remainder(2));
  add(v, data::NiftiDtype::UInt8);
  v.affine[1] = 0.5;  // sheared: qform and sform disagree in nifticlib's quaternion fit
  add(v, data::NiftiDtype::Int16);
  seeds.push_back(Bytes("\x00\x00", 2) + nifti2Seed());
  seeds.push_back(Bytes("\x01\x00", 2) + nifti2Seed());

  fuzz::Target target;
  target.name = "nifti";
  target.seeds = seeds;
  target.mutate = [](Bytes& b, fuzz::Rng& rng) {
    if (rng() % 8 == 0 && b.size() >= 2) {  // toggle storage or gzip damage
      b[rng() % 2] = static_cast<char>(rng());
    } else {
      mutateField(b, rng);
    }
  };
  target.run = [&](const Bytes& input) {
    if (input.size() < 2) throw core::Error("input too short to carry its storage tag");
    const bool gz = (static_cast<unsigned char>(input[0]) & 1) != 0;
    Bytes file = input.substr(2);
    if (gz) {
      file = gzip(file);
      const auto damage = static_cast<unsigned char>(input[1]);
      if (damage >= 128 && !file.empty()) {
        const std::size_t at = (damage * 7919u) % file.size();
        if (damage & 1) {
          file.resize(at);  // a truncated download
        } else {
          file[at] = static_cast<char>(file[at] ^ 0x5a);  // a bad sector
        }
      }
    }
    const std::string path = (dir / (gz ? "in.nii.gz" : "in.nii")).string();
    std::ofstream(path, std::ios::binary | std::ios::trunc) << file;
    const data::NiftiHeaderInfo header = data::readNiftiHeader(path);
    data::NiftiHeaderInfo info;
    const data::Volume vol = data::readNifti(path, &info);
    if (vol.data.numel() != info.shape[0] * info.shape[1] * info.shape[2] ||
        header.shape != info.shape) {
      throw fuzz::PropertyViolation("volume size differs from the header's dims");
    }
    for (double x : vol.affine) {
      if (!std::isfinite(x)) throw fuzz::PropertyViolation("non-finite affine accepted");
    }
    for (double s : vol.spacing) {
      if (!(s > 0) || !std::isfinite(s)) throw fuzz::PropertyViolation("bad spacing accepted");
    }
  };
  const int code = fuzz::fuzzMain(argc, argv, target);
  return code;
}
