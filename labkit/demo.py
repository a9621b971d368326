"""The ready-model demo: RAW / ResAE / AE2 / JPEG at matched bpp for b = 1, 2, 3, from shipped weights."""
from __future__ import annotations

import os
from pathlib import Path

from . import plots
from .codec import load_pretrained
from .evaluate import evaluate_learned, evaluate_matched_jpeg, select


def run_demo(out: str | os.PathLike[str] = "demo.png", bits: list[int] | tuple[int, ...] = (1, 2, 3),
             n_images: int = 2, weights_dir: str | os.PathLike[str] | None = None, context: str = "neighbor") -> Path:
    """Compress the first ``n_images`` embedded test tiles at each b and save the comparison grid to ``out``."""
    from .data import default_dataset

    if n_images < 1:
        raise ValueError(f"--images must be at least 1, got {n_images}")
    from .report import spread_indices

    test = default_dataset("test")
    images = test[spread_indices(len(test), n_images)]
    models = {name: load_pretrained(name, weights_dir)[0] for name in ("resae", "ae2")}
    learned = evaluate_learned(models, images, bits, context, keep_recon=True, progress=False)
    matched = evaluate_matched_jpeg(images, select(learned, codec="resae"), keep_recon=True)
    originals, labels, columns = [], [], {"resae": [], "ae2": [], "jpeg": []}
    for b in bits:
        for i, img in enumerate(images):
            originals.append(img)
            labels.append(f"b={b}")
            columns["resae"].append(select(learned, codec="resae", b=b, image=i)[0])
            columns["ae2"].append(select(learned, codec="ae2", b=b, image=i)[0])
            columns["jpeg"].append(select(matched, b=b, image=i)[0])
    fig = plots.comparison_grid(originals, columns, row_labels=labels,
                                title="labkit demo.  Q = SSIM.  JPEG: the Pillow quality whose bpp is nearest ResAE's")
    return plots.save_figure(fig, out)
