"""`GET /v1/model`: what is served: the model's metadata, its form and inputs, the providers and batching
in effect."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from fstcn.service.api.deps import EngineDep, require_api_key
from fstcn.service.errors import error_responses
from fstcn.service.schemas import ModelResponse

router = APIRouter(prefix="/v1", tags=["model"], dependencies=[Depends(require_api_key)])


@router.get(
    "/model",
    response_model=ModelResponse,
    responses=error_responses(401, 503),
    summary="Model metadata: labels, preset, sampling, input sizes, providers",
)
async def model_info(engine: EngineDep) -> ModelResponse:
    return ModelResponse.from_engine(engine)
