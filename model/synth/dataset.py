"""Writing a Synthetic Actions split in the UCF101 on-disk layout.

    DIR/<class>/v_<class>_g<NN>_c<NN>.<mp4|avi|webm>
    DIR/ucfTrainTestlist/classInd.txt          "1 wave" ... "10 stand_up"
    DIR/ucfTrainTestlist/trainlist01.txt       "wave/v_wave_g01_c01.mp4 1"   (--split train)
    DIR/ucfTrainTestlist/testlist01.txt        "wave/v_wave_g01_c01.mp4"     (--split test)
    DIR/masks/<class>/<video stem>.npz         figure boxes and masks          (--masks)
    DIR/synth.json                             arguments, generator version, one record per video

Train and test are separate runs into separate folders with different seeds. Video i of class c is
drawn from `numpy.random.SeedSequence(seed, spawn_key=(split, class, i))`, so a video does not depend
on the worker count, the order of work or the other classes; the split is part of the key, so even the
same seed gives different train and test videos. Video names follow UCF101: index i is clip
i % 7 + 1 of group i // 7 + 1 (groups carry no meaning here: every video is drawn independently).

A `stand_up` video is the `sit_down` video of the same per-video seed played backwards, frame for frame
(render, reverse, encode): one frame cannot tell the two classes apart, only the motion can.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fstcn.model.synth.render import MASK_STRIDE, figure_boxes, frame_order, render_frames, render_mask
from fstcn.model.synth.scene import Scene, sample_scene
from fstcn.model.synth.writer import encode_video

GENERATOR_NAME = "fstcn-synthetic-actions"
GENERATOR_VERSION = "1.0"
CLASSES = ("wave", "clap", "jumping_jack", "jump", "squat", "punch", "kick", "bow", "sit_down", "stand_up")
REVERSED_CLASSES = {"stand_up": "sit_down"}  # class -> the motion it plays backwards
SPLIT_KEYS = {"train": 1, "test": 2}
CLIPS_PER_GROUP = 7
SPLITS_DIRNAME = "ucfTrainTestlist"
MASKS_DIRNAME = "masks"


def video_seed(seed: int, split: str, class_name: str, index: int) -> np.random.SeedSequence:
    """The seed of video `index` of `class_name` in `split` of a dataset with user seed `seed`."""
    if split not in SPLIT_KEYS:
        raise ValueError(f"split must be one of {sorted(SPLIT_KEYS)}, got {split!r}")
    if class_name not in CLASSES:
        raise ValueError(f"unknown class {class_name!r}; expected one of {CLASSES}")
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    return np.random.SeedSequence(seed, spawn_key=(SPLIT_KEYS[split], CLASSES.index(class_name), index))


def class_scene(
    class_name: str, seed: np.random.SeedSequence | int, difficulty: float = 1.0
) -> tuple[Scene, bool]:
    """(scene, reverse): the scene of one video of `class_name`; reverse=True plays it backwards.

    `stand_up` samples exactly what `sit_down` samples for the same seed, and is played backwards.
    """
    if class_name not in CLASSES:
        raise ValueError(f"unknown class {class_name!r}; expected one of {CLASSES}")
    motion = REVERSED_CLASSES.get(class_name, class_name)
    scene = sample_scene(np.random.default_rng(seed), motion, difficulty)
    return scene, class_name in REVERSED_CLASSES


def render_class_video(
    class_name: str, seed: np.random.SeedSequence | int, difficulty: float = 1.0
) -> np.ndarray:
    """(F, H, W, 3) uint8 frames of one video, exactly as they go to the encoder."""
    from fstcn.model.synth.render import render_video

    scene, reverse = class_scene(class_name, seed, difficulty)
    return render_video(scene, reverse)


def video_stem(class_name: str, index: int) -> str:
    return f"v_{class_name}_g{index // CLIPS_PER_GROUP + 1:02d}_c{index % CLIPS_PER_GROUP + 1:02d}"


def mask_path(root: Path, video_relpath: str) -> Path:
    """Where --masks stored the figure masks of the video at `video_relpath` ("<class>/<file>")."""
    relative = Path(video_relpath)
    return Path(root) / MASKS_DIRNAME / relative.parent / (relative.stem + ".npz")


def load_masks(path: Path) -> dict[str, np.ndarray]:
    """A masks file: boxes (F, 4) float32 x0 y0 x1 y1 frame px; mask (F, ceil(H/s), ceil(W/s)) bool;
    stride (s), frame_size (H, W), fps."""
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


@dataclass(frozen=True)
class VideoRecord:
    """One written video. path is relative to the dataset root ("wave/v_wave_g01_c01.mp4")."""

    path: str
    label: int  # 1-based, as in classInd.txt
    class_name: str
    index: int
    frames: int
    fps: int
    width: int
    height: int
    container: str
    codec: str
    quality: int
    yaw_deg: float
    seconds: float  # wall time spent generating it


@dataclass(frozen=True)
class VideoJob:
    root: str
    class_name: str
    index: int
    seed: int
    split: str
    difficulty: float
    masks: bool


def write_class_video(job: VideoJob) -> VideoRecord:
    """Render, encode and (with masks) save one video; the file appears atomically (rename)."""
    started = time.perf_counter()
    root = Path(job.root)
    scene, reverse = class_scene(
        job.class_name, video_seed(job.seed, job.split, job.class_name, job.index), job.difficulty
    )
    stem = video_stem(job.class_name, job.index)
    relative = f"{job.class_name}/{stem}{scene.encoding.suffix}"
    target = root / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.stem}.partial{scene.encoding.suffix}")
    frames = encode_video(
        partial,
        render_frames(scene, reverse),
        fps=scene.fps,
        width=scene.width,
        height=scene.height,
        encoding=scene.encoding,
    )
    os.replace(partial, target)
    if job.masks:
        order = list(frame_order(scene, reverse))
        masks = np.stack([render_mask(scene, k) for k in order])  # (F, h, w)
        destination = mask_path(root, relative)
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial_masks = destination.with_name(f".{destination.stem}.partial.npz")
        np.savez_compressed(
            partial_masks,
            boxes=figure_boxes(scene)[order],
            mask=masks,
            stride=np.int64(MASK_STRIDE),
            frame_size=np.array([scene.height, scene.width], dtype=np.int64),
            fps=np.int64(scene.fps),
        )
        os.replace(partial_masks, destination)
    return VideoRecord(
        path=relative,
        label=CLASSES.index(job.class_name) + 1,
        class_name=job.class_name,
        index=job.index,
        frames=frames,
        fps=scene.fps,
        width=scene.width,
        height=scene.height,
        container=scene.encoding.container,
        codec=scene.encoding.codec,
        quality=scene.encoding.quality,
        yaw_deg=round(float(np.degrees(scene.yaw)), 1),
        seconds=round(time.perf_counter() - started, 4),
    )


def _run_jobs(jobs: list[VideoJob], workers: int) -> Iterator[VideoRecord]:
    if workers <= 1:
        for job in jobs:
            yield write_class_video(job)
        return
    import multiprocessing

    # spawn: a clean interpreter per worker (no forked PyAV/encoder state; the same on every OS)
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap_unordered(write_class_video, jobs, chunksize=1)


def write_split_files(root: Path, records: list[VideoRecord], split: str) -> None:
    """classInd.txt plus trainlist01.txt (--split train) or testlist01.txt (--split test)."""
    splits = Path(root) / SPLITS_DIRNAME
    splits.mkdir(parents=True, exist_ok=True)
    (splits / "classInd.txt").write_text("".join(f"{i + 1} {name}\n" for i, name in enumerate(CLASSES)))
    ordered = sorted(records, key=lambda r: (r.label, r.index))
    if split == "train":
        (splits / "trainlist01.txt").write_text("".join(f"{r.path} {r.label}\n" for r in ordered))
    else:
        (splits / "testlist01.txt").write_text("".join(f"{r.path}\n" for r in ordered))


def generate_dataset(
    out: Path | str,
    *,
    videos_per_class: int,
    seed: int,
    difficulty: float = 1.0,
    split: str = "train",
    workers: int = 2,
    masks: bool = False,
    classes: tuple[str, ...] = CLASSES,
    on_video: Callable[[VideoRecord], None] | None = None,
) -> list[VideoRecord]:
    """Write one split of Synthetic Actions to `out` (layout in the module docstring).

    `classes` restricts the classes written (tests); classInd.txt always lists all ten. `on_video` is
    called after each video (progress bars). Returns the records sorted by class and index.
    """
    if videos_per_class < 1:
        raise ValueError(f"videos_per_class must be >= 1, got {videos_per_class}")
    if difficulty < 0:
        raise ValueError(f"difficulty must be >= 0, got {difficulty}")
    if split not in SPLIT_KEYS:
        raise ValueError(f"split must be one of {sorted(SPLIT_KEYS)}, got {split!r}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    unknown = [name for name in classes if name not in CLASSES]
    if unknown:
        raise ValueError(f"unknown classes {unknown}; expected a subset of {CLASSES}")
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    jobs = [
        VideoJob(str(root), name, index, seed, split, float(difficulty), masks)
        for index in range(videos_per_class)
        for name in classes
    ]
    started = time.perf_counter()
    records: list[VideoRecord] = []
    for record in _run_jobs(jobs, workers):
        records.append(record)
        if on_video is not None:
            on_video(record)
    elapsed = time.perf_counter() - started
    records.sort(key=lambda r: (r.label, r.index))
    write_split_files(root, records, split)
    manifest = {
        "generator": GENERATOR_NAME,
        "version": GENERATOR_VERSION,
        "args": {
            "videos_per_class": videos_per_class,
            "seed": seed,
            "difficulty": difficulty,
            "split": split,
            "masks": masks,
            "classes": list(classes),
        },
        "classes": list(CLASSES),
        "reversed_classes": REVERSED_CLASSES,
        "videos": len(records),
        "frames": sum(r.frames for r in records),
        "workers": workers,
        "wall_seconds": round(elapsed, 2),
        "records": [asdict(r) for r in records],
    }
    (root / "synth.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return records
