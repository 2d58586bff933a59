"""`fstcn train`: the two-stage FstCN training, single-process or under torchrun (DDP).

A run's lifecycle, one module each:

- `config`: `TrainConfig` (every option, validated) and what follows from it (`make_meta`,
  `reversal_labels`);
- `data`: the dataset split and held-out validation set, the decode-once frame cache
  (`fstcn.model.frame_cache`), and the augmented samples cut through `fstcn.core.clips` (the code the
  service runs);
- `distributed`: the process group (gloo on CPU, nccl on CUDA; rank 0 alone writes), collectives, and
  per-rank randomness;
- `objectives` and `optim`: what each stage optimises (stage 1: the lower SCL + auxiliary classifier as a
  single-frame classifier; stage 2: the whole network on clip pairs, optionally keeping the auxiliary
  loss with a small weight), which parameters it may change, the optimiser and the per-step schedule;
- `state`: checkpoints (`last.pt` every epoch and when the time budget ends, `best.pt` by validation
  accuracy) with exact resume, and `--init-from`;
- `loop`: the trainer itself and the per-epoch `log.jsonl`.

Determinism: every random choice of a sample comes from a generator seeded by (seed, stage, epoch, sample
index), the sampler's order by (seed, stage, epoch), and torch's generator (dropout) is reseeded at each
epoch from (seed, stage, epoch, rank). So a run resumed from `last.pt` is the run that was not
interrupted (on CPU; cuDNN kernels may add noise on GPU), and a stop in the middle of an epoch resumes by
skipping the batches already done, with each rank's torch RNG state restored.
"""

from fstcn.model.train.config import TrainConfig, config_from_dict, make_meta, reversal_labels
from fstcn.model.train.data import TrainingSamples, ValidationVideos, VideoItem, split_holdout
from fstcn.model.train.distributed import weight_digest
from fstcn.model.train.loop import LOG_FILE, TrainResult, train
from fstcn.model.train.objectives import used_parameters
from fstcn.model.train.optim import learning_rate
from fstcn.model.train.state import BEST_CHECKPOINT, LAST_CHECKPOINT

__all__ = [
    "BEST_CHECKPOINT",
    "LAST_CHECKPOINT",
    "LOG_FILE",
    "TrainConfig",
    "TrainResult",
    "TrainingSamples",
    "ValidationVideos",
    "VideoItem",
    "config_from_dict",
    "learning_rate",
    "make_meta",
    "reversal_labels",
    "split_holdout",
    "train",
    "used_parameters",
    "weight_digest",
]
