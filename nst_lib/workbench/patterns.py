"""Procedural style images: the 'honeycomb' and 'mandala' patterns of seed 001 (whose originals are not
freely licensed), drawn with NumPy so they can be regenerated bit for bit: ``nst patterns data/style``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ConfigError, NSTError
from ..images import save_image, to_uint8


def honeycomb(size: int = 512, cell: float = 40.0, seed: int = 0) -> np.ndarray:
    """Amber hexagonal cells with dark wax walls: float RGB [0, 255], size×size."""
    rng = np.random.default_rng(seed)
    dy = cell * np.sqrt(3) / 2
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    row = np.round(yy / dy)
    best = np.full((2, size, size), np.inf)
    best_id = np.zeros((size, size), np.int64)
    for dr in (-1, 0, 1):
        r = row + dr
        offset = (r % 2) * cell / 2
        col = np.round((xx - offset) / cell)
        for dc in (-1, 0, 1):
            c = col + dc
            d = np.hypot(xx - (c * cell + offset), yy - r * dy)
            closer = d < best[0]
            best[1] = np.where(closer, best[0], np.minimum(best[1], d))
            best_id = np.where(closer, (r * 10_000 + c).astype(np.int64), best_id)
            best[0] = np.where(closer, d, best[0])
    edge = best[1] - best[0]  # 0 on a wall between two cells
    _, inverse = np.unique(best_id, return_inverse=True)
    tint = rng.uniform(0.75, 1.1, inverse.max() + 1)[inverse.reshape(size, size)]
    amber = np.array([235.0, 160.0, 30.0])
    shade = np.clip(0.55 + 0.45 * (edge / (cell * 0.5)), 0, 1)[..., None]
    image = amber * shade * tint[..., None]
    wall = np.clip(1 - edge / (cell * 0.08), 0, 1)[..., None]
    image = image * (1 - wall) + np.array([90.0, 50.0, 10.0]) * wall
    return np.clip(image, 0, 255).astype(np.float32)


def mandala(size: int = 512, rings: int = 7, seed: int = 0) -> np.ndarray:
    """Concentric rings of petals with growing symmetry order: float RGB [0, 255], size×size."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    x, y = (xx - size / 2 + 0.5) / (size / 2), (yy - size / 2 + 0.5) / (size / 2)
    r, theta = np.hypot(x, y), np.arctan2(y, x)
    band_f = r * rings
    band = np.floor(band_f).astype(int)
    local = band_f - band
    palette = rng.uniform(40, 255, (rings + 1, 3))
    petals = 6 + 2 * band
    petal = np.abs(np.cos(petals * theta / 2)) ** 1.5 > local
    colour = palette[np.minimum(band, rings)]
    dark = colour * 0.25
    image = np.where(petal[..., None], colour * (0.6 + 0.4 * (1 - local))[..., None], dark)
    ring_line = (np.abs(local - 0.5) > 0.46)[..., None]
    image = np.where(ring_line, np.array([250.0, 240.0, 210.0]), image)
    image = np.where((r > 1.0)[..., None], np.array([20.0, 10.0, 40.0]), image)
    return np.clip(image, 0, 255).astype(np.float32)


def write_patterns(out_dir: str | Path, size: int = 512, force: bool = False) -> list[Path]:
    """``honeycomb.png`` and ``mandala.png`` at ``size`` px in ``out_dir``. Writing the same pixels again is what
    regenerating them means; a file of the same name holding another image (``data/style``'s at another size) is
    replaced only with ``force``."""
    if not size > 0:
        raise ConfigError(f"size must be positive, got {size}")
    out = Path(out_dir)
    images = {out / "honeycomb.png": to_uint8(honeycomb(size)), out / "mandala.png": to_uint8(mandala(size))}
    if not force:
        for path, image in images.items():
            if path.exists() and not _holds(path, image):
                raise NSTError(f"{path}: exists and holds another image; --force (force=True) replaces it")
    return [save_image(path, image) for path, image in images.items()]


def _holds(path: Path, image: np.ndarray) -> bool:
    try:
        with Image.open(path) as f:
            return np.array_equal(np.asarray(f.convert("RGB")), image)
    except (OSError, ValueError):  # unreadable: another file, not this image
        return False
