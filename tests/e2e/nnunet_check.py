#!/usr/bin/python3
"""Checks a folder against nnU-Net v2's documented raw dataset format
(nnU-Net documentation/dataset_format.md), independently of launch/export_dataset.py, and that
every file has the geometry of the real scan it was made from.

  nnunet_check.py DATASET SAMPLES_DIR... [--with-real]

Rules checked (the documentation's): dataset.json has channel_names (keys "0".."n-1"), labels
(name -> int, background 0, consecutive integers), numTraining, file_ending; imagesTr holds
CASE_XXXX<file_ending> for every channel of every case and nothing else; labelsTr holds
CASE<file_ending> for every case; numTraining is the number of cases; an image and its label share
shape and affine; label values are among the declared labels. Ours: every file reads back with
nibabel, with the shape and affine of the real scan of its mask, the synthetic/real voxels are the
source's (float32), and the label equals the source lesion mask.
"""
import json
import os
import re
import sys

import nibabel as nib
import numpy as np


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    with_real = "--with-real" in sys.argv
    dataset, sources = args[0], args[1:]
    meta = json.load(open(os.path.join(dataset, "dataset.json")))
    for key in ("channel_names", "labels", "numTraining", "file_ending"):
        assert key in meta, f"dataset.json lacks {key}"
    channels = meta["channel_names"]
    assert sorted(channels) == [str(i) for i in range(len(channels))], channels
    labels = meta["labels"]
    assert labels.get("background") == 0, labels
    assert sorted(labels.values()) == list(range(len(labels))), labels
    ending = meta["file_ending"]
    assert ending == ".nii.gz", ending

    images = sorted(os.listdir(os.path.join(dataset, "imagesTr")))
    label_files = sorted(os.listdir(os.path.join(dataset, "labelsTr")))
    pattern = re.compile(r"^(.+)_(\d{4})" + re.escape(ending) + "$")
    cases = {}
    for name in images:
        m = pattern.match(name)
        assert m, f"imagesTr/{name} is not CASE_XXXX{ending}"
        cases.setdefault(m.group(1), set()).add(int(m.group(2)))
    for case, chans in cases.items():
        assert chans == set(range(len(channels))), (case, chans)
    assert label_files == sorted(c + ending for c in cases), (label_files, sorted(cases))
    assert meta["numTraining"] == len(cases), (meta["numTraining"], len(cases))

    # The cases expected from the sources: NAME_case per synthetic file, real_case once each.
    expected = {}
    for spec in sources:
        name, folder = spec.split("=", 1)
        for f in sorted(os.listdir(os.path.join(folder, "synthetic"))):
            case = f.split(".")[0]
            expected[f"{name}_{case}"] = (os.path.join(folder, "synthetic", f),
                                          os.path.join(folder, "real", f),
                                          os.path.join(folder, "lesion", f))
            if with_real:
                expected.setdefault(f"real_{case}", (os.path.join(folder, "real", f),
                                                     os.path.join(folder, "real", f),
                                                     os.path.join(folder, "lesion", f)))
    assert set(cases) == set(expected), (sorted(cases), sorted(expected))

    for case, (source, real, lesion) in expected.items():
        reference = nib.load(real)
        image = nib.load(os.path.join(dataset, "imagesTr", f"{case}_0000{ending}"))
        label = nib.load(os.path.join(dataset, "labelsTr", case + ending))
        for what, img in (("image", image), ("label", label)):
            assert img.shape == reference.shape, (case, what, img.shape, reference.shape)
            assert np.allclose(img.affine, reference.affine, atol=1e-5), (case, what)
            assert np.allclose(img.header.get_zooms()[:3], reference.header.get_zooms()[:3])
        data = np.asanyarray(image.dataobj)
        assert data.dtype == np.float32, (case, data.dtype)
        np.testing.assert_array_equal(data, np.asanyarray(nib.load(source).dataobj, dtype=np.float32))
        mask = np.asanyarray(label.dataobj)
        assert set(np.unique(mask).tolist()) <= set(labels.values()), (case, np.unique(mask))
        np.testing.assert_array_equal(mask, np.asanyarray(nib.load(lesion).dataobj) > 0)
    print(f"nnU-Net layout ok: {len(cases)} cases, {len(channels)} channel(s)")


if __name__ == "__main__":
    main()
