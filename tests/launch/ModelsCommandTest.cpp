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

TEST(ModelsCommand, BadOptionIsAUsageErrorNamingIt) {
  const auto [code, out] = run("--groups 5");
  EXPECT_EQ(code, 2);
  EXPECT_NE(out.find("--groups"), std::string::npos) << out;
}

}  // namespace
