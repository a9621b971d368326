#!/usr/bin/env python
"""Fuzz the ``.lkc`` container and decoder: only clear errors, no hang, sizes as promised.

    .venv/bin/python fuzz/fuzz_lkc.py --target container --seconds 60     # unpack + coder
    .venv/bin/python fuzz/fuzz_lkc.py --target network --seconds 60       # labkit.codec.decode
    .venv/bin/python fuzz/fuzz_lkc.py --engine random --runs 100000       # no atheris needed

What one input checks (:func:`check_one`): the bytes are a mutated ``.lkc`` file whose
CRC-32 has been recomputed (and, for half the inputs, whose payload-size nibble has
been fixed too), so mutations get past the checksum and reach the header checks and
the decoder.  Then

* ``container``: ``bitstream.unpack`` + ``bitstream.decode_symbols``; the symbols must
  have the header's ``latent_shape``, dtype uint8 and values below ``2**b``.
* ``network``: ``labkit.codec.decode``; the image must be ``height x width x 3`` uint8
  as the header says.

The only exceptions allowed are ``BitstreamError`` and ``CodecError``; anything else
(or an input that takes longer than ``--hang-seconds``) is a failure: the input is
saved under ``fuzz/crashes/`` and the run exits non-zero.  Headers claiming more than
``--max-symbols`` latent values are parsed but not decoded in the container target
(the coder accepts up to 2**28; decoding those is a throughput test, not a fuzz
case); the network target relies on the codec's own checks, with
``LABKIT_MAX_PIXELS`` set to ``--max-pixels``.

Engines: ``atheris`` (coverage-guided, libFuzzer; the Python code of labkit is
instrumented, the compiled coder is not) when it is installed, else ``random``: a
seeded mutator (bit flips, byte sets, interesting values, inserts, deletes,
truncation, chunk copies, header-field rewrites) over the same seeds.  Both print
the number of inputs and the time.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import random
import struct
import sys
import time
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
CRASHES = HERE / "crashes"

# header layout (labkit.bitstream): body 18 bytes, CRC at 18..22, (version 3: a 12-byte colour
# map at 22..34; version 4: a grid byte at 22 and 12 bytes per node,) payload after
BODY, HEADER, COLOUR_MAP = 18, 22, 12
FIELDS = [(2, 1), (3, 1), (4, 1), (5, 1), (6, 2), (8, 2), (10, 1), (11, 4), (15, 1), (16, 2)]


def fix_crc(data: bytes, fix_size: bool) -> bytes:
    """``data`` with the size nibble (optionally) and the CRC recomputed.

    A file flagged as having its CRC over the decoder's weights (version byte + 0x80) gets its CRC
    started from the shipped weights' tag of the model id it names (0 for an id without weights),
    as ``labkit.bitstream.unpack`` checks it.
    """
    from labkit import bitstream

    if len(data) < HEADER or data[:2] != b"LK":
        return data
    buf = bytearray(data)
    layout = buf[2] & 0x7F
    start = HEADER + (COLOUR_MAP if layout == 3 else 0)  # where the payload starts
    if layout == 4 and len(buf) > HEADER:
        start += 1 + COLOUR_MAP * ((buf[HEADER] >> 4) + 1) * ((buf[HEADER] & 0x0F) + 1)
    if layout == 5:
        try:
            start = bitstream._expand_colour_map(bytes(buf), HEADER)[1]
        except bitstream.BitstreamError:
            pass
    if fix_size:
        buf[5] = (buf[5] & 0x0F) | ((max(0, len(buf) - start) & 0x0F) << 4)
    seed = 0
    if buf[2] & bitstream.WEIGHTS_FLAG:
        named = next((n for n, i in bitstream.MODEL_IDS.items() if i == buf[3]), "")
        seed = bitstream.SHIPPED_WEIGHTS_TAGS.get(named, 0)
    body, rest = bytes(buf[:BODY]), bytes(buf[HEADER:])  # rest = colour map (if any) + payload
    buf[BODY:HEADER] = struct.pack("<I", zlib.crc32(rest, zlib.crc32(body, seed)))
    return bytes(buf)


# --------------------------------------------------------------------- seeds
def fuzz_prior(header):
    """A fixed coder prior for the container target's ``"learned"`` files (a model ships the real
    one; the container target has no model): counts leaning toward 0, within the header's limit."""
    import numpy as np

    from labkit import coder

    if header.context not in coder.PRIOR_MODES:
        return None
    a = 1 << header.b
    table = np.ones(coder.prior_shape(header.latent_channels, a), np.uint16)
    table[..., 0] += min(header.limit - a, 60)
    return table


def container_seeds() -> list[bytes]:
    """Valid files for many b / context / coder settings; no torch needed."""
    import numpy as np

    from labkit import bitstream, coder

    rng = np.random.default_rng(0)
    seeds = []
    for b in (1, 2, 3, 5, 8):
        for ctx in coder.CONTEXT_MODES:
            for (c, h, w, k), (inc, limit) in (((16, 32, 32, 3), (8, 1024)), ((4, 13, 21, 2), (1, (1 << b) + 1)),
                                               ((1, 7, 5, 0), (255, 65535))):
                shape = (c, -(-h // (1 << k)), -(-w // (1 << k)))
                x = np.minimum(rng.geometric(0.5, size=shape) - 1, (1 << b) - 1).astype(np.uint8)
                kind = (b + k + len(ctx)) % 3                                      # v2 / v3 / v4
                cmap = (None, rng.integers(0, 256, 12).astype(np.uint8).tobytes(),
                        bytes([0x11]) + rng.integers(0, 256, 48).astype(np.uint8).tobytes())[kind]
                hd = bitstream.Header(model="resae", b=b, height=h, width=w, latent_channels=c,
                                      downsample=1 << k, ymax=3.5, context=ctx, increment=inc, limit=limit,
                                      colour_map=cmap)
                seeds.append(bitstream.pack(hd, coder.encode(x, 1 << b, ctx, increment=inc, limit=limit,
                                                             prior=fuzz_prior(hd))))
    return seeds


def network_seeds() -> list[bytes]:
    """Real files from every shipped model, small images (needs torch and the weights)."""
    import numpy as np

    from labkit.codec import Codec

    rng = np.random.default_rng(1)
    seeds = []
    from labkit import bitstream

    for name in ("ae1", "ae2", "resae", "resae-rd", "resae-rd-fast"):  # resae-rd: version 3 (colour map);
        # resae-rd-fast: the "learned" context with its shipped coder prior
        try:
            codec = Codec.from_pretrained(name, b=2)
        except Exception as err:  # noqa: BLE001 - a missing model just means fewer seeds
            print(f"  (no seed for {name}: {err})", file=sys.stderr)
            continue
        for h, w in ((32, 32), (24, 40)):
            img = (rng.random((h, w, 3)) * 255).astype(np.uint8)
            seeds.append(codec.encode(img))
            if name == "resae-rd":  # the same file with a 2 x 2 grid of colour maps: version 4
                header, payload = bitstream.unpack(seeds[-1])
                grid = bytes([0x11]) + rng.integers(-8, 9, 48).astype(np.int8).tobytes()
                seeds.append(bitstream.pack(dataclasses.replace(header, colour_map=grid, version=2), payload))
    return seeds


# --------------------------------------------------------------------- targets
class Target:
    """One fuzz target: ``check_one(data)`` raises AssertionError on a real finding."""

    def __init__(self, kind: str, max_symbols: int) -> None:
        from labkit import bitstream

        self.kind = kind
        self.max_symbols = max_symbols
        self.bitstream = bitstream
        self.allowed: tuple[type[BaseException], ...] = (bitstream.BitstreamError,)
        # inputs; reached the decoder; decoded; rejected with a clear error; too big to decode here
        self.stats = {"inputs": 0, "to_decoder": 0, "decoded": 0, "rejected": 0, "too_big": 0}
        if kind == "network":
            from labkit import codec

            self.codec = codec
            self.allowed = (bitstream.BitstreamError, codec.CodecError)

    def check_one(self, data: bytes) -> None:
        self.stats["inputs"] += 1
        try:
            header, payload = self.bitstream.unpack(data)
            if self.kind == "container":
                if header.num_symbols > self.max_symbols:
                    self.stats["too_big"] += 1
                    return
                self.stats["to_decoder"] += 1
                sym = self.bitstream.decode_symbols(header, payload, prior=fuzz_prior(header))
                assert sym.shape == header.latent_shape, (sym.shape, header.latent_shape)
                assert sym.dtype.name == "uint8"
                assert sym.size == 0 or int(sym.max()) < (1 << header.b)
            else:
                self.stats["to_decoder"] += 1
                img = self.codec.decode(data)
                assert img.shape == (header.height, header.width, 3), (img.shape, header)
                assert img.dtype.name == "uint8"
            self.stats["decoded"] += 1
        except self.allowed as err:
            assert str(err), "empty error message"
            self.stats["rejected"] += 1


# --------------------------------------------------------------------- random engine
def mutate(data: bytes, rnd: random.Random) -> bytes:
    """1-4 random edits; biased to the header, which is small but decides the most."""
    buf = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        op = rnd.randrange(9)
        n = len(buf)
        if op == 0 and n:                                   # flip a bit
            i = rnd.randrange(n)
            buf[i] ^= 1 << rnd.randrange(8)
        elif op == 1 and n:                                 # set a byte
            buf[rnd.randrange(n)] = rnd.randrange(256)
        elif op == 2 and n:                                 # interesting value in a header field
            off, size = rnd.choice(FIELDS)
            if off + size <= n:
                v = rnd.choice([0, 1, 2, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFF, 0x8000, 0xFFFFFFFF, 0x7F800000,
                                0x7FC00000, 0x00800000, rnd.getrandbits(32)])
                buf[off:off + size] = (v & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
        elif op == 3:                                       # insert bytes
            i = rnd.randrange(n + 1)
            buf[i:i] = rnd.randbytes(rnd.randint(1, 8))
        elif op == 4 and n > HEADER:                        # delete a range of the payload
            i = rnd.randrange(HEADER, n)
            del buf[i:i + rnd.randint(1, 16)]
        elif op == 5 and n:                                 # truncate
            del buf[rnd.randrange(n):]
        elif op == 6 and n > HEADER + 4:                    # copy a chunk elsewhere
            i, j = rnd.randrange(HEADER, n), rnd.randrange(HEADER, n)
            k = rnd.randint(1, 16)
            buf[j:j + k] = buf[i:i + k]
        elif op == 7:                                       # append
            buf += rnd.randbytes(rnd.randint(1, 16))
        elif op == 8 and n > HEADER:                        # zero or 0xFF the payload tail
            i = rnd.randrange(HEADER, n)
            buf[i:] = bytes([rnd.choice((0, 0xFF))]) * (n - i)
    return bytes(buf)


def run_random(target: Target, seeds: list[bytes], seconds: float, runs: int, seed: int,
               hang_seconds: float, report_every: float = 10.0) -> int:
    rnd = random.Random(seed)
    t0 = last = time.perf_counter()
    i = 0
    slowest = 0.0
    for s in seeds:                                         # the seeds themselves must decode
        try:
            target.check_one(s)
        except Exception as err:  # noqa: BLE001
            return _finding(s, err)
    while (runs <= 0 or i < runs) and (seconds <= 0 or time.perf_counter() - t0 < seconds):
        data = fix_crc(mutate(rnd.choice(seeds), rnd), fix_size=rnd.random() < 0.5)
        t = time.perf_counter()
        try:
            target.check_one(data)
        except Exception as err:  # noqa: BLE001 - every other exception is a finding
            return _finding(data, err)
        dt = time.perf_counter() - t
        slowest = max(slowest, dt)
        if dt > hang_seconds:
            return _finding(data, TimeoutError(f"one input took {dt:.2f} s > {hang_seconds} s"))
        i += 1
        now = time.perf_counter()
        if now - last > report_every:
            last = now
            print(f"  {i} inputs, {now - t0:.0f} s, {i / (now - t0):.0f}/s, {target.stats}", flush=True)
    elapsed = time.perf_counter() - t0
    print(f"fuzz {target.kind} (random engine, seed {seed}): {i} inputs with the CRC recomputed in "
          f"{elapsed:.1f} s ({i / max(elapsed, 1e-9):.0f}/s), slowest input {slowest * 1e3:.1f} ms; "
          f"{target.stats}; no finding")
    return 0


def _finding(data: bytes, err: BaseException) -> int:
    CRASHES.mkdir(exist_ok=True)
    path = CRASHES / f"crash-{zlib.crc32(data):08x}.lkc"
    path.write_bytes(data)
    print(f"FINDING: {type(err).__name__}: {err}\n  input saved to {path}", file=sys.stderr)
    import traceback

    traceback.print_exception(err)
    return 1


# --------------------------------------------------------------------- atheris engine
def run_atheris(target: Target, seeds: list[bytes], seconds: float, runs: int,
                hang_seconds: float) -> int:
    import tempfile

    import atheris

    corpus = Path(tempfile.mkdtemp(prefix="lkc-corpus-"))
    for i, s in enumerate(seeds):
        (corpus / f"seed{i:03d}").write_bytes(b"\x01" + s)

    def one_input(data: bytes) -> None:
        # first byte: control (bit 0: also fix the size nibble); the rest: the file
        calls[0] += 1
        if data:
            target.check_one(fix_crc(data[1:], fix_size=bool(data[0] & 1)))
        now = time.perf_counter()
        if now - last[0] > 30:
            last[0] = now
            summary()
        if not final[0] and ((runs > 0 and calls[0] >= runs) or (seconds > 0 and now - t0 >= seconds)):
            final[0] = True  # libFuzzer's own exit skips Python's atexit: print the total here
            summary()

    t0 = time.perf_counter()
    last = [t0]
    calls = [0]
    final = [False]

    def summary() -> None:
        el = time.perf_counter() - t0
        print(f"fuzz {target.kind} (atheris): {target.stats['inputs']} inputs with the CRC recomputed in "
              f"{el:.1f} s ({target.stats['inputs'] / max(el, 1e-9):.0f}/s); {target.stats}", flush=True)

    args = [sys.argv[0], str(corpus), f"-timeout={max(1, int(hang_seconds))}", "-rss_limit_mb=4096",
            "-print_final_stats=1", "-max_len=4096"]
    if seconds > 0:
        args.append(f"-max_total_time={int(seconds)}")
    if runs > 0:
        args.append(f"-runs={runs}")
    def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
        # structure-aware: half the time restart from one of the valid seed files
        # (libFuzzer keeps only seeds that add Python coverage, and the compiled coder
        # is not instrumented), then the random engine's edits or libFuzzer's own
        rnd = random.Random(seed)
        if not data or rnd.random() < 0.5:
            data = bytes([rnd.getrandbits(8)]) + rnd.choice(seeds)
        if rnd.random() < 0.8:
            out = data[:1] + mutate(data[1:], rnd)
        else:
            out = atheris.Mutate(data, max_size)
        return out[:max_size]

    atheris.Setup(args, one_input, custom_mutator=custom_mutator)
    atheris.Fuzz()
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", choices=("container", "network"), default="container")
    ap.add_argument("--engine", choices=("auto", "atheris", "random"), default="auto")
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("FUZZ_SECONDS", 60)))
    ap.add_argument("--runs", type=int, default=0, help="stop after this many inputs (0: no limit)")
    ap.add_argument("--seed", type=int, default=0, help="random engine seed")
    ap.add_argument("--hang-seconds", type=float, default=5.0)
    ap.add_argument("--max-symbols", type=int, default=1 << 16)
    ap.add_argument("--max-pixels", type=int, default=1 << 16)
    args = ap.parse_args(argv)
    os.environ["LABKIT_MAX_PIXELS"] = str(args.max_pixels)
    engine = args.engine
    if engine == "auto":
        try:
            import atheris  # noqa: F401
            engine = "atheris"
        except ImportError:
            engine = "random"
            print("atheris is not installed: using the seeded random mutator", file=sys.stderr)
    if engine == "atheris":
        import atheris

        with atheris.instrument_imports(include=["labkit"]):
            target = Target(args.target, args.max_symbols)
    else:
        target = Target(args.target, args.max_symbols)
    seeds = container_seeds() if args.target == "container" else network_seeds()
    if not seeds:
        print("no seeds (are the weights there?)", file=sys.stderr)
        return 2
    print(f"fuzz {args.target}: {len(seeds)} seed files, engine {engine}, "
          f"{'%g s' % args.seconds if args.seconds > 0 else ''} {'%d runs' % args.runs if args.runs > 0 else ''}",
          flush=True)
    if engine == "atheris":
        return run_atheris(target, seeds, args.seconds, args.runs, args.hang_seconds)
    return run_random(target, seeds, args.seconds, args.runs, args.seed, args.hang_seconds)


if __name__ == "__main__":
    raise SystemExit(main())
