// Compiled only when LDDPM_WITH_NCCL (distributed/CMakeLists.txt).
#include "distributed/NcclCommunicator.h"

#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <list>
#include <mutex>
#include <thread>

#include "core/Error.h"
#include "core/Log.h"
#include "distributed/MpiCheck.h"
#include "distributed/World.h"

#if NCCL_VERSION_CODE < 21000
#error "lesion-ddpm needs NCCL >= 2.10 (ncclAvg, ncclBfloat16)"
#endif

namespace lddpm::dist {

class NcclError : public core::Error {
 public:
  using core::Error::Error;
};

namespace {

using Clock = std::chrono::steady_clock;

ncclDataType_t ncclType(const torch::Tensor& t, const char* what) {
  switch (t.scalar_type()) {
    case torch::kFloat:
      return ncclFloat32;
    case torch::kDouble:
      return ncclFloat64;
    case torch::kHalf:
      return ncclFloat16;
    case torch::kBFloat16:
      return ncclBfloat16;
    case torch::kInt:
      return ncclInt32;
    case torch::kLong:
      return ncclInt64;
    case torch::kByte:
      return ncclUint8;
    case torch::kChar:
      return ncclInt8;
    default:
      break;
  }
  LDDPM_THROW(core::Error, what, ": dtype ", t.scalar_type(), " is not supported by NCCL");
}

ncclRedOp_t ncclOp(ReduceOp op) { return op == ReduceOp::Avg ? ncclAvg : ncclSum; }

// One collective on the NCCL stream: its completion event and the tensors it uses, kept alive
// until the event fires (the caching allocator must not hand their memory out meanwhile).
struct Op {
  const char* name;
  int64_t seq;
  int64_t bytes;
  cudaEvent_t done = nullptr;
  std::vector<torch::Tensor> tensors;
  Clock::time_point issued;
};

}  // namespace

struct NcclCommunicator::Impl {
  int rank = 0;
  int size = 1;
  int device = 0;
  std::string host;
  CommunicatorOptions options;
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  std::atomic<int64_t> step{-1};

  std::mutex mutex;
  std::list<std::shared_ptr<Op>> inFlight;  // issue order
  int64_t nextSeq = 0;
  std::thread watchdog;
  std::condition_variable wake;
  bool stopping = false;

  // Aborts the NCCL communicator first — a peer blocked in a kernel otherwise never returns —
  // then throws naming the call, file:line, host and rank with the library's error string.
  [[noreturn]] void fail(const std::string& what, const char* expr, const char* file, int line) {
    if (comm) {
      ncclCommAbort(comm);
      comm = nullptr;
    }
    LDDPM_THROW(NcclError, expr, " failed at ", file, ":", line, " on ", host, " rank ", rank,
                " (GPU ", device, "): ", what);
  }

  void watchdogLoop();
  WorkPtr finishIssue(const char* name, int64_t bytes, cudaEvent_t done,
                      std::vector<torch::Tensor> tensors);
};

}  // namespace lddpm::dist

#define LDDPM_NCCL_CHECK(impl, expr)                                              \
  do {                                                                            \
    const ncclResult_t lddpm_nccl_rc_ = (expr);                                   \
    if (lddpm_nccl_rc_ != ncclSuccess)                                            \
      (impl).fail(ncclGetErrorString(lddpm_nccl_rc_), #expr, __FILE__, __LINE__); \
  } while (0)
#define LDDPM_CUDA_CHECK(impl, expr)                                              \
  do {                                                                            \
    const cudaError_t lddpm_cuda_rc_ = (expr);                                    \
    if (lddpm_cuda_rc_ != cudaSuccess)                                            \
      (impl).fail(cudaGetErrorString(lddpm_cuda_rc_), #expr, __FILE__, __LINE__); \
  } while (0)

namespace lddpm::dist {
namespace {

class NcclWork final : public Work {
 public:
  NcclWork(std::shared_ptr<Op> op, int device, bool hostBlocking)
      : op_(std::move(op)), device_(device), hostBlocking_(hostBlocking) {}
  bool isCompleted() override { return cudaEventQuery(op_->done) == cudaSuccess; }
  void wait() override {
    if (hostBlocking_) {
      cudaEventSynchronize(op_->done);  // a hang here is bounded by the watchdog
      return;
    }
    const cudaStream_t current = c10::cuda::getCurrentCUDAStream(device_).stream();
    cudaStreamWaitEvent(current, op_->done, 0);
  }

 private:
  std::shared_ptr<Op> op_;
  int device_;
  bool hostBlocking_;
};

void checkCudaTensor(const torch::Tensor& t, int device, const char* what) {
  LDDPM_CHECK(t.defined(), what, ": undefined tensor");
  LDDPM_CHECK(t.is_cuda() && t.get_device() == device, what, ": the NCCL backend takes tensors on ",
              "cuda:", device, " (this rank's GPU), got ", t.device());
  LDDPM_CHECK(t.is_contiguous(), what, ": tensor must be contiguous");
}

}  // namespace

void NcclCommunicator::Impl::watchdogLoop() {
  cudaSetDevice(device);  // event queries need this thread on our device
  const double timeout = options.timeoutSeconds;
  const auto tick = std::chrono::duration<double>(timeout > 0 ? std::min(1.0, timeout / 4) : 1.0);
  std::unique_lock<std::mutex> lock(mutex);
  while (!stopping) {
    wake.wait_for(lock, tick);
    std::string problem;
    ncclResult_t async = ncclSuccess;
    if (comm) ncclCommGetAsyncError(comm, &async);
    if (async != ncclSuccess) {
      problem = core::strCat("NCCL reported an asynchronous error: ", ncclGetErrorString(async));
    }
    for (auto it = inFlight.begin(); it != inFlight.end() && problem.empty();) {
      const std::shared_ptr<Op>& op = *it;
      if (cudaEventQuery(op->done) == cudaSuccess) {
        cudaEventDestroy(op->done);
        op->done = nullptr;
        it = inFlight.erase(it);
        continue;
      }
      const double elapsed = std::chrono::duration<double>(Clock::now() - op->issued).count();
      if (timeout > 0 && elapsed > timeout) {
        problem = core::strCat("communication timeout: ", op->name, " #", op->seq, " (", op->bytes,
                               " bytes) at step ", step.load(), " did not finish within ", timeout,
                               " s. A rank that did not reach it is stalled, dead or issued "
                               "collectives in a different order (--comm-timeout).");
      }
      ++it;
    }
    if (problem.empty()) continue;
    std::fprintf(stderr, "[%d/%d] error: %s on %s rank %d (GPU %d). Aborting the job.\n", rank,
                 size, problem.c_str(), host.c_str(), rank, device);
    std::fflush(stderr);
    if (comm) ncclCommAbort(comm);
    comm = nullptr;
    int initialised = 0;
    MPI_Initialized(&initialised);
    if (initialised) MPI_Abort(MPI_COMM_WORLD, core::kExitFailure);
    std::_Exit(core::kExitFailure);
  }
}

NcclCommunicator::NcclCommunicator(const World& world, const CommunicatorOptions& options)
    : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  s.rank = world.rank();
  s.size = world.size();
  s.host = world.host();
  s.options = options;
  int devices = 0;
  LDDPM_CUDA_CHECK(s, cudaGetDeviceCount(&devices));
  if (world.localRank() >= devices) {
    LDDPM_THROW(core::UsageError, "option '--comm-backend': ", world.localSize(), " ranks on ",
                s.host, " but only ", devices,
                " GPU(s); NCCL needs one GPU per "
                "rank (two ranks on one GPU hang). Start at most ",
                devices, " ranks per node");
  }
  s.device = world.localRank();
  LDDPM_CUDA_CHECK(s, cudaSetDevice(s.device));

  ncclUniqueId id;
  if (s.rank == 0) LDDPM_NCCL_CHECK(s, ncclGetUniqueId(&id));
  if (world.usesMpi() && s.size > 1) {
    LDDPM_MPI_CHECK(MPI_Bcast(&id, static_cast<int>(sizeof id), MPI_BYTE, 0, MPI_COMM_WORLD));
  }
  LDDPM_NCCL_CHECK(s, ncclCommInitRank(&s.comm, s.size, id, s.rank));
  LDDPM_CUDA_CHECK(s, cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking));
  s.watchdog = std::thread([&s] { s.watchdogLoop(); });
  LDDPM_LOG(Debug) << "NCCL " << NCCL_MAJOR << "." << NCCL_MINOR << "." << NCCL_PATCH
                   << " communicator: rank " << s.rank << " of " << s.size << " on GPU "
                   << s.device;
}

NcclCommunicator::~NcclCommunicator() {
  Impl& s = *impl_;
  cudaSetDevice(s.device);
  if (s.stream) cudaStreamSynchronize(s.stream);  // the watchdog still bounds a hang here
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    s.stopping = true;
  }
  s.wake.notify_one();
  if (s.watchdog.joinable()) s.watchdog.join();
  for (auto& op : s.inFlight) {
    if (op->done) cudaEventDestroy(op->done);
  }
  if (s.comm) ncclCommDestroy(s.comm);
  if (s.stream) cudaStreamDestroy(s.stream);
}

int NcclCommunicator::rank() const { return impl_->rank; }
int NcclCommunicator::size() const { return impl_->size; }
torch::Device NcclCommunicator::device() const {
  return {torch::kCUDA, static_cast<c10::DeviceIndex>(impl_->device)};
}

namespace {

// Orders our NCCL stream after the caller's current stream (where the inputs were produced).
void followCallerStream(NcclCommunicator::Impl& s) {
  cudaEvent_t ready = nullptr;
  LDDPM_CUDA_CHECK(s, cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
  LDDPM_CUDA_CHECK(s, cudaEventRecord(ready, c10::cuda::getCurrentCUDAStream(s.device).stream()));
  LDDPM_CUDA_CHECK(s, cudaStreamWaitEvent(s.stream, ready, 0));
  cudaEventDestroy(ready);  // legal while pending: released once it completes
}

}  // namespace

WorkPtr NcclCommunicator::Impl::finishIssue(const char* name, int64_t bytes, cudaEvent_t done,
                                            std::vector<torch::Tensor> tensors) {
  auto op = std::make_shared<Op>();
  op->name = name;
  op->bytes = bytes;
  op->done = done;
  op->tensors = std::move(tensors);
  op->issued = Clock::now();
  {
    std::lock_guard<std::mutex> lock(mutex);
    op->seq = nextSeq++;
    inFlight.push_back(op);
  }
  return std::make_shared<NcclWork>(op, device, /*hostBlocking=*/std::string(name) == "barrier");
}

// The body of every collective: set the device, follow the caller's stream, enqueue `launch`
// on the NCCL stream, record completion. Not a member so the macros can name `s`.
template <typename Launch>
WorkPtr issueOn(NcclCommunicator::Impl& s, const char* name, int64_t bytes,
                std::vector<torch::Tensor> tensors, Launch launch) {
  LDDPM_CHECK(s.comm, name, ": the NCCL communicator was aborted after an earlier error");
  LDDPM_CUDA_CHECK(s, cudaSetDevice(s.device));
  followCallerStream(s);
  launch();
  cudaEvent_t done = nullptr;
  LDDPM_CUDA_CHECK(s, cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
  LDDPM_CUDA_CHECK(s, cudaEventRecord(done, s.stream));
  return s.finishIssue(name, bytes, done, std::move(tensors));
}

WorkPtr NcclCommunicator::allreduce(torch::Tensor tensor, ReduceOp op) {
  Impl& s = *impl_;
  checkCudaTensor(tensor, s.device, "allreduce");
  const ncclDataType_t type = ncclType(tensor, "allreduce");
  return issueOn(s, "allreduce", tensor.nbytes(), {tensor}, [&] {
    LDDPM_NCCL_CHECK(
        s, ncclAllReduce(tensor.data_ptr(), tensor.data_ptr(), static_cast<size_t>(tensor.numel()),
                         type, ncclOp(op), s.comm, s.stream));
  });
}

WorkPtr NcclCommunicator::reduceScatter(torch::Tensor output, torch::Tensor input, ReduceOp op,
                                        std::vector<int64_t> counts) {
  Impl& s = *impl_;
  checkCudaTensor(output, s.device, "reduceScatter");
  checkCudaTensor(input, s.device, "reduceScatter");
  LDDPM_CHECK(input.scalar_type() == output.scalar_type(), "reduceScatter: dtypes differ");
  counts = detail::resolveCounts(std::move(counts), input.numel(), s.size, "reduceScatter");
  const auto me = static_cast<size_t>(s.rank);
  LDDPM_CHECK(output.numel() == counts[me], "reduceScatter: output has ", output.numel(),
              " elements, this rank's slice ", counts[me]);
  const auto offsets = detail::offsetsOf(counts);
  const ncclDataType_t type = ncclType(input, "reduceScatter");
  const bool even =
      std::all_of(counts.begin(), counts.end(), [&](int64_t c) { return c == counts[0]; });
  const auto elem = static_cast<int64_t>(input.element_size());
  return issueOn(s, "reduceScatter", input.nbytes(), {output, input}, [&] {
    if (even) {
      LDDPM_NCCL_CHECK(
          s, ncclReduceScatter(input.data_ptr(), output.data_ptr(), static_cast<size_t>(counts[0]),
                               type, ncclOp(op), s.comm, s.stream));
      return;
    }
    // NCCL has no reduce-scatter-v: one reduce per slice, rooted at its owner, in one group.
    LDDPM_NCCL_CHECK(s, ncclGroupStart());
    for (int q = 0; q < s.size; ++q) {
      const auto qi = static_cast<size_t>(q);
      const char* send = static_cast<const char*>(input.data_ptr()) + offsets[qi] * elem;
      LDDPM_NCCL_CHECK(s, ncclReduce(send, output.data_ptr(), static_cast<size_t>(counts[qi]), type,
                                     ncclOp(op), q, s.comm, s.stream));
    }
    LDDPM_NCCL_CHECK(s, ncclGroupEnd());
  });
}

WorkPtr NcclCommunicator::allgather(torch::Tensor output, torch::Tensor input,
                                    std::vector<int64_t> counts) {
  Impl& s = *impl_;
  checkCudaTensor(output, s.device, "allgather");
  checkCudaTensor(input, s.device, "allgather");
  LDDPM_CHECK(input.scalar_type() == output.scalar_type(), "allgather: dtypes differ");
  counts = detail::resolveCounts(std::move(counts), output.numel(), s.size, "allgather");
  const auto me = static_cast<size_t>(s.rank);
  LDDPM_CHECK(input.numel() == counts[me], "allgather: input has ", input.numel(),
              " elements, this rank's slice ", counts[me]);
  const auto offsets = detail::offsetsOf(counts);
  const ncclDataType_t type = ncclType(input, "allgather");
  const bool even =
      std::all_of(counts.begin(), counts.end(), [&](int64_t c) { return c == counts[0]; });
  const auto elem = static_cast<int64_t>(output.element_size());
  return issueOn(s, "allgather", output.nbytes(), {output, input}, [&] {
    if (even) {  // in place is allowed when input is this rank's slice of output
      LDDPM_NCCL_CHECK(s, ncclAllGather(input.data_ptr(), output.data_ptr(),
                                        static_cast<size_t>(counts[0]), type, s.comm, s.stream));
      return;
    }
    // No all-gather-v either: each rank broadcasts its slice, in one group.
    LDDPM_NCCL_CHECK(s, ncclGroupStart());
    for (int q = 0; q < s.size; ++q) {
      const auto qi = static_cast<size_t>(q);
      char* recv = static_cast<char*>(output.data_ptr()) + offsets[qi] * elem;
      LDDPM_NCCL_CHECK(s, ncclBroadcast(input.data_ptr(), recv, static_cast<size_t>(counts[qi]),
                                        type, q, s.comm, s.stream));
    }
    LDDPM_NCCL_CHECK(s, ncclGroupEnd());
  });
}

WorkPtr NcclCommunicator::broadcast(torch::Tensor tensor, int root) {
  Impl& s = *impl_;
  checkCudaTensor(tensor, s.device, "broadcast");
  LDDPM_CHECK(root >= 0 && root < s.size, "broadcast: root ", root, " is not a rank of ", s.size);
  const ncclDataType_t type = ncclType(tensor, "broadcast");
  return issueOn(s, "broadcast", tensor.nbytes(), {tensor}, [&] {
    LDDPM_NCCL_CHECK(
        s, ncclBroadcast(tensor.data_ptr(), tensor.data_ptr(), static_cast<size_t>(tensor.numel()),
                         type, root, s.comm, s.stream));
  });
}

WorkPtr NcclCommunicator::barrier() {
  Impl& s = *impl_;
  auto token = torch::zeros({1}, torch::TensorOptions().device(torch::kCUDA, s.device));
  return issueOn(s, "barrier", 4, {token}, [&] {
    LDDPM_NCCL_CHECK(s, ncclAllReduce(token.data_ptr(), token.data_ptr(), 1, ncclFloat32, ncclSum,
                                      s.comm, s.stream));
  });
}

void NcclCommunicator::setStep(int64_t step) {
  Communicator::setStep(step);
  impl_->step = step;
}

}  // namespace lddpm::dist
