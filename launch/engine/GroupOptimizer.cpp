#include "launch/engine/GroupOptimizer.h"

#include <limits>
#include <sstream>

#include "core/AtomicFile.h"
#include "core/Error.h"
#include "distributed/DataParallel.h"
#include "distributed/ParameterSync.h"
#include "distributed/ZeroAdamW.h"

namespace lddpm::launch {

bool GroupOptimizer::gradientsFinite() const {
  for (const auto& p : params_.values()) {
    if (p.grad().defined() && !torch::isfinite(p.grad()).all().item<bool>()) return false;
  }
  return true;
}

namespace {

// torch's AdamW on every rank; with more than one rank a DataParallel reducer averages the
// gradients during the last micro-batch's backward, so every rank applies the same update.
class ReplicatedAdamW final : public GroupOptimizer {
 public:
  ReplicatedAdamW(std::string name, torch::OrderedDict<std::string, torch::Tensor> params,
                  const std::vector<torch::Tensor>& buffers, dist::Communicator& comm,
                  const TrainConfig& config, double beta1)
      : GroupOptimizer(std::move(name), std::move(params)),
        comm_(comm),
        gradClip_(config.gradClip),
        adam_(params_.values(), torch::optim::AdamWOptions(config.lr)
                                    .betas({beta1, config.beta2})
                                    .weight_decay(config.weightDecay)) {
    if (comm_.size() > 1) {
      reducer_ = std::make_unique<dist::DataParallel>(params_, buffers, comm_,
                                                      config.parallel.dataParallelOptions());
    }
  }

  // The gradients go back into the reducer's buckets (views), so backward accumulates there.
  void beginStep() override {
    if (reducer_) reducer_->zeroGrad();
  }
  void beginMicroBatch(bool last) override {
    if (reducer_) reducer_->setSync(last);
  }
  void endBackward() override {
    if (reducer_) reducer_->finish();
  }
  double step(double lr) override {
    // An infinite bound measures the norm without scaling anything (--grad-clip 0: no clipping).
    const double bound = gradClip_ > 0 ? gradClip_ : std::numeric_limits<double>::infinity();
    const double norm = torch::nn::utils::clip_grad_norm_(params_.values(), bound);
    for (auto& group : adam_.param_groups()) group.options().set_lr(lr);
    adam_.step();
    return norm;
  }
  // Gradients are reset before every step's first backward: nothing to undo.
  void discard() override {}
  void checkInSync(std::int64_t step) override {
    if (reducer_) reducer_->checkParametersInSync(step);
  }
  void save(const CheckpointLayout& checkpoint) const override {
    if (comm_.rank() != 0) return;  // replicated: rank 0's state is every rank's
    torch::serialize::OutputArchive archive;
    adam_.save(archive);
    // Serialised in memory, then written by the checked atomic writer: archive.save_to(path)
    // throws c10::Error from a destructor when the disk is full, which aborts the process.
    std::ostringstream bytes;
    archive.save_to(bytes);
    core::writeFileAtomic(checkpoint.optimizer(name_), bytes.str());
  }
  void load(const CheckpointLayout& checkpoint, const core::Json&) override {
    const std::string file = checkpoint.optimizer(name_);
    torch::serialize::InputArchive archive;
    try {
      archive.load_from(file);
      adam_.load(archive);
    } catch (const c10::Error& e) {
      throw core::IoError(
          file, core::strCat("cannot read optimiser state: ", e.what_without_backtrace()));
    }
  }

 private:
  dist::Communicator& comm_;
  double gradClip_;
  torch::optim::AdamW adam_;
  std::unique_ptr<dist::DataParallel> reducer_;
};

// ZeRO-1: reduce-scatter of the gradients, AdamW on this rank's shard, allgather of the updated
// parameters (dist::ZeroAdamW); the state on disk is one shard file per rank.
class ShardedAdamW final : public GroupOptimizer {
 public:
  ShardedAdamW(std::string name, torch::OrderedDict<std::string, torch::Tensor> params,
               const std::vector<torch::Tensor>& buffers, dist::Communicator& comm,
               const TrainConfig& config, double beta1)
      : GroupOptimizer(std::move(name), std::move(params)),
        comm_(comm),
        zero_(params_, comm,
              dist::ZeroAdamWOptions()
                  .lr(config.lr)
                  .beta1(beta1)
                  .beta2(config.beta2)
                  .weightDecay(config.weightDecay)
                  .maxGradNorm(config.gradClip)) {
    if (comm_.size() > 1) dist::broadcastFromRankZero(buffers, comm_);
  }

  // The trainer resets every .grad before a step; point them back into the gradient arena so that
  // backward accumulates there (ZeroAdamW's flat arenas).
  void beginStep() override { zero_.zeroGrad(); }
  double step(double lr) override {
    zero_.setLr(lr);
    return zero_.step();
  }
  void discard() override { zero_.zeroGrad(); }
  void checkInSync(std::int64_t step) override {
    if (comm_.size() > 1) zero_.checkParametersInSync(step);
  }
  void save(const CheckpointLayout& checkpoint) const override {
    zero_.save(checkpoint.optimizerShard(name_, comm_.rank()));
  }
  void load(const CheckpointLayout& checkpoint, const core::Json& meta) override {
    const int savedWorld = meta.value("world_size", 1);
    if (savedWorld != comm_.size()) {
      LDDPM_THROW(core::Error, checkpoint.dir(), ": ZeRO-1 optimiser state was sharded over ",
                  savedWorld, " ranks; resume with the same number of ranks (now ", comm_.size(),
                  ")");
    }
    zero_.load(checkpoint.optimizerShard(name_, comm_.rank()));
  }

 private:
  dist::Communicator& comm_;
  dist::ZeroAdamW zero_;
};

}  // namespace

std::unique_ptr<GroupOptimizer> makeGroupOptimizer(
    std::string name, torch::OrderedDict<std::string, torch::Tensor> params,
    const std::vector<torch::Tensor>& buffers, dist::Communicator& comm, const TrainConfig& config,
    double beta1) {
  if (config.parallel.zero) {
    return std::make_unique<ShardedAdamW>(std::move(name), std::move(params), buffers, comm, config,
                                          beta1);
  }
  return std::make_unique<ReplicatedAdamW>(std::move(name), std::move(params), buffers, comm,
                                           config, beta1);
}

}  // namespace lddpm::launch
