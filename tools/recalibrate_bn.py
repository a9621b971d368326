"""Re-estimate a checkpoint's BatchNorm statistics for the codec's bins (``labkit.finetune.recalibrate_bn``).

    python tools/recalibrate_bn.py RUN_DIR OUT_DIR [--part decoder] [--batches 200] [--batch 16]
        [--rules search] [--crop N] [--train-config RUN] [--data-dir DIR]

A GPU fine-tune in train mode leaves the statistics of its last batches, each at one b; until
now a CPU decoder fit (36 minutes, ``tools/fit_decoder.py``) undid that.  This averages them over
the codec's hard bins at every b instead, in seconds, and changes no weight.  With ``--part
decoder`` (the default) the encoder's symbols do not change, so RUN_DIR's coder prior is copied.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from labkit import checkpoint, coder_prior  # noqa: E402
from labkit.data import training_splits  # noqa: E402
from labkit.finetune import recalibrate_bn, scale_rules  # noqa: E402
from labkit.trainconfig import TrainConfig  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir")
    p.add_argument("out_dir")
    p.add_argument("--part", choices=("decoder", "all"), default="decoder")
    p.add_argument("--batches", type=int, default=200)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--rules", default="search")
    p.add_argument("--crop", type=int, default=None,
                   help="side of the crops (a multiple of 8; default: the run's training crop)")
    p.add_argument("--train-config", help="run folder whose config.json 'train' section gives the TrainConfig")
    p.add_argument("--data-dir", help="course-layout folder (default: the embedded pool)")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    model, meta = checkpoint.load(a.run_dir, coder_prior=False)
    train = meta.get("train") or json.loads((Path(a.train_config) / "config.json").read_text())["train"]
    cfg = TrainConfig.from_dict({**train, "model": meta["model"], "model_cfg": meta.get("model_cfg", {}), "device": "cpu"})
    images = torch.from_numpy(training_splits(a.data_dir, cfg.seed)["train"]).permute(0, 3, 1, 2).contiguous()
    n = recalibrate_bn(model, images, cfg, batches=a.batches, batch=a.batch, rules=scale_rules(a.rules),
                       part=a.part, seed=cfg.seed, crop=a.crop)
    extra = checkpoint.run_facts(meta, "coder_prior")
    extra["bn_recalibration"] = {"from": str(a.run_dir), "part": a.part, "batches": a.batches, "batch": a.batch,
                                 "crop": a.crop or cfg.crop, "rules": a.rules, "layers": n,
                                 "command": "python tools/recalibrate_bn.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    out = Path(a.out_dir)
    if a.part == "decoder" and isinstance(meta.get("coder_prior"), dict):
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(a.run_dir) / coder_prior.FILE_NAME, out / coder_prior.FILE_NAME)
        extra["coder_prior"] = meta["coder_prior"]
    checkpoint.save(model, out, cfg.to_dict(), extra)
    print(f"re-estimated {n} BatchNorm layers ({a.part}) over {a.batches} batches of {a.batch} -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
