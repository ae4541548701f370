#include "launch/evaluation/ImageEvaluation.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>

#include "core/Error.h"
#include "core/Log.h"
#include "core/Progress.h"
#include "core/Text.h"
#include "data/Manifest.h"
#include "data/NiftiIo.h"
#include "data/ShardReader.h"
#include "launch/evaluation/Summary.h"

namespace lddpm::launch::evaluation {
namespace fs = std::filesystem;
namespace po = core::po;

namespace {

constexpr const char* kCommand = "lddpm evaluate images";

bool isStore(const std::string& path) {
  return fs::is_directory(path) && fs::exists(data::manifestPath(path));
}

// "P5.nii.gz" -> "P5"; empty when the name is not a NIfTI file name.
std::string niftiStem(const std::string& name) {
  for (const std::string suffix : {".nii.gz", ".nii"}) {
    if (name.size() > suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      return name.substr(0, name.size() - suffix.size());
    }
  }
  return {};
}

std::string shapeText(const torch::Tensor& t) {
  return core::strCat(t.size(2), "x", t.size(1), "x", t.size(0));
}

// readNifti hands NaN/Inf voxels through (so `inspect` can show them); a metric over them would
// be a silent NaN, so here they are an error naming the file.
torch::Tensor readFinite(const std::string& path) {
  const data::Volume v = data::readNifti(path);
  if (!torch::isfinite(v.data).all().item<bool>()) {
    LDDPM_THROW(core::Error, "evaluate: '", path, "' holds NaN or infinite voxels");
  }
  return v.data;
}

// One case's voxels from one source: the image and, from a store, its tissue and lesion masks.
struct CaseVolumes {
  torch::Tensor image;
  torch::Tensor tissue;
  torch::Tensor lesion;
  std::string where;  // file or "store: id", for messages
};

// A set of volumes by case id: one NIfTI file (a single case, whatever its id), a folder of
// <id>.nii[.gz] files, or a store's split.
class VolumeSet {
 public:
  enum class Kind { File, Folder, Store };

  VolumeSet(std::string path, const data::Split split) : path_(std::move(path)) {
    if (isStore(path_)) {
      kind_ = Kind::Store;
      store_.emplace(path_);
      for (const auto& s : data::readManifest(path_).subjectsOf(split)) {
        ids_.push_back(s.id);
        entryOf_[s.id] = s;
      }
    } else if (fs::is_directory(path_)) {
      kind_ = Kind::Folder;
      for (const auto& entry : fs::directory_iterator(path_)) {
        const std::string id = niftiStem(entry.path().filename().string());
        // Hidden names are a killed writer's temporaries (.NAME.tmp-PID-N.nii.gz), not cases.
        if (!entry.is_regular_file() || id.empty() || id[0] == '.') continue;
        if (!files_.emplace(id, entry.path().string()).second) {
          LDDPM_THROW(core::Error, "evaluate: '", path_, "' holds both ", id, ".nii and ", id,
                      ".nii.gz");
        }
        ids_.push_back(id);
      }
      std::sort(ids_.begin(), ids_.end());
    } else {
      kind_ = Kind::File;
      ids_.push_back(fs::path(path_).filename().string());
    }
  }

  Kind kind() const { return kind_; }
  const std::string& path() const { return path_; }
  const std::vector<std::string>& ids() const { return ids_; }
  bool has(const std::string& id) const {
    return kind_ == Kind::File || std::find(ids_.begin(), ids_.end(), id) != ids_.end();
  }

  CaseVolumes read(const std::string& id) {
    CaseVolumes out;
    if (kind_ == Kind::File) {
      out.where = path_;
      out.image = readFinite(path_);
    } else if (kind_ == Kind::Folder) {
      out.where = files_.at(id);
      out.image = readFinite(out.where);
    } else {
      const data::SubjectData subject = store_->readSubject(entryOf_.at(id));
      out.where = core::strCat(path_, " (subject ", id, ")");
      out.image = subject.image[0].contiguous();
      out.tissue = subject.tissue;
      out.lesion = subject.lesion;
    }
    return out;
  }

 private:
  std::string path_;
  Kind kind_ = Kind::File;
  std::vector<std::string> ids_;
  std::map<std::string, std::string> files_;           // folder: id -> file
  std::map<std::string, data::SubjectEntry> entryOf_;  // store: id -> its manifest entry
  std::optional<data::StoreReader> store_;             // store: its shards, opened on first use
};

void checkShape(const CaseVolumes& v, const CaseVolumes& real) {
  if (!v.image.sizes().equals(real.image.sizes())) {
    LDDPM_THROW(core::Error, "evaluate: shape mismatch: '", v.where, "' is ", shapeText(v.image),
                " but '", real.where, "' is ", shapeText(real.image), " (nx x ny x nz)");
  }
}

struct NamedSource {
  std::string name;
  std::string path;
};

NamedSource parseGenerator(const std::string& value) {
  const auto eq = value.find('=');
  NamedSource g;
  g.path = eq == std::string::npos ? value : value.substr(eq + 1);
  g.name = eq == std::string::npos ? fs::path(g.path).lexically_normal().filename().string()
                                   : value.substr(0, eq);
  if (g.name.empty() || g.name == "." || g.path.empty()) {
    LDDPM_THROW(core::UsageError, kCommand, ": option '--synthetic': '", value,
                "' is not PATH or NAME=PATH");
  }
  return g;
}

// Every case id of `real` must be in `set`, and, when the real scans are a folder too, `set` must
// hold no other scan: a generator that skipped or invented a case would otherwise shift every
// mean quietly. (Real scans from a store pick their cases by --split: a folder sampled from the
// whole store may hold the other split's cases too.)
void checkSameCases(const VolumeSet& real, const VolumeSet& set, const std::string& option) {
  if (set.kind() == VolumeSet::Kind::File) return;
  std::vector<std::string> missing, extra;
  for (const auto& id : real.ids()) {
    if (!set.has(id)) missing.push_back(id);
  }
  if (set.kind() == VolumeSet::Kind::Folder && real.kind() == VolumeSet::Kind::Folder) {
    for (const auto& id : set.ids()) {
      if (!real.has(id)) extra.push_back(id);
    }
  }
  if (missing.empty() && extra.empty()) return;
  std::string message = "evaluate: cases present on one side only:";
  if (!missing.empty())
    message +=
        " not in " + option + " '" + set.path() + "': " + core::joinStrings(missing, ", ") + ";";
  if (!extra.empty())
    message += " only in '" + set.path() + "': " + core::joinStrings(extra, ", ") + ";";
  throw core::Error(message);
}

}  // namespace

po::options_description ImageEvaluationOptions::describe() {
  po::options_description desc("evaluate images options");
  // clang-format off
  desc.add_options()
      ("real", po::value(&real)->required()->value_name("PATH"),
       "real scans: a NIfTI file, a folder of them, or a store (its --split; masks from the store)")
      ("split", po::value(&split)->default_value(split), "store split when --real is a store: train | test | all")
      ("synthetic", po::value(&synthetic)->required()->composing()->value_name("[NAME=]PATH"),
       "a generator's scans: a file, a folder with the real scans' names, or a store (a twin "
       "cohort); repeat for several, NAME labels its rows (default: the folder's name)")
      ("mask", po::value(&lesion)->value_name("PATH"),
       "lesion mask(s) when --real is a file or folder (nonzero = lesion)")
      ("brain-mask", po::value(&brain)->value_name("PATH"),
       "brain mask(s) (nonzero = brain); default: --tissue > 0 or lesion, else nonzero voxels of --real")
      ("tissue", po::value(&tissue)->value_name("PATH"),
       "tissue labels (1 CSF, 2 GM, 3 WM) for contrasts, texture and the reference rows")
      ("reference-store", po::value(&referenceStore)->value_name("STORE"),
       "store whose train split gives the constant and class-mean reference rows; default: --real "
       "when it is a store; 'none': no reference rows")
      ("data-range", po::value(&dataRange)->default_value(dataRange)->value_name("L"),
       "intensity range L for PSNR and SSIM; 0 = max - min of each real scan")
      ("ssim-window", po::value(&ssimWindow)->default_value(ssimWindow)->value_name("N"),
       "SSIM Gaussian window side in voxels (odd; sigma stays 1.5)");
  // clang-format on
  return desc;
}

void ImageEvaluationOptions::validate() const {
  const auto fail = [](const char* option, const std::string& why) {
    LDDPM_THROW(core::UsageError, kCommand, ": option '--", option, "': ", why);
  };
  const auto requireExists = [&](const char* option, const std::string& path) {
    if (!path.empty() && !fs::exists(path)) fail(option, "no such file or folder: '" + path + "'");
  };
  requireExists("real", real);
  for (const auto& g : synthetic) requireExists("synthetic", parseGenerator(g).path);
  requireExists("mask", lesion);
  requireExists("brain-mask", brain);
  requireExists("tissue", tissue);
  data::parseSplit(split);
  const bool store = isStore(real);
  const bool folders = fs::is_directory(real);
  const auto requireKind = [&](const char* option, const std::string& path) {
    if (path.empty()) return;
    if (store) fail(option, "not with a store as --real (the store holds the masks)");
    if (fs::is_directory(path) != folders) {
      fail(option, core::strCat("'", path, "' is a ", folders ? "file" : "folder",
                                " but --real is a ", folders ? "folder" : "file"));
    }
  };
  requireKind("mask", lesion);
  requireKind("brain-mask", brain);
  requireKind("tissue", tissue);
  for (const auto& g : synthetic) {
    const std::string path = parseGenerator(g).path;
    if (!folders && fs::is_directory(path)) {
      fail("synthetic", "'" + path + "' is a folder but --real is a file");
    }
    if (folders && !fs::is_directory(path)) {
      fail("synthetic", "'" + path + "' is a file but --real is a folder or store");
    }
  }
  std::set<std::string> names;
  for (const auto& g : synthetic) {
    if (!names.insert(parseGenerator(g).name).second) {
      fail("synthetic",
           "the name '" + parseGenerator(g).name + "' is used twice (label as NAME=PATH)");
    }
  }
  if (!referenceStore.empty() && referenceStore != "none" && !isStore(referenceStore)) {
    fail("reference-store", "'" + referenceStore + "' is not a store (no manifest.json)");
  }
  if (dataRange < 0) fail("data-range", core::strCat("must be >= 0, got ", dataRange));
  if (ssimWindow < 1 || ssimWindow % 2 == 0) {
    fail("ssim-window", core::strCat("must be odd and positive, got ", ssimWindow));
  }
}

torch::Tensor constantReference(const torch::Tensor& tissue, const torch::Tensor& lesion,
                                const ClassMeans& means) {
  const torch::Tensor brain = (tissue != 0) | (lesion != 0);
  return torch::where(brain, torch::full({}, means.brain, torch::kFloat64),
                      torch::full({}, means.background, torch::kFloat64))
      .to(torch::kFloat32);
}

torch::Tensor classMeanReference(const torch::Tensor& tissue, const torch::Tensor& lesion,
                                 const ClassMeans& means) {
  const torch::Tensor labels = tissue.to(torch::kInt64);
  torch::Tensor out = torch::full(tissue.sizes(), means.background, torch::kFloat64);
  out.masked_fill_(labels == models::kCsfLabel, means.csf);
  out.masked_fill_(labels == models::kGreyMatterLabel, means.greyMatter);
  out.masked_fill_(labels == models::kWhiteMatterLabel, means.whiteMatter);
  out.masked_fill_(lesion != 0, means.lesion);
  return out.to(torch::kFloat32);
}

namespace {

// The volume sets an evaluation reads: the real scans, each generator, the optional masks; every
// set checked to hold the real scans' cases.
struct Inputs {
  Inputs(const ImageEvaluationOptions& o, data::Split split) : real(o.real, split) {
    if (real.ids().empty()) {
      LDDPM_THROW(core::Error, "evaluate: no ",
                  real.kind() == VolumeSet::Kind::Store ? "'" + o.split + "' subjects"
                                                        : "NIfTI files (.nii, .nii.gz)",
                  " in --real '", o.real, "'");
    }
    for (const auto& g : o.synthetic) {
      names.push_back(parseGenerator(g));
      generators.emplace_back(names.back().path, split);
      checkSameCases(real, generators.back(), "--synthetic");
    }
    const auto maskSet = [&](const std::string& path, const char* option) {
      if (path.empty()) return std::unique_ptr<VolumeSet>();
      auto set = std::make_unique<VolumeSet>(path, split);
      checkSameCases(real, *set, option);
      return set;
    };
    lesion = maskSet(o.lesion, "--mask");
    brain = maskSet(o.brain, "--brain-mask");
    tissue = maskSet(o.tissue, "--tissue");
  }

  VolumeSet real;
  std::vector<NamedSource> names;
  std::vector<VolumeSet> generators;
  std::unique_ptr<VolumeSet> lesion, brain, tissue;
};

// The real scan of case `id`, checked to have an SSIM window and an intensity range, with its
// regions (from the store, or from the mask sets).
CaseVolumes readRealCase(Inputs& in, const std::string& id, const ImageEvaluationOptions& o,
                         models::CaseRegions& regions) {
  CaseVolumes r = in.real.read(id);
  const auto& size = r.image.sizes();
  if (*std::min_element(size.begin(), size.end()) < o.ssimWindow) {
    LDDPM_THROW(core::Error, "evaluate: '", r.where, "' (", shapeText(r.image),
                ") is smaller than the SSIM window on some side (--ssim-window ", o.ssimWindow,
                ")");
  }
  if (o.dataRange == 0 && (r.image.max() - r.image.min()).item<double>() <= 0) {
    LDDPM_THROW(core::Error, "evaluate: '", r.where,
                "' is constant, so it has no intensity range for PSNR/SSIM: give --data-range");
  }
  regions = {r.lesion, {}, r.tissue};
  const auto mask = [&](std::unique_ptr<VolumeSet>& set) {
    if (!set) return torch::Tensor();
    CaseVolumes v = set->read(id);
    checkShape(v, r);
    return v.image;
  };
  if (in.lesion) regions.lesion = mask(in.lesion);
  if (in.brain) regions.brain = mask(in.brain);
  if (in.tissue) regions.tissue = mask(in.tissue).round();
  return r;
}

// Scores case `id` for every generator, then the references; appends to `out`.
void scoreCase(Inputs& in, const std::string& id, const ImageEvaluationOptions& o,
               const ClassMeans& means, ImageEvaluation& out) {
  models::CaseRegions regions;
  const CaseVolumes r = readRealCase(in, id, o, regions);
  out.real.push_back(
      regions.tissue.defined()
          ? models::tissueStatistics(r.image, regions.tissue, regions.lesion)
          : models::TissueStatistics{std::nan(""), std::nan(""), std::nan(""), std::nan("")});
  const auto ssim = models::SsimOptions().windowSize(o.ssimWindow).dataRange(o.dataRange);
  const auto score = [&](const torch::Tensor& synthetic, const std::string& where) {
    try {
      return models::imageMetrics(r.image, synthetic, regions, ssim);
    } catch (const c10::Error& e) {  // a precondition we did not foresee: keep it short
      LDDPM_THROW(core::Error, "evaluate: case '", id, "' (", where,
                  "): ", e.what_without_backtrace());
    }
  };
  const std::size_t n = in.generators.size();
  for (std::size_t g = 0; g < n; ++g) {
    const CaseVolumes s = in.generators[g].read(id);
    checkShape(s, r);
    out.generators[g].cases.push_back(score(s.image, s.where));
  }
  if (!out.referenceStore.empty()) {
    const torch::Tensor lesionOrNone =
        regions.lesion.defined() ? regions.lesion : torch::zeros_like(regions.tissue);
    out.generators[n].cases.push_back(
        score(constantReference(regions.tissue, lesionOrNone, means), "constant"));
    out.generators[n + 1].cases.push_back(
        score(classMeanReference(regions.tissue, lesionOrNone, means), "class mean"));
  }
}

}  // namespace

ImageEvaluation evaluateImages(const ImageEvaluationOptions& o) {
  Inputs in(o, data::parseSplit(o.split));
  ImageEvaluation out;
  out.cases = in.real.ids();
  if (in.real.kind() == VolumeSet::Kind::File) {
    out.cases = {fs::path(in.names.front().path).filename().string()};
  }
  const bool storeReal = in.real.kind() == VolumeSet::Kind::Store;
  out.referenceStore = o.referenceStore == "none"
                           ? ""
                           : (o.referenceStore.empty() && storeReal ? o.real : o.referenceStore);
  if (!out.referenceStore.empty() && !(storeReal || in.tissue)) {
    LDDPM_LOG(Warn) << "evaluate: no tissue labels (--tissue): no reference rows";
    out.referenceStore.clear();
  }
  ClassMeans means;
  if (!out.referenceStore.empty()) means = data::classMeans(out.referenceStore, data::Split::Train);

  for (std::size_t g = 0; g < in.generators.size(); ++g) {
    out.generators.push_back({in.names[g].name, in.names[g].path, false, {}});
  }
  if (!out.referenceStore.empty()) {
    out.generators.push_back(
        {"constant", "brain mean of " + out.referenceStore + " (train)", true, {}});
    out.generators.push_back(
        {"class mean", "tissue-class means of " + out.referenceStore + " (train)", true, {}});
  }
  core::Progress progress("evaluate images", static_cast<std::int64_t>(in.real.ids().size()));
  std::int64_t done = 0;
  for (const std::string& id : in.real.ids()) {
    progress.update(done, id);  // names the case at work
    scoreCase(in, id, o, means, out);
    ++done;
  }
  progress.finish();
  return out;
}

namespace {

// The reported metrics, in JSON key order and table column order; `summary` marks the columns of
// the summary table (the per-case table has them all).
struct Column {
  const char* key;
  const char* header;
  double (*get)(const models::ImageMetrics&);
  bool summary;
};

const Column kColumns[] = {
    {"mse", "MSE", [](const models::ImageMetrics& m) { return m.mse; }, false},
    {"mae", "MAE", [](const models::ImageMetrics& m) { return m.mae; }, false},
    {"psnr", "PSNR (dB)", [](const models::ImageMetrics& m) { return m.psnr; }, false},
    {"ssim", "SSIM", [](const models::ImageMetrics& m) { return m.ssim; }, true},
    {"ms_ssim", "MS-SSIM", [](const models::ImageMetrics& m) { return m.msSsim; }, true},
    {"ms_ssim_scales", "scales",
     [](const models::ImageMetrics& m) { return static_cast<double>(m.msSsimScales); }, false},
    {"brain_ssim", "brain SSIM", [](const models::ImageMetrics& m) { return m.brainSsim; }, true},
    {"brain_psnr", "brain PSNR", [](const models::ImageMetrics& m) { return m.brainPsnr; }, true},
    {"brain_mae", "brain MAE", [](const models::ImageMetrics& m) { return m.brainMae; }, true},
    {"background_ssim", "bg SSIM", [](const models::ImageMetrics& m) { return m.backgroundSsim; },
     false},
    {"background_psnr", "bg PSNR", [](const models::ImageMetrics& m) { return m.backgroundPsnr; },
     false},
    {"background_mae", "bg MAE", [](const models::ImageMetrics& m) { return m.backgroundMae; },
     true},
    {"lesion_mae", "lesion MAE", [](const models::ImageMetrics& m) { return m.lesionMae; }, true},
    {"lesion_mse", "lesion MSE", [](const models::ImageMetrics& m) { return m.lesionMse; }, false},
};

// Tissue statistics: of the synthetic scan in a generator row, of the real scan in the real row.
struct StatisticColumn {
  const char* key;
  const char* header;
  double (*get)(const models::TissueStatistics&);
};

const StatisticColumn kStatistics[] = {
    {"lesion_contrast", "lesion − WM",
     [](const models::TissueStatistics& s) { return s.lesionContrast; }},
    {"csf_contrast", "CSF − WM", [](const models::TissueStatistics& s) { return s.csfContrast; }},
    {"gm_contrast", "GM − WM", [](const models::TissueStatistics& s) { return s.gmContrast; }},
    {"wm_texture", "WM texture", [](const models::TissueStatistics& s) { return s.wmTexture; }},
};

template <typename Row, typename Get>
std::vector<double> values(const std::vector<Row>& rows, Get get) {
  std::vector<double> out;
  for (const auto& r : rows) out.push_back(get(r));
  return out;
}

std::vector<models::TissueStatistics> statisticsOf(const GeneratorScores& g) {
  std::vector<models::TissueStatistics> out;
  for (const auto& m : g.cases) out.push_back(m.tissue);
  return out;
}

core::Json statisticsJson(const models::TissueStatistics& s) {
  core::Json j;
  for (const auto& c : kStatistics) j[c.key] = number(c.get(s));
  return j;
}

core::Json summaryJson(const std::vector<models::ImageMetrics>& rows, bool sd) {
  core::Json j;
  for (const auto& c : kColumns) {
    const Summary s = summarize(values(rows, c.get));
    j[c.key] = number(sd ? s.sd : s.mean);
  }
  std::vector<models::TissueStatistics> stats;
  for (const auto& m : rows) stats.push_back(m.tissue);
  for (const auto& c : kStatistics) {
    const Summary s = summarize(values(stats, c.get));
    j[c.key] = number(sd ? s.sd : s.mean);
  }
  return j;
}

}  // namespace

core::Json toJson(const ImageEvaluationOptions& o, const ImageEvaluation& e) {
  core::Json out;
  out["mode"] = "images";
  out["real"] = o.real;
  out["split"] = isStore(o.real) ? core::Json(o.split) : core::Json(nullptr);
  out["reference_store"] =
      e.referenceStore.empty() ? core::Json(nullptr) : core::Json(e.referenceStore);
  out["data_range"] = number(o.dataRange > 0 ? o.dataRange : std::nan(""));  // null: per real scan
  out["ssim_window"] = o.ssimWindow;
  out["cases"] = e.cases;
  core::Json real;
  core::Json realCases = core::Json::array();
  for (std::size_t i = 0; i < e.cases.size(); ++i) {
    core::Json row = statisticsJson(e.real[i]);
    row["case"] = e.cases[i];
    realCases.push_back(row);
  }
  real["cases"] = realCases;
  core::Json realMean, realSd;
  for (const auto& c : kStatistics) {
    const Summary s = summarize(values(e.real, c.get));
    realMean[c.key] = number(s.mean);
    realSd[c.key] = number(s.sd);
  }
  real["mean"] = realMean;
  real["sd"] = realSd;
  out["real_statistics"] = real;
  core::Json generators = core::Json::array();
  for (const auto& g : e.generators) {
    core::Json j;
    j["name"] = g.name;
    j["source"] = g.source;
    j["reference"] = g.reference;
    core::Json cases = core::Json::array();
    for (std::size_t i = 0; i < g.cases.size(); ++i) {
      const auto& m = g.cases[i];
      core::Json row;
      row["case"] = e.cases[i];
      for (const auto& c : kColumns) row[c.key] = number(c.get(m));
      row["ms_ssim_scales"] = m.msSsimScales;
      for (const auto& c : kStatistics) row[c.key] = number(c.get(m.tissue));
      cases.push_back(row);
    }
    j["cases"] = cases;
    j["mean"] = summaryJson(g.cases, /*sd=*/false);
    j["sd"] = summaryJson(g.cases, /*sd=*/true);
    generators.push_back(j);
  }
  out["generators"] = generators;
  return out;
}

std::string toMarkdown(const ImageEvaluation& e) {
  std::ostringstream out;
  const bool several = e.cases.size() > 1;
  const auto cell = [&](const std::vector<double>& v) {
    return several ? meanSd(v) : formatValue(summarize(v).mean);
  };
  out << "| " << (several ? "mean ± sd over " + std::to_string(e.cases.size()) + " cases" : "scan")
      << " |";
  for (const auto& c : kColumns) {
    if (c.summary) out << " " << c.header << " |";
  }
  for (const auto& c : kStatistics) out << " " << c.header << " |";
  out << "\n|---|";
  for (const auto& c : kColumns) {
    if (c.summary) out << "---:|";
  }
  for (std::size_t i = 0; i < std::size(kStatistics); ++i) out << "---:|";
  out << "\n| real |";
  for (const auto& c : kColumns) {
    if (c.summary) out << " |";
  }
  for (const auto& c : kStatistics) out << " " << cell(values(e.real, c.get)) << " |";
  out << "\n";
  for (const auto& g : e.generators) {
    out << "| " << g.name << (g.reference ? " (reference)" : "") << " |";
    for (const auto& c : kColumns) {
      if (c.summary) out << " " << cell(values(g.cases, c.get)) << " |";
    }
    const auto stats = statisticsOf(g);
    for (const auto& c : kStatistics) out << " " << cell(values(stats, c.get)) << " |";
    out << "\n";
  }
  out << "\n| case | generator |";
  for (const auto& c : kColumns) out << " " << c.header << " |";
  for (const auto& c : kStatistics) out << " " << c.header << " |";
  out << "\n|---|---|";
  for (std::size_t i = 0; i < std::size(kColumns) + std::size(kStatistics); ++i) out << "---:|";
  out << "\n";
  for (std::size_t i = 0; i < e.cases.size(); ++i) {
    out << "| " << e.cases[i] << " | real |";
    for (std::size_t k = 0; k < std::size(kColumns); ++k) out << " |";
    for (const auto& c : kStatistics) out << " " << formatValue(c.get(e.real[i])) << " |";
    out << "\n";
    for (const auto& g : e.generators) {
      out << "| " << e.cases[i] << " | " << g.name << " |";
      for (const auto& c : kColumns) out << " " << formatValue(c.get(g.cases[i])) << " |";
      for (const auto& c : kStatistics) out << " " << formatValue(c.get(g.cases[i].tissue)) << " |";
      out << "\n";
    }
  }
  return out.str();
}

}  // namespace lddpm::launch::evaluation
