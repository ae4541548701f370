// `lddpm sweep`: grid parsing and expansion (task count = product of the value counts), random
// draws (deterministic, in range), the task options checked as `lddpm train` reads them, and the
// command end to end with a fake sbatch and squeue: every bad input exits 2 before sbatch runs,
// dry run, the array spec, skipping finished and queued tasks, a changed grid refused, a failing
// sbatch recorded as nothing submitted, then status and collect on hand-written task results.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "core/Error.h"
#include "core/Json.h"
#include "core/Options.h"
#include "launch/Command.h"
#include "launch/engine/TrainConfig.h"
#include "launch/sweep/SweepGrid.h"
#include "launch/sweep/SweepStatus.h"
#include "launch/sweep/SweepTaskConfig.h"
#include "models/Registry.h"
#include "tests/common/Errors.h"
#include "tests/common/Shell.h"
#include "tests/common/TempDir.h"

namespace {

namespace fs = std::filesystem;
using lddpm::core::Json;
using namespace lddpm::launch::sweep;
using lddpm::testutil::errorOf;

GridSpec parse(const std::string& text, const std::string& name = "g.ini") {
  std::istringstream in(text);
  return parseGrid(in, name);
}

void write(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

std::string read(const fs::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// ---- grid files ---------------------------------------------------------------------------

TEST(SweepGrid, CartesianProductLastKeyFastest) {
  const GridSpec spec = parse(
      "[sweep]\nname = lr-scan\nmax_parallel = 3\n[base]\nsteps = 10\n"
      "[grid]\nlr = 1e-3, 1e-4\nbatch = 2,4,8\nmodel = lesion-ddpm\n");
  ASSERT_EQ(spec.taskCount(), 2u * 3u * 1u);
  const auto tasks = expandTasks(spec);
  ASSERT_EQ(tasks.size(), 6u);
  const char* lr[] = {"1e-3", "1e-4"};
  const char* batch[] = {"2", "4", "8"};
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(tasks[i].id, i);
    ASSERT_EQ(tasks[i].values.size(), 3u);
    EXPECT_EQ(tasks[i].values[0], std::make_pair(std::string("lr"), std::string(lr[i / 3])));
    EXPECT_EQ(tasks[i].values[1].second, batch[i % 3]);
    EXPECT_EQ(tasks[i].values[2].second, "lesion-ddpm");
  }
  EXPECT_EQ(spec.settings.name, "lr-scan");
  EXPECT_EQ(spec.settings.maxParallel, 3);
  EXPECT_EQ(spec.sweptKeys(), (std::vector<std::string>{"lr", "batch", "model"}));
}

TEST(SweepGrid, QuotesKeepCommasAndNameDefaultsToTheFile) {
  const GridSpec spec = parse(
      "# comment\n[grid]\nchannel-mult = \"1,2\", \"1,2,4\"  # two depths\n", "dir/depth.ini");
  ASSERT_EQ(spec.grid.size(), 1u);
  EXPECT_EQ(spec.grid[0].values, (std::vector<std::string>{"1,2", "1,2,4"}));
  EXPECT_EQ(spec.settings.name, "depth");
}

TEST(SweepGrid, RandomDrawsAreDeterministicAndInRange) {
  const std::string text =
      "[sweep]\nrandom = 200\nseed = 7\n[grid]\nbatch = 2, 4\n[random]\n"
      "lr = loguniform(1e-5, 1e-3)\ndropout = uniform(0, 0.5)\n"
      "model = choice(lesion-ddpm, cond-ddpm)\nblocks-per-level = randint(1, 3)\n";
  const GridSpec spec = parse(text);
  const auto tasks = expandTasks(spec);
  ASSERT_EQ(tasks.size(), 2u * 200u);
  EXPECT_EQ(expandTasks(parse(text))[123].values, tasks[123].values);  // same file, same draws
  std::set<std::string> models, blocks;
  double dropoutSum = 0;
  for (const auto& t : tasks) {
    const double lr = std::stod(t.values[1].second);
    EXPECT_GE(lr, 1e-5);
    EXPECT_LE(lr, 1e-3);
    const double dropout = std::stod(t.values[2].second);
    EXPECT_GE(dropout, 0.0);
    EXPECT_LT(dropout, 0.5);
    dropoutSum += dropout;
    models.insert(t.values[3].second);
    blocks.insert(t.values[4].second);
  }
  EXPECT_EQ(models, (std::set<std::string>{"lesion-ddpm", "cond-ddpm"}));
  EXPECT_EQ(blocks, (std::set<std::string>{"1", "2", "3"}));
  // Mean of 400 uniform(0, 0.5) draws (200 distinct): 0.25 ± 6 sd of the mean (0.5/√12/√200).
  EXPECT_NEAR(dropoutSum / 400, 0.25, 6 * 0.5 / std::sqrt(12.0 * 200));
  // Draw d is the same at every grid point: tasks 2d (batch 2) and 2d+1 (batch 4)... are ids
  // point × draws + d, so task d and task 200 + d share their random values.
  for (int d = 0; d < 200; d += 37) {
    EXPECT_EQ(tasks[d].values[1], tasks[200 + d].values[1]);
    EXPECT_EQ(tasks[d].values[0].second, "2");
    EXPECT_EQ(tasks[200 + d].values[0].second, "4");
  }
  // Another seed draws other values.
  const auto other = expandTasks(parse(text.substr(0, text.find("seed = 7")) + "seed = 8" +
                                       text.substr(text.find("seed = 7") + 8)));
  EXPECT_NE(other[0].values[1], tasks[0].values[1]);
}

TEST(SweepGrid, MalformedLinesNameFileAndLine) {
  const std::pair<const char*, const char*> cases[] = {
      {"[grid]\nlr 1e-3\n", "g.ini:2: expected 'key = value'"},
      {"lr = 1\n", "g.ini:1: 'lr' comes before any section"},
      {"[grids]\n", "g.ini:1: unknown section [grids]"},
      {"[grid\n", "g.ini:1: malformed section header"},
      {"[sweep]\nmax-parallel = 2\n", "g.ini:2: unknown [sweep] setting 'max-parallel'"},
      {"[sweep]\nmax_parallel = two\n", "g.ini:2: [sweep] max_parallel: 'two' is not an integer"},
      {"[base]\nlr = 1\n[grid]\nlr = 1,2\n", "g.ini:4: option 'lr' is already given on line 2"},
      {"[grid]\nlr = 1,,2\n", "g.ini:2: empty value in the list '1,,2'"},
      {"[grid]\nlr =\n", "g.ini:2: [grid] lr has no values"},
      {"[grid]\nchannel-mult = \"1,2\n", "g.ini:2: unterminated quote"},
      {"[sweep]\nrandom = 3\n[random]\nlr = normal(0, 1)\n",
       "g.ini:4: [random] lr: unknown distribution 'normal'"},
      {"[sweep]\nrandom = 3\n[random]\nlr = uniform(1, 0)\n",
       "g.ini:4: [random] lr: uniform(a,b) needs a < b"},
      {"[sweep]\nrandom = 3\n[random]\nlr = loguniform(0, 1)\n", "loguniform(a,b) needs a > 0"},
      {"[random]\nlr = uniform(0, 1)\n", "g.ini:2: [random] keys need `random = N`"},
  };
  for (const auto& [text, expected] : cases) {
    const std::string message = errorOf([&] { parse(text); });
    EXPECT_NE(message.find(expected), std::string::npos) << text << "\n-> " << message;
  }
  EXPECT_THROW(parse("[grid]\nlr = 1e-3\n[sweep]\nrandom = 0\n"), lddpm::core::UsageError);
}

TEST(SweepGrid, ArraySpecsAndFolderNames) {
  EXPECT_EQ(arraySpec({0, 1, 2, 3, 5, 7, 8}), "0-3,5,7-8");
  EXPECT_EQ(arraySpec({1, 3, 4}), "1,3-4");
  EXPECT_EQ(arraySpec({6}), "6");
  EXPECT_EQ(taskDirName(7, taskDirWidth(12)), "007");
  EXPECT_EQ(taskDirWidth(1000), 3);
  EXPECT_EQ(taskDirName(42, taskDirWidth(1001)), "0042");
}

// ---- task options, checked as lddpm train reads them ---------------------------------------

struct TaskFixture : ::testing::Test {
  lddpm::testing::TempDir tmp{"sweep-unit"};
  fs::path dir = tmp.path;
  void SetUp() override { write(dir / "store" / "manifest.json", "{}"); }
  // A grid over a tiny model so the model build in each check is quick.
  std::string grid(const std::string& extraBase, const std::string& gridSection) const {
    return "[base]\nstore = " + (dir / "store").string() +
           "\nsteps = 10\nbase-channels = 8\nchannel-mult = 1,2\nattention-levels =\n" + extraBase +
           "[grid]\n" + gridSection;
  }
};

TEST_F(TaskFixture, UnknownOptionOrBadValueNamesTheLine) {
  const GridSpec unknown = parse(grid("", "lr = 1e-3\nlearning-rate = 1\n"));
  EXPECT_NE(errorOf([&] {
              TaskConfigResolver(unknown).checkLines();
            }).find("g.ini:9: [grid] unknown option 'learning-rate'"),
            std::string::npos);
  const GridSpec bad = parse(grid("", "lr = 1e-3, fast\n"));
  const std::string message = errorOf([&] { TaskConfigResolver(bad).checkLines(); });
  EXPECT_NE(message.find("g.ini:8: [grid] lr = 'fast'"), std::string::npos) << message;
  const GridSpec run = parse(grid("run = x\n", "lr = 1\n"));
  EXPECT_NE(errorOf([&] { TaskConfigResolver(run).checkLines(); }).find("option 'run'"),
            std::string::npos);
}

TEST_F(TaskFixture, WholeTaskIsValidatedAsTrainDoes) {
  // min-lr 1e-4 is fine with lr 1e-3 but not with lr 1e-5 (task 1); groups 8 cannot split a
  // 12-channel level (task 2 of the second grid); batch 3 on 2 ranks does not divide.
  GridSpec spec = parse(grid("min-lr = 1e-4\n", "lr = 1e-3, 1e-5\n"));
  TaskConfigResolver resolver(spec);
  resolver.checkLines();
  auto tasks = expandTasks(spec);
  EXPECT_NO_THROW(resolver.resolve(tasks[0], (dir / "t0").string()));
  std::string message = errorOf([&] { resolver.resolve(tasks[1], (dir / "t1").string()); });
  EXPECT_NE(message.find("g.ini: task 1 (lr = 1e-5): lddpm train: option '--min-lr'"),
            std::string::npos)
      << message;

  spec = parse(grid("", "groups = 8, 3\n"));
  TaskConfigResolver models(spec);
  EXPECT_NO_THROW(models.resolve(expandTasks(spec)[0], (dir / "t").string()));
  message = errorOf([&] { models.resolve(expandTasks(spec)[1], (dir / "t").string()); });
  EXPECT_NE(message.find("task 1 (groups = 3): option '--groups': 3 does not divide"),
            std::string::npos)
      << message;

  spec = parse("[sweep]\nranks = 2\n" + grid("", "batch = 2, 3\n"));
  TaskConfigResolver ranks(spec);
  message = errorOf([&] { ranks.resolve(expandTasks(spec)[1], (dir / "t").string()); });
  EXPECT_NE(message.find("option '--batch': 3 is not divisible"), std::string::npos) << message;

  spec = parse(grid("", "log-level = info, loud\n"));
  message = errorOf([&] { TaskConfigResolver(spec).resolve(expandTasks(spec)[1], "t"); });
  EXPECT_NE(message.find("task 1 (log-level = loud): option '--log-level'"), std::string::npos)
      << message;

  spec = parse("[base]\nstore = " + (dir / "nostore").string() + "\n[grid]\nlr = 1e-3\n");
  message = errorOf([&] { TaskConfigResolver(spec).resolve(expandTasks(spec)[0], "t"); });
  EXPECT_NE(message.find("is not a complete store"), std::string::npos) << message;
}

TEST_F(TaskFixture, TaskIniIsWhatTrainReads) {
  write(dir / "base.ini", "lr = 5e-4\nwarmup = 7\n");
  const GridSpec spec =
      parse(grid("config = " + (dir / "base.ini").string() + "\n", "lr = 1e-3, 2e-3\n"));
  TaskConfigResolver resolver(spec);
  resolver.checkLines();
  const auto tasks = expandTasks(spec);
  write(dir / "task.ini", resolver.resolve(tasks[1], (dir / "run1").string()));
  // Parse it back with lddpm train's own options: [grid] beats the base INI, which beats defaults.
  lddpm::launch::TrainConfig train;
  lddpm::models::ModelConfig model;
  lddpm::launch::CommonOptions common;
  lddpm::core::po::options_description desc;
  desc.add(train.describe());
  desc.add(model.describe());
  desc.add(lddpm::launch::describeCommonOptions(common));
  lddpm::core::parseOptions("train", {"--config", (dir / "task.ini").string()}, desc);
  EXPECT_EQ(train.lr, 2e-3);
  EXPECT_EQ(train.warmup, 7);
  EXPECT_EQ(train.steps, 10);
  EXPECT_EQ(model.baseChannels, 8);
  EXPECT_EQ(model.channelMultipliers, "1,2");
  EXPECT_EQ(train.run, (dir / "run1").string());
  EXPECT_EQ(train.data.store, (dir / "store").string());
}

// ---- the command, with a fake sbatch and squeue --------------------------------------------

struct SweepCli : TaskFixture {
  fs::path sweep = dir / "sweep";
  fs::path calls = dir / "sbatch-calls";

  void SetUp() override {
    TaskFixture::SetUp();
    // The fake sbatch records its arguments and prints a job id as --parsable does.
    write(dir / "sbatch", "#!/bin/sh\necho \"$@\" >> " + calls.string() + "\necho 4242\n");
    write(dir / "sbatch-fails", "#!/bin/sh\necho 'sbatch: error: invalid partition' >&2\nexit 1\n");
    // The fake squeue prints the queue file (lines "JOBID TASK STATE"), or fails without one.
    write(dir / "squeue", "#!/bin/sh\ncat " + (dir / "queue").string() + "\n");
    for (const char* f : {"sbatch", "sbatch-fails", "squeue"}) {
      fs::permissions(dir / f, fs::perms::owner_all);
    }
    write(dir / "train.sbatch",
          "#!/bin/bash\n# a test template\n#SBATCH --time=5\n\n#SBATCH --ntasks=1\n"
          "echo \"run=$LDDPM_RUN_DIR config=${LDDPM_CONFIG}\"\n");
    writeGrid("lr = 1e-3, 1e-4\nbatch = 2, 4\n");
  }
  void writeGrid(const std::string& gridSection) {
    write(dir / "grid.ini",
          "[sweep]\nname = scan\nmax_parallel = 2\nmetric = loss\n" + grid("", gridSection));
  }
  lddpm::testutil::ShellResult sweepCmd(const std::string& args) {
    return lddpm::testutil::runShell(std::string(LDDPM_BINARY) + " sweep " + args + " 2>&1");
  }
  lddpm::testutil::ShellResult submit(const std::string& extra = "",
                                      const std::string& sbatch = "sbatch") {
    return sweepCmd("--grid " + (dir / "grid.ini").string() + " --template " +
                    (dir / "train.sbatch").string() + " --out " + sweep.string() + " --sbatch " +
                    (dir / sbatch).string() + " --squeue " + (dir / "squeue").string() + " " +
                    extra);
  }
  void finish(int task, double loss, int step = 10) {
    const fs::path t = sweep / "tasks" / taskDirName(task, 3);
    write(t / "status.json", Json{{"state", "finished"}, {"step", step}, {"steps", 10}}.dump());
    std::ofstream m(t / "metrics.jsonl");
    m << Json{{"step", 5}, {"loss", loss + 1}, {"samples_per_s", 2.0}, {"lr", 1e-3}}.dump() << "\n"
      << Json{{"step", step}, {"loss", loss}, {"samples_per_s", 3.0}, {"lr", 1e-3}}.dump() << "\n";
  }
};

TEST_F(SweepCli, ListedInHelp) {
  const auto r = lddpm::testutil::runShell(std::string(LDDPM_BINARY) + " --help");
  EXPECT_NE(r.out.find("  sweep "), std::string::npos) << r.out;
  EXPECT_EQ(sweepCmd("").code, 2);
  EXPECT_EQ(sweepCmd("frobnicate").code, 2);
}

TEST_F(SweepCli, BadInputExitsTwoAndSubmitsNothing) {
  const auto expectRejected = [&](const std::string& expected) {
    const auto r = submit();
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_NE(r.out.find(expected), std::string::npos) << r.out;
    EXPECT_FALSE(fs::exists(calls)) << "sbatch ran";
    EXPECT_FALSE(fs::exists(sweep)) << "a sweep folder was written";
  };
  writeGrid("lr = 1e-3\nlearning_rate = 1\n");
  expectRejected("grid.ini:13: [grid] unknown option 'learning_rate'");
  writeGrid("lr = 1e-3, fast\n");
  expectRejected("grid.ini:12: [grid] lr = 'fast'");
  writeGrid("lr = 1e-3\nbatch\n");
  expectRejected("grid.ini:13: expected 'key = value'");
  writeGrid("lr = 1e-3, 1e-7\n");  // below the default min-lr 1e-6: a whole-task check
  expectRejected("task 1 (lr = 1e-7): lddpm train: option '--min-lr'");
  writeGrid("lr = 1e-3\n");
  write(dir / "train.sbatch",
        "#!/bin/bash\n#SBATCH -n 1\nlddpm train --config \"$LDDPM_CONFIG\"\n");
  expectRejected("never uses ${LDDPM_RUN_DIR}: a sweep task would not find its run directory");
  write(dir / "train.sbatch",
        "#!/bin/bash\n# $LDDPM_CONFIG only in a comment\necho $LDDPM_RUN_DIR\n");
  expectRejected("never uses ${LDDPM_CONFIG}");
}

TEST_F(SweepCli, DryRunWritesTheFolderButDoesNotSubmit) {
  const auto r = submit("--dry-run");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("--array=0-3%2"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(calls));
  const Json record = lddpm::core::readJsonFile((sweep / "sweep.json").string());
  EXPECT_EQ(record["tasks"].size(), 4u);
  EXPECT_EQ(record["tasks"][3]["values"], (Json{{"lr", "1e-4"}, {"batch", "4"}}));
  EXPECT_TRUE(record["submissions"].empty());
  EXPECT_TRUE(fs::is_directory(sweep / "logs"));
  EXPECT_NE(read(sweep / "tasks/002/sweep-task.ini").find("\nlr = 0.0001\n"), std::string::npos);
  // The inserted lines come after the last #SBATCH line of the header, and a task finds its
  // folder from SLURM_ARRAY_TASK_ID.
  const std::string script = read(sweep / "job.sbatch");
  EXPECT_LT(script.find("#SBATCH --ntasks=1"), script.find("export LDDPM_RUN_DIR"));
  EXPECT_LT(script.find("export LDDPM_CONFIG"), script.find("echo \"run="));
  // Templates find slurm/lib.sh beside the original template, not beside sbatch's spooled copy.
  EXPECT_NE(script.find("export LDDPM_SLURM_DIR=\"${LDDPM_SLURM_DIR:-" +
                        fs::absolute(dir).lexically_normal().string() + "}\""),
            std::string::npos)
      << script;
  const auto job =
      lddpm::testutil::runShell("SLURM_ARRAY_TASK_ID=2 bash " + (sweep / "job.sbatch").string());
  EXPECT_EQ(job.out, "run=" + (sweep / "tasks/002").string() +
                         " config=" + (sweep / "tasks/002/sweep-task.ini").string() + "\n");
}

TEST_F(SweepCli, ResubmissionSkipsFinishedAndQueuedTasks) {
  auto r = submit();
  ASSERT_EQ(r.code, 0) << r.out;
  Json record = lddpm::core::readJsonFile((sweep / "sweep.json").string());
  ASSERT_EQ(record["submissions"].size(), 1u);
  EXPECT_EQ(record["submissions"][0]["job_id"], "4242");
  const std::string tag = record["submissions"][0]["tag"];
  EXPECT_EQ(tag.size(), std::string("lddpm-sweep-").size() + 16) << tag;
  EXPECT_EQ(read(calls), "--parsable --array=0-3%2 --job-name=scan --comment=" + tag +
                             " --output=" + (sweep / "logs/%A_%a.out").string() + " --export=ALL " +
                             (sweep / "job.sbatch").string() + "\n");

  finish(0, 0.5);
  finish(2, 0.25);
  fs::remove(calls);
  r = submit();
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(read(calls).find("--array=1,3%2 "), std::string::npos) << read(calls);

  write(dir / "queue", "4242 1 PENDING\n999 3 RUNNING\n");  // job 999 is another user's array
  fs::remove(calls);
  r = submit();
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(read(calls).find("--array=3%2 "), std::string::npos) << read(calls);
  const auto status =
      sweepCmd("status " + sweep.string() + " --squeue " + (dir / "squeue").string());
  EXPECT_NE(status.out.find("1     1e-3  4      queued"), std::string::npos) << status.out;

  finish(1, 0.75);
  finish(3, 0.125);
  fs::remove(calls);
  r = submit();
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("nothing to submit"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(calls));
  record = lddpm::core::readJsonFile((sweep / "sweep.json").string());
  EXPECT_EQ(record["submissions"].size(), 3u);
}

TEST_F(SweepCli, ChangedGridIsRefusedUnlessForced) {
  ASSERT_EQ(submit().code, 0);
  finish(0, 0.5);
  finish(1, 0.5);
  finish(2, 0.5);
  fs::remove(calls);
  writeGrid("lr = 1e-3, 3e-4\nbatch = 2, 4\n");
  auto r = submit();
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("[grid] lr: [\"1e-3\",\"1e-4\"] -> [\"1e-3\",\"3e-4\"]"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("task 2: lr was 0.0001, now 0.00029999999999999997"), std::string::npos)
      << r.out;
  EXPECT_FALSE(fs::exists(calls));
  r = submit("--force");
  ASSERT_EQ(r.code, 0) << r.out;
  // Tasks 0 and 1 (lr 1e-3) kept their results; 2 and 3 start over with the new lr, and task
  // 2's results under the old lr are moved aside, not deleted.
  EXPECT_NE(read(calls).find("--array=2-3%2 "), std::string::npos) << read(calls);
  EXPECT_TRUE(fs::exists(sweep / "replaced/002.1/status.json"));
  EXPECT_FALSE(fs::exists(sweep / "tasks/002/status.json"));
  EXPECT_TRUE(fs::exists(sweep / "tasks/000/status.json"));
  EXPECT_NE(read(sweep / "tasks/003/sweep-task.ini").find("\nlr = 0.00029999999999999997\n"),
            std::string::npos);
}

// The submitting process killed after sbatch ran but before it recorded the job id: sweep.json
// holds the submission with its tag and no job id. The rerun finds the job in the queue by that
// tag (sbatch --comment) and adopts it instead of submitting the same tasks a second time; a tag
// the queue does not know is dropped and its tasks are submitted again.
TEST_F(SweepCli, InterruptedSubmissionIsAdoptedNotRepeated) {
  ASSERT_EQ(submit("--dry-run").code, 0);
  Json record = lddpm::core::readJsonFile((sweep / "sweep.json").string());
  record["submissions"] = Json::array({Json{{"job_id", ""},
                                            {"tag", "lddpm-sweep-00000000000000aa"},
                                            {"array", "0-3%2"},
                                            {"tasks", {0, 1, 2, 3}}}});
  write(sweep / "sweep.json", record.dump(2));
  write(dir / "queue",
        "4300 0 RUNNING lddpm-sweep-00000000000000aa\n"
        "4300 1 PENDING lddpm-sweep-00000000000000aa\n"
        "4301 2 PENDING lddpm-sweep-someone-else\n");
  auto r = submit();
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("adopted job 4300"), std::string::npos) << r.out;
  EXPECT_NE(read(calls).find("--array=2-3%2 "), std::string::npos) << read(calls);
  record = lddpm::core::readJsonFile((sweep / "sweep.json").string());
  ASSERT_EQ(record["submissions"].size(), 2u);
  EXPECT_EQ(record["submissions"][0]["job_id"], "4300");
  EXPECT_EQ(record["submissions"][1]["job_id"], "4242");

  // A pending record whose job the scheduler does not hold: sbatch never submitted it.
  record["submissions"] = Json::array({Json{{"job_id", ""},
                                            {"tag", "lddpm-sweep-00000000000000bb"},
                                            {"array", "0-3%2"},
                                            {"tasks", {0, 1, 2, 3}}}});
  write(sweep / "sweep.json", record.dump(2));
  fs::remove(calls);
  r = submit();
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(read(calls).find("--array=0-3%2 "), std::string::npos) << read(calls);
  record = lddpm::core::readJsonFile((sweep / "sweep.json").string());
  ASSERT_EQ(record["submissions"].size(), 1u);
  EXPECT_EQ(record["submissions"][0]["job_id"], "4242");
}

TEST_F(SweepCli, FailingSbatchRecordsNothing) {
  const auto r = submit("", "sbatch-fails");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("sbatch failed (exit status 1): nothing was submitted"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("invalid partition"), std::string::npos) << r.out;  // sbatch's own words
  EXPECT_TRUE(lddpm::core::readJsonFile((sweep / "sweep.json").string())["submissions"].empty());
}

TEST_F(SweepCli, StatusAndCollectReadTheTaskFolders) {
  ASSERT_EQ(submit().code, 0);
  finish(0, 0.5);
  finish(1, 0.125);
  finish(3, 0.25);
  // Task 2 is still running at step 4 with the lowest loss so far: listed after the finished.
  const fs::path t2 = sweep / "tasks/002";
  write(t2 / "status.json", Json{{"state", "running"}, {"step", 4}, {"steps", 10}}.dump());
  write(t2 / "metrics.jsonl", Json{{"step", 4}, {"loss", 0.0625}}.dump() + "\n");

  auto r = sweepCmd("status " + sweep.string() + " --squeue " + (dir / "squeue").string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("4 task(s): 3 finished, 1 running"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("running   4/10   0.0625"), std::string::npos) << r.out;

  r = sweepCmd("status " + sweep.string() + " --json --squeue false");
  ASSERT_EQ(r.code, 0) << r.out;
  const Json status = Json::parse(r.out);
  ASSERT_EQ(status.size(), 4u);
  EXPECT_EQ(status[2]["state"], "running");
  EXPECT_EQ(status[2]["step"], 4);
  EXPECT_EQ(status[2]["metrics"]["loss"], 0.0625);
  EXPECT_EQ(status[1]["values"], (Json{{"lr", "1e-3"}, {"batch", "4"}}));

  r = sweepCmd("collect " + sweep.string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(read(sweep / "results.csv"),
            // The logged learning rate is told apart from the swept one.
            "task,lr,batch,state,step,loss,samples_per_s,lr (logged)\n"
            "1,1e-3,4,finished,10/10,0.125,3,0.001\n"
            "3,1e-4,4,finished,10/10,0.25,3,0.001\n"
            "0,1e-3,2,finished,10/10,0.5,3,0.001\n"
            "2,1e-4,2,running*,4/10,0.0625,n/a,n/a\n");
  EXPECT_EQ(read(sweep / "results.md"), r.out);
  const Json results = lddpm::core::readJsonFile((sweep / "results.json").string());
  EXPECT_EQ(results["metric"], "loss");
  ASSERT_EQ(results["tasks"].size(), 4u);
  EXPECT_EQ(results["tasks"][0]["task"], 1);
  EXPECT_EQ(results["tasks"][0]["metrics"]["loss"], 0.125);
  EXPECT_EQ(results["tasks"][3]["finished"], false);

  // Mean of the last two rows, largest first: task 0 (1.5 + 0.5) / 2 = 1 leads.
  r = sweepCmd("collect " + sweep.string() + " --last 2 --descending");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(read(sweep / "results.csv")
                .rfind("task,lr,batch,state,step,loss,samples_per_s,lr (logged)\n"
                       "0,1e-3,2,finished,10/10,1,2.5,0.001\n"
                       "3,1e-4,4,finished,10/10,0.75,2.5,0.001\n",
                       0),
            0u)
      << read(sweep / "results.csv");

  r = sweepCmd("collect " + sweep.string() + " --metric dice");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("no task logged 'dice' (metrics.jsonl has: loss, samples_per_s, lr)"),
            std::string::npos)
      << r.out;
  EXPECT_EQ(sweepCmd("status " + dir.string()).code, 2);  // not a sweep folder
}

}  // namespace
