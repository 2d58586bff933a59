"""ONNX Runtime for an exported FstCN model: the session, its providers, its metadata and its inputs.

`OnnxModel.load(path, ...)` opens a model written by `fstcn export`, reads its `ModelMeta` (metadata key
`fstcn`) and, for a frames graph, its `GraphInfo` (`fstcn_graph`), checks the graph's inputs and outputs
against them, and picks execution providers: `auto` tries TensorRT, then CUDA, and keeps one only when the
session really runs on it (`session.get_providers()`); otherwise it says so in one log line and runs on
CPU. Whatever graph the file holds, the model has ONE contract (the `Runner` of `fstcn.core.scoring`):
`prepare(frames, frame_times, plan, num_crops) -> feeds` builds that graph's inputs from decoded frames
(the feeds builder is chosen when the model loads), and `run(feeds) -> probs (M*K, N)` runs it;
`batch_key(feeds)` and `merge(items)` say which requests' feeds can share one run and join them
(cross-request batching). Nobody outside this module branches on the graph's kind. The service's
engine (`fstcn.service.engine`) adds batching, warm-up and readiness on top; the training side
evaluates ONNX files with it directly.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from fstcn.core.clips import ClipPlan, gather_clip_pairs, network_inputs
from fstcn.core.errors import InternalError
from fstcn.core.frames_graph import (
    APPEARANCE_INDEX_INPUT,
    CLIP_INDEX_INPUT,
    CROP_BOXES_INPUT,
    CROP_INDEX_INPUT,
    DIFF_INDEX_INPUT,
    FRAMES_INPUT,
    GRAPH_KEY,
    VIEWS_INPUT,
    GraphInfo,
    frame_feeds,
)
from fstcn.core.meta import APPEARANCE_INPUT, META_KEY, MOTION_INPUT, PROBS_OUTPUT, ModelMeta
from fstcn.core.presets import PRESETS, get_config

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]
Feeds = dict[str, npt.NDArray[Any]]

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
AUTO_PROVIDERS = (TENSORRT, CUDA, CPU)
SHORT_NAMES = {TENSORRT: "tensorrt", CUDA: "cuda", CPU: "cpu"}
# Most rows one request can send: 32 clips x 18 crops (fstcn.core.options); the TensorRT profile covers it.
MAX_REQUEST_ROWS = 32 * 18

# cuDNN and TensorRT describe a tensor with 32-bit element counts: a run whose largest activation has
# more elements fails (CUDNN_STATUS_NOT_SUPPORTED; seen with the paper preset at 360 rows on an H100).
MAX_TENSOR_ELEMENTS = 2**31 - 1

# A frames graph's inputs that index into its own request's frames, and those fixed by (H, W, K).
_FRAME_INDEX_INPUTS = (APPEARANCE_INDEX_INPUT, CLIP_INDEX_INPUT, DIFF_INDEX_INPUT)
_PER_FRAME_SIZE = (CROP_BOXES_INPUT, CROP_INDEX_INPUT, VIEWS_INPUT)

_ORT_QUIET = 4  # fatal only: provider probing must not print a stack of loader errors
_ORT_NORMAL = 3  # errors only in normal operation


class ModelLoadError(RuntimeError):
    """The model file is missing, unreadable, not an FstCN export, or its providers cannot load."""


# ----------------------------------------------------------------------------------- inputs
class FeedsBuilder(Protocol):
    """Builds one graph kind's ONNX feeds from decoded frames and counts the rows they hold."""

    def __call__(
        self, frames: npt.NDArray[np.uint8], frame_times: npt.ArrayLike, plan: ClipPlan, num_crops: int
    ) -> Feeds: ...

    def rows(self, feeds: Feeds) -> int: ...

    def batch_key(self, feeds: Feeds) -> Hashable:
        """Feeds with equal keys can share one run: `merge` joins them."""
        ...

    def merge(self, items: Sequence[Feeds]) -> Feeds:
        """One run's feeds for `items` (equal batch keys): its probs rows are the items' rows in order."""
        ...


@dataclass(frozen=True)
class PlainFeeds:
    """The plain graph: crops cut and normalised on the host (`fstcn.core.clips`).

    Feeds: appearance (M*K, 3, c, c) and motion (M*K, T, 3, c, c) float32, rows clip-major."""

    meta: ModelMeta

    def __call__(
        self, frames: npt.NDArray[np.uint8], frame_times: npt.ArrayLike, plan: ClipPlan, num_crops: int
    ) -> Feeds:
        appearance, motion = gather_clip_pairs(frames, frame_times, plan)
        appearance_in, motion_in = network_inputs(appearance, motion, self.meta, num_crops)
        return {APPEARANCE_INPUT: appearance_in, MOTION_INPUT: motion_in}

    def rows(self, feeds: Feeds) -> int:
        """Rows of the feeds, after checking them against the contract (ValueError)."""
        appearance, motion = feeds[APPEARANCE_INPUT], feeds[MOTION_INPUT]
        rows = int(appearance.shape[0]) if appearance.ndim else 0
        c, t = self.meta.crop_size, self.meta.sampling.clip_length
        expected_a, expected_m = (rows, 3, c, c), (rows, t, 3, c, c)
        if appearance.shape != expected_a or motion.shape != expected_m:
            raise ValueError(
                f"expected appearance {expected_a} and motion {expected_m}, "
                f"got {appearance.shape} and {motion.shape}"
            )
        return rows

    def batch_key(self, feeds: Feeds) -> Hashable:
        return ()  # rows are independent: any two requests' rows can share a run

    def merge(self, items: Sequence[Feeds]) -> Feeds:
        # each input: (sum of B_i, ...) along the row axis
        return {name: np.concatenate([feeds[name] for feeds in items]) for name in items[0]}


@dataclass(frozen=True)
class FramesFeeds:
    """A frames graph: uint8 frames and index arrays; crops and normalisation run inside the graph
    (`fstcn.core.frames_graph`)."""

    graph: GraphInfo

    def __call__(
        self, frames: npt.NDArray[np.uint8], frame_times: npt.ArrayLike, plan: ClipPlan, num_crops: int
    ) -> Feeds:
        return frame_feeds(frames, frame_times, plan, self.graph, num_crops)

    def rows(self, feeds: Feeds) -> int:
        crops = feeds[_crop_input(self.graph)]
        return int(feeds[APPEARANCE_INDEX_INPUT].shape[0] * crops.shape[0])

    def batch_key(self, feeds: Feeds) -> Hashable:
        """Requests share a run when their frames have one size and their crops are the same: the crop
        inputs depend only on (H, W, K), so they are the same array for every such request."""
        frames = feeds[FRAMES_INPUT]
        crops = [np.ascontiguousarray(feeds[name]) for name in self.graph.inputs if name in _PER_FRAME_SIZE]
        digest = hashlib.blake2b(b"".join(c.tobytes() for c in crops), digest_size=16).hexdigest()
        return (frames.shape[1:], tuple(c.shape for c in crops), digest)

    def merge(self, items: Sequence[Feeds]) -> Feeds:
        """The items' frames stacked (sum F_i, H, W, 3); each item's appearance, clip and diff indices
        offset by the frames before it, so that its clip pairs, and hence its rows, follow the items
        before it; the crop inputs (the same for all) once."""
        counts = [int(feeds[FRAMES_INPUT].shape[0]) for feeds in items]
        offsets = np.cumsum([0, *counts[:-1]])
        merged: Feeds = {FRAMES_INPUT: np.concatenate([feeds[FRAMES_INPUT] for feeds in items])}
        for name in _FRAME_INDEX_INPUTS:
            merged[name] = np.concatenate(
                [feeds[name] + np.int64(offset) for feeds, offset in zip(items, offsets, strict=True)]
            )
        for name in self.graph.inputs:
            if name in _PER_FRAME_SIZE:
                merged[name] = items[0][name]
        return merged


# ------------------------------------------------------------------------------------ model
class OnnxModel:
    """An ONNX Runtime session over one exported FstCN model (plain or frames graph).

    Args:
        session: the session (on its providers).
        meta: the model's metadata.
        path: where the file was read from.
        graph: the frames graph's description; None for the plain graph.
    """

    def __init__(
        self, session: ort.InferenceSession, meta: ModelMeta, *, path: Path, graph: GraphInfo | None = None
    ) -> None:
        self.session = session
        self.meta = meta
        self.path = path
        self.graph = graph
        self.providers: list[str] = list(session.get_providers())
        self.max_rows_per_run = max_rows_per_run(meta)
        self.feeds_builder: FeedsBuilder = PlainFeeds(meta) if graph is None else FramesFeeds(graph)

    @classmethod
    def load(
        cls,
        model_path: str | Path,
        *,
        providers: Sequence[str] | None = None,
        intra_op_threads: int = 0,
        trt_cache_dir: Path | None = None,
    ) -> OnnxModel:
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
        model = cls(session, meta, path=path, graph=graph)
        logger.info(
            "loaded model %s %s (preset %s, %d classes, %s) from %s on %s",
            meta.name,
            meta.version,
            meta.preset,
            meta.num_classes,
            model.form,
            path,
            ", ".join(model.providers),
        )
        return model

    @property
    def form(self) -> str:
        """Which form of the network the file holds: `plain` (crops on the host), `exact` (the same crops
        cut inside the graph), `shared-lower` or `shared-branch` (shared trunk, windows of whole-frame
        feature maps)."""
        if self.graph is None:
            return "plain"
        if self.graph.crops == "exact":
            return "exact"
        return f"shared-{self.graph.share}"

    @property
    def provider(self) -> str:
        """Short name of the main provider in use: tensorrt, cuda or cpu."""
        return SHORT_NAMES.get(self.providers[0], self.providers[0])

    def prepare(
        self, frames: npt.NDArray[np.uint8], frame_times: npt.ArrayLike, plan: ClipPlan, num_crops: int
    ) -> Feeds:
        """This graph's feeds for the M clip pairs of `plan` in decoded frames uint8 (F, H, W, 3)."""
        return self.feeds_builder(frames, frame_times, plan, num_crops)

    def rows(self, feeds: Feeds) -> int:
        """How many (clip pair, crop) rows `feeds` hold: M*K."""
        return self.feeds_builder.rows(feeds)

    def batch_key(self, feeds: Feeds) -> Hashable:
        """Requests whose feeds have equal keys can share one run (`merge`)."""
        return self.feeds_builder.batch_key(feeds)

    def merge(self, items: Sequence[Feeds]) -> Feeds:
        """One run's feeds for several requests of equal `batch_key`; the run's probs hold their rows
        one request after the other."""
        return self.feeds_builder.merge(items)

    def run(self, feeds: Feeds) -> FloatArray:
        """feeds -> probs (M*K, N) float32, rows clip-major. Blocking and thread-safe.

        A plain graph's rows run in parts of at most `max_rows_per_run` (see MAX_TENSOR_ELEMENTS)."""
        rows = self.rows(feeds)
        if rows == 0:
            raise ValueError("run needs at least one row")
        if self.graph is not None:
            (probs,) = self.session.run([PROBS_OUTPUT], {name: feeds[name] for name in self.graph.inputs})
            parts = [np.asarray(probs, dtype=np.float32)]
        else:
            parts = [self._run_plain(feeds, start) for start in range(0, rows, self.max_rows_per_run)]
        probs = parts[0] if len(parts) == 1 else np.concatenate(parts)
        if probs.shape != (rows, self.meta.num_classes):
            raise InternalError(
                f"model returned probs of shape {probs.shape}, expected ({rows}, {self.meta.num_classes})"
            )
        return probs

    def _run_plain(self, feeds: Feeds, start: int) -> FloatArray:
        stop = start + self.max_rows_per_run
        part = {
            name: np.ascontiguousarray(feeds[name][start:stop], dtype=np.float32)
            for name in (APPEARANCE_INPUT, MOTION_INPUT)
        }
        (probs,) = self.session.run([PROBS_OUTPUT], part)
        return np.asarray(probs, dtype=np.float32)


# ----------------------------------------------------------------------------------- checks
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
    return CROP_INDEX_INPUT if graph.crops == "shared" else CROP_BOXES_INPUT


def read_file_info(model_path: str | Path) -> tuple[ModelMeta, GraphInfo | None]:
    """The `ModelMeta` of a model file and its `GraphInfo` (None for a plain graph), read without
    preparing the graph to run (no optimisation), or ModelLoadError: what a bundle's files are told
    apart and compared by before one of them is served."""
    path = Path(model_path)
    if not path.is_file():
        raise ModelLoadError(f"model file not found: {path}")
    options = _session_options(1)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = _create_session(path, options, [CPU], quiet=False)
    return read_model_meta(session, path), read_graph_info(session, path)


def check_io(session: ort.InferenceSession, meta: ModelMeta, path: Path) -> None:
    """Check the graph's inputs and output against the contract in `fstcn.core.meta`."""
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
        tried = " and ".join(SHORT_NAMES[name] for name in gpu_wanted)
        if cuda_device_count() == 0:  # a CPU host: running on CPU is what it should do
            logger.info("no GPU on this machine (%s need one): running on CPU", tried)
        else:
            logger.warning("no GPU execution provider could be used (%s did not load); running on CPU", tried)
    elif not auto and wanted[0] not in in_use:
        raise ModelLoadError(
            f"execution provider {SHORT_NAMES.get(wanted[0], wanted[0])} was requested but did not load "
            f"(in use: {', '.join(in_use)}); see onnxruntime's log above for the loader error"
        )
    return session


_CUDA_ERROR_NO_DEVICE = 100


def cuda_device_count() -> int | None:
    """CUDA devices the NVIDIA driver sees: 0 without a driver or a device, None when it cannot tell."""
    import ctypes

    for library in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            cuda = ctypes.CDLL(library)
        except OSError:
            continue
        status = cuda.cuInit(0)
        if status == _CUDA_ERROR_NO_DEVICE:
            return 0
        count = ctypes.c_int(0)
        if status != 0 or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return None  # a driver that fails: a GPU may be there, so missing it is worth a warning
        return count.value
    return 0


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
