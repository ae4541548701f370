#!/usr/bin/env python3
"""The same preprocessing as `lddpm preprocess` (defaults: FLAIR channel, no downsampling, auto
grid, zmax 3, patch index stride 8 / window 32, uncompressed 32^3 chunks), written the way a
researcher would in Python with nibabel + numpy + h5py, single process. A speed reference for
docs/BENCHMARKS.md, not a second implementation to keep in sync.

usage: /usr/bin/python3 preprocess_reference.py DATA_DIR OUT.h5
"""
import glob
import os
import sys
import time

import h5py
import nibabel as nib
import numpy as np


def kmeans3(v):
    best = None
    q = np.quantile(v, [1 / 6, 1 / 2, 5 / 6, 0.01, 0.99])
    for c in (q[:3].copy(), q[3] + (q[4] - q[3]) * np.array([1 / 6, 1 / 2, 5 / 6])):
        for _ in range(100):
            lab = np.abs(v[:, None] - c[None, :]).argmin(1)
            new = np.array([v[lab == k].mean() if (lab == k).any() else c[k] for k in range(3)])
            if np.array_equal(new, c):
                break
            c = new
        inertia = ((v - c[lab]) ** 2).sum()
        if best is None or inertia < best[0]:
            best = (inertia, c, lab)
    _, c, lab = best
    rank = np.empty(3, int)
    rank[np.argsort(c)] = np.arange(3)
    return rank[lab]


def load(path):
    return np.asarray(nib.load(path).get_fdata(dtype=np.float32)).transpose(2, 1, 0)


def process(prefix, zmax=3.0, stride=8, window=32):
    vols = {m: load(f"{prefix}_{m}.nii.gz") for m in ("FLAIR", "T1", "T2", "MASK")}
    for m, v in vols.items():
        assert np.isfinite(v).all(), m
    lesion = vols["MASK"] > 0.5
    brain = (vols["T1"] != 0) | (vols["FLAIR"] != 0) | lesion
    tissue = np.zeros(brain.shape, np.uint8)
    tissue[brain] = kmeans3(vols["T1"][brain].astype(np.float64)) + 1
    v = vols["FLAIR"][brain].astype(np.float64)
    mean, sd = v.mean(), v.std()
    img = np.where(brain, np.clip((vols["FLAIR"] - mean) / (sd * zmax), -1, 1), -1).astype(np.float32)
    grid = [(n + 15) // 16 * 16 for n in brain.shape]
    idx = np.argwhere(brain)
    lo, hi = idx.min(0), idx.max(0) + 1
    off = (lo + hi) // 2 - np.array(grid) // 2
    def place(a, fill):
        out = np.full(grid, fill, a.dtype)
        src = tuple(slice(max(0, o), min(n, o + g)) for o, n, g in zip(off, a.shape, grid))
        dst = tuple(slice(s.start - o, s.stop - o) for s, o in zip(src, off))
        out[dst] = a[src]
        return out
    img, tissue, les = place(img, -1), place(tissue, 0), place(lesion.astype(np.uint8), 0)
    s = np.pad(les.astype(np.int64).cumsum(0).cumsum(1).cumsum(2), ((1, 0), (1, 0), (1, 0)))
    centres = np.argwhere((tissue > 0)[stride // 2::stride, stride // 2::stride, stride // 2::stride]) * stride + stride // 2
    a = np.clip(centres - window // 2, 0, grid)
    b = np.clip(centres + window - window // 2, 0, grid)
    at = lambda z, y, x: s[z, y, x]
    counts = (at(b[:, 0], b[:, 1], b[:, 2]) - at(a[:, 0], b[:, 1], b[:, 2]) - at(b[:, 0], a[:, 1], b[:, 2])
              - at(b[:, 0], b[:, 1], a[:, 2]) + at(a[:, 0], a[:, 1], b[:, 2]) + at(a[:, 0], b[:, 1], a[:, 2])
              + at(b[:, 0], a[:, 1], a[:, 2]) - at(a[:, 0], a[:, 1], a[:, 2]))
    return img[None], tissue, les, np.concatenate([centres, counts[:, None]], 1).astype(np.int32), np.argwhere(les).astype(np.int32)


def main():
    data, out = sys.argv[1], sys.argv[2]
    prefixes = sorted(p[: -len("_FLAIR.nii.gz")] for p in glob.glob(os.path.join(data, "**", "*_FLAIR.nii.gz"), recursive=True))
    t0 = time.time()
    with h5py.File(out, "w") as f:
        for p in prefixes:
            img, tissue, les, index, voxels = process(p)
            g = f.create_group("subjects/" + os.path.basename(p))
            g.create_dataset("image", data=img, chunks=(1, 32, 32, 32))
            g.create_dataset("tissue", data=tissue, chunks=(32, 32, 32))
            g.create_dataset("lesion", data=les, chunks=(32, 32, 32))
            g.create_dataset("patch_index", data=index)
            g.create_dataset("lesion_voxels", data=voxels)
    dt = time.time() - t0
    print(f"python reference: {len(prefixes)} volumes in {dt:.2f} s ({len(prefixes) / dt:.3f} volumes/s)")


if __name__ == "__main__":
    main()
