"""Experiment (negative result, see NOTES.md): fine-tune the shipped ResAE on the CPU with a
sparsity rate proxy  loss = MSE + 0.05*(1-SSIM) + lambda * mean(y / ymax)  at b=3 with noise.

    python tools/exp_rate_proxy.py 0.02 runs/rate/lam002/resae 840   # lambda, output, seconds
    python tools/exp_rate_proxy.py 0.0  runs/rate/lam0/resae   840   # control: same fine-tune, no proxy
    ln -s $PWD/labkit/weights/ae2 runs/rate/lam002/ae2               # bench_rd wants ae2 beside it
    python benchmarks/bench_rd.py --weights-dir runs/rate/lam002 --out benchmarks/results/experiments/rate_proxy_lambda0.02.json
"""
import sys, time, torch
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
torch.set_num_threads(1)
from labkit.codec import load_pretrained
from labkit.data import training_splits, TileDataset
from labkit import quant
from labkit.train import ssim, save_checkpoint, TrainConfig
import torch.nn.functional as F
lam, out, budget = float(sys.argv[1]), sys.argv[2], float(sys.argv[3])
torch.manual_seed(0)
model, meta = load_pretrained("resae")
model.train()
ds = TileDataset(training_splits(None, 0)["train"], crop=128, augment=True)
dl = torch.utils.data.DataLoader(ds, batch_size=16, shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(0))
opt = torch.optim.AdamW(model.parameters(), lr=2e-4, weight_decay=1e-4)
t0 = time.time(); step = 0; log = []
while time.time() - t0 < budget:
    for x in dl:
        y = model.encode(x)
        ymax = quant.latent_max(y).detach().view(-1, 1, 1, 1)
        y_t = quant.add_noise(y, 3)
        x_hat = model.decode(y_t)
        d = F.mse_loss(x_hat, x) + 0.05 * (1 - ssim(x_hat, x))
        r = (y / ymax).mean()
        loss = d + lam * r
        opt.zero_grad(); loss.backward(); opt.step(); step += 1
        if step % 20 == 0:
            log.append((step, float(d), float(r))); print(step, round(float(d), 5), round(float(r), 4), flush=True)
        if time.time() - t0 > budget:
            break
model.eval()
cfg = TrainConfig.from_dict(meta["train"])
save_checkpoint(model, out, cfg, {"experiment": f"finetune lambda={lam}", "steps": step, "log": log})
print("done", step)
