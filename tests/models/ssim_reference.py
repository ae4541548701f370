"""Independent SSIM / MS-SSIM references for MetricsTest (run with Debian's /usr/bin/python3).

usage: ssim_reference.py REAL.f64 SYNTHETIC.f64 D H W WINDOW SIGMA
  The two files hold D*H*W little-endian float64 voxels, W fastest. Prints two lines:
    ssim <value>            scipy.ndimage, the way skimage.metrics.structural_similarity does it
                            (gaussian_weights=True, use_sample_covariance=False, data_range=L)
    ms_ssim <value> <n>     torch.nn.functional, the way MONAI's compute_ms_ssim does it
  with L = max - min of the real volume. Neither path shares code with models/Metrics.cpp.
"""
import sys

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

K1, K2 = 0.01, 0.03
WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def ssim_skimage_way(x, y, L, window, sigma):
    # skimage filters the whole volume (reflect padding at the border) with a Gaussian truncated at
    # radius r = int(truncate * sigma + 0.5), then averages the SSIM map with r voxels cropped from
    # every side. The cropped positions are exactly those whose window lies inside the volume, so
    # the padding never reaches the mean: this is MONAI's valid-region mean, computed another way.
    r = (window - 1) // 2
    truncate = (r + 0.25) / sigma  # any truncate giving int(truncate*sigma + 0.5) == r
    assert int(truncate * sigma + 0.5) == r
    f = lambda a: gaussian_filter(a, sigma=sigma, truncate=truncate, mode="reflect")
    ux, uy = f(x), f(y)
    vx = f(x * x) - ux * ux  # use_sample_covariance=False: population moments
    vy = f(y * y) - uy * uy
    vxy = f(x * y) - ux * uy
    c1, c2 = (K1 * L) ** 2, (K2 * L) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s[r:-r or None, r:-r or None, r:-r or None].mean()


def monai_kernel(window, sigma):
    d = torch.arange(start=(1 - window) / 2, end=(1 + window) / 2, step=1, dtype=torch.float64)
    g = torch.exp(-torch.pow(d / sigma, 2) / 2)
    g = g / g.sum()
    return (g[:, None, None] * g[None, :, None] * g[None, None, :])[None, None]  # [1,1,k,k,k]


def ssim_and_cs_monai_way(x, y, L, kernel):
    mu_x, mu_y = F.conv3d(x, kernel), F.conv3d(y, kernel)
    sxx = F.conv3d(x * x, kernel) - mu_x * mu_x
    syy = F.conv3d(y * y, kernel) - mu_y * mu_y
    sxy = F.conv3d(x * y, kernel) - mu_x * mu_y
    c1, c2 = (K1 * L) ** 2, (K2 * L) ** 2
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    ssim = ((2 * mu_x * mu_y + c1) / (mu_x ** 2 + mu_y ** 2 + c1)) * cs
    return ssim.mean().item(), cs.mean().item()


def ms_ssim_monai_way(x, y, L, window, sigma):
    sides = x.shape
    n = 0
    while n < len(WEIGHTS) and all(s // 2 ** n >= window for s in sides):
        n += 1
    weights = np.array(WEIGHTS[:n]) / sum(WEIGHTS[:n])
    kernel = monai_kernel(window, sigma)
    tx = torch.from_numpy(x)[None, None]
    ty = torch.from_numpy(y)[None, None]
    terms = []
    for _ in range(n):
        ssim, cs = ssim_and_cs_monai_way(tx, ty, L, kernel)
        terms.append(max(cs, 0.0))
        tx, ty = F.avg_pool3d(tx, kernel_size=2), F.avg_pool3d(ty, kernel_size=2)
    terms[-1] = max(ssim, 0.0)
    return float(np.prod(np.array(terms) ** weights)), n


def main():
    real_path, synthetic_path, d, h, w, window, sigma = sys.argv[1:8]
    shape = (int(d), int(h), int(w))
    x = np.fromfile(real_path, dtype="<f8").reshape(shape)
    y = np.fromfile(synthetic_path, dtype="<f8").reshape(shape)
    L = x.max() - x.min()
    window, sigma = int(window), float(sigma)
    print("ssim %.17g" % ssim_skimage_way(x, y, L, window, sigma))
    value, n = ms_ssim_monai_way(x, y, L, window, sigma)
    print("ms_ssim %.17g %d" % (value, n))


if __name__ == "__main__":
    main()
