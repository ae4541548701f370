// Loader throughput: 64^3 patches/s with 0 (caller's thread), 1 and 2 prefetch threads, against
// the raw read rate of the shard files from page cache, and the loader's peak RSS.
//   LoaderBench STORE [batches=30] [patch=64]
// Prints one line per configuration; docs/BENCHMARKS.md ("Data") has the figures.
#include <sys/resource.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <vector>

#include "core/Timer.h"
#include "data/Loader.h"

namespace fs = std::filesystem;
using namespace lddpm;

namespace {

double rawReadMBps(const std::string& store) {
  std::vector<char> buf(4 << 20);
  std::int64_t bytes = 0;
  for (int pass = 0; pass < 2; ++pass) {  // first pass warms the page cache
    bytes = 0;
    core::Stopwatch watch;
    for (const auto& e : fs::directory_iterator(store)) {
      if (e.path().extension() != ".h5") continue;
      std::FILE* f = std::fopen(e.path().c_str(), "rb");
      while (std::size_t n = std::fread(buf.data(), 1, buf.size(), f))
        bytes += static_cast<std::int64_t>(n);
      std::fclose(f);
    }
    if (pass == 1) return static_cast<double>(bytes) / 1e6 / watch.seconds();
  }
  return 0;
}

long peakRssMB() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss / 1024;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: LoaderBench STORE [batches] [patch]\n";
    return 2;
  }
  const std::string store = argv[1];
  const int batches = argc > 2 ? std::atoi(argv[2]) : 30;
  const std::int64_t patch = argc > 3 ? std::atoll(argv[3]) : 64;
  torch::set_num_threads(1);
  const double raw = rawReadMBps(store);
  std::cout << "raw read from page cache: " << raw << " MB/s\n";
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
    data::Loader loader(o);
    loader.next();  // open shards, fill the queue
    core::Stopwatch watch;
    std::int64_t patches = 0, bytes = 0;
    for (int k = 0; k < batches; ++k) {
      const data::Batch b = loader.next();
      patches += b.image.size(0);
      bytes += b.image.nbytes() + b.tissue.nbytes() + b.lesion.nbytes();
    }
    const double s = watch.seconds();
    const double mbps = static_cast<double>(bytes) / 1e6 / s;
    std::cout << "threads " << threads << ": " << static_cast<double>(patches) / s << " patches/s, "
              << mbps << " MB/s delivered (" << 100.0 * mbps / raw << " % of raw), peak RSS "
              << peakRssMB() << " MB\n";
  }
  return 0;
}
