#pragma once
// Mean image intensity per voxel class over a split of a store: the values of the class-mean
// and constant references of `lddpm evaluate images`, and of the diffusion models' class-mean
// intensity prior (`--intensity-prior class-mean`, docs/models.md).
#include <string>

#include "data/Manifest.h"

namespace lddpm::data {

// Classes: background (tissue 0, not lesion), CSF, GM, WM (not lesion), lesion; `brain` is the
// mean over tissue > 0 or lesion. Image channel 0 of the store, in its [-1, 1] units.
struct ClassMeans {
  double background = 0, csf = 0, greyMatter = 0, whiteMatter = 0, lesion = 0, brain = 0;
};

// Reads every subject of `split` once, one at a time (memory flat in the cohort size). A class
// absent from those scans (no lesions at all) takes the brain mean. IoError naming the store when
// the split has no subject.
ClassMeans classMeans(const std::string& store, Split split);

}  // namespace lddpm::data
