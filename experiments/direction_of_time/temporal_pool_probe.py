"""Does the TCL need a finer map to learn the direction of time? The probe behind `temporal_pool=1`.

    python experiments/direction_of_time/temporal_pool_probe.py POOL EPOCHS [INIT_CHECKPOINT]

Temporal path only, two classes (`sit_down` vs `stand_up`, all 180 + 180 training videos of
data/synth/train), the temporal branch pooled POOL x POOL before the T-P operator (3: the 2x2 map of the
original `small` preset; 1: the 6x6 map). The lower SCL, the temporal branch conv and P are copied from
INIT_CHECKPOINT (the shipped synth-r2 weights, runs/default-r2/best.pt); the TCL, FCs and classifier start
fresh. AdamW lr 1e-3, weight decay 1e-4, batch 32, the training augmentation of `fstcn train`. After every
epoch: accuracy on the 80 test videos of the two classes (data/synth/test), centre crop, mean of 5 clips.
The second session's run of this probe (15 epochs each, POOL 3 then 1) gave 84-92% vs 95-100% in the last
four epochs (docs/model.md, model/presets.py).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
from per_class import predicted_class  # the sibling script (this folder is on sys.path when run)
from torch import nn
from torch.utils.data import DataLoader

from fstcn.core.presets import get_config
from fstcn.model.augment import AugmentConfig
from fstcn.model.checkpoint import load_checkpoint
from fstcn.model.frame_cache import CachedVideo, build_frame_cache
from fstcn.model.network import FstCN
from fstcn.model.train import TrainingSamples, make_meta

CLASSES = ["sit_down", "stand_up"]
COPIED = ("lower.", "temporal.branch", "temporal.tp")


def _videos(root: str) -> tuple[list[CachedVideo], list[int]]:
    paths, labels = [], []
    for label, name in enumerate(CLASSES):
        for path in sorted(Path(root, name).iterdir()):
            paths.append(path)
            labels.append(label)
    entries, _ = build_frame_cache(paths, "data/cache", resize_short=128, workers=2)
    kept = [(entry, label) for entry, label in zip(entries, labels, strict=True) if entry is not None]
    return [entry for entry, _ in kept], [label for _, label in kept]


def main() -> None:
    pool, epochs = int(sys.argv[1]), int(sys.argv[2])
    init = sys.argv[3] if len(sys.argv) > 3 else None
    torch.set_num_threads(2)
    train_videos, train_labels = _videos("data/synth/train")
    test_videos, test_labels = _videos("data/synth/test")
    config = get_config("small", paths="temporal", temporal_pool=pool)
    torch.manual_seed(0)
    model = FstCN(config, len(CLASSES))
    if init is not None:
        own = model.state_dict()
        state = {
            name: tensor.float()
            for name, tensor in load_checkpoint(init)["state_dict"].items()
            if name.startswith(COPIED) and name in own and own[name].shape == tensor.shape
        }
        model.load_state_dict(state, strict=False)
    meta = make_meta(config, "small", CLASSES)
    samples = TrainingSamples(train_videos, train_labels, meta, AugmentConfig(), "pair", seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss()
    started = time.monotonic()
    for epoch in range(epochs):
        samples.set_epoch(epoch)
        model.train()
        seen = correct = 0
        for appearance, motion, labels in DataLoader(samples, batch_size=32, shuffle=True, num_workers=1):
            logits = model(appearance, motion)  # (B, 2)
            loss = loss_fn(logits, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seen += len(labels)
            correct += int((logits.argmax(1) == labels).sum())
        model.eval()
        hits = [
            predicted_class(model, meta, video) == label
            for video, label in zip(test_videos, test_labels, strict=True)
        ]
        print(  # noqa: T201
            f"pool={pool} epoch {epoch + 1}: train accuracy {correct / seen:.3f}, "
            f"test accuracy {np.mean(hits):.3f} ({time.monotonic() - started:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
