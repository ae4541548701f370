#!/usr/bin/python3
"""Checks a folder written by `launch/export_dataset.py --layout mslesseg` against the MSLesSeg
training layout (docs/data.md), independently of the exporter: only train/ and
lesion_ddpm_cases.json at the top; patients P1..Pn, each with one timepoint folder T1 holding
exactly P<n>_T1_FLAIR.nii.gz and P<n>_T1_MASK.nii.gz; every file reads back with nibabel with the
shape and affine of the real scan of its mask; FLAIR is float32 with the source image's voxels,
MASK uint8 equal to the source lesion mask. The sources are the exporter's provenance.

  mslesseg_check.py DATASET EXPECTED_SCANS
"""
import json
import os
import re
import sys

import nibabel as nib
import numpy as np


def main():
    dataset, expected = sys.argv[1], int(sys.argv[2])
    assert sorted(os.listdir(dataset)) == ["lesion_ddpm_cases.json", "train"], os.listdir(dataset)
    cases = json.load(open(os.path.join(dataset, "lesion_ddpm_cases.json")))
    patients = sorted(os.listdir(os.path.join(dataset, "train")), key=lambda p: int(p[1:]))
    assert patients == [f"P{n}" for n in range(1, expected + 1)], patients
    assert sorted(cases) == sorted(f"{p}_T1" for p in patients), sorted(cases)
    for p in patients:
        folder = os.path.join(dataset, "train", p)
        assert os.listdir(folder) == ["T1"], (folder, os.listdir(folder))
        files = sorted(os.listdir(os.path.join(folder, "T1")))
        assert files == [f"{p}_T1_FLAIR.nii.gz", f"{p}_T1_MASK.nii.gz"], files
        source = cases[f"{p}_T1"]
        label_dir, name = os.path.split(source["label"])
        real = nib.load(os.path.join(os.path.dirname(label_dir), "real", name))
        for kind, src, dtype in (("FLAIR", source["image"], np.float32),
                                 ("MASK", source["label"], np.uint8)):
            image = nib.load(os.path.join(folder, "T1", f"{p}_T1_{kind}.nii.gz"))
            data = np.asarray(image.dataobj)
            assert data.dtype == dtype, (p, kind, data.dtype)
            assert data.shape == real.shape, (p, kind, data.shape, real.shape)
            assert np.allclose(image.affine, real.affine, atol=1e-5), (p, kind)
            assert np.array_equal(data, np.asarray(nib.load(src).dataobj).astype(dtype)), (p, kind)
        assert re.fullmatch(r"(real|[A-Za-z0-9-]+)_.+", source["case"]), source
    print(f"mslesseg_check: {len(patients)} scans in the MSLesSeg layout, geometry and voxels ok")


if __name__ == "__main__":
    main()
