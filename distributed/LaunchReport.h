#pragma once
// The launch report: once at start every rank reports host, local rank, device and threads;
// rank 0 prints one table, so a misplaced job (all ranks on one node, two ranks sharing a GPU,
// one thread per rank where 16 were booked) is visible in the first lines of the log.
#include <string>
#include <vector>

#include "distributed/World.h"

namespace lddpm::dist {

// The table, one line per rank (header first).
std::string formatRankTable(const std::vector<RankInfo>& ranks);

// Problems the table shows: two ranks on the same GPU of a host (NCCL hangs), ranks of one host
// with different thread counts. Empty when none.
std::vector<std::string> launchProblems(const std::vector<RankInfo>& ranks);

// Collective: gathers every rank's info (device e.g. "cpu", "cuda:1"); rank 0 logs the table and
// warnings. Returns the gathered table on every rank.
std::vector<RankInfo> reportLaunch(const World& world, const std::string& device);

}  // namespace lddpm::dist
