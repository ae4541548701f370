#include "launch/sweep/SweepStatus.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <set>
#include <sstream>

#include "core/Error.h"
#include "core/Log.h"
#include "core/MetricsLog.h"
#include "launch/engine/RunLayout.h"

namespace lddpm::launch::sweep {

namespace {

namespace fs = std::filesystem;

// status.json of a task folder, or null when there is none (not started) or it is unreadable.
core::Json readStatus(const std::string& dir) {
  const std::string path = launch::RunLayout(dir).status();
  if (!fs::exists(path)) return nullptr;
  try {
    return core::readJsonFile(path);
  } catch (const core::Error& e) {
    LDDPM_LOG(Warn) << e.what() << " (task state unknown)";
    return nullptr;
  }
}

// Mean of each numeric key over the last `last` rows (keys missing from a row are averaged over
// the rows that have them); "step" is the last row's.
core::Json finalMetrics(const std::vector<core::Json>& rows, int last) {
  core::Json out = core::Json::object();
  if (rows.empty()) return out;
  const std::size_t from = rows.size() - std::min<std::size_t>(rows.size(), last);
  std::vector<std::string> keys;
  std::map<std::string, std::pair<double, int>> sums;
  for (std::size_t i = from; i < rows.size(); ++i) {
    for (const auto& [key, value] : rows[i].items()) {
      if (!value.is_number() || key == "step") continue;
      if (!sums.count(key)) keys.push_back(key);
      sums[key].first += value.get<double>();
      sums[key].second += 1;
    }
  }
  if (rows.back().contains("step")) out["step"] = rows.back()["step"];
  for (const auto& key : keys) {
    const auto [sum, n] = sums[key];
    out[key] = last == 1 ? rows.back()[key] : core::Json(sum / n);
  }
  return out;
}

std::string valueText(const core::Json& v) {
  return v.is_string() ? v.get<std::string>() : v.dump();
}

}  // namespace

int taskDirWidth(std::size_t taskCount) {
  int width = 1;
  for (std::size_t n = taskCount > 0 ? taskCount - 1 : 0; n >= 10; n /= 10) ++width;
  return std::max(3, width);
}

std::string taskDirName(int id, int width) {
  std::string s = std::to_string(id);
  return std::string(static_cast<std::size_t>(std::max(0, width - static_cast<int>(s.size()))),
                     '0') +
         s;
}

core::Json readSweepRecord(const std::string& sweepDir) {
  const fs::path path = fs::path(sweepDir) / "sweep.json";
  if (!fs::exists(path)) {
    LDDPM_THROW(core::UsageError, "lddpm sweep: '", sweepDir,
                "' is not a sweep folder (no sweep.json; create one with lddpm sweep --grid ...)");
  }
  return core::readJsonFile(path.string());
}

bool taskFinished(const std::string& dir) {
  const core::Json status = readStatus(dir);
  return status.is_object() && status.value("state", "") == "finished";
}

std::vector<TaskState> readTaskStates(const std::string& sweepDir, const core::Json& record,
                                      const std::optional<QueueStates>& queue, int last) {
  std::set<int> submitted;
  for (const auto& s : record.value("submissions", core::Json::array())) {
    for (const auto& id : s.value("tasks", core::Json::array())) submitted.insert(id.get<int>());
  }
  std::vector<TaskState> tasks;
  for (const auto& t : record.at("tasks")) {
    TaskState task;
    task.id = t.at("id").get<int>();
    task.dir = (fs::path(sweepDir) / t.at("dir").get<std::string>()).string();
    for (const auto& [key, value] : t.at("values").items()) {
      task.values.emplace_back(key, valueText(value));
    }
    const core::Json status = readStatus(task.dir);
    if (status.is_object()) {
      task.state = status.value("state", "unknown");
      task.step = status.value("step", std::int64_t{-1});
      task.steps = status.value("steps", std::int64_t{-1});
    } else if (queue && queue->count(task.id)) {
      const std::string& q = queue->at(task.id);
      task.state = q == "PENDING" ? "queued" : q == "RUNNING" ? "starting" : "queued (" + q + ")";
    } else {
      task.state = submitted.count(task.id) ? "submitted" : "not submitted";
    }
    task.finished = task.state == "finished";
    task.metrics =
        finalMetrics(core::MetricsLog::readAll(launch::RunLayout(task.dir).metrics()), last);
    if (task.step < 0 && task.metrics.contains("step"))
      task.step = task.metrics["step"].get<std::int64_t>();
    tasks.push_back(std::move(task));
  }
  return tasks;
}

std::string formatNumber(const core::Json& value) {
  if (value.is_null()) return "n/a";
  if (value.is_number_integer()) return value.dump();
  if (!value.is_number()) return valueText(value);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", value.get<double>());
  return buf;
}

std::string Table::text() const {
  std::vector<std::size_t> width(header.size());
  for (std::size_t c = 0; c < header.size(); ++c) width[c] = header[c].size();
  for (const auto& row : rows) {
    for (std::size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  }
  std::ostringstream out;
  const auto line = [&](const std::vector<std::string>& cells) {
    std::string s;
    for (std::size_t c = 0; c < cells.size(); ++c) {
      s += cells[c];
      if (c + 1 < cells.size()) s += std::string(width[c] - cells[c].size() + 2, ' ');
    }
    out << s << "\n";
  };
  line(header);
  for (const auto& row : rows) line(row);
  return out.str();
}

std::string Table::markdown() const {
  std::ostringstream out;
  const auto line = [&](const std::vector<std::string>& cells) {
    out << "|";
    for (const auto& cell : cells) out << " " << cell << " |";
    out << "\n";
  };
  line(header);
  out << "|";
  for (std::size_t c = 0; c < header.size(); ++c) out << "---|";
  out << "\n";
  for (const auto& row : rows) line(row);
  return out.str();
}

std::string Table::csv() const {
  std::ostringstream out;
  const auto line = [&](const std::vector<std::string>& cells) {
    for (std::size_t c = 0; c < cells.size(); ++c) {
      const std::string& cell = cells[c];
      if (c > 0) out << ",";
      if (cell.find_first_of(",\"\n") == std::string::npos) {
        out << cell;
        continue;
      }
      out << '"';
      for (char ch : cell) out << (ch == '"' ? "\"\"" : std::string(1, ch));
      out << '"';
    }
    out << "\n";
  };
  line(header);
  for (const auto& row : rows) line(row);
  return out.str();
}

namespace {

// task, the swept values, state, step/steps: the columns status and collect share.
std::vector<std::string> leadingHeader(const std::vector<std::string>& swept) {
  std::vector<std::string> header{"task"};
  header.insert(header.end(), swept.begin(), swept.end());
  header.insert(header.end(), {"state", "step"});
  return header;
}

std::vector<std::string> leadingCells(const TaskState& t, const std::string& state) {
  std::vector<std::string> row{std::to_string(t.id)};
  for (const auto& [key, value] : t.values) row.push_back(value);
  row.push_back(state);
  const std::string step = t.step >= 0 ? std::to_string(t.step) : "-";
  row.push_back(t.steps >= 0 ? step + "/" + std::to_string(t.steps) : step);
  return row;
}

}  // namespace

Table statusTable(const std::vector<TaskState>& tasks, const std::vector<std::string>& swept) {
  Table table;
  table.header = leadingHeader(swept);
  table.header.insert(table.header.end(), {"loss", "samples/s"});
  for (const auto& t : tasks) {
    auto row = leadingCells(t, t.state);
    row.push_back(formatNumber(t.metrics.value("loss", core::Json(nullptr))));
    row.push_back(formatNumber(t.metrics.value("samples_per_s", core::Json(nullptr))));
    table.rows.push_back(std::move(row));
  }
  return table;
}

std::string stateSummary(const std::vector<TaskState>& tasks) {
  std::vector<std::pair<std::string, int>> counts;  // first-seen order of states
  for (const auto& t : tasks) {
    auto it = std::find_if(counts.begin(), counts.end(),
                           [&](const auto& c) { return c.first == t.state; });
    if (it == counts.end()) {
      counts.emplace_back(t.state, 1);
    } else {
      ++it->second;
    }
  }
  std::sort(counts.begin(), counts.end(), [](const auto& a, const auto& b) {
    return (a.first == "finished") > (b.first == "finished");
  });
  std::string out = std::to_string(tasks.size()) + " task(s)";
  for (std::size_t i = 0; i < counts.size(); ++i) {
    out += (i == 0 ? ": " : ", ") + std::to_string(counts[i].second) + " " + counts[i].first;
  }
  return out;
}

Collected collectResults(std::vector<TaskState> tasks, const std::vector<std::string>& swept,
                         const std::string& metric, bool descending) {
  Collected c;
  bool anyRows = false, anyMetric = false;
  for (const auto& t : tasks) {
    for (const auto& [key, value] : t.metrics.items()) {
      if (key == "step") continue;
      anyRows = true;
      if (std::find(c.metricKeys.begin(), c.metricKeys.end(), key) == c.metricKeys.end()) {
        c.metricKeys.push_back(key);
      }
    }
    anyMetric = anyMetric || t.metrics.contains(metric);
  }
  if (anyRows && !anyMetric) {
    std::string known;
    for (const auto& k : c.metricKeys) known += (known.empty() ? "" : ", ") + k;
    LDDPM_THROW(core::UsageError, "lddpm sweep collect: option '--metric': no task logged '",
                metric, "' (metrics.jsonl has: ", known, ")");
  }
  // Rank: finished with the metric, unfinished with it, then without it.
  const auto rank = [&](const TaskState& t) {
    return !t.metrics.contains(metric) ? 2 : t.finished ? 0 : 1;
  };
  std::stable_sort(tasks.begin(), tasks.end(), [&](const TaskState& a, const TaskState& b) {
    if (rank(a) != rank(b)) return rank(a) < rank(b);
    if (rank(a) == 2) return false;
    const double x = a.metrics[metric].get<double>(), y = b.metrics[metric].get<double>();
    return descending ? x > y : x < y;
  });

  c.table.header = leadingHeader(swept);
  for (const auto& key : c.metricKeys) {
    // The logged learning rate next to a swept `lr`: two columns of one name would mislead.
    const bool isSwept = std::find(swept.begin(), swept.end(), key) != swept.end();
    c.table.header.push_back(isSwept ? key + " (logged)" : key);
  }
  c.json = core::Json::array();
  for (const auto& t : tasks) {
    auto row = leadingCells(t, t.finished ? t.state : t.state + "*");
    core::Json values = core::Json::object();
    for (const auto& [key, value] : t.values) values[key] = value;
    core::Json metrics = core::Json::object();
    for (const auto& key : c.metricKeys) {
      const core::Json v = t.metrics.value(key, core::Json(nullptr));
      row.push_back(formatNumber(v));
      metrics[key] = v;
    }
    c.table.rows.push_back(std::move(row));
    c.json.push_back({{"task", t.id},
                      {"dir", t.dir},
                      {"values", values},
                      {"state", t.state},
                      {"finished", t.finished},
                      {"step", t.step >= 0 ? core::Json(t.step) : core::Json(nullptr)},
                      {"steps", t.steps >= 0 ? core::Json(t.steps) : core::Json(nullptr)},
                      {"metrics", metrics}});
  }
  c.tasks = std::move(tasks);
  return c;
}

}  // namespace lddpm::launch::sweep
