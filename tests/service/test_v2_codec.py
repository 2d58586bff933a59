"""The open inference protocol's codec alone: header checks, BYTES splitting at every chunking, responses
read back by the protocol's reference client (`tritonclient.http.InferResult`)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from tritonclient.http import InferResult

from fstcn.core.errors import InvalidParameter
from fstcn.core.options import DEFAULT_CROPS, DEFAULT_FUSION
from fstcn.service.v2_codec import (
    MAX_VIDEOS_PER_REQUEST,
    BytesSplitter,
    OutputTensor,
    encode_bytes,
    parse_header,
    render_response,
    video_request,
)


def header(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "inputs": [
            {"name": "video", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": 20}}
        ]
    }
    body.update(changes)
    return body


def parsed(body: dict[str, Any]) -> Any:
    return video_request(parse_header(json.dumps(body).encode()))


def test_a_request_of_the_reference_client_shape() -> None:
    request = parsed(header(id="r1", parameters={"clips": 3, "crops": 2, "fusion": "mean"}))
    assert (request.batch, request.binary_size, request.id) == (2, 20, "r1")
    assert (request.options.clips, request.options.crops, request.options.fusion) == (3, 2, "mean")
    assert request.options.top_k is None
    assert request.outputs == (("scores", False), ("labels", False))


def test_defaults_and_output_choices() -> None:
    request = parsed(header())
    assert (request.options.clips, request.options.crops, request.options.fusion) == (
        None,
        DEFAULT_CROPS,
        DEFAULT_FUSION,
    )
    assert parsed(header(parameters={"binary_data_output": True})).outputs == (
        ("scores", True),
        ("labels", True),
    )
    outputs = [{"name": "labels"}, {"name": "scores", "parameters": {"binary_data": True}}]
    assert parsed(header(outputs=outputs)).outputs == (("labels", False), ("scores", True))
    outputs = [{"name": "scores", "parameters": {"binary_data": False}}]
    assert parsed(header(outputs=outputs, parameters={"binary_data_output": True})).outputs == (
        ("scores", False),
    )


VIDEO = {"name": "video", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 9}}

BAD_HEADERS: dict[str, tuple[Any, str]] = {
    "not JSON": (b"\x00\x01video", "invalid inference request"),
    "no inputs": ({"inputs": []}, "inputs"),
    "input name": ({"inputs": [{**VIDEO, "name": "frames"}]}, "one input, 'video'"),
    "two inputs": ({"inputs": [VIDEO, VIDEO]}, "one input, 'video'"),
    "datatype": ({"inputs": [{**VIDEO, "datatype": "UINT8"}]}, "datatype BYTES"),
    "shape rank": ({"inputs": [{**VIDEO, "shape": [1, 1]}]}, "shape [B]"),
    "empty batch": ({"inputs": [{**VIDEO, "shape": [0]}]}, "shape [B]"),
    "batch too large": ({"inputs": [{**VIDEO, "shape": [MAX_VIDEOS_PER_REQUEST + 1]}]}, "shape [B]"),
    "JSON data": ({"inputs": [{**VIDEO, "parameters": {}, "data": ["abc"]}]}, "must be sent as binary data"),
    "negative size": ({"inputs": [{**VIDEO, "parameters": {"binary_data_size": -1}}]}, "whole number"),
    "shared memory": (
        {"inputs": [{**VIDEO, "parameters": {"shared_memory_region": "r", "binary_data_size": 9}}]},
        "unknown parameter(s) ['shared_memory_region']",
    ),
    "unknown parameter": ({"inputs": [VIDEO], "parameters": {"crop": 9}}, "unknown parameter(s) ['crop']"),
    "clips as text": ({"inputs": [VIDEO], "parameters": {"clips": "3"}}, "clips must be a whole number"),
    "crops as bool": ({"inputs": [VIDEO], "parameters": {"crops": True}}, "crops must be a whole number"),
    "fusion as number": ({"inputs": [VIDEO], "parameters": {"fusion": 1}}, "fusion must be a string"),
    "binary flag": ({"inputs": [VIDEO], "parameters": {"binary_data_output": 1}}, "true or false"),
    "unknown output": ({"inputs": [VIDEO], "outputs": [{"name": "probs"}]}, "unknown output 'probs'"),
    "output twice": ({"inputs": [VIDEO], "outputs": [{"name": "scores"}, {"name": "scores"}]}, "twice"),
    "classification": (
        {"inputs": [VIDEO], "outputs": [{"name": "scores", "parameters": {"classification": 3}}]},
        "classification extension is not supported",
    ),
}


@pytest.mark.parametrize("case", list(BAD_HEADERS))
def test_bad_headers_are_invalid_parameter(case: str) -> None:
    body, message = BAD_HEADERS[case]
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(InvalidParameter) as caught:
        video_request(parse_header(raw))
    assert message in caught.value.message


ELEMENTS = [b"first video", b"", b"x" * 37, b"\x00\x01\x02\x03"]


def split(data: bytes, cuts: list[int], count: int, size: int) -> list[bytes]:
    splitter = BytesSplitter(count, size)
    elements: list[bytearray] = []
    bounds = [0, *cuts, len(data)]
    for start, end in zip(bounds, bounds[1:], strict=False):
        for piece in splitter.feed(data[start:end]):
            if piece.index == len(elements):
                elements.append(bytearray())
            assert piece.index == len(elements) - 1
            elements[-1] += piece.data
    splitter.finish()
    return [bytes(item) for item in elements]


def test_the_splitter_returns_the_elements_at_every_cut() -> None:
    data = encode_bytes(ELEMENTS)
    for cut in range(len(data) + 1):
        assert split(data, [cut], len(ELEMENTS), len(data)) == ELEMENTS
    assert split(data, list(range(1, len(data))), len(ELEMENTS), len(data)) == ELEMENTS  # byte by byte


def test_the_splitter_refuses_data_that_disagrees_with_its_description() -> None:
    data = encode_bytes(ELEMENTS)
    with pytest.raises(InvalidParameter, match="longer than"):
        BytesSplitter(len(ELEMENTS), len(data) - 1).feed(data)
    with pytest.raises(InvalidParameter, match="more than its shape's 3 elements"):
        BytesSplitter(3, len(data)).feed(data)
    with pytest.raises(InvalidParameter, match="says 4294967295 bytes"):  # refused before any byte of it
        BytesSplitter(1, 100).feed(b"\xff\xff\xff\xff")
    short = BytesSplitter(len(ELEMENTS), len(data))
    short.feed(data[:-1])
    with pytest.raises(InvalidParameter, match=f"ended after {len(data) - 1} of"):
        short.finish()
    fewer = BytesSplitter(len(ELEMENTS) + 1, len(data))
    fewer.feed(data)
    with pytest.raises(InvalidParameter, match="holds 4 complete element"):
        fewer.finish()


def text(element: bytes | str) -> str:
    """A BYTES element as the client gives it: bytes when sent binary, str when sent as JSON."""
    return element if isinstance(element, str) else element.decode()


def read_back(body: bytes, header_length: int | None) -> InferResult:
    return InferResult.from_response_body(body, header_length=header_length)


SCORES = np.array([[0.25, 0.5, 0.125], [1.0, 0.0, 1e-7]], dtype=np.float32)
LABELS = ["wave", "clap", "sit_down"]


@pytest.mark.parametrize("binary", [(False, False), (True, True), (True, False), (False, True)])
def test_responses_read_back_by_the_reference_client(binary: tuple[bool, bool]) -> None:
    body, header_length = render_response(
        model_name="m",
        model_version="1",
        request_id="r7",
        outputs=[OutputTensor("scores", SCORES, binary[0]), OutputTensor("labels", LABELS, binary[1])],
    )
    assert (header_length is None) == (not any(binary))
    result = read_back(body, header_length)
    np.testing.assert_array_equal(result.as_numpy("scores"), SCORES)
    assert result.as_numpy("scores").dtype == np.float32
    assert [text(label) for label in result.as_numpy("labels")] == LABELS
    response = result.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == ("m", "1", "r7")
    for output, is_binary in zip(response["outputs"], binary, strict=True):
        assert ("data" in output) != is_binary and ("parameters" in output) == is_binary
    json_part = json.loads(body if header_length is None else body[:header_length])
    assert [o["shape"] for o in json_part["outputs"]] == [[2, 3], [3]]
    if binary == (True, True):
        assert body[header_length:] == SCORES.astype("<f4").tobytes() + encode_bytes(
            [b"wave", b"clap", b"sit_down"]
        )


def test_a_response_without_an_id_has_none() -> None:
    body, header_length = render_response(
        model_name="m", model_version="1", request_id=None, outputs=[OutputTensor("labels", LABELS, False)]
    )
    assert header_length is None and "id" not in json.loads(body)
