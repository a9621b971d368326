"""Settings read from environment variables, parsed when used (never at import).

A bad value raises :class:`SettingsError` naming the variable, the value and what to
set, so every command (``info`` included) can print one clear line instead of a
traceback at import time.

==========================  =============================================  ==============
variable                    meaning                                        default
==========================  =============================================  ==============
``LABKIT_MAX_PIXELS``       largest image (pixels) encoded or decoded      ``2**26`` (64 Mpx)
``LABKIT_CACHE_DIR``        folder of the default dataset's ``.npz``       ``<repo>/data/cache``
==========================  =============================================  ==============
"""
from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["SettingsError", "DEFAULT_MAX_PIXELS", "max_pixels", "pixel_cap_excess", "cache_dir", "positive_int"]

#: Default pixel cap: 64 megapixels (e.g. 8192 x 8192).
DEFAULT_MAX_PIXELS = 1 << 26


class SettingsError(ValueError):
    """An environment variable holds a value labkit cannot use; the message says what to set."""


def positive_int(name: str, default: int) -> int:
    """The environment variable ``name`` as a positive integer (``default`` when unset).

    Parameters
    ----------
    name : str
        Environment variable to read.
    default : int
        Value used when the variable is not set.

    Returns
    -------
    int
        The parsed value, >= 1.

    Raises
    ------
    SettingsError
        When the variable is set but is not a plain positive integer (``abc``, ``1e6``,
        an empty string, ``0`` and ``-5`` are all refused).
    """
    raw = os.environ.get(name)
    if raw is None:
        return default
    text = raw.strip().replace("_", "")
    if not re.fullmatch(r"[0-9]+", text) or int(text) < 1:
        raise SettingsError(f"environment variable {name}={raw!r} is not a positive whole number; "
                            f"set it to e.g. {default} (digits only) or unset it for the default {default}")
    return int(text)


def max_pixels() -> int:
    """The pixel cap: ``$LABKIT_MAX_PIXELS`` or :data:`DEFAULT_MAX_PIXELS`."""
    return positive_int("LABKIT_MAX_PIXELS", DEFAULT_MAX_PIXELS)


def pixel_cap_excess(width: int, height: int, cap: int, detail: str = "") -> str | None:
    """The error text for an image of ``width`` x ``height`` over ``cap`` pixels, or None when it fits.

    One wording for every place that enforces :func:`max_pixels` (reading a file, encoding an
    array, decoding a header); ``detail`` goes after the pixel count (e.g. the memory it needs).
    """
    if width * height <= cap:
        return None
    return (f"image of {width}x{height} = {width * height} pixels{detail} exceeds the limit of {cap}; "
            "set LABKIT_MAX_PIXELS to allow larger images, or downscale it")


def cache_dir(default: Path) -> Path:
    """``$LABKIT_CACHE_DIR`` as a path, or ``default`` when unset.

    Raises
    ------
    SettingsError
        When the variable is set to an empty or blank string.
    """
    raw = os.environ.get("LABKIT_CACHE_DIR")
    if raw is None:
        return default
    if not raw.strip():
        raise SettingsError("environment variable LABKIT_CACHE_DIR is empty; set it to a writable folder "
                            f"or unset it for the default {default}")
    return Path(raw).expanduser()
