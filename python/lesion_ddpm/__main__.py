"""Command line of the Python twin (docs/python.md):

  python3 -m lesion_ddpm info --weights W.pt [--config config.ini]
  python3 -m lesion_ddpm sample --weights W.pt [--config config.ini] --masks DIR --out DIR
      [--seed S] [--sampler ddim|ddpm] [--steps K] [--eta E] [--threads N]

`sample` synthesises FLAIR for every case of DIR, a folder with tissue/ID.nii.gz (labels 0
background, 1 CSF, 2 GM, 3 WM) and lesion/ID.nii.gz (0/1) — the layout `lddpm sample` writes —
into OUT/ID.nii.gz with the geometry of the tissue file. With the same weights, seed and sampler
the result is `lddpm sample`'s (docs/python.md gives the measured agreement)."""
import argparse
import glob
import os
import sys
import time

import numpy as np
import torch

from . import models


def _read(path):
    import nibabel as nib
    image = nib.load(path)
    return image, torch.from_numpy(np.ascontiguousarray(np.asarray(image.dataobj).transpose(2, 1, 0)))


def _write(path, reference, volume):
    import nibabel as nib
    data = volume.cpu().numpy().astype(np.float32).transpose(2, 1, 0)
    out = nib.Nifti1Image(data, reference.affine, reference.header)
    out.set_data_dtype(np.float32)
    out.header.set_slope_inter(1, 0)
    tmp = path + ".tmp.nii.gz"
    nib.save(out, tmp)
    os.replace(tmp, path)  # a reader never sees half a file


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m lesion_ddpm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("info", "sample"):
        p = sub.add_parser(name)
        p.add_argument("--weights", required=True, help="a file written by lddpm export")
        p.add_argument("--config", help="the run's config.ini (default: beside --weights)")
        if name == "sample":
            p.add_argument("--masks", required=True, help="folder with tissue/ and lesion/")
            p.add_argument("--out", required=True)
            p.add_argument("--seed", type=int, default=0)
            p.add_argument("--sampler", choices=("ddim", "ddpm"), default="ddim")
            p.add_argument("--steps", type=int, default=None,
                           help="DDIM steps (default: the model's --train-steps, else 50)")
            p.add_argument("--eta", type=float, default=0.0)
            p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
            p.add_argument("--condition-cache-mib", type=int, default=4096,
                           help="memory for the mask's modulation maps, made once per case "
                                "(speed only: the same bits)")
    a = parser.parse_args(argv)
    try:
        model = models.load(a.weights, a.config)
    except (OSError, ValueError, RuntimeError) as e:
        print(f"lesion_ddpm: {e}", file=sys.stderr)
        return 1
    count = sum(p.numel() for p in model.parameters())
    if a.command == "info":
        print(f"{model.config.model}: {count:,} parameters ({a.weights})")
        return 0
    if not hasattr(model, "synthesize"):
        print(f"lesion_ddpm: option '--weights': a {model.config.model} model does not synthesise",
              file=sys.stderr)
        return 2
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    if not 0 <= a.condition_cache_mib <= 1 << 30:
        print("lesion_ddpm: option '--condition-cache-mib': must be in [0, 2^30]", file=sys.stderr)
        return 2
    tissues = sorted(glob.glob(os.path.join(a.masks, "tissue", "*.nii.gz")))
    if not tissues:
        print(f"lesion_ddpm: option '--masks': no tissue/*.nii.gz in {a.masks}", file=sys.stderr)
        return 2
    os.makedirs(a.out, exist_ok=True)
    for number, tissue_path in enumerate(tissues, 1):
        case = os.path.basename(tissue_path)[:-len(".nii.gz")]
        lesion_path = os.path.join(a.masks, "lesion", case + ".nii.gz")
        if not os.path.exists(lesion_path):
            print(f"lesion_ddpm: {lesion_path}: missing (case {case} has a tissue mask)",
                  file=sys.stderr)
            return 1
        reference, tissue = _read(tissue_path)
        _, lesion = _read(lesion_path)
        start = time.time()
        synthetic = model.synthesize(models.condition_from_labels(tissue, lesion),
                                     models.case_generators(a.seed, [case]), sampler=a.sampler,
                                     steps=a.steps, eta=a.eta,
                                     condition_cache_bytes=a.condition_cache_mib << 20)
        _write(os.path.join(a.out, case + ".nii.gz"), reference, synthetic[0, 0])
        print(f"sample {number}/{len(tissues)} {case}: {time.time() - start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
