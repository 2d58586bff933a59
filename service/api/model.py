"""`GET /v1/model`: the served model's metadata and the execution providers in use."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from fstcn.service.api.deps import EngineDep, SettingsDep, require_api_key
from fstcn.service.api.errors import error_responses
from fstcn.service.schemas import ModelResponse

router = APIRouter(prefix="/v1", tags=["model"], dependencies=[Depends(require_api_key)])


@router.get(
    "/model",
    response_model=ModelResponse,
    responses=error_responses(401, 503),
    summary="Model metadata: labels, preset, sampling, input sizes, providers",
)
async def model_info(engine: EngineDep, settings: SettingsDep) -> ModelResponse:
    return ModelResponse.from_engine(engine, batching=settings.batching)
