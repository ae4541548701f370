#pragma once
// MPI error checking for distributed/ only (mpi.h never leaves this folder). Our communicators set
// MPI_ERRORS_RETURN, so every failing call reaches LDDPM_MPI_CHECK, which throws dist::MpiError
// naming the call, file:line, host, rank and MPI's own error string.
#include <mpi.h>

#include <string>

#include "core/Error.h"

namespace lddpm::dist {

class MpiError : public core::Error {
 public:
  using core::Error::Error;
};

namespace detail {
[[noreturn]] void throwMpiError(int code, const char* expr, const char* file, int line);
}  // namespace detail

}  // namespace lddpm::dist

#define LDDPM_MPI_CHECK(expr)                                                         \
  do {                                                                                \
    const int lddpm_mpi_rc_ = (expr);                                                 \
    if (lddpm_mpi_rc_ != MPI_SUCCESS)                                                 \
      ::lddpm::dist::detail::throwMpiError(lddpm_mpi_rc_, #expr, __FILE__, __LINE__); \
  } while (0)
