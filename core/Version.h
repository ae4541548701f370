#pragma once
// What this build is: version and compiled-in backends (for `lddpm --version` and run records).
#include <string>

namespace lddpm::core {

struct BuildInfo {
  std::string version;
  std::string torchVersion;
  bool mpi;
  bool cuda;
  bool nccl;
};

BuildInfo buildInfo();
std::string versionLine();  // "lddpm 0.1.0 (LibTorch 1.13.0; backends: MPI yes, CUDA no, NCCL no)"

}  // namespace lddpm::core
