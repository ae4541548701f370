#include "core/Checkpoint.h"

#include <fcntl.h>  // AT_FDCWD
#include <stdio.h>  // renameat2, RENAME_EXCHANGE (glibc >= 2.28)

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/AtomicFile.h"
#include "core/Checksum.h"
#include "core/Error.h"
#include "core/Log.h"

namespace lddpm::core {
namespace fs = std::filesystem;

void saveTensorDict(const std::string& path, const TensorDict& tensors) {
  c10::Dict<std::string, at::Tensor> dict;
  for (const auto& [name, tensor] : tensors) {
    torch::Tensor t = tensor.detach().to(torch::kCPU).contiguous();
    // A view into a larger buffer (a parameter living in an optimiser's flat arena) would make
    // the pickle carry the whole buffer: save its own bytes only.
    if (t.storage().nbytes() != t.nbytes() || t.storage_offset() != 0) t = t.clone();
    dict.insert(name, t);
  }
  const std::vector<char> bytes = torch::pickle_save(c10::IValue(dict));
  writeFileAtomic(path, std::string(bytes.begin(), bytes.end()));
}

TensorDict loadTensorDict(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(path, "cannot open");
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  c10::IValue value;
  try {
    value = torch::pickle_load(bytes);
  } catch (const c10::Error& e) {
    throw IoError(
        path, strCat("not a tensor dict (truncated or corrupt?): ", e.what_without_backtrace()));
  }
  if (!value.isGenericDict()) throw IoError(path, "not a dict of tensors");
  TensorDict out;
  for (const auto& entry : value.toGenericDict()) {
    if (!entry.key().isString() || !entry.value().isTensor()) {
      throw IoError(path, "not a dict of name -> tensor");
    }
    out.emplace(entry.key().toStringRef(), entry.value().toTensor());
  }
  return out;
}

std::string checkpointName(std::int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step-%08lld", static_cast<long long>(step));
  return buf;
}

namespace {
bool parseStep(const std::string& name, std::int64_t& step) {
  if (name.rfind("step-", 0) != 0 || name.size() <= 5) return false;
  const std::string digits = name.substr(5);
  if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return false;
  }
  step = std::stoll(digits);
  return true;
}
}  // namespace

std::vector<CheckpointInfo> listCheckpoints(const std::string& dir) {
  std::vector<CheckpointInfo> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::int64_t step = 0;
    if (!entry.is_directory() || !parseStep(entry.path().filename().string(), step)) continue;
    if (!fs::exists(entry.path() / "meta.json")) continue;
    out.push_back({entry.path().string(), step});
  }
  std::sort(out.begin(), out.end(),
            [](const CheckpointInfo& a, const CheckpointInfo& b) { return a.step < b.step; });
  return out;
}

std::optional<CheckpointInfo> newestCheckpoint(const std::string& dir) {
  auto all = listCheckpoints(dir);
  if (all.empty()) return std::nullopt;
  return all.back();
}

namespace {
// A name meta.json may list: a file directly inside the checkpoint folder, so that a damaged or
// hand-edited meta.json can never make verification read outside it.
bool isPlainFileName(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\0') == std::string::npos;
}
}  // namespace

bool verifyCheckpoint(const std::string& checkpointDir) {
  const Json meta = readCheckpointMeta(checkpointDir);
  const std::string metaPath = (fs::path(checkpointDir) / "meta.json").string();
  try {
    std::int64_t folderStep = 0;
    if (parseStep(fs::path(checkpointDir).filename().string(), folderStep) &&
        meta.at("step").get<std::int64_t>() != folderStep) {
      throw IoError(metaPath, strCat("says step ", meta.at("step").get<std::int64_t>(),
                                     " but its folder is ", checkpointName(folderStep)));
    }
    if (!meta.contains("files")) return false;
    const Json& files = meta.at("files");
    if (!files.is_object() || files.empty()) throw IoError(metaPath, "'files' lists no files");
    for (const auto& [name, entry] : files.items()) {
      if (!isPlainFileName(name)) {
        throw IoError(metaPath,
                      "lists '" + name + "', which is not a file of the checkpoint folder");
      }
      const std::string path = (fs::path(checkpointDir) / name).string();
      const auto bytes = entry.at("bytes").get<std::int64_t>();
      const auto expected = entry.at("xxh3_64").get<std::string>();
      std::error_code ec;
      if (!fs::is_regular_file(path, ec)) throw IoError(path, "missing (meta.json lists it)");
      const auto actual = static_cast<std::int64_t>(fs::file_size(path, ec));
      if (ec) throw IoError(path, "cannot read its size: " + ec.message());
      if (actual != bytes) {
        throw IoError(path, strCat("size ", actual, " bytes but meta.json says ", bytes,
                                   " (truncated or overwritten)"));
      }
      const std::string sum = checksumHex(checksumFile(path));
      if (sum != expected) {
        throw IoError(path, "checksum mismatch: xxh3_64 " + sum + ", meta.json says " + expected +
                                " (corrupt file)");
      }
    }
  } catch (const Json::exception& e) {
    throw IoError(metaPath, strCat("malformed checkpoint metadata: ", e.what()));
  }
  return true;
}

std::optional<CheckpointInfo> newestIntactCheckpoint(const std::string& dir,
                                                     std::vector<std::string>* skipped) {
  const auto all = listCheckpoints(dir);
  if (all.empty()) return std::nullopt;
  std::string problems;
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    try {
      if (!verifyCheckpoint(it->path)) {
        LDDPM_LOG(Warn) << it->path << ": written without checksums (an older lddpm): not verified";
      }
      return *it;
    } catch (const IoError& e) {
      LDDPM_LOG(Warn) << "checkpoint " << it->path << " is damaged and skipped: " << e.what();
      if (skipped != nullptr) skipped->push_back(e.what());
      problems += (problems.empty() ? "" : "; ") + std::string(e.what());
    }
  }
  throw IoError(dir, strCat("none of its ", all.size(), " checkpoint(s) is intact: ", problems));
}

std::string CheckpointWriter::tempPathFor(const std::string& dir, std::int64_t step) {
  return (fs::path(dir) / ("." + checkpointName(step) + ".tmp")).string();
}

CheckpointWriter::CheckpointWriter(const std::string& dir, std::int64_t step)
    : dir_(dir), step_(step), temp_(tempPathFor(dir, step)) {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) throw IoError(dir_, "cannot create checkpoint folder: " + ec.message());
  fs::remove_all(temp_, ec);  // a torn attempt at the same step
  if (!fs::create_directory(temp_, ec) || ec) {
    throw IoError(temp_, "cannot create temporary checkpoint folder: " + ec.message());
  }
}

CheckpointWriter::~CheckpointWriter() {
  if (committed_) return;
  std::error_code ec;
  fs::remove_all(temp_, ec);
}

std::string CheckpointWriter::file(const std::string& name) const {
  return (fs::path(temp_) / name).string();
}

std::string CheckpointWriter::commit(const Json& extra) {
  Json meta = {{"format_version", kCheckpointFormatVersion}, {"step", step_}};
  for (const auto& [key, value] : extra.items()) meta[key] = value;
  // Every rank's files are in place (the caller's barrier): record what a reader must find.
  Json files = Json::object();
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(temp_, ec)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_regular_file() || name == "meta.json") continue;
    files[name] = {{"bytes", static_cast<std::int64_t>(entry.file_size())},
                   {"xxh3_64", checksumHex(checksumFile(entry.path().string()))}};
  }
  if (ec) throw IoError(temp_, "cannot list the checkpoint's files: " + ec.message());
  meta["files"] = files;
  writeJsonFile(file("meta.json"), meta);
  fsyncPath(temp_);
  const fs::path final = fs::path(dir_) / checkpointName(step_);
  if (fs::exists(final, ec)) {
    // Re-checkpointing a step (a resume that fell back past a damaged checkpoint, or a signal
    // right after a periodic save): swap the two folders in one atomic step, so that a kill at
    // any moment leaves a checkpoint under the final name. Filesystems without RENAME_EXCHANGE
    // get the two-step replacement (old one moved aside first).
    if (::renameat2(AT_FDCWD, temp_.c_str(), AT_FDCWD, final.c_str(), RENAME_EXCHANGE) == 0) {
      fsyncPath(dir_);
      fs::remove_all(temp_, ec);  // now holds the old checkpoint
    } else {
      const std::string old = temporarySibling(final.string());
      fs::rename(final, old, ec);
      if (ec) throw IoError(final.string(), "cannot replace existing checkpoint: " + ec.message());
      publish(temp_, final.string());
      fs::remove_all(old, ec);
    }
  } else {
    publish(temp_, final.string());
  }
  committed_ = true;
  return final.string();
}

void pruneCheckpoints(const std::string& dir, int keep) {
  auto all = listCheckpoints(dir);
  std::error_code ec;
  for (size_t i = 0; i + static_cast<size_t>(std::max(keep, 1)) < all.size(); ++i) {
    fs::remove_all(all[i].path, ec);
  }
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(".step-", 0) == 0) fs::remove_all(entry.path(), ec);
  }
}

Json readCheckpointMeta(const std::string& checkpointDir) {
  const std::string path = (fs::path(checkpointDir) / "meta.json").string();
  Json meta = readJsonFile(path);
  const Json& field = meta.is_object() ? meta.value("format_version", Json()) : Json();
  const int version = field.is_number_integer() ? field.get<int>() : -1;
  if (version != kCheckpointFormatVersion) {
    throw IoError(path, strCat("checkpoint format version ", version, ", this build reads ",
                               kCheckpointFormatVersion));
  }
  return meta;
}

}  // namespace lddpm::core
