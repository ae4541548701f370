// Fuzzes INI configuration files as `lddpm train --config FILE` reads them (core::parseOptions
// over the engine's options, launch/engine/TrainConfig, then TrainConfig::validate): mutated
// lines (unknown keys, repeated keys, huge, negative, NaN and non-numeric values, booleans
// spelled every way, sections, comments, control characters) and bytes. Every rejection is a
// one-line message; an accepted file must round-trip: the resolved configuration that lddpm
// writes into a run folder (core::renderConfig), read back with --config, gives the same text,
// which is what makes `lddpm train --config RUN/config.ini` reproduce a run.
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/Options.h"
#include "launch/engine/TrainConfig.h"
#include "tests/common/TempDir.h"
#include "tests/fuzz/Fuzzer.h"

namespace {
using namespace lddpm;
using fuzz::Bytes;
namespace fs = std::filesystem;

const char* const kValues[] = {"0",
                               "-1",
                               "1e309",
                               "nan",
                               "inf",
                               "-inf",
                               "1e-320",
                               "0x10",
                               "9223372036854775808",
                               "18446744073709551616",
                               "2147483648",
                               "true",
                               "false",
                               "yes",
                               "off",
                               "1.5",
                               "",
                               " ",
                               "abc",
                               "#x",
                               "a # b",
                               "\"q\"",
                               "lddpm",
                               "..",
                               "/tmp/x y",
                               "auto",
                               "never",
                               "cuda",
                               "mpi",
                               "1,2,3"};
const char* const kKeys[] = {"store",
                             "run",
                             "split",
                             "patch",
                             "lesion-fraction",
                             "flips",
                             "prefetch",
                             "steps",
                             "batch",
                             "accumulate",
                             "seed",
                             "lr",
                             "min-lr",
                             "warmup",
                             "weight-decay",
                             "grad-clip",
                             "ema-decay",
                             "max-nonfinite",
                             "device",
                             "bf16",
                             "checkpoint-every",
                             "keep-checkpoints",
                             "resume",
                             "log-every",
                             "comm-backend",
                             "comm-timeout",
                             "zero",
                             "config",
                             "help",
                             "unknown-key"};

void mutateLines(Bytes& text, fuzz::Rng& rng) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  const std::string value = kValues[rng() % std::size(kValues)];
  const std::string key = kKeys[rng() % std::size(kKeys)];
  const auto at = [&] {
    return lines.begin() + static_cast<std::ptrdiff_t>(lines.empty() ? 0 : rng() % lines.size());
  };
  switch (rng() % 4) {
    case 0:
      if (!lines.empty()) {
        std::string& l = lines[rng() % lines.size()];
        l = l.substr(0, l.find('=') == std::string::npos ? l.size() : l.find('=') + 1) + " " +
            value;
      }
      break;
    case 1:
      lines.insert(at(), key + " = " + value);
      break;
    case 2:
      lines.insert(at(), rng() % 2 ? "[section]" : "# comment " + value);
      break;
    default:
      if (!lines.empty()) lines.erase(at());
      break;
  }
  text.clear();
  for (const auto& l : lines) text += l + "\n";
}

}  // namespace

int main(int argc, char** argv) {
  const lddpm::testing::TempDir dir("fuzz-config");
  const std::string file = (dir / "in.ini").string();
  const std::string again = (dir / "resolved.ini").string();

  fuzz::Target target;
  target.name = "config";
  target.seeds = {
      "store = demo/store\nrun = runs/a\nsteps = 300\nbatch = 4\npatch = 32\nlr = 2e-4\n"
      "warmup = 10\nseed = 7\nflips = true\ncheckpoint-every = 50\nresume = auto\n",
      "store = s\nrun = r\nzero = true\ncomm-backend = mpi\naccumulate = 2\nbatch = 8\n"
      "ema-decay = 0.995\ngrad-clip = 0\n"};
  target.mutate = mutateLines;
  target.run = [&](const Bytes& input) {
    std::ofstream(file, std::ios::trunc | std::ios::binary) << input;
    launch::TrainConfig config;
    core::po::options_description desc = config.describe();
    const core::ParsedOptions parsed = core::parseOptions("train", {"--config", file}, desc);
    if (parsed.helpRequested) return;
    config.validate(1);
    // The resolved configuration a run folder gets, read back, must resolve to the same text.
    const std::string first = core::renderConfig(parsed.values, desc, "");
    std::ofstream(again, std::ios::trunc) << first;
    launch::TrainConfig reread;
    core::po::options_description desc2 = reread.describe();
    const core::ParsedOptions back = core::parseOptions("train", {"--config", again}, desc2);
    const std::string second = core::renderConfig(back.values, desc2, "");
    if (first != second) {
      throw fuzz::PropertyViolation("the resolved configuration does not round-trip:\n" + first +
                                    "---\n" + second);
    }
  };
  const int code = fuzz::fuzzMain(argc, argv, target);
  return code;
}
