#include "launch/engine/Trainer.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <exception>
#include <filesystem>
#include <map>
#include <optional>
#include <sstream>

#include "core/AtomicFile.h"
#include "core/Checkpoint.h"
#include "core/Error.h"
#include "core/Log.h"
#include "core/MetricsLog.h"
#include "core/Progress.h"
#include "core/Rng.h"
#include "core/StopSignal.h"
#include "core/Timer.h"
#include "models/Autocast.h"

namespace lddpm::launch {
namespace fs = std::filesystem;

namespace {

// Per-sample generators: sample g of stream `group` always draws the same timestep and noise.
models::Generators sampleGenerators(std::uint64_t seed, const std::vector<std::int64_t>& indices,
                                    std::size_t group) {
  models::Generators gens;
  gens.reserve(indices.size());
  for (std::int64_t g : indices) {
    gens.push_back(core::makeCpuGenerator(
        core::deriveSeed(seed, core::RngStream::DiffusionNoise,
                         {static_cast<std::uint64_t>(g), static_cast<std::uint64_t>(group)})));
  }
  return gens;
}

// Asynchronous when the batch is in pinned host memory (StoreBatchSource pins it for CUDA runs):
// the copy is queued on the current stream, ahead of the step's kernels, and the host returns.
models::Batch toDevice(const models::Batch& b, const torch::Device& device) {
  return {b.image.to(device, /*non_blocking=*/true), b.anatomy.to(device, /*non_blocking=*/true),
          b.lesion.to(device, /*non_blocking=*/true)};
}

}  // namespace

Trainer::Trainer(TrainConfig config, models::ModelConfig modelConfig, BatchSource& source,
                 dist::Communicator& comm, std::string resolvedConfig, torch::Device device)
    : config_(std::move(config)),
      modelConfig_(std::move(modelConfig)),
      source_(source),
      comm_(comm),
      resolvedConfig_(std::move(resolvedConfig)),
      device_(device),
      layout_(config_.run) {
  config_.validate(comm_.size());
  LDDPM_CHECK(device_.is_cuda() == (config_.device == "cuda"), "Trainer: --device ", config_.device,
              " but the engine was given ", device_);
  // Every rank initialises identically (and DataParallel/ZeroAdamW broadcast rank 0's weights).
  core::seedGlobal(core::deriveSeed(config_.seed, core::RngStream::ModelInit));
  model_ = models::createModel(modelConfig_);
  model_->to(device_);
  schedule_ = LrSchedule{config_.lr, config_.minLr, config_.warmup, config_.steps};
  // Dropout draws from the default generator: give it a per-rank stream (restored on resume).
  core::seedGlobal(core::deriveSeed(config_.seed, core::RngStream::Dropout,
                                    {static_cast<std::uint64_t>(comm_.rank())}));
  resumeIfAsked();
}

Trainer::~Trainer() = default;

std::string Trainer::checkpointDir() const { return layout_.checkpoints(); }

void Trainer::buildOptimisers() {
  // Name every parameter once, so groups (which the models give as plain tensors) have names.
  std::map<const void*, std::string> names;
  for (const auto& p : model_->named_parameters()) names[p.value().unsafeGetTensorImpl()] = p.key();
  for (const auto& spec : model_->parameterGroups()) {
    torch::OrderedDict<std::string, torch::Tensor> params;
    for (const auto& t : spec.parameters) params.insert(names.at(t.unsafeGetTensorImpl()), t);
    // Buffers travel with the first group (all ranks initialise identically anyway).
    const std::vector<torch::Tensor> buffers =
        groups_.empty() ? model_->buffers() : std::vector<torch::Tensor>{};
    groups_.push_back(makeGroupOptimizer(spec.name, std::move(params), buffers, comm_, config_,
                                         spec.beta1.value_or(config_.beta1)));
  }
}

// Which checkpoint to resume from: rank 0 verifies (every file read once, not once per rank) and
// tells the others. --resume auto skips damaged checkpoints with a warning and takes the newest
// intact one; a folder named by --resume must itself verify.
std::string Trainer::verifiedResumeFolder() {
  std::int64_t code = -1;  // >= 0: that step's checkpoint; -1: start over; -2: rank 0 failed
  std::string from;
  std::exception_ptr failure;
  if (comm_.rank() == 0) {
    try {
      if (config_.resume == "auto") {
        if (auto intact = core::newestIntactCheckpoint(checkpointDir())) code = intact->step;
      } else {
        if (!core::verifyCheckpoint(config_.resume)) {
          LDDPM_LOG(Warn) << config_.resume << ": written without checksums: not verified";
        }
        code = 0;
      }
    } catch (const core::Error&) {
      code = -2;
      failure = std::current_exception();
    }
  }
  torch::Tensor shared = torch::tensor({code}, torch::kInt64).to(comm_.device());
  comm_.broadcast(shared, 0)->wait();
  code = shared.cpu().item<std::int64_t>();
  if (failure) std::rethrow_exception(failure);
  if (code == -2) {
    LDDPM_THROW(core::Error, "rank 0 found no checkpoint to resume from in ", config_.run,
                " (its message says why)");
  }
  if (code < 0) return "";
  return config_.resume == "auto"
             ? (fs::path(checkpointDir()) / core::checkpointName(code)).string()
             : config_.resume;
}

void Trainer::resumeIfAsked() {
  if (config_.resume != "auto" && config_.resume != "never" &&
      !fs::exists(fs::path(config_.resume) / "meta.json")) {
    LDDPM_THROW(core::UsageError, "lddpm train: option '--resume': '", config_.resume,
                "' is not a complete checkpoint folder (no meta.json)");
  }
  const std::string from = config_.resume == "never" ? "" : verifiedResumeFolder();
  ema_ = std::make_unique<Ema>(*model_, config_.emaDecay);
  if (from.empty()) {
    takeClassIntensities();
    buildOptimisers();
    return;
  }
  // Weights first (identical on every rank), then optimisers, whose construction flattens and
  // broadcasts parameters, then their state.
  const core::Json meta = core::readCheckpointMeta(from);
  const CheckpointLayout checkpoint(from);
  loadModuleWeights(*model_, core::loadTensorDict(checkpoint.model()), checkpoint.model());
  buildOptimisers();
  loadCheckpoint(from);
  step_ = meta.at("step").get<std::int64_t>();
  skipped_ = meta.value("skipped_steps", std::int64_t{0});
  LDDPM_LOG(Info) << "resumed from " << from << " at step " << step_;
}

// A fresh run of a model with a class-mean prior: every rank reads the same split, so the buffers
// agree before the optimisers broadcast them (a resumed run loads them from model.pt instead).
void Trainer::takeClassIntensities() {
  if (!model_->wantsClassIntensities()) return;
  const std::optional<models::ClassIntensities> means = source_.classIntensities();
  if (!means) {
    LDDPM_THROW(core::UsageError, "option '--intensity-prior': ", modelConfig_.model,
                " wants the class intensities of its training data, which this data source "
                "cannot give (train from a store)");
  }
  model_->setClassIntensities(*means);
  LDDPM_LOG(Info) << "class-mean prior from the training split: background " << means->background
                  << ", CSF " << means->csf << ", GM " << means->greyMatter << ", WM "
                  << means->whiteMatter << ", lesion " << means->lesion;
}

void Trainer::loadCheckpoint(const std::string& dir) {
  const core::Json meta = core::readCheckpointMeta(dir);
  const CheckpointLayout checkpoint(dir);
  const int savedWorld = meta.value("world_size", 1);
  const bool savedZero = meta.value("zero", false);
  if (savedZero != config_.parallel.zero) {
    LDDPM_THROW(core::Error, dir, ": written with --zero ", savedZero, ", resuming with --zero ",
                config_.parallel.zero, " is not supported");
  }
  ema_->load(core::loadTensorDict(checkpoint.ema()));
  for (auto& group : groups_) group->load(checkpoint, meta);
  const int rngRank = savedWorld == comm_.size() ? comm_.rank() : 0;
  if (savedWorld != comm_.size()) {
    LDDPM_LOG(Warn) << dir << " was written by " << savedWorld << " ranks; dropout RNG streams "
                    << "restart from rank 0's state";
  }
  const core::TensorDict rng = core::loadTensorDict(checkpoint.rng(rngRank));
  at::Generator generator = at::detail::getDefaultCPUGenerator();  // a handle on the global one
  generator.set_state(rng.at("cpu"));
}

void Trainer::saveCheckpoint() {
  const std::string dir = checkpointDir();
  std::unique_ptr<core::CheckpointWriter> writer;
  if (comm_.rank() == 0) writer = std::make_unique<core::CheckpointWriter>(dir, step_);
  comm_.barrier()->wait();  // the temporary folder exists for everyone
  const CheckpointLayout checkpoint(core::CheckpointWriter::tempPathFor(dir, step_));
  for (auto& group : groups_) group->save(checkpoint);
  core::saveTensorDict(checkpoint.rng(comm_.rank()),
                       {{"cpu", at::detail::getDefaultCPUGenerator().get_state()}});
  if (comm_.rank() == 0) {
    core::saveTensorDict(checkpoint.model(), moduleWeights(*model_));
    core::saveTensorDict(checkpoint.ema(), ema_->state());
    core::writeFileAtomic(checkpoint.config(), resolvedConfig_);
  }
  comm_.barrier()->wait();  // every rank's files are written
  if (comm_.rank() == 0) {
    writer->commit({{"world_size", comm_.size()},
                    {"zero", config_.parallel.zero},
                    {"model", modelConfig_.model},
                    {"skipped_steps", skipped_},
                    {"seed", config_.seed}});
    core::pruneCheckpoints(dir, config_.keepCheckpoints);
    LDDPM_LOG(Info) << "checkpoint " << core::checkpointName(step_) << " written";
  }
  comm_.barrier()->wait();
}

void Trainer::writeStatus(const std::string& state) const {
  if (comm_.rank() != 0) return;
  core::writeJsonFile(layout_.status(), {{"state", state},
                                         {"step", step_},
                                         {"steps", config_.steps},
                                         {"model", modelConfig_.model},
                                         {"world_size", comm_.size()}});
}

// Forward/backward of one parameter group over the step's micro-batches, the cross-rank
// reduction, the finite check and the optimiser step. `stopLocal` rides along in the same
// allreduce as the loss terms and comes back as stopRequested.
Trainer::GroupStep Trainer::trainGroup(GroupOptimizer& group, std::size_t groupIndex, double lr,
                                       bool stopLocal) {
  GroupStep result;
  for (auto& p : model_->parameters()) p.mutable_grad() = torch::Tensor();
  group.beginStep();
  std::vector<std::string> partNames;
  std::vector<double> sums;
  for (std::int64_t micro = 0; micro < config_.accumulate; ++micro) {
    const auto indices =
        localIndices(step_, micro, config_.batch, config_.accumulate, comm_.rank(), comm_.size());
    core::Stopwatch wait;
    models::Batch batch = toDevice(source_.get(indices), device_);
    result.dataWait += wait.seconds();
    if (micro + 1 < config_.accumulate) {
      source_.prefetch(localIndices(step_, micro + 1, config_.batch, config_.accumulate,
                                    comm_.rank(), comm_.size()));
    } else if (step_ + 1 < config_.steps) {
      source_.prefetch(localIndices(step_ + 1, 0, config_.batch, config_.accumulate, comm_.rank(),
                                    comm_.size()));
    }
    models::Generators gens = sampleGenerators(config_.seed, indices, groupIndex);
    group.beginMicroBatch(micro + 1 == config_.accumulate);
    // bf16 autocast covers the forward only; backward runs in the forward's dtypes and the
    // master weights, gradients and optimiser state stay float32.
    models::LossTerms terms = [&] {
      models::AutocastScope autocast(device_.type(), config_.bf16);
      return model_->loss(batch, gens, group.name());
    }();
    (terms.total / static_cast<double>(config_.accumulate)).backward();
    if (sums.empty()) {
      sums.assign(terms.parts.size() + 1, 0.0);
      for (const auto& part : terms.parts) partNames.push_back(part.first);
    }
    sums[0] += terms.total.detach().item<double>();
    for (std::size_t i = 0; i < terms.parts.size(); ++i) {
      sums[i + 1] += terms.parts[i].second.detach().item<double>();
    }
  }
  group.endBackward();

  // One small allreduce carries the loss terms, the non-finite flag and the stop flag.
  const bool finite = std::isfinite(sums[0]) && group.gradientsFinite();
  std::vector<double> stats = sums;
  stats.push_back(finite ? 0.0 : 1.0);
  stats.push_back(stopLocal ? 1.0 : 0.0);
  torch::Tensor packed = torch::tensor(stats, torch::kFloat64).to(comm_.device());
  comm_.allreduce(packed, dist::ReduceOp::Sum)->wait();
  packed = packed.cpu();
  auto acc = packed.accessor<double, 1>();
  const double denominator = static_cast<double>(comm_.size() * config_.accumulate);
  result.loss = acc[0] / denominator;
  for (std::size_t i = 0; i < partNames.size(); ++i) {
    result.parts.emplace_back(partNames[i], acc[static_cast<long>(i + 1)] / denominator);
  }
  result.skipped = acc[static_cast<long>(sums.size())] > 0;
  result.stopRequested = acc[static_cast<long>(sums.size() + 1)] > 0;
  if (result.skipped) {
    group.discard();
  } else {
    result.gradNorm = group.step(lr);
  }
  return result;
}

void Trainer::enableOnly(const GroupOptimizer* active) {
  if (groups_.size() < 2) return;
  for (auto& g : groups_) {
    for (auto& p : g->parameters().values()) {
      p.set_requires_grad(active == nullptr || g.get() == active);
    }
  }
}

Trainer::StepOutcome Trainer::trainStep(double lr) {
  StepOutcome out;
  out.row = {{"step", step_ + 1}};
  bool anySkipped = false;
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    GroupOptimizer& group = *groups_[g];
    enableOnly(&group);
    const GroupStep done = trainGroup(group, g, lr, core::StopSignal::requested());
    out.dataWait += done.dataWait;
    out.gradNorm = done.gradNorm;
    out.loss = done.loss;
    anySkipped = anySkipped || done.skipped;
    out.stop = out.stop || done.stopRequested;
    const std::string prefix = groups_.size() > 1 ? group.name() + "_" : "";
    out.row[prefix + "loss"] = done.loss;
    for (const auto& [name, value] : done.parts) out.row[name] = value;
    if (groups_.size() > 1) out.row[prefix + "grad_norm"] = done.gradNorm;
  }
  enableOnly(nullptr);
  if (anySkipped) {
    ++skipped_;
    if (++consecutiveNonfinite_ >= config_.maxNonfinite) {
      writeStatus("failed");
      LDDPM_THROW(core::Error, "step ", step_ + 1, ": the loss or a gradient was NaN/Inf for ",
                  consecutiveNonfinite_, " consecutive steps (", skipped_,
                  " skipped in total); lower --lr, check the store (lddpm inspect), or raise "
                  "--max-nonfinite");
    }
    LDDPM_LOG(Warn) << "step " << step_ + 1 << ": non-finite loss or gradient, step skipped";
  } else {
    consecutiveNonfinite_ = 0;
    ema_->update(*model_);
  }
  ++step_;
  // Every group, replicated or sharded: ranks that drifted apart stop the run here, naming
  // the parameter, instead of training on silently (docs/distributed.md).
  if (config_.parallel.desyncCheckEvery > 0 && step_ % config_.parallel.desyncCheckEvery == 0) {
    for (auto& group : groups_) group->checkInSync(step_);
  }
  return out;
}

void Trainer::logStep(core::MetricsLog& metrics, StepOutcome& outcome, double lr, double seconds) {
  if (step_ % config_.logEvery != 0 && step_ != config_.steps) return;
  core::Json& row = outcome.row;
  row["lr"] = lr;
  if (groups_.size() == 1) row["grad_norm"] = outcome.gradNorm;
  row["samples_per_s"] = static_cast<double>(config_.batch) / seconds;
  row["voxels_per_s"] = static_cast<double>(config_.batch * source_.voxelsPerSample()) / seconds;
  row["data_wait"] = outcome.dataWait / seconds;
  row["step_seconds"] = seconds;
  row["skipped_steps"] = skipped_;
  metrics.append(row);
}

TrainResult Trainer::run() {
  fs::create_directories(config_.run);
  core::StopSignal::install();
  // Rank 0 alone owns metrics.jsonl: a second rank's resume trim (an atomic rewrite) would
  // replace the file under rank 0's open append stream, and every row would go to the
  // unlinked inode.
  std::optional<core::MetricsLog> metrics;
  if (comm_.rank() == 0) metrics.emplace(layout_.metrics(), step_);
  writeStatus("running");
  core::Progress progress("train", config_.steps - step_);
  const std::int64_t firstStep = step_;
  TrainResult result;
  source_.start(step_);
  source_.prefetch(
      localIndices(step_, 0, config_.batch, config_.accumulate, comm_.rank(), comm_.size()));

  while (step_ < config_.steps) {
    comm_.setStep(step_);
    core::Stopwatch stepWatch;
    const double lr = schedule_.at(step_);
    StepOutcome outcome = trainStep(lr);
    result.lastLoss = outcome.loss;
    result.finalStep = step_;
    if (metrics) logStep(*metrics, outcome, lr, stepWatch.seconds());
    char detail[96];
    std::snprintf(detail, sizeof detail, "loss %.4g lr %.3g", result.lastLoss, lr);
    progress.update(step_ - firstStep, detail);

    const bool stop = outcome.stop;
    if (stop || step_ % config_.checkpointEvery == 0 || step_ == config_.steps) saveCheckpoint();
    if (stop && step_ < config_.steps) {
      writeStatus("stopped");
      throw core::ResumeRequested(core::strCat("stopped on a signal at step ", step_,
                                               " after checkpointing; rerun the same command "
                                               "(--resume auto) to continue"));
    }
  }
  progress.finish();
  result.skippedSteps = skipped_;
  writeStatus("finished");
  return result;
}

}  // namespace lddpm::launch
