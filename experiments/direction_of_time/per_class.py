"""Quick per-class check of a training checkpoint on the Synthetic Actions test split.

    python experiments/direction_of_time/per_class.py CHECKPOINT CLASS[,CLASS...] [VIDEOS_PER_CLASS]

For each class: the first VIDEOS_PER_CLASS test videos (sorted names, default 20) from
data/synth/test/CLASS, the serving inputs at one centre crop (5 evenly spread clip pairs, softmax averaged
over the clips), and the count of each predicted label. Cheaper than `fstcn evaluate` (one crop, no SCI),
for watching a run while it trains; the model card's headline figures come from `fstcn evaluate`.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import torch

from fstcn.core.meta import ModelMeta
from fstcn.model.augment import validation_pairs
from fstcn.model.checkpoint import build_model_from_checkpoint
from fstcn.model.frame_cache import CachedVideo, build_frame_cache

TEST_ROOT = Path("data/synth/test")
CACHE_DIR = "data/cache"


def predicted_class(model: torch.nn.Module, meta: ModelMeta, video: CachedVideo) -> int:
    """The class index a model in eval mode gives `video`: centre crop, softmax averaged over 5 clips."""
    appearance, motion = validation_pairs(video.frames(), video.times, meta, num_clips=5)
    with torch.inference_mode():
        return int(model(appearance, motion).softmax(dim=1).mean(dim=0).argmax())  # (M, N) -> (N,) -> ()


def main() -> None:
    checkpoint, classes = sys.argv[1], sys.argv[2].split(",")
    limit = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    torch.set_num_threads(2)
    model, meta = build_model_from_checkpoint(checkpoint)
    model.eval()
    for name in classes:
        paths = sorted((TEST_ROOT / name).iterdir())[:limit]
        videos, _ = build_frame_cache(paths, CACHE_DIR, resize_short=meta.resize_short)
        predicted = Counter(meta.labels[predicted_class(model, meta, video)] for video in videos if video)
        print(f"{name} {predicted[name]}/{sum(predicted.values())} {dict(predicted)}", flush=True)  # noqa: T201


if __name__ == "__main__":
    main()
