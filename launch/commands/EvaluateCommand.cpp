// `lddpm evaluate <mode>`: the options of each mode, one library call, and the report (markdown or
// JSON on stdout, files with --out). The evaluations live in launch/evaluation/: `images`
// (ImageEvaluation.h: generators against real scans beside reference rows), `denoising`
// (DenoisingDiagnostic.h: one-step x̂0 per region) and `segmentation` (SegmentationEvaluation.h:
// trained seg runs on a store split). Definitions: docs/metrics.md, docs/downstream.md.
#include <filesystem>
#include <iostream>

#include "core/AtomicFile.h"
#include "core/Json.h"
#include "core/Log.h"
#include "distributed/Communicator.h"
#include "distributed/World.h"
#include "launch/Command.h"
#include "launch/evaluation/DenoisingDiagnostic.h"
#include "launch/evaluation/ImageEvaluation.h"
#include "launch/evaluation/SegmentationEvaluation.h"

namespace lddpm::launch {

namespace {

namespace fs = std::filesystem;

constexpr const char* kCommand = "evaluate";

// --json and --out, which every mode has (emitReport writes what they ask for).
void addReportOptions(po::options_description& desc, const std::string& mode, bool& json,
                      std::string& out) {
  desc.add_options()("json", po::bool_switch(&json), "print JSON instead of markdown")(
      "out", po::value(&out)->value_name("DIR"),
      ("also write " + mode + ".json, " + mode + ".md and config.ini into DIR").c_str());
}

// A mode's result: on stdout (markdown, or JSON with --json) and, with --out DIR, as
// DIR/<mode>.json, DIR/<mode>.md and DIR/config.ini (its header says how to re-run), each atomic.
int emitReport(const std::string& mode, const std::string& out, bool asJson,
               const core::ParsedOptions& parsed, const po::options_description& own,
               const core::Json& json, const std::string& markdown) {
  if (!out.empty()) {
    writeCommandConfig(out, std::string(kCommand) + " " + mode, parsed, own);
    core::writeJsonFile((fs::path(out) / (mode + ".json")).string(), json);
    core::writeFileAtomic((fs::path(out) / (mode + ".md")).string(), markdown);
    LDDPM_LOG(Info) << "wrote " << out << "/" << mode << ".json and " << mode << ".md";
  }
  std::cout << (asJson ? json.dump(2) + "\n" : markdown);
  return 0;
}

int runImages(const CommandContext& context) {
  evaluation::ImageEvaluationOptions o;
  bool json = false;
  std::string out;
  po::options_description own = o.describe();
  addReportOptions(own, "images", json, out);
  const auto parsed = parseCommand(
      context, kCommand,
      "images --real PATH|STORE --synthetic [NAME=]PATH [--synthetic ...] [--mask PATH] "
      "[--tissue PATH] [--json] [--out DIR]",
      own);
  if (!parsed) return 0;
  o.validate();
  // One process does the whole evaluation; under mpirun the other ranks have nothing to do.
  if (context.world.rank() != 0) return 0;
  const evaluation::ImageEvaluation result = evaluation::evaluateImages(o);
  return emitReport("images", out, json, *parsed, own, evaluation::toJson(o, result),
                    evaluation::toMarkdown(result));
}

int runSegmentation(const CommandContext& context) {
  evaluation::SegmentationOptions o;
  bool json = false;
  po::options_description own = o.describe();
  addReportOptions(own, "segmentation", json, o.out);
  const auto parsed = parseCommand(
      context, kCommand,
      "segmentation --run [NAME=]DIR [--run ...] --store STORE [--split test] [--json] [--out DIR]",
      own);
  if (!parsed) return 0;
  o.validate();
  auto comm = dist::makeCommunicator(dist::Backend::Auto, context.world);
  const evaluation::SegmentationEvaluation result = evaluation::evaluateSegmentation(o, *comm);
  if (context.world.rank() != 0) return 0;
  return emitReport("segmentation", o.out, json, *parsed, own, evaluation::toJson(o, result),
                    evaluation::toMarkdown(result));
}
int runDenoising(const CommandContext& context) {
  evaluation::DenoisingOptions o;
  bool json = false;
  std::string out;
  po::options_description own = o.describe();
  addReportOptions(own, "denoising", json, out);
  const auto parsed = parseCommand(
      context, kCommand,
      "denoising --run DIR --store STORE [--split test] [--timesteps LIST] [--json] [--out DIR]",
      own);
  if (!parsed) return 0;
  o.validate();
  if (context.world.rank() != 0) return 0;
  const evaluation::DenoisingReport report = evaluation::diagnoseDenoising(o);
  return emitReport("denoising", out, json, *parsed, own, evaluation::toJson(report),
                    evaluation::toMarkdown(report));
}

}  // namespace

int runEvaluate(const CommandContext& context) {
  static const std::vector<ModeSpec> modes = {
      {"images",
       "image metrics of generators vs real scans (whole-grid, brain, background, lesion; "
       "contrasts, texture) beside constant, class-mean and twin references",
       &runImages},
      {"denoising",
       "one-step x̂0 of a trained diffusion model from noised real scans at several t, per region "
       "(what to run when samples look wrong)",
       &runDenoising},
      {"segmentation",
       "Dice, lesion volumes and lesion-wise detection of trained seg runs on a store split",
       &runSegmentation},
  };
  return runMode(context, "evaluate", modes);
}

}  // namespace lddpm::launch
