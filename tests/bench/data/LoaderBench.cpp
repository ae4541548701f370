// Loader throughput: 64^3 patches/s with 0 (caller's thread), 1 and 2 prefetch threads, reading
// patches directly (data/DirectChunks.h) and through H5Dread, against the raw read rate of the
// shard files from page cache, and memory: the process's peak and current RSS and the C heap's
// bytes in use and held (what the loader has left fragmented). It runs with the allocator `lddpm`
// runs with (core/Allocator.h). The configurations alternate within each round; the best round
// of each is printed last with the 2-vs-1-thread speed-up.
//   LoaderBench STORE [batches=30] [patch=64] [rounds=1] [paths=both|direct|hdf5]
// (one path alone: e.g. to profile it with `perf record`). It also times the planning of a batch
// (the sample order per batch against once per epoch) for cohorts of up to 100 000 subjects.
// docs/BENCHMARKS.md ("Data") has the figures.
#include <sys/resource.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <vector>

#include "core/Allocator.h"
#include "core/Timer.h"
#include "data/Loader.h"

namespace fs = std::filesystem;
using namespace lddpm;

namespace {

// The best of 5 passes over the shard files with fread, after one pass that fills the page cache.
double rawReadMBps(const std::string& store) {
  std::vector<char> buf(4 << 20);
  double best = 0;
  for (int pass = 0; pass < 6; ++pass) {
    std::int64_t bytes = 0;
    core::Stopwatch watch;
    for (const auto& e : fs::directory_iterator(store)) {
      if (e.path().extension() != ".h5") continue;
      std::FILE* f = std::fopen(e.path().c_str(), "rb");
      while (std::size_t n = std::fread(buf.data(), 1, buf.size(), f))
        bytes += static_cast<std::int64_t>(n);
      std::fclose(f);
    }
    if (pass > 0) best = std::max(best, static_cast<double>(bytes) / 1e6 / watch.seconds());
  }
  return best;
}

long peakRssMB() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss / 1024;
}

// Current RSS, and (glibc) the heap's bytes in use and held from the system, in MB.
std::string memoryNow() {
  long pages = 0, resident = 0;
  std::ifstream("/proc/self/statm") >> pages >> resident;
  std::string s = "RSS " + std::to_string(resident * 4096 / (1 << 20)) + " MB";
#if defined(__GLIBC__)
  const struct mallinfo2 m = mallinfo2();
  s += ", heap in use " + std::to_string(m.uordblks >> 20) + " of " +
       std::to_string((m.arena + m.hblkhd) >> 20) + " MB held";
#endif
  return s;
}

// Microseconds per batch of planning alone (PatchSampler::rankBatch, batch 2) for a cohort of
// `subjects`, over `batches` consecutive batches: the epoch's order made for every batch, or once
// per epoch as the loader makes it.
double planMicrosPerBatch(std::size_t subjects, int batches, bool orderPerBatch) {
  data::SamplerOptions o;
  o.seed = 1;
  const data::PatchSampler sampler(subjects, o);
  data::Cursor cursor;
  std::int64_t sink = 0, epoch = -1;
  std::vector<std::int64_t> order;
  core::Stopwatch watch;
  for (int k = 0; k < batches; ++k) {
    if (orderPerBatch) {
      sink += static_cast<std::int64_t>(sampler.rankBatch(cursor, 0, 1).front().subject);
    } else {
      if (epoch != cursor.epoch) order = sampler.order(epoch = cursor.epoch);
      sink += static_cast<std::int64_t>(sampler.rankBatch(cursor, 0, 1, order).front().subject);
    }
    cursor = sampler.advance(cursor);
  }
  const double us = watch.seconds() * 1e6 / batches;
  return sink < 0 ? 0 : us;  // keeps the loop
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: LoaderBench STORE [batches] [patch] [rounds] [both|direct|hdf5]\n";
    return 2;
  }
  core::tuneAllocatorForTensors();  // the allocator `lddpm` runs with (core/Allocator.h)
  const std::string store = argv[1];
  const int batches = argc > 2 ? std::atoi(argv[2]) : 30;
  const std::int64_t patch = argc > 3 ? std::atoll(argv[3]) : 64;
  torch::set_num_threads(1);
  const int rounds = argc > 4 ? std::atoi(argv[4]) : 1;
  const std::string paths = argc > 5 ? argv[5] : "both";
  if (paths != "both" && paths != "direct" && paths != "hdf5") {
    std::cerr << "LoaderBench: paths must be both, direct or hdf5, got " << paths << "\n";
    return 2;
  }
  std::vector<bool> directs;
  if (paths != "direct") directs.push_back(false);
  if (paths != "hdf5") directs.push_back(true);
  for (std::size_t subjects : {100, 10000, 100000}) {
    std::cout << "planning a batch, " << subjects << " subjects: order per batch "
              << planMicrosPerBatch(subjects, 200, true) << " us, per epoch (the loader) "
              << planMicrosPerBatch(subjects, 200, false) << " us\n";
  }
  const double raw = rawReadMBps(store);
  std::cout << "raw read from page cache (best of 5 passes): " << raw << " MB/s\n";
  std::map<std::pair<bool, int>, double> best;  // (direct, threads) -> patches/s
  double mbPerPatch = 0;
  for (int round = 1; round <= rounds; ++round) {
    for (bool direct : directs) {
      for (int threads : {0, 1, 2}) {
        data::LoaderOptions o;
        o.store = store;
        o.split = "all";
        o.patch = patch;
        o.sampler.batchSize = 2;
        o.sampler.repeats = 64;
        o.sampler.seed = 1;
        o.threads = threads;
        o.queueDepth = 4;
        o.directReads = direct;
        core::Stopwatch warm;
        data::Loader loader(o);
        loader.next();  // open shards, fill the queue
        const double firstMs = warm.seconds() * 1e3;
        core::Stopwatch watch;
        std::int64_t patches = 0, bytes = 0;
        for (int k = 0; k < batches; ++k) {
          const data::Batch b = loader.next();
          patches += b.image.size(0);
          bytes += b.image.nbytes() + b.tissue.nbytes() + b.lesion.nbytes();
        }
        const double s = watch.seconds();
        const double rate = static_cast<double>(patches) / s;
        mbPerPatch = static_cast<double>(bytes) / 1e6 / static_cast<double>(patches);
        double& b = best[{direct, threads}];
        b = std::max(b, rate);
        std::cout << "round " << round << (direct ? " direct" : " hdf5  ") << " threads " << threads
                  << ": " << rate << " patches/s (" << 100.0 * rate * mbPerPatch / raw
                  << " % of raw; first batch after " << firstMs << " ms); after it: " << memoryNow()
                  << "; peak RSS " << peakRssMB() << " MB" << std::endl;
      }
    }
  }
  std::cout << "best of " << rounds << " round(s), " << mbPerPatch << " MB per patch delivered:\n";
  for (bool direct : directs) {
    std::cout << (direct ? "direct" : "hdf5  ");
    for (int threads : {0, 1, 2}) {
      const double r = best[{direct, threads}];
      std::cout << "  " << threads << " threads " << r << " patches/s ("
                << 100.0 * r * mbPerPatch / raw << " % of raw)";
    }
    std::cout << "  2 vs 1 thread " << best[{direct, 2}] / best[{direct, 1}] << "x\n";
  }
  return 0;
}
