"""Loading what the settings name: the served model, the optional recheck model, the thread split, the
video limits.

`served_model_path` picks the file of the bundle that is served: FSTCN_MODEL_PATH names the bundle's
plain NAME.onnx, and the fastest graph beside it is served, NAME.trunk.onnx (shared trunk), else
NAME.frames.onnx (exact crops inside the graph), else NAME.onnx itself; `FSTCN_EXACT_CROPS=1` serves
the exact crops (NAME.frames.onnx, else NAME.onnx); a path that names a frames graph serves it. A
bundle without its shared-trunk graph says so in one log line; a graph beside NAME.onnx whose
metadata differs from it (another model, version or sampling) is refused, so a stale graph never
answers for a re-exported model. `thread_split` divides
the cores between ONNX Runtime and the decoders when the settings leave it open. `engine_from_settings`
opens the served model on the configured providers with the configured batching;
`recheck_from_settings` opens the recheck model on the providers the served engine really runs on, and
refuses one that would not answer the same question (other classes or sampling, or not an exact-crops
form); `check_model_files` opens both once on CPU, so that `fstcn serve --workers N` fails in one line
before any worker starts. Every failure is a `ModelLoadError` with a one-line reason. The app's
lifespan, `fstcn serve` and `fstcn predict` all load through here.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from fstcn.core.frames_graph import bundle_graph_paths, served_graph_path
from fstcn.core.runtime import read_file_info
from fstcn.core.video.decode import VideoLimits
from fstcn.service.engine import CPU, BatchingOptions, Engine, ModelLoadError
from fstcn.service.pipeline import Recheck
from fstcn.service.settings import Settings

logger = logging.getLogger(__name__)

# What must agree between the served model and its recheck model for the recheck to re-score the same
# decoded clip pairs and answer with the same classes.
RECHECK_MUST_MATCH = ("labels", "crop_size", "resize_short", "sampling", "mean", "std", "diff_scale")
# The forms whose crops are the exact crops of the sampling contract: what a recheck must run.
EXACT_FORMS = ("plain", "exact")


def served_model_path(settings: Settings) -> Path:
    """The file of the configured bundle that is served (see the module doc); raises `ModelLoadError`
    when a fast graph beside the plain file describes another model than it."""
    named = settings.model_path
    if not named.is_file():
        return named  # the engine's load says it is missing, in its words
    plain, graph = read_file_info(named)
    if graph is not None:  # a frames graph named on purpose: served as it is
        if settings.exact_crops and graph.crops == "shared":
            raise ModelLoadError(
                f"FSTCN_EXACT_CROPS=1, but FSTCN_MODEL_PATH names a shared-trunk graph ({named}): "
                "name the bundle's plain NAME.onnx"
            )
        return named
    trunk = bundle_graph_paths(named)["shared"]
    chosen = served_graph_path(named, exact_crops=settings.exact_crops)
    if not settings.exact_crops and chosen != trunk:
        logger.warning(
            "%s has no shared-trunk graph %s beside it: serving exact crops from %s (slower; "
            "`fstcn export --keep-plain --fast-graphs lower` writes the fast graphs)",
            named,
            trunk.name,
            chosen.name,
        )
    if chosen != named:
        fast, _ = read_file_info(chosen)
        if fast != plain:
            raise ModelLoadError(
                f"{chosen} is {fast.name} {fast.version}, not the same model as {named} "
                f"({plain.name} {plain.version}): export the fast graphs again "
                "(`fstcn export --keep-plain --fast-graphs ...`) or remove them"
            )
    return chosen


@dataclass(frozen=True)
class ThreadSplit:
    """How the cores are shared: ONNX Runtime's intra-op threads (one pool per session, shared by
    concurrent runs) and FFmpeg's threads per decoded video."""

    cores: int
    intra_op: int
    decode: int
    chosen: tuple[str, ...]  # which of "intra_op", "decode" were chosen here (the settings said 0)

    def describe(self) -> str:
        def how(name: str) -> str:
            return "chosen" if name in self.chosen else "set"

        return (
            f"threads: {self.cores} cores; ONNX Runtime intra-op {self.intra_op} ({how('intra_op')}), "
            f"FFmpeg {self.decode} per video ({how('decode')})"
        )


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. a container's cpuset)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def thread_split(settings: Settings, cores: int | None = None) -> ThreadSplit:
    """The settings' thread counts, a 0 replaced from `cores` (default: `usable_cores()`).

    ONNX Runtime gets every core: its pool serves every concurrent run and inference is the larger share
    of a request. The decoders split the cores between the `max_concurrent_inferences` videos that may
    decode at once, so that concurrent decodes do not oversubscribe them (FFmpeg's own choice is a
    thread per core for every decoder)."""
    cores = cores if cores is not None else usable_cores()
    chosen = tuple(
        name
        for name, value in (("intra_op", settings.intra_op_threads), ("decode", settings.decode_threads))
        if value == 0
    )
    return ThreadSplit(
        cores=cores,
        intra_op=settings.intra_op_threads or cores,
        decode=settings.decode_threads or max(1, cores // settings.max_concurrent_inferences),
        chosen=chosen,
    )


def engine_from_settings(settings: Settings, recheck_of: Engine | None = None) -> Engine:
    """Load the configured model (raises `ModelLoadError`); with `recheck_of`, the recheck
    model instead, unbatched, on the providers that engine runs on (a GPU that did not load is then
    neither probed nor reported a second time)."""
    providers: list[str] | None
    threads = thread_split(settings)
    if recheck_of is not None:
        assert settings.recheck_model_path is not None
        path, providers, batching = settings.recheck_model_path, recheck_of.providers, None
    else:
        path, providers = served_model_path(settings), settings.provider_list
        batching = (
            BatchingOptions(max_batch_size=settings.batch_max_size, max_delay_s=settings.batch_max_delay_s)
            if settings.batching
            else None
        )
        logger.info(threads.describe())
    return Engine.load(
        path,
        providers=providers,
        intra_op_threads=threads.intra_op,
        trt_cache_dir=settings.trt_cache_dir,
        batching=batching,
    )


def recheck_from_settings(settings: Settings, engine: Engine) -> Recheck | None:
    """Load the recheck model, if one is configured, and check that it answers for the same classes
    with the same sampling as the served `engine` (raises `ModelLoadError`)."""
    if settings.recheck_model_path is None:
        return None
    exact = engine_from_settings(settings, recheck_of=engine)
    mismatched = [
        name for name in RECHECK_MUST_MATCH if getattr(engine.meta, name) != getattr(exact.meta, name)
    ]
    if mismatched:
        exact.close()
        raise ModelLoadError(
            f"recheck model {settings.recheck_model_path} does not match the served model: "
            f"different {', '.join(mismatched)}"
        )
    if exact.form not in EXACT_FORMS:
        exact.close()
        raise ModelLoadError(f"recheck model {settings.recheck_model_path} is not an exact-crops model")
    logger.info(
        "recheck: videos whose top-1 leads by less than %g are re-scored by %s",
        settings.recheck_margin,
        settings.recheck_model_path,
    )
    return Recheck(exact, settings.recheck_margin)


def check_model_files(settings: Settings) -> None:
    """Open the served model and the recheck model once on CPU and close them again (raises
    `ModelLoadError`): the files and their agreement are checked before workers each load them."""
    checked = Engine.load(served_model_path(settings), providers=[CPU])
    try:
        recheck = recheck_from_settings(settings, checked)  # on the CPU, as `checked`
    finally:
        checked.close()
    if recheck is not None:
        recheck.engine.close()


def video_limits(settings: Settings) -> VideoLimits:
    """The duration, frame and pixel limits of the settings, checked from the headers and while decoding."""
    return VideoLimits(
        max_duration_s=settings.max_duration_s, max_frames=settings.max_frames, max_pixels=settings.max_pixels
    )
