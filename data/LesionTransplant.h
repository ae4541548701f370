#pragma once
// Lesion transplant: new lesion configurations on real anatomies, for synthetic cohorts that go
// beyond the training masks (docs/reproduce.md "Beyond the training masks"). A host subject keeps
// its anatomy (tissue, image, geometry) and receives a donor subject's lesions: each 26-connected
// lesion component of the donor is moved whole, by a random translation, to where every one of
// its voxels lands in the host's white matter. Components keep their shape and size, so the
// donor's lesion count and size distribution carry over; the host's own lesions are dropped.
//
// The result is a mask source for `lddpm sample`: its image is the host's scan, whose own lesions
// are still visible in it and whose new lesions are not, so it is never training data for a
// segmenter as it stands (its manifest's "derived_from" says it was transplanted).
#include <cstdint>
#include <string>

#include "data/Preprocess.h"

namespace lddpm::data {

struct TransplantStats {
  std::int64_t components = 0;    // 26-connected lesion components of the donor
  std::int64_t placed = 0;        // ... placed in the host
  std::int64_t donorVoxels = 0;   // lesion voxels of the donor
  std::int64_t placedVoxels = 0;  // ... of the placed components (the new lesion mask's voxels)
};

// The host with the donor's lesions. The host's white matter is its tissue == kWhiteMatter plus
// its own lesion voxels (white-matter lesions, but dark on T1, so the tissue k-means labels many of
// them grey matter or CSF: docs/store.md; in the phantom store 40 % of lesion voxels are labelled
// white matter). Components are placed largest first; each is tried at up to `tries` positions (its
// first voxel in raster order put on a uniformly drawn white-matter voxel of the host) and placed
// at the first where every voxel is inside the host's brain, at least `minWhiteMatter` of them in
// its white matter, and none in the 26-neighbourhood of a component placed before it (so placed
// components never merge or touch); one that fits nowhere is dropped and counted in `stats`. The
// draws come from `seed` alone. Host and donor must share the grid (IoError naming both ids). The
// returned subject has id `host.id`, the new lesion mask and a patch index rebuilt for it.
SubjectData transplantLesions(const SubjectData& host, const SubjectData& donor, std::uint64_t seed,
                              int tries, double minWhiteMatter, TransplantStats* stats = nullptr);

struct TransplantRequest {
  std::string store;             // a complete store of real scans
  std::string split = "train";   // hosts and donors: the subjects of this split
  std::uint64_t seed = 0;        // donor choice and placements
  std::string idSuffix = "_tp";  // host "P1_T1" is stored as "P1_T1<suffix>"
  int tries = 200;               // placements tried per component
  double minWhiteMatter = 0.5;   // least fraction of a placed component's voxels in white matter
};

// One transplanted subject per subject of the split. Each host's donor is drawn (from `seed` and
// the host's id) among the split's subjects of another patient (any other subject when every one
// is of the same patient). IoError naming the store when it is synthetic or derived, or has fewer
// than two subjects in the split; UsageError naming --id-suffix for an unusable suffix.
StorePlan planTransplantStore(const TransplantRequest& request);

}  // namespace lddpm::data
