#pragma once
// Command line + INI configuration on Boost.Program_options. Every component describes its own
// options (one `po::options_description` per options struct); a command combines them, parses
// the command line first and then `--config FILE` (so the command line wins), and writes the
// resolved configuration into its output directory as an INI file that `--config` reads back.
#include <boost/program_options.hpp>
#include <string>
#include <vector>

namespace lddpm::core {

namespace po = boost::program_options;

struct ParsedOptions {
  po::variables_map values;
  bool helpRequested = false;
  std::string configFile;  // empty when no --config was given
};

// `--help` and `--config FILE`, which parseOptions adds to every command.
po::options_description metaOptions();

// `desc` as `--help` prints it, with defaults as a person types them: the shortest decimal that
// reads back as the same double ("(=0.33)", not Boost's "(=0.33000000000000002)") and booleans
// named BOOL as false/true. The description column stays where Boost put it.
std::string helpText(const po::options_description& desc);

// Parses `args` (everything after the subcommand name) against `desc`, to which `--help` and
// `--config` are added. Unknown options, bad values, missing required options and unreadable or
// malformed config files throw UsageError with a one-line message naming the option (and file).
// Required options are not enforced when --help is given.
ParsedOptions parseOptions(const std::string& command, const std::vector<std::string>& args,
                           const po::options_description& desc,
                           const po::positional_options_description& positional = {});

// INI text with every option of `desc` that has a value (explicit or default), one `key = value`
// line per value, doubles written with enough digits to round-trip exactly. `help` and `config`
// are left out. Parsing the text back with --config yields the same values.
std::string renderConfig(const po::variables_map& values, const po::options_description& desc,
                         const std::string& header);

// renderConfig written atomically to `path`.
void writeResolvedConfig(const std::string& path, const po::variables_map& values,
                         const po::options_description& desc, const std::string& command);

// The value of one option as INI text, or empty when it has none. Throws Error for a value type
// this module does not know how to print (add it to the list in Options.cpp).
std::vector<std::string> renderValue(const po::variable_value& value, const std::string& name);

}  // namespace lddpm::core
