#include "core/Version.h"

#include <torch/version.h>

#include "core/Error.h"

namespace lddpm::core {

BuildInfo buildInfo() {
  return BuildInfo{LDDPM_VERSION, TORCH_VERSION, /*mpi=*/true, LDDPM_WITH_CUDA != 0,
                   LDDPM_WITH_NCCL != 0};
}

std::string versionLine() {
  const BuildInfo b = buildInfo();
  auto yn = [](bool v) { return v ? "yes" : "no"; };
  return strCat("lddpm ", b.version, " (LibTorch ", b.torchVersion, "; backends: MPI ", yn(b.mpi),
                ", CUDA ", yn(b.cuda), ", NCCL ", yn(b.nccl), ")");
}

}  // namespace lddpm::core
