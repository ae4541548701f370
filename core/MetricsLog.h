#pragma once
// metrics.jsonl: one JSON object per line, appended and flushed as training goes, readable while
// the run is alive (tail -f, `lddpm sweep status`). On resume the rows after the checkpoint's step
// are dropped, so the file always describes one consistent history.
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "core/Json.h"

namespace lddpm::core {

class MetricsLog {
 public:
  // Opens `path` for appending. If `resumeStep` >= 0, first rewrites the file (atomically)
  // keeping only rows whose "step" <= resumeStep.
  explicit MetricsLog(std::string path, std::int64_t resumeStep = -1);
  void append(const Json& row);  // one line, flushed
  const std::string& path() const { return path_; }

  static std::vector<Json> readAll(const std::string& path);  // skips a torn last line

 private:
  std::string path_;
  std::ofstream out_;
};

}  // namespace lddpm::core
