"""`POST /predict`: stream the multipart upload to the data plane, encode its prediction
(docs/design.md, "HTTP").

The body is read with `request.stream()` (not FastAPI's `UploadFile`, which buffers the whole upload
before any limit is checked); `openapi_extra` still documents it as multipart/form-data with a binary
`file` field.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from fstcn.core.options import PredictOptions
from fstcn.service.api.deps import PipelineDep, require_api_key
from fstcn.service.errors import error_responses
from fstcn.service.schemas import PredictParams, PredictResponse

router = APIRouter(tags=["predict"], dependencies=[Depends(require_api_key)])

PATH = "/predict"

MULTIPART_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "The video file."}
                    },
                }
            }
        },
    }
}


@router.post(
    PATH,
    response_model=PredictResponse,
    responses=error_responses(401, 413, 415, 422, 500, 503, 504),
    openapi_extra=MULTIPART_BODY,
    summary="Recognise the action in an uploaded video",
)
async def predict(
    request: Request, params: Annotated[PredictParams, Query()], pipeline: PipelineDep
) -> PredictResponse:
    start = time.perf_counter()
    options = PredictOptions(top_k=params.top_k, clips=params.clips, crops=params.crops, fusion=params.fusion)
    prediction = await pipeline.predict_upload(request.stream(), request.headers.get("content-type"), options)
    return PredictResponse.from_prediction(prediction, pipeline.engine, time.perf_counter() - start)
