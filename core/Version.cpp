#include "core/Version.h"

#include <dlfcn.h>
#include <torch/version.h>

#include <filesystem>
#include <system_error>

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

BlasLibrary blasLibrary() {
  BlasLibrary b{"unknown", "", false};
  void* sgemm = dlsym(RTLD_DEFAULT, "sgemm_");
  Dl_info info{};
  if (sgemm == nullptr || dladdr(sgemm, &info) == 0 || info.dli_fname == nullptr) return b;
  std::error_code ignored;  // the loaded name is libblas.so.3, a chain of links to the real one
  const std::filesystem::path resolved = std::filesystem::canonical(info.dli_fname, ignored);
  b.path = resolved.empty() ? info.dli_fname : resolved.string();
  using ConfigFn = const char* (*)();
  if (b.path.find("openblas") != std::string::npos) {
    const auto config = reinterpret_cast<ConfigFn>(dlsym(RTLD_DEFAULT, "openblas_get_config"));
    b.name = config != nullptr ? config() : "OpenBLAS";
  } else if (b.path.find("blis") != std::string::npos) {
    b.name = "BLIS";
  } else if (b.path.find("mkl") != std::string::npos) {
    b.name = "MKL";
  } else if (b.path.find("/blas/libblas.so") != std::string::npos) {
    b.name = "reference BLAS";  // Debian's libblas3: /usr/lib/<triplet>/blas/libblas.so.3
    b.reference = true;
  }
  return b;
}

}  // namespace lddpm::core
