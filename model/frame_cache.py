"""Decode-once frame cache for training: every video's frames as a memory-mapped uint8 array.

Training reads a handful of frames per sample for tens of epochs; decoding the video each time would
make every epoch decode-bound. This module decodes each video once, every frame, with the core's decoder
(`fstcn.core.video.decode.decode_video`, the one the service decodes uploads with, so frames are resized
exactly as at serving time: short side = `resize_short`) and stores `<key>.npy` (uint8 (F, h, w, 3),
RGB) and `<key>.times.npy` (float64 (F,) seconds). Readers memory-map the frames, so a sample touches
only the frames it gathers. The key hashes the absolute path, size, modification time and
`resize_short`, so one cache directory can be shared by many runs and a changed file is decoded again.
Files are written to a temporary name and renamed, so an interrupted build never leaves a truncated
entry. Numpy + PyAV only (no torch): decoding runs in spawned worker processes.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the stored layout changes: old entries are then decoded again


@dataclass(frozen=True)
class CachedVideo:
    """One cached video: where its frames live and their timestamps (F,) in seconds."""

    source: str
    frames_path: str
    times: npt.NDArray[np.float64]
    height: int
    width: int

    @property
    def num_frames(self) -> int:
        return int(self.times.shape[0])

    @property
    def duration_s(self) -> float:
        """Time of the last frame (the first one is at 0.0)."""
        return float(self.times[-1])

    def frames(self) -> npt.NDArray[np.uint8]:
        """uint8 (F, h, w, 3) memory map of the frames (read-only)."""
        return np.load(self.frames_path, mmap_mode="r")  # type: ignore[no-any-return]


def cache_key(path: str | os.PathLike[str], resize_short: int) -> str:
    """Stable file stem for `path` decoded at `resize_short`; changes when the file changes."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    text = f"{CACHE_FORMAT}|{resolved}|{stat.st_size}|{stat.st_mtime_ns}|{resize_short}"
    return hashlib.sha1(text.encode()).hexdigest()[:20]


def _entry_paths(cache_dir: Path, key: str) -> tuple[Path, Path]:
    return cache_dir / f"{key}.npy", cache_dir / f"{key}.times.npy"


def _load_entry(source: str, cache_dir: Path, key: str) -> CachedVideo | None:
    frames_path, times_path = _entry_paths(cache_dir, key)
    if not (frames_path.exists() and times_path.exists()):
        return None
    try:
        times = np.load(times_path)
        frames = np.load(frames_path, mmap_mode="r")
    except (OSError, ValueError) as error:  # a corrupt entry is decoded again
        logger.warning("ignoring unreadable cache entry %s: %s", frames_path, error)
        return None
    if frames.ndim != 4 or frames.shape[0] != times.shape[0] or frames.dtype != np.uint8:
        return None
    return CachedVideo(
        source=source,
        frames_path=str(frames_path),
        times=times.astype(np.float64),
        height=int(frames.shape[1]),
        width=int(frames.shape[2]),
    )


def _save_atomic(path: Path, array: npt.NDArray[np.generic]) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        np.save(handle, array)
    os.replace(tmp, path)


def _decode_into_cache(source: str, cache_dir: str, key: str, resize_short: int) -> str | None:
    """Worker: decode `source` into the cache. Returns an error message instead of raising."""
    from fstcn.core.video.decode import decode_video

    try:
        decoded = decode_video(source, resize_short=resize_short, threads=1)
    except Exception as error:  # noqa: BLE001 - any decode failure only drops this one video
        return f"{type(error).__name__}: {error}"
    if decoded.frames.shape[0] < 2:
        return f"only {decoded.frames.shape[0]} decodable frame(s)"
    frames_path, times_path = _entry_paths(Path(cache_dir), key)
    # The frames go first: an entry counts as present only when both files exist.
    _save_atomic(frames_path, np.ascontiguousarray(decoded.frames, dtype=np.uint8))
    _save_atomic(times_path, np.asarray(decoded.times, dtype=np.float64))
    return None


def build_frame_cache(
    sources: Sequence[str | os.PathLike[str]],
    cache_dir: str | os.PathLike[str],
    *,
    resize_short: int,
    workers: int = 1,
    progress: Callable[[int], object] | None = None,
) -> tuple[list[CachedVideo | None], dict[str, str]]:
    """Decode every source not yet cached, then return one entry per source (None if undecodable).

    Returns (entries aligned with `sources`, {source: reason} for the videos that could not be
    decoded). `progress(n)` is called as videos complete (e.g. a tqdm bar's `update`); `workers` > 1
    decodes in that many spawned processes.
    """
    if resize_short < 1:
        raise ValueError(f"resize_short must be >= 1, got {resize_short}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    directory = Path(cache_dir)
    directory.mkdir(parents=True, exist_ok=True)
    names = [str(source) for source in sources]
    keys = [cache_key(name, resize_short) for name in names]
    entries: list[CachedVideo | None] = [
        _load_entry(n, directory, k) for n, k in zip(names, keys, strict=True)
    ]
    missing = [i for i, entry in enumerate(entries) if entry is None]
    if progress is not None and len(names) > len(missing):
        progress(len(names) - len(missing))
    failures: dict[str, str] = {}

    def finish(index: int, error: str | None) -> None:
        if error is None:
            entries[index] = _load_entry(names[index], directory, keys[index])
            if entries[index] is None:
                error = "cache entry missing after decoding"
        if error is not None:
            failures[names[index]] = error
            logger.warning("skipping %s: %s", names[index], error)
        if progress is not None:
            progress(1)

    if workers == 1 or len(missing) <= 1:
        for index in missing:
            finish(index, _decode_into_cache(names[index], str(directory), keys[index], resize_short))
    else:
        # spawn, not fork: the parent may hold torch/OpenMP threads that a forked child would inherit.
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            futures = {
                pool.submit(_decode_into_cache, names[i], str(directory), keys[i], resize_short): i
                for i in missing
            }
            for future in as_completed(futures):
                finish(futures[future], future.result())
    return entries, failures
