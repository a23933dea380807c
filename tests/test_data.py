"""Image-folder datasets: centre-crop/resize, bad files skipped and counted, clear errors, seeded epochs."""

import warnings

import numpy as np
import pytest
from PIL import Image

from nst_lib.models.data import DataError, from_array, from_spec, load_image_folder, tiny_paintings, tiny_photos


def _save(path, array):
    Image.fromarray(np.asarray(array, np.uint8)).save(path)
    return path


@pytest.fixture
def folder(tmp_path):
    """3 readable images (landscape, portrait, nested PNG), a truncated JPEG and a text file named .jpg."""
    wide = np.zeros((40, 80, 3), np.uint8)
    wide[:, :20] = (255, 0, 0)  # red bands left and right of a blue centre square
    wide[:, 60:] = (255, 0, 0)
    wide[:, 20:60] = (0, 0, 255)
    _save(tmp_path / "a_wide.jpg", wide)
    _save(tmp_path / "b_tall.png", np.full((90, 30, 3), 200, np.uint8))
    (tmp_path / "sub").mkdir()
    _save(tmp_path / "sub" / "c.png", np.full((33, 33, 3), 10, np.uint8))
    good = (tmp_path / "a_wide.jpg").read_bytes()
    (tmp_path / "d_truncated.jpg").write_bytes(good[: len(good) // 3])
    (tmp_path / "e_not_an_image.jpg").write_text("hello")
    (tmp_path / "notes.txt").write_text("ignored: not an image suffix")
    return tmp_path


def test_folder_is_cropped_resized_and_bad_files_are_skipped_with_a_count(folder):
    with pytest.warns(UserWarning, match="skipped 2 unreadable file"):
        data = load_image_folder(folder, size=16, progress=False)
    assert data.images.shape == (3, 16, 16, 3) and data.images.dtype == np.uint8
    assert sorted(p.split("/")[-1] for p, _ in data.skipped) == ["d_truncated.jpg", "e_not_an_image.jpg"]
    wide = data.images[[f.endswith("a_wide.jpg") for f in data.files].index(True)]
    # the centre square of the wide image is blue: the red side bands were cropped away
    assert wide[..., 2].mean() > 200 and wide[..., 0].mean() < 40
    with pytest.warns(UserWarning, match="skipped 2"):
        assert len(load_image_folder(folder, size=16, recursive=False, progress=False).files) == 2


def test_empty_missing_and_all_unreadable_folders_raise_naming_the_folder(tmp_path):
    with pytest.raises(DataError, match="no images"):
        load_image_folder(tmp_path, progress=False)
    with pytest.raises(DataError, match="folder not found"):
        load_image_folder(tmp_path / "nope", progress=False)
    (tmp_path / "x.png").write_text("not png")
    with pytest.raises(DataError, match=f"{tmp_path}: none of its 1 image files could be read"):
        load_image_folder(tmp_path, progress=False)


def test_cache_is_reused(folder, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = load_image_folder(folder, size=16, cache_dir=cache, progress=False)
    import nst_lib.models.data as data_mod

    monkeypatch.setattr(data_mod, "_decode", lambda *a: pytest.fail("decoded again despite the cache"))
    with pytest.warns(UserWarning, match="skipped 2"):
        second = load_image_folder(folder, size=16, cache_dir=cache, progress=False)
    assert np.array_equal(first.images, second.images) and len(second.skipped) == 2


def test_tiny_paintings_are_seeded_and_rebuild_from_their_spec():
    a, b, c = tiny_paintings(12, 32, seed=1), tiny_paintings(12, 32, seed=1), tiny_paintings(12, 32, seed=2)
    assert a.images.shape == (12, 32, 32, 3)
    assert np.array_equal(a.images, b.images) and not np.array_equal(a.images, c.images)
    assert np.array_equal(from_spec(a.spec).images, a.images)


def test_epochs_are_seeded_permutations_and_a_stream_can_start_at_any_epoch():
    data = from_array(np.arange(8, dtype=np.uint8).reshape(8, 1, 1, 1).repeat(2, 1).repeat(2, 2).repeat(3, 3))

    def ids(batch):
        return list(np.round((batch.numpy()[:, 0, 0, 0] + 1) * 127.5).astype(int))

    it = iter(data.dataset(batch_size=4, seed=5))
    epochs = [ids(next(it)) + ids(next(it)) for _ in range(3)]
    assert all(sorted(e) == list(range(8)) for e in epochs)  # every image once per epoch
    assert epochs[0] != epochs[1]  # reshuffled each epoch
    late = iter(data.dataset(batch_size=4, seed=5, initial_epoch=2))
    assert ids(next(late)) + ids(next(late)) == epochs[2]  # resuming at epoch 2 sees epoch 2's batches
    other = iter(data.dataset(batch_size=4, seed=6))
    assert ids(next(other)) + ids(next(other)) != epochs[0]
    batch = next(iter(data.dataset(batch_size=4)))
    assert batch.dtype.name == "float32" and -1.0 <= float(batch.numpy().min()) <= float(batch.numpy().max()) <= 1.0


def test_fewer_images_than_a_batch_is_a_clear_error():
    with pytest.raises(DataError, match="fewer than one batch of 128"):
        tiny_paintings(10, 16).steps_per_epoch(128)


def test_flips_mirror_some_images_and_keep_the_others():
    rng = np.random.default_rng(0)
    data = from_array(rng.integers(0, 256, (16, 4, 4, 3), dtype=np.uint8))
    plain = next(iter(data.dataset(batch_size=16, seed=1))).numpy()
    flipped = next(iter(data.dataset(batch_size=16, seed=1, flip=True))).numpy()
    same = [np.array_equal(a, b) for a, b in zip(plain, flipped)]
    mirrored = [np.array_equal(a[:, ::-1], b) for a, b in zip(plain, flipped)]
    assert all(s or m for s, m in zip(same, mirrored)) and 0 < sum(mirrored) < 16


def test_union_concatenates_in_order_and_rebuilds_from_its_spec():
    from nst_lib.models.data import union

    paintings, photos = tiny_paintings(n=5, size=16, seed=1), tiny_photos(n=3, size=16, seed=2)
    both = union(paintings, photos)
    assert len(both) == 8 and both.size == 16
    np.testing.assert_array_equal(both.images[:5], paintings.images)
    np.testing.assert_array_equal(both.images[5:], photos.images)
    assert both.files == paintings.files + photos.files
    assert both.spec == {"kind": "union", "parts": [paintings.spec, photos.spec]}
    np.testing.assert_array_equal(from_spec(both.spec, progress=False).images, both.images)  # resumable
    with pytest.raises(DataError, match=r"different sizes \[16, 32\]"):
        union(paintings, tiny_photos(n=2, size=32))
    with pytest.raises(DataError, match="at least one"):
        union()


def test_any_image_mode_decodes_as_the_style_transfer_reader_takes_it(tmp_path):
    grey16 = Image.fromarray(np.full((20, 20), 32768, np.uint16))  # mid-grey in 16 bits (Pillow: mode I;16)
    grey16.save(tmp_path / "a_grey16.png")
    rgba = np.zeros((20, 20, 4), np.uint8)  # fully transparent black: white, as on paper
    Image.fromarray(rgba, "RGBA").save(tmp_path / "b_clear.png")
    tall = np.zeros((40, 20, 3), np.uint8)
    tall[:20] = 255  # white above, black below; stored rotated, with EXIF saying to turn it back
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    Image.fromarray(np.rot90(tall, 1).copy()).save(tmp_path / "c_rotated.png", exif=exif)
    data = load_image_folder(tmp_path, size=8, progress=False)
    grey, clear, rotated = data.images
    assert np.abs(grey.astype(int) - 128).max() <= 1  # not clipped to white
    assert clear.min() == 255
    assert rotated[:3].min() > 200 and rotated[-3:].max() < 50  # upright: white on top


def test_a_link_to_nothing_is_skipped_by_name(folder):
    (folder / "f_gone.jpg").symlink_to(folder / "nowhere.jpg")
    with pytest.warns(UserWarning, match="skipped 3 unreadable file"):
        data = load_image_folder(folder, size=16, progress=False)
    assert any(p.endswith("f_gone.jpg") for p, _ in data.skipped) and len(data) == 3


def test_a_cache_hit_still_warns_and_a_damaged_cache_is_decoded_again(folder, tmp_path):
    cache = tmp_path / "cache"
    with pytest.warns(UserWarning, match="skipped 2"):
        first = load_image_folder(folder, size=16, cache_dir=cache, progress=False)
    with pytest.warns(UserWarning, match="skipped 2"):  # the cached set says what it left out too
        load_image_folder(folder, size=16, cache_dir=cache, progress=False)
    (cached,) = cache.glob("*.npz")
    cached.write_bytes(cached.read_bytes()[:100])
    with pytest.warns(UserWarning) as caught:
        again = load_image_folder(folder, size=16, cache_dir=cache, progress=False)
    said = [str(w.message) for w in caught]
    assert any("unreadable cache" in m for m in said) and any("skipped 2" in m for m in said), said
    np.testing.assert_array_equal(again.images, first.images)
    assert not list(cache.glob("*.tmp.npz"))


def test_groups_are_sub_folders_of_each_part_and_a_hash_in_a_path_is_no_crop(tmp_path):
    from nst_lib.models.data import union

    for root in ("style#1", "more"):
        for artist in ("monet", "vangogh"):
            (tmp_path / root / artist).mkdir(parents=True)
            for i in range(2):
                _save(tmp_path / root / artist / f"Composition #{i}.png", np.full((8, 8, 3), 40 * i, np.uint8))
    a = load_image_folder(tmp_path / "style#1", size=8, progress=False)
    assert a.groups.tolist() == [0, 0, 1, 1]  # by artist: not by the '#' in the folder's or the files' names
    b = load_image_folder(tmp_path / "more", size=8, progress=False)
    assert union(a, b).groups.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]  # each part's artists, kept apart
    crops = tiny_paintings(12, 16, seed=0)  # a bundled crop's group is its painting
    names, groups = [f.split("#")[0] for f in crops.files], crops.groups
    assert len(set(names)) > 1
    assert all((groups[i] == groups[j]) == (names[i] == names[j]) for i in range(12) for j in range(12))
