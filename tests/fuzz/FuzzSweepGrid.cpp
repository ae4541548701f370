// Fuzzes `lddpm sweep`'s grid files (launch/sweep/SweepGrid: parseGrid, expandTasks, the task
// values) with line-aware mutations (values and names full of shell metacharacters, unknown
// sections and keys, huge lists and numbers, control characters) and byte mutations. Properties
// of an accepted grid: the task count is the product the spec announces; the sweep name — the
// one grid value that reaches a shell, as sbatch's --job-name — comes out of /bin/sh as exactly
// the bytes it was (checked by running `sh -c` on the quoted word for every name holding a
// shell metacharacter); every task value is one line, as the INI file it goes to needs.
#include <sys/wait.h>

#include <cstdio>
#include <sstream>

#include "launch/sweep/SweepGrid.h"
#include "tests/fuzz/Fuzzer.h"

namespace {
using namespace lddpm;
using fuzz::Bytes;

const char* const kNasty[] = {"$(touch /tmp/lddpm-fuzz-pwned)",
                              "`id`",
                              "a;b",
                              "a|b",
                              "a&b",
                              "'",
                              "\"",
                              "\\",
                              "$HOME",
                              "${X:-y}",
                              "*",
                              "?",
                              "~",
                              "a b",
                              "#c",
                              "\"q,r\"",
                              "1e-3, 2e-3",
                              "=",
                              "[grid]",
                              "%",
                              "!",
                              "\t",
                              "a\rb",
                              "uniform(1,2)",
                              "choice(a,b,c)",
                              "loguniform(0,1)",
                              "randint(3,1)"};
const char* const kKeys[] = {
    "name", "max_parallel", "metric", "descending", "random", "seed",          "ranks",
    "lr",   "batch",        "steps",  "store",      "model",  "lesion-weight", "config"};

void mutateLines(Bytes& text, fuzz::Rng& rng) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  const std::string nasty = kNasty[rng() % std::size(kNasty)];
  switch (rng() % 5) {
    case 0:  // a value with metacharacters
      if (!lines.empty()) {
        std::string& l = lines[rng() % lines.size()];
        const auto eq = l.find('=');
        if (eq != std::string::npos) l = l.substr(0, eq + 1) + " " + nasty;
      }
      break;
    case 1:  // a new key = value line somewhere
      lines.insert(
          lines.begin() + static_cast<std::ptrdiff_t>(lines.empty() ? 0 : rng() % lines.size()),
          std::string(kKeys[rng() % std::size(kKeys)]) + " = " + nasty);
      break;
    case 2:  // append to a value (lists grow, quotes unbalance)
      if (!lines.empty()) lines[rng() % lines.size()] += rng() % 2 ? ", " + nasty : nasty;
      break;
    case 3:  // a section header
      lines.insert(
          lines.begin() + static_cast<std::ptrdiff_t>(lines.empty() ? 0 : rng() % lines.size()),
          rng() % 2 ? "[grid]" : "[" + nasty + "]");
      break;
    default:  // drop a line
      if (!lines.empty())
        lines.erase(lines.begin() + static_cast<std::ptrdiff_t>(rng() % lines.size()));
      break;
  }
  text.clear();
  for (const auto& l : lines) text += l + "\n";
}

// What /bin/sh makes of `word` (a quoted word): the argument printf receives.
std::string throughShell(const std::string& word) {
  FILE* p = ::popen(("printf '%s' " + word).c_str(), "r");
  if (!p) throw fuzz::PropertyViolation("popen failed");
  std::string out;
  char buf[4096];
  while (const size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  ::pclose(p);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  fuzz::Target target;
  target.name = "sweep-grid";
  target.seeds = {
      "[sweep]\nname = lambda\nmax_parallel = 4\nmetric = loss\nrandom = 2\nseed = 1\nranks = 2\n"
      "[base]\nconfig = launch/configs/demo.ini\nstore = demo/store\nsteps = 300\n"
      "[grid]\nlesion-weight = 1, 4, 8\nmask-sites = \"input\", \"input,encoder,bottleneck\"\n"
      "[random]\nlr = loguniform(5e-4, 5e-3)\n",
      "[sweep]\nname = scan\n[base]\nsteps = 10\n[grid]\nlr = 1e-3, 1e-4\nbatch = 2,4,8\n",
      "[grid]\nlr = 1e-3\n[random]\nbatch = choice(2, 4)\nseed = randint(0, 9)\n[sweep]\nrandom = "
      "3\n"};
  target.mutate = mutateLines;
  target.run = [](const Bytes& input) {
    std::istringstream in(input);
    const launch::sweep::GridSpec spec = launch::sweep::parseGrid(in, "fuzz.ini");
    const auto tasks = launch::sweep::expandTasks(spec);
    if (tasks.size() != spec.taskCount()) {
      throw fuzz::PropertyViolation("expandTasks gave " + std::to_string(tasks.size()) +
                                    " tasks, taskCount() says " + std::to_string(spec.taskCount()));
    }
    for (const auto& task : tasks) {
      for (const auto& [key, value] : task.values) {
        if (value.find('\n') != std::string::npos || key.find('\n') != std::string::npos) {
          throw fuzz::PropertyViolation("a task value spans lines: '" + value + "'");
        }
      }
    }
    const std::string arg = "--job-name=" + spec.settings.name;
    if (arg.find_first_of("$`'\"\\;|&*?~ #!()<>{}[]%\t\r") != std::string::npos &&
        throughShell(launch::sweep::shellQuote(arg)) != arg) {
      throw fuzz::PropertyViolation("sh turned the quoted job name '" + arg + "' into '" +
                                    throughShell(launch::sweep::shellQuote(arg)) + "'");
    }
  };
  return fuzz::fuzzMain(argc, argv, target);
}
