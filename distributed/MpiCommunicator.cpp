#include "distributed/MpiCommunicator.h"

#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "core/Error.h"
#include "core/Log.h"
#include "distributed/MpiCheck.h"
#include "distributed/World.h"

namespace lddpm::dist {
namespace {

using Clock = std::chrono::steady_clock;

MPI_Datatype mpiType(const torch::Tensor& t, const char* what) {
  switch (t.scalar_type()) {
    case torch::kFloat:
      return MPI_FLOAT;
    case torch::kDouble:
      return MPI_DOUBLE;
    case torch::kInt:
      return MPI_INT32_T;
    case torch::kLong:
      return MPI_INT64_T;
    case torch::kByte:
      return MPI_UINT8_T;
    case torch::kChar:
      return MPI_INT8_T;
    default:
      break;
  }
  LDDPM_THROW(core::Error, what, ": dtype ", t.scalar_type(),
              " is not supported by the MPI backend");
}

void checkCpuContiguous(const torch::Tensor& t, const char* what) {
  LDDPM_CHECK(t.defined(), what, ": undefined tensor");
  LDDPM_CHECK(t.device().is_cpu(), what, ": the MPI backend takes CPU tensors, got ", t.device(),
              " (use --comm-backend nccl for GPU tensors)");
  LDDPM_CHECK(t.is_contiguous(), what, ": tensor must be contiguous");
}

int asInt(int64_t n, const char* what) {
  LDDPM_CHECK(n <= INT_MAX, what, ": ", n, " elements exceed MPI's int count; split the tensor");
  return static_cast<int>(n);
}

std::vector<int> asInts(const std::vector<int64_t>& v, const char* what) {
  std::vector<int> out;
  out.reserve(v.size());
  for (int64_t x : v) out.push_back(asInt(x, what));
  return out;
}

std::string sizeText(int64_t bytes) {
  char buf[32];
  if (bytes >= (1 << 20)) {
    std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  } else {
    std::snprintf(buf, sizeof buf, "%.1f KiB", static_cast<double>(bytes) / 1024);
  }
  return buf;
}

// One queued collective. `run` does the blocking MPI call; the handle waits on `done`.
struct Op {
  const char* name;
  int64_t bytes;
  int64_t seq;
  std::function<void()> run;
  bool done = false;
  std::exception_ptr error;
};

}  // namespace

struct MpiCommunicator::Impl {
  MPI_Comm comm = MPI_COMM_NULL;
  int rank = 0;
  int size = 1;
  std::string host;
  CommunicatorOptions options;
  bool threaded = false;

  std::mutex mutex;
  std::condition_variable queued;    // comm thread: new op or stop
  std::condition_variable finished;  // waiters: some op finished
  std::deque<std::shared_ptr<Op>> queue;
  bool stopping = false;
  int64_t nextSeq = 0;
  std::atomic<int64_t> step{-1};

  // What the watchdog looks at: the op inside MPI right now (or handed to the comm thread, about to
  // be), and since when. Set under `mutex` by whoever takes the op, so at most one op runs.
  std::shared_ptr<Op> running;
  Clock::time_point runningSince;
  // What this rank tells a peer whose collective timed out: the last collective it started and
  // whether it is inside it now.
  std::atomic<int64_t> lastStarted{-1};
  std::atomic<bool> inside{false};
  // The watchdogs' side channel (a second duplicate, so it never matches collective traffic).
  MPI_Comm control = MPI_COMM_NULL;

  std::thread commThread;
  std::thread watchdogThread;
  std::mutex watchdogMutex;
  std::condition_variable watchdogWake;
  bool watchdogStop = false;

  // Runs `op`, which the caller made `running` under `mutex` (take()).
  void execute(const std::shared_ptr<Op>& op) {
    lastStarted = op->seq;
    inside = true;
    try {
      // Averaging divides in place; collectives on parameters must not be recorded by autograd
      // (grad mode is per thread, and on the communication thread it starts enabled).
      torch::NoGradGuard noGrad;
      op->run();
    } catch (...) {
      op->error = std::current_exception();
    }
    op->run = nullptr;  // release the tensors now, not when the last handle goes
    inside = false;
    {
      std::lock_guard<std::mutex> lock(mutex);
      running.reset();
      op->done = true;
    }
    finished.notify_all();
  }

  // With `mutex` held: `op` is the one op in MPI from now until execute() finishes it.
  void take(const std::shared_ptr<Op>& op) {
    running = op;
    runningSince = Clock::now();
  }

  void commLoop() {
    for (;;) {
      std::shared_ptr<Op> op;
      {
        std::unique_lock<std::mutex> lock(mutex);
        // Not while a small collective runs in its caller (submit): one op in MPI at a time.
        queued.wait(lock,
                    [&] { return (stopping && queue.empty()) || (!queue.empty() && !running); });
        if (queue.empty()) return;  // stopping and drained
        op = queue.front();
        queue.pop_front();
        take(op);
      }
      execute(op);
    }
  }

  // Every rank's watchdog keeps one receive posted on `control` for a peer's "where are you?"
  // and answers it on its next tick — it can, because the watchdog is its own thread even when
  // the main thread is stalled. A rank whose collective times out asks everyone, waits a few
  // seconds for answers, names the ranks that have not reached the collective (or did not
  // answer), and aborts the job: a hung collective never returns, so throwing is not an option.
  static constexpr int kQueryTag = 1;
  static constexpr int kReplyTag = 2;
  int64_t queryBuf = 0;
  MPI_Request queryReq = MPI_REQUEST_NULL;

  void postQuery() {
    MPI_Irecv(&queryBuf, 1, MPI_INT64_T, MPI_ANY_SOURCE, kQueryTag, control, &queryReq);
  }

  void answerQueries() {
    for (;;) {
      int arrived = 0;
      MPI_Status status;
      if (MPI_Test(&queryReq, &arrived, &status) != MPI_SUCCESS || !arrived) return;
      int64_t reply[3] = {lastStarted.load(), inside.load() ? 1 : 0, step.load()};
      MPI_Send(reply, 3, MPI_INT64_T, status.MPI_SOURCE, kReplyTag, control);  // eager: 24 bytes
      postQuery();
    }
  }

  // Which ranks have not reached collective `seq`, asked over `control`.
  std::string missingRanks(int64_t seq, double waitSeconds) {
    std::vector<int64_t> replies(static_cast<size_t>(3 * size), 0);
    std::vector<MPI_Request> recvs(static_cast<size_t>(size), MPI_REQUEST_NULL);
    std::vector<MPI_Request> sends(static_cast<size_t>(size), MPI_REQUEST_NULL);
    for (int q = 0; q < size; ++q) {
      if (q == rank) continue;
      const auto qi = static_cast<size_t>(q);
      MPI_Irecv(&replies[3 * qi], 3, MPI_INT64_T, q, kReplyTag, control, &recvs[qi]);
      MPI_Isend(&seq, 1, MPI_INT64_T, q, kQueryTag, control, &sends[qi]);
    }
    std::vector<bool> answered(static_cast<size_t>(size), false);
    const auto deadline = Clock::now() + std::chrono::duration<double>(waitSeconds);
    int pending = size - 1;
    while (pending > 0 && Clock::now() < deadline) {
      answerQueries();  // a peer that timed out too is asking us
      for (int q = 0; q < size; ++q) {
        const auto qi = static_cast<size_t>(q);
        if (q == rank || answered[qi]) continue;
        int done = 0;
        if (MPI_Test(&recvs[qi], &done, MPI_STATUS_IGNORE) == MPI_SUCCESS && done) {
          answered[qi] = true;
          --pending;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::string out;
    for (int q = 0; q < size; ++q) {
      const auto qi = static_cast<size_t>(q);
      if (q == rank) continue;
      std::string about;
      if (!answered[qi]) {
        about = "no answer (dead, or its watchdog is off)";
      } else if (replies[3 * qi] < seq) {
        const int64_t last = replies[3 * qi];
        about = core::strCat("has not reached it (last collective ",
                             last < 0 ? std::string("none") : core::strCat("#", last), ", step ",
                             replies[3 * qi + 2],
                             replies[3 * qi + 1] ? ", inside it" : ", not in a collective", ")");
      } else if (replies[3 * qi] > seq) {
        about = core::strCat("is past it, at #", replies[3 * qi],
                             " (collectives issued in a different order?)");
      }
      if (!about.empty()) out += core::strCat(out.empty() ? "" : "; ", "rank ", q, " ", about);
    }
    return out.empty() ? "every rank reports having reached it (a network or MPI problem?)" : out;
  }

  void watchdogLoop() {
    const double timeout = options.timeoutSeconds;
    const auto tick = std::chrono::duration<double>(std::min(1.0, timeout / 4));
    postQuery();
    std::unique_lock<std::mutex> wlock(watchdogMutex);
    while (!watchdogStop) {
      watchdogWake.wait_for(wlock, tick);
      if (watchdogStop) break;
      answerQueries();
      std::shared_ptr<Op> stuck;
      {
        std::lock_guard<std::mutex> lock(mutex);
        if (!running) continue;
        const double elapsed = std::chrono::duration<double>(Clock::now() - runningSince).count();
        if (elapsed < timeout) continue;
        stuck = running;
      }
      const std::string who = missingRanks(stuck->seq, std::max(3.0, 3 * tick.count()));
      const std::string message = core::strCat(
          "communication timeout: ", stuck->name, " #", stuck->seq, " (", sizeText(stuck->bytes),
          ") at step ", step.load(), " did not finish within ", timeout, " s on ", host, " rank ",
          rank, " of ", size, ": ", who, ". Aborting the job (--comm-timeout).");
      std::fprintf(stderr, "[%d/%d] error: %s\n", rank, size, message.c_str());
      std::fflush(stderr);
      MPI_Abort(MPI_COMM_WORLD, core::kExitFailure);
      std::_Exit(core::kExitFailure);
    }
    // Shutting down: withdraw the posted receive (cancelling an unmatched receive is allowed).
    if (queryReq != MPI_REQUEST_NULL) {
      MPI_Cancel(&queryReq);
      MPI_Wait(&queryReq, MPI_STATUS_IGNORE);
    }
  }

  WorkPtr submit(const char* name, int64_t bytes, std::function<void()> run);
};

namespace {

// Waits on the communicator's `finished` condition; must not outlive the communicator.
class MpiWork final : public Work {
 public:
  MpiWork(std::shared_ptr<Op> op, std::mutex& mutex, std::condition_variable& finished)
      : op_(std::move(op)), mutex_(mutex), finished_(finished) {}
  bool isCompleted() override {
    std::lock_guard<std::mutex> lock(mutex_);
    return op_->done;
  }
  void wait() override {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      finished_.wait(lock, [&] { return op_->done; });
    }
    if (op_->error) std::rethrow_exception(op_->error);
  }

 private:
  std::shared_ptr<Op> op_;
  std::mutex& mutex_;
  std::condition_variable& finished_;
};

}  // namespace

WorkPtr MpiCommunicator::Impl::submit(const char* name, int64_t bytes, std::function<void()> run) {
  auto op = std::make_shared<Op>();
  op->name = name;
  op->bytes = bytes;
  op->run = std::move(run);
  bool here = !threaded;
  {
    std::lock_guard<std::mutex> lock(mutex);
    op->seq = nextSeq++;
    // A small collective with nothing queued or running ahead of it runs here, in the caller:
    // handing it to the comm thread costs two thread wake-ups, more than the collective itself
    // up to ~1 MiB (docs/BENCHMARKS.md "Collectives"). Issue order is kept: it is next anyway.
    if (threaded && options.inlineBytes > 0 && bytes <= options.inlineBytes && queue.empty() &&
        !running) {
      here = true;
    }
    if (here) {
      take(op);
    } else {
      queue.push_back(op);
    }
  }
  if (here) {
    execute(op);
    if (threaded) {
      // Wake the thread only for an op another thread queued meanwhile: a needless wake-up of an
      // idle thread costs, on a shared core, what running here saved.
      bool pending = false;
      {
        std::lock_guard<std::mutex> lock(mutex);
        pending = !queue.empty();
      }
      if (pending) queued.notify_one();
    }
  } else {
    queued.notify_one();
  }
  return std::make_shared<MpiWork>(op, mutex, finished);
}

MpiCommunicator::MpiCommunicator(const World& world, const CommunicatorOptions& options)
    : impl_(std::make_unique<Impl>()) {
  LDDPM_CHECK(world.usesMpi(), "MpiCommunicator: this process was not started by an MPI launcher");
  Impl& s = *impl_;
  s.options = options;
  s.host = world.host();
  LDDPM_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &s.comm));
  LDDPM_MPI_CHECK(MPI_Comm_set_errhandler(s.comm, MPI_ERRORS_RETURN));
  LDDPM_MPI_CHECK(MPI_Comm_rank(s.comm, &s.rank));
  LDDPM_MPI_CHECK(MPI_Comm_size(s.comm, &s.size));
  s.threaded = options.commThread && world.threadLevel() == MPI_THREAD_MULTIPLE;
  if (options.commThread && !s.threaded) {
    LDDPM_LOG(Warn) << "MPI granted thread level " << world.threadLevel()
                    << " < MPI_THREAD_MULTIPLE: collectives run in the calling thread (no overlap)";
  }
  if (s.threaded) s.commThread = std::thread([&s] { s.commLoop(); });
  if (options.timeoutSeconds > 0) {
    LDDPM_MPI_CHECK(MPI_Comm_dup(s.comm, &s.control));
    LDDPM_MPI_CHECK(MPI_Comm_set_errhandler(s.control, MPI_ERRORS_RETURN));
    s.watchdogThread = std::thread([&s] { s.watchdogLoop(); });
  }
}

MpiCommunicator::~MpiCommunicator() {
  Impl& s = *impl_;
  if (s.commThread.joinable()) {
    {
      std::lock_guard<std::mutex> lock(s.mutex);
      s.stopping = true;
    }
    s.queued.notify_one();
    s.commThread.join();  // queued collectives still run; the watchdog bounds a hang
  }
  if (s.watchdogThread.joinable()) {
    {
      std::lock_guard<std::mutex> lock(s.watchdogMutex);
      s.watchdogStop = true;
    }
    s.watchdogWake.notify_one();
    s.watchdogThread.join();
  }
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && s.control != MPI_COMM_NULL) MPI_Comm_free(&s.control);
  if (!finalized && s.comm != MPI_COMM_NULL) MPI_Comm_free(&s.comm);
}

int MpiCommunicator::rank() const { return impl_->rank; }
int MpiCommunicator::size() const { return impl_->size; }
bool MpiCommunicator::threaded() const { return impl_->threaded; }

void MpiCommunicator::setStep(int64_t step) {
  Communicator::setStep(step);
  impl_->step = step;
}

WorkPtr MpiCommunicator::allreduce(torch::Tensor tensor, ReduceOp op) {
  checkCpuContiguous(tensor, "allreduce");
  const MPI_Datatype type = mpiType(tensor, "allreduce");
  const int count = asInt(tensor.numel(), "allreduce");
  LDDPM_CHECK(op == ReduceOp::Sum || tensor.is_floating_point(),
              "allreduce: average of an integer tensor");
  MPI_Comm comm = impl_->comm;
  const int n = impl_->size;
  return impl_->submit("allreduce", tensor.nbytes(), [=]() mutable {
    LDDPM_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, tensor.data_ptr(), count, type, MPI_SUM, comm));
    if (op == ReduceOp::Avg) tensor.div_(n);
  });
}

WorkPtr MpiCommunicator::reduceScatter(torch::Tensor output, torch::Tensor input, ReduceOp op,
                                       std::vector<int64_t> counts) {
  checkCpuContiguous(output, "reduceScatter");
  checkCpuContiguous(input, "reduceScatter");
  LDDPM_CHECK(input.scalar_type() == output.scalar_type(), "reduceScatter: dtypes differ");
  LDDPM_CHECK(op == ReduceOp::Sum || input.is_floating_point(),
              "reduceScatter: average of an integer tensor");
  counts = detail::resolveCounts(std::move(counts), input.numel(), impl_->size, "reduceScatter");
  LDDPM_CHECK(output.numel() == counts[static_cast<size_t>(impl_->rank)],
              "reduceScatter: output has ", output.numel(), " elements, this rank's slice ",
              counts[static_cast<size_t>(impl_->rank)]);
  const MPI_Datatype type = mpiType(input, "reduceScatter");
  MPI_Comm comm = impl_->comm;
  const int n = impl_->size;
  std::vector<int> recvCounts = asInts(counts, "reduceScatter");
  return impl_->submit("reduceScatter", input.nbytes(), [=]() mutable {
    LDDPM_MPI_CHECK(MPI_Reduce_scatter(input.data_ptr(), output.data_ptr(), recvCounts.data(), type,
                                       MPI_SUM, comm));
    if (op == ReduceOp::Avg) output.div_(n);
  });
}

WorkPtr MpiCommunicator::allgather(torch::Tensor output, torch::Tensor input,
                                   std::vector<int64_t> counts) {
  checkCpuContiguous(output, "allgather");
  checkCpuContiguous(input, "allgather");
  LDDPM_CHECK(input.scalar_type() == output.scalar_type(), "allgather: dtypes differ");
  counts = detail::resolveCounts(std::move(counts), output.numel(), impl_->size, "allgather");
  const auto me = static_cast<size_t>(impl_->rank);
  LDDPM_CHECK(input.numel() == counts[me], "allgather: input has ", input.numel(),
              " elements, this rank's slice ", counts[me]);
  const std::vector<int64_t> offsets = detail::offsetsOf(counts);
  // The input may already be this rank's slice of the output (ZeRO's parameter shard): MPI
  // forbids aliased buffers but allows exactly that case as MPI_IN_PLACE.
  const bool inPlace =
      input.data_ptr() == static_cast<char*>(output.data_ptr()) +
                              offsets[me] * static_cast<int64_t>(output.element_size());
  const MPI_Datatype type = mpiType(input, "allgather");
  MPI_Comm comm = impl_->comm;
  std::vector<int> recvCounts = asInts(counts, "allgather");
  std::vector<int> displs = asInts(offsets, "allgather");
  const int sendCount = recvCounts[me];
  return impl_->submit("allgather", output.nbytes(), [=]() mutable {
    LDDPM_MPI_CHECK(MPI_Allgatherv(inPlace ? MPI_IN_PLACE : input.data_ptr(), sendCount, type,
                                   output.data_ptr(), recvCounts.data(), displs.data(), type,
                                   comm));
  });
}

WorkPtr MpiCommunicator::broadcast(torch::Tensor tensor, int root) {
  checkCpuContiguous(tensor, "broadcast");
  LDDPM_CHECK(root >= 0 && root < impl_->size, "broadcast: root ", root, " is not a rank of ",
              impl_->size);
  const MPI_Datatype type = mpiType(tensor, "broadcast");
  const int count = asInt(tensor.numel(), "broadcast");
  MPI_Comm comm = impl_->comm;
  return impl_->submit("broadcast", tensor.nbytes(), [=]() mutable {
    LDDPM_MPI_CHECK(MPI_Bcast(tensor.data_ptr(), count, type, root, comm));
  });
}

WorkPtr MpiCommunicator::barrier() {
  MPI_Comm comm = impl_->comm;
  return impl_->submit("barrier", 0, [=] { LDDPM_MPI_CHECK(MPI_Barrier(comm)); });
}

}  // namespace lddpm::dist
