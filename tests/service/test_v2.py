"""The open inference protocol end to end with its reference client, `tritonclient.http`.

A real `fstcn serve` process with the fake model (2 MiB byte limit, its own TMPDIR) answers the
client's health, metadata, readiness and inference calls; its scores are compared with `/predict`'s on
the same videos. uvicorn on a thread serves an app with an API key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from fstcn.service import metrics
from fstcn.service.api.v2 import INFER_PATHS
from fstcn.service.app import create_app
from fstcn.service.middleware import RequestMetricsMiddleware
from fstcn.service.settings import Settings
from fstcn.service.v2_codec import HEADER_LENGTH
from tests.service.fake_model import FAKE_LABELS, FAKE_META
from tests.service.servers import ServerProcess, live_app, temp_uploads

MODEL = FAKE_META.name
SMALL = {"width": 160, "height": 120}


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(server.url.removeprefix("http://"), network_timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as http:
        yield http


@pytest.fixture(scope="module")
def videos(video_factory: Callable[..., Path]) -> list[bytes]:
    return [
        video_factory("v2-a.mp4", fps=25, seconds=2.0, **SMALL).read_bytes(),
        video_factory("v2-b.webm", fps=30, seconds=1.6, **SMALL).read_bytes(),
    ]


def video_input(*elements: bytes) -> triton.InferInput:
    tensor = triton.InferInput("video", [len(elements)], "BYTES")
    tensor.set_data_from_numpy(np.array(elements, dtype=np.object_))
    return tensor


def predict_scores(http: httpx.Client, video: bytes, **params: Any) -> np.ndarray:
    """/predict's fused scores of every class, in label order."""
    response = http.post(
        "/predict", params={"top_k": len(FAKE_LABELS), **params}, files={"file": ("v", video, "video/mp4")}
    )
    assert response.status_code == 200, response.text
    scores = np.zeros(len(FAKE_LABELS), dtype=np.float32)
    for item in response.json()["predictions"]:
        scores[item["index"]] = item["score"]
    return scores


def test_server_and_model_metadata_and_readiness(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    server = client.get_server_metadata()
    assert server["name"] == "fstcn" and "binary_tensor_data" in server["extensions"]
    for version in ("", FAKE_META.version):
        assert client.is_model_ready(MODEL, version)
        metadata = client.get_model_metadata(MODEL, version)
        assert metadata["name"] == MODEL and metadata["versions"] == [FAKE_META.version]
        assert metadata["inputs"] == [{"name": "video", "datatype": "BYTES", "shape": [-1]}]
        assert metadata["outputs"] == [
            {"name": "scores", "datatype": "FP32", "shape": [-1, len(FAKE_LABELS)]},
            {"name": "labels", "datatype": "BYTES", "shape": [len(FAKE_LABELS)]},
        ]


def test_unknown_models_and_versions_are_404_in_the_protocol_body(
    client: triton.InferenceServerClient, http: httpx.Client, videos: list[bytes]
) -> None:
    assert not client.is_model_ready("other-model")
    assert not client.is_model_ready(MODEL, "9.9.9")
    with pytest.raises(InferenceServerException) as caught:
        client.get_model_metadata("other-model")
    assert (
        caught.value.status() == "404" and "not_found: unknown model 'other-model'" in caught.value.message()
    )
    with pytest.raises(InferenceServerException) as caught:
        client.infer(MODEL, [video_input(videos[0])], model_version="9.9.9")
    assert caught.value.status() == "404" and "unknown version '9.9.9'" in caught.value.message()
    for path in ("/v2/models/other-model", "/v2/models/x/versions/1/ready", "/v2/models/x/infer/more"):
        response = http.get(path)
        assert response.status_code == 404 and response.json()["error"].startswith("not_found: ")
    response = http.get("/v2/health/nothing")  # outside /v2/models: the house body
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_infer_scores_agree_with_predict(
    client: triton.InferenceServerClient, http: httpx.Client, videos: list[bytes]
) -> None:
    result = client.infer(MODEL, [video_input(videos[0])], request_id="req-1")
    scores = result.as_numpy("scores")
    assert scores.shape == (1, len(FAKE_LABELS)) and scores.dtype == np.float32
    assert [label.decode() for label in result.as_numpy("labels")] == list(FAKE_LABELS)
    assert result.get_response()["id"] == "req-1"
    assert result.get_response()["model_version"] == FAKE_META.version
    expected = predict_scores(http, videos[0])
    assert int(np.argmax(scores[0])) == int(np.argmax(expected))
    np.testing.assert_allclose(scores[0], expected, rtol=1e-6)


def test_a_batch_of_two_videos_with_parameters(
    client: triton.InferenceServerClient, http: httpx.Client, videos: list[bytes]
) -> None:
    parameters = {"clips": 3, "crops": 2, "fusion": "mean"}
    result = client.infer(
        MODEL, [video_input(*videos)], model_version=FAKE_META.version, parameters=parameters
    )
    scores = result.as_numpy("scores")
    assert scores.shape == (2, len(FAKE_LABELS))
    for row, video in zip(scores, videos, strict=True):
        np.testing.assert_allclose(row, predict_scores(http, video, **parameters), rtol=1e-6)
    assert not np.allclose(scores[0], scores[1])  # each row is its own video
    # the parameters change the work: the default options give other scores
    default = client.infer(MODEL, [video_input(videos[0])]).as_numpy("scores")[0]
    assert not np.allclose(default, scores[0])


def test_binary_and_json_outputs(
    client: triton.InferenceServerClient, http: httpx.Client, videos: list[bytes]
) -> None:
    binary = client.infer(MODEL, [video_input(videos[0])])  # no outputs named: the client asks for binary
    assert all("parameters" in output for output in binary.get_response()["outputs"])
    outputs = [
        triton.InferRequestedOutput("scores", binary_data=False),
        triton.InferRequestedOutput("labels", binary_data=True),
    ]
    mixed = client.infer(MODEL, [video_input(videos[0])], outputs=outputs)
    scores_output, labels_output = mixed.get_response()["outputs"]
    assert "data" in scores_output and "binary_data_size" in labels_output["parameters"]
    np.testing.assert_array_equal(mixed.as_numpy("scores"), binary.as_numpy("scores"))
    only_labels = client.infer(
        MODEL, [video_input(videos[0])], outputs=[triton.InferRequestedOutput("labels")]
    )
    assert [o["name"] for o in only_labels.get_response()["outputs"]] == ["labels"]
    assert only_labels.as_numpy("scores") is None

    # JSON only: no Inference-Header-Content-Length in the response, every output's data in the JSON
    header = (
        b'{"inputs":[{"name":"video","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":%d}}]}'
        % (len(videos[0]) + 4)
    )
    body = header + len(videos[0]).to_bytes(4, "little") + videos[0]
    response = http.post(f"/v2/models/{MODEL}/infer", content=body, headers={HEADER_LENGTH: str(len(header))})
    assert response.status_code == 200 and HEADER_LENGTH not in response.headers
    outputs_json = response.json()["outputs"]
    assert outputs_json[1]["data"] == list(FAKE_LABELS)
    np.testing.assert_allclose(outputs_json[0]["data"], binary.as_numpy("scores")[0], rtol=1e-6)


def test_a_non_video_element_is_415_and_nothing_is_left_behind(
    client: triton.InferenceServerClient, server: ServerProcess, videos: list[bytes]
) -> None:
    with pytest.raises(InferenceServerException) as caught:
        client.infer(MODEL, [video_input(videos[0], b"#!/bin/sh\necho not a video\n")])
    assert caught.value.status() == "415"
    assert caught.value.message().startswith("unsupported_media: not a video")
    assert temp_uploads(server.tmpdir) == []


def test_refusals_use_the_documented_codes(
    client: triton.InferenceServerClient, http: httpx.Client, server: ServerProcess, videos: list[bytes]
) -> None:
    def refused(status: str, message: str, **kwargs: Any) -> None:
        with pytest.raises(InferenceServerException) as caught:
            client.infer(MODEL, [kwargs.pop("tensor", video_input(videos[0]))], **kwargs)
        assert caught.value.status() == status and message in caught.value.message(), caught.value.message()

    refused("422", "invalid_parameter: crops must be one of", parameters={"crops": 3})
    refused("422", "invalid_parameter: clips must be between 1 and 32", parameters={"clips": 33})
    refused("422", "invalid_parameter: request: unknown parameter(s) ['top_k']", parameters={"top_k": 2})
    refused("422", "unknown output 'probs'", outputs=[triton.InferRequestedOutput("probs")])
    refused("422", "classification extension", outputs=[triton.InferRequestedOutput("scores", class_count=2)])
    big = b"\x00\x00\x00\x18ftypisom" + b"\x00" * (2 * 1024 * 1024)
    refused("413", "video_too_large: the videos are larger than the limit", tensor=video_input(big))
    uint8 = triton.InferInput("video", [3], "UINT8")
    uint8.set_data_from_numpy(np.zeros(3, dtype=np.uint8))
    refused("422", "datatype BYTES", tensor=uint8)

    json_only = {"inputs": [{"name": "video", "shape": [1], "datatype": "BYTES", "data": ["not bytes"]}]}
    response = http.post(f"/v2/models/{MODEL}/infer", json=json_only)
    assert response.status_code == 422
    assert response.json() == {
        "error": "invalid_parameter: input 'video' must be sent as binary data (the binary data extension: "
        "Inference-Header-Content-Length and `binary_data_size`); JSON cannot carry a video file"
    }
    for headers in ({HEADER_LENGTH: "many"}, {"Content-Encoding": "gzip"}):
        response = http.post(f"/v2/models/{MODEL}/infer", content=b"{}", headers=headers)
        assert response.status_code in (415, 422) and set(response.json()) == {"error"}
    assert temp_uploads(server.tmpdir) == []


def test_infer_requests_are_counted_under_their_route(
    client: triton.InferenceServerClient, http: httpx.Client, videos: list[bytes]
) -> None:
    client.infer(MODEL, [video_input(videos[0])])
    with pytest.raises(InferenceServerException):
        client.infer(MODEL, [video_input(b"not a video")])
    metrics = http.get("/metrics").text
    for status in ("200", "415"):
        assert f'fstcn_requests_total{{route="/v2/models/{{name}}/infer",status="{status}"}}' in metrics
    assert 'fstcn_errors_total{code="unsupported_media"}' in metrics


def test_infer_requests_are_in_flight_while_handled() -> None:
    seen: list[float] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(metrics.INFLIGHT._value.get())

    middleware = RequestMetricsMiddleware(app, inflight_paths=INFER_PATHS)
    before = metrics.INFLIGHT._value.get()
    for path in (f"/v2/models/{MODEL}/infer", f"/v2/models/{MODEL}/versions/1/infer", f"/v2/models/{MODEL}"):
        asyncio.run(middleware({"type": "http", "path": path}, None, None))  # type: ignore[arg-type]
    assert seen == [before + 1, before + 1, before]
    assert metrics.INFLIGHT._value.get() == before


def test_the_api_key_guards_every_route_but_health(
    make_settings: Callable[..., Settings], video_factory: Callable[..., Path]
) -> None:
    video = video_factory("v2-key.mp4", fps=25, seconds=2.0, **SMALL).read_bytes()
    with live_app(create_app(make_settings(api_key="s3cret"))) as url:
        client = triton.InferenceServerClient(url.removeprefix("http://"))
        assert client.is_server_live() and client.is_server_ready()  # health stays open
        assert not client.is_model_ready(MODEL)
        for call in (
            client.get_server_metadata,
            lambda: client.get_model_metadata(MODEL),
            lambda: client.infer(MODEL, [video_input(video)]),
        ):
            with pytest.raises(InferenceServerException) as caught:
                call()
            assert caught.value.status() == "401"
            assert caught.value.message() == "unauthorized: missing or invalid API key"
        for headers in ({"Authorization": "Bearer s3cret"}, {"X-API-Key": "s3cret"}):
            assert client.is_model_ready(MODEL, headers=headers)
            assert client.get_server_metadata(headers=headers)["name"] == "fstcn"
            scores = client.infer(MODEL, [video_input(video)], headers=headers).as_numpy("scores")
            assert scores.shape == (1, len(FAKE_LABELS))
