#include "distributed/CommBenchmark.h"

#include "core/Error.h"
#include "core/Timer.h"

namespace lddpm::dist {

Collective parseCollective(const std::string& name, const std::string& option) {
  if (name == "allreduce") return Collective::Allreduce;
  if (name == "reduce-scatter") return Collective::ReduceScatter;
  if (name == "allgather") return Collective::Allgather;
  LDDPM_THROW(core::UsageError, "option '", option, "': '", name,
              "' is not one of allreduce, reduce-scatter, allgather");
}

const char* collectiveName(Collective c) {
  switch (c) {
    case Collective::Allreduce:
      return "allreduce";
    case Collective::ReduceScatter:
      return "reduce-scatter";
    case Collective::Allgather:
      return "allgather";
  }
  return "?";
}

double busBandwidthFactor(Collective c, int ranks) {
  const double n = ranks;
  return c == Collective::Allreduce ? 2 * (n - 1) / n : (n - 1) / n;
}

std::vector<int64_t> geometricSizes(int64_t minBytes, int64_t maxBytes, int64_t factor) {
  LDDPM_CHECK(minBytes > 0 && maxBytes >= minBytes && factor >= 2,
              "geometricSizes: need 0 < min <= max and factor >= 2");
  std::vector<int64_t> sizes;
  for (int64_t b = minBytes; b <= maxBytes; b *= factor) sizes.push_back(b);
  return sizes;
}

namespace {

// Issues one collective on freshly filled buffers: rank r contributes (r+1)-valued data.
struct Buffers {
  torch::Tensor in, out;
};

Buffers makeBuffers(Collective c, int64_t numel, int n, const torch::Device& device) {
  const auto on = torch::TensorOptions().device(device);
  switch (c) {
    case Collective::Allreduce: {
      auto t = torch::empty({numel}, on);
      return {t, t};
    }
    case Collective::ReduceScatter:
      return {torch::empty({numel}, on), torch::empty({numel / n}, on)};
    case Collective::Allgather:
      return {torch::empty({numel / n}, on), torch::empty({numel}, on)};
  }
  return {};
}

WorkPtr issue(Communicator& comm, Collective c, Buffers& b) {
  switch (c) {
    case Collective::Allreduce:
      return comm.allreduce(b.in, ReduceOp::Sum);
    case Collective::ReduceScatter:
      return comm.reduceScatter(b.out, b.in, ReduceOp::Sum);
    case Collective::Allgather:
      return comm.allgather(b.out, b.in);
  }
  return nullptr;
}

}  // namespace

CommBenchResult benchmarkCollective(Communicator& comm, Collective c, int64_t bytes, int iters,
                                    int warmup) {
  const int n = comm.size();
  const int64_t numel = std::max<int64_t>(n, bytes / 4 / n * n);
  const torch::Device device = comm.device();
  Buffers b = makeBuffers(c, numel, n, device);
  // NCCL's Work::wait() orders the caller's stream, not the host: time up to device completion.
  auto finished = [&] {
    if (device.is_cuda()) torch::cuda::synchronize(device.index());
  };
  b.in.fill_(comm.rank() + 1);

  std::vector<WorkPtr> works;
  for (int i = 0; i < warmup; ++i) works.push_back(issue(comm, c, b));
  waitAll(works);
  works.clear();
  finished();
  comm.barrier()->wait();
  core::Stopwatch watch;
  for (int i = 0; i < iters; ++i) works.push_back(issue(comm, c, b));
  waitAll(works);
  finished();
  auto seconds = torch::tensor({watch.seconds() / std::max(1, iters)}, torch::kDouble).to(device);
  comm.allreduce(seconds, ReduceOp::Avg)->wait();

  // The check run: fresh inputs, closed forms. Allreduce/reduce-scatter: Σ(r+1) = n(n+1)/2;
  // allgather: slice q holds q+1.
  b.in.fill_(comm.rank() + 1);
  issue(comm, c, b)->wait();
  bool ok = false;
  if (c == Collective::Allgather) {
    auto expected = torch::arange(1, n + 1, torch::kFloat).repeat_interleave(numel / n);
    ok = torch::equal(b.out.cpu(), expected);
  } else {
    ok = torch::all(b.out == n * (n + 1) / 2.0f).item<bool>();
  }
  auto bad = torch::tensor({ok ? 0.0 : 1.0}, torch::kDouble).to(device);
  comm.allreduce(bad, ReduceOp::Sum)->wait();

  CommBenchResult r{c, numel * 4, seconds.item<double>(), 0, 0, bad.item<double>() == 0};
  r.algbwGBs = static_cast<double>(r.bytes) / r.seconds / 1e9;
  r.busbwGBs = r.algbwGBs * busBandwidthFactor(c, n);
  return r;
}

}  // namespace lddpm::dist
