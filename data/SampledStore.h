#pragma once
// A training store made from `lddpm sample` output, for the downstream-segmentation experiment
// (docs/downstream.md): each sampled case's synthetic FLAIR replaces the image of the subject whose
// masks conditioned it, and everything else (tissue, lesion, patch index, geometry) is copied from
// that subject of the source store, so a segmenter trains on synthetic images with the true masks.
#include <string>
#include <vector>

#include "data/Preprocess.h"

namespace lddpm::data {

// Synthetic subjects are stored as "<id>_syn", so that a store can hold the real scan and its
// synthetic copy side by side.
inline constexpr const char* kSyntheticSuffix = "_syn";

struct SampledStoreRequest {
  std::string samples;        // a finished `lddpm sample --out` folder (synthetic/, sampling.json)
  std::string sourceStore;    // the store `lddpm sample --store` read the masks from
  std::string split = "all";  // keep only cases whose source subject has this split (or all)
  bool withReal = false;      // also copy each sampled case's real subject (real + synthetic)
  std::string idSuffix = kSyntheticSuffix;  // synthetic case "P1_T1" is stored as "P1_T1<suffix>"
};

// The plan: the source store's parameters + "synthetic" provenance. Checks the request (IoError
// naming the folder or case: no sampling.json, a case the source store does not hold, no case left
// after the split filter) and lists the subjects to write. Voxels are read later, by whichever rank
// writes the subject: the synthetic volume must have the source grid's shape and finite values
// (else IoError naming the file). Only the first image channel of the source is kept (the
// generators synthesise FLAIR, the source's first channel).
StorePlan planSampledStore(const SampledStoreRequest& request);

}  // namespace lddpm::data
