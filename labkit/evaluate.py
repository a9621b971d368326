"""Run codecs (ours and the classic baselines) over a set of images and return tidy records.

A record is a flat dict, one per (codec, setting, image): ``codec``, ``b`` or ``quality``,
``image``, ``bytes``, ``bpp`` (whole file), ``psnr``, ``ssim`` and, for learned codecs,
``ideal_bits`` (the adaptive model's ideal code length of the payload) so real and
estimated rates can be reported side by side.  Reconstructions are kept only when
asked (``keep_recon``), for figures.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypedDict

import numpy as np
import torch

from . import baselines, bitstream, coder, metrics
from .codec import Codec
from .progress import bar as progress_bar



class Record(TypedDict, total=False):
    """One measurement: one codec at one setting on one image (every size from real bytes).

    Learned codecs fill ``b``, ``ideal_bits``, ``header_bytes`` (header + colour map: the side
    information besides the coded symbols) and ``context``; classic
    codecs ``quality``; the course's matched JPEG also ``matched_to`` and ``target_bpp``.
    ``recon`` (uint8 HxWx3) is there only when asked for, for figures.
    """

    codec: str
    image: int
    bytes: int
    bpp: float
    psnr: float
    ssim: float
    b: int
    quality: int
    ideal_bits: float
    header_bytes: int
    context: str
    matched_to: str
    target_bpp: float
    recon: np.ndarray


def evaluate_learned(models: Mapping[str, torch.nn.Module], images: Sequence[np.ndarray], bits: Iterable[int],
                     context: str | None = None, keep_recon: bool = False, progress: bool = True,
                     scales: Mapping[str, str] | None = None, refine: Mapping[str, int] | None = None) -> list[Record]:
    """Encode and decode every image with every model at every b, from the real ``.lkc`` bytes.

    ``scales`` gives a model's encoder another scale rule than its trained one (``Codec``'s
    ``scale``, e.g. ``"search"``); ``refine`` gives a model's encoder that many steps of latent
    refinement (``Codec``'s ``refine``); models not named keep the defaults.  ``context`` None:
    each model's default coder context (``"learned"`` where it ships a coder prior for b).
    """
    bits = list(bits)
    out: list[Record] = []
    jobs = [(name, b) for name in models for b in bits]
    for name, b in progress_bar(jobs, desc="learned codecs", enabled=progress):
        codec = Codec(models[name], b, context, model_name=name, scale=(scales or {}).get(name),
                      refine=(refine or {}).get(name, 0))
        for i, img in enumerate(images):
            r = codec.compress(img)
            rec: Record = dict(codec=name, b=b, image=i, bytes=len(r.data), bpp=r.bpp,
                               psnr=metrics.psnr(img, r.recon), ssim=metrics.ssim(img, r.recon),
                               ideal_bits=coder.ideal_code_length_bits(r.symbols, 1 << b, codec.context,
                                                                       increment=codec.increment, limit=codec.limit,
                                                                       prior=codec.prior_table(codec.context, b)),
                               header_bytes=len(r.data) - len(bitstream.unpack(r.data, weights_tag=codec.weights_tag)[1]), context=codec.context)
            if keep_recon:
                rec["recon"] = r.recon
            out.append(rec)
    return out


def evaluate_matched_jpeg(images: Sequence[np.ndarray], targets: Sequence[Record],
                          codec: str = baselines.MATCHED_JPEG, keep_recon: bool = False) -> list[Record]:
    """The course's JPEG comparison: per image, the JPEG quality whose real bpp is nearest each target's bpp.

    The records are named ``jpeg-matched`` whichever JPEG ``codec`` is (``matched_codec`` says
    which; by default :data:`labkit.baselines.MATCHED_JPEG`, optimized Huffman tables). ``codec``
    must be a JPEG of :data:`labkit.baselines.CODECS`: the course compares with JPEG.
    """
    if baselines.CODECS.get(codec) is None or baselines.CODECS[codec].pillow_format != "JPEG":
        raise ValueError(f"the course's matched comparison is with JPEG; {codec!r} is not one of "
                         f"{', '.join(n for n, c in baselines.CODECS.items() if c.pillow_format == 'JPEG')}")
    out: list[Record] = []
    for t in targets:
        img = images[t["image"]]
        m = baselines.match_bpp(img, t["bpp"], codec=codec)
        rec: Record = dict(codec="jpeg-matched", matched_codec=codec, b=t["b"], matched_to=t["codec"], image=t["image"],
                           quality=m["quality"], bytes=len(m["bytes"]), bpp=m["bpp"], target_bpp=t["bpp"],
                           psnr=metrics.psnr(img, m["recon"]), ssim=metrics.ssim(img, m["recon"]))
        if keep_recon:
            rec["recon"] = m["recon"]
        out.append(rec)
    return out


def evaluate_sweeps(images: Sequence[np.ndarray], qualities: Mapping[str, Sequence[int]],
                    progress: bool = True) -> list[Record]:
    """RD sweep of each classic codec over its quality list, on every image."""
    out: list[Record] = []
    jobs = [(c, q) for c, qs in qualities.items() for q in qs]
    for codec, q in progress_bar(jobs, desc="classic codecs", enabled=progress):
        for i, img in enumerate(images):
            r = baselines.compress(img, codec, q)
            out.append(dict(codec=codec, quality=q, image=i, bytes=len(r["bytes"]), bpp=r["bpp"],
                            psnr=metrics.psnr(img, r["recon"]), ssim=metrics.ssim(img, r["recon"])))
    return out


def mean_curve(records: Iterable[Record], codec: str, by: str = "b",
               keys: Sequence[str] = ("bpp", "psnr", "ssim")) -> dict[str, list[float]]:
    """Average each key over images for every setting ``by`` (b or quality) of one codec.

    PSNR of an exact reconstruction is infinite; it is capped at 100 dB for the mean.
    """
    groups: dict[Any, list[Record]] = defaultdict(list)
    for r in records:
        if r["codec"] == codec:
            groups[r[by]].append(r)
    settings = sorted(groups)
    curve: dict[str, list[float]] = {by: list(settings)}
    for k in keys:
        vals = []
        for s in settings:
            v = np.array([g[k] for g in groups[s]], dtype=np.float64)
            if k == "psnr":
                v = np.minimum(v, 100.0)
            vals.append(float(v.mean()))
        curve[k] = vals
    return curve


def select(records: Iterable[Record], **match: Any) -> list[Record]:
    """Records whose fields equal every ``match`` item."""
    return [r for r in records if all(r.get(k) == v for k, v in match.items())]


def without_recon(records: Iterable[Record]) -> list[Record]:
    """Drop the image arrays so records can be written as JSON."""
    return [{k: v for k, v in r.items() if k != "recon"} for r in records]


@torch.inference_mode()
def latent_symbols(model: torch.nn.Module, images: Sequence[np.ndarray], b: int) -> np.ndarray:
    """Quantized latents [N, C, h, w] of 128x128-multiple images, exactly as the codec sees them."""
    codec = Codec(model, b, "none")
    return np.stack([codec.analyse(img)[0] for img in images])


def coding_table(symbols: np.ndarray, b: int, contexts: Sequence[str] | None = None,
                 prior: np.ndarray | None = None) -> dict[str, float]:
    """Bits per symbol of one set of latents: zero-order entropy, then real coded size per context mode.

    ``entropy`` is the empirical entropy of all symbols pooled (a static model that knows the
    statistics in advance, no side cost); ``ideal <mode>`` the adaptive model's ideal code length;
    ``coded <mode>`` the real payload bytes.  Every number is averaged per symbol over images.
    ``contexts`` defaults to every mode; the ``"learned"`` mode is included only with the model's
    coder ``prior`` table for this ``b`` (``labkit.coder_prior``), and is coded with that mode's
    increment and limit, as the codec does.
    """
    from . import coder_prior

    if contexts is None:
        contexts = [c for c in coder.CONTEXT_MODES if c not in coder.PRIOR_MODES or prior is not None]
    n_sym = symbols[0].size * len(symbols)
    counts = np.bincount(symbols.ravel(), minlength=1 << b).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    table = {"entropy (static, pooled)": float(-(p * np.log2(p)).sum())}
    for ctx in contexts:
        kw: dict[str, Any] = ({"prior": prior, "increment": coder_prior.INCREMENT, "limit": coder_prior.LIMIT}
                              if ctx in coder.PRIOR_MODES else {})
        table[f"ideal {ctx}"] = sum(coder.ideal_code_length_bits(s, 1 << b, ctx, **kw) for s in symbols) / n_sym
        table[f"coded {ctx}"] = sum(len(coder.encode(s, 1 << b, ctx, **kw)) * 8 for s in symbols) / n_sym
    return table


@torch.inference_mode()
def rate_calibration(model: torch.nn.Module, images: Sequence[np.ndarray], bits: Iterable[int],
                     scale: str | None = None) -> list[dict[str, Any]]:
    """Training-time rate estimate (``labkit.rate``) beside the real coder's payload, per image and b.

    Both are taken on the same quantized latent (the codec's scale rule, ``neighbor``
    context, images whose sides are multiples of 8): ``estimated_bpp`` is what the
    rate-distortion loss saw, ``coded_bpp`` the payload bytes the adaptive coder wrote
    (header excluded: the estimate does not model it).
    """
    from . import quant
    from .rate import estimate_bits

    scale = scale or getattr(model, "scale_rule", "max")
    model = model.eval()
    out: list[dict[str, Any]] = []
    for i, img in enumerate(images):
        x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 255.0
        y = model.encode(x)
        s = quant.latent_scale(y, scale)
        y = torch.minimum(y, s.reshape(-1, 1, 1, 1))
        px = img.shape[0] * img.shape[1]
        for b in bits:
            q = quant.quantize(y, s, b)[0].numpy()
            out.append(dict(image=i, b=b, scale=scale, estimated_bpp=float(estimate_bits(y, s, b)[0]) / px,
                            coded_bpp=len(coder.encode(q, 1 << b, "neighbor")) * 8 / px))
    return out
