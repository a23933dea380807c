"""Image-folder datasets for training the generative models, and a tiny bundled painting set.

    data = load_image_folder("wikiart/landscape", size=64)     # decoded once, centre-cropped, resized
    ds = data.dataset(batch_size=128, seed=0)                  # tf.data: float32 in [-1, 1], NHWC

Files are decoded up front (in threads, with a progress bar) rather than inside the tf.data graph: an
unreadable file is then skipped with its name and a count before training starts, never a crash mid-epoch,
and every format Pillow reads works. The decoded set is held as uint8 (N×size×size×3: 15,000 images at
64 px are 184 MB) and, with ``cache_dir``, stored as an .npz keyed by the file list (sizes, times), the size and
the decoder's version, so a second run skips decoding. Training batches come from a tf.data pipeline over that
array: a seeded permutation per epoch (so a run resumed at epoch k sees exactly the batches the uninterrupted run
saw), optional horizontal flips, scaling to [-1, 1], batching and prefetch.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..errors import NSTError
from ..images import centre_crop_resize

# nst_lib.data.to_unit / from_unit: the conversions live in nst_lib.images and are re-exported here
from ..images import from_unit as from_unit
from ..images import to_unit as to_unit

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")
DATA_DIR = Path(__file__).resolve().parents[2] / "data"
# the bundled paintings (data/README.md has their licences); textures and generated patterns excluded
BUNDLED_PAINTINGS = (
    "vangogh_starry_night.jpg",
    "munch_the_scream.jpg",
    "hokusai_great_wave.jpg",
    "kandinsky_composition_vii.jpg",
    "turner_shipwreck_of_the_minotaur.jpg",
    "monet_houses_of_parliament_sunset_small.jpg",
    "picabia_udnie.jpg",
    "mondrian.jpg",
)
BUNDLED_PHOTOS = (
    "tubingen_neckarfront.jpg",
    "matplotlib_grace_hopper.jpg",
    "skimage_astronaut.png",
    "skimage_chelsea.png",
    "skimage_coffee.png",
    "skimage_rocket.jpg",
)


class DataError(NSTError):
    """A dataset folder that is missing, empty, or holds no readable image. The message names the folder."""


@dataclass
class ImageFolder:
    """Square uint8 RGB images (N×size×size×3) with where they came from.

    ``spec`` rebuilds the same set (``from_spec``), so a training run folder can reload its data on resume;
    ``skipped`` lists (file, reason) for files that could not be read."""

    images: np.ndarray
    files: list[str]
    spec: dict[str, Any]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def size(self) -> int:
        return int(self.images.shape[1])

    def steps_per_epoch(self, batch_size: int) -> int:
        """Full batches per epoch (the last partial batch is dropped, as BatchNorm needs full batches)."""
        steps = len(self) // batch_size
        if steps == 0:
            raise DataError(
                f"{self.spec.get('path', 'dataset')}: {len(self)} images, fewer than one batch of {batch_size}"
            )
        return steps

    def dataset(self, batch_size: int = 128, seed: int = 0, initial_epoch: int = 0, flip: bool = False):
        """An endless tf.data stream of float32 batches in [-1, 1], epoch after epoch from ``initial_epoch``.

        Epoch e is the permutation drawn from (seed, e), cut into ``steps_per_epoch(batch_size)`` full
        batches; ``flip`` mirrors each image with probability ½, also drawn from (seed, e, index)."""
        import tensorflow as tf

        steps = self.steps_per_epoch(batch_size)
        images = tf.constant(self.images)
        n = len(self)
        seed = int(seed)

        def epoch(e):
            order = tf.random.experimental.stateless_shuffle(tf.range(n), seed=tf.stack([tf.cast(seed, tf.int64), e]))
            order = order[: steps * batch_size]
            return tf.data.Dataset.from_tensor_slices(tf.reshape(order, (steps, batch_size))).map(lambda idx: (idx, e))

        def to_batch(idx, e):
            x = tf.cast(tf.gather(images, idx), tf.float32) / 127.5 - 1.0
            if flip:
                coin = tf.random.stateless_uniform(
                    (batch_size, 1, 1, 1), seed=tf.stack([e * 1_000_003 + seed, tf.cast(idx[0], tf.int64)])
                )
                x = tf.where(coin < 0.5, tf.reverse(x, axis=[2]), x)
            return x

        return _batches(tf.data.Dataset.range(int(initial_epoch), 2**62).flat_map(epoch), to_batch)

    @property
    def groups(self) -> np.ndarray:
        """An integer group per image: the painting a bundled crop came from (``name#crop<i>``), or the
        first sub-folder under its dataset folder (WikiArt's ``<artist or style>/<file>`` layout; in a ``union``,
        under the folder of its own part); one group for the files directly in a folder."""
        roots = _folder_roots(self.spec)
        keys = []
        for f in self.files:
            crop = _CROP.fullmatch(f)
            if crop:
                keys.append(f"crop of {crop.group(1)}")
                continue
            for root in roots:
                try:
                    parts = Path(f).relative_to(root).parts
                except ValueError:
                    continue
                keys.append(f"{root}/{parts[0] if len(parts) > 1 else ''}")
                break
            else:
                keys.append(str(Path(f).parent))
        names = {k: i for i, k in enumerate(dict.fromkeys(keys))}
        return np.array([names[k] for k in keys], np.int64)

    @property
    def fingerprint(self) -> str:
        """A digest of the decoded pixels: a training run records it, so that resuming or reusing it on a folder
        whose images changed is noticed (the spec names the folder, not what it holds)."""
        return _pixels_digest(self.images)

    def sample(self, n: int, seed: int = 0) -> np.ndarray:
        """``n`` distinct images (uint8) drawn with ``seed``; all of them if ``n`` ≥ the set's size."""
        rng = np.random.default_rng(seed)
        idx = rng.permutation(len(self))[: min(n, len(self))]
        return self.images[np.sort(idx)]


# a bundled crop's file name: <image>#crop<i>
_CROP = re.compile(r"(.*)#crop\d+")


def _folder_roots(spec: dict[str, Any]) -> list[str]:
    """The folders of a dataset's spec (a union's parts' too), longest first: a file's group is taken under the
    deepest one holding it."""
    if spec.get("kind") == "union":
        roots = [root for part in spec.get("parts", []) for root in _folder_roots(part)]
    else:
        roots = [spec["path"]] if spec.get("kind") == "folder" else []
    return sorted(dict.fromkeys(roots), key=len, reverse=True)


def _pixels_digest(images: np.ndarray) -> str:
    images = np.ascontiguousarray(images)
    h = hashlib.blake2b(repr((images.shape, str(images.dtype))).encode(), digest_size=16)
    h.update(images.data)  # no copy of a large set
    return h.hexdigest()


def list_images(folder: Path, recursive: bool = True) -> list[Path]:
    """The image files under ``folder`` in sorted order; a link to nothing is listed too, so that it is skipped
    and named with the unreadable files instead of vanishing."""
    pattern = "**/*" if recursive else "*"
    return sorted(
        p for p in folder.glob(pattern) if p.suffix.lower() in IMAGE_SUFFIXES and (p.is_file() or not p.exists())
    )


def _decode(path: Path, size: int) -> tuple[np.ndarray | None, str]:
    try:
        with Image.open(path) as img:
            return centre_crop_resize(img, size), ""
    except Exception as exc:  # any unreadable file is skipped and reported, whatever the cause
        return None, f"{type(exc).__name__}: {exc}"


# bumped when decoding changes what a file's pixels become, so that no cache serves the earlier ones
_DECODER = "2: any mode through images._pil_to_rgb, EXIF orientation"


def _cache_key(files: Sequence[Path], size: int) -> str:
    h = hashlib.sha256(f"{size}\0{_DECODER}".encode())
    for p in files:
        try:
            st = p.stat()
            stamp = f"{st.st_size}\0{st.st_mtime_ns}"
        except OSError:  # a link to nothing
            stamp = "missing"
        h.update(f"{p}\0{stamp}\n".encode())
    return h.hexdigest()[:16]


def _warn_skipped(folder: Path, skipped: list, total: int) -> None:
    if skipped:
        warnings.warn(
            f"{folder}: skipped {len(skipped)} unreadable file(s) of {total}, e.g. {skipped[0][0]} ({skipped[0][1]})",
            stacklevel=3,
        )


def load_image_folder(
    path: str | Path,
    size: int = 64,
    *,
    recursive: bool = True,
    limit: int | None = None,
    cache_dir: str | Path | None = None,
    workers: int = 8,
    progress: bool = True,
) -> ImageFolder:
    """Every image under ``path`` (sub-folders too unless ``recursive=False``), centre-cropped to a square
    and resized to ``size``. ``limit`` keeps the first ``limit`` files in sorted order. Unreadable files
    are skipped, counted and named in ``skipped`` (a warning says how many); an empty folder, or one
    whose files are all unreadable, raises ``DataError``."""
    folder = Path(path)
    if not folder.exists():
        raise DataError(f"{folder}: folder not found")
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    # recorded as an absolute path: a run resumed from another working folder finds its images again
    folder = folder.resolve()
    files = list_images(folder, recursive)
    if limit is not None:
        files = files[: int(limit)]
    if not files:
        raise DataError(
            f"{folder}: no images (looked for {' '.join(IMAGE_SUFFIXES)}{' in sub-folders too' if recursive else ''})"
        )
    spec = {"kind": "folder", "path": str(folder), "size": int(size), "recursive": recursive, "limit": limit}
    if cache_dir is not None:  # where a resume finds the decoded images again (not part of what the data is)
        spec["cache_dir"] = str(Path(cache_dir).resolve())

    cache_file = None
    if cache_dir is not None:
        cache_file = Path(cache_dir) / f"{folder.name}_{size}px_{_cache_key(files, size)}.npz"
        if cache_file.is_file():
            try:
                with np.load(cache_file, allow_pickle=False) as z:
                    skipped = [tuple(s) for s in json.loads(str(z["skipped"]))]
                    cached = ImageFolder(z["images"], list(z["files"]), spec, skipped)
            except Exception as exc:  # a damaged cache is decoded again, not a crash
                warnings.warn(f"{cache_file}: unreadable cache ({type(exc).__name__}); decoding again", stacklevel=2)
            else:
                _warn_skipped(folder, skipped, len(files))
                return cached

    images, kept, skipped = [], [], []
    with ThreadPoolExecutor(max(1, workers)) as pool:
        results = pool.map(lambda p: _decode(p, size), files)
        if progress:
            results = tqdm(results, total=len(files), desc=f"decoding {folder.name}", unit="img", leave=False)
        for p, (arr, why) in zip(files, results):
            if arr is None:
                skipped.append((str(p), why))
            else:
                images.append(arr)
                kept.append(str(p))
    if not images:
        raise DataError(
            f"{folder}: none of its {len(files)} image files could be read (first: {skipped[0][0]}: {skipped[0][1]})"
        )
    _warn_skipped(folder, skipped, len(files))
    data = ImageFolder(np.stack(images), kept, spec, skipped)
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        # this process's own temporary: two processes filling one cache must not rename each other's
        tmp = cache_file.with_name(f"{cache_file.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, images=data.images, files=np.array(kept), skipped=json.dumps(skipped))
        tmp.replace(cache_file)
    return data


def _batches(indices, to_batch):
    """The batches ``to_batch`` makes of each element of ``indices``, two at a time and two ahead, in order.

    tf.data's autotuning is off: its model, started with each iterator, held the end of a short ``fit`` for 5 s
    whenever its iterator was let go (measured on the 2-core CI machine: 4 steps of 1.3 s took 10.3 s instead of
    5.3 s in most calls), and gathering from images in memory has nothing for it to tune."""
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return indices.map(to_batch, num_parallel_calls=2, deterministic=True).prefetch(2).with_options(options)


def _tiny_crops(kind: str, folder: Path, names, n: int, size: int, seed: int, scale) -> ImageFolder:
    """``n`` seeded random square crops of the named images in ``folder``: each crop picks an image
    uniformly, a side between ``scale`` × its short side, a position, and a horizontal flip. Each crop's
    file name is ``<image>#crop<i>``, so ``groups`` puts crops of one image in one group."""
    rng = np.random.default_rng(seed)
    sources = []
    for name in names:
        with Image.open(folder / name) as img:
            sources.append(img.convert("RGB"))
    out = np.empty((n, size, size, 3), np.uint8)
    files = []
    for i in range(n):
        k = int(rng.integers(len(sources)))
        img = sources[k]
        w, h = img.size
        side = max(size // 2, int(min(w, h) * rng.uniform(*scale)))
        left, top = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        crop = img.crop((left, top, left + side, top + side)).resize((size, size), Image.LANCZOS)
        if rng.random() < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        out[i] = np.asarray(crop)
        files.append(f"{names[k]}#crop{i}")
    spec = {"kind": kind, "n": int(n), "size": int(size), "seed": int(seed), "scale": list(scale)}
    return ImageFolder(out, files, spec)


def tiny_paintings(
    n: int = 256, size: int = 64, seed: int = 0, scale: tuple[float, float] = (0.25, 1.0)
) -> ImageFolder:
    """``n`` seeded random square crops of the eight bundled paintings (data/style), resized to ``size``:
    a dataset that ships with the repository, for tests, CI and demos (one style group per painting)."""
    return _tiny_crops("tiny_paintings", DATA_DIR / "style", BUNDLED_PAINTINGS, n, size, seed, scale)


def tiny_photos(n: int = 256, size: int = 64, seed: int = 0, scale: tuple[float, float] = (0.25, 1.0)) -> ImageFolder:
    """``n`` seeded random square crops of the six bundled content photos (data/content): the content set
    that ships with the repository, the stand-in for Places365 in tests and CI."""
    return _tiny_crops("tiny_photos", DATA_DIR / "content", BUNDLED_PHOTOS, n, size, seed, scale)


def from_spec(spec: dict[str, Any], progress: bool = True) -> ImageFolder:
    """Rebuild the dataset an ``ImageFolder.spec`` describes (used when resuming a training run)."""
    spec = dict(spec)
    kind = spec.pop("kind", None)
    if kind in ("tiny_paintings", "tiny_photos"):
        spec["scale"] = tuple(spec.get("scale", (0.25, 1.0)))
        return (tiny_paintings if kind == "tiny_paintings" else tiny_photos)(**spec)
    if kind == "content_style":
        return ContentStyleData(from_spec(spec["content"], progress), from_spec(spec["style"], progress))
    if kind == "folder":
        if spec.get("cache_dir") and not Path(spec["cache_dir"]).is_dir():  # another machine's: decoded again
            spec.pop("cache_dir")
        return load_image_folder(spec.pop("path"), progress=progress, **spec)
    if kind == "union":
        return union(*(from_spec(part, progress) for part in spec["parts"]))
    if kind == "array":
        raise DataError("this run was trained on an in-memory array: pass the same data to resume it")
    raise DataError(f"unknown dataset kind {kind!r}")


def union(*folders: ImageFolder) -> ImageFolder:
    """One dataset holding the images of several (same size), e.g. photos and paintings for a VQGAN that
    must encode both."""
    if not folders:
        raise DataError("union: give at least one dataset")
    sizes = {f.size for f in folders}
    if len(sizes) > 1:
        raise DataError(f"union: datasets of different sizes {sorted(sizes)}: load them with one size")
    return ImageFolder(
        np.concatenate([f.images for f in folders]),
        [name for f in folders for name in f.files],
        {"kind": "union", "parts": [f.spec for f in folders]},
        [s for f in folders for s in f.skipped],
    )


def from_array(images: np.ndarray, name: str = "array") -> ImageFolder:
    """Wrap N×H×W×3 uint8 images (square) as a dataset."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.shape[1] != images.shape[2] or images.dtype != np.uint8:
        raise DataError(f"{name}: need square uint8 images N×S×S×3, got {images.dtype} {images.shape}")
    return ImageFolder(images, [f"{name}[{i}]" for i in range(len(images))], {"kind": "array", "name": name})


@dataclass
class ContentStyleData:
    """Content images paired with style images for the style autoencoders (seed 002: Places365 photos ×
    WikiArt paintings). An epoch is one pass over the content set in a seeded order; each content image is
    paired with a style image drawn uniformly, and with a *negative* style image from a different group
    (another painting, artist or style folder) for the fixpoint triplet loss."""

    content: ImageFolder
    style: ImageFolder

    def __post_init__(self) -> None:
        if self.content.size != self.style.size:
            raise DataError(
                f"content images are {self.content.size} px, style images {self.style.size} px: load both with one size"
            )

    def __len__(self) -> int:
        return len(self.content)

    @property
    def size(self) -> int:
        return self.content.size

    @property
    def spec(self) -> dict[str, Any]:
        return {"kind": "content_style", "content": self.content.spec, "style": self.style.spec}

    @property
    def skipped(self) -> list[tuple[str, str]]:
        return self.content.skipped + self.style.skipped

    @property
    def fingerprint(self) -> str:
        return f"{self.content.fingerprint}+{self.style.fingerprint}"

    def steps_per_epoch(self, batch_size: int) -> int:
        return self.content.steps_per_epoch(batch_size)

    @functools.cached_property
    def _other_groups(self) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        """The style images' groups and, per group, the images outside it (computed once, not per epoch)."""
        groups = self.style.groups
        return groups, {int(g): np.flatnonzero(groups != g) for g in np.unique(groups)}

    def _negatives(self, s: int) -> np.ndarray:
        """Candidate negatives for style image ``s``: another group's images; with a single group, any other image."""
        groups, others = self._other_groups
        candidates = others[int(groups[s])]
        if len(candidates) == 0:
            candidates = np.delete(np.arange(len(self.style)), s) if len(self.style) > 1 else np.array([s])
        return candidates

    def epoch_indices(self, epoch: int, batch_size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(content, style, negative style) indices of one epoch, each steps × batch_size; a function of
        (seed, epoch) only, so a resumed run sees the same pairs."""
        steps = self.steps_per_epoch(batch_size)
        rng = np.random.default_rng([int(seed), int(epoch), 7])
        content = rng.permutation(len(self.content))[: steps * batch_size]
        style = rng.integers(0, len(self.style), steps * batch_size)
        negative = np.empty_like(style)
        for i, s in enumerate(style):
            others = self._negatives(int(s))
            negative[i] = others[rng.integers(len(others))]
        shape = (steps, batch_size)
        return content.reshape(shape), style.reshape(shape), negative.reshape(shape)

    def dataset(self, batch_size: int = 16, seed: int = 0, initial_epoch: int = 0, flip: bool = False):
        """An endless tf.data stream of (content, style, negative style) float32 batches in [-1, 1], epoch
        after epoch from ``initial_epoch``; ``flip`` mirrors content images with probability ½ (seeded)."""
        import tensorflow as tf

        steps = self.steps_per_epoch(batch_size)
        content, style = tf.constant(self.content.images), tf.constant(self.style.images)

        def indices():
            epoch = int(initial_epoch)
            while True:
                c, s, n = self.epoch_indices(epoch, batch_size, seed)
                coins = np.random.default_rng([int(seed), epoch, 11]).random((steps, batch_size)) < 0.5
                for k in range(steps):
                    yield c[k], s[k], n[k], coins[k] & flip
                epoch += 1

        sig = tuple(tf.TensorSpec((batch_size,), t) for t in (tf.int64, tf.int64, tf.int64, tf.bool))

        def to_batch(c, s, n, coin):
            def get(images, idx):
                return tf.cast(tf.gather(images, idx), tf.float32) / 127.5 - 1.0

            x = get(content, c)
            x = tf.where(coin[:, None, None, None], tf.reverse(x, axis=[2]), x)
            return x, get(style, s), get(style, n)

        return _batches(tf.data.Dataset.from_generator(indices, output_signature=sig), to_batch)
