"""openapi.yaml at the root is the app's generated schema.

Regenerate it with `python -m fstcn.service.openapi > openapi.yaml` after changing the API.
"""

from __future__ import annotations

from typing import Any

import yaml

from fstcn.service.openapi import openapi_document
from tests.service.servers import REPO

DOCUMENTED_PATHS = {
    "/predict",
    "/healthz",
    "/readyz",
    "/v2/health/live",
    "/v2/health/ready",
    "/v1/model",
    "/metrics",
}


def committed() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "openapi.yaml").read_text())
    return data


def test_committed_openapi_matches_the_app() -> None:
    assert committed() == openapi_document(), (
        "openapi.yaml is stale: run `python -m fstcn.service.openapi > openapi.yaml` and commit it"
    )


def test_the_http_contract_is_documented() -> None:
    doc = committed()
    assert set(doc["paths"]) == DOCUMENTED_PATHS
    predict = doc["paths"]["/predict"]["post"]
    body = predict["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["required"] == ["file"] and body["properties"]["file"]["format"] == "binary"
    params = {p["name"]: p["schema"] for p in predict["parameters"]}
    assert set(params) == {"top_k", "clips", "crops", "fusion"}
    assert params["crops"]["enum"] == [1, 2, 9, 18] and params["fusion"]["enum"] == ["sci", "mean"]
    assert set(predict["responses"]) == {"200", "401", "413", "415", "422", "500", "503", "504"}
    assert "Retry-After" in predict["responses"]["503"]["headers"]
    schemas = doc["components"]["schemas"]
    assert set(schemas["PredictResponse"]["properties"]) == {
        "model",
        "predictions",
        "fusion",
        "clips",
        "video",
        "timing_ms",
    }
    assert set(schemas["ClipScore"]["properties"]) == {"start_s", "end_s", "label", "score", "sci"}
    assert set(schemas["VideoSummary"]["properties"]) == {
        "duration_s",
        "fps",
        "width",
        "height",
        "frames",
        "codec",
    }
    assert set(schemas["Timing"]["properties"]) == {"decode", "infer", "total"}
    assert set(schemas["ErrorBody"]["properties"]) == {"code", "message"}
    for path in ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"):
        assert "security" not in doc["paths"][path]["get"], path  # probes never need the key
