"""fstcn.model.datasets on tiny fake trees in the official UCF101 / HMDB51 formats and plain folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from fstcn.model.datasets import (
    DatasetSplit,
    VideoSample,
    detect_kind,
    load_dataset,
    load_folder,
    load_ucf101,
)


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def _ucf_tree(root: Path, *, splits: Path | None = None, ext: str = ".avi") -> Path:
    """Two classes, three groups; official CRLF list files."""
    splits = splits if splits is not None else root / "ucfTrainTestlist"
    splits.mkdir(parents=True)
    (splits / "classInd.txt").write_text("1 ApplyEyeMakeup\r\n2 Archery\r\n")
    train, test = [], []
    for index, name in ((1, "ApplyEyeMakeup"), (2, "Archery")):
        for group in (1, 2, 3):
            video = f"v_{name}_g{group:02d}_c01{ext}"
            _touch(root / name / video)
            # the list files always say .avi (the generator may write .mp4 and list its real name)
            listed = f"{name}/v_{name}_g{group:02d}_c01.avi"
            if group == 1:
                test.append(listed)
            else:
                train.append(f"{listed} {index}")
    (splits / "trainlist01.txt").write_text("\r\n".join(train) + "\r\n")
    (splits / "testlist01.txt").write_text("\r\n".join(test) + "\r\n")
    return splits


def test_ucf101_train_and_test_lists(tmp_path: Path) -> None:
    _ucf_tree(tmp_path)
    samples, labels = load_ucf101(tmp_path, 1, "train")
    assert labels == ["ApplyEyeMakeup", "Archery"]
    assert [(s.path.name, s.label_index, s.label) for s in samples] == [
        ("v_ApplyEyeMakeup_g02_c01.avi", 0, "ApplyEyeMakeup"),
        ("v_ApplyEyeMakeup_g03_c01.avi", 0, "ApplyEyeMakeup"),
        ("v_Archery_g02_c01.avi", 1, "Archery"),
        ("v_Archery_g03_c01.avi", 1, "Archery"),
    ]
    test = load_dataset("ucf101", tmp_path, 1, "test")
    assert isinstance(test, DatasetSplit)
    assert test.samples == [
        VideoSample(tmp_path / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g01_c01.avi", 0, "ApplyEyeMakeup"),
        VideoSample(tmp_path / "Archery" / "v_Archery_g01_c01.avi", 1, "Archery"),
    ]


@pytest.mark.parametrize("ext", [".mp4", ".webm"])
def test_ucf101_accepts_any_video_extension(tmp_path: Path, ext: str) -> None:
    _ucf_tree(tmp_path, ext=ext)
    samples, _ = load_ucf101(tmp_path, 1, "test")
    assert [s.path.suffix for s in samples] == [ext, ext]


def test_ucf101_splits_dir_beside_root_or_given(tmp_path: Path) -> None:
    root = tmp_path / "UCF-101"
    _ucf_tree(root, splits=tmp_path / "ucfTrainTestlist")
    assert len(load_ucf101(root, 1, "train").samples) == 4
    other = tmp_path / "elsewhere"
    root2 = tmp_path / "data2"
    _ucf_tree(root2, splits=other)
    assert len(load_dataset("ucf101", root2, 1, "test", splits_dir=other).samples) == 2
    assert detect_kind(root2, splits_dir=other) == "ucf101"


def test_ucf101_errors(tmp_path: Path) -> None:
    splits = _ucf_tree(tmp_path)
    with pytest.raises(ValueError, match="trainlist02"):
        load_ucf101(tmp_path, 2, "train")
    (splits / "testlist01.txt").write_text("Bowling/v_Bowling_g01_c01.avi\n")
    with pytest.raises(ValueError, match="unknown class 'Bowling'"):
        load_ucf101(tmp_path, 1, "test")
    (splits / "testlist01.txt").write_text("Archery/v_Archery_g09_c01.avi\n")
    with pytest.raises(ValueError, match="not found"):
        load_ucf101(tmp_path, 1, "test")
    (splits / "trainlist01.txt").write_text("Archery/v_Archery_g02_c01.avi 1\n")
    with pytest.raises(ValueError, match="folder"):
        load_ucf101(tmp_path, 1, "train")
    with pytest.raises(ValueError, match="classInd"):
        load_ucf101(tmp_path / "ApplyEyeMakeup" / "nothing", 1, "train")
    with pytest.raises(ValueError, match="subset"):
        load_ucf101(tmp_path, 1, "val")  # type: ignore[arg-type]


def test_ucf101_bad_class_index(tmp_path: Path) -> None:
    splits = _ucf_tree(tmp_path)
    (splits / "classInd.txt").write_text("1 ApplyEyeMakeup\n3 Archery\n")
    with pytest.raises(ValueError, match="1..2"):
        load_ucf101(tmp_path, 1, "train")


def _hmdb_tree(root: Path, splits: Path) -> None:
    splits.mkdir(parents=True)
    for label in ("wave", "brush_hair"):
        lines = []
        for number, tag in enumerate((1, 1, 2, 0)):
            name = f"{label}_clip_{number}.avi"
            _touch(root / label / name)
            lines.append(f"{name} {tag} ")  # the official files end lines with a blank
        (splits / f"{label}_test_split1.txt").write_text("\n".join(lines) + "\n")
        (splits / f"{label}_test_split2.txt").write_text(f"{label}_clip_3.avi 2 \n{label}_clip_0.avi 1\n")


def test_hmdb51_split_tags(tmp_path: Path) -> None:
    root = tmp_path / "hmdb51"
    _hmdb_tree(root, root / "testTrainMulti_7030_splits")
    assert detect_kind(root) == "hmdb51"
    train = load_dataset("auto", root, 1, "train")
    assert train.labels == ["brush_hair", "wave"]
    assert [(s.path.name, s.label_index) for s in train.samples] == [
        ("brush_hair_clip_0.avi", 0),
        ("brush_hair_clip_1.avi", 0),
        ("wave_clip_0.avi", 1),
        ("wave_clip_1.avi", 1),
    ]
    test = load_dataset("hmdb51", root, 1, "test")
    assert [(s.path.name, s.label) for s in test.samples] == [
        ("brush_hair_clip_2.avi", "brush_hair"),
        ("wave_clip_2.avi", "wave"),
    ]
    assert [s.path.name for s in load_dataset("hmdb51", root, 2, "test").samples] == [
        "brush_hair_clip_3.avi",
        "wave_clip_3.avi",
    ]


def test_hmdb51_given_splits_dir_and_errors(tmp_path: Path) -> None:
    root = tmp_path / "videos"
    splits = tmp_path / "my_splits"
    _hmdb_tree(root, splits)
    assert len(load_dataset("hmdb51", root, 1, "train", splits_dir=splits).samples) == 4
    with pytest.raises(ValueError, match="split3"):
        load_dataset("hmdb51", root, 3, "train", splits_dir=splits)
    (splits / "wave_test_split1.txt").write_text("wave_clip_0.avi train\n")
    with pytest.raises(ValueError, match="malformed"):
        load_dataset("hmdb51", root, 1, "train", splits_dir=splits)
    (splits / "wave_test_split1.txt").write_text("wave_missing.avi 1\n")
    with pytest.raises(ValueError, match="not found"):
        load_dataset("hmdb51", root, 1, "train", splits_dir=splits)
    (splits / "jump_test_split1.txt").write_text("jump_0.avi 1\n")
    with pytest.raises(ValueError, match="class folder"):
        load_dataset("hmdb51", root, 1, "train", splits_dir=splits)


def _folder_tree(root: Path, per_class: int = 5) -> None:
    for label in ("b_run", "a_walk"):
        for number in range(per_class):
            _touch(root / label / f"{number:02d}.mp4")
    _touch(root / "a_walk" / "notes.txt")  # not a video
    (root / "empty").mkdir()


def test_folder_holdout_is_deterministic_and_disjoint(tmp_path: Path) -> None:
    _folder_tree(tmp_path)
    assert detect_kind(tmp_path) == "folder"
    train = load_dataset("auto", tmp_path, 1, "train", holdout=0.4, seed=3)
    test = load_dataset("folder", tmp_path, 1, "test", holdout=0.4, seed=3)
    assert train.labels == test.labels == ["a_walk", "b_run"]
    assert len(train.samples) == 6 and len(test.samples) == 4  # 2 of 5 per class held out
    assert not {s.path for s in train.samples} & {s.path for s in test.samples}
    for sample in train.samples + test.samples:
        assert sample.path.parent.name == sample.label == train.labels[sample.label_index]
    again = load_folder(tmp_path, 1, "test", holdout=0.4, seed=3)
    assert again.samples == test.samples
    other = {s.path for s in load_folder(tmp_path, 1, "test", holdout=0.4, seed=4).samples}
    other |= {s.path for s in load_folder(tmp_path, 1, "test", holdout=0.4, seed=5).samples}
    assert other != {s.path for s in test.samples}  # the seed matters


def test_folder_small_class_keeps_one_for_each_side(tmp_path: Path) -> None:
    _folder_tree(tmp_path, per_class=2)
    assert len(load_folder(tmp_path, 1, "test", holdout=0.1).samples) == 2
    assert len(load_folder(tmp_path, 1, "train", holdout=0.1).samples) == 2
    assert len(load_folder(tmp_path, 1, "test", holdout=0.0).samples) == 0


def test_folder_with_separate_test_root(tmp_path: Path) -> None:
    train_root, test_root = tmp_path / "train", tmp_path / "test"
    _folder_tree(train_root)
    _touch(test_root / "b_run" / "x.avi")
    train = load_dataset("folder", train_root, 1, "train", test_root=test_root)
    assert len(train.samples) == 10
    test = load_dataset("folder", train_root, 1, "test", test_root=test_root)
    assert test.samples == [VideoSample(test_root / "b_run" / "x.avi", 1, "b_run")]
    _touch(test_root / "c_jump" / "y.avi")
    with pytest.raises(ValueError, match="unknown classes"):
        load_dataset("folder", train_root, 1, "test", test_root=test_root)


def test_load_dataset_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="kind"):
        load_dataset("kinetics", tmp_path)
    with pytest.raises(ValueError, match="not a folder"):
        load_dataset("auto", tmp_path / "nope")
    _touch(tmp_path / "only" / "a.mp4")
    with pytest.raises(ValueError, match="at least 2"):
        load_dataset("folder", tmp_path)
