"""Pydantic models of every request parameter and response body of the HTTP API (docs/design.md,
"HTTP").

The OpenAPI document (`openapi.yaml`) is generated from these models (and from the error body's, which
lives with the error codes in `fstcn.service.errors`). The request options' ranges and
defaults are the core's (`fstcn.core.options`), declared there once. Conversions from the data plane's
results (`fstcn.service.pipeline.Prediction`) and the engine's description live here too, so routes stay
"parse -> call -> encode".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from fstcn.core.options import (
    CROP_COUNTS,
    DEFAULT_CROPS,
    DEFAULT_FUSION,
    DEFAULT_TOP_K,
    FUSION_METHODS,
    MAX_CLIPS,
)

if TYPE_CHECKING:
    from fstcn.service.engine import Engine
    from fstcn.service.pipeline import Prediction


def _int_from_text(value: Any) -> Any:
    """Query strings arrive as text; Literal[int, ...] does not coerce, so do it here ("9" -> 9)."""
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value)
    return value


if (
    TYPE_CHECKING
):  # a type checker cannot read a Literal built from a tuple; the values are checked at run time
    CropCount = int
    FusionName = str
else:  # Literal of the core's tuples: pydantic checks membership, the OpenAPI lists them as an enum
    CropCount = Annotated[Literal[CROP_COUNTS], BeforeValidator(_int_from_text)]
    FusionName = Literal[FUSION_METHODS]

# The forms `fstcn.core.runtime.OnnxModel.form` names.
ServedForm = Literal["plain", "exact", "shared-lower", "shared-branch"]


class PredictParams(BaseModel):
    """Query parameters of `POST /predict` (the core's `PredictOptions` as HTTP parameters)."""

    model_config = ConfigDict(extra="ignore")

    top_k: int | None = Field(
        None,
        ge=1,
        description=(
            f"How many classes to return, 1..N (number of classes); default {DEFAULT_TOP_K} (N if fewer)."
        ),
    )
    clips: int | None = Field(
        None, ge=1, le=MAX_CLIPS, description="Clip pairs M sampled from the video; default: the model's."
    )
    crops: CropCount = Field(
        DEFAULT_CROPS,
        description="Test-time crops per clip pair: 1 centre, 2 +flip, 9 positions, 18 = 9 x flip.",
    )
    fusion: FusionName = Field(
        DEFAULT_FUSION, description="Score fusion: SCI-weighted (the paper's) or plain mean."
    )


class ModelSummary(BaseModel):
    name: str
    version: str
    preset: str


class ClassScore(BaseModel):
    label: str
    index: int = Field(description="Class index in the model's label list.")
    score: float = Field(description="Fused video score of the class.")


class ClipScore(BaseModel):
    start_s: float = Field(description="Time of the clip pair's first frame, seconds.")
    end_s: float = Field(description="Time of its last V_diff frame, seconds.")
    label: str = Field(description="Best class of this clip pair.")
    score: float = Field(description="Its clip score.")
    sci: float = Field(description="Sparsity Concentration Index of the clip score, 0..1.")


class VideoSummary(BaseModel):
    duration_s: float
    fps: float
    width: int = Field(description="Displayed width (after rotation).")
    height: int = Field(description="Displayed height (after rotation).")
    frames: int = Field(description="Frame count (may be estimated from the headers).")
    codec: str


class Timing(BaseModel):
    decode: float = Field(description="Probe and decode, ms.")
    infer: float = Field(description="Network inference, ms.")
    total: float = Field(description="Whole request (upload, queue, decode, preprocess, infer, fuse), ms.")


class PredictResponse(BaseModel):
    model: ModelSummary
    predictions: list[ClassScore]
    fusion: FusionName
    clips: list[ClipScore]
    video: VideoSummary
    timing_ms: Timing

    @classmethod
    def from_prediction(cls, prediction: Prediction, engine: Engine, total_s: float) -> PredictResponse:
        meta = engine.meta
        info = prediction.video
        return cls(
            model=ModelSummary(name=meta.name, version=meta.version, preset=meta.preset),
            predictions=[
                ClassScore(label=meta.labels[index], index=index, score=score)
                for index, score in prediction.top
            ],
            fusion=prediction.fusion,
            clips=[
                ClipScore(
                    start_s=clip.start_s,
                    end_s=clip.end_s,
                    label=meta.labels[clip.index],
                    score=clip.score,
                    sci=clip.sci,
                )
                for clip in prediction.clips
            ],
            video=VideoSummary(
                duration_s=round(info.duration_s, 4),  # as the clip times are rounded
                fps=info.fps,
                width=info.width,
                height=info.height,
                frames=info.frames,
                codec=info.codec,
            ),
            timing_ms=Timing(
                decode=round(prediction.timing_s.get("decode", 0.0) * 1000, 3),
                infer=round(prediction.timing_s.get("infer", 0.0) * 1000, 3),
                total=round(total_s * 1000, 3),
            ),
        )


class SamplingSummary(BaseModel):
    clip_length: int = Field(description="l_t: frames per clip.")
    stride: int = Field(description="s_t: frames between clip frames, at ref_fps.")
    diff_offset: int = Field(description="d_t: V_diff[i] = V[t_i + d_t] - V[t_i].")
    num_clips: int = Field(description="M: default clip pairs per video.")
    ref_fps: float = Field(description="Frame rate the frame counts refer to.")


class GraphInputSummary(BaseModel):
    name: str
    element_type: str = Field(description="numpy element type: float32, uint8 or int64.")
    shape: list[int | str] = Field(description="Sizes; a string names a dynamic axis.")


class InputSummary(BaseModel):
    resize_short: int = Field(description="Frames are resized so their short side is this.")
    crop_size: int = Field(description="Square crop side.")
    appearance_shape: list[int | str] = Field(
        description=(
            "The network's appearance input, one row per (clip pair, crop), B rows: the plain form's ONNX "
            "input `appearance`; the other forms cut it from `frames` inside the graph."
        )
    )
    motion_shape: list[int | str] = Field(
        description=(
            "The network's motion input (V_diff), one row per (clip pair, crop), B rows: the plain form's "
            "ONNX input `motion`; the other forms compute it from `frames` inside the graph."
        )
    )
    mean: list[float]
    std: list[float]
    diff_scale: float
    graph_inputs: list[GraphInputSummary] = Field(
        description="The ONNX inputs of the served form, which a request's feeds fill."
    )


class ModelResponse(BaseModel):
    name: str
    version: str
    preset: str
    precision: str
    labels: list[str]
    num_classes: int
    sampling: SamplingSummary
    input: InputSummary
    form: ServedForm = Field(
        description=(
            "The served form of the network: plain (crops cut on the host), exact (the same crops cut "
            "inside the graph), shared-lower or shared-branch (a shared trunk over whole frames, windows "
            "instead of crops up to that depth)."
        )
    )
    providers: list[str] = Field(description="ONNX Runtime execution providers in use, in order.")
    batching: bool = Field(description="Whether concurrent requests are batched into shared runs (any form).")

    @classmethod
    def from_engine(cls, engine: Engine) -> ModelResponse:
        meta = engine.meta
        c, t = meta.crop_size, meta.sampling.clip_length
        sampling = meta.sampling
        return cls(
            name=meta.name,
            version=meta.version,
            preset=meta.preset,
            precision=meta.precision,
            labels=list(meta.labels),
            num_classes=meta.num_classes,
            sampling=SamplingSummary(
                clip_length=sampling.clip_length,
                stride=sampling.stride,
                diff_offset=sampling.diff_offset,
                num_clips=sampling.num_clips,
                ref_fps=sampling.ref_fps,
            ),
            input=InputSummary(
                resize_short=meta.resize_short,
                crop_size=c,
                appearance_shape=["B", 3, c, c],
                motion_shape=["B", t, 3, c, c],
                mean=list(meta.mean),
                std=list(meta.std),
                diff_scale=meta.diff_scale,
                graph_inputs=[
                    GraphInputSummary(
                        name=graph_input.name,
                        element_type=graph_input.element_type,
                        shape=list(graph_input.shape),
                    )
                    for graph_input in engine.inputs
                ],
            ),
            form=cast(ServedForm, engine.form),  # pydantic checks the value
            providers=list(engine.providers),
            batching=engine.batching,
        )


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"


class ReadyResponse(BaseModel):
    status: Literal["ready"] = "ready"
