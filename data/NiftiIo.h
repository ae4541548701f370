#pragma once
// NIfTI-1/2 reading and NIfTI-1 writing on nifticlib (libnifti2), with the traps handled here once:
// scaling applied by us, sform > qform > pixdim for the affine, 4-D with one volume read as 3-D,
// truncated .gz detected, and every write verified by reading it back (the 3.0.1 writer is silent).
#include <array>
#include <cstdint>
#include <string>

#include "data/Volume.h"

namespace lddpm::data {

// What a NIfTI header says, before any voxel is read.
struct NiftiHeaderInfo {
  std::string path;
  std::string datatype;  // "uint8", "int8", "int16", "uint16", "int32", "uint32", "int64",
                         // "uint64", "float32", "float64" (others are refused on read)
  std::array<std::int64_t, 3> shape{};  // nx, ny, nz
  std::array<double, 3> spacing{};      // |pixdim[1..3]| in mm
  Affine affine{};                      // voxel -> world: sform if sform_code > 0, else qform if
                                        // qform_code > 0, else diag(pixdim) (NIfTI "method 1")
  int sformCode = 0;
  int qformCode = 0;
  double sclSlope = 0;  // as stored; 0 or non-finite means "no scaling" (inter ignored too)
  double sclInter = 0;
  int dim = 0;           // dim[0] as stored (a 4-D file with one volume says 4)
  int niftiVersion = 1;  // 1 or 2, from the header size (nifticlib's nifti_type says 1 for both)
};

// Reads the header only (cheap: 348/540 bytes, even from .gz). Throws core::IoError naming the
// file if it is missing, not NIfTI, 2-D, multi-volume, or of an unsupported datatype.
NiftiHeaderInfo readNiftiHeader(const std::string& path);

// Reads the voxels as float32 [nz, ny, nx] with scl_slope/scl_inter applied, plus the geometry.
// Throws core::IoError naming the file on a truncated or corrupt file and on any header problem
// readNiftiHeader reports. NaN/Inf voxels are returned as they are (checkScanConsistency refuses
// them), so `lddpm inspect` can still show such a file.
Volume readNifti(const std::string& path, NiftiHeaderInfo* info = nullptr);

enum class NiftiDtype { Float32, UInt8, Int16 };

// Writes NIfTI-1 (.nii.gz compressed with zlib level `gzipLevel`, or plain .nii) with sform and
// qform both set from v.affine (code 1, scanner/aligned anatomy) and units mm. UInt8/Int16 round
// to nearest and refuse out-of-range values (no silent wrap-around). The file appears under its
// final name only after it was written under a temporary name, read back and compared byte for
// byte, so a failure never leaves a file that looks valid. Throws core::IoError naming `path`.
void writeNifti(const std::string& path, const Volume& v, NiftiDtype dtype = NiftiDtype::Float32,
                int gzipLevel = 1);

// "uint8" etc. for a NIfTI DT_* code; "DT_<code>" for codes we do not read.
std::string niftiDatatypeName(int datatypeCode);

// Largest absolute difference between two affines (geometry checks use a 1e-3 mm tolerance).
double affineMaxAbsDiff(const Affine& a, const Affine& b);

}  // namespace lddpm::data
