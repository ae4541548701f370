#include "core/Options.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <regex>
#include <sstream>

#include "core/AtomicFile.h"
#include "core/Error.h"

namespace lddpm::core {
namespace {

std::string describe(const po::error& e) {
  // Boost's messages already name the option ("unrecognised option '--foo'", "the argument
  // ('x') for option '--batch' is invalid", "the option '--store' is required but missing").
  return e.what();
}

template <typename T>
bool tryRender(const boost::any& any, std::vector<std::string>& out) {
  if (const T* v = boost::any_cast<T>(&any)) {
    std::ostringstream s;
    if constexpr (std::is_floating_point_v<T>) s.precision(std::numeric_limits<T>::max_digits10);
    if constexpr (std::is_same_v<T, bool>) {
      s << (*v ? "true" : "false");
    } else {
      s << *v;
    }
    out.push_back(s.str());
    return true;
  }
  if (const auto* vs = boost::any_cast<std::vector<T>>(&any)) {
    for (const T& v : *vs) {
      std::ostringstream s;
      if constexpr (std::is_floating_point_v<T>) s.precision(std::numeric_limits<T>::max_digits10);
      s << v;
      out.push_back(s.str());
    }
    return true;
  }
  return false;
}

}  // namespace

std::vector<std::string> renderValue(const po::variable_value& value, const std::string& name) {
  std::vector<std::string> out;
  if (value.empty()) return out;
  const boost::any& any = value.value();
  if (tryRender<std::string>(any, out) || tryRender<int>(any, out) ||
      tryRender<unsigned>(any, out) || tryRender<long>(any, out) ||
      tryRender<unsigned long>(any, out) || tryRender<long long>(any, out) ||
      tryRender<unsigned long long>(any, out) || tryRender<double>(any, out) ||
      tryRender<float>(any, out) || tryRender<bool>(any, out)) {
    return out;
  }
  LDDPM_THROW(Error, "option '", name, "' has a value type that renderValue cannot print");
}

namespace {
// The shortest %.*g form of `text`'s value that parses back to the same double.
std::string shortestDecimal(const std::string& text) {
  const double value = std::strtod(text.c_str(), nullptr);
  for (int digits = 1; digits <= 17; ++digits) {
    char buffer[40];
    std::snprintf(buffer, sizeof buffer, "%.*g", digits, value);
    if (std::strtod(buffer, nullptr) == value) return buffer;
  }
  return text;
}

// Replaces text[at, at + length) by `with`, taking the length difference out of (or adding it
// to) the run of spaces that follows, so that the description column does not move.
void replaceKeepingColumn(std::string& text, std::size_t at, std::size_t length,
                          const std::string& with) {
  std::size_t spaces = 0;
  while (at + length + spaces < text.size() && text[at + length + spaces] == ' ') ++spaces;
  const auto old = static_cast<std::ptrdiff_t>(length),
             now = static_cast<std::ptrdiff_t>(with.size());
  std::ptrdiff_t keep = static_cast<std::ptrdiff_t>(spaces) + old - now;
  if (spaces == 0) keep = 0;  // end of line: nothing to align
  if (spaces > 0 && keep < 1) keep = 1;
  text.replace(at, length + spaces, with + std::string(static_cast<std::size_t>(keep), ' '));
}
}  // namespace

std::string helpText(const po::options_description& desc) {
  std::ostringstream out;
  out << desc;
  std::string text = out.str();
  static const std::regex number(
      R"(\(=(-?[0-9]+\.[0-9]*(?:e[-+]?[0-9]+)?|-?[0-9]+e[-+]?[0-9]+)\))");
  static const std::regex boolean(R"(BOOL \(=([01])\))");
  for (const auto* pattern : {&boolean, &number}) {
    std::smatch m;
    for (std::size_t from = 0; std::regex_search(text.cbegin() + static_cast<std::ptrdiff_t>(from),
                                                 text.cend(), m, *pattern);) {
      const std::size_t at = from + static_cast<std::size_t>(m.position(0));
      const std::string with = pattern == &boolean
                                   ? std::string("BOOL (=") + (m[1] == "1" ? "true" : "false") + ")"
                                   : "(=" + shortestDecimal(m[1]) + ")";
      replaceKeepingColumn(text, at, static_cast<std::size_t>(m.length(0)), with);
      from = at + with.size();
    }
  }
  return text;
}

po::options_description metaOptions() {
  po::options_description meta("Meta");
  meta.add_options()("help,h", "show this help and exit")(
      "config", po::value<std::string>()->value_name("FILE"),
      "read options from an INI file (`key = value` lines); the command line wins");
  return meta;
}

ParsedOptions parseOptions(const std::string& command, const std::vector<std::string>& args,
                           const po::options_description& desc,
                           const po::positional_options_description& positional) {
  po::options_description all;
  all.add(desc);
  all.add(metaOptions());

  ParsedOptions parsed;
  try {
    po::store(po::command_line_parser(args).options(all).positional(positional).run(),
              parsed.values);
  } catch (const po::error& e) {
    LDDPM_THROW(UsageError, "lddpm ", command, ": ", describe(e));
  }
  parsed.helpRequested = parsed.values.count("help") > 0;
  if (parsed.values.count("config")) {
    parsed.configFile = parsed.values["config"].as<std::string>();
    std::ifstream in(parsed.configFile);
    if (!in) {
      LDDPM_THROW(UsageError, "lddpm ", command, ": option '--config': cannot read '",
                  parsed.configFile, "'");
    }
    try {
      po::store(po::parse_config_file(in, all, /*allow_unregistered=*/false), parsed.values);
    } catch (const po::error& e) {
      LDDPM_THROW(UsageError, "lddpm ", command, ": ", parsed.configFile, ": ", describe(e));
    }
  }
  if (parsed.helpRequested) return parsed;
  try {
    po::notify(parsed.values);
  } catch (const po::error& e) {
    LDDPM_THROW(UsageError, "lddpm ", command, ": ", describe(e));
  }
  return parsed;
}

std::string renderConfig(const po::variables_map& values, const po::options_description& desc,
                         const std::string& header) {
  std::ostringstream out;
  if (!header.empty()) {
    std::istringstream lines(header);
    for (std::string line; std::getline(lines, line);) out << "# " << line << "\n";
  }
  for (const auto& option : desc.options()) {
    const std::string& name = option->long_name();
    if (name.empty() || name == "help" || name == "config") continue;
    auto it = values.find(name);
    if (it == values.end()) continue;
    for (const std::string& v : renderValue(it->second, name)) out << name << " = " << v << "\n";
  }
  return out.str();
}

void writeResolvedConfig(const std::string& path, const po::variables_map& values,
                         const po::options_description& desc, const std::string& command) {
  const std::string header = strCat("lddpm ", command, " ", LDDPM_VERSION,
                                    ": resolved configuration (command line > --config > "
                                    "defaults).\nRe-run with: lddpm ",
                                    command, " --config ", path);
  writeFileAtomic(path, renderConfig(values, desc, header));
}

}  // namespace lddpm::core
