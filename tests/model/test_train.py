"""`fstcn train` on a tiny generated dataset: checkpoints and log, exact resume, DDP on two CPU ranks,
and the augmentation path (through `fstcn.core.clips`) and the frame cache."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fstcn.core.clips import network_inputs
from fstcn.core.meta import ModelMeta, SamplingParams
from fstcn.model.augment import AugmentConfig, random_square, training_frame, training_pair, validation_pairs
from fstcn.model.datasets import load_dataset
from fstcn.model.frame_cache import CachedVideo, build_frame_cache
from fstcn.model.train import (
    TrainConfig,
    TrainingSamples,
    VideoItem,
    learning_rate,
    reversal_labels,
    split_holdout,
    train,
)
from tests.videos import write_video

REPO = Path(__file__).resolve().parents[2]
CLASSES = ("left", "right")


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder layout: 2 classes x 3 short videos (train) and a separate 1-per-class test root."""
    root = tmp_path_factory.mktemp("tiny_dataset")
    for subset, count in (("train", 3), ("test", 1)):
        for label, name in enumerate(CLASSES):
            folder = root / subset / name
            folder.mkdir(parents=True)
            for index in range(count):
                fps = (25, 30, 15)[index % 3]
                write_video(folder / f"v{index}.mp4", fps=fps, seconds=1.2, width=64 + 16 * label, height=48)
    return root


@pytest.fixture(scope="module")
def whole_run(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    """The weights of the default tiny run, uninterrupted (what every resumed run must reproduce)."""
    out = tmp_path_factory.mktemp("whole")
    torch.set_num_threads(1)
    assert train(_config(tiny_dataset, out)).completed
    return _state(out)


def _config(dataset: Path, out: Path, **overrides: object) -> TrainConfig:
    values: dict[str, object] = {
        "data": str(dataset / "train"),
        "test_root": str(dataset / "test"),
        "dataset_kind": "folder",
        "out": str(out),
        "preset": "tiny",
        "epochs_stage1": 1,
        "epochs_stage2": 2,
        "batch_size": 2,
        "val_fraction": 0.34,  # 1 of 3 videos per class: 4 training videos, 2 steps per epoch
        "threads": 1,
        "progress": False,
        "seed": 7,
        "cache_dir": str(dataset / "cache"),
    }
    values.update(overrides)
    return TrainConfig(**values)  # type: ignore[arg-type]


def _log(out: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def _state(out: Path, name: str = "last.pt") -> dict[str, torch.Tensor]:
    from fstcn.model.checkpoint import load_checkpoint

    return load_checkpoint(out / name)["state_dict"]  # type: ignore[no-any-return]


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_single_process_run_writes_checkpoints_and_log(tiny_dataset: Path, tmp_path: Path) -> None:
    from fstcn.model.checkpoint import load_checkpoint

    result = train(_config(tiny_dataset, tmp_path / "run"))
    out = tmp_path / "run"
    assert result.completed and (result.stage, result.epoch) == (2, 2)
    epochs = [record for record in _log(out) if record["event"] == "epoch"]
    assert [(r["stage"], r["epoch"]) for r in epochs] == [(1, 1), (2, 1), (2, 2)]
    for record in epochs:
        assert record["steps"] == 2 and record["samples"] == 4
        assert np.isfinite(record["loss"]) and 0.0 <= record["accuracy"] <= 1.0
        assert 0.0 <= record["val_accuracy"] <= 1.0
    end = _log(out)[-1]
    assert end["event"] == "end" and end["completed"] is True and end["ranks_in_sync"] is True
    checkpoint = load_checkpoint(out / "last.pt")
    assert checkpoint["labels"] == list(CLASSES)
    assert checkpoint["epoch"] == 3
    assert checkpoint["extra"]["progress"] == {"stage": 2, "epochs_done": 2, "step": 0}
    meta = ModelMeta.from_json(checkpoint["extra"]["meta"])
    assert (meta.crop_size, meta.resize_short, meta.labels) == (32, 40, CLASSES)
    assert checkpoint["optimizer"] is not None
    assert (out / "best.pt").exists()
    # stage 1 trained the auxiliary head (stage 2 leaves it alone with the default aux_weight 0)
    from fstcn.model.network import fstcn

    torch.manual_seed(7)
    initial = fstcn(preset="tiny", num_classes=2).state_dict()
    trained = checkpoint["state_dict"]
    assert not torch.equal(trained["aux_classifier.3.weight"], initial["aux_classifier.3.weight"])
    assert not torch.equal(trained["classifier.weight"], initial["classifier.weight"])


@pytest.mark.parametrize("stop_after_steps", [2 + 2, 2 + 1], ids=["epoch_boundary", "mid_epoch"])
def test_resume_continues_exactly(
    tiny_dataset: Path, tmp_path: Path, whole_run: dict[str, torch.Tensor], stop_after_steps: int
) -> None:
    stopped = train(_config(tiny_dataset, tmp_path / "split", stop_after_steps=stop_after_steps))
    assert not stopped.completed
    log = _log(tmp_path / "split")
    assert log[-1]["completed"] is False
    resumed = train(_config(tiny_dataset, tmp_path / "split", resume=True))
    assert resumed.completed
    _assert_same_weights(whole_run, _state(tmp_path / "split"))
    epochs = [r for r in _log(tmp_path / "split") if r["event"] == "epoch" and not r.get("partial")]
    assert [(r["stage"], r["epoch"]) for r in epochs] == [(1, 1), (2, 1), (2, 2)]


def test_time_budget_stops_cleanly_and_resumes(
    tiny_dataset: Path, tmp_path: Path, whole_run: dict[str, torch.Tensor]
) -> None:
    out = tmp_path / "budget"
    stopped = train(_config(tiny_dataset, out, max_minutes=1e-6))  # spent before the first step
    assert not stopped.completed
    from fstcn.model.checkpoint import load_checkpoint

    assert load_checkpoint(out / "last.pt")["extra"]["progress"] == {"stage": 1, "epochs_done": 0, "step": 0}
    assert _log(out)[-1]["completed"] is False
    assert train(_config(tiny_dataset, out, resume=True)).completed
    _assert_same_weights(whole_run, _state(out))


def test_dataloader_workers_do_not_change_the_run(
    tiny_dataset: Path, tmp_path: Path, whole_run: dict[str, torch.Tensor]
) -> None:
    """Sample randomness is keyed by (seed, stage, epoch, index), not by the process that draws it."""
    train(_config(tiny_dataset, tmp_path / "workers", workers=1))
    _assert_same_weights(whole_run, _state(tmp_path / "workers"))


def test_resume_without_checkpoint_fails(tiny_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="last.pt"):
        train(_config(tiny_dataset, tmp_path / "none", resume=True))


def test_spatial_only_training_checkpoints_its_paths(tiny_dataset: Path, tmp_path: Path) -> None:
    from fstcn.model.checkpoint import load_checkpoint

    train(_config(tiny_dataset, tmp_path / "spatial", paths="spatial", epochs_stage2=1))
    checkpoint = load_checkpoint(tmp_path / "spatial" / "last.pt")
    assert checkpoint["config"]["paths"] == "spatial"
    assert not any(name.startswith("temporal.") for name in checkpoint["state_dict"])


@pytest.mark.slow  # two torch processes under torchrun: ~10-25 s on the 2-core box
def test_ddp_two_cpu_ranks_end_with_identical_weights(tiny_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "fstcn.cli",
        "train",
        "--data",
        str(tiny_dataset / "train"),
        "--test-root",
        str(tiny_dataset / "test"),
        "--dataset-kind",
        "folder",
        "--out",
        str(out),
        "--preset",
        "tiny",
        "--epochs-stage1",
        "1",
        "--epochs-stage2",
        "1",
        "--batch-size",
        "1",
        "--val-fraction",
        "0.34",
        "--threads",
        "1",
        "--seed",
        "3",
        "--aux-weight",  # the auxiliary head joins stage 2: DDP must see it used
        "0.1",
        "--cache-dir",
        str(tmp_path / "ddp-cache"),
        "--no-progress",
    ]
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": pythonpath}
    completed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    log = _log(out)
    epochs = [r for r in log if r["event"] == "epoch"]
    # 4 training videos over 2 ranks at batch 1: 2 steps per rank, 4 samples per epoch in all
    assert [(r["stage"], r["steps"], r["samples"]) for r in epochs] == [(1, 2, 4), (2, 2, 4)]
    end = log[-1]
    assert len(end["weight_digests"]) == 2 and end["ranks_in_sync"] is True
    # the cache was built once (by rank 0) and holds one entry per video
    assert len(list((tmp_path / "ddp-cache").glob("*.times.npy"))) == 6


def _write_motion_video(path: Path, moving: bool, phase: int) -> None:
    """48x64 frames at 25 fps: a bright square on a dark, static texture that sweeps right 3 px per frame
    (`moving`) or stays put; `phase` shifts where it starts."""
    import av

    background = np.random.default_rng(phase).integers(0, 60, (48, 64, 3), dtype=np.uint8)
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(40):
            frame = background.copy()
            x = (4 * phase + (3 * index if moving else 0)) % 52
            frame[18:30, x : x + 12] = (240, 230, 60)
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuv420p")
            for packet in stream.encode(video_frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture(scope="module")
def motion_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder layout: 3 videos of a sweeping square ("moving") and 3 of a square that stays ("still")."""
    root = tmp_path_factory.mktemp("motion_dataset")
    for name in ("moving", "still"):
        (root / name).mkdir()
        for phase in range(3):
            _write_motion_video(root / name / f"v{phase}.mp4", name == "moving", phase)
    return root


def _fit(dataset: Path, out: Path, lr: float, epochs: int) -> list[dict[str, object]]:
    train(
        TrainConfig(
            data=str(dataset),
            out=str(out),
            dataset_kind="folder",
            holdout=0.0,  # every video is a training video: the question is whether they are fitted
            preset="tiny",
            epochs_stage1=0,
            epochs_stage2=epochs,
            batch_size=6,
            lr=lr,
            warmup_epochs=0.0,
            label_smoothing=0.0,
            val_fraction=0.0,
            threads=1,
            progress=False,
            seed=1,
            cache_dir=str(out.parent / "motion-cache"),
        )
    )
    return [record for record in _log(out) if record["event"] == "epoch"]


def test_training_fits_a_handful_of_videos(motion_dataset: Path, tmp_path: Path) -> None:
    """Learning works: six videos of two very different motions are fitted. The training loss ends far
    below chance (ln 2 = 0.69 for two classes) and the trained model, scored as the service scores it,
    gets every video right. The same run without learning (learning rate 0) meets neither."""
    from fstcn.model.evaluate import evaluate_samples
    from fstcn.model.runner import TorchRunner

    dataset = load_dataset("folder", motion_dataset, 1, "train", holdout=0.0)

    def fitted(out: Path, lr: float, epochs: int) -> tuple[float, float]:
        """(mean training loss of the last epochs, video accuracy of the trained model)."""
        records = _fit(motion_dataset, out, lr=lr, epochs=epochs)
        losses = [float(record["loss"]) for record in records]  # type: ignore[arg-type]
        runner = TorchRunner.from_checkpoint(out / "last.pt", device="cpu")
        report = evaluate_samples(dataset.samples, dataset.labels, runner, progress=False)
        return float(np.mean(losses[-5:])), float(report.result("sci", 18)["top1"])

    loss, accuracy = fitted(tmp_path / "fit", lr=1e-2, epochs=40)
    assert loss < 0.35 and accuracy == 1.0
    loss, accuracy = fitted(tmp_path / "frozen", lr=0.0, epochs=5)
    assert loss > 0.6 and accuracy < 1.0


# ---- pieces ----------------------------------------------------------------------------------------


def test_holdout_split_is_seeded_per_class_and_keeps_a_training_video() -> None:
    items = [VideoItem(f"v{i}", i % 3) for i in range(30)]
    train_a, val_a = split_holdout(items, 0.2, seed=1)
    train_b, val_b = split_holdout(items, 0.2, seed=1)
    assert (train_a, val_a) == (train_b, val_b)
    assert sorted(train_a + val_a) == list(range(30))
    assert [sum(items[i].label == c for i in val_a) for c in range(3)] == [2, 2, 2]
    assert split_holdout(items, 0.2, seed=2)[1] != val_a
    single = [VideoItem("a", 0), VideoItem("b", 1)]
    assert split_holdout(single, 0.5, seed=0) == ([0, 1], [])


def test_learning_rate_warms_up_then_decays() -> None:
    lrs = [learning_rate(step, 100, 1.0, 10, "cosine") for step in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False))
    assert lrs[-1] < 0.01
    steps = [learning_rate(step, 100, 1.0, 0, "step") for step in (0, 49, 50, 75, 99)]
    assert steps == pytest.approx([1.0, 1.0, 0.1, 0.01, 0.01])


def _meta(crop: int = 16, short: int = 20) -> ModelMeta:
    sampling = SamplingParams(clip_length=3, stride=2, diff_offset=3, num_clips=2)
    return ModelMeta(
        name="t",
        version="0",
        preset="tiny",
        labels=("a", "b"),
        sampling=sampling,
        resize_short=short,
        crop_size=crop,
    )


def _frames(count: int = 20, height: int = 20, width: int = 28) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(count, height, width, 3), dtype=np.uint8)
    return frames, np.arange(count) / 25.0


def test_unscaled_unflipped_training_pair_equals_the_serving_inputs() -> None:
    """With scale 1 and no flip/jitter the training sample is a crop of exactly what serving computes."""
    frames, times = _frames(height=16, width=16)
    meta = _meta(crop=16, short=16)
    config = AugmentConfig(scale_min=1.0, scale_max=1.0, flip=False, temporal_jitter=False)
    appearance, motion = training_pair(frames, times, meta, np.random.default_rng(0), config)
    assert appearance.shape == (3, 16, 16) and motion.shape == (3, 3, 16, 16)
    # serving computes the same clip (the middle one when the video is 1 span long: t0 = latest / 2)
    from fstcn.core.clips import ClipPlan, clip_pair_times, gather_clip_pairs

    start = max(0.0, times[-1] - meta.sampling.span_s) / 2
    clip_times, diff_times = clip_pair_times(start, meta.sampling)
    plan = ClipPlan(np.array([start]), clip_times[None], diff_times[None])
    for position in range(3):
        app, mot = gather_clip_pairs(frames, times, plan, position)
        served_app, served_mot = network_inputs(app, mot, meta, num_crops=1)
        if np.array_equal(served_app[0], appearance.numpy()):
            np.testing.assert_array_equal(served_mot[0], motion.numpy())
            break
    else:
        pytest.fail("the training appearance frame is none of the clip's frames")


def test_training_samples_are_augmented_and_normalised_like_serving() -> None:
    frames, times = _frames()
    meta = _meta()
    config = AugmentConfig()
    outputs = [training_pair(frames, times, meta, np.random.default_rng(seed), config) for seed in range(6)]
    for appearance, motion in outputs:
        assert appearance.shape == (3, 16, 16) and appearance.dtype == torch.float32
        assert motion.shape == (3, 3, 16, 16)
        # value ranges of network_inputs' normalisation: (x/255 - 0.5)/0.25 and d/255*4
        assert appearance.min() >= -2.0 - 1e-5 and appearance.max() <= 2.0 + 1e-5
        assert motion.abs().max() <= 4.0 + 1e-5
    assert not torch.equal(outputs[0][0], outputs[1][0])  # different seeds, different samples
    same = training_pair(frames, times, meta, np.random.default_rng(3), config)
    assert torch.equal(same[0], outputs[3][0]) and torch.equal(same[1], outputs[3][1])
    frame = training_frame(frames, times, meta, np.random.default_rng(0), config)
    assert frame.shape == (3, 16, 16)


def test_flipped_square_is_the_mirror_image() -> None:
    frames, times = _frames(height=16, width=16)
    meta = _meta(crop=16, short=16)
    plain = AugmentConfig(scale_min=1.0, scale_max=1.0, flip=False)
    flipped = AugmentConfig(scale_min=1.0, scale_max=1.0, flip=True)
    for seed in range(8):  # find a seed that flips; the other random draws are the same
        box, _ = random_square(16, 16, np.random.default_rng(seed), flipped)
        if box.flip:
            break
    a = training_frame(frames, times, meta, np.random.default_rng(seed), plain)
    b = training_frame(frames, times, meta, np.random.default_rng(seed), flipped)
    torch.testing.assert_close(b, a.flip(-1))


def test_random_square_stays_inside_the_frame() -> None:
    rng = np.random.default_rng(0)
    config = AugmentConfig(scale_min=0.8, scale_max=1.0)
    for _ in range(200):
        box, side = random_square(40, 53, rng, config)
        assert 32 <= side <= 40
        assert 0 <= box.top <= 40 - side and 0 <= box.left <= 53 - side


def test_validation_pairs_are_the_serving_centre_crop() -> None:
    frames, times = _frames()
    meta = _meta()
    appearance, motion = validation_pairs(frames, times, meta, num_clips=2)
    from fstcn.core.clips import gather_clip_pairs, plan_clip_pairs

    plan = plan_clip_pairs(0.0, float(times[-1]), meta.sampling, 2)
    served = network_inputs(*gather_clip_pairs(frames, times, plan), meta, num_crops=1)
    np.testing.assert_array_equal(appearance.numpy(), served[0])
    np.testing.assert_array_equal(motion.numpy(), served[1])


def test_frame_cache_decodes_once_and_skips_broken_files(tmp_path: Path) -> None:
    good = write_video(tmp_path / "good.mp4", fps=25, seconds=0.6, width=64, height=48)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    entries, failures = build_frame_cache([good, broken], tmp_path / "cache", resize_short=24)
    assert entries[1] is None and str(broken) in failures
    entry = entries[0]
    assert entry is not None and entry.num_frames == 15 and (entry.height, entry.width) == (24, 32)
    frames = entry.frames()
    assert isinstance(frames, np.memmap) and frames.dtype == np.uint8 and frames.shape == (15, 24, 32, 3)
    assert entry.times[0] == 0.0 and entry.times[-1] == pytest.approx(14 / 25)
    mtime = Path(entry.frames_path).stat().st_mtime_ns
    again, _ = build_frame_cache([good], tmp_path / "cache", resize_short=24)
    assert (
        again[0] is not None and Path(again[0].frames_path).stat().st_mtime_ns == mtime
    )  # not decoded again
    other, _ = build_frame_cache([good], tmp_path / "cache", resize_short=20)
    assert other[0] is not None and other[0].frames_path != entry.frames_path
    # decoding in spawned worker processes stores the same frames
    pooled, pooled_failures = build_frame_cache([broken, good], tmp_path / "pool", resize_short=24, workers=2)
    assert pooled[0] is None and list(pooled_failures) == [str(broken)]
    assert pooled[1] is not None
    np.testing.assert_array_equal(pooled[1].frames(), frames)
    np.testing.assert_array_equal(pooled[1].times, entry.times)


def test_config_rejects_bad_values(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="paths"):
        TrainConfig(data=".", out=str(tmp_path), paths="both-ish")
    with pytest.raises(ValueError, match="scale_min"):
        TrainConfig(data=".", out=str(tmp_path), scale_min=0.0)
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(data=".", out=str(tmp_path), optimizer="lbfgs")
    assert dataclasses.asdict(TrainConfig(data=".", out="x"))["optimizer"] == "adamw"


def test_init_from_starts_from_the_checkpoint_weights(tiny_dataset: Path, tmp_path: Path) -> None:
    """--init-from loads the weights, then trains with a fresh schedule: with a zero learning rate the
    parameters stay those of the source checkpoint (BatchNorm running statistics still move)."""
    source = tmp_path / "source"
    train(_config(tiny_dataset, source, epochs_stage2=1))
    tuned = tmp_path / "tuned"
    train(_config(tiny_dataset, tuned, init_from=(str(source / "last.pt"),), epochs_stage1=0, lr=0.0))
    before, after = _state(source), _state(tuned)
    parameters = [name for name in before if not name.rsplit(".", 1)[-1].startswith(("running_", "num_"))]
    assert parameters
    for name in parameters:
        assert torch.equal(before[name], after[name]), name
    fresh = tmp_path / "fresh"
    train(_config(tiny_dataset, fresh, epochs_stage1=0, lr=0.0, seed=8))
    assert not all(torch.equal(before[name], _state(fresh)[name]) for name in parameters)


def test_init_from_copies_what_fits_and_names_the_rest(
    tiny_dataset: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A temporal-only run started from a both-paths model: the shared lower SCL and the temporal path are
    copied, the fusion FC (half the inputs now) starts fresh and is named in the log."""
    source = tmp_path / "source"
    train(_config(tiny_dataset, source, epochs_stage2=1))
    tuned = tmp_path / "tuned"
    with caplog.at_level(logging.INFO, logger="fstcn.model.train"):
        train(
            _config(
                tiny_dataset,
                tuned,
                init_from=(str(source / "last.pt"),),
                epochs_stage1=0,
                lr=0.0,
                paths="temporal",
            )
        )
    before, after = _state(source), _state(tuned)
    assert not any(name.startswith("spatial.") for name in after)
    for name in ("lower.conv1.conv.weight", "temporal.tcl.branches.0.0.weight", "temporal.tp.P"):
        assert torch.equal(before[name], after[name]), name
    assert before["fusion.0.weight"].shape != after["fusion.0.weight"].shape
    message = next(r.getMessage() for r in caplog.records if "tensors copied" in r.getMessage())
    assert "freshly initialised: fusion.0.weight" in message

    # Two files: each tensor comes from the first that has it in that shape, the rest from the next.
    trained = tmp_path / "trained"  # the temporal-only run again, now with a learning rate
    train(
        _config(
            tiny_dataset, trained, init_from=(str(source / "last.pt"),), epochs_stage1=0, paths="temporal"
        )
    )
    temporal = _state(trained)
    assert not torch.equal(temporal["temporal.fc.0.weight"], before["temporal.fc.0.weight"])
    merged = tmp_path / "merged"
    train(
        _config(
            tiny_dataset,
            merged,
            init_from=(str(trained / "last.pt"), str(source / "last.pt")),
            epochs_stage1=0,
            lr=0.0,
        )
    )
    result = _state(merged)
    assert torch.equal(result["temporal.fc.0.weight"], temporal["temporal.fc.0.weight"])
    assert torch.equal(result["lower.conv1.conv.weight"], temporal["lower.conv1.conv.weight"])
    assert torch.equal(result["spatial.fc.0.weight"], before["spatial.fc.0.weight"])
    assert torch.equal(result["fusion.0.weight"], before["fusion.0.weight"])


def test_init_from_other_labels_copies_all_but_the_classifiers(tiny_dataset: Path, tmp_path: Path) -> None:
    """Transfer: a checkpoint of other classes gives the network, not its per-class layers."""
    source = tmp_path / "source"
    train(_config(tiny_dataset, source, epochs_stage2=1))
    checkpoint = torch.load(source / "last.pt", weights_only=True)
    checkpoint["labels"] = [f"other_{label}" for label in checkpoint["labels"]]
    torch.save(checkpoint, tmp_path / "other.pt")
    tuned = tmp_path / "tuned"
    train(_config(tiny_dataset, tuned, init_from=(str(tmp_path / "other.pt"),), epochs_stage1=0, lr=0.0))
    before, after = _state(source), _state(tuned)
    assert torch.equal(before["temporal.fc.0.weight"], after["temporal.fc.0.weight"])
    assert torch.equal(before["fusion.0.weight"], after["fusion.0.weight"])
    assert not torch.equal(before["classifier.weight"], after["classifier.weight"])
    assert not torch.equal(before["aux_classifier.3.weight"], after["aux_classifier.3.weight"])


def test_freeze_keeps_those_parameters_and_their_norm_statistics(tiny_dataset: Path, tmp_path: Path) -> None:
    source = tmp_path / "source"
    train(_config(tiny_dataset, source, epochs_stage2=1))
    tuned = tmp_path / "tuned"
    train(
        _config(
            tiny_dataset,
            tuned,
            init_from=(str(source / "last.pt"),),
            freeze=("lower", "temporal"),
            epochs_stage1=0,
            lr=1e-2,
        )
    )
    before, after = _state(source), _state(tuned)
    frozen = [name for name in before if name.startswith(("lower.", "temporal."))]
    assert any("running_mean" in name for name in frozen)  # BatchNorm statistics are covered too
    for name in frozen:
        assert torch.equal(before[name], after[name]), name
    assert not torch.equal(before["spatial.fc.0.weight"], after["spatial.fc.0.weight"])
    with pytest.raises(ValueError, match="no such module"):
        train(_config(tiny_dataset, tmp_path / "typo", freeze=("lowr",), epochs_stage1=0))
    with pytest.raises(ValueError, match="nothing to train"):
        train(
            _config(
                tiny_dataset,
                tmp_path / "all",
                freeze=("lower", "spatial", "temporal", "fusion", "classifier", "aux_classifier"),
                epochs_stage1=0,
            )
        )


def test_init_from_and_resume_exclude_each_other(tiny_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exclude each other"):
        _config(tiny_dataset, tmp_path, resume=True, init_from=("x.pt",))


def test_reversed_samples_play_the_video_backwards_under_the_paired_label(tmp_path: Path) -> None:
    """--reverse-pair: a video of label 0 is also a label-1 sample whose V_diff runs the other way."""
    count = 20
    brightening = np.broadcast_to(  # frame k is grey level 10 k: forward V_diff > 0, backward < 0
        (10 * np.arange(count, dtype=np.uint8))[:, None, None, None], (count, 20, 20, 3)
    ).copy()
    np.save(tmp_path / "frames.npy", brightening)
    times = np.arange(count) / 25.0
    video = CachedVideo("v.mp4", str(tmp_path / "frames.npy"), times, 20, 20)
    config = AugmentConfig(scale_min=1.0, scale_max=1.0, flip=False, temporal_jitter=False)
    meta = _meta(crop=16, short=20)
    samples = TrainingSamples([video, video], [0, 2], meta, config, "pair", seed=1, reversed_as={0: 1, 1: 0})
    assert len(samples) == 3  # both videos as they are, the label-0 video once more backwards
    _, forward_motion, forward_label = samples[0]
    _, backward_motion, backward_label = samples[2]
    assert (forward_label.item(), samples[1][2].item(), backward_label.item()) == (0, 2, 1)
    assert forward_motion.min() > 0 and backward_motion.max() < 0
    np.testing.assert_allclose(backward_motion.numpy(), -forward_motion.numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="mode pair"):
        TrainingSamples([video], [0], meta, config, "frame", seed=1, reversed_as={0: 1, 1: 0})


def test_reverse_pairs_name_two_classes_each_once(tmp_path: Path) -> None:
    assert reversal_labels(["sit:stand"], ["wave", "sit", "stand"]) == {1: 2, 2: 1}
    assert reversal_labels(["sit:stand", "wave:wave"], ["wave", "sit", "stand"]) == {0: 0, 1: 2, 2: 1}
    with pytest.raises(ValueError, match="no class jump"):
        reversal_labels(["sit:jump"], ["sit", "stand"])
    with pytest.raises(ValueError, match="paired twice"):
        reversal_labels(["sit:stand", "sit:wave"], ["sit", "stand", "wave"])
    with pytest.raises(ValueError, match="paired twice"):
        reversal_labels(["sit:sit", "sit:stand"], ["sit", "stand"])
    for bad in ("sit", ":", "sit:", "a:b:c"):
        with pytest.raises(ValueError, match="reverse-pair"):
            TrainConfig(data=".", out=str(tmp_path), reverse_pairs=(bad,))


def test_reverse_pair_run_trains_on_the_reversed_copies(tiny_dataset: Path, tmp_path: Path) -> None:
    result = train(
        _config(tiny_dataset, tmp_path, epochs_stage1=0, epochs_stage2=1, reverse_pairs=("left:right",))
    )
    assert result.completed
    # 4 training videos + 4 reversed copies, batch 2: 4 steps in the one stage-2 epoch
    assert [entry["steps"] for entry in _log(tmp_path) if entry.get("stage") == 2][-1] == 4


def test_spatial_path_dropout_changes_the_run(
    tiny_dataset: Path, tmp_path: Path, whole_run: dict[str, torch.Tensor]
) -> None:
    assert train(_config(tiny_dataset, tmp_path, drop_spatial_path=0.5)).completed
    dropped = _state(tmp_path)
    fusion = [name for name in whole_run if name.startswith("fusion")]
    assert not all(torch.equal(dropped[name], whole_run[name]) for name in fusion)
    with pytest.raises(ValueError, match="drop_spatial_path"):
        TrainConfig(data=".", out=str(tmp_path), drop_spatial_path=1.0)
