#include "launch/sweep/SweepGrid.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>

#include "core/Error.h"
#include "core/Rng.h"

namespace lddpm::launch::sweep {

namespace {

std::string trim(const std::string& s) {
  const auto begin = s.find_first_not_of(" \t\r");
  if (begin == std::string::npos) return "";
  const auto end = s.find_last_not_of(" \t\r");
  return s.substr(begin, end - begin + 1);
}

// A line without its comment: '#' or ';' at the start, or '#' after whitespace (so values such
// as a path with '#' in the middle survive).
std::string stripComment(const std::string& line) {
  const std::string t = trim(line);
  if (t.empty() || t[0] == '#' || t[0] == ';') return "";
  for (std::size_t i = 1; i < t.size(); ++i) {
    if (t[i] == '#' && (t[i - 1] == ' ' || t[i - 1] == '\t')) return trim(t.substr(0, i));
  }
  return t;
}

// Where a problem is: "grid.ini:7".
struct Where {
  const std::string& file;
  int line;
};

template <typename... Args>
[[noreturn]] void fail(const Where& at, Args&&... args) {
  LDDPM_THROW(core::UsageError, at.file, ":", at.line, ": ", std::forward<Args>(args)...);
}

// "a, \"1,2\", b" -> {a, 1,2, b}. Empty items and unterminated quotes are errors.
std::vector<std::string> splitList(const std::string& text, const Where& at) {
  std::vector<std::string> items;
  std::string item;
  bool quoted = false;  // inside "..."
  bool closed = false;  // this item was a quoted string, now closed
  const auto finish = [&] {
    if (!closed && trim(item).empty()) fail(at, "empty value in the list '", text, "'");
    items.push_back(closed ? item : trim(item));
    item.clear();
    closed = false;
  };
  for (char c : text) {
    if (quoted) {
      if (c == '"') {
        quoted = false;
        closed = true;
      } else {
        item += c;
      }
    } else if (c == '"') {
      if (closed || !trim(item).empty()) fail(at, "a quote inside a value in '", text, "'");
      quoted = true;
      item.clear();
    } else if (c == ',') {
      finish();
    } else if (!closed) {
      item += c;
    } else if (c != ' ' && c != '\t') {
      fail(at, "text after a closing quote in '", text, "'");
    }
  }
  if (quoted) fail(at, "unterminated quote in '", text, "'");
  finish();
  return items;
}

double parseNumber(const std::string& text, const Where& at, const std::string& what) {
  try {
    std::size_t used = 0;
    const double v = std::stod(text, &used);
    if (used == text.size() && std::isfinite(v)) return v;
  } catch (const std::exception&) {
  }
  fail(at, what, ": '", text, "' is not a finite number");
}

std::int64_t parseInteger(const std::string& text, const Where& at, const std::string& what) {
  try {
    std::size_t used = 0;
    const long long v = std::stoll(text, &used);
    if (used == text.size()) return v;
  } catch (const std::exception&) {
  }
  fail(at, what, ": '", text, "' is not an integer");
}

bool parseBool(const std::string& text, const Where& at, const std::string& what) {
  if (text == "true" || text == "1" || text == "yes") return true;
  if (text == "false" || text == "0" || text == "no") return false;
  fail(at, what, ": '", text, "' is not true or false");
}

void setSetting(SweepSettings& s, const std::string& key, const std::string& value,
                const Where& at) {
  const std::string what = "[sweep] " + key;
  if (key == "name") {
    if (value.empty() || value.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstu"
                                                 "vwxyz0123456789._-") != std::string::npos) {
      fail(at, what, ": '", value, "' must be letters, digits, '.', '_' or '-' (a job name)");
    }
    s.name = value;
  } else if (key == "max_parallel") {
    const auto v = parseInteger(value, at, what);
    if (v < 0 || v > std::numeric_limits<int>::max())
      fail(at, what, ": must be >= 0 (0: no limit)");
    s.maxParallel = static_cast<int>(v);
  } else if (key == "metric") {
    if (value.empty()) fail(at, what, ": empty");
    s.metric = value;
  } else if (key == "descending") {
    s.descending = parseBool(value, at, what);
  } else if (key == "random") {
    const auto v = parseInteger(value, at, what);
    if (v < 1 || v > 1000000) fail(at, what, ": must be in [1, 1000000], got ", v);
    s.samples = static_cast<int>(v);
  } else if (key == "seed") {
    const auto v = parseInteger(value, at, what);
    if (v < 0) fail(at, what, ": must be >= 0");
    s.seed = static_cast<std::uint64_t>(v);
  } else if (key == "ranks") {
    const auto v = parseInteger(value, at, what);
    if (v < 1 || v > 1000000) fail(at, what, ": must be >= 1");
    s.ranks = static_cast<int>(v);
  } else {
    fail(at, "unknown [sweep] setting '", key,
         "' (known: name, max_parallel, metric, descending, random, seed, ranks)");
  }
}

RandomAxis parseRandom(const std::string& key, const std::string& text, const Where& at) {
  RandomAxis axis{key, "", {}, text, at.line};
  const auto open = text.find('(');
  if (open == std::string::npos || text.back() != ')') {
    fail(at, "[random] ", key, ": '", text,
         "' is not uniform(a,b), loguniform(a,b), randint(a,b) or choice(v1,v2,...)");
  }
  axis.kind = trim(text.substr(0, open));
  axis.args = splitList(text.substr(open + 1, text.size() - open - 2), at);
  const std::string what = "[random] " + key;
  if (axis.kind == "choice") return axis;
  if (axis.kind != "uniform" && axis.kind != "loguniform" && axis.kind != "randint") {
    fail(at, what, ": unknown distribution '", axis.kind,
         "' (uniform, loguniform, randint, choice)");
  }
  if (axis.args.size() != 2) fail(at, what, ": ", axis.kind, " takes two bounds, got '", text, "'");
  if (axis.kind == "randint") {
    if (parseInteger(axis.args[0], at, what) > parseInteger(axis.args[1], at, what)) {
      fail(at, what, ": randint(a,b) needs a <= b");
    }
    return axis;
  }
  const double a = parseNumber(axis.args[0], at, what), b = parseNumber(axis.args[1], at, what);
  if (!(a < b)) fail(at, what, ": ", axis.kind, "(a,b) needs a < b");
  if (axis.kind == "loguniform" && a <= 0) fail(at, what, ": loguniform(a,b) needs a > 0");
  return axis;
}

// FNV-1a: a stable hash of a key name (std::hash is not stable across builds).
std::uint64_t hashName(const std::string& s) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ULL;
  return h;
}

// A uniform double in [0, 1) from (seed, draw, key).
double unitDraw(std::uint64_t seed, std::int64_t draw, const std::string& key) {
  constexpr std::uint64_t kSweepSalt = 0x5357454550ULL;  // "SWEEP": not a core::RngStream
  std::uint64_t h = core::splitmix64(seed ^ core::splitmix64(kSweepSalt));
  h = core::splitmix64(h ^ core::splitmix64(static_cast<std::uint64_t>(draw)));
  h = core::splitmix64(h ^ hashName(key));
  return static_cast<double>(h >> 11) * 0x1.0p-53;
}

std::string formatReal(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

}  // namespace

core::Json GridSpec::definition() const {
  core::Json baseJson = core::Json::object();
  for (const auto& o : base) baseJson[o.key] = o.value;
  core::Json gridJson = core::Json::object();
  for (const auto& a : grid) gridJson[a.key] = a.values;
  core::Json randomJson = core::Json::object();
  for (const auto& a : random) randomJson[a.key] = a.text;
  return {{"base", baseJson},      {"grid", gridJson},
          {"random", randomJson},  {"samples", settings.samples},
          {"seed", settings.seed}, {"ranks", settings.ranks}};
}

std::size_t GridSpec::taskCount() const {
  std::size_t n = 1;
  for (const auto& a : grid) n *= a.values.size();
  return n * static_cast<std::size_t>(random.empty() ? 1 : settings.samples);
}

std::vector<std::string> GridSpec::sweptKeys() const {
  std::vector<std::string> keys;
  for (const auto& a : grid) keys.push_back(a.key);
  for (const auto& a : random) keys.push_back(a.key);
  return keys;
}

namespace {

// Values end up in INI files and (the name) on an sbatch command line: control characters (a NUL
// would cut the command short, an escape sequence would rewrite the terminal) are refused, with
// the byte named, instead of being quoted.
void refuseControlCharacters(const std::string& raw, const Where& at) {
  for (const char c : raw) {
    const auto b = static_cast<unsigned char>(c);
    if ((b < 0x20 && c != '\t' && c != '\r') || b == 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02x", b);
      fail(at, "control character ", hex, " in the line");
    }
  }
}

// What only the whole file can show: [random] keys and `random = N` come together, the task count
// stays bounded, and the sweep has a name (the file's stem by default).
void finishGrid(GridSpec& spec, const std::string& name) {
  if (!spec.random.empty() && spec.settings.samples == 0) {
    fail(Where{name, spec.random.front().line},
         "[random] keys need `random = N` in [sweep] (how many draws per grid point)");
  }
  if (spec.random.empty() && spec.settings.samples > 0) {
    LDDPM_THROW(core::UsageError, name, ": [sweep] random = ", spec.settings.samples,
                " but there is no [random] section with keys to draw");
  }
  constexpr std::size_t kMaxTasks = 100000;
  std::size_t count = spec.random.empty() ? 1 : static_cast<std::size_t>(spec.settings.samples);
  for (const auto& axis : spec.grid) {
    if (count > kMaxTasks / axis.values.size()) {
      LDDPM_THROW(core::UsageError, name, ": the grid has more than ", kMaxTasks, " tasks");
    }
    count *= axis.values.size();
  }
  if (spec.settings.name.empty()) {
    spec.settings.name = std::filesystem::path(name).stem().string();
    if (spec.settings.name.empty()) spec.settings.name = "sweep";
  }
}

}  // namespace

GridSpec parseGrid(std::istream& in, const std::string& name) {
  GridSpec spec;
  spec.path = name;
  std::string section;
  std::map<std::string, int> seen;  // key -> line, across [base], [grid], [random]
  std::set<std::string> seenSettings;
  int lineNo = 0;
  for (std::string raw; std::getline(in, raw);) {
    ++lineNo;
    const Where at{name, lineNo};
    refuseControlCharacters(raw, at);
    const std::string line = stripComment(raw);
    if (line.empty()) continue;
    if (line.front() == '[') {
      if (line.back() != ']') fail(at, "malformed section header '", line, "'");
      section = trim(line.substr(1, line.size() - 2));
      if (section != "sweep" && section != "base" && section != "grid" && section != "random") {
        fail(at, "unknown section [", section, "] (expected [sweep], [base], [grid], [random])");
      }
      continue;
    }
    const auto eq = line.find('=');
    if (eq == std::string::npos)
      fail(at, "expected 'key = value' or a [section], got '", line, "'");
    const std::string key = trim(line.substr(0, eq));
    const std::string value = trim(line.substr(eq + 1));
    if (key.empty()) fail(at, "a line with no key: '", line, "'");
    if (section.empty()) {
      fail(at, "'", key, "' comes before any section ([sweep], [base], [grid], [random])");
    }
    if (section == "sweep") {
      if (!seenSettings.insert(key).second) fail(at, "[sweep] ", key, " is set twice");
      setSetting(spec.settings, key, value, at);
      continue;
    }
    if (const auto it = seen.find(key); it != seen.end()) {
      fail(at, "option '", key, "' is already given on line ", it->second,
           " (an option is in one of [base], [grid], [random], once)");
    }
    seen[key] = lineNo;
    if (section == "base") {
      spec.base.push_back({key, value, lineNo});
    } else if (section == "grid") {
      if (value.empty()) fail(at, "[grid] ", key, " has no values");
      spec.grid.push_back({key, splitList(value, at), lineNo});
    } else {
      spec.random.push_back(parseRandom(key, value, at));
    }
  }
  finishGrid(spec, name);
  return spec;
}

GridSpec readGridFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) LDDPM_THROW(core::UsageError, "lddpm sweep: option '--grid': cannot read '", path, "'");
  return parseGrid(in, path);
}

std::string drawRandom(const RandomAxis& axis, std::uint64_t seed, std::int64_t draw) {
  const double u = unitDraw(seed, draw, axis.key);
  if (axis.kind == "choice") {
    const auto n = axis.args.size();
    return axis.args[std::min(n - 1, static_cast<std::size_t>(u * static_cast<double>(n)))];
  }
  if (axis.kind == "randint") {
    const long long a = std::stoll(axis.args[0]), b = std::stoll(axis.args[1]);
    const auto span = static_cast<double>(b - a + 1);
    return std::to_string(a + std::min(b - a, static_cast<long long>(u * span)));
  }
  const double a = std::stod(axis.args[0]), b = std::stod(axis.args[1]);
  if (axis.kind == "loguniform")
    return formatReal(std::exp(std::log(a) + u * (std::log(b) - std::log(a))));
  return formatReal(a + u * (b - a));
}

std::vector<SweepTask> expandTasks(const GridSpec& spec) {
  const std::size_t points = spec.taskCount() / (spec.random.empty() ? 1 : spec.settings.samples);
  const int draws = spec.random.empty() ? 1 : spec.settings.samples;
  std::vector<SweepTask> tasks;
  tasks.reserve(spec.taskCount());
  for (std::size_t p = 0; p < points; ++p) {
    // Mixed-radix digits of p, the last axis the least significant.
    std::vector<std::size_t> digit(spec.grid.size());
    std::size_t rest = p;
    for (std::size_t a = spec.grid.size(); a-- > 0;) {
      digit[a] = rest % spec.grid[a].values.size();
      rest /= spec.grid[a].values.size();
    }
    for (int d = 0; d < draws; ++d) {
      SweepTask task;
      task.id = static_cast<int>(tasks.size());
      for (std::size_t a = 0; a < spec.grid.size(); ++a) {
        task.values.emplace_back(spec.grid[a].key, spec.grid[a].values[digit[a]]);
      }
      for (const auto& axis : spec.random) {
        task.values.emplace_back(axis.key, drawRandom(axis, spec.settings.seed, d));
      }
      tasks.push_back(std::move(task));
    }
  }
  return tasks;
}

std::string arraySpec(const std::vector<int>& ids) {
  std::string out;
  for (std::size_t i = 0; i < ids.size();) {
    std::size_t j = i;
    while (j + 1 < ids.size() && ids[j + 1] == ids[j] + 1) ++j;
    out += (out.empty() ? "" : ",") + std::to_string(ids[i]);
    if (j > i) out += "-" + std::to_string(ids[j]);
    i = j + 1;
  }
  return out;
}

std::string shellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

}  // namespace lddpm::launch::sweep
