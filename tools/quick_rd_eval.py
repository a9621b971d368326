"""Quick RD check of checkpoints against WebP (real bytes, q=0..100) on a test split.

    python tools/quick_rd_eval.py DATA_DIR_OR_- CHECKPOINT[:SCALE_RULE] ...

Per checkpoint: mean bpp (payload + 22-byte header), PSNR, SSIM at b=1..5 with the given
scale rule (default p99.9) and its BD-rates against WebP on PSNR and SSIM (b=2..5).  Used
to pick lambda and the scale rule of resae-rd (NOTES.md); bench_rd.py is the full report.
"""
import io, sys, json
import numpy as np, torch
from PIL import Image
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent))
from labkit import quant, coder
from labkit.train import load_checkpoint
from labkit.metrics import psnr, ssim
from labkit.data import get_splits
from labkit.rd import bd_rate

data_dir = None if sys.argv[1] == "-" else sys.argv[1]
runs = sys.argv[2:]
test = get_splits(data_dir, 0)["test"]
torch.set_num_threads(1)
def webp_curve(q_list=range(0, 101, 5)):
    out = []
    for q in list(q_list):
        bpps, ps, ss = [], [], []
        for im in test:
            buf = io.BytesIO(); Image.fromarray(im).save(buf, "WEBP", quality=q, method=6); n = buf.tell()
            rec = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
            bpps.append(n * 8 / (im.shape[0] * im.shape[1])); ps.append(psnr(im, rec)); ss.append(ssim(im, rec))
        out.append((np.mean(bpps), np.mean(ps), np.mean(ss)))
    return np.array(out)
def model_curve(path, scale, bits=(1, 2, 3, 4, 5)):
    m, cfg = load_checkpoint(path); m.eval()
    x = torch.from_numpy(test).permute(0, 3, 1, 2).float() / 255
    out = []
    with torch.no_grad():
        y = m.encode(x)
        s = quant.latent_scale(y, scale)
        for b in bits:
            q = quant.quantize(y, s, b)
            rec = m.decode(quant.dequantize(q, s, b)).clamp(0, 1).mul(255).round().byte().permute(0, 2, 3, 1).numpy()
            nbytes = [22 + len(coder.encode(q[i].numpy(), 2 ** b, "neighbor")) for i in range(len(test))]
            out.append((np.mean([n * 8 / (128 * 128) for n in nbytes]), np.mean([psnr(a, r) for a, r in zip(test, rec)]),
                        np.mean([ssim(a, r) for a, r in zip(test, rec)])))
    return np.array(out)
w = webp_curve()
print("webp", np.round(w, 3).tolist())
for spec in runs:
    path, scale = spec.split(":") if ":" in spec else (spec, "p99.9")
    c = model_curve(path, scale)
    row = {"run": spec, "curve": np.round(c, 3).tolist()}
    for i, name in ((1, "psnr"), (2, "ssim")):
        try:
            row[f"bd_{name}_vs_webp"] = round(bd_rate(w[:, 0], w[:, i], c[1:, 0], c[1:, i]), 1)
        except Exception as e:
            row[f"bd_{name}_vs_webp"] = str(e)[:80]
    print(json.dumps(row))
