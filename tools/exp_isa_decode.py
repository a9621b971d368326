"""How far a decoded image moves on a CPU with other vector instructions (same file, same wheels).

The arithmetic coder is integer-only, so every CPU gets the same symbols back from a file; the
decoder network is float, so the pixels drawn from them may round differently.  This encodes
test images once, then decodes each file in fresh processes with oneDNN limited to older
instruction sets (``ONEDNN_MAX_CPU_ISA``, as on an older x86 CPU) and compares the pixels and
the symbols with the native decode.

    python tools/exp_isa_decode.py --out benchmarks/results/experiments/isa_decode.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ISAS = ("native", "AVX2", "AVX", "SSE41")

_DECODE = r"""
import sys, numpy as np
from labkit import bitstream
from labkit.codec import Codec
data = open(sys.argv[1], "rb").read()
h = bitstream.unpack(data, verify=False)[0]
codec = Codec.from_pretrained(h.model, b=h.b)
header, payload = codec._unpack(data)
symbols, recon = codec._decode_with_symbols(header, payload)
np.savez(sys.argv[2], symbols=symbols, recon=recon)
"""


def _decode_in_process(lkc: Path, out: Path, isa: str) -> dict[str, np.ndarray]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("ONEDNN_MAX_CPU_ISA", None)
    if isa != "native":
        env["ONEDNN_MAX_CPU_ISA"] = isa
    subprocess.run([sys.executable, "-c", _DECODE, str(lkc), str(out)], check=True, env=env)
    with np.load(out) as z:
        return {"symbols": z["symbols"], "recon": z["recon"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="JSON file for the results")
    ap.add_argument("--b", type=int, nargs="+", default=[2, 4])
    args = ap.parse_args()

    from labkit import photos
    from labkit.codec import Codec
    from labkit.speed import cpu_name

    images = {"tile 128x128 (coffee crop)": photos.photo("coffee.png")[:128, :128],
              "coffee 600x400": photos.photo("coffee.png"),
              "astronaut 512x512": photos.photo("astronaut.png")}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for b in args.b:
            codec = Codec.from_pretrained("resae-rd-fast", b=b)
            for name, img in images.items():
                lkc = Path(tmp) / "f.lkc"
                lkc.write_bytes(codec.encode(img))
                ref = _decode_in_process(lkc, Path(tmp) / "native.npz", "native")
                for isa in ISAS[1:]:
                    got = _decode_in_process(lkc, Path(tmp) / f"{isa}.npz", isa)
                    diff = np.abs(got["recon"].astype(int) - ref["recon"].astype(int))
                    row = dict(image=name, b=b, isa=isa, symbols_equal=bool(np.array_equal(got["symbols"], ref["symbols"])),
                               max_level_diff=int(diff.max()), values_differing=int((diff > 0).sum()),
                               values=int(diff.size), share_differing=float((diff > 0).mean()))
                    rows.append(row)
                    print(f"b={b} {name:28s} {isa:6s} symbols equal {row['symbols_equal']}  max |diff| "
                          f"{row['max_level_diff']}  {row['values_differing']:,} of {row['values']:,} values differ")
    result = {"command": "python tools/exp_isa_decode.py" + (f" --out {args.out}" if args.out else ""),
              "cpu": cpu_name(), "model": "resae-rd-fast", "rows": rows}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
