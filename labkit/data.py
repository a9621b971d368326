"""Image data for labkit: the embedded default dataset, user folders, tiles, tensors.

Two sources of images, one shape out (uint8 ``[N, 128, 128, 3]``):

* the **default dataset** -- RGB natural photos shipped inside scikit-image's wheel,
  cut into 128x128 tiles (no download, ever; see ``data/README.md`` for the recipe);
* **user data** in the course layout -- ``data_dir/train/`` and ``data_dir/test/`` of
  images named ``N.png``.

``get_splits`` / ``get_images`` give a train/val/test split for either source;
``TileDataset`` feeds training with seeded augmentation; ``to_tensor`` / ``to_uint8``
convert between uint8 images and float tensors in [0, 1].

Reading and converting single images is ``labkit.imageio``'s job (one path to 8-bit
RGB); ``load_image``, ``DataError`` and ``LabkitDataWarning`` are re-exported from it.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch
from PIL import Image

from . import settings
from .imageio import DataError, LabkitDataWarning, as_rgb8, as_rgb8_batch
from .imageio import load as load_image

__all__ = [
    "DataError", "LabkitDataWarning", "DEFAULT_SOURCES", "TILE", "default_dataset",
    "dataset_info", "load_image", "load_folder", "load_dataset", "to_tiles",
    "split_train_val", "get_splits", "get_images", "TileDataset", "to_tensor", "to_uint8",
    "cache_dir", "HOLDOUT_PHOTO", "photo_tiles", "holdout_tiles",
]

TILE = 128
"""Side of the square tiles the course models work on."""

COURSE_LAYOUT = (
    "expected layout: <data_dir>/train/ and optionally <data_dir>/test/ (without it, 15% of "
    "train/ is held out as test), each holding images named 0.png, 1.png, ... (any format Pillow reads)"
)


# --------------------------------------------------------------------------- default set

DEFAULT_SOURCES: dict[str, list[str]] = {
    "train": [
        "astronaut.png", "chelsea.png", "hubble_deep_field.jpg", "ihc.png",
        # a stereo pair: both views stay in the same split (near-duplicate content)
        "motorcycle_left.png", "motorcycle_right.png", "retina.jpg",
    ],
    "test": ["coffee.png", "rocket.jpg"],
}
"""Files of ``skimage/data/`` per split. Split by source photo: no test pixels in train."""

_RECIPE = {
    "version": 1,
    "sources": DEFAULT_SOURCES,
    "max_side": 768,        # photos first shrunk (LANCZOS) so the longer side is <= 768 px
    "scales": [1, 2, 4],    # then each of these downscales (LANCZOS) is tiled
    "tile": TILE,           # non-overlapping grid, centred in the image
    "min_std": 4.0,         # tiles whose pixel std is below this (flat) are dropped
    # training pool: overlapping windows of the *train* photos, cut the same way, from
    # which training takes random 128x128 crops (many more distinct crops than the grid)
    "pool_window": 192,
    "pool_stride": 64,
}


def _skimage_data_dir() -> Path:
    """The folder of sample images inside the installed scikit-image (no fetcher used)."""
    import skimage

    return Path(skimage.__file__).resolve().parent / "data"


def cache_dir() -> Path:
    """Where the default dataset's .npz lives: ``$LABKIT_CACHE_DIR`` or ``<repo>/data/cache``."""
    return settings.cache_dir(Path(__file__).resolve().parent.parent / "data" / "cache")


def _recipe_key() -> str:
    """Hash of the recipe and the library versions that affect the pixels."""
    import PIL
    import skimage

    blob = json.dumps(
        {"recipe": _RECIPE, "skimage": skimage.__version__, "pillow": PIL.__version__},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _grid_tiles(img: np.ndarray, size: int, stride: int | None = None) -> np.ndarray:
    """``size`` x ``size`` tiles every ``stride`` px (default: non-overlapping) on a grid centred in ``img``."""
    stride = stride or size
    h, w = img.shape[:2]
    if h < size or w < size:
        return np.empty((0, size, size, img.shape[2]), np.uint8)
    ny, nx = (h - size) // stride + 1, (w - size) // stride + 1
    oy, ox = (h - (ny - 1) * stride - size) // 2, (w - (nx - 1) * stride - size) // 2
    return np.ascontiguousarray(np.stack([img[oy + i * stride:oy + i * stride + size, ox + j * stride:ox + j * stride + size]
                                          for i in range(ny) for j in range(nx)]))


def _tiles_of_photo(path: Path, size: int = TILE, stride: int | None = None) -> np.ndarray:
    """All tiles of one source photo, following ``_RECIPE`` (``size``/``stride`` for the training pool)."""
    with Image.open(path) as im:
        im = im.convert("RGB")  # the chosen sources are all 8-bit RGB already
        im.info.pop("icc_profile", None)
        w, h = im.size
        f = _RECIPE["max_side"] / max(w, h)
        if f < 1:
            im = im.resize((round(w * f), round(h * f)), Image.Resampling.LANCZOS)
        out = []
        for s in _RECIPE["scales"]:
            w, h = im.size
            sub = im if s == 1 else im.resize((w // s, h // s), Image.Resampling.LANCZOS)
            t = _grid_tiles(np.asarray(sub), size, stride)
            if len(t):
                out.append(t[t.reshape(len(t), -1).std(axis=1) >= _RECIPE["min_std"]])
    return np.concatenate(out) if out else np.empty((0, size, size, 3), np.uint8)


HOLDOUT_PHOTO = "grace_hopper.jpg"
"""A photo in neither the default pool nor its test split (matplotlib's sample data, no download):
fine-tunes are validated on its tiles (:func:`holdout_tiles`), because the default val tiles overlap
the training pool and cannot show over-fitting."""


def photo_tiles(paths: Sequence[str | os.PathLike]) -> np.ndarray:
    """The 128x128 tiles of the photos ``paths``, cut as the default test photos are, uint8 ``[N, 128, 128, 3]``.

    Raises
    ------
    DataError
        When the photos give no tile (each is smaller than 128 px or flat).
    """
    arr = [_tiles_of_photo(Path(p)) for p in paths]
    out = np.concatenate(arr) if arr else np.empty((0, TILE, TILE, 3), np.uint8)
    if not len(out):
        raise DataError(f"{[str(p) for p in paths]}: no 128x128 tile with detail; give larger photos")
    return out


def holdout_tiles() -> np.ndarray:
    """The tiles of :data:`HOLDOUT_PHOTO` (matplotlib's copy), uint8 ``[N, 128, 128, 3]``."""
    import matplotlib.cbook as cbook

    return photo_tiles([cbook.get_sample_data(HOLDOUT_PHOTO, asfileobj=False)])


def pool_windows(path: str | os.PathLike) -> np.ndarray:
    """The training pool's overlapping windows of one photo, uint8 ``[N, 192, 192, 3]``.

    Cut as :func:`default_train_pool` cuts the default train photos (shrunk to the recipe's
    longest side, at each of its scales, flat windows dropped); a greyscale photo becomes grey
    RGB.  ``tools/fit_decoder.py --extra-photos`` adds photos to the pool this way.
    """
    return _tiles_of_photo(Path(path), _RECIPE["pool_window"], _RECIPE["pool_stride"])


def _build_default() -> dict[str, np.ndarray]:
    """Cut every available source photo into tiles; record each tile's source."""
    root = _skimage_data_dir()
    arrays: dict[str, np.ndarray] = {}
    for split, names in DEFAULT_SOURCES.items():
        tiles, src = [], []
        for name in names:
            path = root / name
            if not path.is_file():
                continue  # a trimmed skimage install: use what is there
            t = _tiles_of_photo(path)
            tiles.append(t)
            src += [name] * len(t)
        if not tiles:
            raise DataError(
                f"none of the default {split} photos {names} exist in {root}; reinstall "
                "scikit-image (its wheel ships them) or pass data_dir to use your own images"
            )
        arrays[split] = np.concatenate(tiles)
        arrays[f"{split}_source"] = np.array(src)
    pool = [pool_windows(root / n) for n in DEFAULT_SOURCES["train"] if (root / n).is_file()]
    arrays["train_pool"] = np.concatenate(pool)
    return arrays


def _atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an .npz atomically (temp file in the same folder, then ``os.replace``)."""
    from .atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


_CACHE_KEYS = ("train", "train_source", "test", "test_source", "train_pool")


def _read_cache(path: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None when the file is missing, unreadable or not what the recipe makes."""
    import zipfile

    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
        return None  # corrupt cache: rebuilt by the caller and overwritten
    if set(arrays) != set(_CACHE_KEYS):
        return None
    for split in ("train", "test"):
        a = arrays[split]
        if a.dtype != np.uint8 or a.ndim != 4 or a.shape[1:] != (TILE, TILE, 3) or len(arrays[f"{split}_source"]) != len(a):
            return None
    for a in arrays.values():
        a.setflags(write=False)
    return arrays


@lru_cache(maxsize=1)
def _default_arrays() -> dict[str, np.ndarray]:
    """The default tiles: from memory, else the .npz cache, else built (and cached)."""
    path = cache_dir() / f"default-{_recipe_key()}.npz"
    cached = _read_cache(path)
    if cached is not None:
        return cached
    arrays = _build_default()
    try:
        _atomic_savez(path, arrays)
    except OSError as e:
        warnings.warn(f"could not cache the default dataset at {path} ({e}); it will be "
                      "rebuilt next time (set LABKIT_CACHE_DIR to a writable folder)",
                      LabkitDataWarning, stacklevel=3)
    for a in arrays.values():
        a.setflags(write=False)
    return arrays


def default_dataset(split: Literal["train", "test"]) -> np.ndarray:
    """Tiles of the embedded default dataset, uint8 ``[N, 128, 128, 3]`` (a fresh copy)."""
    if split not in DEFAULT_SOURCES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r} "
                         "(a validation split comes from get_splits(None))")
    return _default_arrays()[split].copy()


def default_train_pool() -> np.ndarray:
    """Overlapping 192x192 windows of the default *train* photos, uint8 ``[N,192,192,3]``.

    Training takes random 128x128 crops of these (``TileDataset(augment=True)``), which
    gives far more distinct training crops than the 128 grid; the test photos are not used.
    """
    return _default_arrays()["train_pool"].copy()


def dataset_info() -> dict:
    """Tile counts per split and per source photo, the recipe and the cache file."""
    arrays = _default_arrays()
    info: dict = {"recipe": json.loads(json.dumps(_RECIPE)), "skimage_data_dir":
                  str(_skimage_data_dir()),
                  "cache_file": str(cache_dir() / f"default-{_recipe_key()}.npz")}
    for split in DEFAULT_SOURCES:
        names, counts = np.unique(arrays[f"{split}_source"], return_counts=True)
        info[split] = {"tiles": int(len(arrays[split])),
                       "sources": {str(n): int(c) for n, c in zip(names, counts)}}
    return info


# --------------------------------------------------------------------------- user images

def _sorted_files(files: list[Path]) -> list[Path]:
    """Numeric order (2.png before 10.png) when every stem is an integer, else by name."""
    try:
        return sorted(files, key=lambda p: (int(p.stem), p.name))
    except ValueError:
        return sorted(files, key=lambda p: p.name)


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The files of ``folder`` that :func:`load_folder` reads, in its order (hidden files and
    sub-folders skipped; numeric order when every stem is an integer)."""
    return _sorted_files([p for p in Path(folder).iterdir() if not p.name.startswith(".") and p.is_file()])


def load_folder(path: str | os.PathLike) -> list[np.ndarray]:
    """All images of one folder, as uint8 HxWx3 arrays in numeric/name order.

    Hidden files (leading '.') and sub-folders are skipped; any other file that is not
    an image raises ``DataError`` naming it.
    """
    path = Path(path)
    if not path.is_dir():
        parent = path.parent
        loose = [p for p in parent.iterdir() if p.is_file() and not p.name.startswith(".")] if parent.is_dir() else []
        hint = (f"; {parent} itself holds {len(loose)} file(s): move the training images into {path}/"
                if loose and path.name in ("train", "test") else "")
        raise DataError(f"{path}: folder not found{hint}; {COURSE_LAYOUT}")
    files = image_files(path)
    if not files:
        raise DataError(f"{path}: folder holds no images; {COURSE_LAYOUT}")
    return [load_image(p) for p in files]


def to_tiles(images: Sequence[np.ndarray] | np.ndarray, size: int = TILE,
             mode: Literal["grid", "center"] = "grid") -> np.ndarray:
    """Cut images (each HxWx3, any size >= ``size``) into ``size`` tiles.

    ``grid``: every non-overlapping tile of a grid centred in the image (margins dropped);
    ``center``: one centre crop per image. Returns uint8 ``[N, size, size, 3]``.
    """
    if mode not in ("grid", "center"):
        raise ValueError(f"mode must be 'grid' or 'center', got {mode!r}")
    out = []
    for i, img in enumerate(images):
        img = as_rgb8(img, name=f"image {i}", stacklevel=3)
        h, w = img.shape[:2]
        if h < size or w < size:
            raise DataError(f"image {i} is {h}x{w}, smaller than the {size}x{size} tile; "
                            "use larger images or a smaller size")
        if mode == "center":
            oy, ox = (h - size) // 2, (w - size) // 2
            out.append(img[None, oy:oy + size, ox:ox + size])
        else:
            out.append(_grid_tiles(img, size))
    if not out:
        return np.empty((0, size, size, 3), np.uint8)
    return np.ascontiguousarray(np.concatenate(out))


def load_dataset(data_dir: str | os.PathLike, split: Literal["train", "test"],
                 tile: bool = False) -> np.ndarray:
    """Images of ``data_dir/<split>/`` as uint8 ``[N, 128, 128, 3]``.

    All images must be 128x128 unless ``tile=True`` (larger images are then cut into
    128x128 grid tiles with ``to_tiles``).
    """
    folder = Path(data_dir) / split
    images = load_folder(folder)
    if tile:
        return to_tiles(images)
    bad = [(i, im.shape[:2]) for i, im in enumerate(images) if im.shape[:2] != (TILE, TILE)]
    if bad:
        i, shape = bad[0]
        raise DataError(
            f"{folder}: {len(bad)} of {len(images)} images are not {TILE}x{TILE} (image #{i} "
            f"in sorted order is {shape[1]}x{shape[0]}); the course layout holds {TILE}x{TILE} images: cut "
            f"larger ones into tiles first (in Python: labkit.data.load_dataset(folder, split, tile=True) "
            "or labkit.data.to_tiles) and save those"
        )
    return np.stack(images)


def _split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, taken) indices of :func:`split_train_val`, each in their original order."""
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_val = int(round(val_fraction * n))
    if val_fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def split_train_val(images: np.ndarray, val_fraction: float = 0.1,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic random split: ``round(val_fraction * N)`` images (at least 1 when
    0 < fraction and N >= 2) go to val; both parts keep their original order."""
    train_idx, val_idx = _split_indices(len(images), val_fraction, seed)
    return images[train_idx], images[val_idx]


#: A course folder without ``test/`` holds out this share of ``train/`` as its test set ...
HOLDOUT_FRACTION = 0.15
#: ... drawn with this seed, the same for every run seed, so that ``-p seed 1`` retrains on other
#: validation images but is tested on the same held-out images (1 is what seed 0 used before).
HOLDOUT_SEED = 1


def held_out_names(data_dir: str | os.PathLike) -> list[str] | None:
    """The files of ``data_dir/train/`` that :func:`get_splits` holds out as the test set, in order.

    For ``get_splits(..., tile=False)``, which the notebooks use (with ``tile=True`` tiles are held
    out, not files). None when the folder has a ``test/`` part (nothing is held out) or no
    ``train/``. The same files on every
    run and for every seed (:data:`HOLDOUT_SEED`); adding an image to ``train/`` draws them anew.
    """
    root = Path(data_dir)
    if (root / "test").is_dir() or not (root / "train").is_dir():   # a missing train/ is get_splits' error to give
        return None
    files = image_files(root / "train")
    return [files[i].name for i in _split_indices(len(files), HOLDOUT_FRACTION, HOLDOUT_SEED)[1]]


def get_splits(data_dir: str | os.PathLike | None = None, seed: int = 0,
               val_fraction: float | None = None, tile: bool = False) -> dict[str, np.ndarray]:
    """Train/val/test arrays (uint8 ``[N,128,128,3]``) for the default set or a user folder.

    * ``data_dir=None``: default dataset; val = 10% of the train tiles (by ``seed``).
    * user data: val = 15% of ``train/``; test = ``test/``. Without a ``test/`` folder,
      :data:`HOLDOUT_FRACTION` of ``train/`` is held out as test first (with a warning; the
      same images for every ``seed``, :func:`held_out_names`), then val is taken (by ``seed``).
    """
    if data_dir is None:
        frac = 0.1 if val_fraction is None else val_fraction
        train, val = split_train_val(default_dataset("train"), frac, seed)
        return {"train": train, "val": val, "test": default_dataset("test")}
    frac = 0.15 if val_fraction is None else val_fraction
    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(f"{root}: data_dir not found; {COURSE_LAYOUT}")
    pool = load_dataset(root, "train", tile=tile)
    if (root / "test").is_dir():
        test = load_dataset(root, "test", tile=tile)
    else:
        if len(pool) < 2:
            raise DataError(f"{root}: train/ holds {len(pool)} image(s) and there is no test/ folder, so no test "
                            "image is left after training's; add a test/ folder or at least one more image")
        pool, test = split_train_val(pool, HOLDOUT_FRACTION, HOLDOUT_SEED)
        which = ("tiles, the same for every seed" if tile else
                 "images, the same for every seed; labkit.data.held_out_names lists them")
        warnings.warn(f"{root}: no test/ folder; holding out {HOLDOUT_FRACTION:.0%} of train/ ({len(test)} {which}) "
                      "as the test set", LabkitDataWarning, stacklevel=2)
    train, val = split_train_val(pool, frac, seed)
    return {"train": train, "val": val, "test": test}


def training_splits(data_dir: str | os.PathLike | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """What training uses: ``train`` images (crops are taken at random) and ``val`` tiles.

    Default data: train = the overlapping 192x192 windows of the train photos
    (:func:`default_train_pool`), val = the 10% tile split of :func:`get_splits` (it
    overlaps the windows: it monitors training, it is not a held-out test).  User data:
    exactly ``get_splits(data_dir, seed)``'s train and val (128x128 tiles, no crops).
    """
    splits = get_splits(data_dir, seed)
    if data_dir is None:
        return {"train": default_train_pool(), "val": splits["val"]}
    return {"train": splits["train"], "val": splits["val"]}


def get_images(data_dir: str | os.PathLike | None,
               split: Literal["train", "val", "test"], seed: int = 0) -> np.ndarray:
    """One split of ``get_splits(data_dir, seed)``: default dataset when data_dir is None."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    return get_splits(data_dir, seed)[split]


# --------------------------------------------------------------------------- tensors

def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 ``[N,H,W,3]`` -> float32 ``[N,3,H,W]`` in [0, 1] (``[H,W,3]`` -> ``[3,H,W]``)."""
    a = np.asarray(images)
    a = as_rgb8_batch(a, name="to_tensor") if a.ndim == 4 else as_rgb8(a, name="to_tensor", stacklevel=3)
    t = torch.from_numpy(np.ascontiguousarray(np.moveaxis(a, -1, -3)))
    return t.to(torch.float32).div_(255.0)


def to_uint8(tensor: torch.Tensor) -> np.ndarray:
    """float ``[N,3,H,W]`` in [0, 1] -> uint8 ``[N,H,W,3]`` (x255, rounded, clipped)."""
    if not isinstance(tensor, torch.Tensor):
        tensor = torch.as_tensor(tensor)
    if tensor.ndim not in (3, 4) or tensor.shape[-3] != 3:
        raise ValueError(f"to_uint8 expects [N,3,H,W] or [3,H,W], got {tuple(tensor.shape)}")
    t = tensor.detach().to("cpu", torch.float32).mul(255.0).round_().clamp_(0, 255)
    return np.ascontiguousarray(np.moveaxis(t.to(torch.uint8).numpy(), -3, -1))


class TileDataset(torch.utils.data.Dataset):
    """Training items from a uint8 array ``[N,H,W,3]``: float32 ``[3,crop,crop]`` in [0,1].

    ``augment=True``: random crop (when H or W > crop), horizontal/vertical flips and a
    random multiple of 90 degrees. Randomness per item comes from a numpy Generator:
    with ``seed=None`` it is seeded from torch's RNG (so ``torch.manual_seed`` / the
    DataLoader's worker seeding make runs reproducible, different each epoch); with an
    int ``seed`` it is seeded by ``(seed, epoch, index)`` -- independent of workers;
    call ``set_epoch`` each epoch for fresh augmentations. Without augment, images
    larger than ``crop`` are centre-cropped.
    """

    def __init__(self, images: np.ndarray, crop: int = TILE, augment: bool = False,
                 seed: int | None = None) -> None:
        a = as_rgb8_batch(np.asarray(images), name="TileDataset")
        if a.shape[1] < crop or a.shape[2] < crop:
            raise ValueError(f"images are {a.shape[1]}x{a.shape[2]}, smaller than crop={crop}")
        self.images, self.crop, self.augment, self.seed = a, crop, augment, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream when an int ``seed`` was given."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.images)

    def _rng(self, index: int) -> np.random.Generator:
        if self.seed is None:
            return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
        return np.random.default_rng([self.seed, self.epoch, index])

    def __getitem__(self, index: int) -> torch.Tensor:
        return to_tensor(self._crop(index))

    def batch(self, indices: Sequence[int]) -> torch.Tensor:
        """The items ``indices`` as one float32 ``[B,3,crop,crop]`` tensor, equal to stacking
        ``self[i]``; the crops are stacked as uint8 first, so the batch costs a few tensor
        operations instead of a few per item (which matters when a training loop builds its
        batches on the CPU for a GPU)."""
        return to_tensor(np.stack([self._crop(int(i)) for i in indices]))

    def _crop(self, index: int) -> np.ndarray:
        """Item ``index`` as a contiguous uint8 ``[crop,crop,3]`` array (augmented if asked)."""
        img = self.images[index]
        size = self.crop
        if self.augment:
            rng = self._rng(index)
            y = int(rng.integers(0, img.shape[0] - size + 1))
            x = int(rng.integers(0, img.shape[1] - size + 1))
            img = img[y:y + size, x:x + size]
            flips = rng.integers(0, 2, size=2)
            if flips[0]:
                img = img[:, ::-1]
            if flips[1]:
                img = img[::-1]
            img = np.rot90(img, k=int(rng.integers(0, 4)))
        else:
            y, x = (img.shape[0] - size) // 2, (img.shape[1] - size) // 2
            img = img[y:y + size, x:x + size]
        return np.ascontiguousarray(img)
