#pragma once
// The phantom cohort: MSLesSeg-shaped FLAIR/T1/T2/MASK scans synthesised from one real brain
// (Colin27, Debian's mricron-data) so the whole pipeline can run with no patient data. A
// development and demo cohort, not a substitute for real scans (docs/data.md "Phantom").
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/Options.h"
#include "data/Volume.h"

namespace lddpm::data {

inline constexpr const char* kDefaultPhantomTemplate = "/usr/share/mricron/templates/ch2bet.nii.gz";
inline constexpr const char* kDefaultPhantomAtlas =
    "/usr/share/mricron/templates/JHU-WhiteMatter-labels-1mm.nii.gz";

struct PhantomOptions {
  int trainSubjects = 4;  // P1..Pn, each with `timepoints` scans T1..Tk
  int testSubjects = 2;   // P(n+1)..P(n+m), one scan each (MSLesSeg's test split has no T{k})
  int timepoints = 2;
  std::uint64_t seed = 0;
  std::string templatePath = kDefaultPhantomTemplate;  // T1 brain, skull-stripped
  std::string atlasPath = kDefaultPhantomAtlas;        // WM labels; its grid is the output grid
  double voxelSize = 1.0;  // mm; 1 gives MSLesSeg's 182x218x182, larger gives quick small cohorts
  int minLesions = 0;      // per subject at the first timepoint
  int maxLesions = 40;
  int gzipLevel = 1;  // zlib level of the .nii.gz files (1: fast, noise barely compresses)

  // The options bound to these members, each with its current value as the default.
  core::po::options_description describe();
  // UsageError naming the option when a value is out of range.
  void validate() const;
};

// Tissue classes of the phantom's anatomy (what `tissue` holds in a PhantomScan).
enum TissueClass : std::uint8_t { kBackground = 0, kCsf = 1, kGreyMatter = 2, kWhiteMatter = 3 };

// One generated scan, in memory. Images are float32 on the output grid; mask and tissue hold
// 0/1 and TissueClass values (as float32, like every Volume).
struct PhantomScan {
  std::string split;      // "train" | "test"
  std::string patient;    // "P3"
  std::string timepoint;  // "T1".. or empty for test
  std::string id;         // "P3_T1" or "P5"
  Volume flair, t1, t2, mask, tissue;
  int lesions = 0;  // connected lesion components in `mask`
};

// Builds the shared anatomy once (template and atlas resampled onto the output grid through their
// affines, tissue classes by 3-class k-means of the template, lesion-site maps), then generates
// subjects. Everything is a function of (options, subject index): never of rank or thread count.
class PhantomGenerator {
 public:
  explicit PhantomGenerator(PhantomOptions options);
  ~PhantomGenerator();
  PhantomGenerator(const PhantomGenerator&) = delete;
  PhantomGenerator& operator=(const PhantomGenerator&) = delete;

  const PhantomOptions& options() const { return options_; }
  int subjectCount() const { return options_.trainSubjects + options_.testSubjects; }
  // All scans of subject `index` (0-based; train subjects first). Timepoints share the subject's
  // anatomy and evolve its lesions (grow, shrink, disappear, appear). A `twin` is the same
  // subject (anatomy, lesions, masks) scanned again: independent tissue-intensity, bias-field and
  // noise draws — what a perfect generator conditioned on the masks would produce.
  std::vector<PhantomScan> generateSubject(int index, bool twin = false) const;
  // Writes subject `index` (or its twin) into `root` in MSLesSeg layout (train/P{n}/T{k}/...,
  // test/P{n}/...).
  void writeSubject(int index, const std::string& root, bool twin = false) const;

  // The shared anatomy on the output grid (for tests and docs): template intensity and classes.
  const Volume& templateOnGrid() const;
  const Volume& tissueOnGrid() const;

 private:
  struct Anatomy;
  PhantomOptions options_;
  std::unique_ptr<Anatomy> anatomy_;
};

// Resamples `src` onto a grid of `shape` (nx, ny, nz) with voxel->world `affine`, through both
// affines; outside `src` is 0. Linear or nearest-neighbour (for labels).
Volume resampleToGrid(const Volume& src, const Affine& affine,
                      const std::array<std::int64_t, 3>& shape, bool nearest);

}  // namespace lddpm::data
