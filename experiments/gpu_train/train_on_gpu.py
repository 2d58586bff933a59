"""A fine-tune of the shipped model on a lent GPU machine, start to end in one command: generate the
Synthetic Actions training folders there (the card's train split, seeds 3 and 4 as in train-plus, and two
more seeds), join them into one UCF101-layout view, fine-tune with `train` on CUDA, and write
the run's best.pt and last.pt without optimiser state (what a lent machine may send back) and its
log.jsonl to OUT_DIR.

The GPU machine has torch with CUDA but not this project's extras, so it needs only PyAV and Pillow on
PYTHONPATH and calls the library instead of the `fstcn` CLI (typer is not there):

    # r27: 14 epochs from synth-r5 (runs/r25-shared/best.pt)
    PYTHONPATH=$PWD:/tmp/site python3 experiments/gpu_train/train_on_gpu.py runs/r25-shared/best.pt $OUT \
        --work /tmp/gpu-train --minutes 5 --epochs 14
    # r28: from r27's last epoch, 50 epochs at 2e-4 (3.4 minutes stopped it after 47), validated on 5 clips
    PYTHONPATH=$PWD:/tmp/site python3 experiments/gpu_train/train_on_gpu.py /tmp/gpu-train/run/last.pt $OUT \
        --work /tmp/gpu-train --run run2 --minutes 3.4 --epochs 50 --lr 2e-4 --seed 28 --val-clips 5

Run on the CPU with `--device cpu --videos-per-class 2 --steps 2` to check the script itself.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
from pathlib import Path

logger = logging.getLogger("train_on_gpu")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "direction_of_time"))

# (folder, seed, videos per class): the card's train split, then train-plus's two extra seeds, then two more
FOLDERS = (("train", 1, 180), ("train-extra", 3, 60), ("train-extra2", 4, 60), ("train-extra3", 5, 60),
           ("train-extra4", 6, 60))  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("init", type=Path, help="checkpoint to start from")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--work", type=Path, default=Path("/tmp/gpu-train"))
    parser.add_argument("--run", default="run", help="run folder under --work")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--minutes", type=float, default=6.0, help="training budget (--max-minutes)")
    parser.add_argument("--epochs", type=int, default=24)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=27)
    parser.add_argument("--val-clips", type=int, default=2)
    parser.add_argument("--workers", type=int, default=12)
    parser.add_argument("--videos-per-class", type=int, default=None, help="override (script checks)")
    parser.add_argument("--steps", type=int, default=None, help="stop after this many steps (checks)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    import torch
    import train_plus

    from fstcn.model.synth.dataset import generate_dataset
    from fstcn.model.train import TrainConfig, train

    started = time.monotonic()
    data = args.work / "synth"
    for folder, seed, per_class in FOLDERS:
        if not (data / folder / "ucfTrainTestlist" / "trainlist01.txt").is_file():
            count = args.videos_per_class or per_class
            generate_dataset(data / folder, videos_per_class=count, seed=seed, workers=args.workers + 2)
        logger.info("%s: ready at %.0f s", folder, time.monotonic() - started)
    plus = data / "train-plus2"
    if not plus.is_dir():
        train_plus.main(plus, [data / folder for folder, _, _ in FOLDERS])

    run = args.work / args.run
    config = TrainConfig(
        data=str(plus),
        out=str(run),
        preset="small",
        epochs_stage1=0,
        epochs_stage2=args.epochs,
        batch_size=32,
        lr=args.lr,
        weight_decay=1e-4,
        label_smoothing=0.0,
        warmup_epochs=0.5,
        seed=args.seed,
        val_clips=args.val_clips,
        init_from=(str(args.init),),
        reverse_pairs=("sit_down:stand_up",),
        device=args.device,
        threads=4,
        workers=args.workers,
        decode_workers=args.workers + 2,
        cache_dir=str(args.work / "cache"),
        max_minutes=args.minutes,
        stop_after_steps=args.steps,
        progress=False,
    )
    result = train(config)
    logger.info("trained at %.0f s: %s", time.monotonic() - started, result)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("best.pt", "last.pt"):
        if (run / name).is_file():
            checkpoint = torch.load(run / name, map_location="cpu", weights_only=False)
            checkpoint["optimizer"] = None  # 3x the weights' size; not needed to export or fine-tune
            torch.save(checkpoint, args.out_dir / name)
    shutil.copy(run / "log.jsonl", args.out_dir / "log.jsonl")
    return 0


if __name__ == "__main__":
    sys.exit(main())
