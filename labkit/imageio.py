"""Image I/O: one conversion path from files, PIL images and arrays to 8-bit RGB.

Every entry point (the codec, the command line, user data folders) goes through
:func:`as_rgb8`, so an image is converted the same way, with the same warning,
wherever it comes from:

* 8-bit RGB is used as is (no warning);
* grey (``L``, ``1``, ``H x W`` or ``H x W x 1`` arrays) is replicated to 3 channels;
* alpha (``RGBA``, ``LA``, ``PA``, palette with transparency, an RGB or grey PNG's transparent
  colour, ``H x W x 4`` / ``x 2`` arrays) is composited onto white;
* palette, CMYK, YCbCr, ... go through Pillow's RGB conversion;
* 16-bit (``I;16*``, 16-bit RGB PNG, ``uint16`` arrays, and wider integer arrays or mode ``I``
  images with a value above 255) keeps the top 8 bits (``>> 8``); wider integer arrays and mode
  ``I`` images whose values all lie in 0..255 (``img.astype(int)``, a nested list, such an array
  saved as TIFF) are 8-bit values and are taken as they are;
* a PIL image is read as its file is (first frame, EXIF orientation, colour-profile note);
* multi-frame files: the first frame;
* an EXIF orientation (phone photos) is applied, so the pixels stand as every viewer
  shows them;
* an embedded colour profile that is not sRGB is noted (its pixels are used as stored).

Each lossy or structural change emits one :class:`LabkitDataWarning` naming the
source and what was done.  Anything that cannot be read or converted raises
:class:`DataError` saying what was wrong and what to do.  :func:`load` with
``max_pixels`` checks the size from the file's header before decoding any pixel, and
that cap then replaces Pillow's own decompression-bomb limit.

This module imports neither torch nor the compiled coder.
"""
from __future__ import annotations

import io
import os
import threading
import warnings
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["DataError", "LabkitDataWarning", "as_rgb8", "as_rgb8_batch", "load", "save", "image_format"]

_GREY16 = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA = ("RGBA", "LA", "PA", "RGBa", "La")
_VIA_PILLOW = ("L", "1", "P", "CMYK", "YCbCr", "LAB", "HSV")


class DataError(ValueError):
    """An image or folder could not be used; the message names it and says what to do."""


class LabkitDataWarning(UserWarning):
    """An image was usable only after a conversion (mode, bit depth, alpha, frames)."""


def _warn(source: str, msg: str, stacklevel: int) -> None:
    warnings.warn(f"{source}: {msg}", LabkitDataWarning, stacklevel=stacklevel + 1)


def _is_pil(image: Any) -> bool:
    return hasattr(image, "mode") and hasattr(image, "convert") and hasattr(image, "getbands")


def as_rgb8(image: Any, *, name: str | None = None, stacklevel: int = 2, max_pixels: int | None = None) -> np.ndarray:
    """Convert an image to a C-contiguous uint8 ``H x W x 3`` RGB array.

    Parameters
    ----------
    image : path, PIL.Image.Image or array-like
        A file path (``str`` / ``os.PathLike``) read with Pillow, an opened PIL image,
        or an array: ``H x W`` (grey), ``H x W x 1`` (grey), ``H x W x 2`` (grey + alpha),
        ``H x W x 3`` (RGB) or ``H x W x 4`` (RGBA), of dtype uint8 or uint16.
    name : str, optional
        How warnings and errors name the image (default: the path, ``"PIL image"`` or
        ``"array"``).
    stacklevel : int
        Where warnings point (2 = the caller of ``as_rgb8``).
    max_pixels : int, optional
        A file path only: refuse a larger image before decoding it (:func:`load`).

    Returns
    -------
    np.ndarray
        uint8 ``H x W x 3``; the input itself when it already is one and is contiguous.

    Raises
    ------
    DataError
        Unreadable files, unsupported modes, float or signed arrays, wrong shapes.
    """
    if isinstance(image, (str, os.PathLike)):
        return load(image, stacklevel=stacklevel + 1, max_pixels=max_pixels)
    if _is_pil(image):
        rawmodes = [str(getattr(t, "args", "")) for t in (getattr(image, "tile", None) or [])]
        return _opened_to_rgb8(image, rawmodes, name or "PIL image", stacklevel + 1)
    return _array_to_rgb8(image, name or "array", stacklevel + 1)


def as_rgb8_batch(images: Any, *, name: str = "images") -> np.ndarray:
    """A uint8 ``[N, H, W, 3]`` array from one such array or a sequence of same-sized images.

    A ``[N, H, W, 3]`` uint8 array is returned as is; anything else is converted image
    by image with :func:`as_rgb8` (``DataError`` when the sizes differ).
    """
    a = images if isinstance(images, np.ndarray) else None
    if a is not None and a.dtype == np.uint8 and a.ndim == 4 and a.shape[-1] == 3:
        return a
    if a is not None and a.ndim == 4 and a.dtype.kind in "ui":
        items: Sequence[Any] = list(a)
    elif a is not None:
        raise DataError(f"{name}: expected a batch of images [N, H, W, 3] (uint8), got {a.dtype} {a.shape}")
    else:
        items = list(images)
    out = [as_rgb8(im, name=f"{name}[{i}]", stacklevel=3) for i, im in enumerate(items)]
    if not out:
        raise DataError(f"{name}: no images")
    if len({im.shape for im in out}) > 1:
        raise DataError(f"{name}: images differ in size ({sorted({im.shape[:2] for im in out})}); "
                        "cut them to one size first (labkit.data.to_tiles)")
    return np.stack(out)


def _array_to_rgb8(image: Any, source: str, stacklevel: int) -> np.ndarray:
    arr = np.asarray(image)
    if arr.dtype.kind == "f" or arr.dtype.kind == "b" or arr.dtype.kind not in "ui":
        raise DataError(f"{source}: expected uint8 pixels, got {arr.dtype}; convert with labkit.data.to_uint8 "
                        "(floats in [0, 1]) or np.uint8")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (2, 3, 4)):
        raise DataError(f"{source}: expected an H x W x 3 RGB image (or H x W grey, H x W x 4 RGBA), "
                        f"got an array of shape {arr.shape}")
    if arr.dtype != np.uint8:
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 65535):
            raise DataError(f"{source}: {arr.dtype} values outside 0..65535; scale them to 8 bits (np.uint8) first")
        if arr.dtype.itemsize == 1:  # int8 >= 0
            arr = arr.astype(np.uint8)
        elif arr.dtype != np.uint16 and (not arr.size or int(arr.max()) <= 255):
            # img.astype(int), a nested list: 8-bit values in a wider type, not a 16-bit image (it came out black)
            _warn(source, f"{arr.dtype} pixels, all in 0..255, taken as 8-bit", stacklevel)
            arr = arr.astype(np.uint8)
        else:
            _warn(source, f"{arr.dtype} pixels taken as 16-bit; reduced to 8 bits (>> 8)", stacklevel)
            arr = (arr.astype(np.uint32) >> 8).astype(np.uint8)
    if arr.ndim == 2:
        _warn(source, "grey (H x W); replicated to RGB", stacklevel)
        return np.ascontiguousarray(np.repeat(arr[:, :, None], 3, axis=2))
    if arr.shape[2] in (2, 4):
        _warn(source, f"{arr.shape[2]} channels with alpha; composited onto white, converted to RGB", stacklevel)
        return _composite_on_white(arr)
    return np.ascontiguousarray(arr)


def _composite_on_white(arr: np.ndarray) -> np.ndarray:
    """uint8 ``H x W x (2|4)`` (colour + alpha) over white, with Pillow's rounding."""
    from PIL import Image

    rgba = arr if arr.shape[2] == 4 else np.concatenate([np.repeat(arr[:, :, :1], 3, axis=2), arr[:, :, 1:]], axis=2)
    return _on_white(Image.fromarray(np.ascontiguousarray(rgba), "RGBA"))


def _on_white(im: Any) -> np.ndarray:
    """Composite a PIL image with alpha onto a white background: uint8 RGB array."""
    from PIL import Image

    rgba = im.convert("RGBA")
    bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(bg, rgba).convert("RGB"), dtype=np.uint8).copy()


#: EXIF orientations that move pixels (1 is upright; anything outside 1..8 is not a valid value).
_EXIF_TURNS = range(2, 9)


def _opened_to_rgb8(im: Any, rawmodes: list[str], source: str, stacklevel: int) -> np.ndarray:
    """An opened Pillow image (from a file or the caller) to uint8 RGB, the same way whichever it is.

    The frame it is at (the first, fresh from a file), its EXIF orientation applied, a colour
    profile other than sRGB noted: a PIL image handed to :func:`as_rgb8` straight from
    ``Image.open`` gives the pixels and warnings its file gives :func:`load`. The orientation is
    applied only to such an image (Pillow sets its ``format``): one the caller made from it
    (``transpose``, ``rotate``, ``crop``, ``convert``, ...) keeps the tag but may already stand
    upright, so it is taken as it is.
    """
    from PIL import ImageOps

    if getattr(im, "n_frames", 1) > 1:
        frame = im.tell()
        _warn(source, f"has {im.n_frames} frames; using " + ("the first" if frame == 0 else
                                                             f"frame {frame}, the one it is at"), stacklevel)
    im.load()
    _note_colour_profile(im, source, stacklevel + 1)
    orientation = im.getexif().get(0x0112, 1) if getattr(im, "format", None) else 1
    if orientation in _EXIF_TURNS:
        upright = ImageOps.exif_transpose(im)
        _warn(source, f"EXIF orientation {orientation}; pixels turned upright as viewers show them "
                      f"({im.width}x{im.height} -> {upright.width}x{upright.height})", stacklevel)
        return _pil_to_rgb8(upright, rawmodes, source, stacklevel + 1)
    return _pil_to_rgb8(im, rawmodes, source, stacklevel + 1)


def _pil_to_rgb8(im: Any, rawmodes: list[str], source: str, stacklevel: int) -> np.ndarray:
    """Convert an opened Pillow image to uint8 RGB, warning about any change."""
    mode = im.mode
    sixteen = any(";16" in r for r in rawmodes)
    if mode in ("RGB", "L", "1", "I;16", "I;16B", "I;16L") and "transparency" in im.info:
        # a colour key (PNG tRNS): alpha by another name
        depth = "16-bit, reduced to 8 bits, " if sixteen or mode.startswith("I;16") else ""
        _warn(source, f"mode {mode} with a transparent colour; {depth}composited onto white, converted to RGB",
              stacklevel)
        if mode.startswith("I;16"):
            key = int(im.info["transparency"]) if isinstance(im.info["transparency"], int) else None
            a = np.asarray(im).astype(np.int64)
            grey = (a >> 8).astype(np.uint8)
            alpha = np.where(a == key, 0, 255).astype(np.uint8)
            return _composite_on_white(np.stack([grey, alpha], axis=2))
        return _on_white(im)
    if mode == "RGB":
        if sixteen:
            _warn(source, "16-bit RGB; reduced to 8 bits per channel (>> 8)", stacklevel)
        return np.asarray(im, dtype=np.uint8).copy()
    if mode in _GREY16:
        a = np.asarray(im).astype(np.int64)
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise DataError(f"{source}: mode {mode} values outside 0..65535; convert it to 8-bit RGB PNG first")
        if mode == "I" and (not a.size or a.max() <= 255):
            # 32-bit integer pixels holding 8-bit values (an int array saved as TIFF): >> 8 made them black
            _warn(source, "mode I (32-bit integer) pixels, all in 0..255, taken as 8-bit; replicated to RGB",
                  stacklevel)
            return np.ascontiguousarray(np.repeat(a.astype(np.uint8)[..., None], 3, axis=2))
        what = "16-bit grey" if mode != "I" else "32-bit integer grey, values up to 65535 taken as 16-bit"
        _warn(source, f"mode {mode} ({what}); reduced to 8-bit RGB (>> 8)", stacklevel)
        return np.ascontiguousarray(np.repeat((a >> 8).astype(np.uint8)[..., None], 3, axis=2))
    if mode in _ALPHA or (mode == "P" and "transparency" in im.info):
        depth = "16-bit, reduced to 8 bits, and " if sixteen else ""
        _warn(source, f"mode {mode} has alpha; {depth}composited onto white, converted to RGB", stacklevel)
        return _on_white(im)
    if mode in _VIA_PILLOW:
        _warn(source, f"mode {mode}; converted to RGB", stacklevel)
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    raise DataError(f"{source}: unsupported image mode {mode}; re-save it as 8-bit RGB PNG")


#: Pillow's decompression-bomb limit is process-wide; :func:`load` swaps it under this lock.
_PILLOW_LIMIT_LOCK = threading.Lock()


@contextmanager
def _without_pillow_limit():
    """Pillow's ``Image.MAX_IMAGE_PIXELS`` off for the block (the caller enforces its own cap), then restored."""
    from PIL import Image

    with _PILLOW_LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _note_colour_profile(im: Any, source: str, stacklevel: int) -> None:
    """Warn when the file embeds a colour profile other than sRGB (its pixels are used as stored)."""
    icc = im.info.get("icc_profile")
    if not icc:
        return
    try:
        import io

        from PIL import ImageCms

        desc = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))).strip()
    except Exception:  # noqa: BLE001 - no littlecms, or a profile it cannot parse: say so generically
        desc = "unreadable"
    if "srgb" not in desc.lower():
        _warn(source, f"embeds the colour profile {desc!r}; its pixels are used as stored, not converted to "
                      "sRGB (convert the image to sRGB first for exact colours)", stacklevel)


def load(path: str | os.PathLike[str], *, stacklevel: int = 2, max_pixels: int | None = None) -> np.ndarray:
    """Read one image file as uint8 ``H x W x 3`` RGB (any format Pillow reads; see the module doc).

    Parameters
    ----------
    path : str or os.PathLike
        The image file.
    stacklevel : int
        Where conversion warnings point (2 = the caller of ``load``).
    max_pixels : int, optional
        Refuse an image of more pixels with ``DataError``, from the size in its header, before
        any pixel is decoded (memory stays bounded); Pillow's own decompression-bomb limit is
        then not applied, so the caller's cap is the one that counts.  None: Pillow's limit.

    Returns
    -------
    np.ndarray
        uint8 ``H x W x 3``.

    Raises
    ------
    DataError
        Missing file, not an image, unsupported mode.
    """
    from PIL import Image

    from .settings import pixel_cap_excess

    path = Path(path)
    try:
        with _without_pillow_limit() if max_pixels is not None else nullcontext(), Image.open(path) as im:
            width, height = im.size
            message = pixel_cap_excess(width, height, max_pixels) if max_pixels is not None else None
            if message:
                raise DataError(f"{path}: {message}")
            rawmodes = [str(getattr(t, "args", "")) for t in (im.tile or [])]
            return _opened_to_rgb8(im, rawmodes, str(path), stacklevel + 1)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file; check the path") from None
    except PermissionError as e:
        if path.is_dir():   # Windows answers a folder with PermissionError
            raise DataError(f"{path}: is a folder, not an image file") from None
        raise DataError(f"{path}: cannot be read ({e.strerror or 'permission denied'}); check its permissions") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not an image file") from None
    except Image.DecompressionBombError as e:
        raise DataError(f"{path}: {e} (Pillow's decompression-bomb guard); cut it into smaller images") from e
    except (MemoryError, Warning):  # a warning turned into an error (-W error) stays what it is
        raise
    except Exception as e:  # noqa: BLE001 - a damaged file can make any Pillow plugin raise anything
        if isinstance(e, DataError):
            raise
        raise DataError(f"{path}: not a readable image ({type(e).__name__}: {e}); pass an image file "
                        "(re-save it as PNG if it is one), or remove it from a data folder") from e


def image_format(path: str | os.PathLike[str]) -> str:
    """Pillow's format name for ``path``'s suffix; ``DataError`` when the suffix names no writable format."""
    from PIL import Image

    fmt = Image.registered_extensions().get(Path(path).suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise DataError(f"cannot tell the image format from {Path(path).name!r}; use a suffix such as .png")
    return fmt


#: Largest width or height each format's writer takes (Pillow fails past it, after the work).
#: JPEG's is libjpeg's 65,500 (not the 16-bit field's 65,535); MPO and PDF write JPEG.
MAX_SIDE: dict[str, int] = {"WEBP": 16383, "JPEG": 65500, "MPO": 65500, "PDF": 65500, "GIF": 65535,
                            "PCX": 65535, "TGA": 65535}

#: Formats whose writer stores resized copies, not the image (Pillow's icon writers): refused.
RESIZING_FORMATS: frozenset[str] = frozenset({"ICO", "ICNS"})


def check_writable(path: str | os.PathLike[str], width: int | None = None, height: int | None = None) -> str:
    """Pillow's format for ``path``, after checking that it can hold an RGB image of that size.

    Run before any costly work (a decode), so that an output labkit cannot write is refused
    first: a suffix with no writer in Pillow, a format that cannot store 8-bit RGB, an icon
    format (:data:`RESIZING_FORMATS`: it would store resized copies), or an image larger than the
    format holds (:data:`MAX_SIDE`).

    Returns
    -------
    str
        The format name, as :func:`image_format`.

    Raises
    ------
    DataError
        What cannot be written, and which suffixes can.
    """
    from PIL import Image

    fmt = image_format(path)
    name = Path(path).name
    if fmt in RESIZING_FORMATS:
        raise DataError(f"cannot write {name}: {fmt} icons hold square resized copies, not the image; use .png "
                        "(lossless), .webp, .bmp or .tif")
    try:
        Image.new("RGB", (8, 8)).save(io.BytesIO(), format=fmt)
    except Exception as e:  # noqa: BLE001 - "save handler not installed", "cannot write mode RGB as ..."
        raise DataError(f"cannot write {name}: Pillow cannot save an RGB image as {fmt} ({e}); use .png "
                        "(lossless), .webp, .bmp or .tif") from None
    limit = MAX_SIDE.get(fmt)
    if limit is not None and width is not None and height is not None and max(width, height) > limit:
        raise DataError(f"cannot write {name}: {fmt} holds at most {limit}x{limit} pixels and the image is "
                        f"{width}x{height}; use .png (lossless) or .tif")
    return fmt


def save(image: Any, path: str | os.PathLike[str], *, source: str | os.PathLike[str] | None = None,
         overwrite: bool = True, **options: Any) -> None:
    """Write an image atomically in the format named by ``path``'s suffix.

    Parameters
    ----------
    image : array-like or PIL image
        Anything :func:`as_rgb8` accepts (it is converted first).
    path : str or os.PathLike
        Destination; written through :func:`labkit.atomic.atomic_path` (a failure leaves
        any existing file untouched and no temp file behind); a symlink, FIFO or device
        there is refused with ``labkit.atomic.WriteError``.
    source : str or os.PathLike, optional
        The input the image was made from; writing over it is refused.
    overwrite : bool
        ``False``: refuse an existing ``path``, also one that appears while writing.
    **options
        Passed to ``PIL.Image.Image.save`` (e.g. ``quality``).

    Raises
    ------
    DataError
        A format that cannot hold the image (:func:`check_writable`).
    """
    from PIL import Image

    from .atomic import atomic_path

    rgb = as_rgb8(image, stacklevel=3)
    fmt = check_writable(path, rgb.shape[1], rgb.shape[0])
    if fmt == "GIF" and len(np.unique(rgb.reshape(-1, 3), axis=0)) > 256:
        _warn(str(path), "GIF holds at most 256 colours, so the image is reduced to a palette; save as .png to "
                         "keep its pixels as they are", stacklevel=2)
    with atomic_path(path, source=source, overwrite=overwrite) as tmp:
        Image.fromarray(rgb, "RGB").save(tmp, format=fmt, **options)
