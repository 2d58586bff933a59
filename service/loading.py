"""Loading what the settings name: the served model, the optional recheck model, the video limits.

`engine_from_settings` opens the configured model on the configured providers with the configured
batching; `recheck_from_settings` opens the recheck model on the providers the served engine really runs
on, and refuses one that would not answer the same question (other classes or sampling, or not an
exact-crops form); `check_model_files` opens both once on CPU, so that `fstcn serve --workers N` fails in
one line before any worker starts. Every failure is a `ModelLoadError` with a one-line reason. The app's
lifespan, `fstcn serve` and `fstcn predict` all load through here.
"""

from __future__ import annotations

import logging

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


def engine_from_settings(settings: Settings, recheck_of: Engine | None = None) -> Engine:
    """Load the configured model (raises `ModelLoadError`); with `recheck_of`, the recheck
    model instead, unbatched, on the providers that engine runs on (a GPU that did not load is then
    neither probed nor reported a second time)."""
    providers: list[str] | None
    if recheck_of is not None:
        assert settings.recheck_model_path is not None
        path, providers, batching = settings.recheck_model_path, recheck_of.providers, None
    else:
        path, providers = settings.model_path, settings.provider_list
        batching = (
            BatchingOptions(max_batch_size=settings.batch_max_size, max_delay_s=settings.batch_max_delay_s)
            if settings.batching
            else None
        )
    return Engine.load(
        path,
        providers=providers,
        intra_op_threads=settings.intra_op_threads,
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
    checked = Engine.load(settings.model_path, providers=[CPU])
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
