#include "core/MetricsLog.h"

#include <filesystem>
#include <sstream>

#include "core/AtomicFile.h"
#include "core/Error.h"

namespace lddpm::core {

std::vector<Json> MetricsLog::readAll(const std::string& path) {
  std::vector<Json> rows;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    try {
      rows.push_back(Json::parse(line));
    } catch (const Json::exception&) {
      // A torn line can only be the last one (a kill mid-append): stop there.
      break;
    }
  }
  return rows;
}

MetricsLog::MetricsLog(std::string path, std::int64_t resumeStep) : path_(std::move(path)) {
  if (resumeStep >= 0 && std::filesystem::exists(path_)) {
    std::ostringstream kept;
    for (const Json& row : readAll(path_)) {
      if (row.value("step", std::int64_t{0}) <= resumeStep) kept << row.dump() << "\n";
    }
    writeFileAtomic(path_, kept.str());
  }
  out_.open(path_, std::ios::app);
  if (!out_) throw IoError(path_, "cannot open for appending");
}

void MetricsLog::append(const Json& row) {
  out_ << row.dump() << "\n";
  out_.flush();
  if (!out_) throw IoError(path_, "write failed (disk full?)");
}

}  // namespace lddpm::core
