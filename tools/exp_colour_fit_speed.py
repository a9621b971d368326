"""The colour-map fit of another revision against this one: same codes? how much faster?

    python tools/exp_colour_fit_speed.py [--old-rev c61fc55] [--out FILE.json]

Loads ``labkit/colour.py`` as it was at ``--old-rev`` (``git show``) beside today's, makes the
reconstructions the encoder fits its maps to (``resae-rd-fast`` with the maps off, b = 1..5) for
the 31 default test tiles and five full-size photos, and checks that both modules give the same
code for every candidate grid and the same :func:`labkit.colour.choose` result.  Then times
``choose`` (best of 7, old and new interleaved, one BLAS thread) on a tile and two photos at b = 2.
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy: one BLAS thread, as the codec bench

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from labkit import colour as new, photos  # noqa: E402
from labkit.codec import Codec  # noqa: E402
from labkit.data import default_dataset  # noqa: E402
from labkit.spec import colour_map_rate_weight  # noqa: E402
from labkit.speed import cpu_name  # noqa: E402
from labkit.workflow import jsonable  # noqa: E402


def _module_at(rev: str):
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:labkit/colour.py"], check=True,
                         capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "colour_old.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("colour_old", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--old-rev", default="c61fc55", help="the revision to compare with (before the speed-up)")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    old = _module_at(args.old_rev)
    images = {f"tile{i}": t for i, t in enumerate(default_dataset("test"))}
    images.update({name: photos.photo(name) for name in [*photos.COLOUR_PHOTOS, "rocket.jpg"]})
    recons: dict[tuple[str, int], object] = {}
    checks = differ = 0
    for b in (1, 2, 3, 4, 5):
        codec = Codec.from_pretrained("resae-rd-fast", b=b, colour_map=False)
        for name, img in images.items():
            rec = codec.decode(codec.encode(img))
            recons[name, b] = rec
            s_old, s_new = old._Summary(rec, img), new._Summary(rec, img)
            for shape in new._candidate_grids(*img.shape[:2]):
                if shape != (1, 1):
                    checks += 1
                    differ += s_old.fit(shape) != s_new.fit(shape)
            checks += 1
            w = colour_map_rate_weight(b)
            differ += old.choose(rec, img, w) != new.choose(rec, img, w)
    timing = {}
    for name in ("tile3", "coffee.png", "astronaut.png"):
        img, rec, w = images[name], recons[name, 2], colour_map_rate_weight(2)
        best = {"old": float("inf"), "new": float("inf")}
        for _ in range(7):
            for key, mod in (("old", old), ("new", new)):
                t0 = time.perf_counter()
                mod.choose(rec, img, w)
                best[key] = min(best[key], time.perf_counter() - t0)
        timing[name] = {"size": list(img.shape[:2]), "old_ms": best["old"] * 1e3, "new_ms": best["new"] * 1e3,
                        "speedup": best["old"] / best["new"]}
    result = {"cpu": cpu_name(), "old_rev": args.old_rev, "checks": checks, "codes_that_differ": differ,
              "choose_b2": timing}
    print(f"CPU: {result['cpu']}; {checks} codes compared with {args.old_rev}: {differ} differ")
    for name, t in timing.items():
        print(f"  {name} {t['size'][1]}x{t['size'][0]}: choose {t['old_ms']:.1f} -> {t['new_ms']:.1f} ms "
              f"({t['speedup']:.2f}x)")
    if args.out:
        Path(args.out).write_text(json.dumps(jsonable(result), indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0 if differ == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
