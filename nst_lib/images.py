"""Image loading, conversion, resizing and saving: every image conversion of the library lives here.

Inside the engine images are float32 RGB in [0, 255], H×W×3; everything a user passes in (paths, PIL images,
arrays) comes through ``load_image``. The generative models work in [-1, 1] (``to_unit`` / ``from_unit``) on
square crops (``centre_crop_resize``); ``tile`` lays a batch out as one grid image and ``png_bytes`` encodes one
for a widget.

Every problem with an input raises ``ImageError`` whose message starts with the file's name.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ConfigError, ImageError


class DecodedImage:
    """An image already decoded by ``read_image`` (float32 RGB [0, 255], its own size), kept with its source's
    name: ``read_image`` returns it as it is and ``source_name`` gives that name, so loading it again is what
    loading the source was, without decoding it again (a float array passed instead would be taken for [0, 1] if
    its maximum is at most 1, and its errors and warnings would name an array)."""

    def __init__(self, src: ImageLike):
        self.name, self.rgb = source_name(src), read_image(src)


ImageLike = str | Path | Image.Image | np.ndarray | DecodedImage


def source_name(src: ImageLike) -> str:
    if isinstance(src, DecodedImage):
        return src.name
    if isinstance(src, (str, Path)):
        return str(src)
    if isinstance(src, Image.Image):
        return getattr(src, "filename", "") or "<PIL image>"
    return f"<array {getattr(src, 'shape', '?')}>"


# where ``_open`` keeps the file's stored sample format in ``Image.info`` (decoding forgets it)
_RAW_MODE = "nst_raw_mode"


def _open(path: Path) -> Image.Image:
    if not path.exists():
        raise ImageError(f"{path}: file not found")
    if not path.is_file():
        raise ImageError(f"{path}: not a file")
    try:
        img = Image.open(path)
        # the stored sample format, which decoding forgets: a 16-bit PGM decodes to 32-bit mode "I" like 8-bit data
        img.info[_RAW_MODE] = next((t[3] if isinstance(t[3], str) else t[3][0] for t in img.tile if t[3]), "")
        img.load()  # decode now, so truncation shows here and not later
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{path}: image is absurdly large ({exc})") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file (cannot identify its format)") from None
    except OSError as exc:
        if exc.errno is not None:  # the file system's refusal (permissions, a device error), not the file's content
            raise ImageError(f"{path}: cannot read ({exc.strerror})") from None
        raise ImageError(f"{path}: corrupt or truncated image ({exc})") from None
    except (SyntaxError, ValueError) as exc:
        raise ImageError(f"{path}: corrupt or truncated image ({exc})") from None
    return img


def _pil_to_rgb(img: Image.Image, name: str = "image") -> np.ndarray:
    """Any PIL mode → float32 RGB in [0, 255]: EXIF orientation applied, alpha composited on white,
    grayscale/palette/CMYK converted, 16-bit and float images rescaled."""
    raw = str(img.info.get(_RAW_MODE, ""))
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.repeat(np.asarray(img, dtype=np.float32)[..., None] / 257.0, 3, axis=-1)
    if img.mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float32)
        if not np.isfinite(arr).all():
            raise ImageError(f"{name}: image contains NaN or infinite values")
        if img.mode == "F" and arr.max(initial=0) <= 1.0:  # a float image in 0..1, read as float arrays are
            return np.repeat(np.clip(arr * 255.0, 0, 255)[..., None], 3, axis=-1)
        # 16-bit samples by the file's format (a dark one stays dark), else by the values (32-bit or unknown data)
        sixteen = raw.startswith("I;16") or arr.max(initial=0) > 255
        scale = 257.0 if sixteen else 1.0
        return np.repeat(np.clip(arr / scale, 0, 255)[..., None], 3, axis=-1)
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBa", "La"):  # premultiplied alpha: undone first, so transparent areas become white too
        img = img.convert(img.mode[0] + "A" if img.mode == "La" else "RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return np.asarray(img.convert("RGB"), dtype=np.float32)


def _array_to_rgb(arr: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
        raise ImageError(f"{name}: expected an H×W, H×W×1, H×W×3 or H×W×4 array, got shape {arr.shape}")
    if arr.dtype == np.uint16:
        arr = arr.astype(np.float32) / 257.0
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise ImageError(f"{name}: array contains NaN or infinite values")
        arr = arr.astype(np.float32) * (255.0 if arr.max(initial=0) <= 1.0 else 1.0)
    else:
        arr = arr.astype(np.float32)
    if arr.shape[-1] == 4:
        alpha = arr[..., 3:] / 255.0
        arr = arr[..., :3] * alpha + 255.0 * (1 - alpha)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return np.clip(arr, 0, 255)


def fit_size(hw: tuple[int, int], size: int | None, max_pixels: int | None = None, name: str = "image"):
    """(height, width) with the long side equal to ``size`` (aspect kept), downscaled with a warning when
    the result exceeds ``max_pixels``."""
    h, w = hw
    if size is not None:
        if size <= 0:
            raise ImageError(f"{name}: size must be positive, got {size}")
        scale = size / max(h, w)
        h, w = max(1, round(h * scale)), max(1, round(w * scale))
    if max_pixels and h * w > max_pixels:
        scale = (max_pixels / (h * w)) ** 0.5
        nh, nw = max(1, int(h * scale)), max(1, int(w * scale))
        warnings.warn(
            f"{name}: {h}×{w} px is above the pixel budget of {max_pixels:,}; downscaled to {nh}×{nw} "
            "(raise max_pixels to allow it)",
            stacklevel=2,
        )
        h, w = nh, nw
    return h, w


def resize(image: np.ndarray, hw: tuple[int, int], method: str = "lanczos", clip: bool = True) -> np.ndarray:
    """Resize a float H×W×C array to ``hw`` with Lanczos (or 'bilinear'), channel by channel; clipped to [0, 255]
    unless ``clip=False`` (for arrays that are not images, such as an optimiser's moments)."""
    if image.shape[:2] == tuple(hw):
        return image.astype(np.float32)
    resample = {"lanczos": Image.LANCZOS, "bilinear": Image.BILINEAR}[method]
    channels = [
        np.asarray(Image.fromarray(image[..., c].astype(np.float32), mode="F").resize((hw[1], hw[0]), resample))
        for c in range(image.shape[-1])
    ]
    out = np.stack(channels, axis=-1).astype(np.float32)
    return np.clip(out, 0, 255) if clip else out


def read_image(src: ImageLike) -> np.ndarray:
    """Decode a path, PIL image or array as float32 RGB [0, 255] at its own size."""
    if isinstance(src, DecodedImage):
        return src.rgb
    name = source_name(src)
    if isinstance(src, (str, Path)):
        rgb = _pil_to_rgb(_open(Path(src).expanduser()), name)
    elif isinstance(src, Image.Image):
        rgb = _pil_to_rgb(src, name)
    elif isinstance(src, np.ndarray) or hasattr(src, "__array__"):
        rgb = _array_to_rgb(np.asarray(src), name)
    else:
        raise ImageError(f"{name}: expected a path, PIL image or array, got {type(src).__name__}")
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ImageError(f"{name}: image is empty ({rgb.shape[0]}×{rgb.shape[1]})")
    return rgb


def style_list(style) -> list:
    """The style images of a run: one image, a list or tuple of them (to blend), or an N×H×W×3 array (a batch, e.g.
    a generator's, whose styles are averaged as in seed 004) → a list; none at all is refused."""
    if isinstance(style, np.ndarray) and style.ndim == 4:
        return list(style)
    if isinstance(style, (list, tuple)):
        if not style:
            raise ConfigError("at least one style image is needed")
        return list(style)
    return [style]


def pixel_digest(rgb: np.ndarray) -> str:
    """A short fingerprint of decoded pixels (``read_image``'s array): two inputs of one file name whose pixels
    differ have different digests, and a file moved or re-encoded to the same pixels keeps its digest."""
    rgb = np.ascontiguousarray(rgb, dtype=np.float32)
    return hashlib.sha256(repr(rgb.shape).encode() + rgb.tobytes()).hexdigest()[:16]


# more enlargement than this invents detail the original does not have: warned about
MAX_UPSCALE = 4.0


def fit_image(rgb: np.ndarray, size: int | None, max_pixels: int | None = None, name: str = "image") -> np.ndarray:
    """``rgb`` resized so its long side is ``size`` (``fit_size``), with a warning when that enlarges it more than
    ``MAX_UPSCALE`` times (a 4×4 image at 512 px would be a 128× blur)."""
    hw = fit_size(rgb.shape[:2], size, max_pixels, name)
    factor = max(hw) / max(rgb.shape[:2])
    if factor > MAX_UPSCALE:
        warnings.warn(
            f"{name}: {rgb.shape[0]}×{rgb.shape[1]} px upscaled {factor:.3g}× to {hw[0]}×{hw[1]}; the result has "
            f"no more detail than the original (use a larger image, or a size of at most "
            f"{int(MAX_UPSCALE * max(rgb.shape[:2]))})",
            stacklevel=3,
        )
    return resize(rgb, hw)


def load_image(src: ImageLike, size: int | None = None, max_pixels: int | None = None) -> np.ndarray:
    """Load a path, PIL image or array as float32 RGB [0, 255], resized so its long side is ``size``."""
    return fit_image(read_image(src), size, max_pixels, source_name(src))


def smallest_size(hw: tuple[int, int], min_side: int, scale: float = 1.0) -> int:
    """The smallest long side ``size`` at which an image of ``hw``, resized to ``round(size * scale)`` as the
    engine resizes it (``fit_size``), is at least ``min_side`` px on each side."""

    def fits(size: int) -> bool:
        return min(fit_size(hw, max(1, round(size * scale)))) >= min_side

    low, high = 1, max(2, int(2 * (min_side + 1) * max(hw) / (min(hw) * scale)) + 2)
    while not fits(high):
        high *= 2
    while low < high:  # the first size that fits: fits() is monotone in size
        mid = (low + high) // 2
        low, high = (mid + 1, high) if not fits(mid) else (low, mid)
    return low


def to_uint8(image) -> np.ndarray:
    return np.clip(np.rint(np.asarray(image, dtype=np.float32)), 0, 255).astype(np.uint8)


def _write_whole(path: Path, write) -> None:
    """``write(temporary path)``, then the temporary renamed to ``path``: a write stopped half-way (Ctrl-C, a full
    disk, a killed process) leaves the file that was there, not half of the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    try:
        write(partial)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def save_image(path: str | Path, image) -> Path:
    """``image`` (H×W×3 or H×W, [0, 255]) as an 8-bit file whose format its suffix names (.png, .jpg, …),
    replacing ``path`` only once the new file is complete."""
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise ImageError(
            f"{path}: cannot save an image as {path.suffix or 'a file without a suffix'}; use .png or .jpg"
        )
    rgb = to_uint8(image)
    if rgb.ndim == 3 and rgb.shape[2] == 1:
        rgb = rgb[..., 0]
    _write_whole(path, lambda partial: Image.fromarray(rgb).save(partial, format=fmt))
    return path


def save_tiff16(path: str | Path, image, dpi: int = 300) -> Path:
    """``image`` (H×W×3 on the engine's [0, 255] scale) as an uncompressed 16-bit RGB TIFF (baseline TIFF 6.0,
    little-endian, one strip, ``dpi`` pixels per inch): each value times 257, so 0 and 255 map to 0 and 65535 and
    the fractions the optimiser computed between two 8-bit levels are kept, as print needs (an 8-bit file bands on
    smooth skies). Written here because Pillow saves 16 bits for single-channel images only."""
    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        raise ImageError(f"{path}: a 16-bit TIFF is saved as .tif or .tiff, not {path.suffix or 'without a suffix'}")
    rgb = np.asarray(image)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageError(f"{path}: a 16-bit TIFF needs an H×W×3 image, got shape {rgb.shape}")
    h, w = rgb.shape[:2]
    # in place on one float32 copy: at 4K each temporary would be another 100 MB
    scaled = np.clip(rgb, 0.0, 255.0, dtype=np.float32)
    scaled *= 257.0
    np.rint(scaled, out=scaled)
    pixels = scaled.astype("<u2")
    del scaled
    # the IFD's entries (tag, type, count, value or offset), tags ascending; types 3 SHORT, 4 LONG, 5 RATIONAL.
    # Values longer than 4 bytes follow the IFD: BitsPerSample's three SHORTs, then the two resolutions.
    entries = 13
    bits_at = 8 + 2 + 12 * entries + 4
    x_res_at, y_res_at = bits_at + 6, bits_at + 14
    data_at = y_res_at + 8
    fields = [
        (256, 4, 1, w),  # ImageWidth
        (257, 4, 1, h),  # ImageLength
        (258, 3, 3, bits_at),  # BitsPerSample: 16, 16, 16
        (259, 3, 1, 1),  # Compression: none
        (262, 3, 1, 2),  # PhotometricInterpretation: RGB
        (273, 4, 1, data_at),  # StripOffsets
        (277, 3, 1, 3),  # SamplesPerPixel
        (278, 4, 1, h),  # RowsPerStrip: one strip
        (279, 4, 1, pixels.nbytes),  # StripByteCounts
        (282, 5, 1, x_res_at),  # XResolution (baseline RGB requires it; without it readers assume 1 dpi or 72)
        (283, 5, 1, y_res_at),  # YResolution
        (284, 3, 1, 1),  # PlanarConfiguration: interleaved
        (296, 3, 1, 2),  # ResolutionUnit: inch
    ]
    ifd = bytearray(b"II*\x00" + (8).to_bytes(4, "little") + entries.to_bytes(2, "little"))
    for tag, kind, count, value in fields:
        ifd += tag.to_bytes(2, "little") + kind.to_bytes(2, "little") + count.to_bytes(4, "little")
        short = kind == 3 and count == 1  # a SHORT value sits left-justified in the entry's 4 bytes
        ifd += (value.to_bytes(2, "little") + b"\x00\x00") if short else value.to_bytes(4, "little")
    ifd += (0).to_bytes(4, "little")  # no next IFD
    ifd += np.array([16, 16, 16], "<u2").tobytes() + np.array([dpi, 1, dpi, 1], "<u4").tobytes()
    assert len(ifd) == data_at

    def write(partial: Path) -> None:
        with open(partial, "wb") as f:
            f.write(bytes(ifd))
            pixels.tofile(f)

    _write_whole(path, write)
    return path


def png_bytes(image: np.ndarray) -> bytes:
    """A uint8 (or [0, 255] float) image encoded as PNG, e.g. for an ipywidgets ``Image``."""
    buf = io.BytesIO()
    Image.fromarray(to_uint8(image)).save(buf, format="PNG")
    return buf.getvalue()


# --- the generative models' conventions -------------------------------------------------------------------
def to_unit(images: np.ndarray) -> np.ndarray:
    """uint8 [0, 255] → float32 [-1, 1] (the generators' range)."""
    return np.asarray(images, np.float32) / 127.5 - 1.0


def from_unit(x) -> np.ndarray:
    """float [-1, 1] → uint8 [0, 255], clipped."""
    return np.clip(np.round((np.asarray(x, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def centre_crop_resize(img: Image.Image | np.ndarray, size: int) -> np.ndarray:
    """The largest centred square of ``img``, resized to size×size with Lanczos (antialiased), as uint8 RGB."""
    if isinstance(img, np.ndarray):
        img = Image.fromarray(to_uint8(img))
    img.draft("RGB", (size * 2, size * 2))  # JPEG: decode at a reduced scale when far larger than needed
    if img.mode == "RGB":
        img = ImageOps.exif_transpose(img)
    else:  # 16-bit, alpha, palette, float: as the style-transfer reader takes them (not clipped, not black)
        img = Image.fromarray(to_uint8(_pil_to_rgb(img)))
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    img = img.crop((left, top, left + side, top + side))
    return np.asarray(img.resize((size, size), Image.LANCZOS), dtype=np.uint8)


def tile(images: np.ndarray, cols: int | None = None, pad: int = 2, fill: int = 255) -> np.ndarray:
    """N×H×W×3 uint8 → one grid image, ``cols`` wide (√N by default), ``pad`` pixels of ``fill`` between.
    (``workbench.viz.image_grid`` draws labelled figures; this makes one plain image, for files and widgets.)"""
    images = np.asarray(images)
    n, h, w, c = images.shape
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), fill, np.uint8)
    for i, img in enumerate(images):
        r, q = divmod(i, cols)
        out[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + q * (w + pad) : pad + q * (w + pad) + w] = img
    return out


# --- colour ---------------------------------------------------------------------------------------------
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]])
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)
LUMINANCE_WEIGHTS = _RGB_TO_YIQ[0].astype(np.float32)  # Y = 0.299 R + 0.587 G + 0.114 B


def rgb_to_yiq(image: np.ndarray) -> np.ndarray:
    return (np.asarray(image, dtype=np.float64) @ _RGB_TO_YIQ.T).astype(np.float32)


def yiq_to_rgb(image: np.ndarray) -> np.ndarray:
    return (np.asarray(image, dtype=np.float64) @ _YIQ_TO_RGB.T).astype(np.float32)


def grayscale(image: np.ndarray) -> np.ndarray:
    """Luminance (Y of YIQ) replicated to three channels: g(C) of seed 003's grayscale test."""
    y = rgb_to_yiq(image)[..., :1]
    return np.clip(np.repeat(y, 3, axis=-1), 0, 255)


def match_luminance(style: np.ndarray, content: np.ndarray) -> np.ndarray:
    """Style luminance with the content luminance's mean and std (Gatys et al. 2017, §3.1)."""
    ys, yc = rgb_to_yiq(style)[..., 0], rgb_to_yiq(content)[..., 0]
    matched = (ys - ys.mean()) * (yc.std() / max(ys.std(), 1e-6)) + yc.mean()
    return np.repeat(np.clip(matched, 0, 255)[..., None], 3, axis=-1)


def transfer_luminance(stylised: np.ndarray, content: np.ndarray) -> np.ndarray:
    """The stylised image's luminance with the content's chrominance (I, Q): colour preservation."""
    out = rgb_to_yiq(content)
    out[..., 0] = rgb_to_yiq(stylised)[..., 0]
    return np.clip(yiq_to_rgb(out), 0, 255)
