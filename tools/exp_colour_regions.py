"""How much a grid of colour maps (one per region) would add over the one global map (issue 9's dE target).

    python tools/exp_colour_regions.py

For resae-rd at b = 2 and 3 on scikit-image's astronaut and coffee (the two photos whose mean
CIE76 dE stays above 6), the plain chain's reconstruction is corrected by labkit.colour maps
fitted per block of a g x g grid (g = 1, 2, 4, 8; no blending across block edges, so this is
an upper bound for the quality, without the seams' cost), with each grid's side-information
cost in bpp (12 bytes per block).  A measurement for the next step, not a codec feature.
"""
import sys, numpy as np, torch
sys.path.insert(0, "/work/main"); torch.set_num_threads(1)
from labkit.photos import photo, delta_e76
from labkit.codec import Codec
from labkit import metrics, colour
def fit_apply(r, x):
    return colour.apply(r, colour.fit(r, x))
def blocks(r, x, g):
    out = np.empty_like(r); H, W = r.shape[:2]
    for i in range(g):
        for j in range(g):
            sl = (slice(i*H//g, (i+1)*H//g), slice(j*W//g, (j+1)*W//g))
            out[sl] = fit_apply(np.ascontiguousarray(r[sl]), np.ascontiguousarray(x[sl]))
    return out
for b in (2, 3):
    c = Codec.from_pretrained("resae-rd", b=b, colour_map=False)
    for p in ["astronaut.png", "coffee.png"]:
        x = photo(p); res = c.compress(x); r = res.recon
        row = [f"plain dE {delta_e76(x, r):.2f} {metrics.psnr(x, r):.2f}dB"]
        for g in (1, 2, 4, 8):
            o = blocks(r, x, g)
            row.append(f"{g}x{g}: dE {delta_e76(x, o):.2f} {metrics.psnr(x, o):.2f}dB (+{g*g*12*8/(x.shape[0]*x.shape[1]):.4f} bpp)")
        print(b, p, f"{res.bpp:.3f} bpp |", " | ".join(row), flush=True)
