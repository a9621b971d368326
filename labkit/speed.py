"""Wall-clock speed of the whole codec (network + quantizer + coder + container), one CPU thread."""
from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any

import numpy as np


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else :func:`platform.processor`), to print beside a timing."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":")[0].strip() in ("model name", "Model", "Hardware"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def best_time(fn, repeats: int, warmup: bool = True) -> float:
    """Best wall-clock seconds of ``repeats`` calls of ``fn`` (after one untimed call if ``warmup``)."""
    if warmup:
        fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_codec_speed(model: str = "resae", b: int = 2, context: str | None = None, repeats: int = 10,
                      sizes: tuple[tuple[int, int], ...] = ((128, 128), (512, 768)),
                      threads: int = 1) -> list[dict[str, Any]]:
    """Best-of-``repeats`` encode and decode times for real images of each (H, W), on ``threads`` threads.

    Images are cut from the embedded test photos (resized crops, so content is natural).
    ``context`` None: the model's default (:class:`labkit.codec.Codec`).
    """
    import torch
    from PIL import Image

    from .codec import Codec
    from .data import default_dataset

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        codec = Codec.from_pretrained(model, b=b, context=context)
        tiles = default_dataset("test")
        mosaic = np.concatenate([np.concatenate(list(tiles[i * 6:(i + 1) * 6]), axis=1) for i in range(4)], axis=0)
        rows = []
        for h, w in sizes:
            img = np.asarray(Image.fromarray(mosaic).resize((w, h), Image.Resampling.LANCZOS))
            data = codec.encode(img)
            enc = best_time(lambda: codec.encode(img), repeats)
            dec = best_time(lambda: codec.decode(data), repeats)
            rows.append(dict(size=f"{w}x{h}", encode_ms=enc * 1e3, decode_ms=dec * 1e3, total_ms=(enc + dec) * 1e3,
                             bpp=len(data) * 8 / (h * w), threads=threads, context=codec.context))
        return rows
    finally:
        torch.set_num_threads(old)
