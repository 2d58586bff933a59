"""The self-describing model contract shared by export (writer) and the service (reader).

An exported FstCN ONNX file carries one metadata property, key `fstcn`, whose value is the JSON of
`ModelMeta`: labels, sampling parameters, input sizes, normalisation, reference frame rate, preset,
version. The service rebuilds its whole pre-processing from it; there is no side config.

ONNX graph contract (format_version 1):
  inputs   appearance  float32 (B, 3, crop, crop)              normalised middle frame of V_clip
           motion      float32 (B, clip_length, 3, crop, crop) normalised V_diff frames
  output   probs       float32 (B, num_classes)                softmax class probabilities
B is a dynamic axis. An fp16 export keeps float32 inputs and outputs (precision says which).

Normalisation (numpy, in `fstcn.core.clips`):
  appearance = (frame / 255 - mean) / std                       per channel, RGB order
  motion     = (frame[t + d_t] - frame[t]) / 255 * diff_scale   per pixel, RGB order

Pure standard library: no numpy, no torch.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

META_KEY = "fstcn"
FORMAT_VERSION = 1
APPEARANCE_INPUT = "appearance"
MOTION_INPUT = "motion"
PROBS_OUTPUT = "probs"


@dataclass(frozen=True)
class SamplingParams:
    """How clip pairs are cut from a video (docs/design.md, "Sampling"). Counts are frames at `ref_fps`."""

    clip_length: int = 5  # l_t: frames per clip
    stride: int = 5  # s_t: frames between consecutive clip frames
    diff_offset: int = 9  # d_t: V_diff[i] = V[t_i + d_t] - V[t_i]
    num_clips: int = 5  # M: clip pairs per video at test time
    ref_fps: float = 25.0  # the frame rate the counts above refer to

    def __post_init__(self) -> None:
        for name in ("clip_length", "stride", "diff_offset", "num_clips"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.ref_fps > 0:
            raise ValueError(f"ref_fps must be > 0, got {self.ref_fps}")

    @property
    def span_frames(self) -> int:
        """Frames from the first clip frame to the last V_diff frame: (l_t - 1) * s_t + d_t."""
        return (self.clip_length - 1) * self.stride + self.diff_offset

    @property
    def span_s(self) -> float:
        """The time one clip pair spans, in seconds."""
        return self.span_frames / self.ref_fps


@dataclass(frozen=True)
class ModelMeta:
    """Everything the service needs to serve an exported model."""

    name: str
    version: str
    preset: str
    labels: tuple[str, ...]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    resize_short: int = 128  # frames are resized so that their short side is this
    crop_size: int = 112  # square crops cut from the resized frame
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)
    diff_scale: float = 4.0
    precision: str = "fp32"  # fp32 | fp16 (weights; inputs and outputs stay float32)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if len(self.labels) < 2:
            raise ValueError(f"a model needs at least 2 labels, got {len(self.labels)}")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be unique")
        if self.crop_size > self.resize_short:
            raise ValueError(f"crop_size {self.crop_size} exceeds resize_short {self.resize_short}")
        if self.precision not in ("fp32", "fp16"):
            raise ValueError(f"precision must be fp32 or fp16, got {self.precision!r}")

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelMeta:
        try:
            raw: dict[str, Any] = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"model metadata is not valid JSON: {error}") from error
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ModelMeta:
        version = raw.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"unsupported model format_version {version!r}, expected {FORMAT_VERSION}")
        try:
            return cls(
                name=str(raw["name"]),
                version=str(raw["version"]),
                preset=str(raw["preset"]),
                labels=tuple(str(label) for label in raw["labels"]),
                sampling=SamplingParams(**raw["sampling"]),
                resize_short=int(raw["resize_short"]),
                crop_size=int(raw["crop_size"]),
                mean=tuple(float(v) for v in raw["mean"]),  # type: ignore[arg-type]
                std=tuple(float(v) for v in raw["std"]),  # type: ignore[arg-type]
                diff_scale=float(raw["diff_scale"]),
                precision=str(raw.get("precision", "fp32")),
                format_version=int(version),
            )
        except (KeyError, TypeError) as error:
            raise ValueError(f"model metadata is incomplete or malformed: {error!r}") from error
