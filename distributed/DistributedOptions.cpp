#include "distributed/DistributedOptions.h"

#include <cmath>

#include "core/Error.h"

namespace lddpm::dist {

namespace po = core::po;

namespace {
constexpr double kMiB = 1024.0 * 1024.0;
}

po::options_description DistributedOptions::describe(bool training) {
  po::options_description desc("Distributed options");
  desc.add_options()(
      "comm-backend", po::value(&backend)->default_value(backend)->value_name("NAME"),
      "auto | local | mpi | nccl (auto: nccl for CUDA tensors when built with it, mpi under a "
      "launcher, local otherwise)")(
      "comm-timeout",
      po::value(&commTimeoutSeconds)->default_value(commTimeoutSeconds)->value_name("SECONDS"),
      "abort the whole job when one collective takes longer than this (0 = never)")(
      "comm-thread", po::value(&commThread)->default_value(commThread)->value_name("BOOL"),
      "MPI: run collectives on a communication thread so they overlap compute")(
      "comm-inline-mib", po::value(&commInlineMiB)->default_value(commInlineMiB)->value_name("MIB"),
      "MPI with the thread: a collective up to this size that finds the thread idle runs in the "
      "caller (cheaper than the hand-off; 0 = never)");
  if (!training) return desc;
  desc.add_options()("bucket-first-mib",
                     po::value(&firstBucketMiB)->default_value(firstBucketMiB)->value_name("MIB"),
                     "size of the first gradient bucket (reduced first, so small)")(
      "bucket-cap-mib", po::value(&bucketCapMiB)->default_value(bucketCapMiB)->value_name("MIB"),
      "size cap of the other gradient buckets")(
      "overlap", po::value(&overlap)->default_value(overlap)->value_name("BOOL"),
      "launch each bucket's allreduce during backward (false: all after backward)")(
      "zero", po::value(&zero)->default_value(zero)->value_name("BOOL"),
      "shard AdamW state across ranks (ZeRO-1): reduce-scatter + allgather instead of allreduce")(
      "desync-check-every",
      po::value(&desyncCheckEvery)->default_value(desyncCheckEvery)->value_name("STEPS"),
      "compare parameter checksums across ranks every N steps (0 = never)");
  return desc;
}

void DistributedOptions::validate() const {
  parseBackend(backend);
  if (!(commTimeoutSeconds >= 0) || !std::isfinite(commTimeoutSeconds)) {
    LDDPM_THROW(core::UsageError, "option '--comm-timeout' must be a number of seconds >= 0, got ",
                commTimeoutSeconds);
  }
  if (!(commInlineMiB >= 0 && commInlineMiB <= 1024 * 1024)) {
    LDDPM_THROW(core::UsageError, "option '--comm-inline-mib' must be a size in MiB from 0 to ",
                1024 * 1024, ", got ", commInlineMiB);
  }
  if (!(firstBucketMiB > 0)) {
    LDDPM_THROW(core::UsageError, "option '--bucket-first-mib' must be > 0, got ", firstBucketMiB);
  }
  if (!(bucketCapMiB > 0)) {
    LDDPM_THROW(core::UsageError, "option '--bucket-cap-mib' must be > 0, got ", bucketCapMiB);
  }
  if (desyncCheckEvery < 0) {
    LDDPM_THROW(core::UsageError, "option '--desync-check-every' must be >= 0, got ",
                desyncCheckEvery);
  }
}

CommunicatorOptions DistributedOptions::communicatorOptions() const {
  CommunicatorOptions o;
  o.timeoutSeconds = commTimeoutSeconds;
  o.commThread = commThread;
  o.inlineBytes = static_cast<std::int64_t>(commInlineMiB * kMiB);
  return o;
}

DataParallelOptions DistributedOptions::dataParallelOptions() const {
  return DataParallelOptions()
      .firstBucketBytes(static_cast<int64_t>(firstBucketMiB * kMiB))
      .bucketCapBytes(static_cast<int64_t>(bucketCapMiB * kMiB))
      .overlap(overlap);
}

}  // namespace lddpm::dist
