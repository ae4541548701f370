#include "core/Checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/AtomicFile.h"
#include "core/Error.h"

namespace lddpm::core {
namespace fs = std::filesystem;

void saveTensorDict(const std::string& path, const TensorDict& tensors) {
  c10::Dict<std::string, at::Tensor> dict;
  for (const auto& [name, tensor] : tensors) {
    dict.insert(name, tensor.detach().to(torch::kCPU).contiguous());
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
    throw IoError(path, strCat("not a tensor dict (truncated or corrupt?): ",
                               e.what_without_backtrace()));
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

std::string CheckpointWriter::file(const std::string& name) const {
  return (fs::path(temp_) / name).string();
}

std::string CheckpointWriter::commit(const Json& extra) {
  Json meta = {{"format_version", kCheckpointFormatVersion}, {"step", step_}};
  for (const auto& [key, value] : extra.items()) meta[key] = value;
  writeJsonFile(file("meta.json"), meta);
  fsyncPath(temp_);
  const fs::path final = fs::path(dir_) / checkpointName(step_);
  std::error_code ec;
  if (fs::exists(final, ec)) {
    // Re-checkpointing the same step (e.g. signal right after a periodic save): move the old one
    // aside first so that rename() onto a non-empty directory cannot fail.
    const std::string old = temporarySibling(final.string());
    fs::rename(final, old, ec);
    if (ec) throw IoError(final.string(), "cannot replace existing checkpoint: " + ec.message());
    publish(temp_, final.string());
    fs::remove_all(old, ec);
  } else {
    publish(temp_, final.string());
  }
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
  const int version = meta.value("format_version", -1);
  if (version != kCheckpointFormatVersion) {
    throw IoError(path, strCat("checkpoint format version ", version, ", this build reads ",
                               kCheckpointFormatVersion));
  }
  return meta;
}

}  // namespace lddpm::core
