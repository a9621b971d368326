"""The ready-model demo (``labkit demo``): the report's comparison grid for b = 1, 2, 3, from shipped weights."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from . import plots


def run_demo(out: str | os.PathLike[str] = "demo.png", bits: list[int] | tuple[int, ...] = (1, 2, 3),
             n_images: int = 2, weights_dir: str | os.PathLike[str] | None = None, context: str | None = None,
             *, overwrite: bool = True) -> Path:
    """Compress ``n_images`` embedded test tiles at each b and save one comparison grid per b, stacked, to ``out``.

    The columns are the report's (``report.grid_models``): RAW, ResAE, any further proposal in
    ``labkit.profiles.MODELS`` that has weights, AE2, and JPEG at the bpp nearest ResAE's.

    Parameters
    ----------
    out : path
        PNG to write.
    bits : sequence of int
        Bit depths, one block of rows each.
    n_images : int
        Test tiles per b, spread over the test set.
    weights_dir : path, optional
        Folder with ``<model>/model.pt`` (default: the shipped weights).
    context : str
        Coder context mode (None: each model's default, ``labkit.codec.Codec``).
    overwrite : bool
        ``False``: refuse an existing ``out``, also one that appears while the demo runs.

    Returns
    -------
    Path
        ``out``.
    """
    from .codec import load_pretrained
    from .data import default_dataset
    from .evaluate import evaluate_learned, evaluate_matched_jpeg, select
    from .paths import WEIGHTS_DIR
    from .profiles import MODELS, REFERENCE
    from .report import grid_models, jpeg_caption, spread_indices
    from .workflow import available

    if n_images < 1:
        raise ValueError(f"--images must be at least 1, got {n_images}")
    wdir = Path(weights_dir) if weights_dir else WEIGHTS_DIR
    names, skipped = available(grid_models(MODELS), wdir)
    for name, why in skipped.items():
        print(f"labkit demo: {name}: {why}", file=sys.stderr)
    test = default_dataset("test")
    if n_images > len(test):
        raise ValueError(f"--images {n_images} is more than the {len(test)} embedded test tiles; pass at most {len(test)}")
    images = test[spread_indices(len(test), n_images)]
    models = {name: load_pretrained(name, wdir)[0] for name in names}
    learned = evaluate_learned(models, images, bits, context, keep_recon=True, progress=False)
    reference = REFERENCE if REFERENCE in names else names[0]
    matched = evaluate_matched_jpeg(images, select(learned, codec=reference), keep_recon=True)
    originals, labels, columns = [], [], {name: [] for name in names + ["jpeg-matched"]}
    for b in bits:
        for i, img in enumerate(images):
            originals.append(img)
            labels.append(f"b={b}")
            for name in names:
                columns[name].append(select(learned, codec=name, b=b, image=i)[0])
            j = select(matched, b=b, image=i)[0]
            columns["jpeg-matched"].append(dict(j, caption=jpeg_caption(j)))
    fig = plots.comparison_grid(originals, columns, row_labels=labels,
                                title=f"labkit demo.  Under each picture: SSIM and real bpp.\nJPEG (optimized Huffman "
                                      f"tables): the quality q whose bpp is nearest {plots.label(reference)}'s")
    return plots.save_figure(fig, out, overwrite=overwrite)
