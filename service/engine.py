"""The inference engine: ONNX Runtime session, execution providers, threads, warm-up, admission control.

`Engine.load(path, ...)` opens an exported FstCN model, reads its `ModelMeta` (metadata key `fstcn`),
checks the graph's inputs and outputs against it, and picks execution providers: `auto` tries TensorRT,
then CUDA, and keeps one only when the session really runs on it (`session.get_providers()`); otherwise
it says so in one log line and runs on CPU. `Engine.infer(appearance, motion) -> probs` is blocking and
thread-safe; with batching on, concurrent calls are merged by a `DynamicBatcher`.

A model file that carries `fstcn_graph` metadata is a fast-path "frames" graph (`model.frames_graph`:
uint8 frames and index arrays in, crops and normalisation inside the graph, optionally a shared trunk
for the crops); `Engine.graph` then describes it and the data plane calls `infer_frames(feeds)`
instead of `infer`. Cross-request batching applies to plain graphs only.

`ConcurrencyLimiter` is the admission control of the data plane: a bounded number of jobs run in
worker threads, a bounded queue waits, anything beyond is refused at once with `Overloaded`. A job's
slot is held until its thread really finishes, even when the caller has given up (timeout), so
abandoned work can never push the machine past its limit.

The engine knows nothing about HTTP or video decoding.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from model.clips import plan_clip_pairs
from model.frames_graph import GRAPH_KEY, GraphInfo, frame_feeds
from model.meta import APPEARANCE_INPUT, META_KEY, MOTION_INPUT, PROBS_OUTPUT, ModelMeta
from model.presets import PRESETS, get_config
from service import metrics
from service.batching import DynamicBatcher
from service.errors import InternalError, Overloaded

logger = logging.getLogger(__name__)

T = TypeVar("T")
FloatArray = npt.NDArray[np.float32]

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
AUTO_PROVIDERS = (TENSORRT, CUDA, CPU)
SHORT_NAMES = {TENSORRT: "tensorrt", CUDA: "cuda", CPU: "cpu"}
# Most rows one request can send: 32 clips x 18 crops (SPEC 4); the TensorRT profile covers it.
MAX_REQUEST_ROWS = 32 * 18

# cuDNN and TensorRT describe a tensor with 32-bit element counts: a run whose largest activation has
# more elements fails (CUDNN_STATUS_NOT_SUPPORTED; seen with the paper preset at 360 rows on an H100).
MAX_TENSOR_ELEMENTS = 2**31 - 1

_ORT_QUIET = 4  # fatal only: provider probing must not print a stack of loader errors
_ORT_NORMAL = 3  # errors only in normal operation


class ModelLoadError(RuntimeError):
    """The model file is missing, unreadable, not an FstCN export, or its providers cannot load."""


@dataclass(frozen=True)
class BatchingOptions:
    """Cross-request batching: at most `max_batch_size` requests per run, waiting `max_delay_s`."""

    max_batch_size: int = 8
    max_delay_s: float = 0.005


class Engine:
    """An ONNX Runtime session serving one FstCN model (see `model.meta` for the I/O contract)."""

    def __init__(
        self,
        session: ort.InferenceSession,
        meta: ModelMeta,
        *,
        model_path: Path,
        batching: BatchingOptions | None = None,
        graph: GraphInfo | None = None,
    ) -> None:
        self.session = session
        self.meta = meta
        self.model_path = model_path
        self.graph = graph
        self.providers: list[str] = list(session.get_providers())
        self.max_rows_per_run = max_rows_per_run(meta)
        self._ready = threading.Event()
        self._batcher: DynamicBatcher[tuple[FloatArray, FloatArray], FloatArray] | None = None
        if batching is not None and graph is not None:
            logger.warning(
                "cross-request batching applies to plain graphs only; %s is a frames graph", model_path
            )
        elif batching is not None:
            self._batcher = DynamicBatcher(
                self._run_many, max_batch_size=batching.max_batch_size, max_delay_s=batching.max_delay_s
            )

    # ----------------------------------------------------------------------------------- loading
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
        """Open `model_path` on `providers` (ONNX Runtime names in order; None = auto).

        Raises ModelLoadError with a one-line reason for a missing, corrupt or non-FstCN file, or when
        an explicitly requested provider does not load.
        """
        path = Path(model_path)
        if not path.is_file():
            raise ModelLoadError(
                f"model file not found: {path} (set FSTCN_MODEL_PATH to a model exported by `fstcn export`)"
            )
        options = _session_options(intra_op_threads)
        # A CPU session first: it reads and checks the metadata cheaply, and tells a corrupt file apart
        # from a GPU provider that does not load.
        cpu_session = _create_session(path, options, [CPU], quiet=False)
        meta = read_model_meta(cpu_session, path)
        graph = read_graph_info(cpu_session, path)
        if graph is None:
            check_io(cpu_session, meta, path)
        else:
            check_frames_io(cpu_session, graph, path)

        wanted = list(providers) if providers is not None else list(AUTO_PROVIDERS)
        if wanted == [CPU]:
            session = cpu_session
        else:
            del cpu_session
            session = _session_on_providers(
                path,
                options,
                wanted,
                meta,
                auto=providers is None,
                trt_cache_dir=trt_cache_dir,
                frames_graph=graph is not None,
            )
        engine = cls(session, meta, model_path=path, batching=batching, graph=graph)
        logger.info(
            "loaded model %s %s (preset %s, %d classes) from %s on %s",
            meta.name,
            meta.version,
            meta.preset,
            meta.num_classes,
            path,
            ", ".join(engine.providers),
        )
        return engine

    # --------------------------------------------------------------------------------- inference
    @property
    def provider(self) -> str:
        """Short name of the main provider in use: tensorrt, cuda or cpu."""
        return SHORT_NAMES.get(self.providers[0], self.providers[0])

    @property
    def ready(self) -> bool:
        """Loaded and warmed up."""
        return self._ready.is_set()

    def input_shapes(self, rows: int = 1) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Shapes of (appearance, motion) for `rows` clip-pair crops."""
        c = self.meta.crop_size
        return (rows, 3, c, c), (rows, self.meta.sampling.clip_length, 3, c, c)

    def infer(self, appearance: FloatArray, motion: FloatArray) -> FloatArray:
        """appearance (B, 3, c, c), motion (B, T, 3, c, c) float32 -> probs (B, N) float32. Blocking."""
        expected_a, expected_m = self.input_shapes(appearance.shape[0] if appearance.ndim else 0)
        if appearance.shape != expected_a or motion.shape != expected_m:
            raise ValueError(
                f"expected appearance {expected_a} and motion {expected_m}, "
                f"got {appearance.shape} and {motion.shape}"
            )
        if appearance.shape[0] == 0:
            raise ValueError("infer needs at least one row")
        if self._batcher is not None:
            return self._batcher((appearance, motion))
        return self._run(appearance, motion)

    def infer_frames(self, feeds: dict[str, npt.NDArray[Any]]) -> FloatArray:
        """A frames graph's feeds (`model.frames_graph.frame_feeds`) -> probs (M*K, N) float32. Blocking."""
        if self.graph is None:
            raise ValueError("infer_frames needs a frames graph; this model takes appearance and motion")
        missing = [name for name in self.graph.inputs if name not in feeds]
        if missing:
            raise ValueError(f"missing frames-graph inputs: {missing}")
        (probs,) = self.session.run([PROBS_OUTPUT], {name: feeds[name] for name in self.graph.inputs})
        probs = np.asarray(probs, dtype=np.float32)
        rows = feeds["appearance_index"].shape[0] * feeds[_crop_input(self.graph)].shape[0]
        if probs.shape != (rows, self.meta.num_classes):
            raise InternalError(f"model returned probs of shape {probs.shape}, expected ({rows}, N)")
        metrics.observe_batch(rows)
        return probs

    def warm_up(self) -> None:
        """Run the model once (and at the default request size on GPU providers), then mark ready."""
        start = time.perf_counter()
        if self.graph is not None:
            self._warm_up_frames()
            self._ready.set()
            logger.info("model warmed up in %.0f ms", (time.perf_counter() - start) * 1000)
            return
        sizes = [1]
        if self.provider != "cpu":  # kernels and cuDNN algorithms are picked per shape on first use
            sizes.append(self.meta.sampling.num_clips * 18)
        for rows in sizes:
            shape_a, shape_m = self.input_shapes(rows)
            self._run(np.zeros(shape_a, np.float32), np.zeros(shape_m, np.float32), record=False)
        self._ready.set()
        logger.info("model warmed up in %.0f ms", (time.perf_counter() - start) * 1000)

    def _warm_up_frames(self) -> None:
        """One clip pair and one crop of two black square frames (and 18 crops of M pairs on GPUs)."""
        assert self.graph is not None
        side = self.meta.resize_short
        frames = np.zeros((2, side, side, 3), np.uint8)
        times = np.array([0.0, 1.0 / self.meta.sampling.ref_fps])
        sizes = [(1, 1)] if self.provider == "cpu" else [(1, 1), (self.meta.sampling.num_clips, 18)]
        for clips, crops in sizes:
            plan = plan_clip_pairs(0.0, float(times[-1]), self.meta.sampling, clips)
            feeds = frame_feeds(frames, times, plan, self.graph, crops)
            self.session.run([PROBS_OUTPUT], {name: feeds[name] for name in self.graph.inputs})

    def close(self) -> None:
        self._ready.clear()
        if self._batcher is not None:
            self._batcher.close()

    def _run(self, appearance: FloatArray, motion: FloatArray, *, record: bool = True) -> FloatArray:
        """One session run per `max_rows_per_run` rows: (B, 3, c, c), (B, T, 3, c, c) -> (B, N)."""
        step = self.max_rows_per_run
        parts = []
        for start in range(0, appearance.shape[0], step):
            feeds = {
                APPEARANCE_INPUT: np.ascontiguousarray(appearance[start : start + step], dtype=np.float32),
                MOTION_INPUT: np.ascontiguousarray(motion[start : start + step], dtype=np.float32),
            }
            (part,) = self.session.run([PROBS_OUTPUT], feeds)
            parts.append(np.asarray(part, dtype=np.float32))
        probs = parts[0] if len(parts) == 1 else np.concatenate(parts)
        expected = (appearance.shape[0], self.meta.num_classes)
        if probs.shape != expected:
            raise InternalError(f"model returned probs of shape {probs.shape}, expected {expected}")
        if record:
            metrics.observe_batch(appearance.shape[0])
        return probs

    def _run_many(self, items: list[tuple[FloatArray, FloatArray]]) -> list[FloatArray]:
        """The batch function: concatenate the requests' rows, run once, split the probs back."""
        rows = [appearance.shape[0] for appearance, _ in items]
        # (sum B_i, 3, c, c) and (sum B_i, T, 3, c, c)
        appearance = np.concatenate([a for a, _ in items]) if len(items) > 1 else items[0][0]
        motion = np.concatenate([m for _, m in items]) if len(items) > 1 else items[0][1]
        probs = self._run(appearance, motion)
        return list(np.split(probs, np.cumsum(rows)[:-1]))


# ---------------------------------------------------------------------------------- helpers
def max_rows_per_run(meta: ModelMeta) -> int:
    """Most clip-pair crops one session run may take so that no tensor passes MAX_TENSOR_ELEMENTS.

    The widths come from the model's preset (the paper's, the widest, for a name this release does not
    know); crop size and l_t from the model itself."""
    preset = meta.preset if meta.preset in PRESETS else "paper"
    config = get_config(
        preset,
        crop_size=meta.crop_size,
        resize_short=meta.resize_short,
        clip_length=meta.sampling.clip_length,
    )
    return max(1, MAX_TENSOR_ELEMENTS // config.largest_activation_per_clip_pair)


def read_model_meta(session: ort.InferenceSession, path: Path) -> ModelMeta:
    """The `ModelMeta` stored under metadata key `fstcn`, or ModelLoadError."""
    raw = session.get_modelmeta().custom_metadata_map.get(META_KEY)
    if raw is None:
        raise ModelLoadError(f"{path} has no '{META_KEY}' metadata: not a model exported by `fstcn export`")
    try:
        return ModelMeta.from_json(raw)
    except ValueError as error:
        raise ModelLoadError(f"{path}: bad '{META_KEY}' metadata: {error}") from None


def read_graph_info(session: ort.InferenceSession, path: Path) -> GraphInfo | None:
    """The `GraphInfo` of a frames graph (metadata key `fstcn_graph`), None for a plain graph."""
    raw = session.get_modelmeta().custom_metadata_map.get(GRAPH_KEY)
    if raw is None:
        return None
    try:
        return GraphInfo.from_json(raw)
    except ValueError as error:
        raise ModelLoadError(f"{path}: bad '{GRAPH_KEY}' metadata: {error}") from None


def check_frames_io(session: ort.InferenceSession, graph: GraphInfo, path: Path) -> None:
    """A frames graph has exactly the inputs its `GraphInfo` names (uint8 frames, int64 indices)."""
    names = [node.name for node in session.get_inputs()]
    if sorted(names) != sorted(graph.inputs):
        raise ModelLoadError(f"{path}: frames graph inputs are {names}, expected {list(graph.inputs)}")
    types = {node.name: node.type for node in session.get_inputs()}
    bad = [
        name
        for name in graph.inputs
        if types[name] != ("tensor(uint8)" if name == "frames" else "tensor(int64)")
    ]
    outputs = [node.name for node in session.get_outputs()]
    if bad or outputs != [PROBS_OUTPUT]:
        raise ModelLoadError(f"{path}: frames graph has unexpected input types {bad} or outputs {outputs}")


def _crop_input(graph: GraphInfo) -> str:
    return "crop_index" if graph.crops == "shared" else "crop_boxes"


def check_io(session: ort.InferenceSession, meta: ModelMeta, path: Path) -> None:
    """Check the graph's inputs and output against the contract in `model.meta`."""
    c, t, n = meta.crop_size, meta.sampling.clip_length, meta.num_classes
    expected = {
        APPEARANCE_INPUT: (None, 3, c, c),
        MOTION_INPUT: (None, t, 3, c, c),
    }
    inputs = {node.name: node for node in session.get_inputs()}
    outputs = {node.name: node for node in session.get_outputs()}
    problems: list[str] = []
    for name, shape in expected.items():
        problems += _shape_problems(f"input {name}", inputs.get(name), shape)
    problems += _shape_problems(f"output {PROBS_OUTPUT}", outputs.get(PROBS_OUTPUT), (None, n))
    if problems:
        raise ModelLoadError(f"{path} does not match its metadata: " + "; ".join(problems))


def _shape_problems(what: str, node: Any, expected: tuple[int | None, ...]) -> list[str]:
    if node is None:
        return [f"{what} is missing"]
    if node.type != "tensor(float)":
        return [f"{what} is {node.type}, expected tensor(float)"]
    shape = list(node.shape)
    if len(shape) != len(expected):
        return [f"{what} has shape {shape}, expected {len(expected)} dimensions"]
    bad = [
        f"{what} dimension {i} is {dim}, expected {want}"
        for i, (dim, want) in enumerate(zip(shape, expected, strict=True))
        if want is not None and isinstance(dim, int) and dim != want
    ]
    return bad


def _session_options(intra_op_threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.log_severity_level = _ORT_NORMAL
    return options


def _create_session(
    path: Path,
    options: ort.SessionOptions,
    providers: list[str],
    *,
    provider_options: list[dict[str, Any]] | None = None,
    quiet: bool,
) -> ort.InferenceSession:
    """An InferenceSession, or ModelLoadError. `quiet` silences ONNX Runtime while probing providers."""
    captured = io.StringIO()
    if quiet:
        ort.set_default_logger_severity(_ORT_QUIET)
        options.log_severity_level = _ORT_QUIET
    try:
        # onnxruntime prints its provider fallback ("EP Error ... Falling back") to stdout
        with contextlib.redirect_stdout(captured):
            return ort.InferenceSession(
                str(path), sess_options=options, providers=providers, provider_options=provider_options
            )
    except Exception as error:  # onnxruntime raises its own exception types for bad files
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(f"cannot load model {path}: {first_line}") from None
    finally:
        if quiet:
            ort.set_default_logger_severity(_ORT_NORMAL)
            options.log_severity_level = _ORT_NORMAL
        for line in captured.getvalue().splitlines():
            if line.strip():
                logger.debug("onnxruntime: %s", line.strip())


def _session_on_providers(
    path: Path,
    options: ort.SessionOptions,
    wanted: list[str],
    meta: ModelMeta,
    *,
    auto: bool,
    trt_cache_dir: Path | None,
    frames_graph: bool = False,
) -> ort.InferenceSession:
    """A session on the first usable providers of `wanted`; CPU with one log line when `auto` finds none."""
    available = set(ort.get_available_providers())
    usable = [name for name in wanted if name in available or name == CPU]
    missing = [SHORT_NAMES.get(name, name) for name in wanted if name not in usable]
    if not auto and missing:
        raise ModelLoadError(
            f"execution provider(s) {', '.join(missing)} not in this onnxruntime build "
            f"(available: {', '.join(sorted(available))})"
        )
    if auto or CPU not in usable:
        usable = [*[name for name in usable if name != CPU], CPU]
    if hasattr(ort, "preload_dlls") and any(name in (CUDA, TENSORRT) for name in usable):
        with contextlib.suppress(Exception), contextlib.redirect_stdout(io.StringIO()):
            ort.preload_dlls()  # finds CUDA/cuDNN from pip's nvidia-* wheels when present
    provider_options = [_provider_options(name, meta, trt_cache_dir, frames_graph) for name in usable]
    try:
        session = _create_session(path, options, usable, provider_options=provider_options, quiet=auto)
    except ModelLoadError:
        if not auto:
            raise
        session = _create_session(path, options, [CPU], quiet=True)
    in_use = session.get_providers()
    gpu_wanted = [name for name in usable if name != CPU]
    if auto and in_use[0] == CPU and gpu_wanted:
        logger.warning(
            "no GPU execution provider could be used (%s did not load); running on CPU",
            " and ".join(SHORT_NAMES[name] for name in gpu_wanted),
        )
    elif not auto and wanted[0] not in in_use:
        raise ModelLoadError(
            f"execution provider {SHORT_NAMES.get(wanted[0], wanted[0])} was requested but did not load "
            f"(in use: {', '.join(in_use)}); see onnxruntime's log above for the loader error"
        )
    return session


def _provider_options(
    provider: str, meta: ModelMeta, trt_cache_dir: Path | None, frames_graph: bool = False
) -> dict[str, Any]:
    if provider != TENSORRT or frames_graph:  # a frames graph's shapes are not appearance/motion rows
        return {}
    cache = trt_cache_dir or Path.home() / ".cache" / "fstcn" / "tensorrt"
    c, t = meta.crop_size, meta.sampling.clip_length
    typical = meta.sampling.num_clips * 18

    def profile(rows: int) -> str:
        return f"{APPEARANCE_INPUT}:{rows}x3x{c}x{c},{MOTION_INPUT}:{rows}x{t}x3x{c}x{c}"

    # One optimisation profile over every batch a request can send, so TensorRT never rebuilds per shape.
    return {
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(cache),
        "trt_timing_cache_enable": "True",
        "trt_fp16_enable": "True" if meta.precision == "fp16" else "False",
        "trt_profile_min_shapes": profile(1),
        "trt_profile_opt_shapes": profile(typical),
        "trt_profile_max_shapes": profile(min(MAX_REQUEST_ROWS, max_rows_per_run(meta))),
    }


# ------------------------------------------------------------------------------- admission
class ConcurrencyLimiter:
    """Run blocking jobs in worker threads: `max_concurrent` at once, `queue_size` waiting, else 503.

    Use from one event loop. `run(fn)` raises `Overloaded` immediately when the queue is full.
    """

    def __init__(self, max_concurrent: int, queue_size: int, *, retry_after_s: int = 1) -> None:
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {max_concurrent}")
        if queue_size < 0:
            raise ValueError(f"queue_size must be >= 0, got {queue_size}")
        self.max_concurrent = max_concurrent
        self.queue_size = queue_size
        self.retry_after_s = retry_after_s
        self._executor = ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="fstcn-work")
        self._semaphore = asyncio.Semaphore(max_concurrent)
        self.running = 0
        self.waiting = 0

    def check(self) -> None:
        """Raise `Overloaded` when a new job would find the queue full."""
        if self.running + self.waiting >= self.max_concurrent + self.queue_size:
            raise Overloaded(
                f"server busy: {self.running} running and {self.waiting} queued; retry later",
                retry_after_s=self.retry_after_s,
            )

    async def run(self, fn: Callable[[], T]) -> T:
        """Run `fn()` in a worker thread once a slot is free; its result or exception."""
        self.check()
        self._set_waiting(self.waiting + 1)
        try:
            await self._semaphore.acquire()
        finally:
            self._set_waiting(self.waiting - 1)
        self.running += 1
        future = asyncio.get_running_loop().run_in_executor(self._executor, fn)
        try:
            return await asyncio.shield(future)
        finally:
            if future.done():
                self._release(future)
            else:  # the caller gave up (timeout): keep the slot until the thread is really done
                future.add_done_callback(self._release)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _release(self, future: asyncio.Future[Any]) -> None:
        if not future.cancelled():
            future.exception()  # mark retrieved: an abandoned job's error is not "never retrieved"
        self.running -= 1
        self._semaphore.release()

    def _set_waiting(self, value: int) -> None:
        self.waiting = value
        metrics.set_queue_depth(value)
