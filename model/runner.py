"""The PyTorch network as a runner of the core's one scoring path, and the way a file reaches that path.

`TorchRunner` is a torch FstCN with its `ModelMeta` in the shape `fstcn.core.scoring.Runner` asks for:
`prepare` builds the plain graph's feeds (`fstcn.core.runtime.PlainFeeds`: `gather_clip_pairs`, then
`network_inputs`, the code the service runs) and `run` is forward + softmax in batches. Evaluation,
saliency and t-SNE features all score through it (or through `fstcn.core.runtime.OnnxModel` for an
exported file), so a checkpoint is scored exactly as its ONNX export is served. `decode_for_scoring` is
the service's decode of an upload: probe the headers, plan the clip pairs, decode only those frames.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import torch

from fstcn.core.clips import ClipPlan
from fstcn.core.errors import FstcnError
from fstcn.core.meta import APPEARANCE_INPUT, MOTION_INPUT, ModelMeta
from fstcn.core.runtime import PlainFeeds
from fstcn.core.scoring import decode_planned
from fstcn.core.video.decode import DecodedVideo, VideoLimits, probe_video

logger = logging.getLogger(__name__)

__all__ = ["DECODE_ERRORS", "TorchRunner", "decode_for_scoring"]

Feeds = dict[str, npt.NDArray[Any]]

# What a broken or unsupported file raises while decoding (anything else is a bug and propagates).
DECODE_ERRORS: tuple[type[Exception], ...] = (FstcnError, av.error.FFmpegError, OSError, ValueError)


def decode_for_scoring(
    path: Path | str, meta: ModelMeta, num_clips: int | None = None, *, limits: VideoLimits | None = None
) -> tuple[DecodedVideo, ClipPlan]:
    """The planned frames of a video file and their plan, as the service decodes an upload.

    `probe_video` reads the headers, `fstcn.core.scoring.decode_planned` plans `num_clips` clip pairs
    (default: the model's M) and decodes only their frames. Raises one of `DECODE_ERRORS`.
    """
    clips = num_clips if num_clips is not None else meta.sampling.num_clips
    info = probe_video(path, limits)
    return decode_planned(Path(path), info, meta, clips, limits=limits)


class TorchRunner:
    """A PyTorch FstCN and its metadata as a `fstcn.core.scoring.Runner`.

    Args:
        model: the network (put in eval mode here: no dropout, BatchNorm frozen).
        meta: the model's metadata (labels, sampling, sizes and normalisation).
        batch_size: most rows of one forward pass.
    """

    def __init__(self, model: torch.nn.Module, meta: ModelMeta, *, batch_size: int = 32) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model.eval()
        self.meta = meta
        self.batch_size = batch_size
        self._feeds = PlainFeeds(meta)

    @classmethod
    def from_checkpoint(
        cls, path: Path | str, *, batch_size: int = 32, device: str | None = None
    ) -> TorchRunner:
        """A checkpoint (`fstcn.model.checkpoint`) on `device` (default: CUDA when there is one)."""
        from fstcn.model.checkpoint import build_model_from_checkpoint

        target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        model, meta = build_model_from_checkpoint(path, map_location=target)  # float32, meta as exported
        return cls(model.to(target), meta, batch_size=batch_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def prepare(
        self, frames: npt.NDArray[np.uint8], frame_times: npt.ArrayLike, plan: ClipPlan, num_crops: int
    ) -> Feeds:
        """The plain feeds of the M clip pairs of `plan` in decoded frames uint8 (F, H, W, 3): appearance
        (M*K, 3, c, c) and motion (M*K, T, 3, c, c) float32, rows clip-major."""
        return self._feeds(frames, frame_times, plan, num_crops)

    def inputs(self, feeds: Feeds) -> tuple[torch.Tensor, torch.Tensor]:
        """The feeds as tensors on the model's device: appearance (B, 3, c, c), motion (B, T, 3, c, c)."""
        self._feeds.rows(feeds)  # checks the shapes against the contract
        device = self.device
        return (
            torch.from_numpy(np.ascontiguousarray(feeds[APPEARANCE_INPUT], dtype=np.float32)).to(device),
            torch.from_numpy(np.ascontiguousarray(feeds[MOTION_INPUT], dtype=np.float32)).to(device),
        )

    def run(self, feeds: Feeds) -> npt.NDArray[np.float32]:
        """feeds -> probabilities (M*K, N) float32: softmax of the logits, `batch_size` rows at a time."""
        appearance, motion = self.inputs(feeds)
        rows = appearance.shape[0]
        if rows == 0:
            raise ValueError("run needs at least one row")
        outputs = []
        with torch.inference_mode():
            for begin in range(0, rows, self.batch_size):
                logits = self.model(
                    appearance[begin : begin + self.batch_size], motion[begin : begin + self.batch_size]
                )
                outputs.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
        probs = np.concatenate(outputs).astype(np.float32, copy=False)
        if probs.shape != (rows, self.meta.num_classes):
            raise ValueError(
                f"model returned probs of shape {probs.shape}, expected ({rows}, {self.meta.num_classes})"
            )
        return probs
