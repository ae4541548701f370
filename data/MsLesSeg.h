#pragma once
// MSLesSeg folder discovery and per-scan consistency checks. The layout (docs/data.md):
//   train/P{n}/T{k}/P{n}_T{k}_{FLAIR,T1,T2,MASK}.nii.gz   test/P{n}/P{n}_{FLAIR,T1,T2,MASK}.nii.gz
// Files are matched by their exact expected names, never by suffix: timepoint "T1" is not
// modality "T1" (P1_T1_T2.nii.gz is the T2 of timepoint T1).
#include <map>
#include <string>
#include <vector>

#include "data/Volume.h"

namespace lddpm::data {

enum class Modality { Flair, T1, T2, Mask };
inline constexpr Modality kAllModalities[] = {Modality::Flair, Modality::T1, Modality::T2,
                                              Modality::Mask};

// "FLAIR", "T1", "T2", "MASK": the spelling used in MSLesSeg file names.
std::string modalityName(Modality m);

struct ScanRecord {
  std::string split;                      // "train" | "test"
  std::string patient;                    // "P12"
  std::string timepoint;                  // "T1".. for train, empty for test
  std::string id;                         // "P12_T1" or "P60": unique within a dataset
  std::map<Modality, std::string> files;  // every modality, absolute-or-as-given paths
};

struct DatasetIndex {
  std::string root;  // the folder that holds train/ and/or test/ (after a doubled top folder)
  std::vector<ScanRecord> scans;  // train before test, patients and timepoints in numeric order
};

// Finds every scan under `dir`. Tolerates the zip's doubled top folder (dir/X/train, dir/X/X/...)
// and .nii as well as .nii.gz. Throws core::Error listing every missing modality (folder and the
// file name expected there) when any scan is incomplete, and when no scan is found at all.
DatasetIndex discoverMsLesSeg(const std::string& dir);

// The cheap part of the checks, from headers only (no voxel is read): every modality readable as
// one 3-D volume, same shape and affine (1e-3 mm). Throws core::Error listing every problem.
void checkScanHeaders(const ScanRecord& scan);

// Reads every modality of `scan` and checks, naming the files: same shape and affine (1e-3 mm)
// across modalities, no NaN/Inf voxel, a binary MASK (0/1 only), a non-empty brain (FLAIR not
// all zero). Throws core::Error listing every problem found.
void checkScanConsistency(const ScanRecord& scan);

// The same checks on volumes already in memory (keyed by modality; `scan` supplies file names),
// for callers that read the volumes anyway and should not read them twice.
void checkScanConsistency(const ScanRecord& scan, const std::map<Modality, Volume>& volumes);

}  // namespace lddpm::data
