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
    "/v2",
    "/v2/models/{name}",
    "/v2/models/{name}/versions/{version}",
    "/v2/models/{name}/ready",
    "/v2/models/{name}/versions/{version}/ready",
    "/v2/models/{name}/infer",
    "/v2/models/{name}/versions/{version}/infer",
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


def test_the_inference_protocol_is_documented() -> None:
    doc = committed()
    schemas = doc["components"]["schemas"]
    for path in DOCUMENTED_PATHS:
        if path.startswith("/v2/models") or path == "/v2":
            (operation,) = doc["paths"][path].values()
            assert operation["security"], path  # behind the API key, as /predict
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):  # the protocol's error body, never the house one
                    assert response["content"]["application/json"]["schema"]["$ref"].endswith(
                        "/ProtocolError"
                    )
    infer = doc["paths"]["/v2/models/{name}/infer"]["post"]
    assert set(infer["requestBody"]["content"]) == {"application/octet-stream", "application/json"}
    assert infer["requestBody"]["content"]["application/json"]["schema"]["required"] == ["inputs"]
    assert [p["name"] for p in infer["parameters"]] == ["name", "Inference-Header-Content-Length"]
    assert set(infer["responses"]) == {"200", "401", "404", "413", "415", "422", "500", "503", "504"}
    assert set(infer["responses"]["200"]["content"]) == {"application/json", "application/octet-stream"}
    assert set(schemas["InferResponse"]["properties"]) == {"model_name", "model_version", "id", "outputs"}
    assert set(schemas["ProtocolError"]["properties"]) == {"error"}
    assert set(schemas["ModelMetadataResponse"]["properties"]) == {
        "name",
        "versions",
        "platform",
        "inputs",
        "outputs",
    }
