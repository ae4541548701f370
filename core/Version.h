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

// The BLAS library LibTorch's matrix products (attention, linear layers, its im2col convolutions)
// resolved to at run time: Debian's LibTorch links the generic libblas.so.3, which the system's
// alternatives point at OpenBLAS, BLIS or the unoptimised reference implementation.
struct BlasLibrary {
  std::string name;  // "OpenBLAS 0.3.21 ...", "BLIS", "MKL", "reference BLAS" or "unknown"
  std::string path;  // the shared object that provides sgemm_, links resolved ("" if none does)
  bool reference;    // the unoptimised reference implementation (docs/facts.md)
};
BlasLibrary blasLibrary();

}  // namespace lddpm::core
