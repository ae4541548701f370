#include "distributed/ZeroAdamW.h"

#include <cmath>

#include "core/Checkpoint.h"
#include "core/Error.h"
#include "distributed/ParameterSync.h"

namespace lddpm::dist {

ZeroAdamW::ZeroAdamW(const torch::OrderedDict<std::string, torch::Tensor>& namedParameters,
                     Communicator& comm, ZeroAdamWOptions options)
    : comm_(comm), options_(options) {
  TrainableParameters trainable = trainableParameters(namedParameters, "ZeroAdamW");
  names_ = std::move(trainable.names);
  params_ = std::move(trainable.tensors);
  const auto first = params_.front().options();
  int64_t total = 0;
  for (size_t k = 0; k < params_.size(); ++k) {
    LDDPM_CHECK(params_[k].is_floating_point() && params_[k].dtype() == first.dtype() &&
                    params_[k].device() == first.device(),
                "ZeroAdamW: parameter '", names_[k], "' is ", params_[k].dtype(), " on ",
                params_[k].device(), ", the first is ", first.dtype(), " on ", first.device(),
                "; all must share one floating dtype and device");
    total += params_[k].numel();
  }
  // Shards as equal as possible; the first total % n ranks hold one element more.
  const int n = comm_.size();
  for (int r = 0; r < n; ++r) counts_.push_back(total / n + (r < total % n ? 1 : 0));
  offsets_ = detail::offsetsOf(counts_);

  const auto opts = first.requires_grad(false);
  flatParams_ = torch::empty({total}, opts);
  flatGrads_ = torch::empty({total}, opts);
  shardGrad_ = torch::empty({shardSize()}, opts);
  expAvg_ = torch::zeros({shardSize()}, opts);
  expAvgSq_ = torch::zeros({shardSize()}, opts);

  if (options_.broadcastAtStart()) broadcastFromRankZero(params_, comm_);

  torch::NoGradGuard noGrad;
  int64_t offset = 0;
  received_.assign(params_.size(), 0);
  for (size_t k = 0; k < params_.size(); ++k) {
    torch::Tensor& p = params_[k];
    const int64_t numel = p.numel();
    // detach(): the same memory without autograd view metadata (see DataParallel's buckets).
    paramViews_.push_back(flatParams_.narrow(0, offset, numel).view_as(p).detach());
    gradViews_.push_back(flatGrads_.narrow(0, offset, numel).view_as(p).detach());
    paramViews_[k].copy_(p);
    p.set_data(paramViews_[k]);  // the parameter now lives in the arena
    offset += numel;
  }
  hooks_ = std::make_unique<AccumulationHooks>(params_, [this](size_t k) { onAccumulated(k); });
  zeroGrad();
}

ZeroAdamW::~ZeroAdamW() = default;

void ZeroAdamW::checkParametersInSync(int64_t step) { checkInSync(names_, params_, comm_, step); }

void ZeroAdamW::zeroGrad() {
  std::lock_guard<std::mutex> lock(mutex_);
  torch::NoGradGuard noGrad;
  flatGrads_.zero_();
  for (size_t k = 0; k < params_.size(); ++k) params_[k].mutable_grad() = gradViews_[k];
  received_.assign(params_.size(), 0);
}

void ZeroAdamW::onAccumulated(size_t k) {
  std::lock_guard<std::mutex> lock(mutex_);
  // .grad is normally our view and autograd has just added the gradient into it in place. If it
  // was reset or replaced, it holds the whole local sum in storage of its own: move it in.
  adoptGradient(k);
  received_[k] = 1;
}

bool ZeroAdamW::adoptGradient(size_t k) {
  torch::Tensor& grad = params_[k].mutable_grad();
  if (!grad.defined() || grad.data_ptr() == gradViews_[k].data_ptr()) return false;
  torch::NoGradGuard noGrad;
  gradViews_[k].copy_(grad);
  grad = gradViews_[k];
  ++gradientCopies_;
  return true;
}

// Before a step: every gradient and parameter in its arena. A .grad that someone set without
// backward counts as a gradient; one that is only our zeroed view, or none, does not.
void ZeroAdamW::gatherIntoArenas(std::string& missing) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (size_t k = 0; k < params_.size(); ++k) {
    torch::Tensor& p = params_[k];
    if (!adoptGradient(k) && !received_[k]) {
      missing += (missing.empty() ? "" : ", ") + names_[k];
    }
    if (p.data_ptr() != paramViews_[k].data_ptr()) {
      paramViews_[k].copy_(p);
      p.set_data(paramViews_[k]);
      ++parameterCopies_;
    }
  }
}

double ZeroAdamW::step() {
  torch::NoGradGuard noGrad;
  std::string missing;
  gatherIntoArenas(missing);
  // Every rank has the same parameters, so every rank finds the same missing ones: they all
  // throw here, before any collective, and nothing hangs.
  LDDPM_CHECK(missing.empty(), "ZeroAdamW: parameter(s) without a gradient at step ", step_ + 1,
              ": ", missing);

  comm_.reduceScatter(shardGrad_, flatGrads_, ReduceOp::Avg, counts_)->wait();

  // The global norm is the root of the sum of every shard's squared norm.
  auto sq = shardGrad_.to(torch::kDouble).square().sum().reshape({1}).to(comm_.device());
  comm_.allreduce(sq, ReduceOp::Sum)->wait();
  const double norm = std::sqrt(sq.item<double>());
  if (options_.maxGradNorm() > 0) {
    const double coef = options_.maxGradNorm() / (norm + 1e-6);  // clip_grad_norm_'s rule
    if (coef < 1) shardGrad_.mul_(coef);
  }

  // torch::optim::AdamW, term by term (decoupled decay, then bias-corrected moments).
  ++step_;
  auto shard = flatParams_.narrow(0, shardOffset(), shardSize());
  const double lr = options_.lr();
  const double beta1 = options_.beta1();
  const double beta2 = options_.beta2();
  if (options_.weightDecay() != 0) shard.mul_(1 - lr * options_.weightDecay());
  const double biasCorrection1 = 1 - std::pow(beta1, static_cast<double>(step_));
  const double biasCorrection2 = 1 - std::pow(beta2, static_cast<double>(step_));
  expAvg_.mul_(beta1).add_(shardGrad_, 1 - beta1);
  expAvgSq_.mul_(beta2).addcmul_(shardGrad_, shardGrad_, 1 - beta2);
  const auto denom = (expAvgSq_.sqrt() / std::sqrt(biasCorrection2)).add_(options_.eps());
  shard.addcdiv_(expAvg_, denom, -lr / biasCorrection1);

  // In place: the shard is our slice, and the parameters are views into the arena.
  comm_.allgather(flatParams_, shard, counts_)->wait();
  std::lock_guard<std::mutex> lock(mutex_);
  received_.assign(params_.size(), 0);  // the next step's gradients are still to come
  return norm;
}

core::TensorDict ZeroAdamW::stateDict() const {
  const auto scalar = [](int64_t v) { return torch::tensor(v, torch::kLong); };
  return {{"exp_avg", expAvg_.to(torch::kCPU).clone()},
          {"exp_avg_sq", expAvgSq_.to(torch::kCPU).clone()},
          {"step", scalar(step_)},
          {"world_size", scalar(comm_.size())},
          {"shard_offset", scalar(shardOffset())},
          {"shard_size", scalar(shardSize())},
          {"total_size", scalar(totalSize())}};
}

void ZeroAdamW::loadStateDict(const core::TensorDict& state, const std::string& source) {
  const auto field = [&](const char* key) {
    const auto it = state.find(key);
    if (it == state.end())
      throw core::IoError(source, core::strCat("optimizer state has no '", key, "'"));
    return it->second;
  };
  const auto expectLayout = [&](const char* key, int64_t expected) {
    const int64_t got = field(key).item<int64_t>();
    LDDPM_CHECK(got == expected, source, ": optimizer state was written with ", key, " = ", got,
                ", this run has ", expected,
                " (ZeRO state is per rank: resume with the same "
                "world size and model)");
  };
  expectLayout("total_size", totalSize());
  expectLayout("world_size", comm_.size());
  expectLayout("shard_offset", shardOffset());
  expectLayout("shard_size", shardSize());
  const auto m = field("exp_avg");
  const auto v = field("exp_avg_sq");
  LDDPM_CHECK(m.numel() == shardSize() && v.numel() == shardSize(), source,
              ": exp_avg/exp_avg_sq have ", m.numel(), "/", v.numel(), " elements, expected ",
              shardSize());
  expAvg_.copy_(m.view_as(expAvg_));
  expAvgSq_.copy_(v.view_as(expAvgSq_));
  step_ = field("step").item<int64_t>();
}

void ZeroAdamW::save(const std::string& path) const { core::saveTensorDict(path, stateDict()); }

void ZeroAdamW::load(const std::string& path) { loadStateDict(core::loadTensorDict(path), path); }

}  // namespace lddpm::dist
