// Option parsing: precedence (command line > --config > default), the usage errors that must
// name the option, and the resolved configuration round-tripping through --config.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/Error.h"
#include "core/Options.h"
#include "tests/common/TempDir.h"

namespace {
using namespace lddpm::core;
namespace fs = std::filesystem;

struct Fixture : ::testing::Test {
  lddpm::testing::TempDir tmp{"options"};
  const fs::path dir = tmp.path;
  int batch = 0;
  double lr = 0;
  std::string store;
  bool flag = false;
  po::options_description desc{"test"};

  void SetUp() override {
    desc.add_options()("batch", po::value(&batch)->default_value(4), "batch")(
        "lr", po::value(&lr)->default_value(1e-4), "learning rate")(
        "store", po::value(&store)->required(), "store")("flag", po::bool_switch(&flag), "a flag");
  }
  std::string writeIni(const std::string& text) {
    const fs::path p = dir / "c.ini";
    std::ofstream(p) << text;
    return p.string();
  }
  std::string usageMessage(const std::vector<std::string>& args) {
    try {
      parseOptions("train", args, desc);
    } catch (const UsageError& e) {
      return e.what();
    }
    return "<no UsageError>";
  }
};

TEST_F(Fixture, DefaultsApplyWhenNothingGiven) {
  parseOptions("train", {"--store", "s"}, desc);
  EXPECT_EQ(batch, 4);
  EXPECT_DOUBLE_EQ(lr, 1e-4);
  EXPECT_FALSE(flag);
}

TEST_F(Fixture, ConfigFileOverridesDefaults) {
  const auto ini = writeIni("batch = 16\nlr = 0.5\nstore = from-file\nflag = true\n");
  parseOptions("train", {"--config", ini}, desc);
  EXPECT_EQ(batch, 16);
  EXPECT_DOUBLE_EQ(lr, 0.5);
  EXPECT_EQ(store, "from-file");
  EXPECT_TRUE(flag);
}

TEST_F(Fixture, CommandLineOverridesConfigFile) {
  const auto ini = writeIni("batch = 16\nstore = from-file\n");
  parseOptions("train", {"--batch", "2", "--config", ini}, desc);
  EXPECT_EQ(batch, 2);
  EXPECT_EQ(store, "from-file");  // not on the command line: the file's value stands
}

TEST_F(Fixture, UnknownOptionNamesIt) {
  EXPECT_NE(usageMessage({"--store", "s", "--bogus", "1"}).find("--bogus"), std::string::npos);
}

TEST_F(Fixture, BadValueNamesOption) {
  const std::string m = usageMessage({"--store", "s", "--batch", "many"});
  EXPECT_NE(m.find("--batch"), std::string::npos) << m;
  EXPECT_NE(m.find("many"), std::string::npos) << m;
}

TEST_F(Fixture, MissingRequiredNamesOption) {
  EXPECT_NE(usageMessage({}).find("--store"), std::string::npos);
}

TEST_F(Fixture, UnknownKeyInConfigNamesFileAndKey) {
  const auto ini = writeIni("store = s\nbogus_key = 3\n");
  const std::string m = usageMessage({"--config", ini});
  EXPECT_NE(m.find("bogus_key"), std::string::npos) << m;
  EXPECT_NE(m.find(ini), std::string::npos) << m;
}

TEST_F(Fixture, UnreadableConfigNamesOption) {
  const std::string m = usageMessage({"--config", (dir / "absent.ini").string()});
  EXPECT_NE(m.find("--config"), std::string::npos) << m;
}

TEST_F(Fixture, HelpSkipsRequiredCheck) {
  const auto parsed = parseOptions("train", {"--help"}, desc);
  EXPECT_TRUE(parsed.helpRequested);
}

TEST_F(Fixture, ResolvedConfigRoundTripsExactly) {
  const double awkward = 0.1 + 0.2;  // needs 17 significant digits to survive text
  const auto parsed =
      parseOptions("train", {"--store", "s p", "--lr", "0.30000000000000004", "--flag"}, desc);
  ASSERT_EQ(lr, awkward);
  const fs::path out = dir / "resolved.ini";
  writeResolvedConfig(out.string(), parsed.values, desc, "train");
  batch = 0;
  lr = 0;
  store.clear();
  flag = false;
  parseOptions("train", {"--config", out.string()}, desc);
  EXPECT_EQ(batch, 4);
  EXPECT_EQ(lr, awkward);
  EXPECT_EQ(store, "s p");
  EXPECT_TRUE(flag);
}

}  // namespace

// --help shows defaults as typed: Boost prints a double with 17 significant digits and a bool as
// 0/1. Each expected line is written out by hand; the description column must not move.
TEST(HelpText, DefaultsAsTypedAndColumnKept) {
  double fraction = 0.33, small = 1e-6, whole = 2.0;
  bool zero = false, on = true;
  po::options_description d("x");
  d.add_options()("lesion-fraction", po::value(&fraction)->default_value(fraction), "share")(
      "min-lr", po::value(&small)->default_value(small), "floor")(
      "scale", po::value(&whole)->default_value(whole), "scale")(
      "zero", po::value(&zero)->default_value(zero)->value_name("BOOL"), "shard")(
      "overlap", po::value(&on)->default_value(on)->value_name("BOOL"), "overlap");
  std::ostringstream boost;
  boost << d;
  const std::string text = helpText(d);
  EXPECT_NE(boost.str().find("0.33000000000000002"), std::string::npos) << boost.str();
  // An option longer than Boost's column has its description on the next line.
  const auto shows = [&](const std::string& item) {
    const auto at = text.find(item);
    return at != std::string::npos &&
           (text[at + item.size()] == ' ' || text[at + item.size()] == '\n');
  };
  EXPECT_TRUE(shows("--lesion-fraction arg (=0.33)")) << text;
  EXPECT_TRUE(shows("--min-lr arg (=1e-06)")) << text;
  EXPECT_TRUE(shows("--scale arg (=2)")) << text;
  EXPECT_TRUE(shows("--zero BOOL (=false)")) << text;
  EXPECT_TRUE(shows("--overlap BOOL (=true)")) << text;
  EXPECT_EQ(text.find("0000"), std::string::npos) << text;
  // Every description starts in the column Boost chose.
  std::istringstream a(boost.str()), b(text);
  std::string la, lb;
  while (std::getline(a, la) && std::getline(b, lb)) {
    for (const char* word : {"share", "floor", "scale", "shard", "overlap"}) {
      const auto pa = la.rfind(word), pb = lb.rfind(word);
      if (pa != std::string::npos && pa > 20) {
        EXPECT_EQ(pa, pb) << la << "\n" << lb;
      }
    }
  }
}
