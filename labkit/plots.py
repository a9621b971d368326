"""Report figures: comparison grids, RD curves, difference maps, training curves,
architecture diagram, latent statistics.  Every figure is saved by :func:`save_figure`
with fixed metadata and DPI, so the same numbers give the same PNG bytes.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402

from .atomic import atomic_path  # noqa: E402

DPI = 110
#: Learned codecs solid, conventional codecs dashed (RD-plot convention).
STYLE: dict[str, dict[str, Any]] = {
    "resae": dict(color="C3", marker="o", ls="-", label="ResAE (ours)"),
    "resae-rd": dict(color="C6", marker="D", ls="-", label="ResAE-RD (ours, rate-distortion)"),
    "resae-rd-fast": dict(color="k", marker="v", ls=":", label="ResAE-RD-fast (ours, light decoder, trained whole)"),
    "resae-rd-fast-v1": dict(color="k", marker="1", ls="-.", label="ResAE-RD-fast v1 (resae-rd's symbols, light decoder)"),
    "resae-rd-fast-v2": dict(color="k", marker="2", ls="-.", label="ResAE-RD-fast v2 (trained whole, GPU 2026-11-27)"),
    "ae2": dict(color="C0", marker="s", ls="-", label="AE2 (course, noise)"),
    "ae1": dict(color="C9", marker="^", ls="-", label="AE1 (course, plain)"),
    "jpeg-matched": dict(color="C5", marker="x", ls="none", label="JPEG (optimized) at ResAE's bpp (course)"),
    "jpeg": dict(color="C1", marker=".", ls="--", label="JPEG (Pillow default)"),
    "jpeg-opt": dict(color="C5", marker=".", ls="--", label="JPEG (optimized Huffman tables)"),
    "webp": dict(color="C2", marker=".", ls="--", label="WebP"),
    "avif": dict(color="C4", marker=".", ls="--", label="AVIF"),
    "jpeg2000": dict(color="C7", marker=".", ls="--", label="JPEG 2000"),
}
LABELS = {"raw": "RAW", "resae": "ResAE", "resae-rd": "ResAE-RD", "resae-rd-fast": "ResAE-RD-fast",
          "resae-rd-fast-v1": "ResAE-RD-fast v1", "resae-rd-fast-v2": "ResAE-RD-fast v2", "ae2": "AE2", "ae1": "AE1", "jpeg": "JPEG (default)",
          "jpeg-matched": "JPEG at ResAE's bpp", "jpeg-opt": "JPEG (optimized)", "webp": "WebP", "avif": "AVIF",
          "jpeg2000": "JPEG 2000", "ae1/ae2": "AE1 / AE2 (course)"}


def label(name: str) -> str:
    """Display name of a codec or model: ``LABELS`` or the name itself."""
    return LABELS.get(name, name)


def style_for(name: str) -> dict[str, Any]:
    """Line style of a codec in RD plots (``STYLE``; unknown names get a solid line with their name)."""
    return dict(STYLE.get(name, dict(marker="o", ls="-", label=label(name))))


def save_figure(fig: plt.Figure, path: str | os.PathLike[str], *, overwrite: bool = True) -> Path:
    """Save ``fig`` as PNG atomically with fixed DPI and no timestamp/software metadata; close it.

    ``overwrite=False`` refuses a file at ``path``, also one that appears while saving.
    """
    path = Path(path)
    with atomic_path(path, overwrite=overwrite) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None}, bbox_inches="tight", pad_inches=0.05)
    plt.close(fig)
    return path


def setup_style() -> None:
    """Deterministic, readable defaults (fixed font, no date stamps)."""
    plt.rcParams.update({
        "font.family": "DejaVu Sans", "font.size": 9, "axes.grid": True, "grid.alpha": 0.3,
        "figure.dpi": DPI, "savefig.dpi": DPI, "svg.hashsalt": "labkit", "image.interpolation": "nearest",
    })


setup_style()


def comparison_grid(originals: Sequence[np.ndarray], columns: Mapping[str, Sequence[Mapping[str, Any]]],
                    title: str = "", row_labels: Sequence[str] | None = None) -> plt.Figure:
    """Rows = images; first column RAW, then one column per codec.

    ``columns[name][i]`` holds ``recon`` (uint8 HxWx3), ``ssim`` and ``bpp`` for image i, and
    optionally ``caption``; without one, "SSIM <ssim>, <bpp> bpp" is printed under the picture.
    """
    names = list(columns)
    n, m = len(originals), 1 + len(names)
    two_lines = any("\n" in r.get("caption", "") for col in columns.values() for r in col)
    fig, axes = plt.subplots(n, m, figsize=(2.05 * m, (2.25 if two_lines else 2.05) * n), squeeze=False)
    for i, orig in enumerate(originals):
        h, w = orig.shape[:2]
        axes[i, 0].imshow(orig)
        axes[i, 0].set_xlabel(f"{w}x{h}, 24 bpp", fontsize=8)
        if row_labels:
            axes[i, 0].set_ylabel(row_labels[i], fontsize=10)
        for j, name in enumerate(names, start=1):
            rec = columns[name][i]
            axes[i, j].imshow(rec["recon"])
            axes[i, j].set_xlabel(rec.get("caption") or f"SSIM {rec['ssim']:.3f}, {rec['bpp']:.3f} bpp", fontsize=7.5)
        for j, name in enumerate(["raw"] + names):
            ax = axes[i, j]
            ax.set_xticks([]), ax.set_yticks([]), ax.grid(False)
            if i == 0:
                ax.set_title(label(name), fontsize=10)
    if title:
        fig.suptitle(title, fontsize=11)
    # constrained layout makes room for a multi-line title and two-line captions at any row count
    # (tight_layout let them overlap one or two rows, and a rect of our own left an empty band)
    fig.set_layout_engine("constrained")
    return fig


def rd_curves(curves: Mapping[str, Mapping[str, Sequence[float]]], metric: str = "ssim",
              title: str = "", xlim: tuple[float, float] | None = None,
              annotate: Mapping[str, Sequence[str]] | None = None,
              zoom: Sequence[str] | None = None) -> plt.Figure:
    """One line per codec: mean ``metric`` (``ssim`` or ``psnr``) against mean real bpp.

    Parameters
    ----------
    curves : Mapping
        Per codec its ``bpp`` and ``metric`` lists (``b`` for the learned models).
    metric : {"ssim", "psnr"}
        The quality axis.
    title : str
        Title of the (first) panel; default names the metric.
    xlim : (float, float), optional
        The first panel's bpp range; default 0 to 1.6 times the learned codecs' largest bpp.
        The quality axis spans what the curves reach inside it.
    annotate : Mapping, optional
        Per model the labels (``b=1`` ...) written beside its points. Each label takes the spot
        around its point that covers the fewest other labels and points (:func:`_place_labels`).
    zoom : sequence of str, optional
        Models (e.g. the rate-distortion ones) to show again in a second panel, zoomed to their
        bpp range and to the quality every codec reaches there, so that curves crowded into
        the first panel's left edge (where these models, WebP and AVIF compete) can be read.
        Names not in ``curves`` are ignored; none left: one panel.
    """
    zoomed = [n for n in (zoom or ()) if n in curves and curves[n].get("bpp")]
    fig, axes = plt.subplots(1, 2 if zoomed else 1, figsize=(11.0 if zoomed else 6.2, 4.3), squeeze=False)
    ax = axes[0, 0]
    if xlim is None:  # zoom on the learned codecs' range; classic sweeps run far beyond it
        learned = [max(c["bpp"]) for n, c in curves.items() if "b" in c and c["bpp"]]
        if learned:
            xlim = (0.0, 1.6 * max(learned))
    # with a zoom panel, the zoomed models' "b=" labels are written there only
    pending = _rd_panel(ax, curves, metric, xlim, {n: v for n, v in (annotate or {}).items() if n not in zoomed})
    if xlim and (limits := _visible_ylim(curves, metric, list(curves), xlim)):
        ax.set_ylim(*limits)
    heading = title or f"Mean {'SSIM' if metric == 'ssim' else 'PSNR'} vs bpp"
    if not zoomed:
        ax.set_title(heading + (" (zoomed to the learned codecs' range)" if xlim else ""))
    else:
        fig.suptitle(heading)
        ax.set_title("the learned codecs' range" if xlim else "every codec", fontsize=9)
        zx = (0.0, 1.2 * max(max(curves[n]["bpp"]) for n in zoomed))
        zax = axes[0, 1]
        # the course's JPEG at ResAE's bpp belongs to ResAE's points, not to the zoomed models': left out there
        pending += _rd_panel(zax, {n: c for n, c in curves.items() if n != "jpeg-matched"}, metric, zx,
                             {n: v for n, v in (annotate or {}).items() if n in zoomed})
        if limits := _visible_ylim(curves, metric, zoomed, zx):
            zax.set_ylim(*limits)
        zax.set_title(f"zoomed on {' and '.join(label(n) for n in zoomed)}", fontsize=9)
    # outside the axes, so that it hides no point or label
    axes[0, -1].legend(*ax.get_legend_handles_labels(), fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                       borderaxespad=0.0)
    fig.tight_layout()
    _place_labels(fig, pending)   # after the layout: the spots are chosen at the final scale
    return fig


def _rd_panel(ax: plt.Axes, curves: Mapping[str, Mapping[str, Sequence[float]]], metric: str,
              xlim: tuple[float, float] | None, annotate: Mapping[str, Sequence[str]] | None) -> list[tuple]:
    """Draw every curve of ``curves`` on ``ax`` (see :func:`rd_curves`); return the labels to place."""
    pending: list[tuple] = []
    for name, c in curves.items():
        order = np.argsort(c["bpp"])
        x, y = np.asarray(c["bpp"])[order], np.asarray(c[metric])[order]
        line, = ax.plot(x, y, ms=5, lw=1.4, **style_for(name))
        if annotate and name in annotate:
            for xi, yi, t in zip(np.asarray(c["bpp"]), np.asarray(c[metric]), annotate[name]):
                pending.append((ax, float(xi), float(yi), t, style_for(name).get("color"), line))
    ax.set_xlabel("bits per pixel (real file size)")
    ax.set_ylabel("SSIM (mean over RGB)" if metric == "ssim" else "PSNR (dB, RGB)")
    if xlim:
        ax.set_xlim(*xlim)
    ax.margins(y=0.08)
    return pending


#: Where a "b=…" label may sit around its point: (dx, dy) in points from the point to the label's
#: anchor and its alignment, in the order tried when several spots score the same.
_LABEL_SPOTS = [((6, 4), "left"), ((6, -11), "left"), ((-6, 4), "right"), ((-6, -11), "right"),
                ((0, 7), "center"), ((0, -15), "center"), ((10, -3), "left"), ((-10, -3), "right")]


def _curve_cloud(line: Any, step: float = 3.0) -> np.ndarray:
    """Display coordinates along a drawn line, every ``step`` pixels (its markers alone if it has no line)."""
    xy = line.axes.transData.transform(line.get_xydata())
    xy = xy[np.isfinite(xy).all(axis=1)]   # an infinite PSNR (a lossless file) is not drawn
    if line.get_linestyle() in ("None", "none", "", " ") or len(xy) < 2:
        return xy
    pieces = [xy[:1]]
    for a, b in zip(xy[:-1], xy[1:]):
        n = max(1, min(int(np.hypot(*(b - a)) // step), 10_000))
        t = np.linspace(0.0, 1.0, n + 1)[1:, None]
        pieces.append(a + t * (b - a))
    return np.concatenate(pieces)


def _place_labels(fig: plt.Figure, pending: Sequence[tuple], fontsize: float = 7.0) -> None:
    """Write each label at the spot around its point where it is least in the way and least ambiguous.

    Greedy, in the order given. A spot's score adds: leaving the panel (never chosen if avoidable),
    covering a label already written, covering another curve's marker or line (its own line counts
    less), sitting nearer another curve's marker than its own point (the label would be read as
    that point's), and a little for distance. Ties go to the first spot of :data:`_LABEL_SPOTS`.
    """
    if not pending:
        return
    renderer = fig.canvas.get_renderer()
    scale = fig.dpi / 72.0
    placed: dict[Any, list[tuple[float, float, float, float]]] = {}
    clouds: dict[Any, np.ndarray] = {}
    markers: dict[Any, np.ndarray] = {}
    for ax, *_ in pending:
        for line in ax.get_lines():
            if line not in clouds and len(line.get_xydata()):
                clouds[line] = _curve_cloud(line)
                drawn = ax.transData.transform(line.get_xydata())
                markers[line] = (drawn[np.isfinite(drawn).all(axis=1)] if line.get_marker() not in ("None", None, "")
                                 else np.zeros((0, 2)))
    for ax, x, y, text, colour, own in pending:
        px, py = ax.transData.transform((x, y))
        box = ax.get_window_extent(renderer)
        probe = ax.text(0, 0, text, fontsize=fontsize)
        extent = probe.get_window_extent(renderer)
        probe.remove()
        w, h = extent.width, extent.height
        others = [line for line in ax.get_lines() if line is not own and line in clouds]
        best, best_score = _LABEL_SPOTS[0], math.inf
        for (dx, dy), ha in _LABEL_SPOTS:
            rect = _label_box(px, py, dx * scale, dy * scale, ha, w, h)
            cx, cy = rect[0] + w / 2, rect[1] + h / 2
            score = 1000.0 * (rect[0] < box.x0 or rect[2] > box.x1 or rect[1] < box.y0 or rect[3] > box.y1)
            score += 100.0 * sum(_overlap(rect, other) for other in placed.get(ax, []))
            for line in others:
                score += 1.5 * _inside(clouds[line], rect, 1.0) + 20.0 * _inside(markers[line], rect, 3.0)
                if len(markers[line]):
                    nearest = float(np.min(np.hypot(markers[line][:, 0] - cx, markers[line][:, 1] - cy)))
                    score += 40.0 * (nearest < np.hypot(px - cx, py - cy))
            if own in clouds:
                score += 0.5 * _inside(clouds[own], rect, 1.0)
            score += 0.3 * float(np.hypot(px - cx, py - cy))
            if score < best_score:
                best, best_score = ((dx, dy), ha), score
        (dx, dy), ha = best
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy), ha=ha, fontsize=fontsize, color=colour,
                    annotation_clip=True)
        placed.setdefault(ax, []).append(_label_box(px, py, dx * scale, dy * scale, ha, w, h))


def _label_box(px: float, py: float, dx: float, dy: float, ha: str, w: float, h: float) -> tuple[float, float, float, float]:
    """Display box (x0, y0, x1, y1) of a ``w`` x ``h`` label offset by (dx, dy) pixels from (px, py), aligned ``ha``."""
    x0 = px + dx - {"left": 0.0, "center": w / 2, "right": w}[ha]
    return x0, py + dy, x0 + w, py + dy + h


def _inside(points: np.ndarray, rect: tuple[float, float, float, float], pad: float) -> int:
    """How many of ``points`` (display coordinates) fall inside ``rect`` grown by ``pad`` pixels."""
    if not len(points):
        return 0
    return int(np.sum((points[:, 0] > rect[0] - pad) & (points[:, 0] < rect[2] + pad)
                      & (points[:, 1] > rect[1] - pad) & (points[:, 1] < rect[3] + pad)))


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """The share of box ``a`` covered by box ``b`` (boxes as x0, y0, x1, y1)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return 0.0 if w <= 0 or h <= 0 else w * h / ((a[2] - a[0]) * (a[3] - a[1]))


def _visible_ylim(curves: Mapping[str, Mapping[str, Sequence[float]]], metric: str, lowest: Sequence[str],
                  xlim: tuple[float, float]) -> tuple[float, float] | None:
    """Quality range of a panel that shows ``xlim``: from the lowest point of the ``lowest`` curves
    inside it to the best any codec reaches inside it (points inside, and each curve where it
    crosses the right edge), so no part of the axis is empty of data.

    Non-finite values (the infinite PSNR of a lossless file, a missing point) are skipped; None
    when nothing finite lies inside ``xlim`` (the caller keeps matplotlib's own limits).
    """
    def finite(c: Mapping[str, Sequence[float]]) -> tuple[np.ndarray, np.ndarray]:
        x, y = np.asarray(c["bpp"], float), np.asarray(c[metric], float)
        keep = np.isfinite(x) & np.isfinite(y)
        order = np.argsort(x[keep])
        return x[keep][order], y[keep][order]

    low, high = math.inf, -math.inf
    for n in lowest:
        x, y = finite(curves[n])
        inside = y[(x >= xlim[0]) & (x <= xlim[1])]
        if inside.size:
            low, high = min(low, float(inside.min())), max(high, float(inside.max()))
    for c in curves.values():
        x, y = finite(c)
        if x.size == 0:
            continue
        inside = y[(x >= xlim[0]) & (x <= xlim[1])]
        if inside.size:
            high = max(high, float(inside.max()))
        if x[0] <= xlim[1] <= x[-1]:
            high = max(high, float(np.interp(xlim[1], x, y)))
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    pad = 0.06 * (high - low or 1.0)
    return low - pad, high + pad


def difference_view(original: np.ndarray, recons: Mapping[str, Mapping[str, Any]], title: str = "") -> plt.Figure:
    """|error| heatmaps (mean over RGB, 8-bit units) under each reconstruction, on one colour scale.

    Each map sits in its model's column (the colour bar has an axis of its own, so it does not
    shift the maps), and the scale stops at the 99.5th percentile of all maps, marked by the bar's
    arrow when a few pixels are brighter.
    """
    names = list(recons)
    errs = {k: np.abs(original.astype(np.float32) - v["recon"].astype(np.float32)).mean(axis=2) for k, v in recons.items()}
    every = np.concatenate([e.ravel() for e in errs.values()]) if errs else np.zeros(1)
    vmax = float(np.percentile(every, 99.5)) or 1.0
    ncol = 1 + len(names)
    fig = plt.figure(figsize=(2.3 * ncol + 0.4, 5.0))
    grid = fig.add_gridspec(2, ncol + 1, width_ratios=[1.0] * ncol + [0.07], wspace=0.12, hspace=0.3)
    axes = np.array([[fig.add_subplot(grid[r, c]) for c in range(ncol)] for r in range(2)])
    axes[0, 0].imshow(original)
    axes[0, 0].set_title("RAW")
    axes[1, 0].axis("off")
    im = None
    for j, k in enumerate(names, start=1):
        axes[0, j].imshow(recons[k]["recon"])
        axes[0, j].set_title(label(k))
        axes[0, j].set_xlabel(f"SSIM {recons[k]['ssim']:.3f}, {recons[k]['bpp']:.3f} bpp", fontsize=8)
        im = axes[1, j].imshow(errs[k], cmap="magma", vmin=0, vmax=vmax)
        axes[1, j].set_xlabel(f"{label(k)}\nmean |err| = {errs[k].mean():.2f}", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([]), ax.set_yticks([]), ax.grid(False)
    if im is not None:
        clipped = bool((every > vmax).any())
        fig.colorbar(im, cax=fig.add_subplot(grid[1, ncol]), extend="max" if clipped else "neither",
                     label="|error|, mean over RGB\n(8-bit levels" + ("; top 0.5 % clipped)" if clipped else ")"))
    if title:
        fig.suptitle(title)
    return fig


def training_curves(histories: Mapping[str, Mapping[str, Any]],
                    losses: Mapping[str, str] | None = None, validation_overlaps: bool = True) -> plt.Figure:
    """Training loss and validation PSNR per epoch, one line per model (epochs without validation skipped).

    A model made in stages (the shipped ``resae-rd-fast``: its epochs, then fine-tunes and a
    decoder fit counted in steps) is drawn from its first, epoch-based stage (``stage_a`` of its
    history) and says so in the legend; a history with no epochs at all is left out and named
    under the figure. A note says what validation PSNR is: the embedded data's validation tiles
    overlap the training windows (``validation_overlaps``), so there it monitors training and is
    not a test result; a course folder's validation images are its own.
    """
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    left_out, staged = [], []
    for name, h in histories.items():
        stage = ""
        if "val_psnr" not in h and isinstance(h.get("stage_a"), Mapping) and "val_psnr" in h["stage_a"]:
            h, stage = h["stage_a"], " (stage A)"
            staged.append(label(name))
        if "val_psnr" not in h:  # a decoder fit (labkit.decoder_fit) logs steps, not epochs
            left_out.append(style_for(name)["label"])
            continue
        epochs = h.get("epoch") or list(range(1, len(h["train_loss"]) + 1))
        st = style_for(name)
        st.pop("ls", None)
        st.pop("marker", None)
        st["label"] += stage
        if losses and name in losses:
            st["label"] = f"{st['label']} — {losses[name]}"
        # a short run (the smoke profile's single epoch) is points, not a line: draw them
        a.plot(epochs, h["train_loss"], lw=1.2, **({"marker": "o", "ms": 4} if len(epochs) <= 3 else {}), **st)
        val = [(e, v) for e, v in zip(epochs, h["val_psnr"]) if v is not None]
        if val:
            st.pop("label", None)
            b.plot(*zip(*val), lw=1.2, marker=".", ms=3, label=label(name) + stage, **st)
    a.set_yscale("log")
    for ax in (a, b):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole (no 0.96 ... 1.04 ticks)
    a.set_xlabel("epoch"), a.set_ylabel("training loss (each model's objective)")
    b.set_xlabel("epoch"), b.set_ylabel("validation PSNR (dB, hard quantizer, b=3)")
    b.legend(fontsize=7)
    # each model's objective under both panels (inside the left one it covered the curves and the axis)
    handles, labels = a.get_legend_handles_labels()
    rows = -(-len(labels) // 2)
    notes = [("Validation PSNR: the network alone on tiles that overlap the training windows; it follows training "
              "and is not a test result (03_evaluate has those).") if validation_overlaps else
             ("Validation PSNR: the network alone on validation images kept out of training; the test results "
              "(with the codec's own choices) are in 03_evaluate.")]
    if staged:
        notes.append(f"{', '.join(staged)}: its first stage (stage A, in epochs) only; its later stages count steps "
                     "(see the training table).")
    if left_out:  # say so in the figure, so a missing line reads as a choice, not a bug
        notes.append(f"Not drawn (no epochs to draw; see the training table): {', '.join(left_out)}")
    legend_h, note_h = 0.22 * rows + 0.1, 0.17 * len(notes) + 0.08  # inches
    height = 3.4 + legend_h + note_h
    fig.set_size_inches(9, height)
    if labels:
        fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=7, frameon=False,
                   bbox_to_anchor=(0.5, note_h / height))
    fig.text(0.01, 0.06 / height, "\n".join(notes), fontsize=7, color="0.3", va="bottom")
    fig.tight_layout(rect=(0, (legend_h + note_h) / height, 1, 1))
    return fig


def _layer_label(layer: Mapping[str, Any]) -> str:
    t, k, st = layer.get("type"), layer.get("kernel"), layer.get("stride")
    cin, cout = layer.get("in_channels"), layer.get("out_channels")
    if t == "Conv2d":
        return f"Conv {k}x{k} {cin}→{cout}" + (f", stride {st}" if st and st != 1 else "")
    if t == "ConvTranspose2d":
        up = round(1 / st) if st and st < 1 else st
        return f"ConvTranspose {k}x{k} {cin}→{cout}, up x{up}"
    if t == "AvgPool2d":
        return f"AvgPool {k or 2}x{k or 2}"
    if t == "Upsample":
        return "Upsample x2 (nearest)"
    if t == "PixelShuffle":
        return "PixelShuffle x2"
    return str(t)


def compact_layers(layers: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Group ``describe`` rows into diagram boxes: conv + BN + ReLU in one box, a residual block in one box."""
    import re

    boxes: list[dict[str, Any]] = []
    suffix = {"BatchNorm2d": "BN", "ReLU": "ReLU", "Sigmoid": "sigmoid"}
    for layer in layers:
        t, name = str(layer.get("type")), str(layer.get("name", ""))
        parent = name.rsplit(".", 1)[0]
        if re.search(r"\.(conv|bn|relu)\d+$", name):  # inside a residual block
            if boxes and boxes[-1].get("group") == parent:
                boxes[-1]["output_shape"] = layer.get("output_shape")
                continue
            ch = layer.get("out_channels")
            boxes.append(dict(type="ResBlock", summary=f"ResBlock {ch}ch: 2x(Conv 3x3+BN)+skip, ReLU",
                              output_shape=layer.get("output_shape"), group=parent, part=layer.get("part")))
            continue
        if t in suffix and boxes and boxes[-1]["type"] != "ResBlock":
            boxes[-1]["summary"] += f" + {suffix[t]}"
            boxes[-1]["output_shape"] = layer.get("output_shape")
            continue
        boxes.append(dict(type=t, summary=_layer_label(layer), output_shape=layer.get("output_shape"), group=None,
                          part=layer.get("part")))
    return boxes


def architecture_diagram(layers_by_model: Mapping[str, Sequence[Mapping[str, Any]]],
                         params: Mapping[str, int] | None = None) -> plt.Figure:
    """Boxes for each layer group, drawn from ``labkit.models.describe`` (not by hand).

    Each box shows its output shape on the right (channels x height x width for a 128 x 128
    input, a key under the figure says so); the dotted line is where the codec quantizes the
    latent y and the arithmetic coder codes it.
    """
    compact = {k: compact_layers(v) for k, v in layers_by_model.items()}
    n = len(compact)
    height = max(len(v) for v in compact.values())
    fig, axes = plt.subplots(1, n, figsize=(3.9 * n, 0.36 * (height + 0.6) + 1.0), squeeze=False)
    palette = {"Conv2d": "#9ecae1", "ConvTranspose2d": "#fdae6b", "AvgPool2d": "#c7e9c0", "ReLU": "#eeeeee",
               "BatchNorm2d": "#dadaeb", "ResBlock": "#fcbba1", "PixelShuffle": "#fdd0a2", "Upsample": "#fdd0a2",
               "Sigmoid": "#eeeeee"}
    gap = 0.6   # room under the encoder for the latent's line and its words, clear of the boxes
    for ax, (name, boxes) in zip(axes[0], compact.items()):
        ax.set_xlim(0, 1), ax.set_ylim(height + 0.5 + gap, -1.2)
        ax.axis("off")
        title = label(name) + (f" ({params[name]:,} parameters)" if params and name in params else "")
        ax.set_title(title, fontsize=10)
        ax.text(0.5, -0.75, "input: RGB image, 3x128x128", fontsize=7, ha="center", va="center", color="#333333")
        encoder = [i for i, box in enumerate(boxes) if box.get("part") == "encoder"]
        latent_at = encoder[-1] if encoder else None   # the encoder's output is the latent y
        for i, box in enumerate(boxes):
            y = i + (gap if latent_at is not None and i > latent_at else 0.0)
            ax.add_patch(plt.Rectangle((0.02, y - 0.4), 0.96, 0.8, fc=palette.get(box["type"], "#ffffff"), ec="#555555", lw=0.6))
            shape = box.get("output_shape")
            ax.text(0.04, y, box["summary"], va="center", fontsize=7)
            ax.text(0.96, y, "x".join(str(s) for s in shape) if shape else "", va="center", ha="right", fontsize=7, color="#333333")
            if i == latent_at:
                ax.axhline(y + 0.5 + gap / 2, color="C3", lw=1.2, ls=":")
                ax.text(0.5, y + 0.5 + gap / 2, "latent y: quantized to b bits, arithmetic-coded, dequantized",
                        color="C3", fontsize=7, ha="center", va="center", bbox=dict(fc="white", ec="none", pad=0.5))
    import textwrap

    key = textwrap.fill("Right of each box: its output, channels x height x width, for a 128x128 input. "
                        "Colours: convolution (blue), transposed convolution (dark orange), upsampling (light "
                        "orange), residual block (red), average pooling (green).", int(3.9 * n / 0.055))
    fig.text(0.01, 0.005, key, fontsize=7, color="#333333", va="bottom")
    fig.tight_layout(rect=(0, 0.03 * (key.count("\n") + 1), 1, 1))
    return fig


def latent_histograms(symbols_by_b: Mapping[int, np.ndarray], title: str = "") -> plt.Figure:
    """Histogram of quantized symbols for each b (log counts)."""
    bs = sorted(symbols_by_b)
    fig, axes = plt.subplots(1, len(bs), figsize=(2.6 * len(bs), 2.6), squeeze=False)
    for ax, b in zip(axes[0], bs):
        counts = np.bincount(np.asarray(symbols_by_b[b]).ravel(), minlength=1 << b)
        p = counts / max(1, counts.sum())
        ax.bar(np.arange(1 << b), p, width=0.9, color="C3")
        ax.set_yscale("log")
        ax.set_title(f"b={b}")
        ax.set_xlabel("symbol q")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))   # symbols are whole (no -0.5 ... 1.5 ticks)
        ax.set_xlim(-0.6, (1 << b) - 0.4)                        # the alphabet 0 .. 2^b - 1, no tick past it
    axes[0, 0].set_ylabel("frequency")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def bits_per_symbol_bars(table: Mapping[int, Mapping[str, float]], title: str = "") -> plt.Figure:
    """Grouped bars: for each b, bits/symbol of each measure (entropy, coded per context mode)."""
    bs = sorted(table)
    keys = [k for k in next(iter(table.values())) if not k.startswith("ideal")]  # ideal ≈ coded: tables show both
    fig, ax = plt.subplots(figsize=(7.2, 3.4))
    width = 0.8 / len(keys)
    for k, key in enumerate(keys):
        ax.bar(np.arange(len(bs)) + (k - (len(keys) - 1) / 2) * width, [table[b][key] for b in bs], width, label=key)
    ax.set_xticks(np.arange(len(bs)), [f"b={b}" for b in bs])
    ax.set_ylabel("bits per latent symbol")
    ax.legend(fontsize=7.5, ncols=2)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def rate_estimate_vs_coded(records_by_model: Mapping[str, Sequence[Mapping[str, Any]]]) -> plt.Figure:
    """Scatter of the training-time rate estimate against the real payload bpp, one colour per b.

    ``records_by_model``: model name -> ``labkit.evaluate.rate_calibration`` records.  The
    diagonal is a perfect estimate; points above it mean the loss over-counted the bits.
    """
    names = list(records_by_model)
    fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names) + 0.4, 3.4), squeeze=False)
    for ax, name in zip(axes[0], names):
        recs = records_by_model[name]
        top = max(max(r["coded_bpp"], r["estimated_bpp"]) for r in recs) * 1.05
        ax.plot([0, top], [0, top], color="0.6", lw=0.8, ls="--", label="estimate = coded")
        for b in sorted({r["b"] for r in recs}):
            rs = [r for r in recs if r["b"] == b]
            ax.scatter([r["coded_bpp"] for r in rs], [r["estimated_bpp"] for r in rs], s=9, label=f"b={b}")
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.set_xlabel("real coded bpp (payload, neighbor context)")
        ax.set_ylabel("rate estimate, labkit.rate (bpp)")
        ax.set_title(f"{label(name)}: rate estimate vs coder", fontsize=9)
        ax.legend(fontsize=7, markerscale=1.5)
    fig.tight_layout()
    return fig


def table_figure(rows: Sequence[Sequence[str]], header: Sequence[str], title: str = "", note: str = "",
                 shade: Mapping[str, str] | None = None) -> plt.Figure:
    """A plain table rendered as a figure (used for the course-criteria table), sized to its rows.

    The table fills the whole axes (no empty band): the figure height is the row count
    times a fixed row height, the title sits just above the header row and ``note`` (a key to
    the columns, one paragraph per ``\\n``, wrapped to the table's width) under the last row.
    ``shade`` maps a cell's text to its background colour (e.g. "no" in light red).
    """
    import textwrap

    row_h, line_h = 0.22, 0.15
    widths = [max(3, len(str(h)), *(len(str(r[j])) for r in rows)) for j, h in enumerate(header)]
    total = sum(widths)
    fig_w = max(6.0, 0.075 * total + 0.6)
    chars = max(40, int(fig_w / 0.056))   # characters of 7.5 pt text per line across the figure
    note = "\n".join(textwrap.fill(line, chars) for line in note.split("\n")) if note else ""
    note_h = (line_h * (note.count("\n") + 1) + 0.1) if note else 0.0
    fig = plt.figure(figsize=(fig_w, row_h * (len(rows) + 1) + (0.35 if title else 0.05) + note_h))
    ax = fig.add_axes((0.0, note_h / fig.get_figheight(), 1.0, (row_h * (len(rows) + 1)) / fig.get_figheight()))
    if note:
        fig.text(0.01, (note_h - 0.05) / fig.get_figheight(), note, fontsize=7.5, va="top", ha="left")
    ax.axis("off")
    t = ax.table(cellText=[list(r) for r in rows], colLabels=list(header), loc="upper center", cellLoc="center",
                 bbox=(0.0, 0.0, 1.0, 1.0), colWidths=[w / total for w in widths])
    t.auto_set_font_size(False)
    t.set_fontsize(8)
    for (r, _), cell in t.get_celld().items():
        if r == 0:
            cell.set_text_props(weight="bold")
            cell.set_facecolor("#eeeeee")
        elif shade and cell.get_text().get_text() in shade:
            cell.set_facecolor(shade[cell.get_text().get_text()])
    if title:
        fig.suptitle(title, fontsize=9.5, y=1.0 - 0.04 / fig.get_figheight(), va="top")
    return fig
