"""The one command line: ``labkit train|reproduce|grade|encode|decode|info|demo|bench``.

Installed as the ``labkit`` console script and reachable as ``python -m labkit``.

Contract: exit 0 on success; on failure a non-zero exit and one line on stderr saying
what went wrong and what to do (``labkit: error: ...``); argument errors exit 2 with
argparse's usage text; Ctrl-C at any moment prints ``labkit: interrupted`` and ends with
status 130 (as a process: by SIGINT, as Python does, so calling scripts stop too).
Outputs are written atomically, so nothing is ever left half-written.

Start-up cost: only :mod:`sys` is imported up front.  The options of a command are
declared only when that command is the one being run, and torch, numpy and the codec are
imported inside the commands that need a network, so ``labkit --help``, ``labkit info``
and argument errors answer without loading torch (``benchmarks/bench_cli.py`` times them,
``tests/test_cli.py`` checks what they import).
"""
from __future__ import annotations

# Only ``sys`` at import time: everything else is imported inside main()'s Ctrl-C handler,
# so an interrupt while the command line loads is one line too.
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    import argparse
    from pathlib import Path
    from typing import Callable, Sequence

__all__ = ["COMMANDS", "build_parser", "interrupted", "main"]

REPRODUCE_NOTEBOOK = "00_reproduce.ipynb"


# ----------------------------------------------------------------------------- argument types

def _positive_int(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


#: Seeds go to torch, NumPy and Python alike; NumPy's legacy generators take at most 32 bits.
SEED_MAX = 2**32 - 1


def _seed(text: str) -> int:
    """A whole number from 0 to :data:`SEED_MAX` (``--seed``)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"must be from 0 to {SEED_MAX}, got {value}")
    return value


def _seconds(text: str, *, zero_ok: bool) -> float:
    """A finite number of seconds, > 0 (or >= 0 with ``zero_ok``)."""
    import argparse
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds {'>= 0' if zero_ok else '> 0'}, "
                                         f"got {text!r}")
    return value


def _budget_seconds(text: str) -> float:
    return _seconds(text, zero_ok=False)


def _interval_seconds(text: str) -> float:
    return _seconds(text, zero_ok=True)


def _model(text: str) -> str:
    """A registered model name in any case (``AE2`` -> ``ae2``)."""
    import argparse

    from .spec import model_name

    try:
        return model_name(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _add_model(p: argparse.ArgumentParser, default: str | None, what: str) -> None:
    """``--model``; ``default=None`` means ``spec.DEFAULT_MODEL`` (the rate-distortion model)."""
    from .spec import DEFAULT_MODEL, MODEL_NAMES

    default = DEFAULT_MODEL if default is None else default
    p.add_argument("--model", type=_model, default=default, metavar="NAME",
                   help=f"{what}: {', '.join(MODEL_NAMES)}, any case (default %(default)s)")


def _add_bits(p: argparse.ArgumentParser, default: int, what: str = "bits per latent symbol") -> None:
    from .spec import BITS

    p.add_argument("--b", type=int, default=default, choices=BITS, metavar="B",
                   help=f"{what}, {BITS.start}..{BITS.stop - 1} (default %(default)s)")


def _add_context(p: argparse.ArgumentParser) -> None:
    from .bitstream import CONTEXT_IDS  # the modes a file can hold (= coder.CONTEXT_MODES, tested); no numpy
    from .spec import DEFAULT_CONTEXT, PRIOR_CONTEXT

    p.add_argument("--context", default=None, choices=tuple(CONTEXT_IDS),
                   help=f"coder context mode (default: {PRIOR_CONTEXT} when the model ships a coder prior for b, "
                        f"as resae-rd-fast does for b=1..5; else {DEFAULT_CONTEXT})")


def _folder_name(text: str) -> str:
    """A non-empty folder name (``--weights ''`` used to mean the shipped weights, silently)."""
    import argparse

    if not text.strip():
        raise argparse.ArgumentTypeError("expected a folder name, got an empty one (leave --weights out for the "
                                         "shipped weights)")
    return text


def _add_weights(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", type=_folder_name, default=None, metavar="DIR",
                   help="folder of checkpoints <model>/model.pt + config.json, or one run folder "
                        "(labkit train --out DIR) of the model the file names (default: the shipped ones)")


def _named_output(text: str, suffix: str) -> Path:
    """The output path of ``text``, refusing names that cannot be the file meant: ``-`` (no standard
    output here), a trailing slash (a folder's name; ``Path`` would drop it) and a bare suffix
    such as ``.lkc`` (a hidden file with no suffix at all)."""
    import os
    from pathlib import Path

    if text == "-":
        raise ValueError(f"'-' (standard output) is not supported; name an output file, such as out{suffix}")
    if text.endswith(("/", os.sep)):
        raise ValueError(f"output {text} ends in '/', so it names a folder; pass a file name, such as "
                         f"{text}out{suffix}")
    if Path(text).name.lower() == suffix:
        raise ValueError(f"output {text} is a suffix without a name; name the file, such as photo{suffix}")
    return Path(text)


def _check_input(path: Path, what: str) -> None:
    """Refuse an input that is missing, a folder, or not a regular file (a device, a pipe)."""
    if str(path) == "-":
        raise ValueError(f"'-' (standard input) is not supported; pass the {what} as a file")
    if path.is_dir():
        raise IsADirectoryError(f"{what} {path} is a directory; pass a file")
    if not path.exists():
        raise FileNotFoundError(f"{what} {path} does not exist")
    if not path.is_file():
        raise ValueError(f"{what} {path} is not a regular file (a device or a pipe); save it to a file first")


def _file_above(path: Path) -> Path | None:
    """The nearest existing path above ``path`` when it is a file (nothing can be created under it), else None."""
    for above in path.parents:
        if above.exists():
            return None if above.is_dir() else above
    return None


def _check_output(path: Path, source: Path | None = None, suffix: str | None = None, overwrite: bool = True) -> None:
    """Refuse an output that is a folder, in a missing folder, the input itself, or (``overwrite=False``) an
    existing file, so that a mistyped name cannot replace one (``suffix``: for the hint)."""
    from pathlib import Path

    from .atomic import check_target, name_too_long, refuse_read_only

    parent = path.parent if str(path.parent) else Path(".")
    try:
        path.exists()
    except OSError as err:  # ENAMETOOLONG is raised, not answered False
        import errno

        if err.errno == errno.ENAMETOOLONG:
            raise ValueError(name_too_long(path)) from None
        raise
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        check_target(path)  # a link, FIFO or device is refused as such, whatever --overwrite says
    if path.is_dir():
        raise IsADirectoryError(f"output {path} is a directory; pass a file name inside it, such as "
                                f"{path / ('out' + (suffix or ''))}")
    blocked = _file_above(path)
    if blocked is not None:
        raise NotADirectoryError(f"output folder {blocked} is a file, not a folder; pass an output name in a folder")
    if not parent.is_dir():
        raise FileNotFoundError(f"output folder {parent} does not exist; create it first")
    if source is not None and path.exists() and source.exists() and path.samefile(source):
        raise ValueError(f"output {path} is the input file; choose another output name")
    if not overwrite and (path.exists() or path.is_symlink()):
        raise FileExistsError(f"output {path} already exists; choose another name, or pass --overwrite to replace it")
    if overwrite and path.is_file():
        refuse_read_only(path)  # before the work, not after it


# ----------------------------------------------------------------------------- train

def _args_train(p: argparse.ArgumentParser) -> None:
    import argparse

    from .spec import BITS
    from .trainconfig import LOSSES, SCHEDULES, TrainConfig  # defaults and choices from their one home (torch-free)

    d = TrainConfig()
    _add_model(p, d.model, "model to train")
    p.add_argument("--model-cfg", default="{}", metavar="JSON",
                   help='JSON constructor config, e.g. \'{"upsample": "resize"}\' (default %(default)s)')
    p.add_argument("--upsample", default=None, help="shortcut for model_cfg upsample (transpose|pixelshuffle|resize)")
    _add_bits(p, d.b_train, "training bit depth (noise + validation)")
    p.add_argument("--noise", action=argparse.BooleanOptionalAction, default=None,
                   help="training noise (default from the model: ae1 off, the others on)")
    p.add_argument("--epochs", type=_positive_int, default=d.epochs, help="(default %(default)s)")
    p.add_argument("--batch-size", type=_positive_int, default=d.batch_size, help="(default %(default)s)")
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate (default %(default)s)")
    p.add_argument("--schedule", default=d.schedule, choices=SCHEDULES, help="(default %(default)s)")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay,
                   help="AdamW weight decay (default %(default)s)")
    p.add_argument("--loss", default=d.loss, choices=LOSSES, help="(default %(default)s)")
    p.add_argument("--rate-weight", type=float, default=d.rate_weight, metavar="LAMBDA",
                   help="rate-distortion training: loss D + LAMBDA * estimated bpp; 0: distortion only "
                        "(default %(default)s)")
    p.add_argument("--bits", type=int, nargs="+", default=d.bits, choices=BITS, metavar="B",
                   help="bit depths drawn during training, one per batch (default: --b only)")
    p.add_argument("--scale", type=_scale_rule, default=d.scale,
                   help="encoder's rule for the stored scale ymax: max, or a percentile such as p99.9 "
                        "(default %(default)s)")
    p.add_argument("--seed", type=_seed, default=d.seed, help="0 to 2**32-1 (default %(default)s)")
    p.add_argument("--crop", type=_positive_int, default=d.crop,
                   help="training crop size, a multiple of 8 (default %(default)s)")
    p.add_argument("--num-workers", type=int, default=d.num_workers, help="data-loader workers (default %(default)s)")
    p.add_argument("--val-every", type=_positive_int, default=d.val_every,
                   help="epochs between validations (default %(default)s)")
    p.add_argument("--max-val-images", type=_positive_int, default=None, help="validate on at most this many images")
    p.add_argument("--max-steps", type=_positive_int, default=None, help="cap on optimizer steps")
    p.add_argument("--checkpoint-every", type=_interval_seconds, default=d.checkpoint_every_s,
                   help="min seconds between last.pt writes, 0: every epoch (default %(default)s)")
    p.add_argument("--time-budget", type=_budget_seconds, default=None, help="seconds; stops at an epoch boundary")
    p.add_argument("--device", default=d.device, help="auto | cpu | cuda | cuda:1 ... (default %(default)s)")
    p.add_argument("--tf32", action="store_true", help="allow TF32 on CUDA (faster, less reproducible)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="folder with train/ (and test/) in the course layout; default: the embedded photos")
    p.add_argument("--out", required=True, metavar="DIR", help="run folder: model.pt, config.json, history.json")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt if present")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh in an OUT that already holds a run (its files are replaced); without it "
                        "such an OUT is refused unless --resume")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars (epoch lines still print)")


def _scale_rule(text: str) -> str:
    import argparse

    from .quant import check_scale_rule

    try:
        return check_scale_rule(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _refine_steps(text: str) -> int:
    """A whole number of refinement steps >= 0 (``--refine``)."""
    import argparse

    try:
        steps = int(text)
    except ValueError:
        steps = -1
    if steps < 0:
        try:            # a number of the wrong kind (2.5, 1e9, nan) is not a misplaced file name
            float(text)
            hint = ""
        except ValueError:
            hint = " (a bare --refine goes after the input and output names)"
        raise argparse.ArgumentTypeError(f"refinement steps must be a whole number >= 0, got {text!r}{hint}")
    from .spec import REFINE_MAX_STEPS, REFINE_STEPS

    if steps > REFINE_MAX_STEPS:
        raise argparse.ArgumentTypeError(f"at most {REFINE_MAX_STEPS} refinement steps (about 4 s per megapixel each "
                                         f"on one core; {REFINE_STEPS} is the usual choice), got {text}")
    return steps


def _encode_scale(text: str) -> str:
    """``auto``, ``search`` (:data:`labkit.spec.SCALE_SEARCH`) or a scale rule (``labkit.quant.check_scale_rule``)."""
    import argparse

    from .spec import SCALE_SEARCH

    try:
        return text if text in ("auto", SCALE_SEARCH) else _scale_rule(text)
    except argparse.ArgumentTypeError as err:
        raise argparse.ArgumentTypeError(f"{err}; or auto (the trained rule) or {SCALE_SEARCH} (chosen per image)") from None


def _train_config(args: argparse.Namespace):  # -> labkit.train.TrainConfig
    """The :class:`labkit.train.TrainConfig` the parsed options stand for."""
    import json

    from .train import TrainConfig

    try:
        model_cfg = json.loads(args.model_cfg)
    except json.JSONDecodeError as err:
        raise ValueError(f"--model-cfg is not valid JSON ({err}); write e.g. '{{\"upsample\": \"resize\"}}'") from None
    if not isinstance(model_cfg, dict):
        raise ValueError(f"--model-cfg must be a JSON object such as '{{\"blocks\": 2}}', got {args.model_cfg!r}")
    if args.upsample:
        model_cfg["upsample"] = args.upsample
    return TrainConfig(
        model=args.model, model_cfg=model_cfg, b_train=args.b, noise=args.noise,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, schedule=args.schedule,
        weight_decay=args.weight_decay, loss=args.loss, seed=args.seed, crop=args.crop,
        num_workers=args.num_workers, device=args.device, tf32=args.tf32,
        time_budget_s=args.time_budget, val_every=args.val_every, max_val_images=args.max_val_images,
        max_steps=args.max_steps, checkpoint_every_s=args.checkpoint_every,
        rate_weight=args.rate_weight, bits=args.bits, scale=args.scale,
    )


#: The files a training run writes into its folder (``labkit.train.fit``).
RUN_FILES = ("model.pt", "config.json", "history.json", "last.pt")


def check_run_folder(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse a ``labkit train --out`` that is a file, lies under a file, or already holds a run that
    neither ``--resume`` continues nor ``--overwrite`` replaces.

    Forgetting ``--resume`` used to replace a run's weights (hours of training) without a word.
    """
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file; pass a folder for the run (it is created if missing)")
    blocked = _file_above(out)
    if blocked is not None:
        raise NotADirectoryError(f"--out {out}: {blocked} is a file, not a folder")
    if resume and overwrite:
        raise ValueError("pass --resume (continue the run in --out) or --overwrite (start afresh and replace it), "
                         "not both")
    held = [name for name in RUN_FILES if (out / name).exists()]
    if held and not resume and not overwrite:
        raise FileExistsError(f"--out {out} already holds a training run ({', '.join(held)}); pass --resume to "
                              "continue it, --overwrite to start afresh and replace it, or another --out")


def _cmd_train(args: argparse.Namespace) -> int:
    from .data import training_splits
    from .models import build_model
    from .train import fit

    from pathlib import Path

    cfg = _train_config(args)
    check_run_folder(Path(args.out), resume=args.resume, overwrite=args.overwrite)  # before any data or training
    splits = training_splits(args.data_dir, seed=args.seed)  # default data: random crops of 192px windows
    model = build_model(cfg.model, seed=cfg.seed, **cfg.model_cfg)
    fit(model, splits["train"], splits.get("val"), cfg, out_dir=args.out,
        progress=not args.no_progress, resume=args.resume)
    print(f"labkit train: model.pt, config.json and history.json in {args.out}")
    return 0


# ----------------------------------------------------------------------------- reproduce / grade

def _notebook_parameters(path: Path) -> dict[str, str]:
    """Name -> ``default  # comment`` (source text) of a notebook's ``parameters`` cell, read without a kernel."""
    import ast
    import json

    nb = json.loads(path.read_text(encoding="utf-8"))
    for cell in nb.get("cells", []):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            lines = source.splitlines()
            out = {}
            for node in ast.parse(source).body:
                if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    value = ast.get_source_segment(source, node.value) or ""
                    comment = lines[node.end_lineno - 1].partition("#")[2].strip()
                    for t in targets:
                        if isinstance(t, ast.Name):
                            out[t.id] = value + (f"  # {comment}" if comment else "")
            return out
    return {}


def papermill_value(text: str) -> bool | int | float | str | None:
    """A ``-p NAME VALUE`` value read as papermill's command line reads it.

    ``True``/``False``/``None`` become those constants, whole numbers ``int``, other
    numbers ``float``, anything else stays text (papermill's ``_resolve_type``; a test
    checks the two agree).
    """
    if text in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[text]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _args_reproduce(p: argparse.ArgumentParser) -> None:
    import argparse
    import textwrap

    from .pipeline import NOTEBOOK_DIR

    params = _notebook_parameters(NOTEBOOK_DIR / REPRODUCE_NOTEBOOK)
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="set a parameter of the notebook, as papermill's -p does (True/False/None, numbers, "
                        "else text); repeatable")
    p.description = textwrap.fill(p.description or "", 79)  # the raw formatter keeps the epilog's lines
    p.epilog = (f"parameters of notebooks/{REPRODUCE_NOTEBOOK} and their defaults:\n" +
                "\n".join(f"  {k} = {v}" for k, v in params.items()) +
                "\n\nexample: labkit reproduce -p profile full -p data_dir /path/to/course/repo")
    p.formatter_class = argparse.RawDescriptionHelpFormatter


def _cmd_reproduce(args: argparse.Namespace) -> int:
    import ast
    from pathlib import Path

    from .pipeline import NOTEBOOK_DIR, default_out_dir, display_path, executed_dir_for, run_notebook, run_tag
    from .profiles import PROFILES

    known = _notebook_parameters(NOTEBOOK_DIR / REPRODUCE_NOTEBOOK)
    params = {}
    for name, value in args.parameter:
        if name not in known:
            raise ValueError(f"unknown parameter {name!r} of notebooks/{REPRODUCE_NOTEBOOK}; "
                             f"known: {', '.join(known)}")
        params[name] = papermill_value(value)
    # beside the three notebooks it runs: notebooks/executed/<profile>[-<data folder>]/
    defaults = {k: ast.literal_eval(v.partition("  #")[0]) for k, v in known.items()}
    merged = {**defaults, **params}
    if merged["profile"] not in PROFILES:  # before a kernel starts or a folder is made
        raise ValueError(f"unknown profile {merged['profile']!r}; choose one of {', '.join(PROFILES)}")
    data_dir = merged.get("data_dir")
    if data_dir is not None and not (Path(str(data_dir)) / "train").is_dir():  # not after 01_train has run
        what = "does not exist" if not Path(str(data_dir)).exists() else "has no train/ folder"
        raise FileNotFoundError(f"data_dir {data_dir} {what}; pass a folder in the course layout: train/ (and "
                                "test/; without it 15 % of train/ is held out) of 128x128 images")
    executed_dir = executed_dir_for(run_tag(str(merged["profile"]), merged.get("data_dir")))
    run_notebook(REPRODUCE_NOTEBOOK, executed_dir, params, log_output=True)
    # the last line, after the notebook's headline numbers: where everything is, as the run's own summary said
    out = merged.get("out_dir") or default_out_dir(str(merged["profile"]), merged.get("data_dir"))
    # the run's own time is in its summary line above; this one says where things are, after the table
    print(f"labkit reproduce: done; figures and metrics.json in {display_path(Path(out))}, executed notebooks in "
          f"{display_path(executed_dir)}")
    return 0


def _args_grade(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="default",
                   help="profile to rerun, one that evaluates the shipped weights (default %(default)s; "
                        "profiles that retrain do not repeat bit for bit)")
    p.add_argument("--reference", default=None, metavar="JSON",
                   help="reference metrics.json (default: the profile's figures/metrics.json as committed at git HEAD)")
    p.add_argument("--keep", default=None, metavar="DIR", help="write the fresh run here instead of a temporary folder")


def _cmd_grade(args: argparse.Namespace) -> int:
    from .grade import run

    return run(profile=args.profile, reference=args.reference, keep=args.keep)


# ----------------------------------------------------------------------------- codec

def _args_encode(p: argparse.ArgumentParser) -> None:
    from .spec import REFINE_STEPS

    p.add_argument("input", help="image file (PNG, JPEG, ... anything Pillow reads)")
    p.add_argument("output", help="output .lkc file")
    _add_model(p, None, "shipped model")
    _add_bits(p, 2)
    _add_context(p)
    p.add_argument("--colour-map", default="auto", choices=("auto", "on", "off"),
                   help="fit a colour correction (one 12-byte map, or a blended grid of them for local colour) and "
                        "send the one that pays best, if any; auto = the model's default "
                        "(on for resae-rd, resae-rd-fast and its earlier weights -v1 and -v2, off for the seed's and the course's models)")
    p.add_argument("--scale", type=_encode_scale, default="auto",
                   help="the stored scale ymax: auto = the rule the model was trained with (fast); search = try "
                        "several rules and keep the smallest file for its quality (for resae-rd-fast 2-5 %% fewer bits "
                        "at equal PSNR, README; 3-4x the encode time); or a rule such as max or p99.9")
    p.add_argument("--refine", type=_refine_steps, nargs="?", const=None, default=0, metavar="STEPS",
                   help="refine the latent for the decoder before coding it (labkit.refine): smaller files for "
                        "the same quality, same format, a much slower encode (each step runs the decoder forward "
                        f"and back: about 4 s per step per megapixel on one core). --refine alone = {REFINE_STEPS} "
                        "steps; default 0 = off")
    _add_weights(p)
    p.add_argument("--force-suffix", action="store_true", help="allow an output name not ending in .lkc")
    _add_overwrite(p)


def _add_overwrite(p: argparse.ArgumentParser) -> None:
    p.add_argument("--overwrite", action="store_true",
                   help="replace the output file if it exists (default: refuse, so a mistyped name cannot replace a file)")


def _cmd_encode(args: argparse.Namespace) -> int:
    from pathlib import Path

    src, dst = Path(args.input), _named_output(args.output, ".lkc")
    _check_input(src, "input image")
    _check_output(dst, src, ".lkc", overwrite=args.overwrite)
    if dst.suffix.lower() != ".lkc" and not args.force_suffix:
        raise ValueError(f"output {dst} should end in .lkc (pass --force-suffix to write it anyway)")
    from .bitstream import unpack
    from .codec import encode_file
    from .spec import REFINE_STEPS, bits_per_pixel

    colour_map = {"auto": None, "on": True, "off": False}[args.colour_map]
    nbytes = encode_file(src, dst, model=args.model, b=args.b, context=args.context, weights_dir=args.weights,
                         colour_map=colour_map, scale=None if args.scale == "auto" else args.scale,
                         refine=REFINE_STEPS if args.refine is None else args.refine, overwrite=args.overwrite)
    header, _ = unpack(dst.read_bytes(), verify=False)  # just written (atomically) by this process
    bpp = bits_per_pixel(nbytes, header.height, header.width)
    print(f"{dst}: {nbytes} bytes, {bpp:.4f} bpp ({header.width}x{header.height}, model={header.model}, "
          f"b={header.b}, context={header.context}, colour map {_colour_map_words(header.colour_grid)})")
    from .profiles import PROFILES

    measured = PROFILES["default"]["bits"]
    if header.b > max(measured):   # the coder takes up to 8 bits; the models and the report stop at 5
        print(f"labkit: note: b={header.b} is past b = {min(measured)}..{max(measured)}, where the models were trained "
              "and the report measures them: the file is valid, but its quality is not known to beat "
              f"b={max(measured)}'s, and no coder prior covers it (context={header.context})", file=sys.stderr)
    return 0


def _colour_map_words(grid: tuple[int, int] | None) -> str:
    """How a file's colour map reads in a sentence: none, one map, or a grid of them."""
    if grid is None:
        return "none"
    return "sent" if grid == (1, 1) else f"sent as a {grid[0]}x{grid[1]} grid"


def _args_decode(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help=".lkc file")
    p.add_argument("output", help="output image, e.g. out.png")
    _add_weights(p)
    _add_overwrite(p)


def _cmd_decode(args: argparse.Namespace) -> int:
    from pathlib import Path

    src, dst = Path(args.input), _named_output(args.output, ".png")
    _check_input(src, "input file")
    _check_output(dst, src, ".png", overwrite=args.overwrite)
    from .codec import decode_file

    image = decode_file(src, dst, weights_dir=args.weights, overwrite=args.overwrite)
    print(f"{dst}: {image.shape[1]}x{image.shape[0]} RGB")
    return 0


def _args_info(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help=".lkc file")
    p.add_argument("--json", action="store_true", help="print the header as one JSON object")
    p.add_argument("--weights", type=_folder_name, default=None, metavar="DIR",
                   help="check the CRC against the weights in DIR/<model> (a file written with your own weights; "
                        "loads them, so torch). Default: the shipped weights' tag, without loading anything")


def info_record(path: str | Path, weights_dir: str | Path | None = None) -> dict:
    """Every header field of the ``.lkc`` file at ``path`` plus sizes and bpp (CRC checked).

    A file whose CRC fails but whose header still parses (cut short, extended or with
    changed bytes) is described all the same, with ``crc_ok`` False and ``crc_error`` saying
    what is wrong, so that ``labkit info`` can show what the damaged file claims to be.

    Parameters
    ----------
    path : str or Path
        The ``.lkc`` file.
    weights_dir : str or Path, optional
        A folder of ``<model>/`` weights to check the CRC against (files written since
        2026-11-28 carry a CRC over their weights); default: the shipped weights' tag
        (``labkit.bitstream.SHIPPED_WEIGHTS_TAGS``), which needs no torch.

    Returns
    -------
    dict
        The header's fields, ``latent_shape``, ``symbols`` (2^b), ``file``, ``bytes``,
        ``header_bytes`` (the header and the colour map, if any), ``payload_bytes`` and ``bpp``
        (whole file over the image's pixels).
    """
    import dataclasses
    from pathlib import Path

    from .bitstream import HEADER_SIZE, WEIGHTS_FLAG, ChecksumError, unpack
    from .spec import bits_per_pixel

    data = Path(path).read_bytes()
    crc_error, tag = None, None
    if weights_dir is not None:
        from .checkpoint import decoder_tag
        from .codec import load_pretrained

        named = unpack(data, verify=False)[0].model
        model = load_pretrained(named, weights_dir)[0]
        tag = decoder_tag(model)
    try:
        h, payload = unpack(data, weights_tag=tag)
    except ChecksumError as err:
        try:
            h, payload = unpack(data, verify=False)  # what the damaged header says; nothing is decoded from it
        except ValueError:
            raise err from None
        crc_error = str(err)
    record = dataclasses.asdict(h)
    record["colour_map"] = h.colour_map.hex() if h.colour_map is not None else None  # JSON-safe
    record["colour_grid"] = list(h.colour_grid) if h.colour_grid is not None else None
    if crc_error is not None:
        record["weights_tag"] = None  # the tag the CRC was checked with, and it failed: no tag is known to fit
    record["crc_covers_weights"] = bool(data[2] & WEIGHTS_FLAG)
    record.update(latent_shape=list(h.latent_shape), symbols=1 << h.b, file=str(path), bytes=len(data),
                  header_bytes=len(data) - len(payload), payload_bytes=len(payload),
                  colour_map_bytes=len(data) - len(payload) - HEADER_SIZE,
                  bpp=bits_per_pixel(len(data), h.height, h.width), crc_ok=crc_error is None)
    if crc_error is not None:
        record["crc_error"] = crc_error
    return record


def _cmd_info(args: argparse.Namespace) -> int:
    from pathlib import Path

    _check_input(Path(args.input), "input file")
    r = info_record(args.input, args.weights)
    if args.json:
        import json

        print(json.dumps(r, indent=1))
        return _info_verdict(r)
    c, lh, lw = r["latent_shape"]
    cmap = r["colour_map_bytes"]  # as stored (compact in version 5)
    # "header" as in --json's header_bytes: the fixed header and, when sent, the colour map (side information)
    parts = f"{r['header_bytes']} header" + (f" ({r['header_bytes'] - cmap} fixed + {cmap} colour map)" if cmap else "")
    print(f"file        {r['file']} ({r['bytes']} bytes = {parts} + {r['payload_bytes']} payload)")
    print(f"image       {r['width']}x{r['height']} RGB, {r['bpp']:.4f} bpp")
    print(f"model       {r['model']} (stride {r['downsample']}), latent {c}x{lh}x{lw}")
    print(f"quantizer   b={r['b']} ({r['symbols']} symbols), ymax={r['ymax']:.6g}")
    print(f"coder       context={r['context']}, increment={r['increment']}, limit={r['limit']}")
    if r["colour_grid"] == [1, 1]:
        from .colour import parameters

        gain, offset = parameters(bytes.fromhex(r["colour_map"]))
        print(f"colour map  gains {' '.join(f'{g:.3f}' for g in gain.ravel())}, "
              f"offsets {' '.join(f'{d:+.4f}' for d in offset)}")
    elif r["colour_grid"] is not None:
        from .colour import grid_parameters

        gains, offsets = grid_parameters(bytes.fromhex(r["colour_map"]))
        gh, gw = r["colour_grid"]
        print(f"colour map  {gh}x{gw} grid of maps ({r['colour_map_bytes']} bytes in the file), blended; gains "
              f"{gains.min():.3f}..{gains.max():.3f}, offsets {offsets.min():+.4f}..{offsets.max():+.4f}")
    else:
        print("colour map  none")
    covers = "CRC over the bytes and the decoder's weights" if r["crc_covers_weights"] else "CRC over the bytes"
    print(f"format      version {r['version']}, {covers}: " + ("ok" if r["crc_ok"] else "MISMATCH: the fields above "
                                                                  "are what the file says; the error below says why"))
    return _info_verdict(r)


def _info_verdict(record: dict) -> int:
    """0 for a sound file; for a damaged one, its error on stderr (as every error) and 1."""
    if record["crc_ok"]:
        return 0
    print(f"labkit: error: {record['crc_error']}", file=sys.stderr)
    return 1


# ----------------------------------------------------------------------------- demo / bench

def _args_demo(p: argparse.ArgumentParser) -> None:
    from .spec import BITS

    p.add_argument("--out", default="demo.png", help="output PNG (default %(default)s)")
    p.add_argument("--bits", type=int, nargs="+", default=[1, 2, 3], choices=BITS, metavar="B",
                   help="bit depths to show, one block of rows each (default 1 2 3)")
    p.add_argument("--images", type=_positive_int, default=2, help="number of test tiles per b (default %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists (else refused)")
    _add_weights(p)


def _cmd_demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    out_path = _named_output(args.out, ".png")
    _check_output(out_path, suffix=".png", overwrite=args.overwrite)  # as encode and decode: nothing replaced unasked
    if out_path.suffix.lower() != ".png":
        raise ValueError(f"output {out_path} should end in .png (the demo figure is a PNG)")
    from .demo import run_demo

    out = run_demo(out=args.out, bits=args.bits, n_images=args.images, weights_dir=args.weights,
                   overwrite=args.overwrite)
    print(f"wrote {out}")
    return 0


def _args_bench(p: argparse.ArgumentParser) -> None:
    _add_model(p, None, "shipped model")
    _add_bits(p, 2)
    _add_context(p)
    p.add_argument("--repeats", type=_positive_int, default=10, help="timed repetitions; the best is reported "
                                                                     "(default %(default)s)")
    p.add_argument("--json", action="store_true", help="print the settings, the CPU and the timings as JSON")


def _cmd_bench(args: argparse.Namespace) -> int:
    from .speed import bench_codec_speed, cpu_name

    rows = bench_codec_speed(model=args.model, b=args.b, context=args.context, repeats=args.repeats)
    context = rows[0]["context"] if rows else args.context  # the one the codec used (the model's default if None)
    if args.json:
        import json

        print(json.dumps(dict(model=args.model, b=args.b, context=context, repeats=args.repeats, threads=1,
                              cpu=cpu_name(), rows=rows), indent=1))
        return 0
    print(f"model={args.model} b={args.b} context={context}, best of {args.repeats}, one thread, "
          f"CPU: {cpu_name()}")
    for row in rows:
        print(f"{row['size']:>9}  encode {row['encode_ms']:8.2f} ms  decode {row['decode_ms']:8.2f} ms  "
              f"total {row['total_ms']:8.2f} ms  ({row['bpp']:.3f} bpp, 1 thread)")
    return 0


# ----------------------------------------------------------------------------- the parser

class Command:
    """One subcommand: its ``--help`` line, its description, its options and what it runs."""

    __slots__ = ("summary", "description", "add_arguments", "run")

    def __init__(self, summary: str, description: str, add_arguments: Callable[[argparse.ArgumentParser], None],
                 run: Callable[[argparse.Namespace], int]) -> None:
        self.summary, self.description, self.add_arguments, self.run = summary, description, add_arguments, run


COMMANDS: dict[str, Command] = {
    "train": Command(
        "train a model from its options; writes model.pt, config.json, history.json",
        "Train a labkit autoencoder on the embedded photos (or --data-dir in the course layout) and write "
        "model.pt, config.json and history.json into --out. Needs torch; the defaults are "
        "labkit.train.TrainConfig's.",
        _args_train, _cmd_train),
    "reproduce": Command(
        "regenerate the report (what `make figures` runs)",
        f"Run notebooks/{REPRODUCE_NOTEBOOK} with papermill, exactly as `make figures` does: 01_train, "
        "02_quantize and 03_evaluate for a profile, then publish every figure and metrics.json (default "
        "profile: figures/). Nothing is published unless every notebook succeeds.",
        _args_reproduce, _cmd_reproduce),
    "grade": Command(
        "rerun the default report and compare it with the committed metrics",
        "Rerun a profile into a temporary folder and compare every number of its metrics.json with the "
        "committed one, under the tolerances in labkit/grade.py. Prints GRADE OK or the disagreements; "
        "never touches figures/.",
        _args_grade, _cmd_grade),
    "encode": Command(
        "compress an image file into a .lkc file",
        "Compress an image (any size, any format Pillow reads) into a .lkc file with a shipped model.",
        _args_encode, _cmd_encode),
    "decode": Command(
        "decompress a .lkc file into an image",
        "Decompress a .lkc file. The model, b and coder settings come from the file; the output format "
        "comes from the suffix (.png lossless; .jpg etc. re-encode with Pillow's defaults).",
        _args_decode, _cmd_decode),
    "info": Command(
        "print the header of a .lkc file",
        "Print the header of a .lkc file (model, b, image and latent size, coder settings, bpp) after "
        "checking its CRC. Reads only the file: no network is loaded.",
        _args_info, _cmd_info),
    "demo": Command(
        "comparison figure: RAW, ResAE, the rate-distortion models, AE2 and JPEG, from the shipped weights",
        "Write a comparison figure of a few embedded test tiles at each b: the original, ResAE (the seed's "
        "model), each rate-distortion model that has weights (ResAE-RD, ResAE-RD-fast), AE2, and JPEG (optimized Huffman "
        "tables) at the quality that matches ResAE's bits.",
        _args_demo, _cmd_demo),
    "bench": Command(
        "encode+decode time of a 128x128 and a 768x512 image, one thread",
        "Time the whole codec (network, quantizer, coder, container) on a 128x128 and a 768x512 image cut "
        "from the embedded photos, one CPU thread, best of --repeats; prints the CPU beside the timings.",
        _args_bench, _cmd_bench),
}


def build_parser(commands: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``labkit`` parser.

    Parameters
    ----------
    commands : sequence of str, optional
        Commands whose options are declared (their modules are imported to do so);
        ``None`` declares every command's.  :func:`main` passes only the one being run,
        so that ``labkit --help`` imports nothing heavy.

    Returns
    -------
    argparse.ArgumentParser
    """
    import argparse

    from . import __version__

    p = argparse.ArgumentParser(
        prog="labkit", description="Learned image compression lab: autoencoder + arithmetic coding.",
        epilog="Run `labkit COMMAND --help` for a command's options.")
    p.add_argument("--version", action="version", version=f"labkit {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, cmd in COMMANDS.items():
        sp = sub.add_parser(name, help=cmd.summary, description=cmd.description)
        sp.set_defaults(func=cmd.run)
        if commands is None or name in commands:
            cmd.add_arguments(sp)
    return p


def _command_in(argv: Sequence[str]) -> str | None:
    """The command named in ``argv`` (the first word that is not an option), if it is one."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def _run(argv: list[str]) -> int:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.simplefilter("ignore", ResourceWarning)  # e.g. a file an interrupted import left open
        warnings.showwarning = lambda msg, cat, *a, **k: print(f"labkit: warning: {msg}", file=sys.stderr)
        try:
            command = _command_in(argv)
            args = build_parser([command] if command else []).parse_args(argv)
            return args.func(args)
        except BrokenPipeError:  # e.g. `labkit info x.lkc | head -1`: stop quietly
            import os

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
        except ImportError as err:  # e.g. papermill (a dev extra) or the compiled coder not installed
            print(f"labkit: error: {str(err).splitlines()[0]}; install labkit with its extras: `make setup` "
                  "(or pip install -e .[dev,bench])", file=sys.stderr)
            return 1
        except (ValueError, OSError, RuntimeError, MemoryError) as err:
            # SettingsError (bad environment variable), CodecError, BitstreamError, DataError and
            # CheckpointError are ValueErrors; WriteError (atomic writes refused) is an OSError.
            text = str(err).strip()
            message = text.splitlines()[0] if text else type(err).__name__
            from .atomic import WriteError

            if isinstance(err, OSError) and not isinstance(err, WriteError) and err.strerror and err.filename:
                message = f"{err.filename}: {err.strerror}"  # not "[Errno 36] ...: '...'"
            if isinstance(err, MemoryError):
                message = f"out of memory{': ' + message if text else ''}; try a smaller image"
            print(f"labkit: error: {message}", file=sys.stderr)
            return 1


def _quiet_excepthook(kind: type[BaseException], value: BaseException, tb: object) -> None:
    if not issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, tb)  # type: ignore[arg-type]


def interrupted(program: bool) -> int:
    """Report Ctrl-C in one line; as the program, end the way Python ends on Ctrl-C.

    Parameters
    ----------
    program : bool
        True when labkit is the process (console script, ``python -m labkit``): the
        ``KeyboardInterrupt`` being handled is re-raised with a silent excepthook, so
        Python finalizes and then dies by SIGINT -- a shell reports status 130 and a
        script looping over ``labkit`` stops too (a plain ``exit(130)`` would not stop
        it).  False (``main([...])`` called from Python): return 130.

    Returns
    -------
    int
        130, when ``program`` is False.
    """
    print("labkit: interrupted", file=sys.stderr)
    sys.stderr.flush()
    if program:
        sys.excepthook = _quiet_excepthook
        raise KeyboardInterrupt
    return 130


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``labkit`` with ``argv`` (default: the process's arguments).

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name; ``None`` means labkit is the program
        (its own ``sys.argv``).

    Returns
    -------
    int
        Exit status: 0 ok, 1 error (one line on stderr), 2 usage error (argparse raises
        ``SystemExit(2)``), 130 interrupted.  On Ctrl-C with ``argv=None`` the process
        instead ends by SIGINT after the one line (see :func:`interrupted`), which a shell
        also reports as 130.
    """
    try:
        return _run(list(sys.argv[1:] if argv is None else argv))
    except KeyboardInterrupt:
        return interrupted(program=argv is None)


if __name__ == "__main__":
    raise SystemExit(main())
