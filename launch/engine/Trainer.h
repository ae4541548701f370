#pragma once
// The training engine: one loop for every registered model, plain or data-parallel. Each step
// draws the global batch's slice of this rank from a BatchSource, runs forward/backward per
// parameter group (micro-batches accumulate locally; the reducer or the sharded optimiser
// averages over ranks), skips steps whose loss or gradient is not finite, steps AdamW (replicated
// or ZeRO-1) at the scheduled learning rate, updates the EMA, logs, and checkpoints — periodically,
// at the end, and when any rank got SIGTERM/SIGUSR2 (then it throws core::ResumeRequested).
// Everything random is derived from (seed, global sample index), so a resumed run is bit-identical
// to an uninterrupted one and N ranks match 1 rank up to summation order.
#include <memory>
#include <string>
#include <vector>

#include "core/Json.h"
#include "core/MetricsLog.h"
#include "distributed/Communicator.h"
#include "launch/engine/BatchSource.h"
#include "launch/engine/Ema.h"
#include "launch/engine/GroupOptimizer.h"
#include "launch/engine/LrSchedule.h"
#include "launch/engine/RunLayout.h"
#include "launch/engine/TrainConfig.h"
#include "models/Registry.h"

namespace lddpm::launch {

struct TrainResult {
  std::int64_t finalStep = 0;  // steps completed
  std::int64_t skippedSteps = 0;
  double lastLoss = 0.0;
};

class Trainer {
 public:
  // Collective: every rank constructs it with the same configuration. `resolvedConfig` is the
  // INI text stored in each checkpoint. `device` is where this rank trains (launch/ resolves
  // `--device cuda` to cuda:<local rank>); it must agree with config.device.
  Trainer(TrainConfig config, models::ModelConfig modelConfig, BatchSource& source,
          dist::Communicator& comm, std::string resolvedConfig, torch::Device device = torch::kCPU);
  ~Trainer();

  TrainResult run();

  models::ModelImpl& model() { return *model_; }
  const Ema& ema() const { return *ema_; }
  std::int64_t step() const { return step_; }
  std::string checkpointDir() const;

 private:
  void buildOptimisers();
  void resumeIfAsked();
  void takeClassIntensities();
  std::string verifiedResumeFolder();
  void saveCheckpoint();
  void loadCheckpoint(const std::string& dir);
  void writeStatus(const std::string& state) const;
  // What one parameter group's part of a step did, averaged over ranks and micro-batches.
  struct GroupStep {
    double loss = 0;                                    // the total backward ran on
    std::vector<std::pair<std::string, double>> parts;  // the model's named loss terms
    double gradNorm = 0;
    bool skipped = false;        // a rank saw a non-finite loss or gradient: no update
    bool stopRequested = false;  // a rank got SIGTERM/SIGUSR2
    double dataWait = 0;         // seconds this rank waited for batches
  };
  GroupStep trainGroup(GroupOptimizer& group, std::size_t groupIndex, double lr, bool stopLocal);
  // What one optimiser step did over every group: the metrics row (losses, parts, per-group grad
  // norms), and whether a rank asked to stop.
  struct StepOutcome {
    core::Json row;
    double loss = 0;      // the last group's
    double gradNorm = 0;  // the last group's
    double dataWait = 0;
    bool stop = false;
  };
  // One optimiser step: every group in order, then the non-finite bookkeeping (skip, or stop the
  // run after --max-nonfinite in a row), the EMA update and, when due, the desync check.
  StepOutcome trainStep(double lr);
  // Rank 0: one metrics.jsonl row when due (--log-every, and the last step).
  void logStep(core::MetricsLog& metrics, StepOutcome& outcome, double lr, double seconds);
  // Only while >1 group: a group's backward must not leave gradients on the other groups
  // (nullptr: every group trainable again).
  void enableOnly(const GroupOptimizer* active);

  TrainConfig config_;
  models::ModelConfig modelConfig_;
  BatchSource& source_;
  dist::Communicator& comm_;
  std::string resolvedConfig_;
  torch::Device device_;
  RunLayout layout_;
  std::shared_ptr<models::ModelImpl> model_;
  std::vector<std::unique_ptr<GroupOptimizer>> groups_;  // one per parameter group, in step order
  std::unique_ptr<Ema> ema_;
  LrSchedule schedule_;
  std::int64_t step_ = 0;
  std::int64_t skipped_ = 0;
  int consecutiveNonfinite_ = 0;
};

}  // namespace lddpm::launch
