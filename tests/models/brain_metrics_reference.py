"""Independent references for the brain-aware metrics of MetricsTest (Debian's /usr/bin/python3).

usage: brain_metrics_reference.py REAL.f64 SYNTHETIC.f64 TISSUE.u8 LESION.u8 D H W WINDOW
  REAL/SYNTHETIC hold D*H*W little-endian float64 voxels, TISSUE/LESION as many uint8 (W fastest);
  tissue labels 0 background, 1 CSF, 2 GM, 3 WM. Prints "key value" lines:
    brain_ssim, background_ssim  skimage's way (scipy.ndimage.gaussian_filter over the whole volume,
                                  reflect padding, population moments), the SSIM map cropped by the
                                  window radius and averaged over the region's voxels there
    brain_psnr                    10 log10(L^2 / MSE over the brain), L = max - min of REAL
    brain_mae                     mean |REAL - SYNTHETIC| over the brain
    texture                       std (ddof 0) of SYNTHETIC - gaussian_filter(SYNTHETIC, 1, truncate=2,
                                  mode='nearest') over binary_erosion(NAWM, 3x3x3, border_value=0)
    lesion_contrast, csf_contrast, gm_contrast   of SYNTHETIC, against the NAWM mean
  brain = tissue > 0 or lesion; NAWM = tissue 3 and not lesion. No code is shared with
  models/Metrics.cpp.
"""
import sys

import numpy as np
from scipy.ndimage import binary_erosion, gaussian_filter

K1, K2, SIGMA = 0.01, 0.03, 1.5


def ssim_map(x, y, L, window):
    r = (window - 1) // 2
    truncate = (r + 0.25) / SIGMA
    f = lambda a: gaussian_filter(a, sigma=SIGMA, truncate=truncate, mode="reflect")
    ux, uy = f(x), f(y)
    vx, vy, vxy = f(x * x) - ux * ux, f(y * y) - uy * uy, f(x * y) - ux * uy
    c1, c2 = (K1 * L) ** 2, (K2 * L) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s, r


def main():
    real_f, syn_f, tissue_f, lesion_f = sys.argv[1:5]
    d, h, w, window = (int(v) for v in sys.argv[5:9])
    real = np.fromfile(real_f, "<f8").reshape(d, h, w)
    syn = np.fromfile(syn_f, "<f8").reshape(d, h, w)
    tissue = np.fromfile(tissue_f, np.uint8).reshape(d, h, w)
    lesion = np.fromfile(lesion_f, np.uint8).reshape(d, h, w) > 0
    brain = (tissue > 0) | lesion
    L = real.max() - real.min()
    s, r = ssim_map(real, syn, L, window)
    crop = (slice(r, d - r), slice(r, h - r), slice(r, w - r))
    print("brain_ssim", repr(s[crop][brain[crop]].mean()))
    print("background_ssim", repr(s[crop][~brain[crop]].mean()))
    mse = ((real - syn) ** 2)[brain].mean()
    print("brain_psnr", repr(10 * np.log10(L * L / mse)))
    print("brain_mae", repr(np.abs(real - syn)[brain].mean()))
    nawm = (tissue == 3) & ~lesion
    residual = syn - gaussian_filter(syn, sigma=1.0, truncate=2.0, mode="nearest")
    eroded = binary_erosion(nawm, structure=np.ones((3, 3, 3)), border_value=0)
    print("texture", repr(residual[eroded].std()))
    wm = syn[nawm].mean()
    print("lesion_contrast", repr(syn[lesion].mean() - wm))
    print("csf_contrast", repr(syn[(tissue == 1) & ~lesion].mean() - wm))
    print("gm_contrast", repr(syn[(tissue == 2) & ~lesion].mean() - wm))


if __name__ == "__main__":
    main()
