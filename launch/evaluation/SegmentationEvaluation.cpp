#include "launch/evaluation/SegmentationEvaluation.h"

#include <filesystem>
#include <set>
#include <sstream>

#include "core/Error.h"
#include "core/Log.h"
#include "core/Progress.h"
#include "data/NiftiIo.h"
#include "data/ShardReader.h"
#include "launch/engine/TrainedModel.h"
#include "launch/evaluation/Summary.h"
#include "models/Metrics.h"
#include "models/Segmenter.h"

namespace lddpm::launch::evaluation {
namespace fs = std::filesystem;
namespace po = core::po;

namespace {
constexpr const char* kCommand = "evaluate";
}  // namespace

po::options_description SegmentationOptions::describe() {
  SegmentationOptions& o = *this;
  po::options_description desc("evaluate segmentation options");
  // clang-format off
  desc.add_options()
      ("run", po::value(&o.runs)->required()->composing()->value_name("[NAME=]DIR"),
       "a trained seg run (its newest checkpoint); repeat for several, NAME labels its row "
       "(default: the folder's name)")
      ("store", po::value(&o.store)->required()->value_name("STORE"),
       "store holding the scans to segment and their true lesion masks")
      ("split", po::value(&o.split)->default_value(o.split), "train | test | all")
      ("window", po::value(&o.window)->default_value(o.window)->value_name("N"),
       "sliding-window edge (voxels); 0 = each run's training --patch (the grid when 0)")
      ("overlap", po::value(&o.overlap)->default_value(o.overlap),
       "fraction of a window shared with its neighbour (Gaussian blending)")
      ("window-batch", po::value(&o.windowBatch)->default_value(o.windowBatch)->value_name("N"),
       "windows per forward pass; the same result at any N, 1 is the fastest on the CPU, more "
       "helps a GPU")
      ("weights", po::value(&o.weights)->default_value(o.weights), "ema | model")
      ("cases", po::value(&o.maxCases)->default_value(o.maxCases), "only the first N cases; 0 = all")
      ("save-predictions", po::bool_switch(&o.savePredictions),
       "with --out: write each predicted mask as DIR/predictions/NAME/<case>.nii.gz");
  // clang-format on
  return desc;
}

std::vector<NamedRun> parseRuns(const std::vector<std::string>& values) {
  std::vector<NamedRun> runs;
  std::set<std::string> names;
  for (const std::string& v : values) {
    const auto eq = v.find('=');
    NamedRun r;
    r.dir = eq == std::string::npos ? v : v.substr(eq + 1);
    r.name = eq == std::string::npos ? fs::path(r.dir).lexically_normal().filename().string()
                                     : v.substr(0, eq);
    if (r.name.empty() || r.dir.empty()) {
      LDDPM_THROW(core::UsageError, "lddpm ", kCommand, ": option '--run': '", v,
                  "' is not DIR or NAME=DIR");
    }
    if (!fs::is_directory(r.dir)) {
      LDDPM_THROW(core::UsageError, "lddpm ", kCommand, ": option '--run': no such folder: '",
                  r.dir, "'");
    }
    if (!names.insert(r.name).second) {
      LDDPM_THROW(core::UsageError, "lddpm ", kCommand, ": option '--run': the name '", r.name,
                  "' is used twice (label runs as NAME=DIR)");
    }
    runs.push_back(r);
  }
  return runs;
}

void SegmentationOptions::validate() const {
  const SegmentationOptions& o = *this;
  const auto fail = [](const char* option, const std::string& why) {
    LDDPM_THROW(core::UsageError, "lddpm ", kCommand, ": option '--", option, "': ", why);
  };
  if (!fs::is_directory(o.store)) fail("store", "no such folder: '" + o.store + "'");
  data::parseSplit(o.split);
  if (o.weights != "ema" && o.weights != "model") {
    fail("weights", "'" + o.weights + "' is not ema or model");
  }
  if (o.window < 0) fail("window", "must be >= 0");
  if (!(o.overlap >= 0 && o.overlap < 1)) fail("overlap", "must be in [0, 1)");
  if (o.windowBatch < 1) fail("window-batch", "must be >= 1");
  if (o.maxCases < 0) fail("cases", "must be >= 0");
  if (o.savePredictions && o.out.empty()) fail("save-predictions", "needs --out");
}

namespace {

// The per-case numbers, in JSON key order; a case's row travels between ranks as these doubles.
struct ScoreField {
  const char* key;
  double (*get)(const models::SegmentationScores&);
};

const ScoreField kScoreFields[] = {
    {"dice", [](const models::SegmentationScores& s) { return s.dice; }},
    {"lesion_ml", [](const models::SegmentationScores& s) { return s.trueVolume; }},
    {"predicted_ml", [](const models::SegmentationScores& s) { return s.predictedVolume; }},
    {"lesions",
     [](const models::SegmentationScores& s) { return static_cast<double>(s.trueLesions); }},
    {"detected_lesions",
     [](const models::SegmentationScores& s) { return static_cast<double>(s.detectedLesions); }},
    {"predicted_lesions",
     [](const models::SegmentationScores& s) { return static_cast<double>(s.predictedLesions); }},
    {"lesion_sensitivity", [](const models::SegmentationScores& s) { return s.lesionSensitivity; }},
    {"lesion_precision", [](const models::SegmentationScores& s) { return s.lesionPrecision; }},
};
constexpr std::int64_t kFieldCount = static_cast<std::int64_t>(std::size(kScoreFields));

std::string setting(const TrainedModel& m, const std::string& key) {
  const auto it = m.settings.find(key);
  return it == m.settings.end() ? std::string() : it->second;
}

// Scans of `split` in the store a run trained on (the run's config.ini names it).
std::int64_t trainingScans(const std::string& store, const std::string& split) {
  try {
    return static_cast<std::int64_t>(
        data::readManifest(store).subjectsOf(data::parseSplit(split)).size());
  } catch (const core::Error& e) {
    LDDPM_LOG(Warn) << "training store of a run: " << e.what();
    return -1;
  }
}

RunScores scoreRun(const NamedRun& run, const SegmentationOptions& o,
                   const std::vector<data::SubjectEntry>& cases, dist::Communicator& comm) {
  const TrainedModel trained =
      loadTrainedModel(newestCheckpointOfRun(kCommand, run.dir), o.weights);
  auto segmenter = std::dynamic_pointer_cast<models::SegmenterImpl>(trained.model);
  if (!segmenter) {
    LDDPM_THROW(core::UsageError, "lddpm ", kCommand, ": option '--run': '", run.dir,
                "' trained model '", trained.config.model, "', not seg");
  }
  RunScores out;
  out.run = run;
  out.checkpoint = trained.checkpoint;
  out.trainingStore = setting(trained, "store");
  out.trainingSplit = setting(trained, "split");
  out.trainingScans = trainingScans(out.trainingStore, out.trainingSplit);
  out.window = o.window;
  if (out.window == 0) {
    const std::string patch = setting(trained, "patch");
    out.window = patch.empty() ? 0 : std::stoll(patch);
  }
  if (out.window % segmenter->sizeDivisor() != 0) {
    LDDPM_THROW(core::UsageError, "lddpm ", kCommand, ": option '--window': ", out.window,
                " is not a multiple of ", segmenter->sizeDivisor(), " (the U-Net of '", run.dir,
                "' halves each side that often)");
  }

  const fs::path predictions = fs::path(o.out) / "predictions" / run.name;
  if (o.savePredictions && comm.rank() == 0) fs::create_directories(predictions);
  comm.barrier()->wait();

  torch::Tensor rows =
      torch::zeros({static_cast<std::int64_t>(cases.size()), kFieldCount}, torch::kFloat64);
  data::StoreReader store(o.store);
  std::int64_t mine = 0;
  for (size_t i = static_cast<size_t>(comm.rank()); i < cases.size(); i += comm.size()) ++mine;
  core::Progress progress("evaluate segmentation " + run.name, mine);
  std::int64_t done = 0;
  torch::NoGradGuard noGrad;
  for (size_t i = static_cast<size_t>(comm.rank()); i < cases.size(); i += comm.size()) {
    const data::SubjectEntry& c = cases[i];
    const data::SubjectData subject = store.readSubject(c);
    const auto& grid = subject.lesion.sizes();
    std::vector<std::int64_t> window(3, out.window);
    if (out.window == 0) {  // whole volumes: the grid, rounded up to what the U-Net divides
      const std::int64_t d = segmenter->sizeDivisor();
      for (int a = 0; a < 3; ++a) window[a] = (grid[a] + d - 1) / d * d;
    }
    const torch::Tensor probability = segmenter->predict(
        subject.image.narrow(0, 0, 1).unsqueeze(0),
        models::SlidingWindowOptions().window(window).overlap(o.overlap).windowBatch(
            o.windowBatch))[0][0];
    const double voxelMl = subject.spacing[0] * subject.spacing[1] * subject.spacing[2] / 1000.0;
    const models::SegmentationScores scores =
        models::segmentationScores(probability, subject.lesion, voxelMl);
    for (std::int64_t f = 0; f < kFieldCount; ++f) {
      rows[static_cast<std::int64_t>(i)][f] = kScoreFields[f].get(scores);
    }
    if (o.savePredictions) {
      data::Volume volume;
      volume.affine = subject.affine;
      volume.spacing = subject.spacing;
      volume.data = probability.gt(0.5).to(torch::kFloat32).contiguous();
      data::writeNifti((predictions / (c.id + ".nii.gz")).string(), volume,
                       data::NiftiDtype::UInt8);
    }
    progress.update(++done, c.id);
  }
  progress.finish();
  // Every rank but a case's owner holds zeros in its row, so the sum is the owner's row exactly
  // (NaN included: NaN + 0 is NaN).
  comm.allreduce(rows, dist::ReduceOp::Sum)->wait();
  out.rows = rows;
  return out;
}

std::vector<double> column(const RunScores& r, std::int64_t field) {
  std::vector<double> values;
  for (std::int64_t i = 0; i < r.rows.size(0); ++i)
    values.push_back(r.rows[i][field].item<double>());
  return values;
}

}  // namespace

SegmentationEvaluation evaluateSegmentation(const SegmentationOptions& o,
                                            dist::Communicator& comm) {
  const std::vector<NamedRun> runs = parseRuns(o.runs);
  SegmentationEvaluation evaluation;
  evaluation.cases = data::readManifest(o.store).casesOf(o.split, o.maxCases, o.store);
  for (const NamedRun& run : runs)
    evaluation.runs.push_back(scoreRun(run, o, evaluation.cases, comm));
  return evaluation;
}

core::Json toJson(const SegmentationOptions& o, const SegmentationEvaluation& evaluation) {
  const auto& cases = evaluation.cases;
  const auto& results = evaluation.runs;
  core::Json out;
  out["mode"] = "segmentation";
  out["store"] = o.store;
  out["split"] = o.split;
  out["weights"] = o.weights;
  out["overlap"] = o.overlap;
  out["threshold"] = 0.5;
  core::Json runs = core::Json::array();
  for (const RunScores& r : results) {
    core::Json run;
    run["name"] = r.run.name;
    run["run"] = r.run.dir;
    run["checkpoint"] = r.checkpoint;
    run["training_store"] = r.trainingStore;
    run["training_split"] = r.trainingSplit;
    run["training_scans"] = r.trainingScans < 0 ? core::Json(nullptr) : core::Json(r.trainingScans);
    run["window"] = r.window;
    core::Json list = core::Json::array();
    for (size_t i = 0; i < cases.size(); ++i) {
      core::Json row;
      row["case"] = cases[i].id;
      for (std::int64_t f = 0; f < kFieldCount; ++f) {
        row[kScoreFields[f].key] = number(r.rows[static_cast<std::int64_t>(i)][f].item<double>());
      }
      list.push_back(row);
    }
    run["cases"] = list;
    core::Json mean, sd;
    for (std::int64_t f = 0; f < kFieldCount; ++f) {
      const Summary s = summarize(column(r, f));
      mean[kScoreFields[f].key] = number(s.mean);
      sd[kScoreFields[f].key] = number(s.sd);
    }
    run["mean"] = mean;
    run["sd"] = sd;
    runs.push_back(run);
  }
  out["runs"] = runs;
  return out;
}

std::string toMarkdown(const SegmentationEvaluation& evaluation) {
  const auto& cases = evaluation.cases;
  const auto& results = evaluation.runs;
  std::ostringstream out;
  out << "| training set | training scans | test scans | Dice mean ± sd | lesion sensitivity | "
         "lesion precision |\n|---|---:|---:|---:|---:|---:|\n";
  for (const RunScores& r : results) {
    out << "| " << r.run.name << " | "
        << (r.trainingScans < 0 ? std::string("n/a") : std::to_string(r.trainingScans)) << " | "
        << cases.size() << " | " << meanSd(column(r, 0)) << " | " << meanSd(column(r, 6)) << " | "
        << meanSd(column(r, 7)) << " |\n";
  }
  out << "\n| case | lesion mL |";
  for (const RunScores& r : results) out << " Dice " << r.run.name << " |";
  out << "\n|---|---:|";
  for (size_t k = 0; k < results.size(); ++k) out << "---:|";
  out << "\n";
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto at = [&](const RunScores& r, std::int64_t f) {
      return formatValue(r.rows[static_cast<std::int64_t>(i)][f].item<double>());
    };
    out << "| " << cases[i].id << " | " << at(results.front(), 1) << " |";
    for (const RunScores& r : results) out << " " << at(r, 0) << " |";
    out << "\n";
  }
  return out.str();
}

}  // namespace lddpm::launch::evaluation
