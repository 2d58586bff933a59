"""Refine a border calibration on the decision (`fstcn.model.export.refine`) and follow the shared
trunk's top-1 agreement with exact 18 crops (SCI, 5 clip pairs) and its per-crop KL on a selection folder
after each epoch, for both cuts. The windows of both folders are cached under OUT (several GB).

    git show 12562e1:models/fstcn-small.border.npz > /tmp/least-squares.border.npz   # the fifth session's
    python experiments/agreement/border_refine.py models/fstcn-small.pt models/fstcn-small.onnx \
        data/synth/train 500 data/synth/select-s7 runs/border-refine --epochs 8 \
        --start /tmp/least-squares.border.npz
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fstcn.core.frames_graph import SHARE_DEPTHS
from fstcn.core.fusion import fuse_scores
from fstcn.core.meta import ModelMeta
from fstcn.core.runtime import CPU, OnnxModel
from fstcn.model.checkpoint import build_model_from_checkpoint
from fstcn.model.export.calibration import BorderCalibration, WindowCalibration, calibration_path
from fstcn.model.export.calibration_fit import training_videos
from fstcn.model.export.plain import fold_batchnorm
from fstcn.model.export.refine import (
    CalibratedUpper,
    RefineOptions,
    WindowSet,
    collect_windows,
    decision_kl,
    refine_calibration,
    shared_probs,
)
from fstcn.model.network import FstCN

logger = logging.getLogger("border_refine")


def cached_windows(
    network: FstCN, meta: ModelMeta, folder: Path, limit: int, plain: Path, cache: Path
) -> WindowSet:
    if cache.is_file():
        loaded: WindowSet = torch.load(cache, weights_only=False)
        return loaded
    exact = OnnxModel.load(plain, providers=[CPU])
    started = time.monotonic()
    data = collect_windows(
        network,
        meta,
        training_videos(folder, limit),
        exact,
        progress=lambda done, total: (
            logger.info("%s: %d/%d", folder, done, total) if done % 100 == 0 else None
        ),
    )
    logger.info("%s: %d videos in %.0f s", folder, data.num_videos, time.monotonic() - started)
    torch.save(data, cache)
    return data


def video_agreement(shared: Tensor, exact: Tensor) -> float:
    """Share of videos whose SCI-fused top-1 is the same: probabilities (V, M, K, N) each."""

    def top1(probs: Tensor) -> int:  # (M, K, N) -> the fused video's best class
        return int(np.argmax(fuse_scores(probs.numpy()).video_scores))

    return float(np.mean([top1(s) == top1(e) for s, e in zip(shared, exact.double(), strict=True)]))


def scores(upper: CalibratedUpper, select: WindowSet) -> dict[str, float]:
    return {
        "select_agreement": video_agreement(shared_probs(upper, select), select.exact),
        "select_kl": decision_kl(upper, select),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("model", type=Path, help="the plain ONNX model (scores the exact crops)")
    parser.add_argument("train", type=Path)
    parser.add_argument("train_videos", type=int)
    parser.add_argument("select", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--batch-clips", type=int, default=8)
    parser.add_argument(
        "--start", type=Path, help="calibration to start from (default: the model's .border.npz)"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    network, meta = build_model_from_checkpoint(args.checkpoint)
    network = fold_batchnorm(network)
    select = cached_windows(network, meta, args.select, 100_000, args.model, args.out / "select.pt")
    train = cached_windows(network, meta, args.train, args.train_videos, args.model, args.out / "train.pt")
    base = BorderCalibration.load(args.start or calibration_path(args.model))
    report: dict[str, Any] = {
        "train_videos": train.num_videos,
        "select_videos": select.num_videos,
        **vars(args),
    }
    refined = {}
    for share in SHARE_DEPTHS:
        fitted = base.cuts[share]
        identity = WindowCalibration(
            share=share,
            scale={p: v * 0 + 1 for p, v in fitted.scale.items()},
            shift={p: v * 0 for p, v in fitted.shift.items()},
            mse_before=fitted.mse_before,
            mse_after=fitted.mse_before,
        )
        for name, cut in (("uncalibrated", identity), ("least_squares", fitted)):
            report[f"{share}/{name}"] = scores(CalibratedUpper(network, cut), select)
            logger.info("%s %s: %s", share, name, report[f"{share}/{name}"])
        history: list[dict[str, float]] = []

        def on_epoch(
            epoch: int, loss: float, upper: CalibratedUpper, into: list[dict[str, float]] = history
        ) -> None:
            into.append({"epoch": epoch, "train_kl": loss, **scores(upper, select)})
            logger.info("%s epoch %d: %s", upper.share, epoch, into[-1])

        started = time.monotonic()
        refined[share] = refine_calibration(
            network,
            fitted,
            train,
            RefineOptions(epochs=args.epochs, lr=args.lr, batch_clips=args.batch_clips),
            on_epoch=on_epoch,
        )
        report[f"{share}/refined"] = history
        report[f"{share}/seconds"] = time.monotonic() - started
    out = BorderCalibration(
        cuts=refined, videos=train.num_videos, data=str(args.train), refine_epochs=args.epochs
    )
    out.save(args.out / "refined.border.npz")
    (args.out / "report.json").write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    main()
