"""The open inference protocol (KServe v2, Triton's HTTP/REST) beside `/predict`: server and model
metadata, model readiness and inference (docs/design.md, "HTTP").

`POST /v2/models/{name}/infer` takes input `video` (BYTES [B], each element an encoded video file) with
the binary data extension and the request parameters `clips`, `crops`, `fusion`; it answers `scores`
(FP32 [B, N], every class's fused video score in label order) and `labels` (BYTES [N]). Each video goes
through the data plane of `/predict` (`Pipeline.predict_received`): its limits, admission control,
batching, time limit and errors, the errors written in the protocol's body (`fstcn.service.errors`). The
wire format is `fstcn.service.v2_codec`'s; the body is read by `fstcn.service.upload.TensorBody`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
from fastapi import APIRouter, Depends, Header, Request, Response
from pydantic import BaseModel

from fstcn.core.errors import UnsupportedMedia
from fstcn.core.meta import ModelMeta
from fstcn.core.options import PredictOptions
from fstcn.service.api.deps import EngineDep, PipelineDep, require_api_key
from fstcn.service.errors import ModelNotFound, NotReady, protocol_error_responses
from fstcn.service.pipeline import Pipeline, Prediction
from fstcn.service.upload import TensorBody, UploadedFile
from fstcn.service.v2_codec import (
    BYTES,
    EXTENSIONS,
    FP32,
    HEADER_LENGTH,
    LABELS_OUTPUT,
    MAX_HEADER_BYTES,
    SCORES_OUTPUT,
    VIDEO_INPUT,
    InferRequest,
    InferResponse,
    ModelMetadataResponse,
    ModelReadyResponse,
    OutputTensor,
    ServerMetadataResponse,
    TensorMetadata,
    VideoRequest,
    parse_header,
    render_response,
    video_request,
)

router = APIRouter(prefix="/v2", tags=["inference protocol"], dependencies=[Depends(require_api_key)])

SERVER_NAME = "fstcn"
PLATFORM = "onnxruntime_onnx"
INFER_PATHS = ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer")


def _inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """`model`'s JSON schema with its nested models written in place: a request body read by hand is not
    one FastAPI registers under components/schemas."""
    schema = model.model_json_schema()
    definitions: dict[str, Any] = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(definitions[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


INFER_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": (
            f"The JSON header (`InferRequest`), then the binary tensor data: with `{HEADER_LENGTH}: <bytes "
            "of the JSON header>`, input `video` carries `binary_data_size` and its elements follow the "
            "header, each prefixed by its length (4 bytes, little-endian)."
        ),
        "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"schema": _inline_schema(InferRequest)},
        },
    }
}
INFER_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": InferResponse,
        "description": (
            f"The JSON header; with `{HEADER_LENGTH}`, the binary outputs follow it in order "
            "(`binary_data_size` bytes each)."
        ),
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    },
    **protocol_error_responses(401, 404, 413, 415, 422, 500, 503, 504),
}
HeaderLength = Annotated[
    int | None,
    Header(
        alias=HEADER_LENGTH,
        ge=0,
        le=MAX_HEADER_BYTES,
        description="Bytes of the JSON header when binary data follows it.",
    ),
]


def _served(meta: ModelMeta, name: str, version: str | None) -> None:
    """404 `not_found` unless `name` (and `version`, when given) are the served model's."""
    if name != meta.name:
        raise ModelNotFound(f"unknown model {name!r}; this server serves {meta.name!r}")
    if version is not None and version != meta.version:
        raise ModelNotFound(f"unknown version {version!r} of model {name!r}; served: {meta.version!r}")


def _metadata(meta: ModelMeta) -> ModelMetadataResponse:
    n = meta.num_classes
    return ModelMetadataResponse(
        name=meta.name,
        versions=[meta.version],
        platform=PLATFORM,
        inputs=[TensorMetadata(name=VIDEO_INPUT, datatype=BYTES, shape=[-1])],
        outputs=[
            TensorMetadata(name=SCORES_OUTPUT, datatype=FP32, shape=[-1, n]),
            TensorMetadata(name=LABELS_OUTPUT, datatype=BYTES, shape=[n]),
        ],
    )


def _ready(request: Request, name: str, version: str | None) -> ModelReadyResponse:
    pipeline: Pipeline | None = getattr(request.app.state, "pipeline", None)
    if pipeline is None or not pipeline.engine.ready:
        raise NotReady("the model is not loaded and warmed up yet")
    _served(pipeline.engine.meta, name, version)
    return ModelReadyResponse(name=name, ready=True)


@router.get(
    "",
    response_model=ServerMetadataResponse,
    responses=protocol_error_responses(401),
    summary="Server metadata: name, version, protocol extensions",
)
async def server_metadata(request: Request) -> ServerMetadataResponse:
    return ServerMetadataResponse(name=SERVER_NAME, version=request.app.version, extensions=list(EXTENSIONS))


@router.get(
    "/models/{name}",
    response_model=ModelMetadataResponse,
    responses=protocol_error_responses(401, 404, 422, 503),
    summary="Model metadata: its input and outputs",
)
async def model_metadata(name: str, engine: EngineDep) -> ModelMetadataResponse:
    _served(engine.meta, name, None)
    return _metadata(engine.meta)


@router.get(
    "/models/{name}/versions/{version}",
    response_model=ModelMetadataResponse,
    responses=protocol_error_responses(401, 404, 422, 503),
    summary="Model metadata of one version",
)
async def model_version_metadata(name: str, version: str, engine: EngineDep) -> ModelMetadataResponse:
    _served(engine.meta, name, version)
    return _metadata(engine.meta)


@router.get(
    "/models/{name}/ready",
    response_model=ModelReadyResponse,
    responses=protocol_error_responses(401, 404, 422, 503),
    summary="Model readiness: 200 once loaded and warmed up",
)
async def model_ready(request: Request, name: str) -> ModelReadyResponse:
    return _ready(request, name, None)


@router.get(
    "/models/{name}/versions/{version}/ready",
    response_model=ModelReadyResponse,
    responses=protocol_error_responses(401, 404, 422, 503),
    summary="Readiness of one model version",
)
async def model_version_ready(request: Request, name: str, version: str) -> ModelReadyResponse:
    return _ready(request, name, version)


@router.post(
    "/models/{name}/infer",
    response_class=Response,
    responses=INFER_RESPONSES,
    openapi_extra=INFER_BODY,
    summary="Recognise the action in B videos: every class's fused score",
)
async def infer(
    request: Request, name: str, pipeline: PipelineDep, header_length: HeaderLength = None
) -> Response:
    return await _infer(request, pipeline, name, None, header_length)


@router.post(
    "/models/{name}/versions/{version}/infer",
    response_class=Response,
    responses=INFER_RESPONSES,
    openapi_extra=INFER_BODY,
    summary="Inference on one model version",
)
async def infer_version(
    request: Request, name: str, version: str, pipeline: PipelineDep, header_length: HeaderLength = None
) -> Response:
    return await _infer(request, pipeline, name, version, header_length)


async def _infer(
    request: Request, pipeline: Pipeline, name: str, version: str | None, header_length: int | None
) -> Response:
    meta = pipeline.engine.meta
    _served(meta, name, version)
    if request.headers.get("content-encoding", "identity").lower() != "identity":
        raise UnsupportedMedia("compressed request bodies are not supported; send the body uncompressed")
    body = TensorBody(request.stream(), header_length)
    asked: list[VideoRequest] = []

    async def receive() -> tuple[Sequence[UploadedFile], PredictOptions]:
        videos = video_request(parse_header(await body.read_header(MAX_HEADER_BYTES)))
        asked.append(videos)
        # every class's score (ranked; the response puts them in label order); bad options are refused
        # before the videos are read
        options = pipeline.resolve(replace(videos.options, top_k=meta.num_classes))
        files = await body.receive_elements(
            videos.batch, videos.binary_size, max_bytes=pipeline.max_upload_bytes
        )
        return files, options

    predictions = await pipeline.predict_received(receive)
    (videos,) = asked
    tensors: dict[str, npt.NDArray[np.float32] | list[str]] = {
        SCORES_OUTPUT: _score_matrix(predictions, meta.num_classes),
        LABELS_OUTPUT: list(meta.labels),
    }
    content, json_length = render_response(
        model_name=meta.name,
        model_version=meta.version,
        request_id=videos.id,
        outputs=[OutputTensor(output, tensors[output], binary) for output, binary in videos.outputs],
    )
    if json_length is None:
        return Response(content, media_type="application/json")
    return Response(content, media_type="application/octet-stream", headers={HEADER_LENGTH: str(json_length)})


def _score_matrix(predictions: Sequence[Prediction], num_classes: int) -> npt.NDArray[np.float32]:
    """(B, N) float32: each video's fused score of every class, in label order."""
    scores = np.zeros((len(predictions), num_classes), dtype=np.float32)
    for row, prediction in enumerate(predictions):
        for index, score in prediction.top:
            scores[row, index] = score
    return scores
