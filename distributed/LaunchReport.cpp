#include "distributed/LaunchReport.h"

#include <iomanip>
#include <map>
#include <set>
#include <sstream>

#include "core/Log.h"

namespace lddpm::dist {

std::string formatRankTable(const std::vector<RankInfo>& ranks) {
  size_t hostWidth = 4;
  for (const auto& r : ranks) hostWidth = std::max(hostWidth, r.host.size());
  std::ostringstream out;
  out << std::left << std::setw(6) << "rank" << std::setw(static_cast<int>(hostWidth + 2)) << "host"
      << std::setw(12) << "local rank" << std::setw(10) << "device"
      << "threads\n";
  for (const auto& r : ranks) {
    out << std::setw(6) << r.rank << std::setw(static_cast<int>(hostWidth + 2)) << r.host
        << std::setw(12) << r.localRank << std::setw(10) << r.device << r.threads << "\n";
  }
  return out.str();
}

std::vector<std::string> launchProblems(const std::vector<RankInfo>& ranks) {
  std::vector<std::string> problems;
  std::map<std::pair<std::string, std::string>, std::vector<int>> byGpu;
  std::map<std::string, std::set<int>> threadsByHost;
  for (const auto& r : ranks) {
    if (r.device.rfind("cuda", 0) == 0) byGpu[{r.host, r.device}].push_back(r.rank);
    threadsByHost[r.host].insert(r.threads);
  }
  for (const auto& [where, who] : byGpu) {
    if (who.size() < 2) continue;
    std::ostringstream ids;
    for (size_t i = 0; i < who.size(); ++i) ids << (i ? ", " : "") << who[i];
    problems.push_back("ranks " + ids.str() + " share " + where.second + " on " + where.first +
                       ": NCCL hangs with two ranks on one GPU; start one rank per GPU");
  }
  for (const auto& [host, counts] : threadsByHost) {
    if (counts.size() > 1) {
      problems.push_back("ranks on " + host +
                         " use different thread counts; set --threads or "
                         "SLURM_CPUS_PER_TASK so that every rank gets the same share");
    }
  }
  return problems;
}

std::vector<RankInfo> reportLaunch(const World& world, const std::string& device) {
  const auto ranks = world.allgatherRankInfo(
      RankInfo{world.rank(), world.localRank(), world.threads(), world.host(), device});
  LDDPM_LOG(Info) << "launch: " << world.size() << " rank(s)\n" << formatRankTable(ranks);
  for (const auto& p : launchProblems(ranks)) LDDPM_LOG(Warn) << "launch: " << p;
  return ranks;
}

}  // namespace lddpm::dist
