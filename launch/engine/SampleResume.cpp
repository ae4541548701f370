#include "launch/engine/SampleResume.h"

#include <filesystem>

#include "core/Checksum.h"
#include "core/Error.h"

namespace lddpm::launch {
namespace fs = std::filesystem;

namespace {
fs::path recordPath(const std::string& out, const std::string& caseId) {
  return fs::path(out) / "done" / (caseId + ".json");
}
}  // namespace

std::vector<std::string> sampleCaseFiles(const std::string& caseId) {
  const std::string nii = caseId + ".nii.gz";
  return {"synthetic/" + nii, "real/" + nii,   "lesion/" + nii,
          "brain/" + nii,     "tissue/" + nii, "png/" + caseId + ".png"};
}

std::string samplingKey(const core::Json& settings) {
  const std::string text = settings.dump();
  return core::checksumHex(core::checksumBytes(text.data(), text.size()));
}

std::optional<double> finishedCase(const std::string& out, const std::string& caseId,
                                   const std::string& key) {
  const fs::path record = recordPath(out, caseId);
  std::error_code ec;
  if (!fs::is_regular_file(record, ec)) return std::nullopt;
  for (const std::string& file : sampleCaseFiles(caseId)) {
    if (!fs::is_regular_file(fs::path(out) / file, ec)) return std::nullopt;
  }
  try {
    const core::Json j = core::readJsonFile(record.string());
    if (j.value("key", std::string()) != key) return std::nullopt;  // other settings: redo
    return j.at("seconds").get<double>();
  } catch (const std::exception&) {  // unreadable record (written by hand?): redo the case
    return std::nullopt;
  }
}

void removeStaleTemporaries(const std::string& out) {
  for (const char* sub : {"", "synthetic", "real", "lesion", "brain", "tissue", "png", "done"}) {
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(fs::path(out) / sub, ec)) {
      const std::string name = entry.path().filename().string();
      if (name.size() > 1 && name[0] == '.' && name.find(".tmp-") != std::string::npos &&
          entry.is_regular_file(ec)) {
        fs::remove(entry.path(), ec);
      }
    }
  }
}

void recordFinishedCase(const std::string& out, const std::string& caseId, const std::string& key,
                        double seconds) {
  const fs::path record = recordPath(out, caseId);
  std::error_code ec;
  fs::create_directories(record.parent_path(), ec);
  if (ec) throw core::IoError(record.parent_path().string(), "cannot create: " + ec.message());
  core::writeJsonFile(record.string(), {{"case", caseId}, {"key", key}, {"seconds", seconds}});
}

}  // namespace lddpm::launch
