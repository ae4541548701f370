#pragma once
// Preprocessing of one subject (NIfTI volumes in memory -> SubjectData on the canonical grid) and
// of one rank's shard. The rules (brain mask, tissue k-means, normalisation, downsampling, grid
// placement, patch index) are documented in docs/store.md "Preprocessing". Rank and world size
// arrive as plain ints: the launch layer owns MPI and the barriers around this.
#include <array>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/Json.h"
#include "core/Options.h"
#include "data/Manifest.h"
#include "data/MsLesSeg.h"
#include "data/StoreSchema.h"
#include "data/Volume.h"

namespace lddpm::data {

struct PreprocessOptions {
  std::vector<std::string> channels = {"FLAIR"};  // modalities stored as image channels
  int downsample = 1;                             // integer factor; 1 = none
  std::array<std::int64_t, 3> grid{0, 0, 0};      // (D, H, W); 0 = auto (source rounded up to 16)
  double zmax = 3.0;     // z-scores clipped to [-zmax, zmax], then divided by zmax
  int indexStride = 8;   // patch-index grid step (voxels)
  int indexWindow = 32;  // cube edge over which a patch-index row counts lesion voxels
  StorageOptions storage;
  // Set for stores built from `lddpm sample` output (data/SampledStore.h): where the synthetic
  // scans came from. Part of toJson() under "synthetic" when not null, so a rerun on other samples
  // redoes the shards.
  core::Json synthetic = nullptr;
  // Set for stores made from other stores (`lddpm preprocess --merge`, `--transplant`): which
  // stores, with their manifests' checksums, and how. Part of toJson() under "derived_from" when
  // not null, so a rerun on changed inputs redoes the shards.
  core::Json derivedFrom = nullptr;

  // Every parameter that changes the stored voxels, as canonical JSON: stored in each shard and
  // the manifest; a rerun reuses a shard only when this matches exactly.
  core::Json toJson() const;
  // The inverse of toJson() (a manifest's "parameters"); IoError-free: missing keys keep defaults.
  static PreprocessOptions fromJson(const core::Json& json);
  void validate() const;  // UsageError naming the option
};

// PreprocessOptions on a command line (`lddpm preprocess`): describe() registers each option with
// the struct's own default, the lists, grid and compression as text; resolve() parses and
// validates them. The defaults live in PreprocessOptions alone.
struct PreprocessArguments {
  PreprocessArguments();
  PreprocessOptions options;
  std::string channels;     // comma-separated modalities
  std::string grid;         // DxHxW or auto
  std::string compression;  // none | deflate | lz4 | zstd

  core::po::options_description describe();
  // The options with the text fields parsed; UsageError naming the option.
  PreprocessOptions resolve() const;
  // The options that describe preprocessing itself (a store built from samples takes them from
  // its source store, so giving one there is a usage error rather than silently ignored).
  static const std::vector<std::string>& names();
};

// One subject's input volumes, keyed by modality name ("FLAIR", "T1", "T2"), plus its lesion mask.
struct SubjectVolumes {
  std::string id, split, patient, timepoint;
  std::map<std::string, Volume> images;
  Volume mask;
  std::string source;  // where it came from (folder or file), for error messages
};

// Runs every rule on one subject. Errors (empty brain, NaN/Inf voxels, non-binary mask, shape
// mismatch, brain larger than --grid) throw core::Error naming the subject and its source.
SubjectData preprocessSubject(const SubjectVolumes& input, const PreprocessOptions& options);

// A subject to preprocess: its identity now, its voxels on demand (so a rank loads only its own).
// A source with `prepared` set is already on the canonical grid (a synthetic scan made from a
// store's masks): preprocessShard writes what it returns as is, and never calls `load`.
struct SubjectSource {
  std::string id;
  std::function<SubjectVolumes()> load;
  std::function<SubjectData()> prepared = {};
};

// What a store built from other stores (samples, a merge, a transplant) is written from: the
// parameters its manifest records and its subjects, sorted by id, every one `prepared`.
struct StorePlan {
  PreprocessOptions options;
  std::vector<SubjectSource> sources;
};

// Fills subject.patchIndex and subject.lesionVoxels from its tissue and lesion masks with its
// indexStride and indexWindow (docs/store.md "Preprocessing": stride-s grid points inside the
// brain, each with the lesion voxels of the window around it).
void indexLesions(SubjectData& subject);

// A scan of an MSLesSeg folder as a source: loading reads its four NIfTI files and runs
// checkScanConsistency on them (shape/affine agreement, NaN/Inf, binary mask, empty brain).
SubjectSource scanSource(const ScanRecord& scan);

// The indices (into `ids`, which must be sorted) that rank `rank` of `worldSize` preprocesses:
// round-robin, so subject data never depends on the rank count, only which shard holds it.
std::vector<std::size_t> assignSubjects(std::size_t count, int rank, int worldSize);

struct ShardResult {
  std::string file;  // shard file name in the store, empty when this rank had no subject
  std::size_t subjects = 0;
  bool reused = false;  // a complete, matching shard from an earlier run was kept
};

// Preprocesses this rank's share of `subjects` (sorted by id) into STORE/shard-<rank>.h5, written
// under a temporary name and renamed when complete. A complete shard from an earlier run is kept
// when its parameters and subject list match and, if `previous` (the earlier manifest) lists it,
// its size and checksum still match.
ShardResult preprocessShard(const PreprocessOptions& options, const std::string& storeDir,
                            const std::vector<SubjectSource>& subjects, int rank, int worldSize,
                            const std::optional<Manifest>& previous = std::nullopt);

// The shard files a run with `subjectCount` subjects on `worldSize` ranks produces.
std::vector<std::string> expectedShards(std::size_t subjectCount, int worldSize);

namespace detail {  // the rules, exposed for tests
// 3-class 1-D k-means; returns centres ascending and sets `labels` (0..2) in that order.
std::array<double, 3> kmeans3(const torch::Tensor& values, torch::Tensor& labels);
torch::Tensor downsampleMean(const torch::Tensor& x, int f);    // [D, H, W] float
torch::Tensor downsampleAny(const torch::Tensor& mask, int f);  // [D, H, W] uint8
torch::Tensor downsampleMajority(const torch::Tensor& labels, int f, int classes);
// Voxels of `mask` [D, H, W] in the cube of edge `window` around each centre [N, 3] -> [N].
torch::Tensor boxCounts(const torch::Tensor& mask, const torch::Tensor& centres, int window);
}  // namespace detail

}  // namespace lddpm::data
