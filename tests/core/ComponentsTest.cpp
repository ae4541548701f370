// core::connectedComponents: hand-placed voxels with known neighbourhoods, and scipy.ndimage.label
// (Debian's python3) as the independent reference on random masks.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "core/Components.h"
#include "tests/common/Shell.h"
#include "tests/common/TempDir.h"

TEST(ConnectedComponents, FaceEdgeAndCornerNeighboursJoin) {
  torch::Tensor m = torch::zeros({5, 5, 5}, torch::kUInt8);
  m[0][0][0] = 1;
  m[1][1][1] = 1;  // corner neighbour of (0, 0, 0)
  m[1][1][2] = 1;  // face neighbour
  m[3][3][4] = 1;  // two voxels away from (1, 1, 2): its own component
  m[4][4][0] = 1;
  const auto [labels, n] = lddpm::core::connectedComponents(m);
  EXPECT_EQ(n, 3);
  EXPECT_EQ(labels[0][0][0].item<int>(), 1);  // raster order of first voxels
  EXPECT_EQ(labels[1][1][2].item<int>(), 1);
  EXPECT_EQ(labels[3][3][4].item<int>(), 2);
  EXPECT_EQ(labels[4][4][0].item<int>(), 3);
  EXPECT_EQ(labels[2][2][2].item<int>(), 0);
}

// scipy.ndimage.label with a full 3×3×3 structure on random masks: same count, and the two
// labellings induce the same partition (a bijection between labels).
TEST(ConnectedComponents, MatchScipyLabelOnRandomMasks) {
  namespace fs = std::filesystem;
  const lddpm::testing::TempDir tmp{"cc"};
  const fs::path dir = tmp.path;
  for (double p : {0.1, 0.25, 0.4}) {
    torch::manual_seed(static_cast<std::uint64_t>(p * 100));
    const torch::Tensor mask = (torch::rand({13, 11, 17}) < p).to(torch::kUInt8).contiguous();
    const auto [labels, n] = lddpm::core::connectedComponents(mask);
    std::ofstream((dir / "m.u8").string(), std::ios::binary)
        .write(reinterpret_cast<const char*>(mask.data_ptr<std::uint8_t>()), mask.numel());
    std::ofstream((dir / "l.i32").string(), std::ios::binary)
        .write(reinterpret_cast<const char*>(labels.data_ptr<std::int32_t>()), labels.numel() * 4);
    std::ostringstream cmd;
    cmd << LDDPM_PYTHON << " -c \"import numpy as np, scipy.ndimage as nd; "
        << "m = np.fromfile('" << (dir / "m.u8").string() << "', np.uint8).reshape(13, 11, 17); "
        << "l = np.fromfile('" << (dir / "l.i32").string() << "', np.int32).reshape(13, 11, 17); "
        << "r, n = nd.label(m, structure=np.ones((3, 3, 3))); "
        << "pairs = set(zip(l[m > 0].tolist(), r[m > 0].tolist())); "
        << "assert ((l > 0) == (m > 0)).all(); "
        << "print(n, len(pairs), len({a for a, b in pairs}), len({b for a, b in pairs}))\"";
    const auto result = lddpm::testutil::runShell(cmd.str() + " 2>&1");
    ASSERT_EQ(result.code, 0) << cmd.str() << "\n" << result.out;
    std::istringstream in(result.out);
    std::int64_t scipyCount = 0, pairs = 0, ours = 0, theirs = 0;
    in >> scipyCount >> pairs >> ours >> theirs;
    EXPECT_EQ(n, scipyCount) << "p = " << p;
    EXPECT_EQ(pairs, n);
    EXPECT_EQ(ours, n);
    EXPECT_EQ(theirs, n);
  }
}
