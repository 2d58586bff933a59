"""The open inference protocol's wire format (KServe v2, Triton's HTTP/REST) as this service speaks it.

Pure: bytes and JSON in, checked values and bytes out; no HTTP, no files (docs/design.md, "HTTP").
It owns the JSON models of the protocol's bodies (server and model metadata, the inference request
and response), the binary data extension (a JSON header of `Inference-Header-Content-Length` bytes,
then each binary tensor's bytes in order; a BYTES tensor's elements each prefixed by their length as
4 bytes little-endian), and the served model's tensors: one input `video`, BYTES [B], each element an
encoded video file; outputs `scores`, FP32 [B, N], the fused video scores in label order, and
`labels`, BYTES [N]. `parse_header` and `video_request` check a request's header, `BytesSplitter` cuts
the binary data into elements as it arrives, `render_response` writes the response. Every refusal is
the documented `invalid_parameter` error.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)

from fstcn.core.errors import InvalidParameter
from fstcn.core.options import DEFAULT_CROPS, DEFAULT_FUSION, PredictOptions

HEADER_LENGTH = "Inference-Header-Content-Length"
BYTES = "BYTES"
FP32 = "FP32"
LENGTH_PREFIX_BYTES = 4
# The JSON header only describes tensors; a video never travels in it (JSON cannot carry raw bytes).
MAX_HEADER_BYTES = 64 * 1024
# One request's videos share one admission slot and one time limit; more videos go as more requests.
MAX_VIDEOS_PER_REQUEST = 16
VIDEO_INPUT = "video"
SCORES_OUTPUT = "scores"
LABELS_OUTPUT = "labels"
OUTPUT_NAMES = (SCORES_OUTPUT, LABELS_OUTPUT)
# Request parameters: the prediction options of /predict that apply to a full score vector, and the
# protocol's default for outputs that do not say whether they want binary data.
REQUEST_PARAMETERS = ("clips", "crops", "fusion", "binary_data_output")
EXTENSIONS = ("binary_tensor_data", "parameters")

# bool first: pydantic's smart union keeps JSON true a bool and 1 an int
ParameterValue = StrictBool | StrictInt | StrictFloat | StrictStr


# ------------------------------------------------------------------------------------ JSON models
class TensorMetadata(BaseModel):
    name: str
    datatype: str = Field(description="The protocol's tensor data type: BYTES, FP32, ...")
    shape: list[int] = Field(description="Sizes; -1 is a variable axis.")


class ServerMetadataResponse(BaseModel):
    name: str
    version: str
    extensions: list[str] = Field(description="Protocol extensions the server supports.")


class ModelMetadataResponse(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ModelReadyResponse(BaseModel):
    name: str
    ready: bool


class RequestInput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, ParameterValue] = Field(
        default_factory=dict, description="`binary_data_size`: bytes of this tensor in the binary data."
    )
    data: list[Any] | None = Field(
        None, description="JSON tensor data (refused for `video`: send it binary)."
    )


class RequestOutput(BaseModel):
    name: str
    parameters: dict[str, ParameterValue] = Field(
        default_factory=dict, description="`binary_data`: return this output as binary data."
    )


class InferRequest(BaseModel):
    """The JSON header of `POST /v2/models/{name}/infer`."""

    model_config = ConfigDict(extra="ignore")

    id: str | None = None
    parameters: dict[str, ParameterValue] = Field(
        default_factory=dict,
        description="`clips`, `crops`, `fusion` (as on /predict) and `binary_data_output`.",
    )
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = Field(None, description="Outputs to return; default: all.")


class ResponseOutput(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, ParameterValue] | None = Field(
        None, description="`binary_data_size`: bytes of this tensor in the binary data after the JSON."
    )
    data: list[float] | list[str] | None = Field(None, description="Row-major values (JSON outputs).")


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[ResponseOutput]


class ProtocolError(BaseModel):
    """The protocol's error body: `{"error": "<code>: <message>"}`."""

    error: str = Field(description="The documented error code, a colon, and the message.")


# ------------------------------------------------------------------------------- the request header
def parse_header(header: bytes) -> InferRequest:
    """The request's JSON header, checked against the protocol's request model."""
    try:
        return InferRequest.model_validate_json(header)
    except ValidationError as error:
        problems = []
        for item in error.errors(include_url=False):
            where = ".".join(str(part) for part in item["loc"])
            problems.append(f"{where or 'header'}: {item['msg']}")
        raise InvalidParameter("invalid inference request: " + "; ".join(problems[:5])) from None


@dataclass(frozen=True)
class VideoRequest:
    """What an inference request asks of the served model.

    batch: B videos; binary_size: bytes of the `video` input's binary data; options: the prediction
    options the parameters give (`top_k` unset: the response carries every class; the ranges are
    checked by `PredictOptions.resolved`); outputs: (name, binary) of each output to return, in order.
    """

    batch: int
    binary_size: int
    options: PredictOptions
    outputs: tuple[tuple[str, bool], ...]
    id: str | None = None


def video_request(request: InferRequest) -> VideoRequest:
    """Check a parsed header against the served model's tensors and this service's parameters."""
    names = [item.name for item in request.inputs]
    if names != [VIDEO_INPUT]:
        raise InvalidParameter(f"the model takes one input, {VIDEO_INPUT!r}; got {names}")
    video = request.inputs[0]
    if video.datatype != BYTES:
        raise InvalidParameter(f"input {VIDEO_INPUT!r} has datatype {BYTES}, got {video.datatype!r}")
    if len(video.shape) != 1 or not 1 <= video.shape[0] <= MAX_VIDEOS_PER_REQUEST:
        raise InvalidParameter(
            f"input {VIDEO_INPUT!r} has shape [B], B from 1 to {MAX_VIDEOS_PER_REQUEST}; got {video.shape}"
        )
    _refuse_unknown(f"input {VIDEO_INPUT!r}", video.parameters, ("binary_data_size",))
    size = video.parameters.get("binary_data_size")
    if video.data is not None or size is None:
        raise InvalidParameter(
            f"input {VIDEO_INPUT!r} must be sent as binary data (the binary data extension: "
            f"{HEADER_LENGTH} and `binary_data_size`); JSON cannot carry a video file"
        )
    binary_size = _whole_number(f"input {VIDEO_INPUT!r}: binary_data_size", size)

    parameters = request.parameters
    _refuse_unknown("request", parameters, REQUEST_PARAMETERS)
    clips = parameters.get("clips")
    crops = parameters.get("crops", DEFAULT_CROPS)
    fusion = parameters.get("fusion", DEFAULT_FUSION)
    if not isinstance(fusion, str):
        raise InvalidParameter(f"parameter fusion must be a string, got {fusion!r}")
    default_binary = _flag("binary_data_output", parameters.get("binary_data_output", False))

    if request.outputs is None:
        outputs = tuple((name, default_binary) for name in OUTPUT_NAMES)
    else:
        outputs = tuple(_requested_output(item, default_binary) for item in request.outputs)
        names = [name for name, _ in outputs]
        if len(set(names)) != len(names):
            raise InvalidParameter(f"an output is requested twice: {names}")
    return VideoRequest(
        batch=video.shape[0],
        binary_size=binary_size,
        options=PredictOptions(
            clips=None if clips is None else _whole_number("parameter clips", clips),
            crops=_whole_number("parameter crops", crops),
            fusion=fusion,
        ),
        outputs=outputs,
        id=request.id,
    )


def _requested_output(output: RequestOutput, default_binary: bool) -> tuple[str, bool]:
    if output.name not in OUTPUT_NAMES:
        raise InvalidParameter(
            f"unknown output {output.name!r}; the model's outputs are {list(OUTPUT_NAMES)}"
        )
    if "classification" in output.parameters:
        raise InvalidParameter(
            "the classification extension is not supported: ask for `scores` (every class, in the order "
            "of `labels`) and `labels`"
        )
    _refuse_unknown(f"output {output.name!r}", output.parameters, ("binary_data",))
    return output.name, _flag("binary_data", output.parameters.get("binary_data", default_binary))


def _refuse_unknown(owner: str, parameters: dict[str, ParameterValue], known: Sequence[str]) -> None:
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise InvalidParameter(f"{owner}: unknown parameter(s) {unknown}; known: {list(known)}")


def _whole_number(what: str, value: ParameterValue) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidParameter(f"{what} must be a whole number, got {value!r}")
    return value


def _flag(what: str, value: ParameterValue) -> bool:
    if not isinstance(value, bool):
        raise InvalidParameter(f"parameter {what} must be true or false, got {value!r}")
    return value


# ---------------------------------------------------------------------------- BYTES binary data
@dataclass(frozen=True)
class ElementPiece:
    """Bytes of element `index` of a BYTES tensor; `last`: the element is complete after these."""

    index: int
    data: bytes
    last: bool


class BytesSplitter:
    """Cuts a BYTES tensor's binary data (`size` bytes, `count` elements) into elements as it arrives.

    `feed(chunk)` returns the pieces of the elements it completes or continues, in order (an empty
    element is one empty piece with `last`); `finish()` checks that exactly `count` elements filled
    exactly `size` bytes. Raises InvalidParameter as soon as the data cannot match its description.
    """

    def __init__(self, count: int, size: int) -> None:
        if count < 1 or size < 0:
            raise ValueError(f"count must be >= 1 and size >= 0, got {count} and {size}")
        self.count = count
        self.size = size
        self.position = 0  # bytes consumed
        self.index = 0  # the element being read
        self._prefix = b""
        self._remaining: int | None = None  # bytes left of the current element; None: in its prefix

    def feed(self, chunk: bytes) -> list[ElementPiece]:
        if self.position + len(chunk) > self.size:
            raise InvalidParameter(
                f"the binary data is longer than input {VIDEO_INPUT!r}'s binary_data_size ({self.size} bytes)"
            )
        pieces: list[ElementPiece] = []
        offset = 0
        while offset < len(chunk):
            if self._remaining is None:
                if self.index >= self.count:
                    raise InvalidParameter(
                        f"input {VIDEO_INPUT!r} holds more than its shape's {self.count} elements"
                    )
                taken = chunk[offset : offset + LENGTH_PREFIX_BYTES - len(self._prefix)]
                self._prefix += taken
                offset += len(taken)
                if len(self._prefix) < LENGTH_PREFIX_BYTES:
                    break
                length = int.from_bytes(self._prefix, "little")
                self._prefix = b""
                left = self.size - (self.position + offset)
                if length > left:
                    raise InvalidParameter(
                        f"element {self.index} of input {VIDEO_INPUT!r} says {length} bytes; "
                        f"only {left} of binary_data_size are left"
                    )
                self._remaining = length
                if length == 0:
                    pieces.append(self._advance(b""))
                continue
            part = chunk[offset : offset + self._remaining]
            offset += len(part)
            self._remaining -= len(part)
            pieces.append(
                self._advance(part) if self._remaining == 0 else ElementPiece(self.index, part, False)
            )
        self.position += len(chunk)
        return pieces

    def _advance(self, part: bytes) -> ElementPiece:
        piece = ElementPiece(self.index, part, True)
        self.index += 1
        self._remaining = None
        return piece

    def finish(self) -> None:
        if self.position != self.size:
            raise InvalidParameter(
                f"the body ended after {self.position} of input {VIDEO_INPUT!r}'s {self.size} bytes"
            )
        if self.index != self.count:
            raise InvalidParameter(
                f"input {VIDEO_INPUT!r} holds {self.index} complete element(s); its shape says {self.count}"
            )


def encode_bytes(elements: Sequence[bytes]) -> bytes:
    """A BYTES tensor's binary data: each element prefixed by its length, 4 bytes little-endian."""
    return b"".join(len(item).to_bytes(LENGTH_PREFIX_BYTES, "little") + item for item in elements)


# ------------------------------------------------------------------------------------ the response
@dataclass(frozen=True)
class OutputTensor:
    """One output: FP32 values (any shape) or BYTES values (a list of strings, shape [len])."""

    name: str
    values: npt.NDArray[np.float32] | list[str]
    binary: bool


def render_response(
    *, model_name: str, model_version: str, request_id: str | None, outputs: Sequence[OutputTensor]
) -> tuple[bytes, int | None]:
    """The response body and, when any output is binary, the JSON header's length (the value of
    `Inference-Header-Content-Length`; None: the body is JSON only)."""
    described: list[dict[str, Any]] = []
    binary: list[bytes] = []
    for output in outputs:
        if isinstance(output.values, np.ndarray):
            values = np.ascontiguousarray(output.values, dtype="<f4")  # FP32 on the wire is little-endian
            datatype, shape = FP32, list(values.shape)
            raw = values.tobytes()
            data: list[Any] = values.ravel().tolist()
        else:
            datatype, shape = BYTES, [len(output.values)]
            raw = encode_bytes([item.encode() for item in output.values])
            data = list(output.values)
        tensor: dict[str, Any] = {"name": output.name, "datatype": datatype, "shape": shape}
        if output.binary:
            tensor["parameters"] = {"binary_data_size": len(raw)}
            binary.append(raw)
        else:
            tensor["data"] = data
        described.append(tensor)
    body: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        body["id"] = request_id
    body["outputs"] = described
    header = json.dumps(body, separators=(",", ":")).encode()
    if not binary:
        return header, None
    return header + b"".join(binary), len(header)
