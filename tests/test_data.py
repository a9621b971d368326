"""labkit.data: user-folder loading, conversions, default dataset, tensors, TileDataset."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from labkit import data as D

COURSE128 = Path("/work/shared/datasets/course128")
RNG = np.random.default_rng(0)


def _rgb(h=16, w=16):
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


# ---------------------------------------------------------------- image I/O lives in labkit.imageio

def test_image_io_is_reexported_from_imageio():
    """data keeps datasets; reading/converting images is labkit.imageio's (tests/test_imageio.py)."""
    from labkit import imageio

    assert D.load_image is imageio.load
    assert D.DataError is imageio.DataError and D.LabkitDataWarning is imageio.LabkitDataWarning


def test_to_tiles_converts_through_as_rgb8():
    g = RNG.integers(0, 256, (128, 128), dtype=np.uint8)
    with pytest.warns(D.LabkitDataWarning, match="image 0: grey"):
        t = D.to_tiles([g])
    assert t.shape == (1, 128, 128, 3) and np.array_equal(t[0, :, :, 2], g)
    with pytest.raises(D.DataError, match="image 0: expected uint8 pixels, got float64"):
        D.to_tiles([np.zeros((128, 128, 3))])


# ---------------------------------------------------------------- folders

def test_folder_numeric_sort_and_hidden_skipped(tmp_path):
    for i in (10, 2, 1):
        Image.fromarray(np.full((4, 4, 3), i, np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / ".DS_Store").write_bytes(b"junk")
    assert [im[0, 0, 0] for im in D.load_folder(tmp_path)] == [1, 2, 10]


def test_non_image_in_folder_is_named(tmp_path):
    Image.fromarray(_rgb()).save(tmp_path / "1.png")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(D.DataError, match="notes.txt"):
        D.load_folder(tmp_path)


def test_missing_and_empty_folder_errors(tmp_path):
    with pytest.raises(D.DataError, match="not found.*train/"):
        D.load_folder(tmp_path / "nope")
    (tmp_path / "train").mkdir()
    with pytest.raises(D.DataError, match="no images.*expected layout"):
        D.load_dataset(tmp_path, "train")


def test_load_dataset_size_check_and_tiles(tmp_path):
    (tmp_path / "train").mkdir()
    Image.fromarray(_rgb(128, 128)).save(tmp_path / "train" / "0.png")
    Image.fromarray(_rgb(300, 260)).save(tmp_path / "train" / "1.png")
    with pytest.raises(D.DataError, match="tile=True"):
        D.load_dataset(tmp_path, "train")
    assert D.load_dataset(tmp_path, "train", tile=True).shape == (1 + 4, 128, 128, 3)
    big = _rgb(300, 260)
    assert np.array_equal(D.to_tiles([big], mode="center")[0], big[86:214, 66:194])
    with pytest.raises(D.DataError, match="smaller than"):
        D.to_tiles([_rgb(100, 200)])


def test_user_splits_without_test_folder_warns(tmp_path):
    (tmp_path / "train").mkdir()
    for i in range(20):
        Image.fromarray(_rgb(128, 128)).save(tmp_path / "train" / f"{i}.png")
    with pytest.warns(D.LabkitDataWarning, match="no test/"):
        s = D.get_splits(tmp_path)
    assert {k: len(v) for k, v in s.items()} == {"train": 14, "val": 3, "test": 3}
    flat = {v.tobytes() for v in np.concatenate(list(s.values()))}
    assert len(flat) == 20                            # a partition, no overlap


def test_one_image_without_a_test_folder_is_refused_before_training(tmp_path):
    """It trained on 1 image with 0 val and failed later in 02_quantize (need at least one array to stack)."""
    (tmp_path / "train").mkdir()
    Image.fromarray(_rgb(128, 128)).save(tmp_path / "train" / "0.png")
    with pytest.raises(D.DataError, match="train/ holds 1 image.*no test/ folder.*add a test/ folder"):
        D.get_splits(tmp_path)
    Image.fromarray(_rgb(128, 128)).save(tmp_path / "train" / "1.png")
    with pytest.warns(D.LabkitDataWarning, match="no test/"):
        assert len(D.get_splits(tmp_path)["test"]) == 1


def test_a_flat_folder_of_images_is_told_to_use_train(tmp_path):
    for i in range(3):
        Image.fromarray(_rgb(128, 128)).save(tmp_path / f"{i}.png")
    with pytest.raises(D.DataError, match=r"train: folder not found; .* itself holds 3 file\(s\): move the training "
                                         r"images into .*train/"):
        D.get_splits(tmp_path)


def test_split_train_val_deterministic():
    x = np.arange(50)
    a, b = D.split_train_val(x, 0.1, seed=3)
    assert np.array_equal(a, D.split_train_val(x, 0.1, seed=3)[0]) and len(b) == 5
    assert sorted(np.concatenate([a, b]).tolist()) == x.tolist()


@pytest.mark.skipif(not (COURSE128 / "train").is_dir(),
                    reason="real course data /work/shared/datasets/course128 not present")
def test_course128_train_folder():
    x = D.load_dataset(COURSE128, "train")
    assert x.shape == (204, 128, 128, 3) and x.dtype == np.uint8


# ---------------------------------------------------------------- default dataset

@pytest.fixture()
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_CACHE_DIR", str(tmp_path))
    D._default_arrays.cache_clear()
    yield tmp_path
    D._default_arrays.cache_clear()


def test_default_dataset_build_cache_and_reuse(fresh_cache, monkeypatch):
    train, test = D.default_dataset("train"), D.default_dataset("test")
    for x in (train, test):
        assert x.dtype == np.uint8 and x.shape[1:] == (128, 128, 3)
    assert len(train) >= 100 and len(test) >= 24
    files = list(fresh_cache.glob("default-*.npz"))
    assert len(files) == 1 and not list(fresh_cache.glob("*.tmp"))
    # reuse: a second process-level load must read the file, not rebuild
    D._default_arrays.cache_clear()
    monkeypatch.setattr(D, "_build_default", lambda: pytest.fail("cache not reused"))
    assert np.array_equal(D.default_dataset("train"), train)
    assert np.array_equal(D.default_dataset("test"), test)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "wrong-keys"])
def test_corrupt_cache_is_rebuilt(fresh_cache, damage):
    """A damaged .npz (cut short, overwritten, empty, other content) is rebuilt, not fatal."""
    good = D.default_dataset("test")
    path = next(fresh_cache.glob("default-*.npz"))
    whole = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"\x00" * 100)
    elif damage == "truncated":
        path.write_bytes(whole[: len(whole) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        np.savez(path, something=np.zeros(3))
    D._default_arrays.cache_clear()
    assert np.array_equal(D.default_dataset("test"), good)
    assert path.read_bytes() == whole, "the rebuilt cache was written back"
    assert not list(fresh_cache.glob("*.tmp*")) and not list(fresh_cache.glob(".*"))


def test_default_dataset_deterministic_and_disjoint():
    a, b = D._build_default(), D._build_default()
    for k in a:
        assert np.array_equal(a[k], b[k])
    src_train, src_test = set(a["train_source"]), set(a["test_source"])
    assert src_train and src_test and not src_train & src_test
    assert src_test == set(D.DEFAULT_SOURCES["test"])
    assert not {t.tobytes() for t in a["train"]} & {t.tobytes() for t in a["test"]}
    info = D.dataset_info()
    assert info["train"]["tiles"] == len(a["train"]) and info["test"]["tiles"] == len(a["test"])


def test_default_splits_and_bad_split():
    s = D.get_splits(None)
    assert len(s["train"]) + len(s["val"]) == D.dataset_info()["train"]["tiles"]
    assert np.array_equal(D.get_images(None, "val"), s["val"])
    with pytest.raises(ValueError, match="split"):
        D.default_dataset("val")


# ---------------------------------------------------------------- tensors

def test_to_tensor_to_uint8_roundtrip():
    x = RNG.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    t = D.to_tensor(x)
    assert t.shape == (2, 3, 8, 8) and t.dtype == torch.float32
    assert 0 <= t.min() and t.max() <= 1
    assert np.array_equal(D.to_uint8(t), x)
    assert D.to_uint8(torch.tensor([[[[1.7]]] * 3]).reshape(1, 3, 1, 1)).max() == 255
    with pytest.raises(ValueError, match="uint8"):
        D.to_tensor(x.astype(np.float32))


def test_tile_dataset_shape_and_seeded_augment():
    x = RNG.integers(0, 256, (3, 160, 144, 3), dtype=np.uint8)
    ds = D.TileDataset(x, augment=True, seed=7)
    item = ds[1]
    assert item.shape == (3, 128, 128) and item.dtype == torch.float32
    assert 0 <= item.min() and item.max() <= 1
    assert torch.equal(D.TileDataset(x, augment=True, seed=7)[1], item)
    ds.set_epoch(1)
    assert not torch.equal(ds[1], item)
    torch.manual_seed(0)
    a = D.TileDataset(x, augment=True)[0]
    torch.manual_seed(0)
    assert torch.equal(D.TileDataset(x, augment=True)[0], a)
    with pytest.raises(ValueError, match="TileDataset"):
        D.TileDataset(x.astype(np.float32))
    plain = D.TileDataset(x)[0]
    assert torch.equal(plain, D.to_tensor(x[0, 16:144, 8:136]))


def test_tile_dataset_batch_equals_stacked_items():
    x = RNG.integers(0, 256, (4, 160, 144, 3), dtype=np.uint8)
    for augment in (True, False):
        ds = D.TileDataset(x, augment=augment, seed=3)
        ds.set_epoch(2)
        idx = [2, 0, 3, 2]
        batch = ds.batch(idx)
        assert batch.shape == (4, 3, 128, 128) and batch.dtype == torch.float32
        assert torch.equal(batch, torch.stack([ds[i] for i in idx]))


def test_pool_windows_cut_a_photo_as_the_default_pool_does(tmp_path):
    from labkit.data import _skimage_data_dir, default_train_pool, pool_windows

    first = D.DEFAULT_SOURCES["train"][0]
    windows = pool_windows(_skimage_data_dir() / first)
    assert windows.dtype == np.uint8 and windows.shape[1:] == (192, 192, 3) and len(windows) > 0
    assert np.array_equal(default_train_pool()[:len(windows)], windows)   # the pool starts with its windows
    grey = np.tile(np.linspace(0, 255, 400, dtype=np.uint8), (300, 1))
    Image.fromarray(grey, "L").save(tmp_path / "grey.png")
    g = pool_windows(tmp_path / "grey.png")
    assert g.shape[1:] == (192, 192, 3) and len(g) > 0
    assert np.array_equal(g[..., 0], g[..., 1]) and np.array_equal(g[..., 1], g[..., 2])


def test_photo_tiles_cuts_as_the_test_photos_and_refuses_a_photo_without_tiles(tmp_path):
    tiles = D.holdout_tiles()
    assert tiles.dtype == np.uint8 and tiles.shape[1:] == (D.TILE, D.TILE, 3) and len(tiles) > 10
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((64, 200, 3), np.uint8)).save(small)
    with pytest.raises(D.DataError, match="no 128x128 tile"):
        D.photo_tiles([small])
    with pytest.raises(D.DataError, match="no 128x128 tile"):
        D.photo_tiles([])


def test_the_held_out_test_images_are_named_and_the_same_for_every_seed(tmp_path):
    """A course folder without test/: the held-out images do not move with the run's seed, and are listed."""
    import warnings

    train = tmp_path / "course" / "train"
    train.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for i in range(20):
        Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)).save(train / f"{i}.png")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        a = D.get_splits(tmp_path / "course", seed=0)
        b = D.get_splits(tmp_path / "course", seed=7)
    assert np.array_equal(a["test"], b["test"]) and not np.array_equal(a["val"], b["val"])
    names = D.held_out_names(tmp_path / "course")
    assert len(names) == 3 == len(a["test"])
    assert np.array_equal(np.stack([D.load_image(train / n) for n in names]), a["test"])
    assert any("(3 images, the same for every seed; labkit.data.held_out_names lists them)" in str(w.message)
               for w in record)
    (tmp_path / "course" / "test").mkdir()
    assert D.held_out_names(tmp_path / "course") is None
