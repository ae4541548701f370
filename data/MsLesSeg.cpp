#include "data/MsLesSeg.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <optional>
#include <sstream>

#include "core/Error.h"
#include "data/NiftiIo.h"

namespace lddpm::data {
namespace fs = std::filesystem;
using core::strCat;

namespace detail {

constexpr double kAffineTolerance = 1e-3;  // mm; resampled copies of one grid agree far better

// "P12" -> 12 when `name` is the prefix followed by digits only; -1 otherwise.
long numbered(const std::string& name, char prefix) {
  if (name.size() < 2 || name[0] != prefix) return -1;
  if (!std::all_of(name.begin() + 1, name.end(), [](unsigned char c) { return std::isdigit(c); })) {
    return -1;
  }
  return std::stol(name.substr(1));
}

// Sub-folders of `dir` named prefix+digits, in numeric order (P2 before P10).
std::vector<std::pair<long, fs::path>> numberedDirs(const fs::path& dir, char prefix) {
  std::vector<std::pair<long, fs::path>> out;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (!entry.is_directory()) continue;
    const long n = numbered(entry.path().filename().string(), prefix);
    if (n >= 0) out.emplace_back(n, entry.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool hasSplit(const fs::path& dir) {
  return fs::is_directory(dir / "train") || fs::is_directory(dir / "test");
}

// The zip unpacks as MSLesSeg/MSLesSeg/{train,test} (or under a differently named top folder):
// descend through folders that hold exactly one sub-folder until train/ or test/ appears.
fs::path findRoot(const fs::path& dir) {
  fs::path at = dir;
  for (int depth = 0; depth < 3 && !hasSplit(at); ++depth) {
    std::vector<fs::path> subdirs;
    for (const auto& entry : fs::directory_iterator(at)) {
      const std::string name = entry.path().filename().string();
      if (entry.is_directory() && name[0] != '.' && name != "__MACOSX")
        subdirs.push_back(entry.path());
    }
    if (subdirs.size() != 1) break;
    at = subdirs.front();
  }
  return at;
}

// Fills scan.files from `folder`, whose files are named `stem`_{MODALITY}.nii.gz (or .nii);
// appends one line per missing modality to `missing`.
void collectModalities(ScanRecord& scan, const fs::path& folder, const std::string& stem,
                       std::vector<std::string>& missing) {
  for (Modality m : kAllModalities) {
    const std::string base = stem + "_" + modalityName(m);
    const fs::path gz = folder / (base + ".nii.gz");
    const fs::path nii = folder / (base + ".nii");
    if (fs::is_regular_file(gz)) {
      scan.files[m] = gz.string();
    } else if (fs::is_regular_file(nii)) {
      scan.files[m] = nii.string();
    } else {
      missing.push_back(
          strCat(folder.string(), ": missing ", modalityName(m), " (expected ", base, ".nii.gz)"));
    }
  }
}

}  // namespace detail

std::string modalityName(Modality m) {
  switch (m) {
    case Modality::Flair:
      return "FLAIR";
    case Modality::T1:
      return "T1";
    case Modality::T2:
      return "T2";
    case Modality::Mask:
      return "MASK";
  }
  return "?";
}

DatasetIndex discoverMsLesSeg(const std::string& dir) {
  if (!fs::is_directory(dir))
    throw core::IoError(dir, "not a directory (expected an MSLesSeg folder)");
  DatasetIndex index;
  const fs::path root = detail::findRoot(dir);
  index.root = root.string();
  std::vector<std::string> missing;

  const fs::path train = root / "train";
  if (fs::is_directory(train)) {
    for (const auto& [p, patientDir] : detail::numberedDirs(train, 'P')) {
      const auto timepoints = detail::numberedDirs(patientDir, 'T');
      if (timepoints.empty())
        missing.push_back(strCat(patientDir.string(), ": no T{k} timepoint folder"));
      for (const auto& [t, tpDir] : timepoints) {
        ScanRecord scan;
        scan.split = "train";
        scan.patient = patientDir.filename().string();
        scan.timepoint = tpDir.filename().string();
        scan.id = scan.patient + "_" + scan.timepoint;
        detail::collectModalities(scan, tpDir, scan.id, missing);
        index.scans.push_back(std::move(scan));
      }
    }
  }
  const fs::path test = root / "test";
  if (fs::is_directory(test)) {
    for (const auto& [p, patientDir] : detail::numberedDirs(test, 'P')) {
      ScanRecord scan;
      scan.split = "test";
      scan.patient = patientDir.filename().string();
      scan.id = scan.patient;
      detail::collectModalities(scan, patientDir, scan.id, missing);
      index.scans.push_back(std::move(scan));
    }
  }

  if (!missing.empty()) {
    std::ostringstream msg;
    msg << "MSLesSeg dataset " << dir << " is incomplete (" << missing.size() << " problem"
        << (missing.size() > 1 ? "s" : "") << "):";
    for (const auto& line : missing) msg << "\n  " << line;
    throw core::Error(msg.str());
  }
  if (index.scans.empty()) {
    throw core::Error(strCat("no MSLesSeg scans under ", dir,
                             ": expected train/P{n}/T{k}/P{n}_T{k}_FLAIR.nii.gz or "
                             "test/P{n}/P{n}_FLAIR.nii.gz"));
  }
  return index;
}

void checkScanConsistency(const ScanRecord& scan, const std::map<Modality, Volume>& volumes) {
  std::vector<std::string> problems;
  const auto fileOf = [&](Modality m) {
    const auto it = scan.files.find(m);
    return it != scan.files.end() ? it->second : scan.id + " " + modalityName(m);
  };
  const Volume* reference = nullptr;
  Modality refModality = Modality::Flair;
  for (Modality m : kAllModalities) {
    const auto it = volumes.find(m);
    if (it == volumes.end()) {
      problems.push_back(strCat(fileOf(m), ": modality ", modalityName(m), " not loaded"));
      continue;
    }
    const Volume& v = it->second;
    if (reference == nullptr) {
      reference = &v;
      refModality = m;
    } else {
      if (!v.data.sizes().equals(reference->data.sizes())) {
        problems.push_back(strCat(fileOf(m), ": shape [nz, ny, nx] = ", v.data.sizes(),
                                  " differs from ", fileOf(refModality), " ",
                                  reference->data.sizes()));
      } else {
        const double d = affineMaxAbsDiff(v.affine, reference->affine);
        if (d > detail::kAffineTolerance) {
          problems.push_back(strCat(fileOf(m), ": affine differs from ", fileOf(refModality),
                                    " by up to ", d, " mm (tolerance ", detail::kAffineTolerance,
                                    ")"));
        }
      }
    }
    const std::int64_t nonFinite = (~torch::isfinite(v.data)).sum().item<std::int64_t>();
    if (nonFinite > 0) problems.push_back(strCat(fileOf(m), ": ", nonFinite, " NaN/Inf voxels"));
    if (m == Modality::Mask) {
      const std::int64_t nonBinary = ((v.data != 0) & (v.data != 1)).sum().item<std::int64_t>();
      if (nonBinary > 0) {
        problems.push_back(
            strCat(fileOf(m), ": mask is not binary (", nonBinary, " voxels neither 0 nor 1)"));
      }
    }
    if (m == Modality::Flair && (v.data != 0).sum().item<std::int64_t>() == 0) {
      problems.push_back(strCat(fileOf(m), ": empty brain (every voxel is 0)"));
    }
  }
  if (!problems.empty()) {
    std::ostringstream msg;
    msg << "scan " << scan.id << " is inconsistent:";
    for (const auto& p : problems) msg << "\n  " << p;
    throw core::Error(msg.str());
  }
}

void checkScanHeaders(const ScanRecord& scan) {
  std::vector<std::string> problems;
  std::optional<NiftiHeaderInfo> reference;
  for (const auto& [m, file] : scan.files) {
    NiftiHeaderInfo h;
    try {
      h = readNiftiHeader(file);
    } catch (const core::Error& e) {
      problems.push_back(e.what());
      continue;
    }
    if (!reference) {
      reference = h;
    } else if (h.shape != reference->shape) {
      problems.push_back(strCat(file, ": shape ", h.shape[0], "x", h.shape[1], "x", h.shape[2],
                                " differs from ", reference->path, " ", reference->shape[0], "x",
                                reference->shape[1], "x", reference->shape[2]));
    } else if (const double d = affineMaxAbsDiff(h.affine, reference->affine);
               d > detail::kAffineTolerance) {
      problems.push_back(strCat(file, ": affine differs from ", reference->path, " by up to ", d,
                                " mm (tolerance ", detail::kAffineTolerance, ")"));
    }
  }
  if (!problems.empty()) {
    std::ostringstream msg;
    msg << "scan " << scan.id << " is inconsistent:";
    for (const auto& p : problems) msg << "\n  " << p;
    throw core::Error(msg.str());
  }
}

void checkScanConsistency(const ScanRecord& scan) {
  std::map<Modality, Volume> volumes;
  for (const auto& [m, file] : scan.files) volumes.emplace(m, readNifti(file));
  checkScanConsistency(scan, volumes);
}

}  // namespace lddpm::data
