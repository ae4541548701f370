#include "core/StopSignal.h"

#include <csignal>

namespace lddpm::core {
namespace {
volatile std::sig_atomic_t gSignal = 0;
extern "C" void onStopSignal(int sig) { gSignal = sig; }
}  // namespace

void StopSignal::install() {
  struct sigaction action {};
  action.sa_handler = onStopSignal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGUSR2, &action, nullptr);
}

bool StopSignal::requested() { return gSignal != 0; }
int StopSignal::signalNumber() { return static_cast<int>(gSignal); }
void StopSignal::reset() { gSignal = 0; }
void StopSignal::raiseForTest(int signalNumber) { std::raise(signalNumber); }

}  // namespace lddpm::core
