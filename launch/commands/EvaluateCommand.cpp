// `lddpm evaluate <mode>`: how close synthetic scans are to real ones. Mode `images` reports the
// metrics of models/Metrics.h on two NIfTI files or on two folders of matching file names (one
// row per case, then mean ± sd). A second mode, `downstream` (a segmenter trained on synthetic
// scans, tested on real ones), joins kModes when it exists. Definitions: docs/metrics.md.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <set>
#include <sstream>

#include "core/AtomicFile.h"
#include "core/Error.h"
#include "core/Json.h"
#include "core/Log.h"
#include "core/Progress.h"
#include "data/NiftiIo.h"
#include "distributed/World.h"
#include "launch/Command.h"
#include "models/Metrics.h"

namespace lddpm::launch {

namespace {

namespace fs = std::filesystem;

constexpr const char* kCommand = "evaluate";

struct ImagesOptions {
  std::string real;
  std::string synthetic;
  std::string mask;       // lesion mask(s): nonzero voxels are lesion
  std::string brainMask;  // anatomical mask(s): nonzero voxels are brain
  std::string out;        // optional folder for images.json, images.md, config.ini
  double dataRange = 0;
  int ssimWindow = 11;
  bool json = false;
};

po::options_description describeImagesOptions(ImagesOptions& o) {
  po::options_description desc("evaluate images options");
  // One option per line reads better than the formatter's layout of the chained calls.
  // clang-format off
  desc.add_options()
      ("real", po::value(&o.real)->required()->value_name("PATH"),
       "real scan: a NIfTI file, or a folder of them")
      ("synthetic", po::value(&o.synthetic)->required()->value_name("PATH"),
       "synthetic scan(s): a file, or a folder holding the same file names as --real")
      ("mask", po::value(&o.mask)->value_name("PATH"),
       "lesion mask(s) for lesion_mae / lesion_mse (nonzero = lesion); a folder when --real is")
      ("brain-mask", po::value(&o.brainMask)->value_name("PATH"),
       "anatomical mask(s) for brain_mae (nonzero = brain); default: nonzero voxels of --real")
      ("data-range", po::value(&o.dataRange)->default_value(o.dataRange)->value_name("L"),
       "intensity range L for PSNR and SSIM; 0 = max - min of each real scan")
      ("ssim-window", po::value(&o.ssimWindow)->default_value(o.ssimWindow)->value_name("N"),
       "SSIM Gaussian window side in voxels (odd; sigma stays 1.5)")
      ("json", po::bool_switch(&o.json), "print JSON instead of a markdown table")
      ("out", po::value(&o.out)->value_name("DIR"),
       "also write images.json, images.md and config.ini into DIR");
  // clang-format on
  return desc;
}

// One real/synthetic pair and its optional masks (empty path = not given).
struct Case {
  std::string name;
  std::string real;
  std::string synthetic;
  std::string lesion;
  std::string brain;
};

bool isNifti(const fs::path& p) {
  const std::string name = p.filename().string();
  const auto endsWith = [&](const std::string& suffix) {
    return name.size() > suffix.size() &&
           name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  return endsWith(".nii") || endsWith(".nii.gz");
}

// The NIfTI file names directly inside `dir`, sorted.
std::set<std::string> niftiNames(const std::string& dir) {
  std::set<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.is_regular_file() && isNifti(entry.path())) names.insert(entry.path().filename());
  }
  return names;
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

// Usage checks (exit 2): every given path exists, and masks are folders exactly when the scans are.
void checkPaths(const ImagesOptions& o) {
  const auto requireExists = [](const char* option, const std::string& path) {
    if (!path.empty() && !fs::exists(path)) {
      LDDPM_THROW(core::UsageError, "lddpm ", kCommand, ": option '--", option,
                  "': no such file or folder: '", path, "'");
    }
  };
  requireExists("real", o.real);
  requireExists("synthetic", o.synthetic);
  requireExists("mask", o.mask);
  requireExists("brain-mask", o.brainMask);
  const bool folders = fs::is_directory(o.real);
  const auto requireKind = [&](const char* option, const std::string& path) {
    if (!path.empty() && fs::is_directory(path) != folders) {
      LDDPM_THROW(core::UsageError, "lddpm ", kCommand, ": option '--", option, "': '", path,
                  "' is a ", folders ? "file" : "folder", " but --real is a ",
                  folders ? "folder" : "file");
    }
  };
  requireKind("synthetic", o.synthetic);
  requireKind("mask", o.mask);
  requireKind("brain-mask", o.brainMask);
  if (o.dataRange < 0) {
    LDDPM_THROW(core::UsageError, "lddpm ", kCommand, ": option '--data-range' must be >= 0, got ",
                o.dataRange);
  }
  if (o.ssimWindow < 1 || o.ssimWindow % 2 == 0) {
    LDDPM_THROW(core::UsageError, "lddpm ", kCommand,
                ": option '--ssim-window' must be odd and positive, got ", o.ssimWindow);
  }
}

// The cases to evaluate: one pair of files, or every file name of the --real folder, which the
// --synthetic folder (and any mask folder) must hold too.
std::vector<Case> collectCases(const ImagesOptions& o) {
  if (!fs::is_directory(o.real)) {
    return {Case{fs::path(o.synthetic).filename(), o.real, o.synthetic, o.mask, o.brainMask}};
  }
  const std::set<std::string> real = niftiNames(o.real);
  const std::set<std::string> synthetic = niftiNames(o.synthetic);
  if (real.empty()) {
    LDDPM_THROW(core::Error, "evaluate: no NIfTI files (.nii, .nii.gz) in --real folder '", o.real,
                "'");
  }
  std::vector<std::string> onlyReal, onlySynthetic;
  std::set_difference(real.begin(), real.end(), synthetic.begin(), synthetic.end(),
                      std::back_inserter(onlyReal));
  std::set_difference(synthetic.begin(), synthetic.end(), real.begin(), real.end(),
                      std::back_inserter(onlySynthetic));
  if (!onlyReal.empty() || !onlySynthetic.empty()) {
    std::string message = "evaluate: cases present on one side only:";
    if (!onlyReal.empty()) message += " only in '" + o.real + "': " + join(onlyReal) + ";";
    if (!onlySynthetic.empty()) {
      message += " only in '" + o.synthetic + "': " + join(onlySynthetic) + ";";
    }
    throw core::Error(message);
  }
  const auto maskPath = [](const std::string& dir, const char* option, const std::string& name) {
    if (dir.empty()) return std::string();
    const fs::path p = fs::path(dir) / name;
    if (!fs::is_regular_file(p)) {
      LDDPM_THROW(core::Error, "evaluate: --", option, " folder '", dir, "' has no '", name,
                  "' for the case of that name");
    }
    return p.string();
  };
  std::vector<Case> cases;
  for (const std::string& name : real) {
    cases.push_back({name, (fs::path(o.real) / name).string(),
                     (fs::path(o.synthetic) / name).string(), maskPath(o.mask, "mask", name),
                     maskPath(o.brainMask, "brain-mask", name)});
  }
  return cases;
}

std::string shapeText(const data::Volume& v) {
  return core::strCat(v.nx(), "x", v.ny(), "x", v.nz());
}

// readNifti hands NaN/Inf voxels through (so `inspect` can show them); a metric over them would
// be a silent NaN, so here they are an error naming the file.
data::Volume readFinite(const std::string& path) {
  data::Volume v = data::readNifti(path);
  if (!torch::isfinite(v.data).all().item<bool>()) {
    LDDPM_THROW(core::Error, "evaluate: '", path, "' holds NaN or infinite voxels");
  }
  return v;
}

// Reads `path` and checks that it has the real scan's shape; the error names both files.
data::Volume readLike(const std::string& path, const data::Volume& real,
                      const std::string& realPath) {
  data::Volume v = readFinite(path);
  if (!v.data.sizes().equals(real.data.sizes())) {
    LDDPM_THROW(core::Error, "evaluate: shape mismatch: '", path, "' is ", shapeText(v), " but '",
                realPath, "' is ", shapeText(real), " (nx x ny x nz)");
  }
  if (data::affineMaxAbsDiff(v.affine, real.affine) > 1e-3) {
    LDDPM_LOG(Warn) << path << ": affine differs from " << realPath
                    << "; comparing voxel by voxel anyway";
  }
  return v;
}

models::ImageMetrics evaluateCase(const Case& c, const ImagesOptions& o) {
  const data::Volume real = readFinite(c.real);
  const data::Volume synthetic = readLike(c.synthetic, real, c.real);
  torch::Tensor lesion, brain;
  if (!c.lesion.empty()) lesion = readLike(c.lesion, real, c.real).data;
  if (!c.brain.empty()) brain = readLike(c.brain, real, c.real).data;

  const auto& size = real.data.sizes();
  if (*std::min_element(size.begin(), size.end()) < o.ssimWindow) {
    LDDPM_THROW(core::Error, "evaluate: '", c.real, "' (", shapeText(real),
                ") is smaller than the SSIM window on some side (--ssim-window ", o.ssimWindow,
                ")");
  }
  if (o.dataRange == 0 && (real.data.max() - real.data.min()).item<double>() <= 0) {
    LDDPM_THROW(core::Error, "evaluate: '", c.real,
                "' is constant, so it has no intensity range for PSNR/SSIM: give --data-range");
  }
  const auto ssim = models::SsimOptions().windowSize(o.ssimWindow).dataRange(o.dataRange);
  try {
    return models::imageMetrics(real.data, synthetic.data, lesion, brain, ssim);
  } catch (const c10::Error& e) {  // a precondition we did not foresee: keep the message short
    LDDPM_THROW(core::Error, "evaluate: case '", c.name, "': ", e.what_without_backtrace());
  }
}

// The reported metrics, in JSON key order and table column order.
struct Column {
  const char* key;
  const char* header;
  double (*get)(const models::ImageMetrics&);
};

const Column kColumns[] = {
    {"mse", "MSE", [](const models::ImageMetrics& m) { return m.mse; }},
    {"mae", "MAE", [](const models::ImageMetrics& m) { return m.mae; }},
    {"psnr", "PSNR (dB)", [](const models::ImageMetrics& m) { return m.psnr; }},
    {"ssim", "SSIM", [](const models::ImageMetrics& m) { return m.ssim; }},
    {"ms_ssim", "MS-SSIM", [](const models::ImageMetrics& m) { return m.msSsim; }},
    {"ms_ssim_scales", "scales",
     [](const models::ImageMetrics& m) { return static_cast<double>(m.msSsimScales); }},
    {"lesion_mae", "lesion MAE", [](const models::ImageMetrics& m) { return m.lesionMae; }},
    {"lesion_mse", "lesion MSE", [](const models::ImageMetrics& m) { return m.lesionMse; }},
    {"brain_mae", "brain MAE", [](const models::ImageMetrics& m) { return m.brainMae; }},
};

struct Summary {
  double mean = std::nan("");
  double sd = std::nan("");  // sample standard deviation (n − 1); NaN below two values
  int count = 0;             // cases with a defined value (NaN ones are left out)
};

Summary summarize(const std::vector<models::ImageMetrics>& rows, const Column& column) {
  std::vector<double> values;
  for (const auto& r : rows) {
    if (!std::isnan(column.get(r))) values.push_back(column.get(r));
  }
  Summary s;
  s.count = static_cast<int>(values.size());
  if (values.empty()) return s;
  double sum = 0;
  for (double v : values) sum += v;
  s.mean = sum / s.count;
  if (s.count > 1) {
    double squares = 0;
    for (double v : values) squares += (v - s.mean) * (v - s.mean);
    s.sd = std::sqrt(squares / (s.count - 1));
  }
  return s;
}

// JSON has no NaN or infinity: undefined values (empty region, identical scans' PSNR) are null.
core::Json number(double v) { return std::isfinite(v) ? core::Json(v) : core::Json(nullptr); }

core::Json renderJson(const ImagesOptions& o, const std::vector<Case>& cases,
                      const std::vector<models::ImageMetrics>& rows) {
  core::Json out;
  out["mode"] = "images";
  out["real"] = o.real;
  out["synthetic"] = o.synthetic;
  out["mask"] = o.mask.empty() ? core::Json(nullptr) : core::Json(o.mask);
  out["brain_mask"] = o.brainMask.empty() ? core::Json(nullptr) : core::Json(o.brainMask);
  out["data_range"] = number(o.dataRange > 0 ? o.dataRange : std::nan(""));  // null: per real scan
  out["ssim_window"] = o.ssimWindow;
  core::Json list = core::Json::array();
  for (size_t i = 0; i < rows.size(); ++i) {
    core::Json row;
    row["case"] = cases[i].name;
    for (const Column& c : kColumns) row[c.key] = number(c.get(rows[i]));
    row["ms_ssim_scales"] = rows[i].msSsimScales;
    list.push_back(row);
  }
  out["cases"] = list;
  core::Json mean, sd;
  for (const Column& c : kColumns) {
    const Summary s = summarize(rows, c);
    mean[c.key] = number(s.mean);
    sd[c.key] = number(s.sd);
  }
  out["mean"] = mean;
  out["sd"] = sd;
  return out;
}

std::string formatValue(double v) {
  if (std::isnan(v)) return "n/a";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

std::string renderMarkdown(const std::vector<Case>& cases,
                           const std::vector<models::ImageMetrics>& rows) {
  std::ostringstream out;
  out << "| case |";
  for (const Column& c : kColumns) out << " " << c.header << " |";
  out << "\n|---|";
  for (size_t i = 0; i < std::size(kColumns); ++i) out << "---:|";
  out << "\n";
  for (size_t i = 0; i < rows.size(); ++i) {
    out << "| " << cases[i].name << " |";
    for (const Column& c : kColumns) out << " " << formatValue(c.get(rows[i])) << " |";
    out << "\n";
  }
  if (rows.size() > 1) {
    out << "| mean ± sd (n = " << rows.size() << ") |";
    for (const Column& c : kColumns) {
      const Summary s = summarize(rows, c);
      out << " " << formatValue(s.mean) << " ± " << formatValue(s.sd) << " |";
    }
    out << "\n";
  }
  return out.str();
}

int runImages(const CommandArgs& args) {
  ImagesOptions o;
  const po::options_description own = describeImagesOptions(o);
  const auto parsed = parseCommand(
      kCommand,
      "images --real PATH --synthetic PATH [--mask PATH] [--brain-mask PATH] [--json] [--out DIR]",
      args, own);
  if (!parsed) return 0;
  checkPaths(o);
  // One process does the whole evaluation; under mpirun the other ranks have nothing to do.
  if (dist::World::get().rank() != 0) return 0;

  const std::vector<Case> cases = collectCases(o);
  std::vector<models::ImageMetrics> rows;
  core::Progress progress("evaluate images", static_cast<std::int64_t>(cases.size()));
  for (const Case& c : cases) {
    progress.update(static_cast<std::int64_t>(rows.size()), c.name);  // names the case at work
    rows.push_back(evaluateCase(c, o));
  }
  progress.finish();

  const core::Json json = renderJson(o, cases, rows);
  const std::string markdown = renderMarkdown(cases, rows);
  if (!o.out.empty()) {
    writeCommandConfig(o.out, "evaluate images", *parsed, own);  // header: how to re-run
    core::writeJsonFile((fs::path(o.out) / "images.json").string(), json);
    core::writeFileAtomic((fs::path(o.out) / "images.md").string(), markdown);
    LDDPM_LOG(Info) << "wrote " << o.out << "/images.json and images.md";
  }
  std::cout << (o.json ? json.dump(2) + "\n" : markdown);
  return 0;
}

struct Mode {
  const char* name;
  const char* summary;
  int (*run)(const CommandArgs& args);
};

const Mode kModes[] = {
    {"images",
     "image metrics of synthetic vs real scans (MSE, MAE, PSNR, SSIM, MS-SSIM, lesion "
     "and brain errors)",
     &runImages},
};

void printModes(std::ostream& out) {
  out << "Usage: lddpm evaluate <mode> [options]     (lddpm evaluate <mode> --help)\n\nModes:\n";
  for (const Mode& m : kModes) out << "  " << m.name << "    " << m.summary << "\n";
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
