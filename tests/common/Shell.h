#pragma once
// Running commands from tests: the lddpm binary, mpiexec, Python references. One helper instead of
// a popen loop in every test file.
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace lddpm::testutil {

struct ShellResult {
  int code = -1;    // exit status, -1 when killed by a signal
  std::string out;  // standard output (append " 2>&1" to the command for stderr too)
};

// Runs `command` through /bin/sh and captures its standard output.
inline ShellResult runShell(const std::string& command) {
  ShellResult r;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return r;
  std::array<char, 4096> buf{};
  while (size_t n = std::fread(buf.data(), 1, buf.size(), pipe)) r.out.append(buf.data(), n);
  const int status = ::pclose(pipe);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 <mpiexec> -n N --oversubscribe "
inline std::string mpiexecPrefix(const std::string& mpiexec, int ranks) {
  return "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 " + mpiexec + " -n " +
         std::to_string(ranks) + " --oversubscribe ";
}

}  // namespace lddpm::testutil
