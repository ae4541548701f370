#!/usr/bin/env python3
"""Top ops by self time from a Chrome trace of `ModelsBench --mode profile` (docs/BENCHMARKS.md
"Models"). Self time = an event's duration minus the durations of the events nested directly in it
on the same thread (LibTorch's legacy profiler records nested aten:: calls and autograd nodes).

    python3 tests/bench/models/profile_ops.py TRACE.json [--top 15]
"""
import argparse
import collections
import json
import sys


def self_times(events):
    """{name: (self microseconds, calls)} over complete ('X') events, nesting per thread."""
    by_thread = collections.defaultdict(list)
    for e in events:
        if e.get("ph") == "X":
            by_thread[(e.get("pid"), e.get("tid"))].append(e)
    totals = collections.defaultdict(lambda: [0.0, 0])
    for thread_events in by_thread.values():
        # Parents first: earlier start, then longer duration.
        thread_events.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack = []  # [event, child time]
        def close(entry):
            event, children = entry
            totals[event["name"]][0] += max(0.0, event["dur"] - children)
            totals[event["name"]][1] += 1
        for e in thread_events:
            while stack and e["ts"] >= stack[-1][0]["ts"] + stack[-1][0]["dur"]:
                close(stack.pop())
            if stack:
                stack[-1][1] += e["dur"]
            stack.append([e, 0.0])
        while stack:
            close(stack.pop())
    return totals


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trace")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    try:
        with open(args.trace) as f:
            events = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"profile_ops: {args.trace}: {e}")
    totals = self_times(events)
    whole = sum(t for t, _ in totals.values())
    print(f"| op | self ms | share | calls |\n|---|---:|---:|---:|")
    for name, (t, calls) in sorted(totals.items(), key=lambda kv: -kv[1][0])[: args.top]:
        print(f"| `{name}` | {t / 1000:.1f} | {100 * t / whole:.1f} % | {calls} |")
    print(f"| all ops | {whole / 1000:.1f} | 100 % | {sum(c for _, c in totals.values())} |")


if __name__ == "__main__":
    main()
