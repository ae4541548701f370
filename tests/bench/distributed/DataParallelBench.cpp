// Data-parallel training step of the real Lesion-DDPM network (models::createModel, the defaults of
// `lddpm train --model lesion-ddpm` unless --base / --modulation-hidden say otherwise; its
// diffusion loss on a synthetic batch of --batch volumes per rank), one core per rank:
//   * overlap: bucket allreduces launched from gradient hooks, run by the communication thread
//   * no-overlap: the same buckets, all reduced after backward
//   * comm-in-caller: hooks launch, but collectives run synchronously in the autograd thread
//   * compute-only: both ranks compute, nothing is communicated (the contention floor)
// and weak-scaling efficiency = (1-rank step time) / (N-rank step time), same per-rank batch,
// beside each mode's step against compute-only's (what communicating costs those N ranks).
//
// Run it plainly: it measures the 1-rank step in-process (pinned to one core), then starts
// `mpiexec -n N --bind-to core` on itself for the N-rank modes (--ranks, default 2), alternating
// for --rounds rounds so both see the same machine weather; the best round of each is reported.
// With more ranks than cores the ranks share cores (--oversubscribe, unbound): the efficiency
// column then measures the machine, and only the column against compute-only the framework.
//   build/tests/bench/distributed/DataParallelBench [--size 32] [--batch 2] [--base 16]
//       [--modulation-hidden 32] [--steps 4] [--warmup 1] [--rounds 2] [--ranks 2]
// (Batch 2 per rank: LibTorch 1.13 takes its slow conv3d path at batch 1 on the CPU.)
#include <sched.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>

#include "core/Allocator.h"
#include "core/Json.h"
#include "core/Rng.h"
#include "core/Timer.h"
#include "distributed/DataParallel.h"
#include "distributed/LocalCommunicator.h"
#include "distributed/MpiCommunicator.h"
#include "distributed/World.h"
#include "models/Registry.h"
#include "tests/bench/models/SyntheticBatch.h"

namespace {
using namespace lddpm;

struct Settings {
  int64_t size = 32;
  int64_t batch = 2;
  int64_t base = models::ModelConfig{}.baseChannels;
  int64_t modulationHidden = models::ModelConfig{}.modulationHidden;
  int steps = 4;
  int warmup = 1;
  int rounds = 2;
  int ranks = 2;
};

using Net = std::shared_ptr<models::ModelImpl>;

Net makeNet(const Settings& s) {
  torch::manual_seed(0);
  models::ModelConfig c;
  c.baseChannels = s.base;
  c.modulationHidden = s.modulationHidden;
  return models::createModel(c);
}

// Mean seconds per step (forward, diffusion loss, backward, reduce, AdamW) after `warmup` steps.
double timeSteps(models::ModelImpl& net, dist::DataParallel* dp, const Settings& s) {
  torch::optim::AdamW opt(net.parameters(), torch::optim::AdamWOptions(1e-4));
  const models::Batch batch = bench::syntheticBatch(s.batch, {s.size, s.size, s.size});
  core::Stopwatch watch;
  for (int i = 0; i < s.warmup + s.steps; ++i) {
    if (i == s.warmup) watch.reset();
    if (dp) {
      dp->zeroGrad();
    } else {
      opt.zero_grad();
    }
    models::Generators gens;
    for (int64_t b = 0; b < s.batch; ++b) {
      gens.push_back(core::makeCpuGenerator(static_cast<uint64_t>(i * s.batch + b)));
    }
    net.loss(batch, gens).total.backward();
    if (dp) dp->finish();
    opt.step();
  }
  return watch.seconds() / s.steps;
}

// Under mpiexec: every N-rank mode, slowest rank; rank 0 prints one JSON line.
int worker(const Settings& s) {
  dist::World& world = dist::World::get();
  torch::set_num_threads(1);
  Net net = makeNet(s);
  dist::MpiCommunicator threaded(world, dist::CommunicatorOptions{600, /*commThread=*/true});
  dist::MpiCommunicator inlined(world, dist::CommunicatorOptions{600, /*commThread=*/false});
  // A synchronous job steps at the pace of its slowest rank: report the maximum over ranks
  // (for compute-only too, where the ranks never wait for each other).
  auto slowestRank = [&](double t) {
    auto all = torch::empty({world.size()}, torch::kDouble);
    threaded.allgather(all, torch::tensor({t}, torch::kDouble))->wait();
    return all.max().item<double>();
  };
  core::Json out{{"ranks", world.size()},
                 {"grad_bytes", net->parameterCount() * int64_t{sizeof(float)}}};
  out["compute_only"] = slowestRank(timeSteps(*net, nullptr, s));
  {
    dist::DataParallel dp(*net, threaded, dist::DataParallelOptions().overlap(true));
    out["buckets"] = dp.buckets().size();
    out["overlap"] = slowestRank(timeSteps(*net, &dp, s));
  }
  {
    dist::DataParallel dp(*net, threaded, dist::DataParallelOptions().overlap(false));
    out["no_overlap"] = slowestRank(timeSteps(*net, &dp, s));
  }
  {
    dist::DataParallel dp(*net, inlined, dist::DataParallelOptions().overlap(true));
    out["comm_in_caller"] = slowestRank(timeSteps(*net, &dp, s));
  }
  if (world.rank() == 0) std::cout << out.dump() << std::endl;
  return 0;
}

// One rank, pinned to core 0 (the N-rank run binds one core per rank), through the Local
// communicator as a world-of-one training run would be.
double oneRankStep(const Settings& s) {
  cpu_set_t saved;
  sched_getaffinity(0, sizeof saved, &saved);
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(0, &one);
  sched_setaffinity(0, sizeof one, &one);
  torch::set_num_threads(1);
  Net net = makeNet(s);
  dist::LocalCommunicator local;
  dist::DataParallel dp(*net, local);
  const double t = timeSteps(*net, &dp, s);
  sched_setaffinity(0, sizeof saved, &saved);  // mpiexec must not inherit the pinning
  return t;
}

bool oversubscribed(const Settings& s) {
  return static_cast<unsigned>(s.ranks) > std::thread::hardware_concurrency();
}

core::Json multiRankRun(const std::string& self, const Settings& s) {
  const std::string placement =
      oversubscribed(s) ? " --oversubscribe --bind-to none " : " --bind-to core --map-by core ";
  const std::string cmd =
      std::string(LDDPM_MPIEXEC) + " -n " + std::to_string(s.ranks) + placement + self +
      " --size " + std::to_string(s.size) + " --batch " + std::to_string(s.batch) + " --base " +
      std::to_string(s.base) + " --modulation-hidden " + std::to_string(s.modulationHidden) +
      " --steps " + std::to_string(s.steps) + " --warmup " + std::to_string(s.warmup);
  FILE* pipe = popen(cmd.c_str(), "r");
  std::string text;
  std::array<char, 4096> buf{};
  while (pipe && fgets(buf.data(), buf.size(), pipe)) text += buf.data();
  const int rc = pipe ? pclose(pipe) : -1;
  if (rc != 0 || text.empty()) {
    std::cerr << s.ranks << "-rank run failed (" << rc << "): " << cmd << "\n" << text;
    std::exit(1);
  }
  return core::Json::parse(text);
}

}  // namespace

int main(int argc, char** argv) {
  core::tuneAllocatorForTensors();  // the allocator `lddpm` runs with (core/Allocator.h)
  dist::World& world = dist::World::init(&argc, &argv);
  Settings s;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string key = argv[i];
    const long v = std::atol(argv[i + 1]);
    if (key == "--size") s.size = v;
    if (key == "--batch") s.batch = v;
    if (key == "--base") s.base = v;
    if (key == "--modulation-hidden") s.modulationHidden = v;
    if (key == "--steps") s.steps = static_cast<int>(v);
    if (key == "--warmup") s.warmup = static_cast<int>(v);
    if (key == "--rounds") s.rounds = static_cast<int>(v);
    if (key == "--ranks") s.ranks = static_cast<int>(v);
  }
  if (s.ranks < 2) {
    std::cerr << "DataParallelBench: --ranks must be at least 2, got " << s.ranks << "\n";
    return 2;
  }
  if (world.usesMpi()) {
    const int rc = worker(s);
    world.finalize();
    return rc;
  }
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
  double best1 = 1e30;
  core::Json best2;
  for (int r = 0; r < s.rounds; ++r) {
    const double t1 = oneRankStep(s);
    const core::Json t2 = multiRankRun(argv[0], s);
    std::cerr << "round " << r << ": 1 rank " << t1 << " s/step; " << s.ranks << " ranks "
              << t2.dump() << "\n";
    best1 = std::min(best1, t1);
    if (best2.is_null()) {
      best2 = t2;
    } else {
      for (const char* k : {"compute_only", "overlap", "no_overlap", "comm_in_caller"}) {
        best2[k] = std::min(best2[k].get<double>(), t2[k].get<double>());
      }
    }
  }
  std::printf(
      "# DataParallelBench: Lesion-DDPM (base %lld, modulation hidden %lld), %.2f M params (%.1f "
      "MiB of fp32 gradients, %d buckets), %lld x %lld^3 per rank, 1 thread per rank, best of %d "
      "rounds; %d ranks on %u cores%s\n",
      static_cast<long long>(s.base), static_cast<long long>(s.modulationHidden),
      best2["grad_bytes"].get<double>() / 4e6, best2["grad_bytes"].get<double>() / (1 << 20),
      best2["buckets"].get<int>(), static_cast<long long>(s.batch), static_cast<long long>(s.size),
      s.rounds, s.ranks, std::thread::hardware_concurrency(),
      oversubscribed(s) ? " (oversubscribed: the efficiency column measures the machine)" : "");
  std::printf("%-34s %10s %22s %18s\n", "mode", "s/step", "weak-scaling eff.", "vs compute-only");
  std::printf("%-34s %10.3f %22s %18s\n", "1 rank (Local communicator)", best1, "1.000 (reference)",
              "");
  const double computeOnly = best2["compute_only"].get<double>();
  for (const char* k : {"compute_only", "overlap", "no_overlap", "comm_in_caller"}) {
    const double t = best2[k].get<double>();
    std::printf("%-34s %10.3f %22.3f %18.3f\n", (std::to_string(s.ranks) + " ranks, " + k).c_str(),
                t, best1 / t, computeOnly / t);
  }
  return 0;
}
