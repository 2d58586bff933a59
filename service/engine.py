"""The inference engine of the service: one loaded model, its batching, warm-up and readiness.

`Engine.load(path, ...)` opens the model through `fstcn.core.runtime.OnnxModel` (metadata, I/O checks,
execution providers, the feeds builder of whatever graph the file holds) and adds what serving needs:
cross-request batching (`DynamicBatcher`: the requests of one batch whose feeds can share a run, as the
model's `batch_key` says, run merged; the others alone), a warm-up that marks the engine ready, and the
batch-size metric. The engine is a
`fstcn.core.scoring.Runner`: `prepare(frames, frame_times, plan, num_crops) -> feeds` and
`run(feeds) -> probs (M*K, N)`, blocking and thread-safe, whatever graph it holds.

The engine knows nothing about HTTP or video decoding.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from fstcn.core.clips import ClipPlan, plan_clip_pairs
from fstcn.core.meta import ModelMeta
from fstcn.core.runtime import CPU, Feeds, FloatArray, ModelLoadError, OnnxModel
from fstcn.service import metrics
from fstcn.service.batching import DynamicBatcher

logger = logging.getLogger(__name__)

__all__ = ["CPU", "BatchingOptions", "Engine", "GraphInput", "ModelLoadError"]


# ONNX Runtime's element type names -> numpy's
_ORT_ELEMENT_TYPES = {"tensor(float)": "float32", "tensor(uint8)": "uint8", "tensor(int64)": "int64"}
_ANY_SIZE = "?"  # an axis the graph leaves dynamic without naming it


@dataclass(frozen=True)
class GraphInput:
    """One input of the served graph: name, numpy element type, shape (a str is a dynamic axis)."""

    name: str
    element_type: str
    shape: tuple[int | str, ...]


@dataclass(frozen=True)
class BatchingOptions:
    """Cross-request batching: at most `max_batch_size` requests per run, waiting `max_delay_s`."""

    max_batch_size: int = 8
    max_delay_s: float = 0.005


class Engine:
    """The served model (see `fstcn.core.runtime` for the graph forms and their inputs).

    Args:
        model: the loaded ONNX model.
        batching: merge concurrent requests' feeds into shared runs (None = off).
    """

    def __init__(self, model: OnnxModel, *, batching: BatchingOptions | None = None) -> None:
        self.model = model
        self._ready = threading.Event()
        self._batcher: DynamicBatcher[Feeds, FloatArray] | None = None
        if batching is not None:
            self._batcher = DynamicBatcher(
                self._run_many, max_batch_size=batching.max_batch_size, max_delay_s=batching.max_delay_s
            )

    @classmethod
    def load(
        cls,
        model_path: str | Path,
        *,
        providers: Sequence[str] | None = None,
        intra_op_threads: int = 0,
        trt_cache_dir: Path | None = None,
        batching: BatchingOptions | None = None,
    ) -> Engine:
        """Open `model_path` (see `OnnxModel.load`); raises ModelLoadError with a one-line reason."""
        model = OnnxModel.load(
            model_path, providers=providers, intra_op_threads=intra_op_threads, trt_cache_dir=trt_cache_dir
        )
        return cls(model, batching=batching)

    # ------------------------------------------------------------------------------ description
    @property
    def meta(self) -> ModelMeta:
        return self.model.meta

    @property
    def model_path(self) -> Path:
        return self.model.path

    @property
    def form(self) -> str:
        """The served form of the network: plain, exact, shared-lower or shared-branch."""
        return self.model.form

    @property
    def inputs(self) -> tuple[GraphInput, ...]:
        """The served graph's ONNX inputs, as its session declares them."""
        return tuple(
            GraphInput(
                name=node.name,
                element_type=_ORT_ELEMENT_TYPES.get(node.type, node.type),
                shape=tuple(_ANY_SIZE if dim is None else dim for dim in node.shape),
            )
            for node in self.model.session.get_inputs()
        )

    @property
    def providers(self) -> list[str]:
        return self.model.providers

    @property
    def provider(self) -> str:
        """Short name of the main provider in use: tensorrt, cuda or cpu."""
        return self.model.provider

    @property
    def batching(self) -> bool:
        """Whether concurrent requests share runs."""
        return self._batcher is not None

    @property
    def ready(self) -> bool:
        """Loaded and warmed up."""
        return self._ready.is_set()

    # --------------------------------------------------------------------------------- inference
    def prepare(
        self, frames: npt.NDArray[np.uint8], frame_times: npt.ArrayLike, plan: ClipPlan, num_crops: int
    ) -> Feeds:
        """The served graph's feeds for `plan`'s clip pairs in decoded frames uint8 (F, H, W, 3)."""
        return self.model.prepare(frames, frame_times, plan, num_crops)

    def run(self, feeds: Feeds) -> FloatArray:
        """feeds -> probs (M*K, N) float32, rows clip-major. Blocking; batched across requests when on."""
        if self._batcher is not None:
            return self._batcher(feeds)
        probs = self.model.run(feeds)
        metrics.observe_batch(probs.shape[0])
        return probs

    def warm_up(self) -> None:
        """Run one clip pair and crop of black frames (and the default request size on GPU providers),
        then mark ready: kernels and cuDNN algorithms are picked per shape on first use."""
        start = time.perf_counter()
        meta = self.meta
        side = meta.resize_short
        frames = np.zeros((2, side, side, 3), np.uint8)
        times = np.array([0.0, 1.0 / meta.sampling.ref_fps])
        sizes = [(1, 1)] if self.provider == "cpu" else [(1, 1), (meta.sampling.num_clips, 18)]
        for clips, crops in sizes:
            plan = plan_clip_pairs(0.0, float(times[-1]), meta.sampling, clips)
            self.model.run(self.prepare(frames, times, plan, crops))
        self._ready.set()
        logger.info("model warmed up in %.0f ms", (time.perf_counter() - start) * 1000)

    def close(self) -> None:
        self._ready.clear()
        if self._batcher is not None:
            self._batcher.close()

    def _run_many(self, items: list[Feeds]) -> list[FloatArray]:
        """The batch function: the requests whose feeds can share a run (equal `batch_key`: any plain
        graph's; a frames graph's with one frame size and crop set) run merged, the others alone; each
        run's probs are split back into the requests' rows."""
        groups: dict[Hashable, list[int]] = {}
        for index, feeds in enumerate(items):
            groups.setdefault(self.model.batch_key(feeds), []).append(index)
        results: list[FloatArray | None] = [None] * len(items)
        for members in groups.values():
            group = [items[index] for index in members]
            rows = [self.model.rows(feeds) for feeds in group]
            probs = self.model.run(group[0] if len(group) == 1 else self.model.merge(group))
            metrics.observe_batch(probs.shape[0])
            for index, part in zip(members, np.split(probs, np.cumsum(rows)[:-1]), strict=True):
                results[index] = part
        return [probs for probs in results if probs is not None]
