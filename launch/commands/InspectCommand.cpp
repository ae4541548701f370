// `lddpm inspect PATH [--json] [--check]`: what a NIfTI file, an MSLesSeg dataset folder or a
// store (data/StoreInspection.h: summary and every shard verified) holds.
// Dispatch is by what PATH is, so each kind of input is one branch: a store (a folder with
// manifest.json) is the first branch, a dataset folder the second, a file the last.
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include "core/Error.h"
#include "core/Json.h"
#include "core/Log.h"
#include "core/Progress.h"
#include "data/MsLesSeg.h"
#include "data/NiftiIo.h"
#include "data/StoreInspection.h"
#include "distributed/World.h"
#include "launch/Command.h"

namespace lddpm::launch {
namespace fs = std::filesystem;

namespace {

// Prints the store's summary (or JSON), then fails naming every bad shard.
int inspectStore(const std::string& dir, bool json) {
  const data::StoreInspection inspection = data::inspectStore(dir);
  std::cout << (json ? inspection.toJson().dump(2) + "\n" : inspection.toText());
  const std::vector<std::string> problems = inspection.problems();
  if (!problems.empty()) {
    std::ostringstream msg;
    msg << dir << ": " << problems.size() << " bad shard(s):";
    for (const auto& p : problems) msg << "\n" << p;
    throw core::Error(msg.str());
  }
  return 0;
}

struct VoxelStats {
  double min = 0, max = 0, mean = 0;
  std::int64_t nonzero = 0, nonFinite = 0;
};

VoxelStats voxelStats(const torch::Tensor& data) {
  VoxelStats s;
  const torch::Tensor finite = torch::isfinite(data);
  s.nonFinite = data.numel() - finite.sum().item<std::int64_t>();
  // Statistics over finite voxels, so one NaN does not hide the rest; the count says it is there.
  const torch::Tensor values = s.nonFinite > 0 ? data.masked_select(finite) : data.reshape(-1);
  if (values.numel() > 0) {
    s.min = values.min().item<double>();
    s.max = values.max().item<double>();
    s.mean = values.to(torch::kFloat64).mean().item<double>();
  }
  s.nonzero = (data != 0).sum().item<std::int64_t>();
  return s;
}

core::Json affineJson(const data::Affine& a) {
  core::Json rows = core::Json::array();
  for (int r = 0; r < 4; ++r) rows.push_back({a[r * 4], a[r * 4 + 1], a[r * 4 + 2], a[r * 4 + 3]});
  return rows;
}

std::string shapeText(const std::array<std::int64_t, 3>& s) {
  return core::strCat(s[0], "x", s[1], "x", s[2]);
}

int inspectFile(const std::string& path, bool json) {
  data::NiftiHeaderInfo info;
  const data::Volume v = data::readNifti(path, &info);
  const VoxelStats s = voxelStats(v.data);
  if (json) {
    core::Json out;
    out["path"] = path;
    out["shape"] = info.shape;
    out["spacing"] = info.spacing;
    out["datatype"] = info.datatype;
    out["min"] = s.min;
    out["max"] = s.max;
    out["mean"] = s.mean;
    out["nonzero"] = s.nonzero;
    out["nonfinite"] = s.nonFinite;
    out["affine"] = affineJson(info.affine);
    out["sform_code"] = info.sformCode;
    out["qform_code"] = info.qformCode;
    out["scl_slope"] = info.sclSlope;
    out["scl_inter"] = info.sclInter;
    out["nifti_version"] = info.niftiVersion;
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::cout << path << "\n"
            << "  NIfTI-" << info.niftiVersion << ", " << info.datatype << ", shape "
            << shapeText(info.shape) << ", spacing " << info.spacing[0] << " x " << info.spacing[1]
            << " x " << info.spacing[2] << " mm\n"
            << "  sform_code " << info.sformCode << ", qform_code " << info.qformCode
            << ", scl_slope " << info.sclSlope << ", scl_inter " << info.sclInter << "\n"
            << "  min " << s.min << ", max " << s.max << ", mean " << s.mean << ", nonzero "
            << s.nonzero << " of " << v.data.numel();
  if (s.nonFinite > 0) std::cout << ", NaN/Inf " << s.nonFinite;
  std::cout << "\n  affine (voxel -> world, mm):\n";
  for (int r = 0; r < 4; ++r) {
    std::cout << "   ";
    for (int c = 0; c < 4; ++c) std::cout << std::setw(12) << info.affine[r * 4 + c];
    std::cout << "\n";
  }
  return 0;
}

// Summary of an MSLesSeg folder. Headers are always checked (cheap); --check reads every voxel.
int inspectDataset(const std::string& dir, bool json, bool fullCheck) {
  const data::DatasetIndex index = data::discoverMsLesSeg(dir);
  std::vector<std::string> problems;
  core::Json scans = core::Json::array();
  std::map<std::string, std::set<std::string>> patients;
  std::map<std::string, int> scanCount;
  core::Progress progress(fullCheck ? "checking scans" : "reading headers",
                          static_cast<std::int64_t>(index.scans.size()));
  for (size_t i = 0; i < index.scans.size(); ++i) {
    const data::ScanRecord& scan = index.scans[i];
    patients[scan.split].insert(scan.patient);
    ++scanCount[scan.split];
    core::Json entry{{"id", scan.id},
                     {"split", scan.split},
                     {"patient", scan.patient},
                     {"timepoint", scan.timepoint}};
    try {
      data::checkScanHeaders(scan);
      if (fullCheck) data::checkScanConsistency(scan);
      const data::NiftiHeaderInfo h = data::readNiftiHeader(scan.files.at(data::Modality::Flair));
      entry["shape"] = h.shape;
      entry["spacing"] = h.spacing;
      entry["ok"] = true;
    } catch (const core::Error& e) {
      problems.push_back(e.what());
      entry["ok"] = false;
      entry["problem"] = e.what();
    }
    core::Json files;
    for (const auto& [m, f] : scan.files) files[data::modalityName(m)] = f;
    entry["files"] = files;
    scans.push_back(entry);
    progress.update(static_cast<std::int64_t>(i + 1));
  }
  progress.finish();

  if (json) {
    core::Json out;
    out["path"] = dir;
    out["root"] = index.root;
    out["voxels_checked"] = fullCheck;
    for (const char* split : {"train", "test"}) {
      out["counts"][split] = {{"scans", scanCount[split]}, {"patients", patients[split].size()}};
    }
    out["problems"] = problems.size();
    out["scans"] = scans;
    std::cout << out.dump(2) << "\n";
  } else {
    std::cout << "MSLesSeg dataset " << index.root << "\n"
              << "  train: " << scanCount["train"] << " scans of " << patients["train"].size()
              << " patients; test: " << scanCount["test"] << " scans of " << patients["test"].size()
              << " patients\n"
              << "  " << (fullCheck ? "every voxel checked" : "headers checked (voxels: --check)")
              << ", " << problems.size() << " inconsistent scan(s)\n\n"
              << std::left << std::setw(12) << "scan" << std::setw(7) << "split" << std::setw(14)
              << "shape"
              << "spacing (mm)\n";
    for (const auto& s : scans) {
      std::cout << std::setw(12) << s["id"].get<std::string>() << std::setw(7)
                << s["split"].get<std::string>();
      if (s["ok"].get<bool>()) {
        const auto sp = s["spacing"].get<std::array<double, 3>>();
        std::cout << std::setw(14) << shapeText(s["shape"].get<std::array<std::int64_t, 3>>())
                  << sp[0] << " x " << sp[1] << " x " << sp[2] << "\n";
      } else {
        std::cout << "INCONSISTENT\n";
      }
    }
  }
  if (!problems.empty()) {
    std::ostringstream msg;
    msg << dir << ": " << problems.size() << " inconsistent scan(s):";
    for (const auto& p : problems) msg << "\n" << p;
    throw core::Error(msg.str());
  }
  return 0;
}

}  // namespace

int runInspect(const CommandContext& context) {
  std::string path;
  bool json = false;
  bool fullCheck = false;
  po::options_description own("inspect options");
  own.add_options()("path", po::value(&path)->required()->value_name("PATH"),
                    "a NIfTI file (.nii/.nii.gz), an MSLesSeg dataset folder or a store folder")(
      "json", po::bool_switch(&json), "print JSON instead of text")(
      "check", po::bool_switch(&fullCheck),
      "dataset: read every voxel (NaN/Inf, binary masks, empty brains), not only the headers");
  po::positional_options_description positional;
  positional.add("path", 1);
  if (!parseCommand(context, "inspect", "PATH [--json] [--check]", own, positional)) return 0;
  // Inspection is read-only and cheap to repeat: rank 0 does it, the others have nothing to add.
  if (context.world.rank() != 0) return 0;

  std::error_code ec;
  if (!fs::exists(path, ec)) throw core::IoError(path, "no such file or directory");
  if (fs::is_directory(path, ec) && data::looksLikeStore(path)) return inspectStore(path, json);
  if (fs::is_directory(path, ec)) return inspectDataset(path, json, fullCheck);
  return inspectFile(path, json);
}

}  // namespace lddpm::launch
