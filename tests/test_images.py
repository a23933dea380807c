"""Image input: paths, PIL, arrays, EXIF, modes, resizing, and one-line errors naming the file."""

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nst_lib.errors import ImageError
from nst_lib.images import (
    DecodedImage,
    fit_size,
    grayscale,
    load_image,
    pixel_digest,
    read_image,
    save_image,
    save_tiff16,
    smallest_size,
    source_name,
    transfer_luminance,
)
from nst_lib.metrics import mean_saturation, ssim

from .conftest import CONTENT, read_tiff16


def test_path_pil_and_array_agree():
    a = load_image(CONTENT, 64)
    b = load_image(Image.open(CONTENT), 64)
    c = load_image(np.asarray(Image.open(CONTENT)), 64)
    assert a.shape == (48, 64, 3) and a.dtype == np.float32
    np.testing.assert_allclose(a, b)
    np.testing.assert_allclose(a, c)


def test_resize_by_long_side_keeps_aspect():
    assert fit_size((768, 1024), 256) == (192, 256)
    assert fit_size((1528, 1200), 300) == (300, 236)


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when displayed
    img.save(tmp_path / "rot.jpg", exif=exif)
    assert load_image(tmp_path / "rot.jpg").shape == (40, 20, 3)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Image.new("L", (10, 8), 128),
        lambda: Image.new("RGBA", (10, 8), (255, 0, 0, 0)),  # fully transparent → white
        lambda: Image.new("RGB", (10, 8), (10, 200, 30)).convert("P"),
        lambda: Image.fromarray(np.full((8, 10), 65535, np.uint16)),
        lambda: Image.new("CMYK", (10, 8), (0, 0, 0, 0)),
    ],
)
def test_modes_convert_to_rgb(make, tmp_path):
    img = make()
    path = tmp_path / "x.png" if img.mode != "CMYK" else tmp_path / "x.jpg"
    img.save(path)
    out = load_image(path)
    assert out.shape == (8, 10, 3) and out.min() >= 0 and out.max() <= 255
    if img.mode in ("RGBA", "I;16", "CMYK"):
        np.testing.assert_allclose(out, 255.0, atol=1.0)  # transparent/16-bit max/CMYK zero ink → white


def test_a_float_tiff_in_0_to_1_reads_as_a_float_array_does(tmp_path):
    half = np.full((8, 10), 0.5, np.float32)
    Image.fromarray(half, mode="F").save(tmp_path / "half.tif")
    np.testing.assert_allclose(load_image(tmp_path / "half.tif"), load_image(half), atol=1e-4)  # 127.5, not 0.5
    np.testing.assert_allclose(load_image(tmp_path / "half.tif"), 127.5, atol=1e-4)


def test_a_dark_16_bit_file_stays_dark_whatever_mode_pillow_decodes_it_to(tmp_path):
    dark = np.full((4, 6), 200, np.uint16)  # 200 of 65535: 0.78 of 255
    (tmp_path / "dark.pgm").write_bytes(b"P5\n6 4\n65535\n" + dark.astype(">u2").tobytes())  # decoded as mode "I"
    Image.fromarray(dark).save(tmp_path / "dark.png")  # decoded as mode "I;16"
    for name in ("dark.pgm", "dark.png"):
        np.testing.assert_allclose(load_image(tmp_path / name), 200 / 257, rtol=1e-5)


def test_non_finite_pixels_in_a_file_are_refused_naming_it(tmp_path):
    for bad in (np.nan, np.inf):
        data = np.full((8, 10), 0.5, np.float32)
        data[0, 0] = bad
        Image.fromarray(data, mode="F").save(tmp_path / "bad.tif")
        with pytest.raises(ImageError, match=r"bad\.tif: image contains NaN or infinite values"):
            load_image(tmp_path / "bad.tif")


def test_premultiplied_alpha_is_composited_on_white_like_straight_alpha():
    clear = Image.new("RGBA", (10, 8), (255, 0, 0, 0))
    for img in (clear.convert("RGBa"), clear.convert("LA").convert("La")):
        np.testing.assert_allclose(load_image(img), 255.0, atol=1.0)


def test_a_file_that_cannot_be_read_is_not_called_corrupt(tmp_path, monkeypatch):
    from nst_lib import images

    path = tmp_path / "locked.png"
    Image.new("RGB", (4, 4)).save(path)

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(images.Image, "open", refused)
    with pytest.raises(ImageError, match=r"locked\.png: cannot read \(Permission denied\)$"):
        load_image(path)


def test_array_inputs():
    assert load_image(np.zeros((5, 6), np.uint8)).shape == (5, 6, 3)
    assert load_image(np.ones((5, 6, 3), np.float32)).max() == 255.0  # 0..1 floats are scaled
    with pytest.raises(ImageError, match="shape"):
        load_image(np.zeros((5, 6, 7)))


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match=r"nothere\.jpg: file not found"):
        load_image(tmp_path / "nothere.jpg")


def test_not_an_image(tmp_path):
    (tmp_path / "notes.jpg").write_text("hello")
    with pytest.raises(ImageError, match=r"notes\.jpg: not an image file"):
        load_image(tmp_path / "notes.jpg")


def test_truncated_image(tmp_path):
    data = CONTENT.read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageError, match=r"cut\.jpg: corrupt or truncated"):
        load_image(tmp_path / "cut.jpg")


def test_absurd_size_is_downscaled_with_a_warning():
    with pytest.warns(UserWarning, match="pixel budget"):
        out = load_image(CONTENT, 4000, max_pixels=200 * 150)
    assert out.shape[0] * out.shape[1] <= 200 * 150
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_image(CONTENT, 64, max_pixels=200 * 150)


def test_more_than_4x_upscaling_warns_naming_the_file(tmp_path):
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (4, 4), (200, 30, 30)).save(tiny)
    with pytest.warns(UserWarning, match=r"tiny\.png: 4×4 px upscaled 128× to 512×512.*at most 16\)"):
        assert load_image(tiny, 512).shape == (512, 512, 3)
    with warnings.catch_warnings():  # exactly 4× (and any shrinking) is quiet
        warnings.simplefilter("error")
        load_image(tiny, 16)
        load_image(CONTENT, 64)
    with pytest.warns(UserWarning, match="upscaled 5×"):
        load_image(np.zeros((3, 4, 3), np.uint8), 20)
    # the smallest long side at which a 40×900 strip is 16 px high: 16/40 × 900 = 360, less rounding's half pixel
    assert smallest_size((40, 900), 16) == 349
    assert min(fit_size((40, 900), 349)) == 16 and min(fit_size((40, 900), 348)) == 15
    assert smallest_size((900, 40), 16, scale=0.5) == 698  # a style at half the content's size needs twice as much
    assert smallest_size((64, 64), 16) == 16


def test_grayscale_has_no_saturation_and_luminance_transfer_keeps_chroma():
    c = load_image(CONTENT, 64)
    g = grayscale(c)
    assert mean_saturation(g) < 1e-6 < mean_saturation(c)
    back = transfer_luminance(g, c)  # gray's luminance with the content's colours = the content
    assert ssim(back, c) > 0.99
    np.testing.assert_allclose(back, c, atol=2.0)


def test_a_decoded_image_loads_as_its_source_did(tmp_path):
    # a very dark picture: as a float array its maximum (1.0) would read as a [0, 1] image and be brightened 255x
    dark = np.zeros((6, 10, 3), np.uint8)
    dark[2:4, 3:7] = 1
    path = tmp_path / "night.png"
    Image.fromarray(dark).save(path)
    decoded = DecodedImage(path)
    assert source_name(decoded) == str(path) and read_image(decoded) is decoded.rgb
    np.testing.assert_array_equal(load_image(decoded, 20), load_image(path, 20))
    assert load_image(path, 20).max() < 2.0 < load_image(read_image(path), 20).max()  # what the wrapper avoids
    with pytest.raises(ImageError, match="missing.png: file not found"):
        DecodedImage(tmp_path / "missing.png")


def test_a_16_bit_tiff_keeps_what_8_bits_round_away(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (5, 7, 3)).astype(np.float32)
    image[0, 0], image[0, 1], image[0, 2] = 0.0, 255.0, [-3.0, 300.0, 127.5]  # the ends, and clipping
    path = save_tiff16(tmp_path / "deep" / "out.tif", image)
    samples = read_tiff16(path)
    expected = np.rint(np.clip(image, 0, 255) * 257).astype(np.uint16)
    np.testing.assert_array_equal(samples, expected)
    assert samples[0, 0].tolist() == [0, 0, 0] and samples[0, 1].tolist() == [65535] * 3
    # the fractions between 8-bit levels survive: back on the 0..255 scale within half a 16-bit step
    assert np.abs(samples / 257.0 - np.clip(image, 0, 255)).max() <= 0.5 / 257 + 1e-6
    # any reader sees the same picture: Pillow decodes it (to 8 bits) within one level of the rounded image
    assert np.abs(read_image(path) - np.rint(np.clip(image, 0, 255))).max() <= 1.0
    with pytest.raises(ImageError, match="out2.tif: a 16-bit TIFF needs an H×W×3 image"):
        save_tiff16(tmp_path / "out2.tif", image[..., 0])
    with pytest.raises(ImageError, match=r"out\.jpg: a 16-bit TIFF is saved as \.tif"):  # no TIFF bytes in a .jpg
        save_tiff16(tmp_path / "out.jpg", image)


def test_saving_names_the_file_on_a_bad_suffix_and_never_leaves_half_a_file(tmp_path, monkeypatch):
    from nst_lib import images

    with pytest.raises(ImageError, match=r"out\.xyz: cannot save an image as \.xyz"):
        save_image(tmp_path / "new" / "out.xyz", np.zeros((4, 4, 3)))
    assert not (tmp_path / "new").exists()  # refused before any folder was made
    gray = save_image(tmp_path / "gray.png", np.full((4, 5, 1), 100.0))  # H×W×1 is a grayscale image
    assert load_image(gray).shape == (4, 5, 3)
    kept = save_image(tmp_path / "kept.png", np.full((4, 4, 3), 10.0))

    def stopped(self, fp, *args, **kwargs):  # Ctrl-C in the middle of writing the new file
        Path(fp).write_bytes(b"\x89PNG half")
        raise KeyboardInterrupt

    monkeypatch.setattr(images.Image.Image, "save", stopped)
    with pytest.raises(KeyboardInterrupt):
        save_image(kept, np.full((4, 4, 3), 200.0))
    monkeypatch.undo()
    np.testing.assert_array_equal(load_image(kept), 10.0)  # the earlier file, whole
    assert {p.name for p in tmp_path.iterdir()} == {"gray.png", "kept.png"}  # and no partial file beside it


def test_a_uint16_array_is_scaled_as_a_16_bit_file_is():
    np.testing.assert_allclose(load_image(np.full((4, 6), 200, np.uint16)), 200 / 257, rtol=1e-5)
    np.testing.assert_allclose(load_image(np.full((4, 6), 32896, np.uint16)), 128.0, rtol=1e-6)  # 128 × 257


def test_an_rgba_array_is_composited_on_white_as_an_rgba_file_is(tmp_path):
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., 0] = 255  # red
    rgba[:, :3, 3] = 0  # left half fully transparent, right half half-transparent
    rgba[:, 3:, 3] = 128
    Image.fromarray(rgba, "RGBA").save(tmp_path / "x.png")
    from_array, from_file = load_image(rgba), load_image(tmp_path / "x.png")
    np.testing.assert_allclose(from_array[:, :3], 255.0)  # transparent → white, not black
    np.testing.assert_allclose(from_array, from_file, atol=1.0)


def test_a_palette_image_with_a_transparent_index_is_composited_on_white(tmp_path):
    img = Image.new("P", (6, 4), 0)
    img.putpalette([0, 0, 0] + [255, 0, 0] * 255)  # index 0 is black …
    img.info["transparency"] = 0  # … and transparent
    img.save(tmp_path / "p.png", transparency=0)
    np.testing.assert_allclose(load_image(tmp_path / "p.png"), 255.0)


def test_pixel_digest_tells_shapes_of_the_same_bytes_apart():
    flat = np.arange(18, dtype=np.float32)
    assert pixel_digest(flat.reshape(2, 3, 3)) != pixel_digest(flat.reshape(3, 2, 3))


def test_an_image_exactly_at_the_pixel_budget_is_left_alone_and_one_over_it_fits_after():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fit_size((30, 40), None, max_pixels=1200) == (30, 40)
    with pytest.warns(UserWarning, match="pixel budget"):
        h, w = fit_size((3, 3), None, max_pixels=8)
    assert h * w <= 8


def test_ssim_is_symmetric_and_matches_a_pinned_value(rng):
    a = load_image(CONTENT, 64)
    b = np.clip(a + rng.normal(0, 25, a.shape), 0, 255).astype(np.float32)
    assert ssim(a, b) == pytest.approx(ssim(b, a), rel=1e-9)
    ramp = np.tile(np.linspace(0, 255, 32, dtype=np.float32), (32, 1))[..., None].repeat(3, -1)
    # constant images: the luminance term alone, (2 μa μb + C1) / (μa² + μb² + C1) with C1 = (0.01 × 255)²
    c1 = (0.01 * 255) ** 2
    flat = np.full((16, 16, 3), 100.0, np.float32)
    assert ssim(flat, flat + 50) == pytest.approx((2 * 100 * 150 + c1) / (100**2 + 150**2 + c1), rel=1e-6)
    # the Gaussian window (σ 1.5) shapes the rest: this implementation's value, pinned against a silent change
    ramp = np.tile(np.linspace(0, 255, 32, dtype=np.float32), (32, 1))[..., None].repeat(3, -1)
    assert ssim(ramp, ramp[:, ::-1]) == pytest.approx(-0.375151915222936, abs=1e-6)
    with pytest.raises(ValueError, match=r"one shape, got \(32, 32, 3\) and \(16, 16, 3\)"):
        ssim(ramp, flat)


def test_mean_saturation_is_hsv_saturation():
    dark_red = np.full((2, 2, 3), (100.0, 50.0, 50.0), np.float32)
    assert mean_saturation(dark_red) == pytest.approx(0.5)  # (max − min) / max, not / 255
    assert mean_saturation(np.zeros((2, 2, 3))) == 0.0
