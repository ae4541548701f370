#!/usr/bin/env python3
"""Projected data-parallel step time and efficiency, 8..512 GPUs (docs/SCALING.md).

Inputs are what a user measures on one GPU before booking a cluster: the compute time of one
training step and the number of parameters (gradient bytes = 4 per parameter in fp32). The
communication model is nccl-tests' bus bandwidth: a ring allreduce of S bytes over N ranks takes
S * 2(N-1)/N / busbw, plus a latency term per bucket; reduce-scatter and allgather take half each.

  python3 tests/bench/distributed/scaling_model.py --params 4.76e6 --step-seconds 0.25
"""
import argparse
import math

LINKS = {  # busbw in bytes/s (docs/facts.md): NVLink/NVSwitch, 400 Gb/s InfiniBand NIC per GPU
    "NVLink": 370e9,
    "IB": 48e9,
}
LATENCY_S = 10e-6  # per tree level per collective (NCCL tree/ring latency, order of magnitude)


def comm_seconds(nbytes, ranks, busbw, buckets):
    if ranks == 1:
        return 0.0
    bandwidth = nbytes * 2 * (ranks - 1) / ranks / busbw
    latency = buckets * 2 * math.ceil(math.log2(ranks)) * LATENCY_S
    return bandwidth + latency


def bucket_sizes(grad_bytes, first_mib, cap_mib):
    """DataParallel's plan: a small first bucket, then buckets up to the cap; the last one
    holds the first layers' gradients, which backward produces last."""
    sizes, left = [], grad_bytes
    first = min(left, first_mib * 2**20)
    sizes.append(first)
    left -= first
    while left > 0:
        sizes.append(min(left, cap_mib * 2**20))
        left -= sizes[-1]
    return sizes


def step_seconds(args, ranks, busbw, overlap, zero):
    grad_bytes = 4 * args.params
    sizes = bucket_sizes(grad_bytes, args.first_bucket_mib, args.bucket_cap_mib)
    per_bucket = [comm_seconds(b, ranks, busbw, 1) for b in sizes]
    t_comm = sum(per_bucket)
    if zero or not overlap:
        # No overlap; ZeRO-1's reduce-scatter(grads) + allgather(params) move the same bytes as
        # one allreduce and are issued after backward.
        return args.step_seconds + t_comm
    # Buckets reduce while backward (~2/3 of the step) still runs; the last bucket can only
    # start when backward ends, so it is always exposed.
    backward = args.step_seconds * 2 / 3
    exposed = max(per_bucket[-1], t_comm - backward)
    return args.step_seconds + exposed


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", type=float, required=True, help="trainable parameters")
    p.add_argument("--step-seconds", type=float, required=True, help="one-GPU compute time per step")
    p.add_argument("--first-bucket-mib", type=float, default=1.0)
    p.add_argument("--bucket-cap-mib", type=float, default=25.0)
    p.add_argument("--ranks", type=int, nargs="*", default=[8, 16, 32, 64, 128, 256, 512])
    args = p.parse_args()
    grad_mib = 4 * args.params / 2**20
    print(f"params {args.params:.3g}, gradients {grad_mib:.1f} MiB/step, "
          f"compute {args.step_seconds:.3g} s/step, bucket cap {args.bucket_cap_mib:g} MiB")
    print("| GPUs | link | no overlap s/step (eff.) | overlap s/step (eff.) | ZeRO-1 s/step (eff.) |")
    print("|---:|---|---:|---:|---:|")
    for n in args.ranks:
        for link, busbw in LINKS.items():
            cells = []
            for overlap, zero in ((False, False), (True, False), (False, True)):
                t = step_seconds(args, n, busbw, overlap, zero)
                cells.append(f"{t:.4f} ({100 * args.step_seconds / t:.1f} %)")
            print(f"| {n} | {link} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
