#pragma once
// Streams this rank's share of each global batch from a store: whole volumes or P^3 patches with
// their masks, planned by PatchSampler (deterministic in seed, epoch and sample index), read by
// prefetch threads into a bounded queue and delivered strictly in order. Worker exceptions reach
// the consumer in next(); destruction stops and joins the workers without waiting for the queue
// to drain. Each worker opens its own shard readers; nothing holds the cohort in memory.
#include <condition_variable>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/Options.h"
#include "data/Manifest.h"
#include "data/PatchSampler.h"

namespace lddpm::data {

struct LoaderOptions {
  std::string store;
  std::string split = "train";  // "train", "test" or "all"
  std::int64_t patch = 64;      // patch edge; 0 = whole volumes
  SamplerOptions sampler;
  int rank = 0;
  int worldSize = 1;
  int threads = 2;          // prefetch threads; 0 = read in next() on the caller's thread
  int queueDepth = 4;       // batches read ahead at most
  bool directReads = true;  // false: every patch through H5Dread (benchmark reference)
  Cursor start;             // where the stream begins (a checkpoint's saved cursor)

  // The options a user sets (--store, --split, --patch, --lesion-fraction, --flips, --prefetch),
  // each with this struct's current value as its default: a command sets its own defaults on the
  // struct before describing it. The seed, batch, rank, world size and start come from the engine.
  core::po::options_description describe();
  // UsageError naming the option when one of them is out of range (before anything is read).
  void validateOptions() const;
};

struct Batch {
  torch::Tensor image;   // [b, C, P, P, P] float32 in [-1, 1]
  torch::Tensor tissue;  // [b, 1, P, P, P] uint8 (0 background, 1 CSF, 2 GM, 3 WM)
  torch::Tensor lesion;  // [b, 1, P, P, P] uint8 (0/1)
  std::vector<std::string> subjects;
  std::vector<std::array<std::int64_t, 3>> starts;  // patch corners (z, y, x) on the grid
  std::vector<SamplePlan> plans;
  Cursor cursor;  // where this batch starts
  Cursor next;    // where the next batch starts: what a checkpoint saves after this step
};

class BatchBuffers;  // Loader.cpp: the batches' storage, recycled

class Loader {
 public:
  explicit Loader(LoaderOptions options);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  // The next batch of this rank (b = its share of the global batch). Blocks until read; rethrows
  // a worker's exception (the same one on every later call).
  Batch next();
  // Where the next delivered batch starts (save this; LoaderOptions::start restores it).
  Cursor cursor() const;
  const std::vector<SubjectEntry>& subjects() const { return subjects_; }
  const Manifest& manifest() const { return manifest_; }

 private:
  struct Reader;  // per-thread shard readers and index cache
  Batch read(const Cursor& cursor, Reader& reader) const;
  void work();

  LoaderOptions options_;
  Manifest manifest_;
  std::vector<SubjectEntry> subjects_;
  PatchSampler sampler_;
  std::array<std::int64_t, 3> patch_{};
  std::int64_t indexStride_;  // the manifest's index_stride (preprocessing's default when none)

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::int64_t produce_ = 0, deliver_ = 0;  // batch sequence numbers
  Cursor produceCursor_, deliverCursor_;
  struct Slot {
    std::optional<Batch> batch;
    std::exception_ptr error;
  };
  std::map<std::int64_t, Slot> ready_;
  std::exception_ptr failed_;
  bool stop_ = false;
  std::shared_ptr<BatchBuffers> buffers_;  // outlives the loader while a batch views it
  std::unique_ptr<Reader> callerReader_;   // threads == 0
  std::vector<std::thread> workers_;
};

}  // namespace lddpm::data
