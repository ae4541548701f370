#!/usr/bin/env python3
"""Writes a tiny MSLesSeg-shaped dataset with nibabel (an independent writer) for CLI tests:
train/P{n}/T1/P{n}_T1_{FLAIR,T1,T2,MASK}.nii.gz and test/P{m}/P{m}_{...}.nii.gz, shells of
CSF/GM/WM intensities with noise and one cubic lesion per scan.

usage: tiny_mslesseg.py OUT_DIR [TRAIN_PATIENTS] [TEST_PATIENTS] [SHAPE e.g. 40x48x40]
"""
import os
import sys

import nibabel as nib
import numpy as np


def scan(rng, shape):
    nz, ny, nx = shape
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    r = np.sqrt(z * z + y * y + x * x) / 0.9
    tissue = np.select([r < 0.45, r < 0.75, r < 1.0], [3, 2, 1], 0)
    t1 = np.choose(tissue, [0, 100, 300, 500]).astype(np.float32)
    flair = np.choose(tissue, [0, 80, 250, 200]).astype(np.float32)
    t2 = np.choose(tissue, [0, 400, 200, 150]).astype(np.float32)
    brain = tissue > 0
    for img in (t1, flair, t2):
        img[brain] += rng.normal(0, 10, brain.sum()).astype(np.float32)
    mask = np.zeros(shape, np.uint8)
    c = [n // 2 + rng.integers(-3, 4) for n in shape]
    mask[c[0]:c[0] + 3, c[1]:c[1] + 3, c[2]:c[2] + 3] = 1
    flair[mask > 0] = 600
    return {"FLAIR": flair, "T1": t1, "T2": t2, "MASK": mask}


def save(volumes, folder, prefix):
    os.makedirs(folder, exist_ok=True)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = [-20, -24, -20]
    for name, v in volumes.items():
        # Files store (x, y, z); our arrays are [z, y, x].
        img = nib.Nifti1Image(np.ascontiguousarray(v.transpose(2, 1, 0)), affine)
        img.header.set_xyzt_units("mm")
        nib.save(img, os.path.join(folder, f"{prefix}_{name}.nii.gz"))


def main():
    out = sys.argv[1]
    train = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    test = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    shape = tuple(int(v) for v in (sys.argv[4] if len(sys.argv) > 4 else "40x48x40").split("x"))
    rng = np.random.default_rng(7)
    for p in range(1, train + 1):
        save(scan(rng, shape), os.path.join(out, "train", f"P{p}", "T1"), f"P{p}_T1")
    for p in range(train + 1, train + test + 1):
        save(scan(rng, shape), os.path.join(out, "test", f"P{p}"), f"P{p}")


if __name__ == "__main__":
    main()
