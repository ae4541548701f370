#pragma once
// A store holding the subjects of several stores (`lddpm preprocess --merge`): real and synthetic
// training sets side by side, e.g. the real scans plus k synthetic cohorts for the experiment
// beyond the training masks (docs/reproduce.md). Subjects are copied as they are stored.
#include <string>
#include <vector>

#include "data/Preprocess.h"

namespace lddpm::data {

struct MergeRequest {
  std::vector<std::string> stores;  // complete stores, at least two
  std::string split = "all";        // keep only subjects of this split (or all)
};

// The merged store's plan: the first store's parameters with "derived_from" naming every input
// (path and manifest checksum) and "synthetic" listing the inputs' own synthetic provenance when
// any has one (so a merged store with synthetic scans is never taken for a real one). IoError
// naming the store when one is not complete, was preprocessed differently from the first (grid,
// channels, downsampling, normalisation, patch index), holds a subject id another store holds too,
// or contributes no subject of the split; UsageError when fewer than two stores are given.
StorePlan planMergedStore(const MergeRequest& request);

}  // namespace lddpm::data
