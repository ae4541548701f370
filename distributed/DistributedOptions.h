#pragma once
// The command-line face of distributed/: backend, collective timeout, bucket sizes, overlap,
// ZeRO and the desync-check period, as one options struct with its own options_description
// (docs/architecture.md "Conventions"). Commands add describe() to theirs and call validate() after
// parsing.
#include <string>

#include "core/Options.h"
#include "distributed/Communicator.h"
#include "distributed/DataParallel.h"

namespace lddpm::dist {

struct DistributedOptions {
  std::string backend = "auto";
  double commTimeoutSeconds = 600;
  bool commThread = true;
  double commInlineMiB = 1;  // CommunicatorOptions::inlineBytes
  double firstBucketMiB = 1;
  double bucketCapMiB = 25;
  bool overlap = true;
  bool zero = false;
  int desyncCheckEvery = 1000;  // steps; 0 = never

  // All options; with `training` false only the communicator ones (backend, timeout, thread).
  core::po::options_description describe(bool training = true);
  // Throws core::UsageError naming the offending option.
  void validate() const;

  Backend backendKind() const { return parseBackend(backend); }
  CommunicatorOptions communicatorOptions() const;
  DataParallelOptions dataParallelOptions() const;
};

}  // namespace lddpm::dist
