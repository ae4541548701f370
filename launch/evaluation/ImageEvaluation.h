#pragma once
// `lddpm evaluate images`: synthetic scans against real ones, case by case, for any number of
// generators side by side and beside reference rows that say what a number is worth: a constant
// inside the brain (a floor), the class mean (each voxel's tissue class → its mean training
// intensity: the pixelwise best without texture) and, when given as a generator, a twin (the same
// phantom subject rendered again: what a perfect generator scores). Definitions: docs/metrics.md.
#include <string>
#include <vector>

#include "core/Json.h"
#include "core/Options.h"
#include "data/ClassMeans.h"
#include "models/Metrics.h"

namespace lddpm::launch::evaluation {

struct ImageEvaluationOptions {
  // Real scans: one NIfTI file, a folder of <case>.nii[.gz], or a store (its --split; tissue and
  // lesion masks then come from the store).
  std::string real;
  std::string split = "test";
  // One per generator, [NAME=]PATH: a file, a folder holding the real scans' file names, or a
  // store holding the real scans' subject ids (a twin cohort). NAME defaults to the folder name.
  std::vector<std::string> synthetic;
  // Masks when --real is a file or folder (the same kind): lesion, brain, tissue labels.
  std::string lesion;
  std::string brain;
  std::string tissue;
  // Store whose train split gives the constant and class-mean references; "" = --real when it is
  // a store, "none" = no reference rows. Reference rows need tissue labels.
  std::string referenceStore;
  double dataRange = 0;
  int ssimWindow = 11;

  // Options bound to this struct's members (it must stay in place until parsed).
  core::po::options_description describe();
  // UsageError naming the option: paths that do not exist, masks of the wrong kind, ranges.
  void validate() const;
};

// One generator's (or reference's) metrics, in ImageEvaluation::cases order.
struct GeneratorScores {
  std::string name;
  std::string source;      // the path it was read from, or how a reference was made
  bool reference = false;  // computed from the reference store, not a generator's output
  std::vector<models::ImageMetrics> cases;
};

struct ImageEvaluation {
  std::vector<std::string> cases;  // case ids (file names for a single pair of files)
  std::string referenceStore;      // empty when there are no reference rows
  // The real scans' own tissue statistics (contrasts and texture a generator should match);
  // NaN without tissue labels.
  std::vector<models::TissueStatistics> real;
  std::vector<GeneratorScores> generators;  // as given, then the references
};

// Reads every case once and scores every generator on it. core::Error naming the file or case on
// unreadable, mismatched or non-finite volumes and on cases missing from a generator.
ImageEvaluation evaluateImages(const ImageEvaluationOptions& options);

core::Json toJson(const ImageEvaluationOptions& options, const ImageEvaluation& evaluation);
// A summary table (mean ± sd per generator, the real scans' statistics first), then every case.
std::string toMarkdown(const ImageEvaluation& evaluation);

// The class means of the references: data::classMeans of the reference store's train split.
using data::ClassMeans;
// The reference volumes for one case's tissue labels and lesion mask [D, H, W].
torch::Tensor constantReference(const torch::Tensor& tissue, const torch::Tensor& lesion,
                                const ClassMeans& means);
torch::Tensor classMeanReference(const torch::Tensor& tissue, const torch::Tensor& lesion,
                                 const ClassMeans& means);

}  // namespace lddpm::launch::evaluation
