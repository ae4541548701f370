#pragma once
// Exceptions with context, and the process exit codes they map to (docs/cli.md "Exit codes").
// Messages name what the user can act on: the file, dataset, option, rank or step.
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace lddpm::core {

// Process exit codes. kExitResume is EX_TEMPFAIL from sysexits.h: "try again later", which is
// exactly what a job stopped on a signal after checkpointing asks of its scheduler.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitResume = 75;

// Concatenates anything streamable: strCat("step ", 12, ": loss ", 0.5).
template <typename... Args>
std::string strCat(Args&&... args) {
  std::ostringstream out;
  (out << ... << std::forward<Args>(args));
  return out.str();
}

// A runtime failure (exit code 1). The message is complete on its own.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Bad command line or configuration (exit code 2). The message names the option.
class UsageError : public Error {
 public:
  using Error::Error;
};

// A failure in reading or writing a file; the message starts with the path.
class IoError : public Error {
 public:
  IoError(const std::string& path, const std::string& problem)
      : Error(path + ": " + problem), path_(path) {}
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Returned by a command when it stopped on a signal after writing a checkpoint (exit code 75).
class ResumeRequested : public Error {
 public:
  using Error::Error;
};

}  // namespace lddpm::core

// Throws lddpm::core::Error (or a subclass) built from a streamable list of message parts.
#define LDDPM_THROW(ErrorType, ...) throw ErrorType(::lddpm::core::strCat(__VA_ARGS__))
#define LDDPM_CHECK(cond, ...)                                   \
  do {                                                           \
    if (!(cond)) LDDPM_THROW(::lddpm::core::Error, __VA_ARGS__); \
  } while (0)
