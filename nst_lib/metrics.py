"""Image similarity numbers used by tests, experiments and notebooks: SSIM and saturation (seed 003's identity and
grayscale tests), Gram-statistics descriptors and distances, layout distance after a low-pass, and how evenly a
path of images moves."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from .images import rgb_to_yiq
from .losses import gram_matrix


def ssim(a: np.ndarray, b: np.ndarray, sigma: float = 1.5, data_range: float = 255.0) -> float:
    """Mean SSIM (Wang et al. 2004, Gaussian window σ=1.5) on the luminance of two RGB images of one shape, on
    the 0–255 scale (``data_range``: images in 0..1 need ``data_range=1``, or they score near 1 whatever they are)."""
    if np.shape(a) != np.shape(b):
        raise ValueError(f"ssim: images of one shape, got {np.shape(a)} and {np.shape(b)}")
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


def gram_descriptors(images: np.ndarray, extractor, layers) -> np.ndarray:
    """One vector per uint8 image: its normalised Gram matrices (Ĝ = FᵀF/M) on ``layers`` of
    ``extractor``, each divided by its channel count N (so that, as in the 'size' style loss, the squared
    distance between two descriptors is 4 × their style loss summed over the layers), concatenated."""
    feats = extractor(np.asarray(images, np.float32))
    parts = []
    for layer in layers:
        g = np.asarray(gram_matrix(feats[layer]))
        parts.append(g.reshape(len(g), -1) / g.shape[-1])
    return np.concatenate(parts, axis=1)


def gram_distance(images: np.ndarray, targets: np.ndarray, extractor, layers) -> float:
    """Mean over every (image, target) pair of ‖d(image) − d(target)‖², d = ``gram_descriptors``: 4 × the
    'size' style loss summed over ``layers``. How far a set of images is from a set of paintings in style."""
    d_images = gram_descriptors(images, extractor, layers)
    d_targets = gram_descriptors(targets, extractor, layers)
    return float(np.mean([np.sum((d_targets - d) ** 2, axis=1).mean() for d in d_images]))


def lowpass_distance(a: np.ndarray, b: np.ndarray, grid: int = 8) -> float:
    """Mean absolute difference in grey levels between the grid×grid block means of two images (or two batches
    of equal shape): how far apart their layouts are once the detail finer than 1/grid of the image is
    averaged away. Sides must be multiples of ``grid``."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} and {b.shape}")
    h, w = a.shape[-3:-1]
    if h % grid or w % grid:
        raise ValueError(f"{h}×{w} px is not a multiple of the {grid}×{grid} grid")

    def low(x):
        x = x.reshape(-1, grid, h // grid, grid, w // grid, x.shape[-1])
        return x.mean(axis=(2, 4))

    return float(np.abs(low(a) - low(b)).mean())


def path_evenness(descriptors: np.ndarray) -> dict:
    """How evenly a path of K images (in order, e.g. an interpolation in style space) moves in a descriptor
    space. With steps Δ_k = ‖d_{k+1} − d_k‖:
      cv         std(Δ)/mean(Δ): 0 when every step is equally large
      max_share  max(Δ)/ΣΔ: 1/(K−1) for even steps, near 1 when one step carries the whole change
      straightness  ‖d_K − d_1‖ / ΣΔ: 1 for a straight path, smaller when it detours
      from_start, to_end  ‖d_k − d_1‖ and ‖d_k − d_K‖ divided by ‖d_K − d_1‖ (linear in k for an even path)
    """
    d = np.asarray(descriptors, np.float64).reshape(len(descriptors), -1)
    if len(d) < 3:
        raise ValueError("a path needs at least 3 points")
    steps = np.linalg.norm(np.diff(d, axis=0), axis=1)
    total = steps.sum()
    span = np.linalg.norm(d[-1] - d[0])
    scale = span if span > 0 else 1.0
    return {
        "cv": float(steps.std() / steps.mean()) if steps.mean() > 0 else 0.0,
        "max_share": float(steps.max() / total) if total > 0 else 0.0,
        "straightness": float(span / total) if total > 0 else 1.0,
        "from_start": np.linalg.norm(d - d[0], axis=1) / scale,
        "to_end": np.linalg.norm(d - d[-1], axis=1) / scale,
    }
