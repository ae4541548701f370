#pragma once
// `lddpm evaluate segmentation`: trained `seg` runs scored on a store split — per-case Dice, lesion
// volumes, lesion-wise sensitivity/precision, mean ± sd per run. The scoring step of the
// downstream experiment (launch/downstream.sh: a segmenter trained on synthetic scans, tested on
// real ones). Ranks split the cases. Definitions: docs/metrics.md, docs/downstream.md.
#include <cstdint>
#include <string>
#include <vector>

#include "core/Json.h"
#include "core/Options.h"
#include "data/Manifest.h"
#include "distributed/Communicator.h"

namespace lddpm::launch::evaluation {

// A --run value: the run folder and the name its row gets.
struct NamedRun {
  std::string name;
  std::string dir;
};

struct SegmentationOptions {
  std::vector<std::string> runs;  // "NAME=DIR" or "DIR" (name: the folder's name)
  std::string store;
  std::string split = "test";
  std::string weights = "ema";
  std::string out;          // the report folder (predictions/ under it)
  std::int64_t window = 0;  // 0: each run's training patch edge
  double overlap = 0.5;
  std::int64_t windowBatch = 1;  // windows per forward pass
  std::int64_t maxCases = 0;
  bool savePredictions = false;

  // The options bound to this struct's members (--out is the report's, bound by the command).
  core::po::options_description describe();
  // UsageError naming the option (before any run is loaded).
  void validate() const;
};

// One run's result: rows [cases, fields] float64, in the order of the per-case JSON keys.
struct RunScores {
  NamedRun run;
  std::string checkpoint;
  std::string trainingStore;  // from the run's config.ini
  std::string trainingSplit;
  std::int64_t trainingScans = -1;  // -1: the training store cannot be read any more
  std::int64_t window = 0;
  torch::Tensor rows;
};

struct SegmentationEvaluation {
  std::vector<data::SubjectEntry> cases;
  std::vector<RunScores> runs;
};

// `--run` values ([NAME=]DIR) as named runs; UsageError on a missing folder or a repeated name.
std::vector<NamedRun> parseRuns(const std::vector<std::string>& values);

// Every rank of `comm` calls it; every rank returns the whole result (rows are all-reduced).
SegmentationEvaluation evaluateSegmentation(const SegmentationOptions& options,
                                            dist::Communicator& comm);

core::Json toJson(const SegmentationOptions& options, const SegmentationEvaluation& evaluation);
// A summary table (Dice, lesion sensitivity/precision per run), then Dice per case.
std::string toMarkdown(const SegmentationEvaluation& evaluation);

}  // namespace lddpm::launch::evaluation
