#pragma once
// Collective bandwidth measurement in the manner of nccl-tests: time `iters` back-to-back
// collectives of one size, report algorithm bandwidth (bytes / time) and bus bandwidth (algbw
// scaled by the bytes each link must carry: 2(n-1)/n for allreduce, (n-1)/n for reduce-scatter
// and allgather), and check one fresh run of each against its closed form.
#include <cstdint>
#include <string>
#include <vector>

#include "distributed/Communicator.h"

namespace lddpm::dist {

enum class Collective { Allreduce, ReduceScatter, Allgather };

// "allreduce" | "reduce-scatter" | "allgather"; throws core::UsageError naming `option`.
Collective parseCollective(const std::string& name, const std::string& option);
const char* collectiveName(Collective c);

// nccl-tests' busbw / algbw ratio for `c` over `ranks` ranks.
double busBandwidthFactor(Collective c, int ranks);

struct CommBenchResult {
  Collective collective;
  int64_t bytes;    // the whole buffer: allreduce's tensor, reduce-scatter's input,
                    // allgather's output (nccl-tests' "size")
  double seconds;   // mean per collective, averaged over ranks
  double algbwGBs;  // bytes / seconds / 1e9
  double busbwGBs;
  bool correct;  // the check run matched its closed form on every rank
};

// Collective over all ranks of `comm`. float32 buffers; `bytes` is rounded down to a multiple
// of 4·size.
CommBenchResult benchmarkCollective(Communicator& comm, Collective c, int64_t bytes, int iters,
                                    int warmup);

// min, min·factor, ... ≤ max.
std::vector<int64_t> geometricSizes(int64_t minBytes, int64_t maxBytes, int64_t factor);

}  // namespace lddpm::dist
