#include "core/Json.h"

#include <fstream>
#include <sstream>

#include "core/AtomicFile.h"
#include "core/Error.h"

namespace lddpm::core {

Json readJsonFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw IoError(path, "cannot open");
  try {
    return Json::parse(in);
  } catch (const Json::exception& e) {
    throw IoError(path, strCat("not valid JSON: ", e.what()));
  }
}

void writeJsonFile(const std::string& path, const Json& value) {
  writeFileAtomic(path, value.dump(2) + "\n");
}

}  // namespace lddpm::core
