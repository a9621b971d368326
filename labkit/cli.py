"""Command line: ``python -m labkit encode|decode|info|demo|bench``.

Every failure ends with a non-zero exit status and one line on stderr saying what
went wrong and what to do; outputs are written atomically, so nothing is ever
left half-written.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

BITS_CHOICES = range(1, 9)


def _check_input(path: Path, what: str) -> None:
    if path.is_dir():
        raise IsADirectoryError(f"{what} {path} is a directory; pass a file")
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")


def _check_output(path: Path) -> None:
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise IsADirectoryError(f"output {path} is a directory; pass a file name such as {path / 'out'}")
    if not parent.is_dir():
        raise FileNotFoundError(f"output folder {parent} does not exist; create it first")


def _cmd_encode(args: argparse.Namespace) -> int:
    from .codec import encode_file

    src, dst = Path(args.input), Path(args.output)
    _check_input(src, "input image")
    _check_output(dst)
    if dst.suffix.lower() != ".lkc" and not args.force_suffix:
        raise ValueError(f"output {dst} should end in .lkc (pass --force-suffix to write it anyway)")
    nbytes = encode_file(src, dst, model=args.model, b=args.b, context=args.context, weights_dir=args.weights)
    from .bitstream import unpack

    header, _ = unpack(dst.read_bytes())
    bpp = nbytes * 8 / (header.height * header.width)
    print(f"{dst}: {nbytes} bytes, {bpp:.4f} bpp ({header.width}x{header.height}, model={header.model}, "
          f"b={header.b}, context={header.context})")
    return 0


def _cmd_decode(args: argparse.Namespace) -> int:
    from .codec import decode_file

    src, dst = Path(args.input), Path(args.output)
    _check_input(src, "input file")
    _check_output(dst)
    image = decode_file(src, dst, weights_dir=args.weights)
    print(f"{dst}: {image.shape[1]}x{image.shape[0]} RGB")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from .bitstream import HEADER_SIZE, unpack

    _check_input(Path(args.input), "input file")
    data = Path(args.input).read_bytes()
    h, payload = unpack(data)
    c, lh, lw = h.latent_shape
    print(f"file        {args.input} ({len(data)} bytes = {HEADER_SIZE} header + {len(payload)} payload)")
    print(f"image       {h.width}x{h.height} RGB, {len(data) * 8 / (h.width * h.height):.4f} bpp")
    print(f"model       {h.model} (stride {h.downsample}), latent {c}x{lh}x{lw}")
    print(f"quantizer   b={h.b} ({1 << h.b} symbols), ymax={h.ymax:.6g}")
    print(f"coder       context={h.context}, increment={h.increment}, limit={h.limit}")
    print(f"format      version {h.version}, CRC ok")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    out = run_demo(out=args.out, bits=args.bits, n_images=args.images, weights_dir=args.weights)
    print(f"wrote {out}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from .speed import bench_codec_speed

    print(f"model={args.model} b={args.b} context={args.context}, best of {args.repeats}, one thread")
    for row in bench_codec_speed(model=args.model, b=args.b, context=args.context, repeats=args.repeats):
        print(f"{row['size']:>9}  encode {row['encode_ms']:8.2f} ms  decode {row['decode_ms']:8.2f} ms  "
              f"total {row['total_ms']:8.2f} ms  ({row['bpp']:.3f} bpp, 1 thread)")
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from .codec import DEFAULT_CONTEXT

    contexts = ["none", "channel", "neighbor", "neighbor+channel"]
    p = argparse.ArgumentParser(prog="labkit", description="Learned image compression: autoencoder + arithmetic coding.")
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("encode", help="compress an image file into a .lkc file")
    e.add_argument("input", help="image file (PNG, JPEG, ... anything Pillow reads)")
    e.add_argument("output", help="output .lkc file")
    e.add_argument("--model", default="resae", help="shipped model: resae (default), ae2, ae1")
    e.add_argument("--b", type=int, default=2, choices=BITS_CHOICES, help="bits per latent symbol (default 2)")
    e.add_argument("--context", default=DEFAULT_CONTEXT, choices=contexts, help=f"coder context mode (default {DEFAULT_CONTEXT})")
    e.add_argument("--weights", default=None, help="folder of checkpoints (default: the shipped ones)")
    e.add_argument("--force-suffix", action="store_true", help="allow an output name not ending in .lkc")
    e.set_defaults(func=_cmd_encode)

    d = sub.add_parser("decode", help="decompress a .lkc file into an image (format from the suffix)",
                       description="Decompress a .lkc file. The model, b and coder settings come from the file; "
                                   "the output format comes from the suffix (.png lossless; .jpg etc. re-encode with "
                                   "Pillow's defaults).")
    d.add_argument("input", help=".lkc file")
    d.add_argument("output", help="output image, e.g. out.png")
    d.add_argument("--weights", default=None, help="folder of checkpoints (default: the shipped ones)")
    d.set_defaults(func=_cmd_decode)

    i = sub.add_parser("info", help="print the header of a .lkc file")
    i.add_argument("input", help=".lkc file")
    i.set_defaults(func=_cmd_info)

    m = sub.add_parser("demo", help="comparison figure RAW / ResAE / AE2 / JPEG from the shipped weights")
    m.add_argument("--out", default="demo.png", help="output PNG (default demo.png)")
    m.add_argument("--bits", type=int, nargs="+", default=[1, 2, 3], choices=BITS_CHOICES,
                   help="bit depths to show, one block of rows each (default 1 2 3)")
    m.add_argument("--images", type=_positive_int, default=2, help="number of test tiles per b (default 2)")
    m.add_argument("--weights", default=None, help="folder of checkpoints (default: the shipped ones)")
    m.set_defaults(func=_cmd_demo)

    b = sub.add_parser("bench", help="encode+decode time of a 128x128 and a 768x512 image, one thread")
    b.add_argument("--model", default="resae", help="shipped model (default resae)")
    b.add_argument("--b", type=int, default=2, choices=BITS_CHOICES, help="bits per latent symbol (default 2)")
    b.add_argument("--context", default=DEFAULT_CONTEXT, choices=contexts, help="coder context mode")
    b.add_argument("--repeats", type=_positive_int, default=10, help="timed repetitions; the best is reported")
    b.set_defaults(func=_cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 error, 2 usage)."""
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = lambda msg, cat, *a, **k: print(f"labkit: warning: {msg}", file=sys.stderr)
        try:
            return args.func(args)
        except (ValueError, OSError, RuntimeError) as err:
            message = str(err).splitlines()[0] if str(err) else type(err).__name__
            print(f"labkit: error: {message}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("labkit: interrupted; no output was written", file=sys.stderr)
            return 130


if __name__ == "__main__":
    raise SystemExit(main())
