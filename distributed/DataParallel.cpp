#include "distributed/DataParallel.h"

#include <cmath>

#include "core/Error.h"
#include "core/Log.h"
#include "distributed/ParameterSync.h"

namespace lddpm::dist {
namespace {

// A signature of the bucket plan; ranks that built different models would otherwise reduce
// mismatched buffers or hang (DDP's "same order on every rank" rule).
std::vector<int64_t> planSignature(const std::vector<torch::Tensor>& params,
                                   const std::vector<std::vector<size_t>>& buckets) {
  int64_t numel = 0;
  int64_t shapeHash = 17;
  for (const auto& p : params) {
    numel += p.numel();
    for (int64_t d : p.sizes()) shapeHash = (shapeHash * 31 + d) % 1000000007;
  }
  return {static_cast<int64_t>(params.size()), static_cast<int64_t>(buckets.size()), numel,
          shapeHash};
}

}  // namespace

DataParallel::DataParallel(torch::nn::Module& module, Communicator& comm,
                           DataParallelOptions options)
    : DataParallel(module.named_parameters(/*recurse=*/true), module.buffers(/*recurse=*/true),
                   comm, options) {}

DataParallel::DataParallel(const torch::OrderedDict<std::string, torch::Tensor>& namedParameters,
                           const std::vector<torch::Tensor>& buffers, Communicator& comm,
                           DataParallelOptions options)
    : comm_(comm), options_(options) {
  TrainableParameters trainable = trainableParameters(namedParameters, "DataParallel");
  names_ = std::move(trainable.names);
  params_ = std::move(trainable.tensors);

  // Buckets in reverse registration order; a bucket closes when it reaches its cap or when the
  // dtype/device changes (one flat buffer holds one dtype).
  slots_.resize(params_.size());
  int64_t bucketBytes = 0;
  for (size_t k = params_.size(); k-- > 0;) {
    const torch::Tensor& p = params_[k];
    const bool startNew =
        bucketParams_.empty() ||
        bucketBytes >=
            (bucketParams_.size() == 1 ? options_.firstBucketBytes() : options_.bucketCapBytes()) ||
        params_[bucketParams_.back().front()].options().dtype() != p.options().dtype() ||
        params_[bucketParams_.back().front()].device() != p.device();
    if (startNew) {
      bucketParams_.emplace_back();
      bucketBytes = 0;
    }
    slots_[k] = Slot{bucketParams_.size() - 1, 0};
    bucketParams_.back().push_back(k);
    bucketBytes += p.numel() * static_cast<int64_t>(p.element_size());
  }
  for (auto& bucket : bucketParams_) {
    int64_t numel = 0;
    for (size_t k : bucket) {
      slots_[k].offset = numel;
      numel += params_[k].numel();
    }
    buffers_.push_back(
        torch::zeros({numel}, params_[bucket.front()].options().requires_grad(false)));
  }
  pending_.assign(bucketParams_.size(), 0);
  for (size_t b = 0; b < bucketParams_.size(); ++b)
    pending_[b] = static_cast<int>(bucketParams_[b].size());
  works_.resize(bucketParams_.size());
  ready_.assign(params_.size(), false);

  // Every rank must have built the same plan: compare against rank 0's and fail together.
  const auto mine = planSignature(params_, bucketParams_);
  auto reference = torch::tensor(mine, torch::kLong).to(comm_.device());
  comm_.broadcast(reference, 0)->wait();
  // Compare with a fresh tensor: on the CPU, reference.to(kCPU) of a shared one would alias it,
  // and the broadcast has just overwritten it.
  const bool same = reference.cpu().equal(torch::tensor(mine, torch::kLong));
  auto mismatch = torch::tensor({same ? 0L : 1L}).to(comm_.device());
  comm_.allreduce(mismatch, ReduceOp::Sum)->wait();
  LDDPM_CHECK(mismatch.item<int64_t>() == 0, "DataParallel: ", mismatch.item<int64_t>(),
              " rank(s) built a different model than rank 0 (parameters, shapes or bucket plan "
              "differ; this rank has ",
              mine[0], " parameters, ", mine[2], " elements)");

  if (options_.broadcastAtStart()) {
    std::vector<torch::Tensor> everything = params_;
    everything.insert(everything.end(), buffers.begin(), buffers.end());
    broadcastFromRankZero(everything, comm_);
  }

  for (size_t k = 0; k < params_.size(); ++k) {
    const Slot& s = slots_[k];
    // detach(): the same memory without autograd view metadata, so that .grad can be zeroed or
    // detached in place by anyone (an in-place detach of an autograd view is refused).
    views_.push_back(
        buffers_[s.bucket].narrow(0, s.offset, params_[k].numel()).view_as(params_[k]).detach());
  }
  hooks_ = std::make_unique<AccumulationHooks>(params_, [this](size_t k) { onAccumulated(k); });
  zeroGrad();
  LDDPM_LOG(Debug) << "DataParallel: " << params_.size() << " parameters in "
                   << bucketParams_.size() << " buckets, " << bytesPerStep() << " bytes per step";
}

DataParallel::~DataParallel() {
  hooks_.reset();
  // Collectives still in flight write into our buffers: let them land first.
  for (auto& w : works_) {
    if (!w) continue;
    try {
      w->wait();
    } catch (...) {  // the error was (or will be) reported by finish()
    }
  }
}

int64_t DataParallel::bytesPerStep() const {
  int64_t bytes = 0;
  for (const auto& b : buffers_) bytes += b.nbytes();
  return bytes;
}

void DataParallel::setSync(bool sync) { sync_ = sync; }

void DataParallel::zeroGrad() {
  std::lock_guard<std::mutex> lock(mutex_);
  torch::NoGradGuard noGrad;
  for (auto& b : buffers_) b.zero_();
  for (size_t k = 0; k < params_.size(); ++k) params_[k].mutable_grad() = views_[k];
}

void DataParallel::onAccumulated(size_t k) {
  std::lock_guard<std::mutex> lock(mutex_);
  // .grad is normally our view and autograd has just added this backward's gradient to it in
  // place. If it was reset or replaced, it holds the whole local sum (micro-batches included)
  // in storage of its own: move that into the bucket and restore the view.
  torch::Tensor& grad = params_[k].mutable_grad();
  const torch::Tensor& view = views_[k];
  if (!grad.defined() || !grad.is_alias_of(view) || grad.data_ptr() != view.data_ptr()) {
    torch::NoGradGuard noGrad;
    if (grad.defined()) {
      view.copy_(grad);
      ++gradientCopies_;
    } else {
      view.zero_();
    }
    grad = view;
  }
  if (!sync_) return;  // accumulate locally: the bucket collects the micro-batches
  LDDPM_CHECK(!ready_[k], "DataParallel: parameter '", names_[k],
              "' received a second gradient before finish(); call finish() after every synced "
              "backward");
  ready_[k] = true;
  if (--pending_[slots_[k].bucket] == 0 && options_.overlap()) launchReadyBuckets();
}

void DataParallel::launchReadyBuckets() {
  while (nextLaunch_ < bucketParams_.size() && pending_[nextLaunch_] == 0) {
    works_[nextLaunch_] = comm_.allreduce(buffers_[nextLaunch_], ReduceOp::Avg);
    ++nextLaunch_;
  }
}

void DataParallel::finish() {
  if (!sync_) return;
  std::lock_guard<std::mutex> lock(mutex_);
  std::string missing;
  int missingCount = 0;
  for (size_t k = 0; k < params_.size(); ++k) {
    if (ready_[k]) continue;
    if (missingCount++ < 8) missing += (missing.empty() ? "" : ", ") + names_[k];
  }
  auto reset = [&] {
    for (auto& w : works_) w.reset();
    for (size_t b = 0; b < bucketParams_.size(); ++b)
      pending_[b] = static_cast<int>(bucketParams_[b].size());
    ready_.assign(params_.size(), false);
    nextLaunch_ = 0;
  };
  if (missingCount > 0) {
    for (auto& w : works_) {
      if (w) w->wait();  // the buckets every rank did launch, so the order stays aligned
    }
    reset();
    LDDPM_THROW(core::Error, "DataParallel: ", missingCount,
                " parameter(s) received no gradient "
                "in this backward: ",
                missing, (missingCount > 8 ? ", ..." : ""),
                ". Every parameter must take part in the loss (or set requires_grad(false))");
  }
  if (!options_.overlap()) launchReadyBuckets();
  // The buckets are averaged in place and every .grad is a view into them: nothing to copy.
  for (auto& w : works_) w->wait();
  reset();
}

void DataParallel::checkParametersInSync(int64_t step) {
  checkInSync(names_, params_, comm_, step);
}

}  // namespace lddpm::dist
