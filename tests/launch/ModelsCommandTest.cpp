// `lddpm models`: the registry with parameter counts, model options that change them, and a usage
// error naming the option. The default lesion-ddpm count comes from an independent implementation
// of the same architecture in Python (tests/bench/models/unet_reference.py: 5,834,001 parameters).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

#include "core/Json.h"
#include "tests/common/Shell.h"

namespace {

std::pair<int, std::string> run(const std::string& args) {
  const auto r = lddpm::testutil::runShell(std::string(LDDPM_BINARY) + " models " + args + " 2>&1");
  return {r.code, r.out};
}

TEST(ModelsCommand, ListsEveryModelWithItsParameterCount) {
  const auto [code, out] = run("--json");
  ASSERT_EQ(code, 0) << out;
  const auto table = lddpm::core::Json::parse(out);
  ASSERT_EQ(table.size(), 4u);
  EXPECT_EQ(table[0]["name"], "lesion-ddpm");
  EXPECT_EQ(table[0]["parameters"].get<std::int64_t>(), 5834001);  // unet_reference.py
  EXPECT_EQ(table[0]["size_divisor"].get<std::int64_t>(), 8);
  const auto& pix2pix = table[2];
  EXPECT_EQ(pix2pix["name"], "pix2pix");
  EXPECT_EQ(pix2pix["groups"]["generator"].get<std::int64_t>() +
                pix2pix["groups"]["discriminator"].get<std::int64_t>(),
            pix2pix["parameters"].get<std::int64_t>());
}

TEST(ModelsCommand, OptionsChangeTheCounts) {
  const auto [code, out] = run("--json --base-channels 8 --channel-mult 1,2 --attention-levels ''");
  ASSERT_EQ(code, 0) << out;
  EXPECT_LT(lddpm::core::Json::parse(out)[0]["parameters"].get<std::int64_t>(), 5834001);
}

TEST(ModelsCommand, AnExplicitModelIsCountedAlone) {
  // --groups 5 suits cond-ddpm at base 10, but not pix2pix's default --disc-channels 16: the full
  // list refuses these options, the one model is counted as in a list that accepts them.
  const std::string widths = "--json --base-channels 10 --groups 5 --attention-heads 5";
  const auto [code, out] = run(widths + " --model cond-ddpm");
  ASSERT_EQ(code, 0) << out;
  const auto one = lddpm::core::Json::parse(out);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0]["name"], "cond-ddpm");
  EXPECT_EQ(run(widths).first, 2);
  const auto [allCode, allOut] = run(widths + " --disc-channels 10");
  ASSERT_EQ(allCode, 0) << allOut;
  const auto all = lddpm::core::Json::parse(allOut);
  ASSERT_EQ(all.size(), 4u);
  EXPECT_EQ(all[1]["name"], "cond-ddpm");
  EXPECT_EQ(one[0]["parameters"], all[1]["parameters"]);
}

TEST(ModelsCommand, BadOptionIsAUsageErrorNamingIt) {
  const auto [code, out] = run("--groups 5");
  EXPECT_EQ(code, 2);
  EXPECT_NE(out.find("--groups"), std::string::npos) << out;
}

}  // namespace
