"""Image similarity numbers used by tests and notebooks (identity and grayscale tests of seed 003)."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from .images import rgb_to_yiq


def ssim(a: np.ndarray, b: np.ndarray, sigma: float = 1.5, data_range: float = 255.0) -> float:
    """Mean SSIM (Wang et al. 2004, Gaussian window σ=1.5) on the luminance of two RGB images."""
    x = rgb_to_yiq(np.asarray(a, np.float32))[..., 0].astype(np.float64)
    y = rgb_to_yiq(np.asarray(b, np.float32))[..., 0].astype(np.float64)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = gaussian_filter(x, sigma), gaussian_filter(y, sigma)
    vx = gaussian_filter(x * x, sigma) - mx * mx
    vy = gaussian_filter(y * y, sigma) - my * my
    cxy = gaussian_filter(x * y, sigma) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s.mean())


def mean_saturation(image: np.ndarray) -> float:
    """Mean HSV saturation in [0, 1]: 0 for a gray image."""
    rgb = np.asarray(image, np.float64)
    mx, mn = rgb.max(axis=-1), rgb.min(axis=-1)
    return float(np.where(mx > 0, (mx - mn) / np.maximum(mx, 1e-12), 0.0).mean())
