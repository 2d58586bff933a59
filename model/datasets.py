"""Labelled video lists from the on-disk layouts we support: UCF101, HMDB51, plain folders.

The layouts are docs/design.md, "Data".

Each loader turns a dataset root and a split into a `DatasetSplit`: the list of `VideoSample`s (path,
label index, label) and the ordered label list, so that label index i always means labels[i]. Nothing
is decoded here; training and evaluation decode the paths themselves. Layouts:

- UCF101: root/<Class>/<video>, a splits folder (`ucfTrainTestlist`, under or beside the root, or given)
  with `classInd.txt` ("1 ApplyEyeMakeup"), `trainlist0N.txt` ("ApplyEyeMakeup/v_x.avi 1") and
  `testlist0N.txt` ("ApplyEyeMakeup/v_x.avi"). Any video extension is accepted: a listed name whose
  file is missing is matched by stem in its class folder (the synthetic generator writes .mp4/.webm).
- HMDB51: root/<class>/<video>.avi and a splits folder of `<class>_test_split<N>.txt` files with lines
  "name.avi 0|1|2" (1 = train, 2 = test, 0 = unused). Labels are the classes in sorted order.
- folder: root/<label>/<video>, labels sorted; the test set is either a separate root of the same shape
  or a deterministic, seeded, per-class holdout fraction of the root.

Pure standard library (no numpy, no torch).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

__all__ = [
    "DATASET_KINDS",
    "VIDEO_EXTENSIONS",
    "DatasetSplit",
    "VideoSample",
    "default_subset",
    "detect_kind",
    "find_hmdb51_splits",
    "find_ucf101_splits",
    "load_dataset",
    "load_folder",
    "load_hmdb51",
    "load_ucf101",
]

DatasetKind = Literal["ucf101", "hmdb51", "folder", "auto"]
Subset = Literal["train", "test"]
DATASET_KINDS: tuple[str, ...] = ("ucf101", "hmdb51", "folder", "auto")
SUBSETS: tuple[str, ...] = ("train", "test")
VIDEO_EXTENSIONS = frozenset(
    {".avi", ".mp4", ".webm", ".mkv", ".mov", ".ts", ".m4v", ".mpg", ".mpeg", ".ogv", ".flv", ".wmv", ".3gp"}
)
UCF101_SPLITS_DIRNAME = "ucfTrainTestlist"
HMDB51_SPLITS_DIRNAMES = ("testTrainMulti_7030_splits", "splits")
_HMDB_SPLIT_FILE = re.compile(r"^(?P<label>.+)_test_split(?P<split>\d+)\.txt$")
_HMDB_TAGS = {"train": "1", "test": "2"}


@dataclass(frozen=True)
class VideoSample:
    """One labelled video: `labels[label_index] == label`."""

    path: Path
    label_index: int
    label: str


class DatasetSplit(NamedTuple):
    """The samples of one split and subset, and the ordered label list (unpacks as a 2-tuple)."""

    samples: list[VideoSample]
    labels: list[str]


def _check_subset(subset: str) -> None:
    if subset not in SUBSETS:
        raise ValueError(f"subset must be one of {SUBSETS}, got {subset!r}")


def _check_split(split: int) -> None:
    if split < 1:
        raise ValueError(f"split must be >= 1, got {split}")


def _read_lines(path: Path) -> list[str]:
    """Non-empty stripped lines (the official files use CRLF and trailing blanks)."""
    if not path.is_file():
        raise ValueError(f"missing split file {path}")
    return [
        line.strip()
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
        if line.strip()
    ]


def _is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS and not path.name.startswith(".")


def _resolve_video(root: Path, relative: str) -> Path | None:
    """root/relative, or a video with the same stem in the same folder (any extension), or None."""
    path = root / relative
    if path.is_file():
        return path
    folder = path.parent
    if folder.is_dir():
        for candidate in sorted(folder.glob(f"{path.stem}.*")):
            if _is_video(candidate):
                return candidate
    return None


def _missing_error(kind: str, missing: list[str], root: Path) -> ValueError:
    shown = ", ".join(missing[:5])
    more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
    return ValueError(f"{kind}: {len(missing)} listed videos not found under {root}: {shown}{more}")


# --------------------------------------------------------------------------------------------- UCF101


def find_ucf101_splits(root: Path, splits_dir: Path | None = None) -> Path | None:
    """The folder holding classInd.txt: the given one, root/ucfTrainTestlist, its sibling, or root."""
    if splits_dir is not None:
        return splits_dir if (splits_dir / "classInd.txt").is_file() else None
    for candidate in (root / UCF101_SPLITS_DIRNAME, root.parent / UCF101_SPLITS_DIRNAME, root):
        if (candidate / "classInd.txt").is_file():
            return candidate
    return None


def _read_class_index(path: Path) -> list[str]:
    indexed: dict[int, str] = {}
    for line in _read_lines(path):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise ValueError(f"{path}: malformed line {line!r}, expected '<index> <ClassName>'")
        index = int(parts[0])
        if index in indexed:
            raise ValueError(f"{path}: class index {index} appears twice")
        indexed[index] = parts[1]
    if sorted(indexed) != list(range(1, len(indexed) + 1)):
        raise ValueError(f"{path}: class indices must be 1..{len(indexed)}, got {sorted(indexed)}")
    labels = [indexed[i] for i in range(1, len(indexed) + 1)]
    if len(set(labels)) != len(labels):
        raise ValueError(f"{path}: a class name appears twice")
    if len(labels) < 2:
        raise ValueError(f"{path}: need at least 2 classes, got {len(labels)}")
    return labels


def load_ucf101(
    root: Path | str, split: int = 1, subset: Subset = "train", *, splits_dir: Path | str | None = None
) -> DatasetSplit:
    """UCF101 (official layout) split `split` (1..3), `train` or `test` subset."""
    _check_subset(subset)
    _check_split(split)
    root = Path(root)
    found = find_ucf101_splits(root, Path(splits_dir) if splits_dir is not None else None)
    if found is None:
        where = (
            splits_dir if splits_dir is not None else f"{root}/{UCF101_SPLITS_DIRNAME}, its sibling or {root}"
        )
        raise ValueError(f"UCF101: no classInd.txt found in {where}")
    labels = _read_class_index(found / "classInd.txt")
    label_index = {label: i for i, label in enumerate(labels)}
    list_path = found / f"{subset}list{split:02d}.txt"
    samples: list[VideoSample] = []
    missing: list[str] = []
    for line in _read_lines(list_path):
        parts = line.split()
        relative = parts[0].replace("\\", "/")
        if "/" not in relative:
            raise ValueError(f"{list_path}: entry {relative!r} is not '<Class>/<video>'")
        folder_class = relative.split("/", 1)[0]
        if folder_class not in label_index:
            raise ValueError(f"{list_path}: unknown class {folder_class!r} (not in classInd.txt)")
        index = label_index[folder_class]
        if len(parts) >= 2:
            if not parts[1].isdigit() or not 1 <= int(parts[1]) <= len(labels):
                raise ValueError(f"{list_path}: bad class index in {line!r}")
            if int(parts[1]) - 1 != index:
                raise ValueError(
                    f"{list_path}: {relative!r} is labelled {parts[1]} ({labels[int(parts[1]) - 1]}) "
                    f"but lies in the {folder_class!r} folder"
                )
        path = _resolve_video(root, relative)
        if path is None:
            missing.append(relative)
            continue
        samples.append(VideoSample(path=path, label_index=index, label=labels[index]))
    if missing:
        raise _missing_error("UCF101", missing, root)
    return DatasetSplit(samples, labels)


# --------------------------------------------------------------------------------------------- HMDB51


def _hmdb_split_files(directory: Path, split: int) -> dict[str, Path]:
    files: dict[str, Path] = {}
    if not directory.is_dir():
        return files
    for path in directory.iterdir():
        match = _HMDB_SPLIT_FILE.match(path.name)
        if match and int(match["split"]) == split and path.is_file():
            files[match["label"]] = path
    return files


def find_hmdb51_splits(root: Path, splits_dir: Path | None = None, split: int = 1) -> Path | None:
    """The folder with `<class>_test_split<N>.txt` files: the given one, a known name near root, or root."""
    if splits_dir is not None:
        return splits_dir if _hmdb_split_files(splits_dir, split) else None
    candidates = [root / name for name in HMDB51_SPLITS_DIRNAMES]
    candidates += [root.parent / name for name in HMDB51_SPLITS_DIRNAMES] + [root]
    for candidate in candidates:
        if _hmdb_split_files(candidate, split):
            return candidate
    return None


def load_hmdb51(
    root: Path | str, split: int = 1, subset: Subset = "train", *, splits_dir: Path | str | None = None
) -> DatasetSplit:
    """HMDB51 (official layout) split `split` (1..3): lines tagged 1 are train, 2 test, 0 unused."""
    _check_subset(subset)
    _check_split(split)
    root = Path(root)
    found = find_hmdb51_splits(root, Path(splits_dir) if splits_dir is not None else None, split)
    if found is None:
        where = splits_dir if splits_dir is not None else f"{root} or its splits folders"
        raise ValueError(f"HMDB51: no *_test_split{split}.txt files found in {where}")
    files = _hmdb_split_files(found, split)
    labels = sorted(files)
    if len(labels) < 2:
        raise ValueError(f"HMDB51: need at least 2 classes, found {labels}")
    wanted = _HMDB_TAGS[subset]
    samples: list[VideoSample] = []
    missing: list[str] = []
    for index, label in enumerate(labels):
        if not (root / label).is_dir():
            raise ValueError(
                f"HMDB51: class folder {root / label} is missing (listed in {files[label].name})"
            )
        for line in _read_lines(files[label]):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise ValueError(f"{files[label]}: malformed line {line!r}, expected '<name> 0|1|2'")
            if parts[1] != wanted:
                continue
            path = _resolve_video(root, f"{label}/{parts[0]}")
            if path is None:
                missing.append(f"{label}/{parts[0]}")
                continue
            samples.append(VideoSample(path=path, label_index=index, label=label))
    if missing:
        raise _missing_error("HMDB51", missing, root)
    return DatasetSplit(samples, labels)


# --------------------------------------------------------------------------------------------- folder


def _class_videos(root: Path) -> dict[str, list[Path]]:
    if not root.is_dir():
        raise ValueError(f"dataset root {root} is not a folder")
    classes: dict[str, list[Path]] = {}
    for folder in sorted(root.iterdir()):
        if not folder.is_dir() or folder.name.startswith("."):
            continue
        videos = sorted(path for path in folder.iterdir() if _is_video(path))
        if videos:
            classes[folder.name] = videos
    return classes


def load_folder(
    root: Path | str,
    split: int = 1,
    subset: Subset = "train",
    *,
    test_root: Path | str | None = None,
    holdout: float = 0.2,
    seed: int = 0,
) -> DatasetSplit:
    """Plain root/<label>/<video> layout; labels are the class folders (with videos) in sorted order.

    With `test_root` the test subset comes from there (same class names, a subset of root's). Otherwise
    each class's videos are shuffled with a seed derived from (seed, split, label) and the first
    round(holdout * n) (at least one when 0 < holdout and n >= 2) are the test subset.
    """
    _check_subset(subset)
    _check_split(split)
    if not 0.0 <= holdout < 1.0:
        raise ValueError(f"holdout must be in [0, 1), got {holdout}")
    root = Path(root)
    classes = _class_videos(root)
    labels = sorted(classes)
    if len(labels) < 2:
        raise ValueError(f"folder dataset {root}: need at least 2 class folders with videos, found {labels}")
    label_index = {label: i for i, label in enumerate(labels)}
    samples: list[VideoSample] = []
    if test_root is not None:
        if subset == "test":
            test_classes = _class_videos(Path(test_root))
            unknown = sorted(set(test_classes) - set(labels))
            if unknown:
                raise ValueError(f"test root {test_root}: unknown classes {unknown} (not in {root})")
            classes = test_classes
        for label in sorted(classes):
            samples += [VideoSample(path, label_index[label], label) for path in classes[label]]
        return DatasetSplit(samples, labels)
    for label in labels:
        videos = list(classes[label])
        random.Random(f"{seed}:{split}:{label}").shuffle(videos)
        count = int(round(holdout * len(videos)))
        if holdout > 0 and len(videos) >= 2:
            count = min(max(count, 1), len(videos) - 1)
        chosen = videos[:count] if subset == "test" else videos[count:]
        samples += [VideoSample(path, label_index[label], label) for path in sorted(chosen)]
    return DatasetSplit(samples, labels)


# --------------------------------------------------------------------------------------------- entry


def detect_kind(root: Path | str, *, splits_dir: Path | str | None = None, split: int = 1) -> str:
    """'ucf101' if a classInd.txt is found, 'hmdb51' if HMDB split files are, else 'folder'."""
    root = Path(root)
    given = Path(splits_dir) if splits_dir is not None else None
    if find_ucf101_splits(root, given) is not None:
        return "ucf101"
    if find_hmdb51_splits(root, given, split) is not None:
        return "hmdb51"
    return "folder"


def default_subset(
    kind: str, root: Path | str, split: int = 1, *, splits_dir: Path | str | None = None
) -> tuple[Subset, str]:
    """The subset a command reads when none is asked for: (subset, why).

    "test", except for a UCF101-layout folder whose split has only a training list (what `fstcn synth`
    writes by default): then "train", rather than failing on the missing test list."""
    root = Path(root)
    given = Path(splits_dir) if splits_dir is not None else None
    if kind == "auto":
        kind = detect_kind(root, splits_dir=given, split=split)
    found = find_ucf101_splits(root, given) if kind == "ucf101" else None
    if found is not None and not (found / f"testlist{split:02d}.txt").is_file():
        if (found / f"trainlist{split:02d}.txt").is_file():
            return "train", f"{root} has no test list (testlist{split:02d}.txt)"
    return "test", ""


def load_dataset(
    kind: str,
    root: Path | str,
    split: int = 1,
    subset: Subset = "train",
    *,
    splits_dir: Path | str | None = None,
    test_root: Path | str | None = None,
    holdout: float = 0.2,
    seed: int = 0,
) -> DatasetSplit:
    """Load `subset` of split `split` of the dataset at `root`; kind 'auto' detects the layout.

    `splits_dir` applies to ucf101/hmdb51; `test_root`, `holdout` and `seed` to folder.
    """
    if kind not in DATASET_KINDS:
        raise ValueError(f"dataset kind must be one of {DATASET_KINDS}, got {kind!r}")
    if not Path(root).is_dir():
        raise ValueError(f"dataset root {root} is not a folder")
    if kind == "auto":
        kind = detect_kind(root, splits_dir=splits_dir, split=split)
    if kind == "ucf101":
        return load_ucf101(root, split, subset, splits_dir=splits_dir)
    if kind == "hmdb51":
        return load_hmdb51(root, split, subset, splits_dir=splits_dir)
    return load_folder(root, split, subset, test_root=test_root, holdout=holdout, seed=seed)
