#include "launch/sweep/SweepSubmit.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <vector>

#include "core/AtomicFile.h"
#include "core/Checksum.h"
#include "core/Error.h"
#include "core/Log.h"
#include "launch/sweep/SweepGrid.h"
#include "launch/sweep/SweepTaskConfig.h"

namespace lddpm::launch::sweep {
namespace fs = std::filesystem;
namespace po = core::po;

po::options_description SubmitOptions::describe() {
  SubmitOptions& o = *this;
  po::options_description desc("sweep options");
  // clang-format off
  desc.add_options()
      ("grid", po::value(&o.grid)->required()->value_name("FILE"),
       "grid file: [sweep] settings, [base] options, [grid] lists, [random] draws (docs/sweeps.md)")
      ("template", po::value(&o.templ)->required()->value_name("FILE"),
       "sbatch script that trains ${LDDPM_CONFIG} into ${LDDPM_RUN_DIR} (e.g. slurm/train.sbatch)")
      ("out", po::value(&o.out)->required()->value_name("DIR"),
       "sweep folder: sweep.json, job.sbatch, tasks/NNN/ (run directories), logs/")
      ("sbatch", po::value(&o.sbatch)->default_value(o.sbatch)->value_name("CMD"),
       "command that submits (a /bin/sh command line; extra sbatch options may follow it)")
      ("squeue", po::value(&o.squeue)->default_value(o.squeue)->value_name("CMD"),
       "command that lists queued tasks, so a resubmission skips them; unavailable = not asked")
      ("dry-run", po::bool_switch(&o.dryRun),
       "write the sweep folder and print the sbatch command without running it")
      ("force", po::bool_switch(&o.force),
       "accept a grid that differs from the sweep's: tasks whose options changed start over "
       "(their old folders move to SWEEP/replaced/)");
  // clang-format on
  return desc;
}

namespace {

constexpr int kFormatVersion = 1;

// ---- running sbatch / squeue ---------------------------------------------------------------

struct CommandResult {
  int code = -1;
  std::string out;
};

// Runs a /bin/sh command line; its stdout is captured, its stderr goes to ours.
CommandResult runCommand(const std::string& command) {
  CommandResult r;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return r;
  char buf[4096];
  while (const size_t n = std::fread(buf, 1, sizeof buf, pipe)) r.out.append(buf, n);
  const int status = ::pclose(pipe);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// What the scheduler still holds of this sweep: the array tasks of the recorded job ids, and
// the job id of each submission recorded before sbatch ran (found by the tag it got as
// --comment). nullopt when `squeue` cannot be asked (not installed, no controller): then nothing
// is known about queued tasks.
struct SchedulerView {
  QueueStates tasks;
  std::map<std::string, std::string> jobOfTag;
};

std::optional<SchedulerView> askScheduler(const std::string& squeue,
                                          const std::set<std::string>& jobIds,
                                          const std::set<std::string>& tags) {
  if (jobIds.empty() && tags.empty()) return SchedulerView{};
  const CommandResult r =
      runCommand(squeue + " --me --noheader --array --format='%F %K %T %k' 2>/dev/null");
  if (r.code != 0) return std::nullopt;
  SchedulerView view;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream fields(line);
    std::string job, index, state, comment;
    if (!(fields >> job >> index >> state)) continue;
    fields >> comment;  // absent for jobs without one
    if (tags.count(comment)) view.jobOfTag[comment] = job;
    if (!jobIds.count(job) && !tags.count(comment)) continue;
    try {
      view.tasks[std::stoi(index)] = state;
    } catch (const std::exception&) {  // "N/A" or a range of a job not split by --array
    }
  }
  return view;
}

std::set<std::string> submittedJobIds(const core::Json& record) {
  std::set<std::string> ids;
  for (const auto& s : record.value("submissions", core::Json::array())) {
    const std::string id = s.value("job_id", "");
    if (!id.empty()) ids.insert(id);
  }
  return ids;
}

// Tags of submissions whose sbatch outcome was never recorded (the process died meanwhile).
std::set<std::string> pendingTags(const core::Json& record) {
  std::set<std::string> tags;
  for (const auto& s : record.value("submissions", core::Json::array())) {
    if (s.value("job_id", "").empty() && !s.value("tag", "").empty()) tags.insert(s.at("tag"));
  }
  return tags;
}

std::string nowUtc() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

// ---- the template -------------------------------------------------------------------------

bool usesVariable(const std::string& text, const std::string& name) {
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    const auto first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line[first] == '#') continue;  // comments do not count
    if (line.find("$" + name) != std::string::npos || line.find("${" + name) != std::string::npos) {
      return true;
    }
  }
  return false;
}

std::string readTemplate(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    LDDPM_THROW(core::UsageError, "lddpm sweep: option '--template': cannot read '", path, "'");
  std::ostringstream text;
  text << in.rdbuf();
  const std::string t = text.str();
  if (t.rfind("#!", 0) != 0) {
    LDDPM_THROW(core::UsageError, "lddpm sweep: template ", path,
                " does not start with '#!' (sbatch needs an interpreter line)");
  }
  if (!usesVariable(t, "LDDPM_RUN_DIR")) {
    LDDPM_THROW(core::UsageError, "lddpm sweep: template ", path,
                " never uses ${LDDPM_RUN_DIR}: a sweep task would not find its run directory");
  }
  if (!usesVariable(t, "LDDPM_CONFIG")) {
    LDDPM_THROW(core::UsageError, "lddpm sweep: template ", path,
                " never uses ${LDDPM_CONFIG}: a sweep task would train without its options");
  }
  return t;
}

// The template with the lines that give each array task its folder, inserted after the leading
// block of comments and #SBATCH lines (sbatch reads directives only up to the first command).
std::string jobScript(const std::string& templ, const fs::path& templatePath,
                      const fs::path& sweepDir, int width) {
  std::istringstream in(templ);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  std::size_t insertAt = 1;  // after the #! line
  for (std::size_t i = 1; i < lines.size(); ++i) {
    const auto first = lines[i].find_first_not_of(" \t");
    if (first != std::string::npos && lines[i][first] != '#') break;
    if (lines[i].rfind("#SBATCH", 0) == 0) insertAt = i + 1;
  }
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  const std::string bin = ec ? "lddpm" : self.string();
  const std::vector<std::string> preamble = {
      "", "# ---- inserted by lddpm sweep: this array task's run directory and options ----",
      core::strCat("export LDDPM_RUN_DIR=\"", sweepDir.string(), "/tasks/$(printf %0", width,
                   "d \"$SLURM_ARRAY_TASK_ID\")\""),
      "export LDDPM_CONFIG=\"$LDDPM_RUN_DIR/sweep-task.ini\"",
      "export LDDPM_BIN=\"${LDDPM_BIN:-" + bin + "}\"",
      // sbatch runs a spooled copy: point the templates at the lib.sh beside the original.
      "export LDDPM_SLURM_DIR=\"${LDDPM_SLURM_DIR:-" +
          fs::absolute(templatePath).lexically_normal().parent_path().string() + "}\"",
      "# ---- end of lddpm sweep lines ----"};
  lines.insert(lines.begin() + static_cast<std::ptrdiff_t>(insertAt), preamble.begin(),
               preamble.end());
  std::string out;
  for (const auto& line : lines) out += line + "\n";
  return out;
}

// ---- comparing with an existing sweep -----------------------------------------------------

// `key = value` lines of an INI text (comments dropped; a repeated key's values joined).
std::map<std::string, std::string> iniValues(const std::string& text) {
  std::map<std::string, std::string> values;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] == '#') continue;
    const auto eq = line.find(" = ");
    if (eq == std::string::npos) continue;
    std::string& v = values[line.substr(0, eq)];
    v += (v.empty() ? "" : ", ") + line.substr(eq + 3);
  }
  return values;
}

std::string readText(const fs::path& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// What differs between the options a task folder was written with and the new ones ("" if
// nothing). Options only one side has are left out: they come from a newer or older build of
// lddpm, not from the grid.
std::string iniDifference(const std::string& before, const std::string& after) {
  const auto a = iniValues(before), b = iniValues(after);
  std::string out;
  for (const auto& [key, value] : b) {
    const auto it = a.find(key);
    if (it != a.end() && it->second != value) {
      out += (out.empty() ? "" : ", ") + key + " was " + it->second + ", now " + value;
    }
  }
  return out;
}

// The differences between the sweep's recorded grid and the new one, first few named.
std::vector<std::string> gridDifferences(const core::Json& before, const core::Json& after) {
  std::vector<std::string> out;
  for (const char* part : {"base", "grid", "random"}) {
    const core::Json& a = before.value(part, core::Json::object());
    const core::Json& b = after.value(part, core::Json::object());
    std::set<std::string> keys;
    for (const auto& [k, v] : a.items()) keys.insert(k);
    for (const auto& [k, v] : b.items()) keys.insert(k);
    for (const auto& k : keys) {
      const auto text = [&](const core::Json& j) {
        return j.contains(k) ? j[k].dump() : std::string("(absent)");
      };
      if (text(a) != text(b))
        out.push_back(core::strCat("[", part, "] ", k, ": ", text(a), " -> ", text(b)));
    }
  }
  for (const char* setting : {"samples", "seed", "ranks"}) {
    if (before.value(setting, core::Json()) != after.value(setting, core::Json())) {
      out.push_back(core::strCat("[sweep] ", setting, ": ",
                                 before.value(setting, core::Json()).dump(), " -> ",
                                 after.value(setting, core::Json()).dump()));
    }
  }
  return out;
}

// Moves a task folder that holds results aside (SWEEP/replaced/NNN.K) so the task starts over.
void replaceTaskFolder(const fs::path& sweepDir, const fs::path& dir) {
  if (!fs::exists(dir)) return;
  bool results = false;
  for (const auto& entry : fs::directory_iterator(dir)) {
    results = results || entry.path().filename() != "sweep-task.ini";
  }
  if (!results) return;
  fs::create_directories(sweepDir / "replaced");
  for (int k = 1;; ++k) {
    const fs::path to = sweepDir / "replaced" / core::strCat(dir.filename().string(), ".", k);
    if (fs::exists(to)) continue;
    fs::rename(dir, to);
    LDDPM_LOG(Warn) << "options of " << dir.filename().string()
                    << " changed: its old folder is now " << to;
    return;
  }
}

// A sweep's tasks with their folders (relative to the sweep folder) and checked option files.
struct SweepPlan {
  fs::path dir;  // absolute
  std::vector<SweepTask> tasks;
  std::vector<std::string> dirs;
  std::vector<std::string> inis;
  int width = 3;
};

// Step 1: everything that can be wrong with the input, found before anything is written.
SweepPlan planSweep(const SubmitOptions& o, const GridSpec& spec) {
  SweepPlan plan;
  plan.dir = fs::absolute(o.out).lexically_normal();
  if (plan.dir.string().find_first_of("\"$`\\\n") != std::string::npos) {
    LDDPM_THROW(core::UsageError, "lddpm sweep: option '--out': '", plan.dir.string(),
                "' has a character the job script cannot quote (\", $, `, \\)");
  }
  // The job script names the template's folder inside double quotes (LDDPM_SLURM_DIR) too.
  const std::string templateDir = fs::absolute(o.templ).lexically_normal().parent_path().string();
  if (templateDir.find_first_of("\"$`\\\n") != std::string::npos) {
    LDDPM_THROW(core::UsageError, "lddpm sweep: option '--template': '", templateDir,
                "' has a character the job script cannot quote (\", $, `, \\)");
  }
  if (fs::exists(plan.dir) && !fs::is_directory(plan.dir)) {
    LDDPM_THROW(core::UsageError, "lddpm sweep: option '--out': '", o.out, "' is not a folder");
  }
  TaskConfigResolver resolver(spec);
  resolver.checkLines();
  plan.tasks = expandTasks(spec);
  plan.width = taskDirWidth(plan.tasks.size());
  for (const auto& task : plan.tasks) {
    plan.dirs.push_back("tasks/" + taskDirName(task.id, plan.width));
    plan.inis.push_back(resolver.resolve(task, (plan.dir / plan.dirs.back()).string()));
  }
  return plan;
}

// Step 2: an existing sweep must have been made from the same grid. Returns the tasks whose
// folder holds options other than the new ones (with --force: they start over); without --force
// any difference is a UsageError naming the first few.
std::vector<std::size_t> changedTasks(const SweepPlan& plan, const GridSpec& spec,
                                      const core::Json& record, const SubmitOptions& o) {
  std::vector<std::string> diffs =
      gridDifferences(record.value("grid", core::Json::object()), spec.definition());
  const std::size_t before = record.value("tasks", core::Json::array()).size();
  if (before != plan.tasks.size()) {
    diffs.push_back(core::strCat("tasks: ", before, " -> ", plan.tasks.size()));
  }
  std::vector<std::size_t> changed;
  for (std::size_t i = 0; i < plan.tasks.size(); ++i) {
    const fs::path ini = plan.dir / plan.dirs[i] / "sweep-task.ini";
    if (!fs::exists(ini)) continue;
    const std::string d = iniDifference(readText(ini), plan.inis[i]);
    if (d.empty()) continue;
    changed.push_back(i);
    if (diffs.size() < 8) diffs.push_back(core::strCat("task ", plan.tasks[i].id, ": ", d));
  }
  if (!diffs.empty() && !o.force) {
    std::string list;
    for (const auto& d : diffs) list += "\n  " + d;
    LDDPM_THROW(core::UsageError, "lddpm sweep: ", o.out,
                " was created from a different grid:", list,
                "\nnothing submitted; use another --out, or --force to start the changed tasks "
                "over");
  }
  return changed;
}

// Step 3: the task folders and their options, job.sbatch, then sweep.json (atomically, last).
core::Json writeSweepFolder(const SweepPlan& plan, const GridSpec& spec, const SubmitOptions& o,
                            const std::string& templ, const std::vector<std::size_t>& changed,
                            const core::Json& submissions) {
  for (std::size_t i : changed) replaceTaskFolder(plan.dir, plan.dir / plan.dirs[i]);
  if (o.force) {  // folders of tasks the new grid no longer has
    for (auto i = static_cast<int>(plan.tasks.size());
         fs::exists(plan.dir / "tasks" / taskDirName(i, plan.width)); ++i) {
      replaceTaskFolder(plan.dir, plan.dir / "tasks" / taskDirName(i, plan.width));
    }
  }
  fs::create_directories(plan.dir / "logs");
  core::Json taskList = core::Json::array();
  for (std::size_t i = 0; i < plan.tasks.size(); ++i) {
    const fs::path ini = plan.dir / plan.dirs[i] / "sweep-task.ini";
    fs::create_directories(ini.parent_path());
    if (!fs::exists(ini) || !iniDifference(readText(ini), plan.inis[i]).empty()) {
      core::writeFileAtomic(ini.string(), plan.inis[i]);
    }
    core::Json values = core::Json::object();
    for (const auto& [key, value] : plan.tasks[i].values) values[key] = value;
    taskList.push_back({{"id", plan.tasks[i].id}, {"dir", plan.dirs[i]}, {"values", values}});
  }
  const fs::path script = plan.dir / "job.sbatch";
  core::writeFileAtomic(script.string(), jobScript(templ, o.templ, plan.dir, plan.width));
  fs::permissions(script, fs::perms::owner_exec | fs::perms::group_exec, fs::perm_options::add);

  const core::Json record = {{"format_version", kFormatVersion},
                             {"name", spec.settings.name},
                             {"grid_file", fs::absolute(o.grid).lexically_normal().string()},
                             {"template", fs::absolute(o.templ).lexically_normal().string()},
                             {"max_parallel", spec.settings.maxParallel},
                             {"metric", spec.settings.metric},
                             {"descending", spec.settings.descending},
                             {"swept", spec.sweptKeys()},
                             {"grid", spec.definition()},
                             {"tasks", taskList},
                             {"submissions", submissions}};
  core::writeJsonFile((plan.dir / "sweep.json").string(), record);
  return record;
}

// What is left to run: not finished (a changed task's old state does not count) and not held
// by the scheduler; the scheduler is asked only when something is unfinished. An interrupted
// earlier submission is settled in `previous` on the way: the job the scheduler holds under its
// tag is adopted, or the record dropped when there is none (sbatch never submitted it, or the
// job has left the queue).
struct Pending {
  std::vector<int> submit;  // task ids
  int finished = 0, queued = 0;
};

Pending pendingTasks(const SweepPlan& plan, const std::vector<std::size_t>& changed,
                     const std::string& squeue, core::Json& previous) {
  const auto n = plan.tasks.size();
  std::vector<bool> done(n);
  for (std::size_t i = 0; i < n; ++i) {
    const bool reset = std::find(changed.begin(), changed.end(), i) != changed.end();
    done[i] = !reset && taskFinished((plan.dir / plan.dirs[i]).string());
  }
  const bool allDone = std::find(done.begin(), done.end(), false) == done.end();
  const std::optional<SchedulerView> view =
      allDone ? SchedulerView{}
              : askScheduler(squeue, submittedJobIds(previous), pendingTags(previous));
  if (!view) {
    LDDPM_LOG(Warn) << "could not ask the scheduler (" << squeue
                    << "): a task of an earlier submission that is still queued would run twice";
  } else if (!allDone && previous.contains("submissions")) {
    core::Json kept = core::Json::array();
    for (auto s : previous["submissions"]) {
      if (s.value("job_id", "").empty()) {
        const auto it = view->jobOfTag.find(s.value("tag", ""));
        if (it == view->jobOfTag.end()) continue;
        s["job_id"] = it->second;
        LDDPM_LOG(Warn) << "an earlier submission was interrupted after sbatch: adopted job "
                        << it->second;
      }
      kept.push_back(s);
    }
    previous["submissions"] = kept;
  }
  Pending p;
  for (std::size_t i = 0; i < n; ++i) {
    if (done[i]) {
      ++p.finished;
    } else if (view && view->tasks.count(plan.tasks[i].id)) {
      ++p.queued;
    } else {
      p.submit.push_back(plan.tasks[i].id);
    }
  }
  return p;
}

}  // namespace

std::optional<QueueStates> queuedTasks(const std::string& squeue, const core::Json& record) {
  const auto view = askScheduler(squeue, submittedJobIds(record), pendingTags(record));
  if (!view) return std::nullopt;
  return view->tasks;
}

std::string submitSweep(const SubmitOptions& o) {
  const GridSpec spec = readGridFile(o.grid);
  const std::string templ = readTemplate(o.templ);
  const SweepPlan plan = planSweep(o, spec);
  const fs::path recordPath = plan.dir / "sweep.json";
  core::Json previous =
      fs::exists(recordPath) ? core::readJsonFile(recordPath.string()) : core::Json::object();
  const std::vector<std::size_t> changed =
      previous.empty() ? std::vector<std::size_t>{} : changedTasks(plan, spec, previous, o);

  const Pending pending = pendingTasks(plan, changed, o.squeue, previous);
  const auto n = plan.tasks.size();
  const std::vector<int>& submit = pending.submit;
  const int finished = pending.finished, queued = pending.queued;
  if (submit.empty()) {
    return core::strCat("nothing to submit: all ", n, " task(s) of ", o.out, " are finished (",
                        finished, ") or queued or running (", queued, ")");
  }

  core::Json record = writeSweepFolder(plan, spec, o, templ, changed,
                                       previous.value("submissions", core::Json::array()));

  // Submit the unfinished tasks as one array; only a job id that sbatch printed is recorded.
  // The submission is recorded with a tag (sbatch --comment) before sbatch runs, so that a rerun
  // after this process died between sbatch and the record finds the job instead of submitting
  // the same tasks twice.
  std::string array = arraySpec(submit);
  if (spec.settings.maxParallel > 0) array += core::strCat("%", spec.settings.maxParallel);
  const std::string stamp =
      core::strCat(plan.dir.string(), " ", nowUtc(), " ", ::getpid(), " ",
                   std::chrono::steady_clock::now().time_since_epoch().count());
  const std::string tag =
      "lddpm-sweep-" + core::checksumHex(core::checksumBytes(stamp.data(), stamp.size()));
  const std::string command = core::strCat(
      o.sbatch, " --parsable ", shellQuote("--array=" + array), " ",
      shellQuote("--job-name=" + spec.settings.name), " ", shellQuote("--comment=" + tag), " ",
      shellQuote("--output=" + (plan.dir / "logs" / "%A_%a.out").string()), " --export=ALL ",
      shellQuote((plan.dir / "job.sbatch").string()));
  if (o.dryRun) {
    return core::strCat("dry run: ", o.out, " written (", n, " task(s), ", submit.size(),
                        " to submit); would run:\n", command);
  }
  record["submissions"].push_back({{"job_id", ""},
                                   {"tag", tag},
                                   {"array", array},
                                   {"tasks", submit},
                                   {"time", nowUtc()},
                                   {"command", command}});
  core::writeJsonFile(recordPath.string(), record);
  const CommandResult r = runCommand(command);
  const std::string jobId = r.out.substr(0, r.out.find_first_of(";\n"));
  if (r.code != 0 || jobId.empty() || jobId.find_first_not_of("0123456789") != std::string::npos) {
    record["submissions"].erase(record["submissions"].size() - 1);
    core::writeJsonFile(recordPath.string(), record);
    LDDPM_THROW(core::Error, "lddpm sweep: sbatch failed (",
                r.code == 0 ? "no job id in its output '" + r.out + "'"
                            : core::strCat("exit status ", r.code),
                "): nothing was submitted. The command was:\n", command);
  }
  record["submissions"].back()["job_id"] = jobId;
  core::writeJsonFile(recordPath.string(), record);
  return core::strCat("submitted job ", jobId, ": ", submit.size(), " of ", n,
                      " task(s) (--array=", array, "), ", finished, " finished, ", queued,
                      " queued or running; follow with: lddpm sweep status ", o.out);
}

}  // namespace lddpm::launch::sweep
