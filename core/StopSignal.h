#pragma once
// SIGTERM and SIGUSR2 (never SIGUSR1: NCCL may use it) set a flag that long-running commands poll
// at safe points (a training step boundary). Ranks then agree through the engine, checkpoint and
// exit with kExitResume. A second signal of the same kind while stopping is ignored: the
// scheduler's grace period is for the checkpoint.
namespace lddpm::core {

class StopSignal {
 public:
  static void install();      // idempotent
  static bool requested();    // async-signal-safe flag read
  static int signalNumber();  // the signal that set it (0 if none)
  static void reset();        // tests
  static void raiseForTest(int signalNumber);
};

}  // namespace lddpm::core
