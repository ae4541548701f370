#!/usr/bin/python3
"""Write synthetic (or mixed real + synthetic) scans as an nnU-Net raw dataset or in the MSLesSeg
layout (docs/downstream.md).

Reads folders written by `lddpm sample` (synthetic/, real/ and lesion/ NIfTIs per case, on the
store's grid) and writes, with --layout nnunet (the default), nnU-Net v2's raw layout:

  OUT/dataset.json           channel_names {"0": "FLAIR"}, labels {"background": 0, "lesion": 1},
                             numTraining, file_ending ".nii.gz", and where every case came from
  OUT/imagesTr/CASE_0000.nii.gz   FLAIR (float32)
  OUT/labelsTr/CASE.nii.gz        the lesion mask the scan was generated from (uint8 0/1)

CASE is NAME_<case> for each --samples NAME=DIR and real_<case> for the real scans (--with-real).

With --layout mslesseg, the MSLesSeg training layout, one patient per case, numbered in the same
order, FLAIR and MASK only (the generators synthesise FLAIR; MSLesSeg's T1 and T2 do not exist):

  OUT/train/P<n>/T1/P<n>_T1_FLAIR.nii.gz, OUT/train/P<n>/T1/P<n>_T1_MASK.nii.gz
  OUT/lesion_ddpm_cases.json   P<n>_T1 -> the case name above and the files it came from
Every written file carries the real scan's affine, shape and voxel size (sform and qform), so an
image and its label, and a synthetic scan and the real scan of the same mask, overlay exactly.
OUT is written in a temporary folder beside it and renamed when complete: a failed export leaves
nothing that looks like a dataset. OUT must not exist.

  /usr/bin/python3 launch/export_dataset.py --out nnUNet_raw/Dataset501_LesionDDPM \\
      --samples lesion-ddpm=downstream/samples/lesion-ddpm [--samples NAME=DIR ...] [--with-real]
      [--layout nnunet|mslesseg]

Exit codes: 0 written, 1 bad input (the message names the file), 2 usage error.
"""
import argparse
import json
import os
import re
import shutil
import sys

import nibabel as nib
import numpy as np

SUFFIXES = (".nii.gz", ".nii")


class InputError(Exception):
    pass


def case_files(folder):
    """{case id: path} of the NIfTIs in FOLDER."""
    if not os.path.isdir(folder):
        raise InputError(f"{folder}: no such folder (is it a `lddpm sample --out` folder?)")
    cases = {}
    for name in sorted(os.listdir(folder)):
        for suffix in SUFFIXES:
            if name.endswith(suffix):
                cases[name[: -len(suffix)]] = os.path.join(folder, name)
    return cases


def load_checked(path, like=None):
    try:
        image = nib.load(path)
        data = np.asanyarray(image.dataobj)
    except Exception as e:  # nibabel raises several types for a broken file
        raise InputError(f"{path}: cannot read as NIfTI ({e})") from e
    if data.ndim != 3:
        raise InputError(f"{path}: {data.ndim}-D, expected a 3-D volume")
    if not np.all(np.isfinite(data)):
        raise InputError(f"{path}: non-finite voxels")
    if like is not None:
        if data.shape != like[1].shape:
            raise InputError(f"{path}: shape {data.shape} differs from {like[0]} {like[1].shape}")
        if not np.allclose(image.affine, like[2].affine, atol=1e-3):
            raise InputError(f"{path}: affine differs from {like[0]}'s")
    return path, data, image


def write_like(path, data, reference, dtype):
    """DATA with REFERENCE's geometry: affine in sform and qform, voxel sizes, shape."""
    header = reference.header.copy()
    header.set_data_dtype(dtype)
    image = nib.Nifti1Image(np.asarray(data, dtype=dtype), reference.affine, header)
    image.set_sform(reference.affine, code=1)
    image.set_qform(reference.affine, code=1)
    nib.save(image, path)


def write_nnunet(out, case_id, number, image, mask, reference):
    """imagesTr/CASE_0000.nii.gz and labelsTr/CASE.nii.gz; returns the case name (CASE)."""
    for folder in ("imagesTr", "labelsTr"):
        os.makedirs(os.path.join(out, folder), exist_ok=True)
    write_like(os.path.join(out, "imagesTr", f"{case_id}_0000.nii.gz"), image, reference, np.float32)
    write_like(os.path.join(out, "labelsTr", f"{case_id}.nii.gz"), mask, reference, np.uint8)
    return case_id


def write_mslesseg(out, case_id, number, image, mask, reference):
    """train/P<n>/T1/P<n>_T1_{FLAIR,MASK}.nii.gz; returns the scan id P<n>_T1."""
    scan = f"P{number}_T1"
    folder = os.path.join(out, "train", f"P{number}", "T1")
    os.makedirs(folder, exist_ok=True)
    write_like(os.path.join(folder, f"{scan}_FLAIR.nii.gz"), image, reference, np.float32)
    write_like(os.path.join(folder, f"{scan}_MASK.nii.gz"), mask, reference, np.uint8)
    return scan


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="the dataset folder, e.g. Dataset501_LesionDDPM")
    parser.add_argument("--samples", action="append", default=[], metavar="NAME=DIR",
                        help="a `lddpm sample` output folder; NAME prefixes its cases")
    parser.add_argument("--with-real", action="store_true",
                        help="add each case's real scan once (a mixed real + synthetic dataset)")
    parser.add_argument("--layout", choices=("nnunet", "mslesseg"), default="nnunet",
                        help="nnU-Net v2 raw dataset (default) or the MSLesSeg training layout")
    a = parser.parse_args()
    sources = []
    for spec in a.samples:
        name, sep, folder = spec.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z0-9-]+", name) or not folder:
            parser.error(f"option '--samples': '{spec}' is not NAME=DIR (NAME of letters, digits, -)")
        if name == "real" or name in [n for n, _ in sources]:
            parser.error(f"option '--samples': name '{name}' is reserved or given twice")
        sources.append((name, folder))
    if not sources:
        parser.error("option '--samples': give at least one NAME=DIR")
    out = os.path.abspath(a.out)
    if os.path.exists(out):
        parser.error(f"option '--out': {out} exists; give a new folder")
    if a.layout == "nnunet" and not re.fullmatch(r"Dataset\d{3}_[A-Za-z0-9_-]+",
                                                 os.path.basename(out)):
        print(f"export_dataset: note: nnU-Net looks for folders named DatasetXXX_NAME under "
              f"nnUNet_raw; '{os.path.basename(out)}' is not one", file=sys.stderr)

    tmp = os.path.join(os.path.dirname(out), f".{os.path.basename(out)}.tmp-{os.getpid()}")
    try:
        write = write_nnunet if a.layout == "nnunet" else write_mslesseg
        os.makedirs(tmp)
        provenance, real_written = {}, set()
        for name, folder in sources:
            synthetic = case_files(os.path.join(folder, "synthetic"))
            real = case_files(os.path.join(folder, "real"))
            lesion = case_files(os.path.join(folder, "lesion"))
            if not synthetic:
                raise InputError(f"{folder}/synthetic: no NIfTI files")
            for case, path in synthetic.items():
                for kind, files in (("real", real), ("lesion", lesion)):
                    if case not in files:
                        raise InputError(f"{path}: no {kind}/{case}.nii* beside it in {folder}")
                ref = load_checked(real[case])
                syn = load_checked(path, like=ref)
                mask = load_checked(lesion[case], like=ref)
                values = np.unique(mask[1])
                if not set(values.tolist()) <= {0, 1}:
                    raise InputError(f"{mask[0]}: values {values[:5].tolist()} are not 0/1")
                entries = [(f"{name}_{case}", syn, path)]
                if a.with_real and case not in real_written:
                    entries.append((f"real_{case}", ref, ref[0]))
                    real_written.add(case)
                for case_id, (_, data, _), source in entries:
                    name_written = write(tmp, case_id, len(provenance) + 1, data, mask[1], ref[2])
                    provenance[name_written] = {"case": case_id, "image": os.path.abspath(source),
                                                "label": os.path.abspath(mask[0])}
        if a.layout == "nnunet":
            metadata, what = "dataset.json", "training cases"
            content = {
                "channel_names": {"0": "FLAIR"},
                "labels": {"background": 0, "lesion": 1},
                "numTraining": len(provenance),
                "file_ending": ".nii.gz",
                "name": os.path.basename(out),
                "description": "MS lesion FLAIR written by lesion-ddpm's launch/export_dataset.py "
                               "from " + ", ".join(f"{n}={os.path.abspath(f)}" for n, f in sources)
                               + (" with the real scans" if a.with_real else ""),
                "lesion_ddpm_cases": provenance,
            }
        else:
            metadata, what, content = "lesion_ddpm_cases.json", "scans in the MSLesSeg layout", provenance
        with open(os.path.join(tmp, metadata), "w") as f:
            json.dump(content, f, indent=1)
        os.rename(tmp, out)
    except InputError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"export_dataset: error: {e}", file=sys.stderr)
        return 1
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"export_dataset: {len(provenance)} {what} in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
