"""Fine-tune a checkpoint so that the shared trunk decides like exact 18 crops (issue 5's agreement).

The shared trunk's windows see the frame around each crop where training always saw zero padding; that
is where its remaining disagreement with exact crops comes from (bench/RESULTS.md, "Agreement"). Here
each step scores one clip pair, at a random time of each of `--batch` training videos, twice with the
same weights: as 18 exact crops (`fstcn.core.clips.network_inputs`, what the plain graph serves) and as the
shared trunk's 18 windows (`fstcn.model.export.shared.SharedTrunkGraph`, the differentiable twin of the
exported trunk graph). The loss is the cross-entropy of both plus KL(exact || shared) between the
crop-averaged class probabilities (the clip scores the service fuses), so the model learns to give the
same answer with and without the crop-border context. BatchNorm statistics and dropout are frozen (eval mode).

    python experiments/agreement/finetune_shared.py runs/r23-plus/best.pt runs/r25-shared/best.pt \
        --data data/synth/train-plus --cache-dir data/cache --minutes 10

Frames come from `fstcn train`'s frame cache (`--cache-dir`, decoded on first use).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fstcn.core.clips import gather_clip_pairs, network_inputs
from fstcn.core.frames_graph import (
    APPEARANCE_INDEX_INPUT,
    CLIP_INDEX_INPUT,
    CROP_INDEX_INPUT,
    DIFF_INDEX_INPUT,
    FRAMES_INPUT,
    VIEWS_INPUT,
    frame_feeds,
)
from fstcn.model.augment import single_clip_plan
from fstcn.model.checkpoint import build_model_from_checkpoint, load_checkpoint, save_checkpoint
from fstcn.model.datasets import load_dataset
from fstcn.model.export.shared import SharedTrunkGraph, graph_info
from fstcn.model.frame_cache import build_frame_cache

logger = logging.getLogger("finetune_shared")
CROPS = 18
# SharedTrunkGraph.forward's arguments, in order
SHARED_INPUTS = (
    FRAMES_INPUT,
    APPEARANCE_INDEX_INPUT,
    CLIP_INDEX_INPUT,
    DIFF_INDEX_INPUT,
    CROP_INDEX_INPUT,
    VIEWS_INPUT,
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--cache-dir", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=2, help="videos per step")
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--consistency", type=float, default=1.0, help="weight of KL(exact || shared)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    checkpoint = load_checkpoint(args.checkpoint)
    network, meta = build_model_from_checkpoint(checkpoint)
    network.eval()  # frozen BatchNorm statistics and no dropout: both passes compute the served function
    shared = SharedTrunkGraph(network, meta, share="lower")
    info = graph_info(network, "shared")
    dataset = load_dataset("auto", args.data, 1, "train")
    entries, _ = build_frame_cache(
        [sample.path for sample in dataset.samples], args.cache_dir, resize_short=meta.resize_short
    )
    videos = [
        (entry, sample.label_index) for entry, sample in zip(entries, dataset.samples, strict=True) if entry
    ]
    optimizer = torch.optim.AdamW(network.parameters(), lr=args.lr, weight_decay=0.0)
    span = meta.sampling.span_s
    started, steps = time.monotonic(), 0
    totals = np.zeros(4)  # exact CE, shared CE, KL, agreement of the crop-averaged argmax
    while time.monotonic() - started < 60.0 * args.minutes:
        loss = torch.zeros(())
        for index in rng.choice(len(videos), size=args.batch, replace=False):
            entry, label = videos[int(index)]
            frames, times = entry.frames(), entry.times
            plan = single_clip_plan(float(rng.uniform(0.0, max(0.0, entry.duration_s - span))), meta)
            appearance, motion = gather_clip_pairs(frames, times, plan)
            app, mot = network_inputs(appearance, motion, meta, CROPS)  # (18, 3, c, c), (18, T, 3, c, c)
            exact_logits = network(torch.from_numpy(app), torch.from_numpy(mot))  # (18, N)
            feeds = frame_feeds(np.array(frames), times, plan, info, CROPS)  # a writable copy for torch
            shared_probs = shared(*(torch.from_numpy(feeds[name]) for name in SHARED_INPUTS))  # (18, N)
            target = torch.full((CROPS,), label, dtype=torch.long)
            exact_ce = F.cross_entropy(exact_logits, target)
            shared_ce = F.nll_loss(torch.log(shared_probs.clamp_min(1e-8)), target)
            exact_mean = torch.softmax(exact_logits, dim=1).mean(0)  # the clip's crop-averaged scores
            shared_mean = shared_probs.mean(0)
            kl = torch.sum(exact_mean * (torch.log(exact_mean + 1e-8) - torch.log(shared_mean + 1e-8)))
            loss = loss + (exact_ce + shared_ce + args.consistency * kl) / args.batch
            same = float(exact_mean.argmax() == shared_mean.argmax())
            totals += np.array([exact_ce.item(), shared_ce.item(), kl.item(), same]) / args.batch
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        steps += 1
        if steps % 25 == 0:
            means = totals / 25
            logger.info(
                "step %d: exact CE %.3f, shared CE %.3f, KL %.4f, same argmax %.2f", steps, *means.tolist()
            )
            totals[:] = 0
    save_checkpoint(
        args.out,
        model=network,
        config=network.config,
        labels=list(meta.labels),
        sampling=meta.sampling,
        epoch=int(checkpoint.get("epoch", 0)),
        extra={"finetune_shared": {"from": str(args.checkpoint), "steps": steps, **vars(args)}},
    )
    logger.info("%d steps in %.0f s; wrote %s", steps, time.monotonic() - started, args.out)


if __name__ == "__main__":
    main()
