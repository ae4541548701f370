#pragma once
// Checkpoint directories and tensor-dict files. A checkpoint is a directory
// `<run>/checkpoints/step-NNNNNNNN/` written under a hidden temporary name and renamed into place
// only when every file in it is complete, so a kill at any moment leaves either the previous
// checkpoint set or the new one, never a directory that looks complete and is not. `meta.json` is
// written last inside the directory and marks it complete; it records the size and XXH3-64 of
// every other file, so a checkpoint damaged after it was written (a truncated copy, a bad disk)
// is detected before anything is loaded from it. The multi-rank protocol (rank 0 creates, every
// rank writes its files, barrier, rank 0 finalises) is driven by the training engine; this file
// has the rank-agnostic pieces.
#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/Json.h"

namespace lddpm::core {

inline constexpr int kCheckpointFormatVersion = 1;

using TensorDict = std::map<std::string, torch::Tensor>;

// Saves name -> tensor as a pickled dict (torch::pickle_save of c10::Dict), the form Python's
// torch.load returns as a plain dict of tensors. Tensors are moved to CPU first. Atomic.
void saveTensorDict(const std::string& path, const TensorDict& tensors);
// Loads a file written by saveTensorDict. IoError naming the file if unreadable or not a dict of
// tensors.
TensorDict loadTensorDict(const std::string& path);

struct CheckpointInfo {
  std::string path;  // the final directory
  std::int64_t step = 0;
};

// "step-00001200"
std::string checkpointName(std::int64_t step);

// Complete checkpoints (directory with meta.json, name step-N) under `dir`, sorted by step.
// Temporary directories and incomplete ones are ignored. Complete is not intact: see below.
std::vector<CheckpointInfo> listCheckpoints(const std::string& dir);
std::optional<CheckpointInfo> newestCheckpoint(const std::string& dir);

// Checks a checkpoint folder against its meta.json: readable, the format version, the step that
// the folder's name says, and every file it lists present with the recorded size and XXH3-64.
// Throws IoError naming the first bad file and what is wrong with it. Returns false (and checks
// only meta.json) for a checkpoint written before checksums were recorded: nothing to compare.
bool verifyCheckpoint(const std::string& checkpointDir);

// The newest complete checkpoint under `dir` that verifies, or nullopt when there is no complete
// checkpoint at all. Each newer one that does not verify is skipped with a warning naming the bad
// file (its message is also appended to `skipped`). Throws IoError listing every checkpoint and
// why it failed when checkpoints exist but none verifies.
std::optional<CheckpointInfo> newestIntactCheckpoint(const std::string& dir,
                                                     std::vector<std::string>* skipped = nullptr);

// A checkpoint being written: a hidden temporary directory beside its final name.
class CheckpointWriter {
 public:
  // Creates `<dir>/.step-N.tmp-...` (the caller decides which rank does this; other ranks use
  // the same path once told — see tempPathFor).
  CheckpointWriter(const std::string& dir, std::int64_t step);
  // An uncommitted writer (an exception on the way: disk full, read-only folder) removes its
  // temporary folder, giving the space back; resume ignores temporaries either way.
  ~CheckpointWriter();
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;
  // For ranks other than the creator: the temporary folder rank 0 made for this step.
  static std::string tempPathFor(const std::string& dir, std::int64_t step);

  const std::string& tempPath() const { return temp_; }
  std::string file(const std::string& name) const;  // path of a file inside the temp folder

  // Records the size and XXH3-64 of every file in the folder (all ranks' files must be written),
  // writes meta.json (format version, step, "files" and `extra`), fsyncs and renames the folder
  // into place, replacing an older checkpoint of the same step. Returns the final path.
  std::string commit(const Json& extra);

 private:
  std::string dir_;
  std::int64_t step_;
  std::string temp_;
  bool committed_ = false;
};

// Removes all but the newest `keep` complete checkpoints, and temporaries of earlier attempts.
void pruneCheckpoints(const std::string& dir, int keep);

// Reads `<checkpoint>/meta.json`, checking the format version. IoError naming the file.
Json readCheckpointMeta(const std::string& checkpointDir);

}  // namespace lddpm::core
