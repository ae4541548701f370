#!/usr/bin/env python3
"""Fault-injection campaign: `kill -9` at random moments of every stage that writes something a
later stage trusts, then checks what is left and what a rerun makes of it.

Fault types (each trial starts from a fresh output folder):
  preprocess-1   lddpm preprocess, 1 rank, killed at a random moment
  preprocess-2   mpiexec -n 2 lddpm preprocess, one random rank killed at a random moment
  train          lddpm train with a checkpoint every step, killed at a random moment
  checkpoint     the same, killed while a randomly chosen step's checkpoint is being written
                 (the moment its temporary folder appears, plus a random part of a write's length)
  sample         lddpm sample of 4 cases, killed at a random moment
  sweep          lddpm sweep (submission) with a stand-in sbatch/squeue, killed at a random moment

After each kill:
  - what was left is either complete and verifies, or refused with a one-line message
    (store: `lddpm inspect STORE`; run: `lddpm export --run`), never accepted while wrong;
  - the same command rerun (resume) ends identical to an uninterrupted run: store shards with
    the same checksums, exported weights byte-identical (cmp), every sample file byte-identical,
    every sweep task submitted exactly once;
  - sampling redoes only what was missing: files of every group of --batch cases that was
    recorded as finished before the rerun keep their inode and modification time (a group with
    a case missing is redone whole, so that batch neighbours never change).
A trial that passes every check "survived"; one that fails any "torn" (the reason is printed).

usage: campaign.py --lddpm BIN --mpiexec MPIEXEC [--trials N] [--faults a,b] [--seed S]
                   [--work DIR] [--keep] [--json FILE]
Exit status 0 when every trial survived, 1 otherwise (2 on a set-up failure).
"""
import argparse
import filecmp
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

FAULTS = ["preprocess-1", "preprocess-2", "train", "checkpoint", "sample", "sweep"]
# A tiny Lesion-DDPM: the checkpoint is small, a step takes ~0.1 s on one core.
MODEL = ["--base-channels", "4", "--channel-mult", "1,2", "--attention-levels", "",
         "--groups", "2", "--timesteps", "20"]
TRAIN = ["--steps", "6", "--batch", "2", "--patch", "16", "--warmup", "1", "--checkpoint-every", "1",
         "--keep-checkpoints", "2", "--log-every", "1", "--threads", "1", "--log-level", "warn"]
SAMPLE_BATCH = 2
SAMPLE = ["--split", "all", "--cases", "4", "--batch", str(SAMPLE_BATCH), "--steps", "3",
          "--threads", "1", "--log-level", "warn"]
TIMEOUT = 300  # seconds any one command may take before it counts as a hang


class Torn(Exception):
    """A check failed: the trial is torn."""


class Campaign:
    def __init__(self, args):
        self.lddpm = os.path.abspath(args.lddpm)
        self.mpiexec = args.mpiexec
        self.work = args.work
        self.rng = random.Random(args.seed)
        self.env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                        OMPI_MCA_rmaps_base_oversubscribe="1", OMP_NUM_THREADS="1")
        self.ref = {}

    # ---- running commands ---------------------------------------------------------------

    def run(self, argv, cwd=None, check=True):
        p = subprocess.run(argv, cwd=cwd or self.work, env=self.env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=TIMEOUT)
        if check and p.returncode != 0:
            raise Torn("%s exited %d: %s" % (" ".join(argv[:3]), p.returncode,
                                             (p.stderr or p.stdout).strip()[-400:]))
        return p

    def timed(self, argv):
        t0 = time.monotonic()
        self.run(argv)
        return time.monotonic() - t0

    def start(self, argv):
        # Own session: the kill reaches exactly the processes of this command.
        return subprocess.Popen(argv, cwd=self.work, env=self.env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)

    def kill_after(self, proc, delay, victim=None):
        """SIGKILL after `delay` s: the process itself, or `victim()`'s pid when it gives one.
        Returns True when the kill happened before the command ended by itself."""
        try:
            proc.wait(timeout=delay)
            return False
        except subprocess.TimeoutExpired:
            pass
        pid = victim() if victim else None
        try:
            os.kill(pid or proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.reap(proc)
        return True

    def reap(self, proc):
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise Torn("the job did not end within 120 s of the kill (a rank hung)")
        # mpiexec may leave a rank behind for a moment: clear the session.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def ranks_of(self, proc):
        """pids of the lddpm processes below `proc` (the ranks under mpiexec)."""
        out = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % entry) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                with open("/proc/%s/cmdline" % entry, "rb") as f:
                    cmd = f.read().split(b"\0")[0].decode(errors="replace")
            except OSError:
                continue
            if int(fields[3]) != 0 and os.getpgid(int(entry)) == proc.pid and cmd == self.lddpm:
                out.append(int(entry))
        return out

    def one_line_refusal(self, p, what):
        """A refusal: non-zero exit and one error line that names something."""
        errors = [l for l in p.stderr.splitlines() if "error" in l.lower()]
        if p.returncode == 0:
            return False
        if len(errors) != 1 or "terminate called" in p.stderr or "Traceback" in p.stderr:
            raise Torn("%s refused without a one-line message: %r" % (what, p.stderr[-400:]))
        return True

    # ---- fixtures -----------------------------------------------------------------------

    def setup(self, faults):
        tiny = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data",
                            "tiny_mslesseg.py")
        self.run([sys.executable, tiny, "cohort", "3", "2", "32x32x32"])
        self.ref["preprocess"] = self.timed([self.lddpm, "preprocess", "--data", "cohort",
                                             "--out", "store", "--threads", "1",
                                             "--log-level", "warn"])
        self.ref["store"] = self.shard_sums("store")
        if "preprocess-2" in faults:
            self.ref["preprocess2"] = self.timed(self.mpi(2) + [
                self.lddpm, "preprocess", "--data", "cohort", "--out", "store2", "--threads", "1",
                "--log-level", "warn"])
            self.ref["store2"] = self.shard_sums("store2")
        if {"train", "checkpoint", "sample"} & set(faults):
            self.ref["train"] = self.timed(self.train_cmd("ref-run"))
            self.run([self.lddpm, "export", "--run", "ref-run", "--out", "ref.pt"])
        if "sample" in faults:
            self.ref["sample"] = self.timed(self.sample_cmd("ref-samples"))
        if "checkpoint" in faults:
            self.ref["write"] = self.checkpoint_write_seconds()
        if "sweep" in faults:
            self.sweep_fixtures()
            self.ref["sweep"] = self.timed(self.sweep_cmd("ref-sweep"))

    def mpi(self, n):
        return [self.mpiexec, "-n", str(n), "--oversubscribe"]

    def train_cmd(self, run):
        return [self.lddpm, "train", "--store", "store", "--run", run] + TRAIN + MODEL

    def sample_cmd(self, out):
        return [self.lddpm, "sample", "--run", "ref-run", "--store", "store", "--out", out] + SAMPLE

    def shard_sums(self, store):
        with open(os.path.join(self.work, store, "manifest.json")) as f:
            m = json.load(f)
        return sorted((s["file"], s["xxh3_64"]) for s in m["shards"])

    def checkpoint_write_seconds(self):
        """How long one checkpoint's temporary folder exists (median over a run), measured by
        the same polling that aims the checkpoint kills."""
        run = os.path.join(self.work, "calibrate")
        proc = self.start(self.train_cmd("calibrate"))
        spans, seen = [], None
        while proc.poll() is None:
            temp = self.temp_checkpoint(run)
            now = time.monotonic()
            if temp and seen is None:
                seen = now
            elif not temp and seen is not None:
                spans.append(now - seen)
                seen = None
            time.sleep(0.0002)
        if proc.returncode != 0:
            raise Torn("calibration run failed: " + proc.stderr.read()[-400:])
        spans.sort()
        return spans[len(spans) // 2] if spans else 0.01

    @staticmethod
    def temp_checkpoint(run):
        try:
            return any(e.startswith(".step-") for e in os.listdir(os.path.join(run, "checkpoints")))
        except OSError:
            return False

    def sweep_fixtures(self):
        calls = os.path.join(self.work, "sbatch-calls")
        # A stand-in scheduler: sbatch records each submission (one JSON line: the job exists from
        # then on) and prints its job id 0.3 s later, as a real sbatch waiting for its
        # controller's answer (so some kills land between submission and record); squeue lists
        # every task of every recorded submission as PENDING with its --comment.
        with open(os.path.join(self.work, "sbatch"), "w") as f:
            f.write("""#!/usr/bin/env python3
import json, os, sys, time
calls = os.environ.get("FAKE_SBATCH_CALLS", %r)
time.sleep(0.05)
with open(calls, "a") as f:
    n = sum(1 for _ in open(calls)) if os.path.exists(calls) else 0
    f.write(json.dumps(sys.argv[1:]) + "\\n")
    f.flush()
    os.fsync(f.fileno())
time.sleep(0.3)  # the job exists; the controller's answer is still on its way
print(5000 + n)
""" % calls)
        with open(os.path.join(self.work, "squeue"), "w") as f:
            f.write("""#!/usr/bin/env python3
import json, os
calls = os.environ.get("FAKE_SBATCH_CALLS", %r)
if os.path.exists(calls):
    for n, line in enumerate(open(calls)):
        args = json.loads(line)
        opt = lambda k: next((a[len(k):] for a in args if a.startswith(k)), "")
        for part in opt("--array=").split("%%")[0].split(","):
            lo, _, hi = part.partition("-")
            for t in range(int(lo), int(hi or lo) + 1):
                print(5000 + n, t, "PENDING", opt("--comment="))
""" % calls)
        with open(os.path.join(self.work, "template.sbatch"), "w") as f:
            f.write("#!/bin/bash\n#SBATCH --ntasks=1\n"
                    'lddpm train --config "$LDDPM_CONFIG" --run "$LDDPM_RUN_DIR"\n')
        with open(os.path.join(self.work, "grid.ini"), "w") as f:
            f.write("[sweep]\nname = faults\n[base]\nstore = %s\nsteps = 4\n"
                    "[grid]\nlr = 1e-3, 2e-3\nbatch = 2, 4\n" % os.path.join(self.work, "store"))
        for tool in ("sbatch", "squeue"):
            os.chmod(os.path.join(self.work, tool), 0o755)

    def sweep_cmd(self, out, calls=None):
        self.env["FAKE_SBATCH_CALLS"] = os.path.join(self.work, calls or out + ".calls")
        return [self.lddpm, "sweep", "--grid", "grid.ini", "--template", "template.sbatch",
                "--out", out, "--sbatch", os.path.join(self.work, "sbatch"),
                "--squeue", os.path.join(self.work, "squeue"), "--log-level", "warn"]

    # ---- one trial per fault type -------------------------------------------------------

    def fresh(self, name):
        path = os.path.join(self.work, name)
        shutil.rmtree(path, ignore_errors=True)
        return path

    def trial_preprocess(self, ranks):
        out = "store-kill"
        self.fresh(out)
        cmd = [self.lddpm, "preprocess", "--data", "cohort", "--out", out, "--threads", "1",
               "--log-level", "warn"]
        if ranks > 1:
            cmd = self.mpi(ranks) + cmd
        ref_time = self.ref["preprocess" if ranks == 1 else "preprocess2"]
        proc = self.start(cmd)
        victim = None
        if ranks > 1:  # one rank dies (a node lost), not the launcher
            victim = lambda: (lambda r: self.rng.choice(r) if r else None)(self.ranks_of(proc))
        killed = self.kill_after(proc, self.rng.uniform(0, ref_time), victim)
        # What is left: a complete store that verifies, or one refused with a message.
        p = self.run([self.lddpm, "inspect", out, "--log-level", "warn"], check=False)
        left = "refused" if self.one_line_refusal(p, "inspect of the killed store") else "complete"
        if left == "complete" and self.shard_sums(out) != self.ref["store" if ranks == 1 else "store2"]:
            raise Torn("the killed store verifies but differs from the uninterrupted one")
        self.run(cmd)  # the rerun finishes the store
        if self.shard_sums(out) != self.ref["store" if ranks == 1 else "store2"]:
            raise Torn("the finished store's shards differ from the uninterrupted run's")
        self.run([self.lddpm, "inspect", out, "--log-level", "warn"])
        return {"killed": killed, "left": left}

    def check_run_left(self, run):
        p = self.run([self.lddpm, "export", "--run", run, "--out", os.path.join(self.work, "x.pt"),
                      "--log-level", "warn"], check=False)
        return "refused" if self.one_line_refusal(p, "export of the killed run") else "exportable"

    def finish_run_and_compare(self, run):
        self.run(self.train_cmd(run))  # resume --auto
        self.run([self.lddpm, "export", "--run", run, "--out", os.path.join(self.work, "x.pt")])
        if not filecmp.cmp(os.path.join(self.work, "x.pt"), os.path.join(self.work, "ref.pt"),
                           shallow=False):
            raise Torn("resumed run's exported weights differ from the uninterrupted run's")
        steps = []
        with open(os.path.join(self.work, run, "metrics.jsonl")) as f:
            steps = [json.loads(l)["step"] for l in f if l.strip()]
        if steps != list(range(1, len(steps) + 1)) or not steps:
            raise Torn("metrics.jsonl steps after resume: %s" % steps)

    def trial_train(self):
        run = self.fresh("run-kill")
        proc = self.start(self.train_cmd("run-kill"))
        killed = self.kill_after(proc, self.rng.uniform(0, self.ref["train"]))
        left = self.check_run_left(run)
        self.finish_run_and_compare("run-kill")
        return {"killed": killed, "left": left}

    def trial_checkpoint(self):
        run = self.fresh("run-kill")
        step = self.rng.randint(1, 6)
        delay = self.rng.uniform(0, self.ref["write"])
        proc = self.start(self.train_cmd("run-kill"))
        seen, was = 0, False
        while proc.poll() is None:
            now = self.temp_checkpoint(run)
            if now and not was:
                seen += 1
                if seen == step:
                    break
            was = now
            time.sleep(0.0002)
        killed = False
        if proc.poll() is None:
            time.sleep(delay)
            os.kill(proc.pid, signal.SIGKILL)
            killed = True
        self.reap(proc)
        landed = killed and self.temp_checkpoint(run)  # a torn temporary folder was left
        left = self.check_run_left(run)
        self.finish_run_and_compare("run-kill")
        return {"killed": killed, "left": left, "landed": landed}

    def trial_sample(self):
        out = self.fresh("samples-kill")
        proc = self.start(self.sample_cmd("samples-kill"))
        killed = self.kill_after(proc, self.rng.uniform(0, self.ref["sample"]))
        finished = {}
        done = os.path.join(out, "done")
        for rec in sorted(os.listdir(done)) if os.path.isdir(done) else []:
            case = rec[:-len(".json")]
            for sub, ext in (("synthetic", ".nii.gz"), ("real", ".nii.gz"), ("lesion", ".nii.gz"),
                             ("brain", ".nii.gz"), ("tissue", ".nii.gz"), ("png", ".png")):
                st = os.stat(os.path.join(out, sub, case + ext))
                finished[os.path.join(sub, case + ext)] = (st.st_ino, st.st_mtime_ns)
        self.run(self.sample_cmd("samples-kill"))
        ref = os.path.join(self.work, "ref-samples")
        for sub in ("synthetic", "real", "lesion", "brain", "tissue", "png"):
            names = sorted(os.listdir(os.path.join(ref, sub)))
            if names != sorted(os.listdir(os.path.join(out, sub))):
                raise Torn("%s/ holds other files than the uninterrupted run's" % sub)
            for n in names:
                if not filecmp.cmp(os.path.join(ref, sub, n), os.path.join(out, sub, n), shallow=False):
                    raise Torn("%s/%s differs from the uninterrupted run's" % (sub, n))
        # Cases are sampled in fixed groups of --batch consecutive cases (sorted ids) and a group
        # with any case missing is redone whole (its batch neighbours must not change): the
        # files of every group that was complete before the rerun must not be written again.
        cases = sorted(n[:-len(".nii.gz")] for n in os.listdir(os.path.join(ref, "synthetic")))
        complete = set()
        for g in range(0, len(cases), SAMPLE_BATCH):
            group = cases[g:g + SAMPLE_BATCH]
            if all(os.path.join("synthetic", c + ".nii.gz") in finished for c in group):
                complete.update(group)
        for rel, (ino, mtime) in finished.items():
            case = os.path.basename(rel).split(".")[0]
            st = os.stat(os.path.join(out, rel))
            if case in complete and (st.st_ino, st.st_mtime_ns) != (ino, mtime):
                raise Torn("%s was finished before the rerun but written again" % rel)
        return {"killed": killed, "left": "%d case(s) finished" % (len(finished) // 6)}

    def trial_sweep(self):
        out = self.fresh("sweep-kill")
        calls = os.path.join(self.work, "sweep-kill.calls")
        if os.path.exists(calls):
            os.remove(calls)
        proc = self.start(self.sweep_cmd("sweep-kill"))
        killed = self.kill_after(proc, self.rng.uniform(0, self.ref["sweep"]))
        if os.path.exists(os.path.join(out, "sweep.json")):
            with open(os.path.join(out, "sweep.json")) as f:
                json.load(f)  # never torn: written atomically
        self.run(self.sweep_cmd("sweep-kill"))
        submitted = []
        with open(calls) as f:
            for line in f:
                arg = next(a for a in json.loads(line) if a.startswith("--array="))
                for part in arg[len("--array="):].split("%")[0].split(","):
                    lo, _, hi = part.partition("-")
                    submitted += range(int(lo), int(hi or lo) + 1)
        if sorted(submitted) != [0, 1, 2, 3]:
            raise Torn("tasks submitted %s (each of 0-3 exactly once expected)" % sorted(submitted))
        return {"killed": killed, "left": "%d submission(s)" % len(open(calls).readlines())}

    def trial(self, fault):
        return {"preprocess-1": lambda: self.trial_preprocess(1),
                "preprocess-2": lambda: self.trial_preprocess(2),
                "train": self.trial_train,
                "checkpoint": self.trial_checkpoint,
                "sample": self.trial_sample,
                "sweep": self.trial_sweep}[fault]()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lddpm", required=True)
    ap.add_argument("--mpiexec", default="mpiexec")
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--faults", default=",".join(FAULTS))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--work")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    faults = [f for f in args.faults.split(",") if f]
    unknown = [f for f in faults if f not in FAULTS]
    if unknown:
        ap.error("unknown fault type(s) %s; known: %s" % (unknown, ", ".join(FAULTS)))
    made = args.work is None
    args.work = os.path.abspath(args.work or tempfile.mkdtemp(prefix="lddpm-faults."))
    os.makedirs(args.work, exist_ok=True)
    c = Campaign(args)
    t0 = time.monotonic()
    try:
        c.setup(faults)
    except (Torn, subprocess.TimeoutExpired) as e:
        print("faults: set-up failed: %s" % e, file=sys.stderr)
        return 2
    print("faults: set-up %.1f s (reference times: %s)" % (
        time.monotonic() - t0, ", ".join("%s %.2f s" % (k, v) for k, v in c.ref.items()
                                         if isinstance(v, float))), flush=True)
    results = {}
    for fault in faults:
        r = results[fault] = {"trials": 0, "survived": 0, "torn": 0, "killed": 0, "left": {},
                              "landed": 0, "failures": []}
        for i in range(args.trials):
            r["trials"] += 1
            try:
                info = c.trial(fault)
                r["survived"] += 1
                r["killed"] += bool(info["killed"])
                r["landed"] += bool(info.get("landed"))
                r["left"][info["left"]] = r["left"].get(info["left"], 0) + 1
            except (Torn, subprocess.TimeoutExpired) as e:
                r["torn"] += 1
                r["failures"].append("trial %d: %s" % (i, e))
                print("faults: %s trial %d TORN: %s" % (fault, i, e), file=sys.stderr, flush=True)
        print("faults: %-12s %d trials, %d survived, %d torn" % (
            fault, r["trials"], r["survived"], r["torn"]), flush=True)
    elapsed = time.monotonic() - t0
    print("\n| fault | trials | survived | torn | killed mid-run | left after the kill |")
    print("|---|---:|---:|---:|---:|---|")
    for fault, r in results.items():
        left = ", ".join("%s %d" % kv for kv in sorted(r["left"].items()))
        if fault == "checkpoint":
            left += "; %d landed inside a checkpoint write" % r["landed"]
        print("| %s | %d | %d | %d | %d | %s |" % (fault, r["trials"], r["survived"], r["torn"],
                                                  r["killed"], left))
    print("\nfaults: %.0f s in all, work folder %s" % (elapsed, args.work))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "reference_seconds": c.ref, "seconds": elapsed}, f,
                      indent=2)
    if made and not args.keep:
        shutil.rmtree(args.work, ignore_errors=True)
    return 0 if all(r["torn"] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
