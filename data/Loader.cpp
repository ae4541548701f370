// Prefetching loader: see Loader.h and docs/store.md "Loader".
#include "data/Loader.h"

#include <algorithm>
#include <cstdlib>

#include "core/Error.h"
#include "data/Preprocess.h"
#include "data/ShardReader.h"

namespace lddpm::data {

// Batch storage, recycled. Every batch's image, tissue and lesion lie in one 64-byte-aligned
// block; when the last tensor viewing a block is freed (on whichever thread), the block returns
// here and the next batch reuses it, so after the first few batches a loader allocates nothing of
// batch size. Batches allocated from the heap one by one, megabytes each and living across the
// queue, interleaved with the small allocations of each newly visited subject (HDF5's and the
// kept tables): the heap fragmented and grew with every subject visited (docs/BENCHMARKS.md
// "Data"). At most `idleCap` blocks wait idle; a consumer that keeps batches just makes new ones.
class BatchBuffers : public std::enable_shared_from_this<BatchBuffers> {
 public:
  explicit BatchBuffers(std::size_t idleCap) : idleCap_(idleCap) {}
  BatchBuffers(const BatchBuffers&) = delete;
  BatchBuffers& operator=(const BatchBuffers&) = delete;
  ~BatchBuffers() {
    for (void* b : idle_) std::free(b);
  }

  // A block of at least `bytes` bytes, handed back to this pool when the returned pointer and
  // every copy of it are gone.
  std::shared_ptr<std::byte> acquire(std::size_t bytes) {
    void* block = nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (bytes > blockBytes_) {  // a larger batch than before: the idle blocks are too small
        for (void* b : idle_) std::free(b);
        idle_.clear();
        blockBytes_ = aligned(bytes);
      }
      if (!idle_.empty()) {
        block = idle_.back();
        idle_.pop_back();
      }
      bytes = blockBytes_;
    }
    if (block == nullptr) block = std::aligned_alloc(kAlign, bytes);
    if (block == nullptr) throw std::bad_alloc();
    return std::shared_ptr<std::byte>(
        static_cast<std::byte*>(block),
        [self = shared_from_this(), bytes](std::byte* b) { self->release(b, bytes); });
  }

  static constexpr std::size_t kAlign = 64;  // as LibTorch's CPU allocator
  static std::size_t aligned(std::size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

 private:
  void release(std::byte* block, std::size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (bytes == blockBytes_ && idle_.size() < idleCap_) {
        idle_.push_back(block);
        return;
      }
    }
    std::free(block);
  }

  const std::size_t idleCap_;
  std::mutex mutex_;
  std::size_t blockBytes_ = 0;
  std::vector<void*> idle_;
};

namespace {

// `shape` tensors of `dtype` at `offset` bytes into `block`, keeping the block alive; `offset`
// then moves past them, to the next 64-byte boundary.
torch::Tensor viewOf(const std::shared_ptr<std::byte>& block, std::size_t& offset,
                     std::vector<std::int64_t> shape, torch::ScalarType dtype) {
  std::size_t bytes = torch::elementSize(dtype);
  for (std::int64_t n : shape) bytes *= static_cast<std::size_t>(n);
  torch::Tensor t = torch::from_blob(
      block.get() + offset, shape, [keep = block](void*) {}, torch::TensorOptions().dtype(dtype));
  offset += BatchBuffers::aligned(bytes);
  return t;
}

// Reverses the last axis of a contiguous tensor in place (a left-right flip of [.., d, h, w]):
// one pass, where copy_(flip()) makes a flipped copy and copies it back.
template <typename T>
void reverseRows(const torch::Tensor& t) {
  LDDPM_CHECK(t.is_contiguous(), "reverseRows: a contiguous tensor");
  const std::int64_t w = t.size(-1);
  T* data = t.data_ptr<T>();
  for (std::int64_t at = 0, n = t.numel(); at < n; at += w) std::reverse(data + at, data + at + w);
}

}  // namespace

struct Loader::Reader {
  Reader(const std::string& storeDir, bool directReads) : store(storeDir, directReads) {}
  StoreReader store;
  // The sample order of the epoch read last, made once per epoch instead of once per batch.
  std::int64_t orderEpoch = -1;
  std::vector<std::int64_t> order;
};

core::po::options_description LoaderOptions::describe() {
  namespace po = core::po;
  po::options_description d("Data options");
  d.add_options()("store", po::value(&store)->required()->value_name("DIR"),
                  "preprocessed HDF5 store (lddpm preprocess)")(
      "split", po::value(&split)->default_value(split), "store split to read: train, test or all")(
      "patch", po::value(&patch)->default_value(patch),
      "patch edge P (P³ patches); 0 = whole volumes")(
      "lesion-fraction", po::value(&sampler.lesionFraction)->default_value(sampler.lesionFraction),
      "share of patches centred on a lesion voxel")(
      "flips", po::value(&sampler.flip)->default_value(sampler.flip), "random left-right flips")(
      "prefetch", po::value(&threads)->default_value(threads),
      "loader threads per rank (0: read on the caller's thread)");
  return d;
}

void LoaderOptions::validateOptions() const {
  auto fail = [](const char* option, const std::string& why) {
    LDDPM_THROW(core::UsageError, "option '--", option, "': ", why);
  };
  parseSplit(split);
  if (patch < 0) fail("patch", "must be >= 0");
  if (!(sampler.lesionFraction >= 0 && sampler.lesionFraction <= 1)) {
    fail("lesion-fraction", "must be in [0, 1]");
  }
  if (threads < 0) fail("prefetch", "must be >= 0");
}

Loader::Loader(LoaderOptions options)
    : options_(std::move(options)),
      manifest_(readManifest(options_.store)),
      subjects_(manifest_.casesOf(options_.split, /*limit=*/0, options_.store)),
      sampler_(subjects_.size(), options_.sampler),
      indexStride_(manifest_.parameters.value("index_stride", PreprocessOptions{}.indexStride)),
      produceCursor_(options_.start),
      deliverCursor_(options_.start),
      buffers_(std::make_shared<BatchBuffers>(options_.queueDepth + options_.threads + 2)) {
  LDDPM_CHECK(options_.worldSize >= 1 && options_.rank >= 0 && options_.rank < options_.worldSize,
              "loader: rank ", options_.rank, " outside world size ", options_.worldSize);
  LDDPM_CHECK(options_.threads >= 0 && options_.queueDepth >= 1,
              "loader: threads >= 0 and queue depth >= 1");
  for (int a = 0; a < 3; ++a) {
    patch_[a] = options_.patch > 0 ? options_.patch : manifest_.grid[a];
    if (patch_[a] > manifest_.grid[a]) {
      LDDPM_THROW(core::UsageError, "option '--patch': ", options_.patch,
                  " is larger than the store's grid ", manifest_.grid[0], "x", manifest_.grid[1],
                  "x", manifest_.grid[2]);
    }
  }
  if (options_.threads == 0)
    callerReader_ = std::make_unique<Reader>(options_.store, options_.directReads);
  for (int t = 0; t < options_.threads; ++t) workers_.emplace_back([this] { work(); });
}

Loader::~Loader() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  changed_.notify_all();
  for (auto& w : workers_) w.join();
}

Cursor Loader::cursor() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return deliverCursor_;
}

void Loader::work() {
  Reader reader(options_.store, options_.directReads);
  for (;;) {
    std::int64_t seq;
    Cursor cursor;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [&] { return stop_ || produce_ < deliver_ + options_.queueDepth; });
      if (stop_) return;
      seq = produce_++;
      cursor = produceCursor_;
      produceCursor_ = sampler_.advance(cursor);
    }
    Slot slot;
    try {
      slot.batch = read(cursor, reader);
    } catch (...) {
      slot.error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ready_[seq] = std::move(slot);
    }
    changed_.notify_all();
  }
}

Batch Loader::next() {
  if (callerReader_) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (failed_) std::rethrow_exception(failed_);
    try {
      Batch b = read(deliverCursor_, *callerReader_);
      deliverCursor_ = b.next;
      return b;
    } catch (...) {
      failed_ = std::current_exception();
      throw;
    }
  }
  std::unique_lock<std::mutex> lock(mutex_);
  if (failed_) std::rethrow_exception(failed_);
  changed_.wait(lock, [&] { return ready_.count(deliver_) > 0; });
  Slot slot = std::move(ready_.at(deliver_));
  ready_.erase(deliver_);
  if (slot.error) {
    failed_ = slot.error;
    std::rethrow_exception(failed_);
  }
  ++deliver_;
  deliverCursor_ = slot.batch->next;
  lock.unlock();
  changed_.notify_all();
  return std::move(*slot.batch);
}

Batch Loader::read(const Cursor& cursor, Reader& reader) const {
  Batch b;
  b.cursor = cursor;
  b.next = sampler_.advance(cursor);
  if (reader.orderEpoch != cursor.epoch) {
    reader.order = sampler_.order(cursor.epoch);
    reader.orderEpoch = cursor.epoch;
  }
  b.plans = sampler_.rankBatch(cursor, options_.rank, options_.worldSize, reader.order);
  // Each patch is read straight into its slice of the batch tensors: no per-patch tensor, no
  // stack. An empty share (a rank whose share of a batch smaller than the world is nothing) gives
  // tensors with 0 samples.
  const std::int64_t n = static_cast<std::int64_t>(b.plans.size());
  const std::int64_t c = static_cast<std::int64_t>(manifest_.channels.size());
  const std::int64_t voxels = patch_[0] * patch_[1] * patch_[2];
  const auto bytes = [](std::int64_t k) {
    return BatchBuffers::aligned(static_cast<std::size_t>(k));
  };
  const std::shared_ptr<std::byte> block =
      buffers_->acquire(bytes(n * c * voxels * 4) + 2 * bytes(n * voxels));
  std::size_t offset = 0;
  b.image = viewOf(block, offset, {n, c, patch_[0], patch_[1], patch_[2]}, torch::kFloat32);
  b.tissue = viewOf(block, offset, {n, 1, patch_[0], patch_[1], patch_[2]}, torch::kUInt8);
  b.lesion = viewOf(block, offset, {n, 1, patch_[0], patch_[1], patch_[2]}, torch::kUInt8);
  for (std::int64_t i = 0; i < n; ++i) {
    const SamplePlan& plan = b.plans[static_cast<std::size_t>(i)];
    const SubjectEntry& subject = subjects_[plan.subject];
    ShardReader& shard = reader.store.shard(subject.shard);
    std::array<std::int64_t, 3> start{0, 0, 0};
    if (options_.patch > 0) {
      // One row of the subject's index tables centres the patch: read alone, so a worker keeps
      // 32 bytes per subject for them (ShardReader::readIndexRow) instead of the tables.
      using From = PatchSampler::Centre::From;
      const auto [cells, lesions] = shard.indexRows(subject.id);
      const PatchSampler::Centre centre = PatchSampler::centreOf(plan, cells, lesions);
      std::array<std::int32_t, 3> zyx{};
      if (centre.from != From::GridCentre) {
        zyx = shard.readIndexRow(subject.id,
                                 centre.from == From::LesionVoxel
                                     ? ShardReader::IndexTable::LesionVoxels
                                     : ShardReader::IndexTable::PatchIndex,
                                 static_cast<std::int64_t>(centre.row));
      }
      start =
          PatchSampler::patchStart(plan, centre, zyx, indexStride_, manifest_.grid, options_.patch);
    }
    PatchData p{b.image[i], b.tissue[i][0], b.lesion[i][0]};
    shard.readPatchInto(subject.id, start, patch_, p);
    if (plan.gain != 1.0 || plan.bias != 0.0) {
      // Intensity augmentation inside the brain only: background stays exactly -1.
      const torch::Tensor brain = p.tissue.gt(0).unsqueeze(0).expand_as(p.image);
      p.image.copy_(torch::where(brain, (p.image * plan.gain + plan.bias).clamp(-1, 1), p.image));
    }
    if (plan.flipX) {
      reverseRows<float>(p.image);
      reverseRows<std::uint8_t>(p.tissue);
      reverseRows<std::uint8_t>(p.lesion);
    }
    b.subjects.push_back(subject.id);
    b.starts.push_back(start);
  }
  return b;
}

}  // namespace lddpm::data
