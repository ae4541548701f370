// Lesion-DDPM benchmarks (docs/BENCHMARKS.md "Models"):
//   --mode flops       training-step FLOP rate vs one large conv3d, interleaved in this process
//   --mode checkpoint  peak activation memory and step time, plain vs checkpointed, interleaved
//   --mode step        median training-step time only (unet_reference.py calls this to compare)
//   --mode profile     one warm step under the autograd profiler: a Chrome trace (profile_ops.py)
//   --mode sample      seconds per sampled volume (DDIM K or DDPM), now (the models' direct
//                      oneDNN conv3d, the mask's maps made once) vs before (ATen's own kernel
//                      choice, the maps made at every step), alternating in one process
//   --mode profile-sample  one warm DDIM sample (direct path) under the autograd profiler
//                      kernel choice (models/Conv3d.h), interleaved in this process
// FLOPs are counted from the conv shapes: 2·Cin·Cout·k³ per output voxel forward, x3 for
// forward + backward. Memory is counted exactly by a wrapper around LibTorch's CPU allocator
// (live bytes of every CPU tensor; oneDNN scratch buffers outside it are not seen).
// With --device cuda (docs/gpu.md): the step runs on the GPU, in float32 or under bf16 autocast
// (--bf16), the reference conv3d always in bf16, and the peak memory comes from the CUDA
// caching allocator's statistics.
#include <ATen/ATen.h>
#include <c10/core/CPUAllocator.h>
#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <algorithm>
#include <iomanip>
#include <iostream>
#include <memory>
#include <mutex>
#include <regex>
#include <unordered_map>
#if LDDPM_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include "core/Allocator.h"
#include "core/Error.h"
#include "core/Json.h"
#include "core/Options.h"
#include "core/Rng.h"
#include "core/Timer.h"
#include "core/Version.h"
#include "models/Autocast.h"
#include "models/Conv3d.h"
#include "models/Diffusion.h"
#include "models/DiffusionModel.h"
#include "models/Registry.h"
#include "tests/bench/models/SyntheticBatch.h"

namespace {
using namespace lddpm;
using namespace lddpm::models;

// LibTorch 2.3 made Allocator::allocate non-const and added a pure copy_data.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
#define LDDPM_ALLOCATE_CONST
#define LDDPM_ALLOCATOR_COPY_DATA                                             \
  void copy_data(void* dest, const void* src, std::size_t n) const override { \
    default_copy_data(dest, src, n);                                          \
  }
#else
#define LDDPM_ALLOCATE_CONST const
#define LDDPM_ALLOCATOR_COPY_DATA
#endif

// Counts live and peak bytes of CPU tensor storage by wrapping the default allocator. The data
// pointer doubles as the context (oneDNN allocates through raw_allocate, which requires it), so
// sizes are looked up in a map on free.
class CountingAllocator final : public c10::Allocator {
 public:
  explicit CountingAllocator(c10::Allocator* inner) : inner_(inner) { instance_ = this; }
  c10::DataPtr allocate(size_t bytes) LDDPM_ALLOCATE_CONST override {
    c10::DataPtr original = inner_->allocate(bytes);
    c10::DeleterFnPtr deleter = original.get_deleter();
    void* data = original.release_context();  // DefaultCPUAllocator: context == data
    std::lock_guard<std::mutex> lock(mutex_);
    blocks_[data] = {bytes, deleter};
    live_ += static_cast<std::int64_t>(bytes);
    peak_ = std::max(peak_, live_);
    return {data, data, &CountingAllocator::release, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &CountingAllocator::release; }
  LDDPM_ALLOCATOR_COPY_DATA
  std::int64_t live() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return live_;
  }
  std::int64_t peak() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return peak_;
  }
  void resetPeak() {
    std::lock_guard<std::mutex> lock(mutex_);
    peak_ = live_;
  }

 private:
  struct Block {
    size_t bytes;
    c10::DeleterFnPtr deleter;
  };
  static void release(void* data) {
    CountingAllocator* self = instance_;
    c10::DeleterFnPtr deleter = nullptr;
    {
      std::lock_guard<std::mutex> lock(self->mutex_);
      auto it = self->blocks_.find(data);
      if (it == self->blocks_.end()) return;  // not ours: cannot happen, but never free blindly
      self->live_ -= static_cast<std::int64_t>(it->second.bytes);
      deleter = it->second.deleter;
      self->blocks_.erase(it);
    }
    if (deleter) deleter(data);
  }
  static inline CountingAllocator* instance_ = nullptr;
  c10::Allocator* inner_;
  mutable std::mutex mutex_;
  mutable std::unordered_map<void*, Block> blocks_;
  mutable std::int64_t live_ = 0, peak_ = 0;
};

CountingAllocator* installCountingAllocator() {
  static CountingAllocator counting(c10::GetCPUAllocator());
  c10::SetCPUAllocator(&counting, /*priority=*/100);
  return &counting;
}

struct Settings {
  std::int64_t side = 48, batch = 2, base = 16, threads = 2, steps = 3, warmup = 1;
  std::vector<std::int64_t> grid;  // D, H, W (--mode sample); empty: side³
  std::int64_t sampleSteps = 10;   // DDIM K (--mode sample)
  std::string sampler = "ddim";    // ddim | ddpm (--mode sample)
  std::string paths = "both";      // both | before | now (--mode sample)
  std::string checkpointLevels = "0,1,2,3";
  std::int64_t modulationHidden = 32;
  std::string maskEmbedding = "block";  // block | level (ModelConfig)
  std::string device = "cpu";
  std::string trace = "step-trace.json";  // --mode profile
  bool channelsLast = false;              // 5-D weights and inputs in channels_last_3d
  bool bf16 = false;
  bool json = false;
  std::vector<std::int64_t> volume() const {  // D, H, W of the batch
    return grid.empty() ? std::vector<std::int64_t>{side, side, side} : grid;
  }
  torch::Device where() const {
    return device == "cuda" ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
  }
};

// Host and device agree before a clock is read: CUDA kernels run asynchronously.
void sync(const Settings& s) {
  if (s.device == "cuda") torch::cuda::synchronize();
}

// Peak bytes the CUDA caching allocator handed out since the last reset (0 on the CPU).
void resetCudaPeak(const Settings& s) {
#if LDDPM_WITH_CUDA
  if (s.device == "cuda") c10::cuda::CUDACachingAllocator::resetPeakStats(0);
#endif
}
double cudaPeakMib(const Settings& s) {
#if LDDPM_WITH_CUDA
  if (s.device == "cuda") {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(0);
    return static_cast<double>(stats.allocated_bytes[0].peak) / (1 << 20);  // [0]: all pools
  }
#endif
  return 0.0;
}

// Forward conv FLOPs of one U-Net pass, from each conv's weight shape and the grid its output
// lives on (read from the module name: encL/decL/midL at level L, downL -> L+1, upL -> L-1).
double convForwardFlops(DiffusionModelImpl& model, const Settings& s) {
  const std::int64_t levels = model.unet()->options().levels();
  const std::regex levelName(R"((enc|dec|down|up|mod_embed)(\d+))");
  double flops = 0;
  for (const auto& item : model.named_parameters()) {
    const auto& w = item.value();
    if (w.dim() != 5) continue;  // conv weights only: [Cout, Cin, k, k, k]
    std::int64_t level = 0;
    std::smatch m;
    const std::string name = item.key();
    if (name.find("mid_") != std::string::npos) {
      level = levels - 1;
    } else if (std::regex_search(name, m, levelName)) {
      level = std::stoll(m[2]);
      if (m[1] == "down") level += 1;
      if (m[1] == "up") level -= 1;
    }
    const double voxels =
        static_cast<double>(s.side * s.side * s.side) / static_cast<double>(1LL << (3 * level));
    flops += 2.0 * static_cast<double>(w.numel()) * voxels * static_cast<double>(s.batch);
  }
  return flops;
}

std::shared_ptr<DiffusionModelImpl> makeModel(const Settings& s,
                                              const std::string& checkpointLevels) {
  ModelConfig c;
  c.baseChannels = s.base;
  c.modulationHidden = s.modulationHidden;
  c.maskEmbedding = s.maskEmbedding;
  c.checkpointLevels = checkpointLevels;
  auto model = std::dynamic_pointer_cast<DiffusionModelImpl>(createModel(c));
  model->to(s.where());
  if (s.channelsLast) {
    torch::NoGradGuard noGrad;
    for (auto& p : model->parameters()) {
      if (p.dim() == 5) p.set_data(p.contiguous(torch::MemoryFormat::ChannelsLast3d));
    }
  }
  return model;
}

Batch makeBatch(const Settings& s) {
  Batch b = bench::syntheticBatch(s.batch, s.volume());
  for (auto* t : {&b.image, &b.anatomy, &b.lesion}) {
    *t = t->to(s.where());
    if (s.channelsLast) *t = t->contiguous(torch::MemoryFormat::ChannelsLast3d);
  }
  return b;
}

// One AdamW training step; returns seconds. `peakActivation` (optional) gets the peak bytes above
// what was live when the step began (parameters, gradients, optimiser state, the batch).
double trainStep(const Settings& s, DiffusionModelImpl& model, torch::optim::AdamW& opt,
                 const Batch& batch, std::int64_t step, CountingAllocator* counter = nullptr,
                 std::int64_t* peakActivation = nullptr, double* loss = nullptr) {
  Generators gens{core::makeCpuGenerator(static_cast<std::uint64_t>(step))};
  const std::int64_t before = counter ? counter->live() : 0;
  if (counter) counter->resetPeak();
  sync(s);
  core::Stopwatch watch;
  opt.zero_grad();
  LossTerms terms = [&] {
    AutocastScope autocast(s.where().type(), s.bf16);
    return model.loss(batch, gens);
  }();
  terms.total.backward();
  if (loss) *loss = terms.total.item<double>();
  if (counter && peakActivation) *peakActivation = counter->peak() - before;
  opt.step();
  sync(s);
  return watch.seconds();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// The machine is shared: the best round shows what the code can do, the median what a user saw.
double best(const std::vector<double>& v, bool largest) {
  return largest ? *std::max_element(v.begin(), v.end()) : *std::min_element(v.begin(), v.end());
}

int runStep(const Settings& s) {
  auto model = makeModel(s, "");
  torch::optim::AdamW opt(model->parameters(), torch::optim::AdamWOptions(1e-4));
  const Batch batch = makeBatch(s);
  std::vector<double> times;
  for (std::int64_t i = 0; i < s.warmup + s.steps; ++i) {
    const double t = trainStep(s, *model, opt, batch, i);
    if (i >= s.warmup) times.push_back(t);
  }
  core::Json out{{"step_s", median(times)}, {"params", model->parameterCount()}};
  std::cout << (s.json ? out.dump() : out.dump(2)) << "\n";
  return 0;
}

// One warm training step under LibTorch's legacy autograd profiler: a Chrome trace (forward and
// backward ops with their durations) that tests/bench/models/profile_ops.py turns into the
// top ops by self time.
int runProfile(const Settings& s) {
  auto model = makeModel(s, "");
  torch::optim::AdamW opt(model->parameters(), torch::optim::AdamWOptions(1e-4));
  const Batch batch = makeBatch(s);
  for (std::int64_t i = 0; i < s.warmup; ++i) trainStep(s, *model, opt, batch, i);
  double seconds = 0;
  {
    torch::autograd::profiler::RecordProfile profile(s.trace);
    seconds = trainStep(s, *model, opt, batch, s.warmup);
  }
  core::Json out{{"step_s", seconds}, {"params", model->parameterCount()}, {"trace", s.trace}};
  std::cout << (s.json ? out.dump() : out.dump(2)) << "\n";
  return 0;
}

// Reference: one large conv3d (32 -> 32 channels, the side and batch of the model, k = 3),
// forward + backward; in bf16 on a GPU (what its tensor cores are rated for).
double referenceConvSeconds(const Settings& s, double& flops) {
  torch::nn::Conv3d conv(torch::nn::Conv3dOptions(32, 32, 3).padding(1));
  conv->to(s.where());
  const auto x = torch::randn({s.batch, 32, s.side, s.side, s.side}).to(s.where());
  const double outVoxels = static_cast<double>(s.batch * s.side * s.side * s.side);
  flops = 3 * 2.0 * static_cast<double>(conv->weight.numel()) * outVoxels;
  std::vector<double> times;
  for (int i = 0; i < 4; ++i) {
    sync(s);
    core::Stopwatch watch;
    conv->zero_grad();
    {
      AutocastScope autocast(s.where().type(), s.device == "cuda");
      conv(x).sum().backward();
    }
    sync(s);
    if (i > 0) times.push_back(watch.seconds());
  }
  return median(times);
}

int runFlops(const Settings& s) {
  auto model = makeModel(s, "");
  torch::optim::AdamW opt(model->parameters(), torch::optim::AdamWOptions(1e-4));
  const Batch batch = makeBatch(s);
  const double stepFlops = 3 * convForwardFlops(*model, s);
  // Warm-up (oneDNN primitive caches, optimiser state). Its loss, of the same seeded initial
  // weights and batch in every process, compares fp32 with bf16 (tests/gpu/check.sh bounds it).
  double firstLoss = 0;
  trainStep(s, *model, opt, batch, 0, nullptr, nullptr, &firstLoss);
  std::vector<double> modelRates, convRates, stepTimes;
  double peakMib = 0;
  for (std::int64_t r = 0; r < s.steps; ++r) {  // interleaved: both see the same machine load
    resetCudaPeak(s);
    stepTimes.push_back(trainStep(s, *model, opt, batch, r + 1));
    peakMib = std::max(peakMib, cudaPeakMib(s));
    modelRates.push_back(stepFlops / stepTimes.back() / 1e9);
    double convFlops = 0;
    const double convSeconds = referenceConvSeconds(s, convFlops);
    convRates.push_back(convFlops / convSeconds / 1e9);
  }
  const double m = median(modelRates), c = median(convRates);
  core::Json out{{"side", s.side},
                 {"batch", s.batch},
                 {"base", s.base},
                 {"threads", s.threads},
                 {"device", s.device},
                 {"bf16", s.bf16},
                 {"params", model->parameterCount()},
                 {"step_s", median(stepTimes)},
                 {"first_loss", firstLoss},
                 {"peak_mib", peakMib},
                 {"step_gflop", stepFlops / 1e9},
                 {"model_gflops", m},
                 {"conv_gflops", c},
                 {"ratio", m / c},
                 {"best_model_gflops", best(modelRates, true)},
                 {"best_conv_gflops", best(convRates, true)},
                 {"best_ratio", best(modelRates, true) / best(convRates, true)}};
  std::cout << (s.json ? out.dump() : out.dump(2)) << "\n";
  return 0;
}

// DDIM sampling (K = --sample-steps, η = 1) of one batch, in rounds that alternate ATen's own
// conv3d kernel choice and the models' direct oneDNN path (setDirectOneDnn), after one untimed
// round of each, with every weight moved by N(0, 0.05²) so that no layer is zero. Reports seconds
// per volume of each, their ratio, and the largest difference between the two paths' volumes (the
// same noise: a rounding-level figure).
// The demo network as a trained one samples: in eval mode, every layer carrying weight.
auto makeSamplingModel(const Settings& s) {
  auto model = makeModel(s, "");
  model->eval();
  {  // the zero-initialised layers (output convs, γ/β) carry weight, as in a trained model
    torch::NoGradGuard noGrad;
    for (auto& p : model->parameters()) p.add_(torch::randn_like(p) * 0.05);
  }
  return model;
}

SamplerOptions samplerOptions(const Settings& s) {
  return SamplerOptions()
      .kind(s.sampler == "ddpm" ? SamplerKind::Ddpm : SamplerKind::Ddim)
      .steps(s.sampleSteps)
      .eta(1.0)
      .spacing(Spacing::Quadratic);
}

Generators caseGenerators(const Settings& s) {
  Generators gens;
  for (std::int64_t i = 0; i < s.batch; ++i)
    gens.push_back(core::makeCpuGenerator(static_cast<std::uint64_t>(i)));
  return gens;
}

int runProfileSample(const Settings& s) {
  auto model = makeSamplingModel(s);
  const Batch batch = makeBatch(s);
  Generators warm = caseGenerators(s), gens = caseGenerators(s);
  model->synthesize(batch, samplerOptions(s), warm);  // warm: oneDNN primitives
  double seconds = 0;
  {
    torch::autograd::profiler::RecordProfile profile(s.trace);
    core::Stopwatch watch;
    model->synthesize(batch, samplerOptions(s), gens);
    seconds = watch.seconds();
  }
  core::Json out{{"sample_s", seconds}, {"params", model->parameterCount()}, {"trace", s.trace}};
  std::cout << (s.json ? out.dump() : out.dump(2)) << "\n";
  return 0;
}

int runSample(const Settings& s) {
  auto model = makeSamplingModel(s);
  const Batch batch = makeBatch(s);
  // now: direct oneDNN, the mask's maps made once; before: ATen's choice, maps at every step.
  const auto once = [&](bool now, double* seconds, bool warmUp = false) {
    setDirectOneDnn(now);
    SamplerOptions sampler =
        samplerOptions(s).conditionCacheBytes(now ? SamplerOptions().conditionCacheBytes() : 0);
    if (warmUp) sampler.kind(SamplerKind::Ddim).steps(1);  // the same kernels, one call
    Generators gens = caseGenerators(s);
    sync(s);
    core::Stopwatch watch;
    torch::Tensor x = model->synthesize(batch, sampler, gens);
    sync(s);
    if (seconds) *seconds = watch.seconds() / static_cast<double>(s.batch);
    return x.cpu();
  };
  const bool before = s.paths != "now", now = s.paths != "before";
  double maxDiff = -1;  // -1: one path only
  if (before && now) {
    maxDiff = (once(false, nullptr) - once(true, nullptr)).abs().max().item<double>();
  } else {
    once(now, nullptr, /*warmUp=*/true);  // untimed: oneDNN primitives, the allocator's heap
  }
  std::vector<double> tBefore, tNow;
  for (std::int64_t r = 0; r < s.steps; ++r) {
    if (before) once(false, &tBefore.emplace_back());
    if (now) once(true, &tNow.emplace_back());
  }
  setDirectOneDnn(true);
  core::Json out{{"grid", s.volume()},
                 {"batch", s.batch},
                 {"base", s.base},
                 {"modulation_hidden", s.modulationHidden},
                 {"threads", s.threads},
                 {"device", s.device},
                 {"params", model->parameterCount()},
                 {"sampler", s.sampler},
                 {"denoiser_calls", s.sampler == "ddpm" ? 1000 : s.sampleSteps},
                 {"blas", core::blasLibrary().name}};
  if (before) {
    out["before_s_per_volume"] = median(tBefore);
    out["best_before_s_per_volume"] = best(tBefore, false);
  }
  if (now) {
    out["now_s_per_volume"] = median(tNow);
    out["best_now_s_per_volume"] = best(tNow, false);
  }
  if (before && now) {
    out["ratio"] = median(tNow) / median(tBefore);
    out["max_abs_diff"] = maxDiff;
  }
  std::cout << (s.json ? out.dump() : out.dump(2)) << "\n";
  return 0;
}

int runCheckpoint(const Settings& s) {
  CountingAllocator* counter = installCountingAllocator();
  auto plain = makeModel(s, "");
  auto ckpt = makeModel(s, s.checkpointLevels);
  torch::optim::AdamW optPlain(plain->parameters(), torch::optim::AdamWOptions(1e-4));
  torch::optim::AdamW optCkpt(ckpt->parameters(), torch::optim::AdamWOptions(1e-4));
  const Batch batch = makeBatch(s);
  trainStep(s, *plain, optPlain, batch, 0);
  trainStep(s, *ckpt, optCkpt, batch, 0);
  std::vector<double> tPlain, tCkpt;
  std::int64_t mPlain = 0, mCkpt = 0;
  for (std::int64_t r = 0; r < s.steps; ++r) {
    tPlain.push_back(trainStep(s, *plain, optPlain, batch, r + 1, counter, &mPlain));
    tCkpt.push_back(trainStep(s, *ckpt, optCkpt, batch, r + 1, counter, &mCkpt));
  }
  const double a = median(tPlain), b = median(tCkpt);
  core::Json out{{"side", s.side},
                 {"batch", s.batch},
                 {"base", s.base},
                 {"threads", s.threads},
                 {"checkpoint_levels", s.checkpointLevels},
                 {"plain_peak_activation_mib", static_cast<double>(mPlain) / (1 << 20)},
                 {"checkpointed_peak_activation_mib", static_cast<double>(mCkpt) / (1 << 20)},
                 {"memory_reduction", static_cast<double>(mPlain) / static_cast<double>(mCkpt)},
                 {"plain_step_s", a},
                 {"checkpointed_step_s", b},
                 {"time_overhead", b / a - 1},
                 {"best_plain_step_s", best(tPlain, false)},
                 {"best_checkpointed_step_s", best(tCkpt, false)},
                 {"best_time_overhead", best(tCkpt, false) / best(tPlain, false) - 1}};
  std::cout << (s.json ? out.dump() : out.dump(2)) << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  core::tuneAllocatorForTensors();  // the allocator `lddpm` runs with (core/Allocator.h)
  Settings s;
  std::string mode = "flops", gridText;
  core::po::options_description desc("ModelsBench");
  desc.add_options()("mode", core::po::value(&mode)->default_value(mode),
                     "flops | checkpoint | step | profile | sample")(
      "side", core::po::value(&s.side)->default_value(s.side), "cube side of the training patch")(
      "batch", core::po::value(&s.batch)->default_value(s.batch), "batch size")(
      "base", core::po::value(&s.base)->default_value(s.base), "U-Net base channels")(
      "threads", core::po::value(&s.threads)->default_value(s.threads), "torch intra-op threads")(
      "steps", core::po::value(&s.steps)->default_value(s.steps), "timed steps (rounds)")(
      "warmup", core::po::value(&s.warmup)->default_value(s.warmup),
      "untimed steps first (--mode step)")(
      "checkpoint-levels", core::po::value(&s.checkpointLevels)->default_value(s.checkpointLevels),
      "levels to checkpoint (--mode checkpoint)")(
      "modulation-hidden", core::po::value(&s.modulationHidden)->default_value(s.modulationHidden),
      "hidden channels of the mask modulation")(
      "mask-embedding", core::po::value(&s.maskEmbedding)->default_value(s.maskEmbedding),
      "block | level: per-block mask convolutions or one shared embedding per level")(
      "device", core::po::value(&s.device)->default_value(s.device), "cpu | cuda (GPU 0)")(
      "channels-last", core::po::bool_switch(&s.channelsLast),
      "weights and batch in channels_last_3d (the layout oneDNN computes in)")(
      "bf16", core::po::bool_switch(&s.bf16), "bf16 autocast for the model step (cuda)")(
      "grid", core::po::value(&gridText),
      "D,H,W of the volume (--mode sample; default: --side cubed)")(
      "sample-steps", core::po::value(&s.sampleSteps)->default_value(s.sampleSteps),
      "DDIM steps K (--mode sample)")("sampler",
                                      core::po::value(&s.sampler)->default_value(s.sampler),
                                      "ddim | ddpm (all T = 1000 steps) (--mode sample)")(
      "paths", core::po::value(&s.paths)->default_value(s.paths),
      "both | before | now: which sampling paths --mode sample times")(
      "trace", core::po::value(&s.trace)->default_value(s.trace),
      "Chrome trace of one step (--mode profile)")("json", core::po::bool_switch(&s.json),
                                                   "one-line JSON");
  try {
    const auto parsed =
        core::parseOptions("bench", std::vector<std::string>(argv + 1, argv + argc), desc);
    if (parsed.helpRequested) {
      std::cout << desc << "\n";
      return 0;
    }
    torch::set_num_threads(
        static_cast<int>(s.threads));  // Debian's LibTorch starts with 1 (docs/facts.md)
    torch::manual_seed(0);
    if (s.device != "cpu" && s.device != "cuda")
      throw core::UsageError("--device must be cpu or cuda");
    if (s.device == "cuda" && !torch::cuda::is_available())
      throw core::UsageError("--device cuda: no CUDA device");
    if (!gridText.empty()) {
      if (mode != "sample" && mode != "profile-sample")
        throw core::UsageError("--grid: for --mode sample and profile-sample only");
      s.grid = parseIntList(gridText, "--grid");
      if (s.grid.size() != 3) throw core::UsageError("--grid: want D,H,W, got " + gridText);
    }
    if (s.sampler != "ddim" && s.sampler != "ddpm")
      throw core::UsageError("--sampler must be ddim or ddpm, got " + s.sampler);
    if (s.paths != "both" && s.paths != "before" && s.paths != "now")
      throw core::UsageError("--paths must be both, before or now, got " + s.paths);
    if (mode == "checkpoint" && s.device != "cpu")
      throw core::UsageError("--mode checkpoint counts CPU memory only");
    if (mode == "flops") return runFlops(s);
    if (mode == "checkpoint") return runCheckpoint(s);
    if (mode == "step") return runStep(s);
    if (mode == "profile") return runProfile(s);
    if (mode == "sample") return runSample(s);
    if (mode == "profile-sample") return runProfileSample(s);
    std::cerr << "ModelsBench: unknown --mode " << mode << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "ModelsBench: " << e.what() << "\n";
    return 1;
  }
}
