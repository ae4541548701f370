#include "core/Options.h"

#include <cstdint>
#include <fstream>
#include <limits>
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
