// `lddpm evaluate <mode>`: how close synthetic scans are to real ones. Mode `images` reports the
// metrics of models/Metrics.h for one or more generators against real scans (files, folders or a
// store), beside reference rows (launch/evaluation/ImageEvaluation.h). Mode `segmentation` scores
// trained `seg` runs on a store split (per-case Dice, lesion volumes, lesion-wise
// sensitivity/precision, mean ± sd per run): the scoring step of the downstream experiment that
// launch/downstream.sh drives (a segmenter trained on synthetic scans, tested on real ones).
// Definitions: docs/metrics.md, docs/downstream.md.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <set>
#include <sstream>

#include "core/AtomicFile.h"
#include "core/Error.h"
#include "core/Json.h"
#include "core/Log.h"
#include "core/Progress.h"
#include "data/Manifest.h"
#include "data/NiftiIo.h"
#include "data/ShardReader.h"
#include "distributed/Communicator.h"
#include "distributed/World.h"
#include "launch/Command.h"
#include "launch/engine/TrainedModel.h"
#include "launch/evaluation/DenoisingDiagnostic.h"
#include "launch/evaluation/ImageEvaluation.h"
#include "launch/evaluation/Summary.h"
#include "models/Metrics.h"
#include "models/Segmenter.h"

namespace lddpm::launch {

namespace {

using evaluation::formatValue;
using evaluation::meanSd;
using evaluation::number;
using evaluation::summarize;
using evaluation::Summary;

namespace fs = std::filesystem;

constexpr const char* kCommand = "evaluate";

// --json and --out, which every mode has (emitReport writes what they ask for).
void addReportOptions(po::options_description& desc, const std::string& mode, bool& json,
                      std::string& out) {
  desc.add_options()("json", po::bool_switch(&json), "print JSON instead of markdown")(
      "out", po::value(&out)->value_name("DIR"),
      ("also write " + mode + ".json, " + mode + ".md and config.ini into DIR").c_str());
}

// A mode's result: on stdout (markdown, or JSON with --json) and, with --out DIR, as
// DIR/<mode>.json, DIR/<mode>.md and DIR/config.ini (its header says how to re-run), each atomic.
int emitReport(const std::string& mode, const std::string& out, bool asJson,
               const core::ParsedOptions& parsed, const po::options_description& own,
               const core::Json& json, const std::string& markdown) {
  if (!out.empty()) {
    writeCommandConfig(out, std::string(kCommand) + " " + mode, parsed, own);
    core::writeJsonFile((fs::path(out) / (mode + ".json")).string(), json);
    core::writeFileAtomic((fs::path(out) / (mode + ".md")).string(), markdown);
    LDDPM_LOG(Info) << "wrote " << out << "/" << mode << ".json and " << mode << ".md";
  }
  std::cout << (asJson ? json.dump(2) + "\n" : markdown);
  return 0;
}

int runImages(const CommandArgs& args) {
  evaluation::ImageEvaluationOptions o;
  bool json = false;
  std::string out;
  po::options_description own = o.describe();
  addReportOptions(own, "images", json, out);
  const auto parsed = parseCommand(
      kCommand,
      "images --real PATH|STORE --synthetic [NAME=]PATH [--synthetic ...] [--mask PATH] "
      "[--tissue PATH] [--json] [--out DIR]",
      args, own);
  if (!parsed) return 0;
  o.validate();
  // One process does the whole evaluation; under mpirun the other ranks have nothing to do.
  if (dist::World::get().rank() != 0) return 0;
  const evaluation::ImageEvaluation result = evaluation::evaluateImages(o);
  return emitReport("images", out, json, *parsed, own, evaluation::toJson(o, result),
                    evaluation::toMarkdown(result));
}

// ---- evaluate segmentation -------------------------------------------------------------------

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
  std::string out;
  std::int64_t window = 0;  // 0: each run's training patch edge
  double overlap = 0.5;
  std::int64_t maxCases = 0;
  bool json = false;
  bool savePredictions = false;
};

po::options_description describeSegmentationOptions(SegmentationOptions& o) {
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
      ("weights", po::value(&o.weights)->default_value(o.weights), "ema | model")
      ("cases", po::value(&o.maxCases)->default_value(o.maxCases), "only the first N cases; 0 = all")
      ("save-predictions", po::bool_switch(&o.savePredictions),
       "with --out: write each predicted mask as DIR/predictions/NAME/<case>.nii.gz");
  // clang-format on
  addReportOptions(desc, "segmentation", o.json, o.out);
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

void checkSegmentationOptions(const SegmentationOptions& o) {
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
  if (o.maxCases < 0) fail("cases", "must be >= 0");
  if (o.savePredictions && o.out.empty()) fail("save-predictions", "needs --out");
}

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

// One run's result: rows [cases, kFieldCount] float64 in kScoreFields order.
struct RunScores {
  NamedRun run;
  std::string checkpoint;
  std::string trainingStore;  // from the run's config.ini
  std::string trainingSplit;
  std::int64_t trainingScans = -1;  // -1: the training store cannot be read any more
  std::int64_t window = 0;
  torch::Tensor rows;
};

std::string setting(const TrainedModel& m, const std::string& key) {
  const auto it = m.settings.find(key);
  return it == m.settings.end() ? std::string() : it->second;
}

// Scans of `split` in the store a run trained on (the run's config.ini names it).
std::int64_t trainingScans(const std::string& store, const std::string& split) {
  try {
    std::int64_t n = 0;
    for (const auto& s : data::readManifest(store).subjects) n += (s.split == split) ? 1 : 0;
    return n;
  } catch (const core::Error& e) {
    LDDPM_LOG(Warn) << "training store of a run: " << e.what();
    return -1;
  }
}

RunScores scoreRun(const NamedRun& run, const SegmentationOptions& o,
                   const std::vector<data::SubjectEntry>& cases, dist::Communicator& comm) {
  const dist::World& world = dist::World::get();
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
  if (o.savePredictions && world.rank() == 0) fs::create_directories(predictions);
  comm.barrier()->wait();

  torch::Tensor rows =
      torch::zeros({static_cast<std::int64_t>(cases.size()), kFieldCount}, torch::kFloat64);
  std::map<std::string, std::unique_ptr<data::ShardReader>> readers;
  std::int64_t mine = 0;
  for (size_t i = static_cast<size_t>(world.rank()); i < cases.size(); i += world.size()) ++mine;
  core::Progress progress("evaluate segmentation " + run.name, mine);
  std::int64_t done = 0;
  torch::NoGradGuard noGrad;
  for (size_t i = static_cast<size_t>(world.rank()); i < cases.size(); i += world.size()) {
    const data::SubjectEntry& c = cases[i];
    auto& reader = readers[c.shard];
    if (!reader)
      reader = std::make_unique<data::ShardReader>((fs::path(o.store) / c.shard).string());
    const data::SubjectData subject = reader->readSubject(c.id);
    const auto& grid = subject.lesion.sizes();
    std::vector<std::int64_t> window(3, out.window);
    if (out.window == 0) {  // whole volumes: the grid, rounded up to what the U-Net divides
      const std::int64_t d = segmenter->sizeDivisor();
      for (int a = 0; a < 3; ++a) window[a] = (grid[a] + d - 1) / d * d;
    }
    const torch::Tensor probability =
        segmenter->predict(subject.image.narrow(0, 0, 1).unsqueeze(0),
                           models::SlidingWindowOptions().window(window).overlap(o.overlap))[0][0];
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

core::Json renderSegmentationJson(const SegmentationOptions& o,
                                  const std::vector<data::SubjectEntry>& cases,
                                  const std::vector<RunScores>& results) {
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

std::string renderSegmentationMarkdown(const std::vector<data::SubjectEntry>& cases,
                                       const std::vector<RunScores>& results) {
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

int runSegmentation(const CommandArgs& args) {
  SegmentationOptions o;
  const po::options_description own = describeSegmentationOptions(o);
  const auto parsed = parseCommand(
      kCommand,
      "segmentation --run [NAME=]DIR [--run ...] --store STORE [--split test] [--json] [--out DIR]",
      args, own);
  if (!parsed) return 0;
  checkSegmentationOptions(o);
  const std::vector<NamedRun> runs = parseRuns(o.runs);

  std::vector<data::SubjectEntry> cases;
  for (const auto& s : data::readManifest(o.store).subjects) {
    if (o.split == "all" || s.split == o.split) cases.push_back(s);
  }
  if (cases.empty())
    throw core::IoError(o.store, "has no '" + o.split + "' cases (option --split)");
  if (o.maxCases > 0 && static_cast<std::int64_t>(cases.size()) > o.maxCases) {
    cases.resize(static_cast<size_t>(o.maxCases));
  }

  dist::World& world = dist::World::get();
  auto comm = dist::makeCommunicator(dist::Backend::Auto, world);
  std::vector<RunScores> results;
  for (const NamedRun& run : runs) results.push_back(scoreRun(run, o, cases, *comm));
  if (world.rank() != 0) return 0;

  const core::Json json = renderSegmentationJson(o, cases, results);
  const std::string markdown = renderSegmentationMarkdown(cases, results);
  return emitReport("segmentation", o.out, o.json, *parsed, own, json, markdown);
}

int runDenoising(const CommandArgs& args) {
  evaluation::DenoisingOptions o;
  bool json = false;
  std::string out;
  po::options_description own = o.describe();
  addReportOptions(own, "denoising", json, out);
  const auto parsed = parseCommand(
      kCommand,
      "denoising --run DIR --store STORE [--split test] [--timesteps LIST] [--json] [--out DIR]",
      args, own);
  if (!parsed) return 0;
  o.validate();
  if (dist::World::get().rank() != 0) return 0;
  const evaluation::DenoisingReport report = evaluation::diagnoseDenoising(o);
  return emitReport("denoising", out, json, *parsed, own, evaluation::toJson(report),
                    evaluation::toMarkdown(report));
}

struct Mode {
  const char* name;
  const char* summary;
  int (*run)(const CommandArgs& args);
};

const Mode kModes[] = {
    {"images",
     "image metrics of generators vs real scans (whole-grid, brain, background, lesion; "
     "contrasts, texture) beside constant, class-mean and twin references",
     &runImages},
    {"denoising",
     "one-step x̂0 of a trained diffusion model from noised real scans at several t, per region "
     "(what to run when samples look wrong)",
     &runDenoising},
    {"segmentation",
     "Dice, lesion volumes and lesion-wise detection of trained seg runs on a store split",
     &runSegmentation},
};

void printModes(std::ostream& out) {
  out << "Usage: lddpm evaluate <mode> [options]     (lddpm evaluate <mode> --help)\n\nModes:\n";
  for (const Mode& m : kModes) {
    out << "  " << std::left << std::setw(16) << m.name << m.summary << "\n";
  }
}

}  // namespace

int runEvaluate(const CommandArgs& args) {
  if (args.empty() || args[0].rfind('-', 0) == 0) {
    if (!args.empty() && (args[0] == "--help" || args[0] == "-h")) {
      if (dist::World::get().rank() == 0) printModes(std::cout);
      return 0;
    }
    LDDPM_THROW(core::UsageError,
                "lddpm evaluate: expected a mode first, e.g. 'lddpm evaluate "
                "images --real A --synthetic B' (modes: see --help)");
  }
  for (const Mode& m : kModes) {
    if (args[0] == m.name) return m.run(CommandArgs(args.begin() + 1, args.end()));
  }
  LDDPM_THROW(core::UsageError, "lddpm evaluate: '", args[0],
              "' is not a mode (see 'lddpm evaluate --help')");
}

}  // namespace lddpm::launch
