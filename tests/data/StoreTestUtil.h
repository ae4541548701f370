#pragma once
// Synthetic subjects for store and loader tests: tiny grids, deterministic content, a lesion blob
// inside a brain ellipsoid, so tests run in milliseconds and need no NIfTI input.
#include <torch/torch.h>

#include <filesystem>
#include <string>
#include <vector>

#include "data/Manifest.h"
#include "data/Preprocess.h"
#include "data/ShardWriter.h"
#include "data/StoreSchema.h"
#include "tests/common/TempDir.h"

namespace lddpm::data::testing {

using lddpm::testing::TempDir;

// Grid [D, H, W]; brain = ellipsoid; tissue = 3 concentric shells; lesion = small cube at
// `lesionAt` (none when lesionEdge == 0).
inline SubjectData syntheticSubject(const std::string& id, std::array<std::int64_t, 3> grid,
                                    std::uint64_t seed, std::int64_t lesionEdge = 3) {
  torch::manual_seed(seed);
  const auto [D, H, W] = grid;
  auto z = torch::arange(D, torch::kFloat32).view({D, 1, 1}).sub((D - 1) / 2.0).div(D / 2.0);
  auto y = torch::arange(H, torch::kFloat32).view({1, H, 1}).sub((H - 1) / 2.0).div(H / 2.0);
  auto x = torch::arange(W, torch::kFloat32).view({1, 1, W}).sub((W - 1) / 2.0).div(W / 2.0);
  auto r = (z * z + y * y + x * x).sqrt();
  SubjectData s;
  s.id = id;
  s.split = "train";
  s.patient = id.substr(0, id.find('_'));
  s.timepoint = id.find('_') == std::string::npos ? "" : id.substr(id.find('_') + 1);
  s.channels = {"FLAIR"};
  s.tissue = torch::zeros({D, H, W}, torch::kUInt8);
  s.tissue.masked_fill_(r < 0.9, kCsf);
  s.tissue.masked_fill_(r < 0.7, kGreyMatter);
  s.tissue.masked_fill_(r < 0.5, kWhiteMatter);
  s.lesion = torch::zeros({D, H, W}, torch::kUInt8);
  if (lesionEdge > 0) {
    const std::int64_t cz = D / 2 - 1, cy = H / 2 + 1, cx = W / 2;
    s.lesion.slice(0, cz, cz + lesionEdge)
        .slice(1, cy, cy + lesionEdge)
        .slice(2, cx, cx + lesionEdge)
        .fill_(1);
  }
  s.image = (torch::rand({1, D, H, W}) * 2 - 1) * s.tissue.gt(0).unsqueeze(0).to(torch::kFloat32);
  s.image.masked_fill_(s.tissue.eq(0).unsqueeze(0), -1.0f);
  s.lesionVoxels = s.lesion.nonzero().to(torch::kInt32);
  s.patchIndex = torch::cat(
      {s.tissue.gt(0).nonzero().slice(0, 0, 50).to(torch::kInt32),
       torch::ones({std::min<std::int64_t>(50, s.tissue.gt(0).sum().item<std::int64_t>()), 1},
                   torch::kInt32)},
      1);
  s.affine = scaledAffine({2, 2, 2});
  s.affine[3] = -10;
  s.spacing = {2, 2, 2};
  s.sourceShape = {D * 2, H * 2, W * 2};
  s.cropOffset = {1, -2, 0};
  s.downsample = 2;
  s.normMean = {123.5};
  s.normStd = {17.25};
  s.tissueMeans = {10, 20, 30};
  return s;
}

// A complete one-shard store at `store` holding `subjects` (FLAIR, the first subject's grid),
// written with ShardWriter under `options`' parameters; returns `store`.
inline std::string writeOneShardStore(const std::string& store,
                                      const std::vector<SubjectData>& subjects,
                                      const PreprocessOptions& options = PreprocessOptions()) {
  std::filesystem::create_directories(store);
  const std::array<std::int64_t, 3> grid = {subjects[0].lesion.size(0), subjects[0].lesion.size(1),
                                            subjects[0].lesion.size(2)};
  ShardWriter writer((std::filesystem::path(store) / shardFileName(0)).string(),
                     ShardHeader{0, options.toJson().dump(), {"FLAIR"}, grid}, {});
  for (const auto& s : subjects) writer.add(s);
  writer.commit();
  writeManifest(store, buildManifest(store, {shardFileName(0)}));
  return store;
}

// Writes a planned store (samples, merge, transplant) into the fresh folder `out` as one rank
// would, manifest last, and returns the manifest read back.
inline Manifest writePlannedStore(const StorePlan& plan, const std::string& out) {
  std::filesystem::remove_all(out);
  std::filesystem::create_directories(out);
  preprocessShard(plan.options, out, plan.sources, /*rank=*/0, /*worldSize=*/1);
  writeManifest(out, buildManifest(out, {shardFileName(0)}));
  return readManifest(out);
}

}  // namespace lddpm::data::testing
